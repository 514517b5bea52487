//! The path canonicalizer (`core::canonical::canonical_path`) and the request entry point
//! (`Policy::canonical_request`: canonical method and path, then the letter-case check of the
//! route table), under every combination of the `request` switches that shape a path:
//! `escaped_slashes`, `path_params`, `windows_aliases`, `case_insensitive` (which also turns on the
//! refusal of ASCII look-alikes) and `case_ambiguity`. Input: byte 0 picks the combination (bit 0
//! `escaped_slashes: keep`, bit 1 `windows_aliases: keep`, bit 2 `case_insensitive`, bit 3
//! `case_ambiguity: allow`, bits 4–7 mod 3 `path_params` reject/strip/keep); the rest is the raw
//! path (UTF-8, broken bytes as U+FFFD). The policy's routes are fixed (see `ROUTES`). Checks:
//!
//! - no panic; a refusal is only ever `ambiguous_path` or `path_too_long`; the one-scan fast path
//!   and the full canonicalizer (`canonical_path_full`) always agree;
//! - **idempotent**: the canonical form `c` canonicalizes to itself;
//! - **never ambiguous**: `c` starts with `/`, has no `//`, no `.`/`..` segment, is ASCII, every
//!   `%` is followed by two upper-case hex digits that do not encode an unreserved character or a
//!   control character, escaped non-ASCII bytes are UTF-8, no `%25` followed by two hex digits,
//!   only characters RFC 3986 allows raw in a segment; with `escaped_slashes: reject` no
//!   `%2F`/`%5C`; with `path_params: reject` no `;` or `%3B`, with `strip` no raw `;`; with
//!   `windows_aliases: reject` no segment ending in `.` or `%20`, holding `::$`, or shaped like
//!   an 8.3 short name;
//! - **one spelling decides**: equivalent spellings of `c` built from it (unreserved characters
//!   percent-encoded with random hex case, escapes in lower case, non-ASCII raw, characters the
//!   canonicalizer encodes left raw, `./`, `x/../`, `..` above the root, doubled slashes, `;params`
//!   under `strip`) canonicalize to `c`, and `canonical_request` gives them the same result and
//!   the route table the same `requirement` (GET, HEAD, POST, DELETE, PROPFIND; `canonical_request`
//!   for GET and one other method per input);
//! - **letter case**: with case-insensitive routes, a spelling of `c` in other ASCII case gets the
//!   same decisions; with case-sensitive routes, a request that passes the case check gets the
//!   decision a case-insensitive origin would route it to, and so does every other-case spelling
//!   of it that also passes;
//! - settings are ordered: what the strictest switches accept, these accept with the same result;
//!   what is accepted with look-alikes refused is accepted the same without;
//! - `max_path_bytes` is the raw length: accepted at exactly the length, `414` one byte below.
#![no_main]

mod common;

use common::{flags, hex_lower, hex_upper, text, Rng};
use edgeward::core::access::Requirement;
use edgeward::core::canonical::{canonical_path, canonical_path_full, EscapedSlashes, PathParams, PathRules, WindowsAliases};
use edgeward::core::config::Policy;
use edgeward::core::error::AuthError;
use edgeward::core::route::RouteTable;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const BIG: usize = 65_536;
const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "DELETE", "PROPFIND"];

fn routes() -> serde_json::Value {
    serde_json::json!([
        {"path": "/health", "methods": ["GET"], "public": true},
        {"path": "/public/*", "public": true},
        {"path": "/admin", "public": true},
        {"path": "/admin/*", "scopes": ["admin"]},
        {"path": "/a/b", "scopes": ["ab"]},
        {"path": "/caf%C3%A9/*", "scopes": ["cafe"]},
        {"path": "/x;y/*", "scopes": ["semi"]},
        {"path": "/sl%2Fash/*", "scopes": ["slash"]},
        {"path": "/q%20r", "scopes": ["space"]},
        {"path": "/~u/*", "public": true},
        {"path": "/Docs/*", "methods": ["GET", "POST"], "scopes": ["docs"]},
        {"path": "/", "public": true}
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    es: EscapedSlashes,
    pp: PathParams,
    wa: WindowsAliases,
    ci: bool,
    allow_case: bool,
}

impl Setting {
    fn from_byte(f: u8) -> Setting {
        Setting {
            es: [EscapedSlashes::Reject, EscapedSlashes::Keep][usize::from(f & 1)],
            wa: [WindowsAliases::Reject, WindowsAliases::Keep][usize::from(f >> 1 & 1)],
            ci: f & 4 != 0,
            allow_case: f & 8 != 0,
            pp: [PathParams::Reject, PathParams::Strip, PathParams::Keep][usize::from(f >> 4) % 3],
        }
    }
    fn index(self) -> usize {
        usize::from(self.es == EscapedSlashes::Keep)
            | usize::from(self.wa == WindowsAliases::Keep) << 1
            | usize::from(self.ci) << 2
            | usize::from(self.allow_case) << 3
            | [PathParams::Reject, PathParams::Strip, PathParams::Keep].iter().position(|p| *p == self.pp).unwrap() << 4
    }
    fn name<T: std::fmt::Debug>(v: T) -> String {
        let s = format!("{v:?}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
    fn policy_json(self) -> String {
        serde_json::json!({
            "issuers": [{"issuer": "https://hs.example", "algorithms": ["HS256"], "jwks": {"keys": [{"kty": "oct", "k": "ERERERERERERERERERERERERERERERERERERERERERE"}]}}],
            "origin": "https://origin.example",
            "routes": routes(),
            "request": {
                "escaped_slashes": Self::name(self.es),
                "path_params": Self::name(self.pp),
                "windows_aliases": Self::name(self.wa),
                "case_insensitive": self.ci,
                "case_ambiguity": if self.allow_case { "allow" } else { "reject" },
                "max_path_bytes": BIG
            }
        })
        .to_string()
    }
}

/// Policies for the 48 settings (index = `Setting::index`), and the route table with ASCII case
/// folded everywhere (how a case-insensitive origin routes).
fn policies() -> &'static (Vec<Policy>, RouteTable) {
    static P: OnceLock<(Vec<Policy>, RouteTable)> = OnceLock::new();
    P.get_or_init(|| {
        let mut v = Vec::new();
        for i in 0..48u8 {
            let s = Setting::from_byte((i & 15) | (i >> 4) << 4);
            assert_eq!(s.index(), usize::from(i));
            v.push(Policy::from_json(&s.policy_json()).unwrap_or_else(|e| panic!("fuzz policy {s:?}: {e}")));
        }
        let folded = RouteTable::new(serde_json::from_value(routes()).unwrap()).unwrap().with_case_insensitive(true);
        (v, folded)
    })
}

fn policy(s: Setting) -> &'static Policy {
    &policies().0[s.index()]
}

fn decisions(t: &RouteTable, path: &str) -> Vec<Requirement> {
    METHODS.iter().map(|m| t.requirement(m, path)).collect()
}

/// Both canonicalizers, which must agree.
fn canon(raw: &str, r: &PathRules) -> Result<String, AuthError> {
    let fast = canonical_path(raw, r);
    let full = canonical_path_full(raw, r);
    assert_eq!(fast, full, "fast path and full canonicalizer disagree on {raw:?} under {r:?}");
    fast
}

fn is_windows_alias(seg: &str) -> bool {
    let short = || {
        let (base, ext) = seg.split_once('.').unwrap_or((seg, ""));
        base.rsplit_once('~').is_some_and(|(stem, digits)| {
            (1..=6).contains(&stem.len())
                && !digits.is_empty()
                && digits.bytes().all(|d| d.is_ascii_digit())
                && base.len() <= 8
                && ext.len() <= 3
                && !ext.contains('.')
        })
    };
    seg.ends_with('.') || seg.ends_with("%20") || seg.contains("::$") || short()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_raw_pchar(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@')
}

fn hexv(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Property 2: the canonical form is never ambiguous.
fn check_form(raw: &str, c: &str, r: &PathRules) {
    let ctx = || format!("raw {raw:?} -> {c:?} under {r:?}");
    assert!(c.starts_with('/'), "not origin form: {}", ctx());
    assert!(c.is_ascii(), "non-ASCII: {}", ctx());
    assert!(!c.contains("//"), "repeated slash: {}", ctx());
    for seg in c.split('/').skip(1) {
        assert!(seg != "." && seg != "..", "dot segment: {}", ctx());
        if r.windows_aliases == WindowsAliases::Reject {
            assert!(!is_windows_alias(seg), "Windows alias segment {seg:?}: {}", ctx());
        }
    }
    let b = c.as_bytes();
    let mut i = 0;
    let mut run: Vec<u8> = Vec::new();
    while i < b.len() {
        let x = b[i];
        if x == b'%' {
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else { panic!("broken escape: {}", ctx()) };
            assert!(h.is_ascii_digit() || (b'A'..=b'F').contains(&h), "escape not upper-case hex: {}", ctx());
            assert!(l.is_ascii_digit() || (b'A'..=b'F').contains(&l), "escape not upper-case hex: {}", ctx());
            let v = (hexv(h).unwrap() << 4) | hexv(l).unwrap();
            assert!(!is_unreserved(v), "escaped unreserved character: {}", ctx());
            assert!(v >= 0x20 && v != 0x7f, "escaped control character: {}", ctx());
            if v == 0x25 {
                let two_hex = b.get(i + 3).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 4).is_some_and(u8::is_ascii_hexdigit);
                assert!(!two_hex, "double encoding: {}", ctx());
            }
            if r.escaped_slashes == EscapedSlashes::Reject {
                assert!(v != b'/' && v != b'\\', "encoded slash under reject: {}", ctx());
            }
            if r.path_params == PathParams::Reject {
                assert!(v != b';', "encoded ; under reject: {}", ctx());
            }
            if v >= 0x80 {
                run.push(v);
            } else {
                assert!(std::str::from_utf8(&run).is_ok(), "escaped bytes not UTF-8: {}", ctx());
                run.clear();
            }
            i += 3;
            continue;
        }
        assert!(std::str::from_utf8(&run).is_ok(), "escaped bytes not UTF-8: {}", ctx());
        run.clear();
        let ok = is_unreserved(x) || is_raw_pchar(x) || x == b'/' || (x == b';' && r.path_params == PathParams::Keep);
        assert!(ok, "raw {:?} in canonical path: {}", x as char, ctx());
        i += 1;
    }
    assert!(std::str::from_utf8(&run).is_ok(), "escaped bytes not UTF-8: {}", ctx());
}

/// A piece of a canonical segment.
#[derive(Clone, Copy)]
enum Piece {
    Raw(u8),
    Esc(u8),
}

fn pieces(seg: &str) -> Vec<Piece> {
    let b = seg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(Piece::Esc((hexv(b[i + 1]).unwrap() << 4) | hexv(b[i + 2]).unwrap()));
            i += 3;
        } else {
            out.push(Piece::Raw(b[i]));
            i += 1;
        }
    }
    out
}

fn push_esc(out: &mut Vec<u8>, v: u8, rng: &mut Rng) {
    out.push(b'%');
    for d in [v >> 4, v & 15] {
        let ch = if rng.one_in(2) { hex_upper(d) } else { hex_lower(d) };
        out.push(ch as u8);
    }
}

/// A random segment name that is neither `.` nor `..`, possibly with an escape.
fn junk_segment(rng: &mut Rng, out: &mut Vec<u8>) {
    const A: &[u8] = b"abcXYZ019-._"; // no `~`: `a~1.x` would be an 8.3 short name
    let n = 1 + rng.below(4);
    for _ in 0..n {
        let ch = A[rng.below(A.len())];
        if rng.one_in(4) {
            push_esc(out, ch, rng);
        } else {
            out.push(ch);
        }
    }
    out.push(b'x'); // never only dots
}

/// Characters the canonicalizer percent-encodes when it finds them raw (so raw is an equivalent
/// spelling of the escape).
fn encoded_when_raw(v: u8, r: &PathRules) -> bool {
    matches!(v, b' ' | b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#' | b'?')
        || (v == b'\\' && r.escaped_slashes == EscapedSlashes::Keep)
}

/// An equivalent spelling of the canonical path `c` under `r`.
fn variant(c: &str, r: &PathRules, rng: &mut Rng) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(c.len() * 2);
    // `c == "/"` gives `[""]`; a trailing slash gives a last `""`.
    let segs: Vec<&str> = c[1..].split('/').collect();
    // `..` above the root stays at the root.
    if rng.one_in(4) {
        out.extend_from_slice(if rng.one_in(2) { b"/.." } else { b"/." });
    }
    for (k, seg) in segs.iter().enumerate() {
        // Extra segments before this one.
        while rng.one_in(3) {
            match rng.below(4) {
                0 => out.extend_from_slice(b"/."),
                1 => {
                    out.push(b'/');
                    junk_segment(rng, &mut out);
                    out.extend_from_slice(if r.path_params == PathParams::Strip && rng.one_in(2) { b"/..;p=1" } else { b"/.." });
                }
                2 => out.push(b'/'), // an empty segment: a doubled slash
                _ => {
                    if r.path_params == PathParams::Strip {
                        out.extend_from_slice(b"/.;j");
                    } else {
                        out.extend_from_slice(b"/.");
                    }
                }
            }
        }
        out.push(b'/');
        let last = k + 1 == segs.len();
        if seg.is_empty() {
            // The trailing slash (or the root): may be followed by `.`, `./`, or `x/..`.
            debug_assert!(last);
            match rng.below(5) {
                0 => out.push(b'.'),
                1 => out.extend_from_slice(b"./"),
                2 => {
                    junk_segment(rng, &mut out);
                    out.extend_from_slice(b"/..");
                }
                3 => out.push(b'/'),
                _ => {}
            }
            continue;
        }
        let ps = pieces(seg);
        let mut i = 0;
        while i < ps.len() {
            match ps[i] {
                Piece::Raw(b) if is_unreserved(b) && rng.one_in(3) => push_esc(&mut out, b, rng),
                Piece::Raw(b) => out.push(b),
                Piece::Esc(v) if v >= 0x80 => {
                    // The whole run of non-ASCII bytes: raw UTF-8 or escapes (any hex case).
                    let mut j = i;
                    let mut bytes = Vec::new();
                    while let Some(Piece::Esc(w)) = ps.get(j).copied().filter(|p| matches!(p, Piece::Esc(w) if *w >= 0x80)) {
                        bytes.push(w);
                        j += 1;
                    }
                    let raw_ok = std::str::from_utf8(&bytes).is_ok();
                    if raw_ok && rng.one_in(2) {
                        out.extend_from_slice(&bytes);
                    } else {
                        for w in bytes {
                            push_esc(&mut out, w, rng);
                        }
                    }
                    i = j;
                    continue;
                }
                Piece::Esc(v) if encoded_when_raw(v, r) && rng.one_in(2) => out.push(v),
                Piece::Esc(v) => push_esc(&mut out, v, rng),
            }
            i += 1;
        }
        if r.path_params == PathParams::Strip && rng.one_in(4) {
            out.extend_from_slice(b";jsessionid=%zz;x");
        }
        let _ = last;
    }
    out
}

/// `c` with random ASCII letters (outside escapes) in the other case.
fn case_variant(c: &str, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(c.len());
    let b = c.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push_str(&c[i..i + 3]);
            i += 3;
            continue;
        }
        let ch = b[i] as char;
        out.push(if ch.is_ascii_alphabetic() && rng.one_in(2) {
            if ch.is_ascii_lowercase() {
                ch.to_ascii_uppercase()
            } else {
                ch.to_ascii_lowercase()
            }
        } else {
            ch
        });
        i += 1;
    }
    out
}

fn run(data: &[u8]) {
    let Some((f, rest)) = flags(data) else { return };
    let raw = text(rest);
    let raw = raw.as_ref();
    let s = Setting::from_byte(f);
    let p = policy(s);
    let folded = &policies().1;
    let r = p.path_rules;
    assert_eq!(r.refuse_ascii_lookalikes, s.ci);
    let mut rng = Rng::from_bytes(data);
    let res = canon(raw, &r);
    // GET and one other method per input (all five every input would halve the speed).
    let methods = ["GET", METHODS[1 + rng.below(METHODS.len() - 1)]];
    let req = |m: &str, path: &str| p.canonical_request(m, path, "", &[]);
    match &res {
        Err(AuthError::AmbiguousPath(_)) => {}
        Err(e) => panic!("unexpected refusal {e:?} of {raw:?} under {s:?}"),
        Ok(c) => {
            check_form(raw, c, &r);
            assert_eq!(canon(c, &r).as_ref(), Ok(c), "not idempotent: {raw:?} under {s:?}");
            let want = decisions(&p.routes, c);
            let want_req: Vec<_> = methods.iter().map(|m| req(m, c)).collect();
            for (m, w) in methods.iter().zip(&want_req) {
                match w {
                    Ok(cr) => assert_eq!((cr.method.as_str(), cr.path.as_str()), (*m, c.as_str())),
                    Err(e) => assert!(!s.allow_case && matches!(e, AuthError::AmbiguousPath(_)), "canonical_request({m}, {c:?}): {e:?}"),
                }
            }
            assert_eq!(req("GET", raw), want_req[0], "canonical_request differs between {raw:?} and its canonical form");
            {
                let v = variant(c, &r, &mut rng);
                let Ok(v) = String::from_utf8(v) else { panic!("variant not UTF-8") };
                let got = canon(&v, &r);
                assert_eq!(got.as_ref(), Ok(c), "equivalent spelling {v:?} of {c:?} (from {raw:?}) under {s:?}");
                assert_eq!(decisions(&p.routes, &got.unwrap()), want, "route decision differs for {v:?}");
                assert_eq!(req(methods[1], &v), want_req[1], "canonical_request({}) differs for {v:?} and {c:?}", methods[1]);
            }
            // Letter case.
            let cv = case_variant(c, &mut rng);
            let got = canon(&cv, &r);
            assert_eq!(got.as_ref(), Ok(&cv), "case variant {cv:?} of {c:?} is not canonical under {s:?}");
            if s.ci {
                assert_eq!(decisions(&p.routes, &cv), want, "case-insensitive decision differs for {cv:?} vs {c:?}");
            } else if !s.allow_case {
                for (i, m) in methods.into_iter().enumerate() {
                    let (a, b) = (want_req[i].is_ok(), req(m, &cv).is_ok());
                    if a {
                        assert_eq!(
                            p.routes.requirement(m, c),
                            folded.requirement(m, c),
                            "{m} {c:?} passes the case check but a case-insensitive origin decides otherwise"
                        );
                    }
                    if a && b {
                        assert_eq!(
                            p.routes.requirement(m, c),
                            p.routes.requirement(m, &cv),
                            "{m} {c:?} and {cv:?} both pass the case check but are decided differently"
                        );
                    }
                }
            }
        }
    }
    // Settings are ordered: what the strictest switches accept, these accept with the same result.
    let strict = Setting { es: EscapedSlashes::Reject, pp: PathParams::Reject, wa: WindowsAliases::Reject, ..s };
    if let Ok(c) = canon(raw, &policy(strict).path_rules) {
        assert_eq!(res.as_ref(), Ok(&c), "strict accepted {raw:?} but {s:?} differs");
    }
    if let Ok(c) = &res {
        let mut lax = r;
        lax.refuse_ascii_lookalikes = false;
        assert_eq!(canon(raw, &lax).as_ref(), Ok(c), "look-alike refusal changed an accepted path {raw:?}");
        lax.windows_aliases = WindowsAliases::Keep;
        lax.escaped_slashes = EscapedSlashes::Keep;
        assert_eq!(canon(raw, &lax).as_ref(), Ok(c), "keep switches changed an accepted path {raw:?}");
    }
    // The length limit is on the raw path.
    if !raw.is_empty() {
        let mut r = r;
        r.max_path_bytes = raw.len();
        assert_eq!(canon(raw, &r), res, "result changed at max_path_bytes = len for {raw:?}");
        r.max_path_bytes = raw.len() - 1;
        assert!(matches!(canon(raw, &r), Err(AuthError::PathTooLong { .. })), "not 414 one byte over the limit: {raw:?}");
    }
}

fuzz_target!(|data: &[u8]| run(data));
