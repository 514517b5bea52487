//! The client's tokens, read or made without verifying anything: a JWT's header and claims
//! ([`decode_unverified`]) and when to refresh it ([`refresh_at`]), random tokens and PKCE
//! challenges ([`random_token`], [`pkce_challenge`]), an API key's offline format check
//! ([`check_api_key`]), and a DPoP key's thumbprint ([`jwk_thumbprint`]).

use super::error::WebError;
use crate::core::error::AuthError;
use crate::core::json::{b64url_decode, b64url_encode, parse_strict_object, StrictJsonError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The offline API-key check (format and checksum): `{valid, env, reason}`.
pub fn check_api_key(key: &str) -> Value {
    use crate::core::apikey::PresentedKey;
    use crate::core::error::FormatError;
    match PresentedKey::parse(key.trim(), None) {
        Ok(k) => json!({"valid": true, "env": k.env(), "reason": null}),
        Err(e) => {
            let reason = match e {
                FormatError::Prefix => "prefix",
                FormatError::Shape => "shape",
                // Environment cannot happen without an expected one.
                FormatError::Checksum | FormatError::Environment => "checksum",
            };
            json!({"valid": false, "env": null, "reason": reason})
        }
    }
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of a public JWK, by the gate's own code: the key
/// is read as the gate reads a DPoP proof's `jwk` ([`parse_public_jwk`]) and hashed as the gate
/// hashes it before comparing a token's `cnf.jkt` ([`thumbprint`]). A key the gate would refuse
/// in a proof (private members, `oct`, an RSA modulus under 2048 bits, a curve it does not
/// verify) is an `invalid_argument` here rather than a thumbprint that could never match.
///
/// [`parse_public_jwk`]: crate::core::jwk::parse_public_jwk
/// [`thumbprint`]: crate::core::jwk::thumbprint
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, WebError> {
    use crate::core::jwk::{parse_public_jwk, thumbprint};
    let key = parse_public_jwk(jwk).map_err(|why| WebError::invalid_argument(format!("jwk: {why}")))?;
    Ok(thumbprint(&key))
}

/// Largest token [`decode_unverified`] reads (the configuration's upper bound for
/// `max_token_bytes`).
pub const MAX_DECODE_BYTES: usize = 1 << 20;

/// Decodes header and claims without verifying anything: for display and for client-side
/// scheduling only. Structure is read as strictly as the gate reads it (canonical base64url,
/// duplicate members rejected), but no header rule or claim is checked, so an `alg: none` token
/// decodes too.
pub fn decode_unverified(token: &str) -> Result<Value, WebError> {
    if token.len() > MAX_DECODE_BYTES {
        return Err(AuthError::TokenTooLarge { len: token.len(), max: MAX_DECODE_BYTES }.into());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::MalformedToken.into());
    };
    let decode = |seg: &str| b64url_decode(seg).filter(|_| !seg.is_empty()).ok_or(AuthError::MalformedToken);
    let (header, claims) = (decode(h)?, decode(p)?);
    b64url_decode(s).ok_or(AuthError::MalformedToken)?;
    let strict = |bytes: &[u8], claims: bool| {
        parse_strict_object(bytes).map_err(|e| match e {
            StrictJsonError::Duplicate(name) => AuthError::DuplicateMember(name.chars().take(64).collect()),
            StrictJsonError::Syntax if claims => AuthError::MalformedClaims("not a JSON object"),
            StrictJsonError::Syntax => AuthError::MalformedHeader("not a JSON object"),
        })
    };
    Ok(json!({"header": strict(&header, false)?, "claims": strict(&claims, true)?}))
}

/// Options of [`refresh_at`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshOptions {
    /// Refresh at least this long before `exp` (clock skew and round trip). Default 60.
    pub skew_secs: i64,
    /// Fraction (0 to 1) of the token's usable lifetime by which the refresh may randomly move
    /// earlier, so that many clients do not refresh at the same instant. Default 0.1.
    pub jitter: f64,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions { skew_secs: 60, jitter: 0.1 }
    }
}

/// When a client should refresh `token` (Unix seconds), from its unverified `exp` and `iat`;
/// `None` when it has no `exp`. `random01` is uniform in `[0, 1)`.
///
/// The deadline is `exp − skew_secs`; the refresh time is drawn from the last `jitter` part of
/// the span `[iat, deadline]` (or is the deadline when `iat` is missing or not before it).
pub fn refresh_at(token: &str, opts: RefreshOptions, random01: f64) -> Result<Option<i64>, WebError> {
    if !(0.0..=1.0).contains(&opts.jitter) {
        return Err(WebError::invalid_argument("jitter must be a number from 0 to 1"));
    }
    if !(0..=1_000_000_000).contains(&opts.skew_secs) {
        return Err(WebError::invalid_argument("skewSecs must be a non-negative integer"));
    }
    let decoded = decode_unverified(token)?;
    let numeric = |name: &'static str| -> Result<Option<f64>, WebError> {
        match decoded["claims"].get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(Some)
                .ok_or_else(|| AuthError::MalformedClaims(if name == "exp" { "exp is not a NumericDate" } else { "iat is not a NumericDate" }).into()),
        }
    };
    let Some(exp) = numeric("exp")? else { return Ok(None) };
    let deadline = exp - opts.skew_secs as f64;
    let window = match numeric("iat")? {
        Some(iat) if iat < deadline => deadline - iat,
        _ => 0.0,
    };
    Ok(Some((deadline - opts.jitter * random01.clamp(0.0, 1.0) * window).floor() as i64))
}

/// An RFC 7636 `S256` pair from a code verifier: `BASE64URL(SHA256(ASCII(verifier)))`.
pub fn pkce_challenge(verifier: &str) -> String {
    b64url_encode(&Sha256::digest(verifier.as_bytes()))
}

/// Bytes in a PKCE verifier: 32 random bytes are 43 base64url characters, RFC 7636's minimum
/// length, with 256 bits of entropy.
pub const PKCE_VERIFIER_BYTES: usize = 32;

/// Most bytes [`random_token`] hands out in one call.
pub const MAX_RANDOM_BYTES: usize = 1024;

/// `bytes` random bytes from `fill`, as unpadded base64url.
pub fn random_token(bytes: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), WebError>) -> Result<String, WebError> {
    if !(1..=MAX_RANDOM_BYTES).contains(&bytes) {
        return Err(WebError::invalid_argument(format!("bytes must be an integer from 1 to {MAX_RANDOM_BYTES}")));
    }
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(b64url_encode(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::b64url_encode as enc;

    use crate::web::testkit::Issuer;

    #[test]
    fn decode_is_strict_about_structure_only() {
        let iss = Issuer::new("k1");
        let d = decode_unverified(&iss.sign(json!({"alg": "none"}), json!({"sub": "x"}))).unwrap();
        assert_eq!((d["header"]["alg"].as_str(), d["claims"]["sub"].as_str()), (Some("none"), Some("x")));
        let code = |t: &str| decode_unverified(t).unwrap_err().code;
        assert_eq!(code("a.b"), "malformed_token");
        assert_eq!(code(&format!(".{}.", enc(b"{}"))), "malformed_token", "empty header segment");
        assert_eq!(code(&format!("{}=.{}.", enc(b"{}"), enc(b"{}"))), "malformed_token", "padding is not canonical");
        assert_eq!(code(&format!("{}.{}.", enc(b"[]"), enc(b"{}"))), "malformed_header");
        assert_eq!(code(&format!("{}.{}.", enc(b"{}"), enc(br#"{"a":1,"a":2}"#))), "duplicate_member");
        assert_eq!(code(&"a".repeat(MAX_DECODE_BYTES + 1)), "token_too_large");
    }

    #[test]
    fn refresh_time() {
        let iss = Issuer::new("k1");
        let t = iss.token(json!({"iat": 1000, "exp": 4600}));
        let at = |skew, jitter, r| refresh_at(&t, RefreshOptions { skew_secs: skew, jitter }, r).unwrap().unwrap();
        assert_eq!(at(60, 0.0, 0.9), 4540, "no jitter: exp - skew");
        assert_eq!(at(60, 0.5, 0.0), 4540);
        assert_eq!(at(60, 0.5, 0.999_999), 2770, "at most half of [iat, exp - skew] earlier");
        assert_eq!(at(0, 1.0, 0.5), 2800);
        assert_eq!(at(5000, 0.5, 0.5), -400, "skew beyond the lifetime: refresh now");
        assert_eq!(refresh_at(&iss.token(json!({"sub": "x"})), RefreshOptions::default(), 0.5).unwrap(), None);
        let no_iat = iss.token(json!({"exp": 4600}));
        assert_eq!(refresh_at(&no_iat, RefreshOptions::default(), 0.7).unwrap(), Some(4540));
        let bad = |o| refresh_at(&t, o, 0.0).unwrap_err().code;
        assert_eq!(bad(RefreshOptions { skew_secs: -1, jitter: 0.0 }), "invalid_argument");
        assert_eq!(bad(RefreshOptions { skew_secs: 0, jitter: 1.5 }), "invalid_argument");
        assert_eq!(bad(RefreshOptions { skew_secs: 0, jitter: f64::NAN }), "invalid_argument");
        let e = refresh_at(&iss.token(json!({"exp": "soon"})), RefreshOptions::default(), 0.0).unwrap_err();
        assert_eq!(e.code, "malformed_claims");
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn random_tokens() {
        let fill = |b: &mut [u8]| getrandom::fill(b).map_err(|_| WebError::invalid_argument("no randomness"));
        let t = random_token(PKCE_VERIFIER_BYTES, fill).unwrap();
        assert_eq!(t.len(), 43);
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(random_token(32, fill).unwrap(), random_token(32, fill).unwrap());
        assert_eq!(random_token(0, fill).unwrap_err().code, "invalid_argument");
        assert_eq!(random_token(MAX_RANDOM_BYTES + 1, fill).unwrap_err().code, "invalid_argument");
        let failing = |_: &mut [u8]| Err(WebError { code: "random_unavailable", message: "x".into(), status: None, field: None });
        assert_eq!(random_token(8, failing).unwrap_err().code, "random_unavailable");
    }

    #[test]
    fn jwk_thumbprints_are_the_gates() {
        // RFC 7638 §3.1 (RSA), RFC 9449 §4.1 and §6.1 (the proof key of its examples and the
        // `cnf.jkt` bound to it), RFC 8037 appendix A.3 (Ed25519).
        let rsa = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(jwk_thumbprint(&rsa).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        let ec = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
        assert_eq!(jwk_thumbprint(&ec).unwrap(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(jwk_thumbprint(&okp).unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        // What WebCrypto's exportKey("jwk") adds (key_ops, ext) does not count.
        let mut exported = ec.clone();
        exported["key_ops"] = json!(["verify"]);
        exported["ext"] = json!(true);
        assert_eq!(jwk_thumbprint(&exported).unwrap(), jwk_thumbprint(&ec).unwrap());
        // Keys the gate refuses in a proof have no thumbprint here.
        let refused = |v: Value| jwk_thumbprint(&v).unwrap_err();
        let mut private = ec.clone();
        private["d"] = json!(enc(&[3u8; 32]));
        assert_eq!(refused(private).message, "jwk: the key has private members");
        assert_eq!(refused(json!({"kty": "oct", "k": enc(&[7u8; 32])})).code, "invalid_argument");
        assert_eq!(refused(json!({"kty": "OKP", "crv": "X25519", "x": enc(&[1u8; 32])})).code, "invalid_argument");
        assert_eq!(refused(json!({"kty": "EC", "crv": "P-256", "x": enc(&[1u8; 31]), "y": enc(&[1u8; 32])})).code, "invalid_argument");
        assert_eq!(refused(json!("EC")).code, "invalid_argument");
    }

    #[test]
    fn check_api_key_matches_the_edge() {
        let key = crate::core::apikey::generate(crate::core::apikey::KeyEnv::Live, &[9u8; crate::core::apikey::RANDOM_BYTES]).unwrap();
        assert_eq!(check_api_key(&key), json!({"valid": true, "env": "live", "reason": null}));
        let last = if key.ends_with('A') { 'B' } else { 'A' };
        let typo = format!("{}{last}", &key[..key.len() - 1]);
        assert_eq!(check_api_key(&typo), json!({"valid": false, "env": null, "reason": "checksum"}));
        assert_eq!(check_api_key("sk_live_abc")["reason"], "prefix");
        assert_eq!(check_api_key("ew_live_short")["reason"], "shape");
    }
}
