//! The request side of the gate, with no I/O: finding the credential, and planning the request
//! that goes to the origin (credential removed, identity headers set, hop-by-hop headers dropped).

use super::canonical::{self, folded_header_name, ForwardedHeaders, MethodOverride, UnderscoreHeaders};
use super::config::{Policy, RESERVED_HEADER_PREFIX};
use super::error::AuthError;
use super::identity::Identity;
use super::log::CredentialSource;
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

/// Finds the credential: `Authorization: Bearer`, the configured cookie, the configured query
/// parameter, or an API key (the configured header or `Authorization: ApiKey`). A request that
/// carries credentials in more than one place, or several different ones, is refused (RFC 6750
/// §2: clients must use one method).
pub fn extract_credential(req: &RequestView<'_>, policy: &Policy) -> Result<Option<Credential>, AuthError> {
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
        } else if scheme.eq_ignore_ascii_case("apikey") {
            let key = rest.trim();
            if key.is_empty() {
                return Err(AuthError::ApiKeyMalformed(super::error::FormatError::Shape));
            }
            found.push(Credential { token: key.to_string(), source: CredentialSource::ApiKey });
        }
    }
    for v in req.header_values(&policy.api_keys.header) {
        let key = v.trim();
        if !key.is_empty() {
            found.push(Credential { token: key.to_string(), source: CredentialSource::ApiKey });
        }
    }
    if let Some(name) = &policy.cookie_name {
        for header in req.header_values("cookie") {
            for (k, v) in cookie_pairs(header) {
                if k == name && !v.is_empty() {
                    found.push(Credential { token: v.to_string(), source: CredentialSource::Cookie });
                }
            }
        }
    }
    if let Some(q) = &policy.query_param {
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

/// The request to send to the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPlan {
    /// Absolute URL.
    pub url: String,
    /// Headers, in order (names lower case).
    pub headers: Vec<(String, String)>,
}

/// Plans the origin request: the client's credential is removed in every form (bearer token,
/// cookie, query parameter, API key header); client headers that read as one the gate protects
/// (identity headers, `x-edgeward-*`, the request id, `forward_claims` targets, upstream
/// credential and API key headers), once lower-cased with `_` read as `-`, are removed, and per
/// `request.underscore_headers` every header with `_`; hop-by-hop headers and those named in
/// `Connection` are dropped; `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are replaced or
/// removed, and so are headers some frameworks read as the request path (`X-Original-URL`, ...);
/// method overrides are removed (`request.method_override: strip`); then the verified
/// claims, `upstream` (header, value: the route's origin credential) and the request id are set.
/// The URL is the origin's plus the canonical path. A claim no header can carry verbatim fails
/// the request (`claim_not_forwardable`) unless `request.claim_values` is `percent`.
pub fn plan_forward(
    req: &RequestView<'_>,
    verified: Option<Identity<'_>>,
    upstream: Option<(&str, &str)>,
    policy: &Policy,
    request_id: &str,
) -> Result<ForwardPlan, AuthError> {
    let rp = &policy.request;
    let mut connection_listed: Vec<String> = Vec::new();
    for v in req.header_values("connection") {
        connection_listed.extend(v.split(',').map(|s| folded_header_name(s.trim())).filter(|s| !s.is_empty()));
    }
    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 8);
    for (name, value) in req.headers {
        let n = folded_header_name(name);
        let drop = (rp.underscore_headers == UnderscoreHeaders::Drop && name.contains('_'))
            || HOP_BY_HOP.contains(&n.as_str())
            || connection_listed.contains(&n)
            || n == "host"
            || n == "authorization"
            || n.starts_with(RESERVED_HEADER_PREFIX)
            || policy.protected_headers.contains(&n)
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
            if let Some(name) = &policy.cookie_name {
                let kept: Vec<&str> =
                    value.split(';').map(str::trim).filter(|p| !p.is_empty() && p.split_once('=').map_or(p.trim(), |(k, _)| k.trim()) != name).collect();
                if !kept.is_empty() {
                    headers.push((n, kept.join("; ")));
                }
                continue;
            }
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
        for (header, claim) in &policy.forward_claims {
            if let Some(value) = v.claim_value(claim) {
                let text = canonical::claim_header_value(&value, rp.claim_values).ok_or_else(|| AuthError::ClaimNotForwardable { header: header.clone() })?;
                headers.push((header.clone(), text));
            }
        }
    }
    if let Some((h, v)) = upstream {
        headers.push((h.to_ascii_lowercase(), v.to_string()));
    }
    headers.push((policy.request_id_header.clone(), request_id.to_string()));
    let mut url = format!("{}{}", policy.origin, if req.path.is_empty() { "/" } else { req.path });
    let query: Vec<&str> = canonical::query_pairs(req.query)
        .filter(|(_, name)| {
            let Some(name) = name else { return true };
            // The token parameter under any case of its name (public routes too: a credential
            // never reaches the origin), and the override parameter.
            let token_param = policy.query_param.as_deref().is_some_and(|q| q.eq_ignore_ascii_case(name));
            let override_param = rp.method_override == MethodOverride::Strip && name.eq_ignore_ascii_case(canonical::METHOD_OVERRIDE_PARAM);
            !(token_param || override_param)
        })
        .map(|(pair, _)| pair)
        .collect();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    Ok(ForwardPlan { url, headers })
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
