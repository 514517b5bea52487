//! The request side of the gate, with no I/O: finding the credential, and planning the request
//! that goes to the origin (credential removed, identity headers set, hop-by-hop headers dropped).

use super::canonical::{self, folded_header_name, ForwardedHeaders, MethodOverride, RequestPolicy, UnderscoreHeaders};
use super::error::AuthError;
use super::identity::Identity;
use super::log::CredentialSource;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A credential taken from the request.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The token text (never log it; log [`super::log::fingerprint`] of it).
    pub token: String,
    /// Where it was.
    pub source: CredentialSource,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({:?}, {})", self.source, super::log::fingerprint(self.token.as_bytes()))
    }
}

/// A read-only view of the request the gate needs, after [`canonical::canonicalize`].
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, canonical (upper case).
    pub method: &'a str,
    /// Path, canonical: what the rules see and the origin receives.
    pub path: &'a str,
    /// Query string without `?` (may be empty).
    pub query: &'a str,
    /// Headers (names in any case; repeated names allowed).
    pub headers: &'a [(String, String)],
    /// The client address (`CF-Connecting-IP`, parsed: [`canonical::client_ip`]).
    pub client_ip: Option<IpAddr>,
    /// The request URL's own origin (`https://edge.example`), for CSRF and `X-Forwarded-*`.
    pub origin: &'a str,
}

impl RequestView<'_> {
    fn header_values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Where [`extract_credential`] looks for a credential besides `Authorization`. The validated
/// configuration converts into it (`extract_credential(&view, &policy)`).
#[derive(Debug, Clone, Copy)]
pub struct CredentialPlaces<'p> {
    /// The API key header (lower case).
    pub api_key_header: &'p str,
    /// The cookie that may carry the token.
    pub cookie_name: Option<&'p str>,
    /// The query parameter that may carry the token.
    pub query_param: Option<&'p str>,
    /// A WebSocket upgrade on a route that takes it: the `edgeward.bearer.` subprotocol entry
    /// ([`super::websocket::protocol_credential`]) may carry the token.
    pub websocket_protocol: bool,
}

/// What [`plan_forward`] reads from the configuration. The validated configuration converts
/// into it (`plan_forward(&view, identity, upstream, &policy, request_id)`).
#[derive(Debug, Clone, Copy)]
pub struct ForwardRules<'p> {
    /// The origin: a URL without a trailing slash, or `service:NAME` ([`validate_origin`]).
    pub origin: &'p str,
    /// The `request` section (underscore headers, method overrides, `X-Forwarded-*`, claim values).
    pub request: &'p RequestPolicy,
    /// Where the client's credential may be: it is removed in every form.
    pub credentials: CredentialPlaces<'p>,
    /// Forwarded claims as (lower-case header, claim).
    pub forward_claims: &'p [(String, String)],
    /// The request id header (lower case).
    pub request_id_header: &'p str,
    /// The header names the gate sets or keeps for itself, folded (lower case, `_` as `-`): a
    /// client header that folds to one of them is never forwarded.
    pub protected_headers: &'p [String],
}

/// Header names the gate sets itself and so never takes from a client.
pub const RESERVED_HEADER_PREFIX: &str = "x-edgeward-";

/// Validates `cookie_name` and `query_param`, the places a token may be besides the
/// `Authorization` header, and returns the warnings they deserve. The error is (field, message).
pub fn validate_token_places(cookie_name: Option<&str>, query_param: Option<&str>) -> Result<Vec<String>, (String, String)> {
    let mut warnings = Vec::new();
    if let Some(c) = cookie_name {
        if c.is_empty() || !c.bytes().all(canonical::is_tchar) {
            return Err(("cookie_name".into(), "not a valid cookie name".into()));
        }
        if !c.starts_with("__Host-") {
            warnings.push(format!("cookie_name {c:?} lacks the __Host- prefix; the cookie could be set by a sibling subdomain"));
        }
    }
    if let Some(q) = query_param {
        if q.is_empty() || !q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(("query_param".into(), "letters, digits, _ and - only".into()));
        }
        warnings.push("query_param is set: tokens in URLs leak into logs and Referer headers (RFC 6750 §2.3)".into());
    }
    Ok(warnings)
}

/// Validates `forward_claims` (header name -> claim), the claims [`plan_forward`] sets as
/// headers, and returns them as (lower-case header, claim). The error is (field, message).
pub fn validate_forward_claims(forward_claims: BTreeMap<String, String>) -> Result<Vec<(String, String)>, (String, String)> {
    let mut claims = Vec::new();
    for (h, c) in forward_claims {
        let lower = h.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(canonical::is_tchar) {
            return Err((format!("forward_claims.{h}"), "not a valid header name".into()));
        }
        if matches!(lower.as_str(), "authorization" | "cookie" | "host" | "content-length" | "transfer-encoding" | "x-edgeward-auth" | "x-edgeward-key-id") {
            return Err((format!("forward_claims.{h}"), "this header cannot carry a claim".into()));
        }
        claims.push((lower, c));
    }
    Ok(claims)
}

/// Validates `request_id_header`, which [`plan_forward`] sets, and returns it lower case. The
/// error is (field, message).
pub fn validate_request_id_header(name: &str) -> Result<String, (String, String)> {
    let name = name.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(canonical::is_tchar) {
        return Err(("request_id_header".into(), "not a valid header name".into()));
    }
    Ok(name)
}

/// Finds the credential: `Authorization: Bearer`, the configured cookie, the configured query
/// parameter, the `edgeward.bearer.` WebSocket subprotocol (on an upgrade, when the caller says
/// so), or an API key (the configured header or `Authorization: ApiKey`). A request that
/// carries credentials in more than one place, or several different ones, is refused (RFC 6750
/// §2: clients must use one method).
pub fn extract_credential<'p>(req: &RequestView<'_>, places: impl Into<CredentialPlaces<'p>>) -> Result<Option<Credential>, AuthError> {
    let places = places.into();
    let mut found: Vec<Credential> = Vec::new();
    for v in req.header_values("authorization") {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if token.is_empty() {
                return Err(AuthError::MalformedToken);
            }
            found.push(Credential { token: token.to_string(), source: CredentialSource::Header });
        } else if scheme.eq_ignore_ascii_case("dpop") {
            let token = rest.trim();
            if token.is_empty() {
                return Err(AuthError::MalformedToken);
            }
            found.push(Credential { token: token.to_string(), source: CredentialSource::Dpop });
        } else if scheme.eq_ignore_ascii_case("apikey") {
            let key = rest.trim();
            if key.is_empty() {
                return Err(AuthError::ApiKeyMalformed(super::error::FormatError::Shape));
            }
            found.push(Credential { token: key.to_string(), source: CredentialSource::ApiKey });
        }
    }
    for v in req.header_values(places.api_key_header) {
        let key = v.trim();
        if !key.is_empty() {
            found.push(Credential { token: key.to_string(), source: CredentialSource::ApiKey });
        }
    }
    if let Some(name) = places.cookie_name {
        for header in req.header_values("cookie") {
            for (k, v) in cookie_pairs(header) {
                if k == name && !v.is_empty() {
                    found.push(Credential { token: v.to_string(), source: CredentialSource::Cookie });
                }
            }
        }
    }
    if let Some(q) = places.query_param {
        // By decoded name: `access%5Ftoken` is `access_token`. Another case of the name is refused,
        // never forwarded (an origin may read it case-insensitively).
        for (pair, name) in canonical::query_pairs(req.query) {
            let Some(name) = name else { continue };
            if name == *q {
                let raw = pair.split_once('=').map_or("", |(_, v)| v);
                let v = canonical::decode_query_component(raw).ok_or(AuthError::MalformedToken)?;
                if !v.is_empty() {
                    found.push(Credential { token: v, source: CredentialSource::Query });
                }
            } else if name.eq_ignore_ascii_case(q) {
                return Err(AuthError::AmbiguousQuery);
            }
        }
    }
    if places.websocket_protocol {
        if let Some(t) = super::websocket::protocol_credential(req.headers)? {
            found.push(Credential { token: t.to_string(), source: CredentialSource::Subprotocol });
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => {
            // The same token in several places (a browser sending the cookie along with the header)
            // is harmless; different tokens are ambiguous.
            let first = &found[0];
            if found.iter().all(|c| c.token == first.token && c.source.is_api_key() == first.source.is_api_key()) {
                Ok(Some(found.swap_remove(0)))
            } else {
                Err(AuthError::MalformedToken)
            }
        }
    }
}

fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k.trim(), v.trim().trim_matches('"')))
    })
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Checks an origin as configured (`origin`, `routes[].origin`): an absolute `http(s)` URL
/// without query or fragment (its path is a prefix; a trailing `/` is dropped), or
/// `service:NAME`, a service binding to another Worker. The normalized form, or what is wrong.
pub fn validate_origin(o: &str) -> Result<String, &'static str> {
    if let Some(name) = o.strip_prefix("service:") {
        let ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        return if ok { Ok(o.to_string()) } else { Err("service:NAME needs a binding name (letters, digits, _)") };
    }
    let origin = o.trim_end_matches('/');
    let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) || origin.contains(['?', '#']) || origin.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("must be an absolute http(s) URL without query or fragment, or service:NAME");
    }
    Ok(origin.to_string())
}

/// The request to send to the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPlan {
    /// Absolute URL.
    pub url: String,
    /// The service binding to send it through (`service:NAME` origins); `None`: fetch `url`.
    pub service: Option<String>,
    /// Headers, in order (names lower case).
    pub headers: Vec<(String, String)>,
}

/// Plans the origin request: the client's credential is removed in every form (bearer token,
/// cookie, query parameter, API key header, WebSocket subprotocol entry); client headers that read as one the gate protects
/// (identity headers, `x-edgeward-*`, the request id, `forward_claims` targets, upstream
/// credential and API key headers), once lower-cased with `_` read as `-`, are removed, and per
/// `request.underscore_headers` every header with `_`; hop-by-hop headers and those named in
/// `Connection` are dropped; `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are replaced or
/// removed, and so are headers some frameworks read as the request path (`X-Original-URL`, ...);
/// method overrides are removed (`request.method_override: strip`); then the verified
/// claims, `upstream` (header, value: the route's origin credential) and the request id are set.
/// The URL is the origin's plus the canonical path. A claim no header can carry verbatim fails
/// the request (`claim_not_forwardable`) unless `request.claim_values` is `percent`.
pub fn plan_forward<'p>(
    req: &RequestView<'_>,
    verified: Option<Identity<'_>>,
    upstream: Option<(&str, &str)>,
    rules: impl Into<ForwardRules<'p>>,
    request_id: &str,
) -> Result<ForwardPlan, AuthError> {
    let rules = rules.into();
    let rp = rules.request;
    let mut connection_listed: Vec<String> = Vec::new();
    for v in req.header_values("connection") {
        connection_listed.extend(v.split(',').map(|s| folded_header_name(s.trim())).filter(|s| !s.is_empty()));
    }
    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 8);
    for (name, value) in req.headers {
        let n = folded_header_name(name);
        let subprotocols = n == "sec-websocket-protocol";
        let drop = (rp.underscore_headers == UnderscoreHeaders::Drop && name.contains('_'))
            || HOP_BY_HOP.contains(&n.as_str())
            || connection_listed.contains(&n)
            || n == "host"
            || n == "authorization"
            || n == "dpop"
            || n.starts_with(RESERVED_HEADER_PREFIX)
            || rules.protected_headers.contains(&n)
            || canonical::FORWARDED_HEADERS.contains(&n.as_str())
            || canonical::TARGET_OVERRIDE_HEADERS.contains(&n.as_str())
            || canonical::IDENTITY_HEADERS.contains(&n.as_str())
            || (rp.method_override == MethodOverride::Strip && canonical::METHOD_OVERRIDE_HEADERS.contains(&n.as_str()));
        if drop {
            continue;
        }
        // Forwarded under its own name (lower case), not the folded one.
        let n = name.to_ascii_lowercase();
        if n == "cookie" {
            if let Some(name) = rules.credentials.cookie_name {
                let kept: Vec<&str> =
                    value.split(';').map(str::trim).filter(|p| !p.is_empty() && p.split_once('=').map_or(p.trim(), |(k, _)| k.trim()) != name).collect();
                if !kept.is_empty() {
                    headers.push((n, kept.join("; ")));
                }
                continue;
            }
        }
        if subprotocols {
            // The token subprotocol never reaches the origin, upgrade or not.
            if let Some(kept) = super::websocket::protocols_without_credential(value) {
                headers.push((n, kept));
            }
            continue;
        }
        headers.push((n, value.clone()));
    }
    if rp.forwarded_headers == ForwardedHeaders::Replace {
        let (proto, host) = req.origin.split_once("://").unwrap_or(("https", req.origin));
        let mut forwarded = String::new();
        if let Some(ip) = req.client_ip {
            headers.push(("x-forwarded-for".into(), ip.to_string()));
            headers.push(("x-real-ip".into(), ip.to_string()));
            forwarded = match ip {
                IpAddr::V4(a) => format!("for={a};"),
                IpAddr::V6(a) => format!("for=\"[{a}]\";"),
            };
        }
        if !host.is_empty() {
            headers.push(("x-forwarded-host".into(), host.to_string()));
            headers.push(("x-forwarded-proto".into(), proto.to_string()));
            forwarded.push_str(&format!("proto={proto};host=\"{host}\""));
        }
        if !forwarded.is_empty() {
            headers.push(("forwarded".into(), forwarded.trim_end_matches(';').to_string()));
        }
    }
    if let Some(v) = verified {
        headers.push(("x-edgeward-auth".into(), v.kind().into()));
        if let Some(id) = v.api_key_id() {
            headers.push(("x-edgeward-key-id".into(), id.into()));
        }
        // A sender-constrained token got here only with its proof of possession checked.
        if let Identity::Token(t) = v {
            if let Some(jkt) = t.dpop_jkt() {
                headers.push(("x-edgeward-cnf".into(), "dpop".into()));
                headers.push(("x-edgeward-jkt".into(), jkt.into()));
            } else if let Some(x5t) = t.cert_thumbprint() {
                headers.push(("x-edgeward-cnf".into(), "mtls".into()));
                headers.push(("x-edgeward-x5t-s256".into(), x5t.into()));
            }
        }
        for (header, claim) in rules.forward_claims {
            if let Some(value) = v.claim_value(claim) {
                let text = canonical::claim_header_value(&value, rp.claim_values).ok_or_else(|| AuthError::ClaimNotForwardable { header: header.clone() })?;
                headers.push((header.clone(), text));
            }
        }
    }
    if let Some((h, v)) = upstream {
        headers.push((h.to_ascii_lowercase(), v.to_string()));
    }
    headers.push((rules.request_id_header.to_string(), request_id.to_string()));
    // A service binding receives the request under the gate's own URL (the Worker behind it
    // routes by path); any other origin is its URL plus the canonical path.
    let service = rules.origin.strip_prefix("service:");
    let base = if service.is_some() { req.origin } else { rules.origin };
    let mut url = format!("{}{}", base, if req.path.is_empty() { "/" } else { req.path });
    let query: Vec<&str> = canonical::query_pairs(req.query)
        .filter(|(_, name)| {
            let Some(name) = name else { return true };
            // The token parameter under any case of its name (public routes too: a credential
            // never reaches the origin), and the override parameter.
            let token_param = rules.credentials.query_param.is_some_and(|q| q.eq_ignore_ascii_case(name));
            let override_param = rp.method_override == MethodOverride::Strip && name.eq_ignore_ascii_case(canonical::METHOD_OVERRIDE_PARAM);
            !(token_param || override_param)
        })
        .map(|(pair, _)| pair)
        .collect();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    Ok(ForwardPlan { url, headers, service: service.map(str::to_string) })
}

/// Splits an absolute request URL, as the runtime hands it over (already normalized by its URL
/// parser), into origin (`scheme://host[:port]`), path and query (without `?`; any fragment is
/// dropped). `None` if it is not an absolute http(s) URL.
pub fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let rest_start = if url.starts_with("https://") {
        8
    } else if url.starts_with("http://") {
        7
    } else {
        return None;
    };
    let url = url.split('#').next().unwrap_or(url);
    let path_start = url[rest_start..].find(['/', '?']).map_or(url.len(), |i| rest_start + i);
    let origin = &url[..path_start];
    if origin.len() == rest_start {
        return None;
    }
    let rest = &url[path_start..];
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some((origin, if path.is_empty() { "/" } else { path }, query))
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn split_url_table() {
        assert_eq!(split_url("https://edge.example/a/b?x=1&y=2"), Some(("https://edge.example", "/a/b", "x=1&y=2")));
        assert_eq!(split_url("http://127.0.0.1:8787/"), Some(("http://127.0.0.1:8787", "/", "")));
        assert_eq!(split_url("http://127.0.0.1:8787"), Some(("http://127.0.0.1:8787", "/", "")));
        assert_eq!(split_url("http://h?q=1"), Some(("http://h", "/", "q=1")));
        assert_eq!(split_url("http://h/p%2Fq?a=b?c#frag"), Some(("http://h", "/p%2Fq", "a=b?c")));
        assert_eq!(split_url("ftp://h/"), None);
        assert_eq!(split_url("http:///x"), None);
    }
}
