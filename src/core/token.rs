//! Parsing a compact JWS into an [`UnverifiedToken`]: size limit, three canonical base64url
//! segments, strict JSON header and claims, and the header rules that need no key.
//! Nothing here is trusted: the name says so.

use super::alg::Algorithm;
use super::error::AuthError;
use super::json::{b64url_decode, parse_strict_object, scan_header, HeaderMember, HeaderScan, StrictJsonError};
use serde_json::{Map, Value};

/// The header members Edgeward reads. `jwk`, `jku`, `x5u` and `x5c` are never read: keys come only
/// from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedHeader {
    /// `alg`.
    pub alg: Algorithm,
    /// `kid`.
    pub kid: Option<String>,
}

/// A token whose structure is sound but whose signature and claims are not yet checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken<'t> {
    pub(crate) raw: &'t str,
    pub(crate) header: UnverifiedHeader,
    pub(crate) claims: Map<String, Value>,
    pub(crate) signing_input: &'t str,
    pub(crate) signature: Vec<u8>,
}

/// Longest `alg` or `kid` echoed into errors and logs.
const ECHO_MAX: usize = 64;

pub(crate) fn echo(s: &str) -> String {
    s.chars().take(ECHO_MAX).filter(|c| (' '..='~').contains(c)).collect()
}

fn json_err(e: StrictJsonError, what: &'static str, claims: bool) -> AuthError {
    match e {
        StrictJsonError::Duplicate(name) => AuthError::DuplicateMember(echo(&name)),
        StrictJsonError::Syntax if claims => AuthError::MalformedClaims(what),
        StrictJsonError::Syntax => AuthError::MalformedHeader(what),
    }
}

impl<'t> UnverifiedToken<'t> {
    /// Parses `raw` under the size limit. Header checks that need no key happen here, in the
    /// documented order; the `alg` allow-list is checked later, per issuer.
    pub fn parse(raw: &'t str, max_token_bytes: usize) -> Result<UnverifiedToken<'t>, AuthError> {
        if raw.len() > max_token_bytes {
            return Err(AuthError::TokenTooLarge { len: raw.len(), max: max_token_bytes });
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthError::MalformedToken);
        };
        if h.is_empty() || p.is_empty() {
            return Err(AuthError::MalformedToken);
        }
        let header_bytes = b64url_decode(h).ok_or(AuthError::MalformedToken)?;
        let claims_bytes = b64url_decode(p).ok_or(AuthError::MalformedToken)?;
        let signature = b64url_decode(s).ok_or(AuthError::MalformedToken)?;
        let header = scan_header(&header_bytes).map_err(|e| json_err(e, "not a JSON object", false))?;
        let header = check_header(&header)?;
        if signature.is_empty() {
            return Err(AuthError::BadSignature);
        }
        let claims = parse_strict_object(&claims_bytes).map_err(|e| json_err(e, "not a JSON object", true))?;
        Ok(UnverifiedToken { raw, header, claims, signing_input: &raw[..h.len() + 1 + p.len()], signature })
    }

    /// The header (untrusted).
    pub fn header(&self) -> &UnverifiedHeader {
        &self.header
    }

    /// The claims (untrusted).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `iss` claim, if it is a string (untrusted).
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

fn check_header(h: &HeaderScan<'_>) -> Result<UnverifiedHeader, AuthError> {
    let alg = match &h.alg {
        None => return Err(AuthError::AlgMissing),
        Some(HeaderMember::Str(s)) => s,
        Some(HeaderMember::NotStr) => return Err(AuthError::MalformedHeader("alg is not a string")),
    };
    if alg.trim().eq_ignore_ascii_case("none") {
        return Err(AuthError::AlgNone);
    }
    let alg = Algorithm::from_name(alg).ok_or_else(|| AuthError::AlgNotAllowed(echo(alg)))?;
    if h.crit {
        return Err(AuthError::UnsupportedHeader("crit"));
    }
    if h.b64 {
        return Err(AuthError::UnsupportedHeader("b64"));
    }
    if h.zip {
        return Err(AuthError::UnsupportedHeader("zip"));
    }
    let kid = match &h.kid {
        None => None,
        Some(HeaderMember::Str(s)) => Some(s.to_string()),
        Some(HeaderMember::NotStr) => return Err(AuthError::MalformedHeader("kid is not a string")),
    };
    match &h.typ {
        None => {}
        Some(HeaderMember::Str(t)) => {
            // RFC 7519 §5.1 and RFC 8725 §3.11: a JWT, or an explicitly typed JWT (`at+jwt`, ...),
            // compared without case.
            let b = t.as_bytes();
            let typed = b.len() >= 4 && b[b.len() - 4..].eq_ignore_ascii_case(b"+JWT");
            if !(t.eq_ignore_ascii_case("JWT") || typed) {
                return Err(AuthError::MalformedHeader("typ is not a JWT type"));
            }
        }
        Some(HeaderMember::NotStr) => return Err(AuthError::MalformedHeader("typ is not a string")),
    }
    match &h.cty {
        None => {}
        Some(HeaderMember::NotStr) => return Err(AuthError::MalformedHeader("cty is not a string")),
        // A nested JWT (cty: JWT) would need a second verification this gate does not do.
        Some(HeaderMember::Str(c)) if c.eq_ignore_ascii_case("JWT") => return Err(AuthError::MalformedHeader("nested JWTs are not accepted")),
        Some(HeaderMember::Str(_)) => {}
    }
    Ok(UnverifiedHeader { alg, kid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::b64url_encode;

    fn tok(header: &str, claims: &str, sig: &[u8]) -> String {
        format!("{}.{}.{}", b64url_encode(header.as_bytes()), b64url_encode(claims.as_bytes()), b64url_encode(sig))
    }

    fn parse_err(t: &str) -> AuthError {
        UnverifiedToken::parse(t, 16384).unwrap_err()
    }

    #[test]
    fn structure() {
        let good = tok(r#"{"alg":"RS256","kid":"a"}"#, r#"{"sub":"x"}"#, b"sig");
        let t = UnverifiedToken::parse(&good, 16384).unwrap();
        assert_eq!(t.header().alg, Algorithm::RS256);
        assert_eq!(t.header().kid.as_deref(), Some("a"));
        assert_eq!(t.signing_input, good.rsplit_once('.').unwrap().0);
        assert_eq!(UnverifiedToken::parse(&good, 10).unwrap_err(), AuthError::TokenTooLarge { len: good.len(), max: 10 });
        assert_eq!(parse_err(&format!("{good}.x")), AuthError::MalformedToken);
        assert_eq!(parse_err("a.b"), AuthError::MalformedToken);
        assert_eq!(parse_err(&good.replacen('.', "=.", 1)), AuthError::MalformedToken);
        assert_eq!(parse_err(&format!(".{}", good.split_once('.').unwrap().1)), AuthError::MalformedToken);
        assert_eq!(parse_err(&tok("[1]", "{}", b"s")), AuthError::MalformedHeader("not a JSON object"));
        assert_eq!(parse_err(&tok(r#"{"alg":"RS256"}"#, "[]", b"s")), AuthError::MalformedClaims("not a JSON object"));
        assert_eq!(parse_err(&tok(r#"{"alg":"RS256"}"#, "{}", b"")), AuthError::BadSignature);
    }

    #[test]
    fn header_rules() {
        let e = |h: &str| parse_err(&tok(h, "{}", b"s"));
        assert_eq!(e(r#"{"kid":"a"}"#), AuthError::AlgMissing);
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(e(&format!(r#"{{"alg":"{none}"}}"#)), AuthError::AlgNone);
        }
        assert_eq!(e(r#"{"alg":"RS256","alg":"none"}"#), AuthError::DuplicateMember("alg".into()));
        assert_eq!(e(r#"{"alg":"rs256"}"#), AuthError::AlgNotAllowed("rs256".into()));
        assert_eq!(e(r#"{"alg":1}"#), AuthError::MalformedHeader("alg is not a string"));
        assert_eq!(e(r#"{"alg":"RS256","crit":["exp"]}"#), AuthError::UnsupportedHeader("crit"));
        assert_eq!(e(r#"{"alg":"RS256","b64":false}"#), AuthError::UnsupportedHeader("b64"));
        assert_eq!(e(r#"{"alg":"RS256","zip":"DEF"}"#), AuthError::UnsupportedHeader("zip"));
        assert_eq!(e(r#"{"alg":"RS256","kid":7}"#), AuthError::MalformedHeader("kid is not a string"));
        assert_eq!(e(r#"{"alg":"RS256","typ":"JOSE+JSON"}"#), AuthError::MalformedHeader("typ is not a JWT type"));
        assert_eq!(e(r#"{"alg":"RS256","cty":"JWT"}"#), AuthError::MalformedHeader("nested JWTs are not accepted"));
        assert!(UnverifiedToken::parse(&tok(r#"{"alg":"ES256","typ":"at+jwt","jku":"https://evil","x5u":"https://evil"}"#, "{}", b"s"), 16384).is_ok());
    }

    #[test]
    fn duplicate_claims_rejected() {
        assert_eq!(parse_err(&tok(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#, b"s")), AuthError::DuplicateMember("sub".into()));
    }

    #[test]
    fn echoed_alg_is_bounded_and_printable() {
        let long = "A".repeat(500) + "\n";
        match parse_err(&tok(&format!(r#"{{"alg":"{}"}}"#, long.replace('\n', "\\n")), "{}", b"s")) {
            AuthError::AlgNotAllowed(s) => assert!(s.len() <= ECHO_MAX && !s.contains('\n')),
            other => panic!("{other:?}"),
        }
    }
}
