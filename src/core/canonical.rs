//! Canonical requests: the one form of a request that the gate decides on **and** forwards.
//!
//! Origins read a path in many ways: they decode `%2F` and `%5C`, merge `//`, fold case, drop
//! `;params`, resolve `..;`, normalize Unicode. If the gate matched its route rules against one
//! spelling and forwarded another, a token allowed to `read` could reach what an `admin` rule
//! guards. So every request is brought to one canonical form first, and that form is what the
//! route rules, the path-scoped rate limits and the log see, and what goes to the origin.
//!
//! The canonical path (RFC 3986):
//! - starts with `/` (origin form); nothing else is accepted (`*`, absolute form);
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other
//!   escape is kept, with upper-case hex; raw characters that may not stand in a path are encoded;
//!   non-ASCII is kept as its UTF-8 bytes, percent-encoded;
//! - `.` and `..` segments are resolved (§5.2.4; `..` above the root stays at the root) and
//!   repeated slashes are merged, as NGINX does; a trailing slash is kept;
//! - case is kept (origins differ): routes that an origin matches case-insensitively say so
//!   (`routes[].case_insensitive` or `request.case_insensitive`).
//!
//! Refused with `400 ambiguous_path` by default (forms whose meaning differs between origins),
//! each with a switch in the `request` section for origins that need it: an encoded `/` or `\`
//! and a raw `\` (`escaped_slashes`), `;` path parameters, encoded or not, including `..;`
//! (`path_params`); always refused: an encoded dot segment (`%2e%2e`), double encoding (`%25`
//! followed by two hex digits, after decoding), a broken escape, invalid or overlong UTF-8,
//! control characters, and code points whose NFKC form holds `/`, `\`, `.`, `%` or `;` (fullwidth
//! solidus, one-dot leader, ...). Where any route is matched case-insensitively, every code point
//! whose NFKC form holds ASCII (fullwidth letters, ligatures) is refused too, because an origin
//! that folds case often folds those as well. A path over `request.max_path_bytes` is `414`.
//!
//! Methods: a token (RFC 9110), brought to upper case, forwarded as decided on; extension
//! methods keep their name and body. `HEAD` is matched as `GET` by the route table. Method
//! override headers (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) and the
//! `_method` query parameter are stripped (default), refused, or passed (`method_override`).
//!
//! Everything here is pure and runs before any credential is read.

use super::error::{AuthError, PathProblem};
use serde::Deserialize;
use std::net::IpAddr;

/// What to do with an encoded `/` or `\` (`%2F`, `%5C`) or a raw `\` in the path.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Refuse the request (`400 ambiguous_path`), the default.
    #[default]
    Reject,
    /// Keep them encoded (a raw `\` becomes `%5C`): the path segment holds a literal `/` or `\`.
    /// Safe only if the origin does not decode them before routing.
    Keep,
}

/// What to do with `;` path parameters (`/a;jsessionid=1/b`, `/..;/admin`), raw or encoded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PathParams {
    /// Refuse the request (`400 ambiguous_path`), the default.
    #[default]
    Reject,
    /// Remove each segment's parameters, as Tomcat and Jetty do, before dot segments are
    /// resolved (so `/..;/` is `/../`), and forward the path without them. An encoded `;`
    /// (`%3B`) is kept as a literal character.
    Strip,
    /// Keep `;` as an ordinary character. Safe only if the origin does not treat it specially.
    Keep,
}

/// What to do with path segments Windows reads as another name (`admin.`, `admin%20`,
/// `admin::$INDEX_ALLOCATION`, `ADMINI~1`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowsAliases {
    /// Refuse them (`400 ambiguous_path`), the default.
    #[default]
    Reject,
    /// Keep them: only for origins that do not run on Windows file systems.
    Keep,
}

/// Whether a request whose route rule depends on letter case is refused.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseAmbiguity {
    /// Refuse it (`400 ambiguous_path`), the default: `/ADMIN/x` where `/admin/*` guards more
    /// than the rule `/ADMIN/x` falls under.
    #[default]
    Reject,
    /// Decide as the rules say (for origins known to route case-sensitively).
    Allow,
}

/// What to do with method override headers and the `_method` query parameter.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MethodOverride {
    /// Remove them before forwarding (the default): the origin acts on the method the gate
    /// authorized.
    #[default]
    Strip,
    /// Refuse requests that carry one (`400 method_override`).
    Reject,
    /// Forward them. Only for origins that ignore them: otherwise a `POST` the gate authorized
    /// becomes a `DELETE` at the origin.
    Pass,
}

/// What to do with client headers whose name contains `_`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Drop every such header (the default, as NGINX does): CGI, WSGI, Rack and PHP origins read
    /// `x_edgeward_sub` as `x-edgeward-sub`.
    #[default]
    Drop,
    /// Keep them, except those that read as a header the gate protects once `_` is read as `-`.
    Keep,
}

/// What to do with `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`, `Forwarded` and
/// `X-Real-IP` sent by the client.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedHeaders {
    /// Replace them with what the gate knows: the client address (`CF-Connecting-IP`), the
    /// scheme and host of the request URL (the default).
    #[default]
    Replace,
    /// Remove them and set none.
    Strip,
}

/// How a claim value that cannot be a header value verbatim is forwarded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClaimValues {
    /// Refuse the request (`403 claim_not_forwardable`, the header named in the log), the default.
    #[default]
    Reject,
    /// Percent-encode every forwarded claim value (UTF-8; `%`, controls, non-ASCII and leading or
    /// trailing spaces encoded), so the origin decodes all of them the same way.
    Percent,
}

/// The `request` section: how requests are canonicalized. Every field has a safe default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestPolicy {
    /// `reject` (default) or `keep`.
    pub escaped_slashes: EscapedSlashes,
    /// `reject` (default), `strip` or `keep`.
    pub path_params: PathParams,
    /// Match every route case-insensitively (default false; per route: `case_insensitive`).
    pub case_insensitive: bool,
    /// `strip` (default), `reject` or `pass`.
    pub method_override: MethodOverride,
    /// `drop` (default) or `keep`.
    pub underscore_headers: UnderscoreHeaders,
    /// `replace` (default) or `strip`.
    pub forwarded_headers: ForwardedHeaders,
    /// `reject` (default) or `percent`.
    pub claim_values: ClaimValues,
    /// `reject` (default) or `keep`.
    pub windows_aliases: WindowsAliases,
    /// `reject` (default) or `allow`.
    pub case_ambiguity: CaseAmbiguity,
    /// Longest path accepted, in bytes as received (default 8192; `414 path_too_long` above).
    pub max_path_bytes: usize,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        RequestPolicy {
            escaped_slashes: EscapedSlashes::Reject,
            path_params: PathParams::Reject,
            case_insensitive: false,
            method_override: MethodOverride::Strip,
            underscore_headers: UnderscoreHeaders::Drop,
            forwarded_headers: ForwardedHeaders::Replace,
            claim_values: ClaimValues::Reject,
            windows_aliases: WindowsAliases::Reject,
            case_ambiguity: CaseAmbiguity::Reject,
            max_path_bytes: 8192,
        }
    }
}

impl RequestPolicy {
    /// Checks the section; the error is (field, message).
    pub fn validate(self) -> Result<RequestPolicy, (String, String)> {
        if !(16..=65_536).contains(&self.max_path_bytes) {
            return Err(("request.max_path_bytes".into(), "must be between 16 and 65536".into()));
        }
        Ok(self)
    }
}

/// How paths are canonicalized: the parts of [`RequestPolicy`] the path needs, plus whether any
/// route is matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Encoded slashes.
    pub escaped_slashes: EscapedSlashes,
    /// `;` parameters.
    pub path_params: PathParams,
    /// Refuse every code point whose NFKC form holds ASCII.
    pub refuse_ascii_lookalikes: bool,
    /// Windows aliases.
    pub windows_aliases: WindowsAliases,
    /// Longest raw path.
    pub max_path_bytes: usize,
}

impl Default for PathRules {
    fn default() -> Self {
        let p = RequestPolicy::default();
        PathRules {
            escaped_slashes: p.escaped_slashes,
            path_params: p.path_params,
            refuse_ascii_lookalikes: false,
            windows_aliases: p.windows_aliases,
            max_path_bytes: p.max_path_bytes,
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters that stand raw in a canonical path segment besides the unreserved ones:
/// sub-delims (without `;`, which is handled on its own), `:` and `@` (RFC 3986 `pchar`).
fn is_raw_pchar(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@')
}

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Checks a run of non-ASCII bytes (decoded from escapes, or raw) and appends it percent-encoded.
fn flush_utf8(run: &mut Vec<u8>, out: &mut String, rules: &PathRules) -> Result<(), PathProblem> {
    if run.is_empty() {
        return Ok(());
    }
    let text = std::str::from_utf8(run).map_err(|_| PathProblem::InvalidUtf8)?;
    for c in text.chars() {
        if c.is_control() {
            return Err(PathProblem::ControlCharacter);
        }
        if in_ranges(super::lookalike::NFKC_TO_PATH_SYNTAX, c) || (rules.refuse_ascii_lookalikes && in_ranges(super::lookalike::NFKC_TO_ASCII, c)) {
            return Err(PathProblem::AsciiLookalike);
        }
    }
    for &b in run.iter() {
        push_escaped(out, b);
    }
    run.clear();
    Ok(())
}

/// Appends one segment, canonicalized, to `out`; returns whether a `.` in it was percent-encoded.
/// `run` is scratch space for non-ASCII bytes (kept across segments to avoid allocations).
fn segment(raw: &[u8], rules: &PathRules, out: &mut String, run: &mut Vec<u8>) -> Result<bool, PathProblem> {
    run.clear();
    let mut encoded_dot = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (raw.get(i + 1).copied().and_then(hex_val), raw.get(i + 2).copied().and_then(hex_val)) else {
                return Err(PathProblem::BadPercentEncoding);
            };
            let v = (hi << 4) | lo;
            i += 3;
            if v >= 0x80 {
                run.push(v);
                continue;
            }
            flush_utf8(run, out, rules)?;
            match v {
                _ if is_unreserved(v) => {
                    encoded_dot |= v == b'.';
                    out.push(char::from(v));
                }
                b'/' | b'\\' if rules.escaped_slashes == EscapedSlashes::Reject => return Err(PathProblem::EncodedSlash),
                b';' if rules.path_params == PathParams::Reject => return Err(PathProblem::PathParams),
                0..=0x1f | 0x7f => return Err(PathProblem::ControlCharacter),
                _ => push_escaped(out, v),
            }
            continue;
        }
        i += 1;
        if b >= 0x80 {
            run.push(b);
            continue;
        }
        flush_utf8(run, out, rules)?;
        match b {
            _ if is_unreserved(b) || is_raw_pchar(b) => out.push(char::from(b)),
            b';' => match rules.path_params {
                PathParams::Reject => return Err(PathProblem::PathParams),
                // The parameters run to the end of the segment.
                PathParams::Strip => break,
                PathParams::Keep => out.push(';'),
            },
            b'\\' => match rules.escaped_slashes {
                EscapedSlashes::Reject => return Err(PathProblem::Backslash),
                EscapedSlashes::Keep => push_escaped(out, b),
            },
            0..=0x1f | 0x7f => return Err(PathProblem::ControlCharacter),
            _ => push_escaped(out, b),
        }
    }
    flush_utf8(run, out, rules)?;
    Ok(encoded_dot)
}

/// The canonical form of `raw` (the path as received, without query or fragment), or why it is
/// refused. Idempotent: the canonical form of a canonical path is itself.
pub fn canonical_path(raw: &str, rules: &PathRules) -> Result<String, AuthError> {
    if raw.len() <= rules.max_path_bytes && is_plain_canonical(raw.as_bytes()) {
        return Ok(raw.to_owned());
    }
    canonical_path_full(raw, rules)
}

/// The common case in one scan: only characters that stand raw in a canonical path, no empty,
/// `.` or `..` segment (a trailing slash aside). Such a path is its own canonical form.
fn is_plain_canonical(b: &[u8]) -> bool {
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut seg_start = 1;
    for i in 1..=b.len() {
        let end = i == b.len();
        if end || b[i] == b'/' {
            let seg = &b[seg_start..i];
            // Windows aliases (a trailing `.`, `::$`, `~` and a digit) take the full path.
            if (seg.is_empty() && !end) || seg.ends_with(b".") || seg.windows(2).any(|w| w == b"::" || (w[0] == b'~' && w[1].is_ascii_digit())) {
                return false;
            }
            seg_start = i + 1;
        } else if !(is_unreserved(b[i]) || is_raw_pchar(b[i])) {
            return false;
        }
    }
    true
}

/// [`canonical_path`] without the fast path for already canonical paths (tests compare the two).
/// One pass, one output buffer: each segment is written in place and taken back if it is `.`,
/// `..` or empty.
#[doc(hidden)]
pub fn canonical_path_full(raw: &str, rules: &PathRules) -> Result<String, AuthError> {
    if raw.len() > rules.max_path_bytes {
        return Err(AuthError::PathTooLong { len: raw.len(), max: rules.max_path_bytes });
    }
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AuthError::AmbiguousPath(PathProblem::NotOriginForm));
    }
    let mut out = String::with_capacity(raw.len() + 1);
    // Where each kept segment's `/` starts in `out`.
    let mut starts: Vec<usize> = Vec::new();
    let mut run = Vec::new();
    let mut trailing_slash = false;
    let mut parts = bytes[1..].split(|&b| b == b'/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let start = out.len();
        out.push('/');
        let encoded_dot = segment(part, rules, &mut out, &mut run).map_err(AuthError::AmbiguousPath)?;
        match &out[start + 1..] {
            "." | ".." if encoded_dot => return Err(AuthError::AmbiguousPath(PathProblem::EncodedDotSegment)),
            "." => {
                out.truncate(start);
                trailing_slash = last;
            }
            ".." => {
                out.truncate(starts.pop().unwrap_or(0));
                trailing_slash = last;
            }
            // `//` merged; a last empty segment is the trailing slash.
            "" => {
                out.truncate(start);
                trailing_slash = last;
            }
            seg => {
                if rules.windows_aliases == WindowsAliases::Reject && is_windows_alias(seg) {
                    return Err(AuthError::AmbiguousPath(PathProblem::WindowsAlias));
                }
                starts.push(start);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    // `%25` then two hex digits (after decoding): a second decode would read another path.
    let o = out.as_bytes();
    if o.windows(5).any(|w| w[..3] == *b"%25" && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit()) {
        return Err(AuthError::AmbiguousPath(PathProblem::DoubleEncoding));
    }
    Ok(out)
}

/// A canonical segment that Windows reads as another name: a trailing `.` or space, an NTFS
/// stream (`::$`), or an 8.3 short name (`ADMINI~1`, `PROGR~12.TXT`: one to six characters, `~`,
/// digits, a base of at most eight characters, an extension of at most three).
fn is_windows_alias(seg: &str) -> bool {
    let b = seg.as_bytes();
    b.ends_with(b".") || b.ends_with(b"%20") || seg.contains("::$") || is_short_name(seg)
}

fn is_short_name(seg: &str) -> bool {
    let (base, ext) = seg.split_once('.').unwrap_or((seg, ""));
    let Some((stem, digits)) = base.rsplit_once('~') else { return false };
    (1..=6).contains(&stem.len()) && !digits.is_empty() && digits.bytes().all(|d| d.is_ascii_digit()) && base.len() <= 8 && ext.len() <= 3 && !ext.contains('.')
}

/// The method as forwarded: an RFC 9110 token, upper case (the Fetch standard upper-cases six
/// methods and keeps the case of others; origins differ, so the gate forwards one spelling).
/// `CONNECT`, `TRACE` and `TRACK` are refused (`405 method_not_allowed`): a Worker cannot relay
/// a tunnel, and a trace echoes the request's headers back.
pub fn canonical_method(raw: &str) -> Result<String, AuthError> {
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(is_tchar) {
        return Err(AuthError::BadMethod);
    }
    let m = raw.to_ascii_uppercase();
    if matches!(m.as_str(), "CONNECT" | "TRACE" | "TRACK") {
        return Err(AuthError::MethodNotAllowed);
    }
    Ok(m)
}

/// An RFC 9110 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name as CGI-style origins read it: lower case, `_` as `-`.
pub fn folded_header_name(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { char::from(b.to_ascii_lowercase()) }).collect()
}

/// Method override headers, folded.
pub const METHOD_OVERRIDE_HEADERS: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

/// The method override query parameter.
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Client headers that describe the connection: always removed; per `forwarded_headers: replace`
/// the first five are then set from what the gate knows.
pub const FORWARDED_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "fastly-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
];

/// Client headers that some frameworks read as the request's path (IIS URL Rewrite, Symfony,
/// Laravel, Envoy): honoured, they would make the origin serve another path than the gate
/// authorized. Always removed.
pub const TARGET_OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-script-name",
    "x-host",
    "x-forwarded-server",
    "x-original-host",
];

/// Client headers that origins behind an authenticating proxy take as the user's identity: only
/// the gate speaks for the user, so they are always removed.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-remote-user",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-user",
    "x-authenticated-user",
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "x-ms-client-principal-name",
    "x-amzn-oidc-identity",
    "x-amzn-oidc-data",
    "x-amzn-oidc-accesstoken",
    "x-goog-authenticated-user-email",
    "x-goog-authenticated-user-id",
    "x-goog-iap-jwt-assertion",
    "cf-access-jwt-assertion",
    "cf-access-authenticated-user-email",
];

/// Percent-decodes a query component (`+` is a space, as in forms). `None` if an escape is broken
/// or the result is not UTF-8.
pub fn decode_query_component(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let v = (hex_val(*b.get(i + 1)?)? << 4) | hex_val(*b.get(i + 2)?)?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query's `name=value` pairs with their names as origins read them (`None` where the
/// name's encoding is broken), in order: percent-decoded, then as PHP reads names (leading spaces
/// dropped, cut at NUL, ` ` `.` `[` as `_`), so `.method` and `access.token` are seen for what
/// a PHP origin takes them to be.
pub fn query_pairs(q: &str) -> impl Iterator<Item = (&str, Option<String>)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| (p, decode_query_component(p.split_once('=').map_or(p, |(k, _)| k)).map(|n| php_name(&n))))
}

/// A decoded query name as PHP reads it (the most lenient reader common origins have): leading
/// spaces dropped, everything from a NUL on dropped, ` `, `.` and `[` as `_` (PHP keeps a `[`
/// that opens an array key; reading every `[` as `_` only ever matches more names).
fn php_name(n: &str) -> String {
    let n = n.trim_start_matches(' ');
    let n = n.split('\0').next().unwrap_or("");
    n.chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect()
}

/// True if the query holds a method override parameter (by decoded name, any case).
pub fn has_method_override_param(q: &str) -> bool {
    query_pairs(q).any(|(_, n)| n.is_some_and(|n| n.eq_ignore_ascii_case(METHOD_OVERRIDE_PARAM)))
}

/// The client address, parsed, in one form: IPv4-mapped IPv6 as IPv4, IPv6 in its one textual
/// form (RFC 5952). `None` if absent or not an address.
pub fn client_ip(header: Option<&str>) -> Option<IpAddr> {
    header?.trim().parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

/// The address as a rate-limit key: IPv4 whole, IPv6 as its `/prefix_len` network (a client
/// holds a whole /64 and could otherwise rotate through it).
pub fn ip_bucket_text(ip: IpAddr, ipv6_prefix_len: u8) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The request as the gate decides on it and forwards it: the method and the path, canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// Upper-case token.
    pub method: String,
    /// Canonical path.
    pub path: String,
}

/// Brings a request to its canonical form, or refuses it (before any credential is read).
/// `path` is the path as received; `query` without `?`.
pub fn canonicalize(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    request: &RequestPolicy,
    rules: &PathRules,
) -> Result<CanonicalRequest, AuthError> {
    let method = canonical_method(method)?;
    let path = canonical_path(path, rules)?;
    if request.method_override == MethodOverride::Reject
        && (headers.iter().any(|(n, _)| METHOD_OVERRIDE_HEADERS.contains(&folded_header_name(n).as_str())) || has_method_override_param(query))
    {
        return Err(AuthError::MethodOverride);
    }
    Ok(CanonicalRequest { method, path })
}

/// A claim value ready for a header, per `request.claim_values`. Strings, numbers and booleans
/// are their text; an array of strings is an RFC 8941 list of strings (`"a", "b c"`), so
/// `["a b"]` and `["a", "b"]` differ at the origin. `None`: the value cannot be forwarded
/// verbatim (control or non-ASCII characters, leading or trailing whitespace) and the policy
/// says `reject`.
pub fn claim_header_value(value: &ClaimValue<'_>, mode: ClaimValues) -> Option<String> {
    let verbatim = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim_matches(' ') == s;
    let percent = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            // `+` too: form-decoding origins read a raw `+` as a space.
            if b <= 0x20 || b >= 0x7f || b == b'%' || b == b'+' {
                push_escaped(&mut out, b);
            } else {
                out.push(char::from(b));
            }
        }
        out
    };
    let one = |s: &str| match mode {
        ClaimValues::Percent => Some(percent(s)),
        ClaimValues::Reject if verbatim(s) => Some(s.to_owned()),
        ClaimValues::Reject => None,
    };
    match value {
        ClaimValue::Text(s) => one(s),
        ClaimValue::List(items) => {
            let mut out = String::new();
            for (i, s) in items.iter().enumerate() {
                let s = one(s)?;
                if i > 0 {
                    out.push_str(", ");
                }
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Some(out)
        }
    }
}

/// A claim as it is forwarded: a single text, or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue<'a> {
    /// A string, number or boolean, as text.
    Text(std::borrow::Cow<'a, str>),
    /// An array of strings.
    List(Vec<&'a str>),
}

/// `application/x-www-form-urlencoded` encoding of one value: unreserved characters as they are,
/// every other byte percent-encoded (a space as `%20`, which every form decoder reads).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
