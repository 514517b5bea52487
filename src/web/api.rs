//! The JS package's operations as plain Rust over `serde_json` values, so they are tested on the
//! host; [`super`] only converts to and from JS. Every decision is the core's: this file maps the
//! small JS policy object onto the configuration schema and runs the core pipeline.

use crate::core::config::Policy;
use crate::core::cookie::{self, CookieAction, CookiePolicy};
use crate::core::crypto::NativeBackend;
use crate::core::error::AuthError;
use crate::core::json::{b64url_decode, b64url_encode, parse_strict_object, StrictJsonError};
use crate::core::pipeline::Gate;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// A typed error for JS: a stable `code` (the Worker's reason codes for token problems), a message,
/// and, where it helps, the HTTP status the Worker would answer and the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    /// Stable code: an [`AuthError::code`], or `config_invalid`, `invalid_argument`,
    /// `random_unavailable`.
    pub code: &'static str,
    /// Human-readable; never holds a key or secret.
    pub message: String,
    /// Status the Worker would answer with, for token errors.
    pub status: Option<u16>,
    /// The policy or JWKS field at fault, for `config_invalid`.
    pub field: Option<String>,
}

impl WebError {
    /// A bad argument (wrong type or range).
    pub fn invalid_argument(message: impl Into<String>) -> WebError {
        WebError { code: "invalid_argument", message: message.into(), status: None, field: None }
    }
    fn config(field: impl Into<String>, message: impl Into<String>) -> WebError {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        WebError { code: "config_invalid", message, status: None, field: Some(field) }
    }
}

impl From<AuthError> for WebError {
    fn from(e: AuthError) -> WebError {
        let status = e.rejection("edgeward").status;
        WebError { code: e.code(), message: e.to_string(), status: Some(status), field: None }
    }
}

/// The origin of the configuration the JS policy is mapped onto. The JS API never forwards
/// anything; the configuration schema only demands an origin.
const UNUSED_ORIGIN: &str = "https://origin.invalid";

/// The JS policy's fields and their names in the configuration (`issuers[0].*` or top level).
const POLICY_FIELDS: [(&str, &str, bool); 6] = [
    ("issuer", "issuer", true),
    ("audiences", "audiences", true),
    ("algorithms", "algorithms", true),
    ("leewaySecs", "leeway_secs", false),
    ("maxLifetimeSecs", "max_lifetime_secs", false),
    ("requireExp", "require_exp", false),
];

/// Builds the core [`Policy`] from the JS policy object
/// `{issuer, audiences?, algorithms, leewaySecs?, maxLifetimeSecs?, requireExp?}` and a JWK Set:
/// the same configuration document the Worker reads, with one issuer whose keys are inline.
/// Validation (and every default) is the core's; errors name the JS field.
pub fn policy_from_js(policy: &Value, jwks: Value) -> Result<Policy, WebError> {
    let obj = policy.as_object().ok_or_else(|| WebError::config("policy", "must be an object"))?;
    if !obj.contains_key("issuer") {
        return Err(WebError::config("issuer", "required (a string, or null to leave iss unchecked)"));
    }
    let mut issuer = Map::new();
    let mut config = Map::new();
    for (name, value) in obj {
        let Some((_, config_name, per_issuer)) = POLICY_FIELDS.iter().find(|(js, _, _)| js == name) else {
            return Err(WebError::config(name.as_str(), "unknown field"));
        };
        let target = if *per_issuer { &mut issuer } else { &mut config };
        target.insert((*config_name).to_string(), value.clone());
    }
    issuer.insert("jwks".into(), jwks);
    config.insert("issuers".into(), Value::Array(vec![Value::Object(issuer)]));
    config.insert("origin".into(), UNUSED_ORIGIN.into());
    Policy::from_json(&Value::Object(config).to_string()).map_err(|e| WebError::config(js_field(&e.field), e.message))
}

/// The JS name of a configuration field path (`issuers[0].algorithms[1]` → `algorithms[1]`).
fn js_field(config_field: &str) -> String {
    let rest = config_field.strip_prefix("issuers[0]").map(|r| r.trim_start_matches('.')).unwrap_or(config_field);
    if rest.is_empty() || rest == "EDGEWARD_CONFIG" {
        return "policy".into();
    }
    let (head, tail) = rest.find(['.', '[']).map_or((rest, ""), |i| rest.split_at(i));
    match POLICY_FIELDS.iter().find(|(_, c, _)| *c == head) {
        Some((js, _, _)) => format!("{js}{tail}"),
        None => rest.to_string(),
    }
}

/// Verifies `token` at `now` with the policy's inline keys: the core pipeline's JWT step
/// ([`Gate::verify_inline`], as the gate runs it). Returns the verified claims.
pub fn verify(token: &str, policy: &Policy, now: i64) -> Result<Map<String, Value>, WebError> {
    let gate = Gate::new(policy.clone());
    let (verified, _) = gate.verify_inline(token, NativeBackend, now, false);
    Ok(verified?.claims().clone())
}

/// One step of [`explain`].
fn step(out: &mut Vec<Value>, name: &str, result: Result<String, &WebError>) {
    let (result, detail) = match result {
        Ok(detail) => ("pass", detail),
        Err(e) => ("fail", format!("{} ({})", e.message, e.code)),
    };
    out.push(json!({"step": name, "result": result, "detail": detail}));
}

/// The steps [`explain`] reports, in the core's order.
pub const STEPS: [&str; 6] = ["policy", "parse", "issuer", "key", "signature", "claims"];

/// Runs the core pipeline's JWT step ([`Gate::verify_inline`]) with its trace on and reports
/// the steps it took, stopping at the first failure (later steps are `skipped`). The verdict
/// and code are the ones [`verify`] gives, because it is the same run.
pub fn explain(token: &str, policy: &Value, jwks: Value, now: i64) -> Value {
    let mut steps = Vec::new();
    let outcome = explain_steps(token, policy, jwks, now, &mut steps);
    for name in STEPS.iter().skip(steps.len()) {
        steps.push(json!({"step": name, "result": "skipped", "detail": "not reached"}));
    }
    match outcome {
        Ok(claims) => json!({"verdict": "accept", "code": null, "message": null, "steps": steps, "claims": claims, "nowSecs": now}),
        Err(e) => json!({"verdict": "reject", "code": e.code, "message": e.message, "steps": steps, "claims": null, "nowSecs": now}),
    }
}

fn explain_steps(token: &str, policy: &Value, jwks: Value, now: i64, steps: &mut Vec<Value>) -> Result<Map<String, Value>, WebError> {
    let policy = match policy_from_js(policy, jwks) {
        Ok(p) => p,
        Err(e) => {
            step(steps, "policy", Err(&e));
            return Err(e);
        }
    };
    let detail = policy.issuers.first().map_or(String::new(), |i| {
        let algs: Vec<&str> = i.algorithms.iter().map(|a| a.name()).collect();
        format!(
            "issuer {}, audiences {}, algorithms {}, {} key(s), leeway {} s",
            i.issuer.as_deref().map_or("not checked".into(), |s| format!("{s:?}")),
            if i.audiences.is_empty() { "not checked".into() } else { format!("{:?}", i.audiences) },
            algs.join(" "),
            i.inline_keys.keys.len(),
            policy.leeway_secs
        )
    });
    step(steps, "policy", Ok(detail));
    let gate = Gate::new(policy);
    let (verified, log) = gate.verify_inline(token, NativeBackend, now, true);
    for s in log.trace.unwrap_or_default() {
        match s.outcome {
            Ok(detail) => step(steps, s.name, Ok(detail)),
            Err(e) => step(steps, s.name, Err(&WebError::from(e))),
        }
    }
    Ok(verified?.claims().clone())
}

/// The JS cookie policy's fields and their names in the configuration's `cookies` section.
const COOKIE_FIELDS: [(&str, &str); 4] = [("mode", "mode"), ("sameSite", "same_site"), ("scriptReadable", "script_readable"), ("maxAgeSecs", "max_age_secs")];

/// Builds the core [`CookiePolicy`] from the JS object `{mode?, sameSite?, scriptReadable?,
/// maxAgeSecs?}` (`null`: all defaults). It is validated as the `cookies` section of a
/// configuration document, so defaults and rules are the Worker's; errors name the JS field.
pub fn cookie_policy_from_js(policy: &Value) -> Result<CookiePolicy, WebError> {
    let empty = Map::new();
    let obj = match policy {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => return Err(WebError::config("policy", "must be an object")),
    };
    let mut cookies = Map::new();
    for (name, value) in obj {
        let Some((_, config_name)) = COOKIE_FIELDS.iter().find(|(js, _)| js == name) else {
            return Err(WebError::config(name.as_str(), "unknown field"));
        };
        cookies.insert((*config_name).to_string(), value.clone());
    }
    // The schema needs an issuer; this one is never used (cookie rules do not depend on it).
    let config = json!({
        "issuers": [{"issuer": null, "jwks_uri": "https://issuer.invalid/jwks", "algorithms": ["ES256"]}],
        "origin": UNUSED_ORIGIN,
        "cookies": cookies,
    });
    Policy::from_json(&config.to_string()).map(|p| p.cookies).map_err(|e| {
        let rest = e.field.strip_prefix("cookies").unwrap_or(&e.field).trim_start_matches('.');
        let field = COOKIE_FIELDS.iter().find(|(_, c)| rest.starts_with(c)).map_or_else(|| "policy".to_string(), |(js, c)| format!("{js}{}", &rest[c.len()..]));
        WebError::config(field, e.message)
    })
}

/// What the edge does with one `Set-Cookie` header under `policy` at `now`: the core's
/// [`cookie::enforce`], as `{name, findings, action, header}` where `header` is what the edge
/// sends on (`null` when it drops the cookie).
pub fn lint_set_cookie(header: &str, policy: &CookiePolicy, now: i64) -> Value {
    let report = cookie::enforce(header, policy, now);
    let (action, sent) = match report.action {
        CookieAction::Keep => ("keep", Some(header.to_string())),
        CookieAction::Fixed(fixed) => ("fix", Some(fixed)),
        CookieAction::Drop => ("drop", None),
    };
    json!({"name": report.name, "findings": report.findings, "action": action, "header": sent})
}

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

    const NOW: i64 = 1_800_000_000;

    fn js_policy() -> Value {
        json!({"issuer": "https://id.example", "audiences": ["api://demo"], "algorithms": ["EdDSA"]})
    }

    fn claims(exp: i64) -> Value {
        json!({"iss": "https://id.example", "aud": "api://demo", "sub": "user-42", "iat": NOW - 10, "exp": exp})
    }

    #[test]
    fn maps_js_policy_onto_the_config_schema() {
        let iss = Issuer::new("k1");
        let p = policy_from_js(&json!({"issuer": null, "algorithms": ["EdDSA"], "leewaySecs": 5, "maxLifetimeSecs": null, "requireExp": false}), iss.jwks())
            .unwrap();
        assert_eq!((p.leeway_secs, p.max_lifetime_secs, p.require_exp), (5, None, false));
        assert_eq!(p.issuers[0].issuer, None);
        assert_eq!(p.issuers[0].inline_keys.keys.len(), 1);
        let p = policy_from_js(&js_policy(), iss.jwks()).unwrap();
        assert_eq!((p.leeway_secs, p.max_lifetime_secs, p.require_exp), (60, Some(86_400), true), "the core's defaults");
        assert_eq!(p.issuers[0].audiences, vec!["api://demo".to_string()]);
    }

    #[test]
    fn policy_errors_name_the_js_field() {
        let jwks = Issuer::new("k1").jwks();
        let field = |policy: Value, jwks: Value| {
            let e = policy_from_js(&policy, jwks).unwrap_err();
            assert_eq!(e.code, "config_invalid");
            e.field.unwrap()
        };
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA", "none"]}), jwks.clone()), "algorithms[1]");
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA"], "leewaySecs": -1}), jwks.clone()), "leewaySecs");
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA"], "leeway": 1}), jwks.clone()), "leeway");
        assert_eq!(field(json!({"algorithms": ["EdDSA"]}), jwks.clone()), "issuer");
        assert_eq!(field(json!({"issuer": "x"}), jwks.clone()), "policy", "missing algorithms is reported on the policy");
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA"]}), json!({"nokeys": []})), "jwks");
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA"], "audiences": [""]}), jwks.clone()), "audiences[0]");
        assert_eq!(field(json!(["issuer"]), jwks), "policy");
        // HS* with an asymmetric key set: the core's rule, reported on jwks.
        let oct = json!({"keys": [{"kty": "oct", "k": enc(&[1u8; 32])}]});
        assert_eq!(field(json!({"issuer": "x", "algorithms": ["EdDSA"]}), oct), "jwks");
    }

    #[test]
    fn verify_gives_claims_or_the_workers_reason_code() {
        let iss = Issuer::new("k1");
        let p = policy_from_js(&js_policy(), iss.jwks()).unwrap();
        let good = iss.token(claims(NOW + 3600));
        assert_eq!(verify(&good, &p, NOW).unwrap()["sub"], "user-42");
        let expired = iss.token(claims(NOW - 3600));
        let e = verify(&expired, &p, NOW).unwrap_err();
        assert_eq!((e.code, e.status), ("expired", Some(401)));
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = enc(json!({"iss": "https://id.example", "aud": "api://demo", "sub": "admin", "exp": NOW + 3600}).to_string().as_bytes());
        let tampered = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        assert_eq!(verify(&tampered, &p, NOW).unwrap_err().code, "bad_signature");
        let other = Issuer::new("k1").token(claims(NOW + 3600));
        assert_eq!(verify(&other, &p, NOW).unwrap_err().code, "bad_signature", "same kid, another key");
        assert_eq!(verify("a.b", &p, NOW).unwrap_err().code, "malformed_token");
    }

    /// The verdict and code of `explain` are those of `verify`, for every kind of token.
    #[test]
    fn explain_agrees_with_verify() {
        let iss = Issuer::new("k1");
        let rogue = Issuer::new("k1");
        let p = policy_from_js(&js_policy(), iss.jwks()).unwrap();
        let mut tokens = vec![
            iss.token(claims(NOW + 3600)),
            iss.token(claims(NOW - 3600)),
            iss.token(json!({"iss": "https://id.example", "aud": "api://other", "exp": NOW + 60})),
            iss.token(json!({"iss": "https://other", "aud": "api://demo", "exp": NOW + 60})),
            iss.token(json!({"iss": "https://id.example", "aud": "api://demo"})),
            iss.token(json!({"iss": "https://id.example", "aud": "api://demo", "exp": NOW + 60, "nbf": NOW + 3600})),
            iss.token(json!({"iss": "https://id.example", "aud": "api://demo", "exp": NOW + 999_999})),
            iss.sign(json!({"alg": "EdDSA", "kid": "nope"}), claims(NOW + 60)),
            iss.sign(json!({"alg": "ES256", "kid": "k1"}), claims(NOW + 60)),
            iss.sign(json!({"alg": "none"}), claims(NOW + 60)),
            iss.sign(json!({"alg": "EdDSA", "crit": ["x"]}), claims(NOW + 60)),
            rogue.token(claims(NOW + 3600)),
            "x.y.z".into(),
            "".into(),
        ];
        tokens.push(tokens[0].replace('.', ".."));
        for t in &tokens {
            let want = verify(t, &p, NOW).map_err(|e| e.code);
            let got = explain(t, &js_policy(), iss.jwks(), NOW);
            match &want {
                Ok(_) => assert_eq!((got["verdict"].as_str(), &got["code"]), (Some("accept"), &Value::Null), "{t}"),
                Err(code) => assert_eq!((got["verdict"].as_str(), got["code"].as_str()), (Some("reject"), Some(*code)), "{t}"),
            }
            let steps = got["steps"].as_array().unwrap();
            assert_eq!(steps.iter().map(|s| s["step"].as_str().unwrap()).collect::<Vec<_>>(), STEPS);
            let fails = steps.iter().filter(|s| s["result"] == "fail").count();
            assert_eq!(fails, usize::from(want.is_err()), "exactly one failing step on reject: {got}");
        }
    }

    #[test]
    fn explain_reports_each_step() {
        let iss = Issuer::new("k1");
        let got = explain(&iss.token(claims(NOW - 3600)), &js_policy(), iss.jwks(), NOW);
        let results: Vec<&str> = got["steps"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
        assert_eq!(results, ["pass", "pass", "pass", "pass", "pass", "fail"]);
        assert!(got["steps"][5]["detail"].as_str().unwrap().contains("(expired)"));
        let got = explain("x", &json!({"issuer": "x"}), iss.jwks(), NOW);
        let results: Vec<&str> = got["steps"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
        assert_eq!(results, ["fail", "skipped", "skipped", "skipped", "skipped", "skipped"]);
        assert_eq!(got["code"], "config_invalid");
        let got = explain(&iss.token(claims(NOW + 60)), &js_policy(), iss.jwks(), NOW);
        assert_eq!(got["claims"]["sub"], "user-42");
        assert!(got["steps"][3]["detail"].as_str().unwrap().contains("OKP Ed25519"));
    }

    #[test]
    fn hmac_keys_are_never_shown() {
        let secret = [0x5au8; 32];
        let k = enc(&secret);
        let jwks = json!({"keys": [{"kty": "oct", "k": k, "kid": "h"}]});
        let policy = json!({"issuer": "https://id.example", "algorithms": ["HS256"]});
        let input = format!("{}.{}", enc(br#"{"alg":"HS256","kid":"h"}"#), enc(claims(NOW + 60).to_string().as_bytes()));
        use jwt_simple::prelude::*;
        let tag = jwt_simple::prelude::HS256Key::from_bytes(&secret).authentication_tag(input.as_bytes());
        let token = format!("{input}.{}", enc(&tag));
        let got = explain(&token, &policy, jwks, NOW);
        assert_eq!(got["verdict"], "accept", "{got}");
        assert!(!got.to_string().contains(&k), "the secret never appears in the explanation");
    }

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
    fn cookie_lint_is_the_edges_enforcement() {
        let p = cookie_policy_from_js(&Value::Null).unwrap();
        let got = lint_set_cookie("session=abc; Path=/", &p, NOW);
        assert_eq!(got["name"], "session");
        assert_eq!(got["findings"], json!(["missing_secure", "missing_httponly", "missing_samesite"]));
        assert_eq!(got["action"], "fix");
        let fixed = got["header"].as_str().unwrap();
        assert!(fixed.contains("Secure") && fixed.contains("HttpOnly") && fixed.contains("SameSite=Lax"), "{fixed}");
        let good = "__Host-id=1; Path=/; Secure; HttpOnly; SameSite=Strict";
        assert_eq!(lint_set_cookie(good, &p, NOW), json!({"name": "__Host-id", "findings": [], "action": "keep", "header": good}));
        let drop = cookie_policy_from_js(&json!({"mode": "drop", "scriptReadable": ["theme"]})).unwrap();
        let got = lint_set_cookie("theme=dark; Secure; SameSite=Lax", &drop, NOW);
        assert_eq!((got["findings"].clone(), got["action"].as_str()), (json!([]), Some("keep")), "script-readable needs no HttpOnly");
        let got = lint_set_cookie("sid=1", &drop, NOW);
        assert_eq!((got["action"].as_str(), &got["header"]), (Some("drop"), &Value::Null));
        let report = cookie_policy_from_js(&json!({"mode": "report", "sameSite": "Strict", "maxAgeSecs": 60})).unwrap();
        let got = lint_set_cookie("a=1; Secure; HttpOnly; SameSite=Lax; Max-Age=3600", &report, NOW);
        assert_eq!((got["findings"].clone(), got["action"].as_str()), (json!(["lifetime_too_long"]), Some("keep")));
    }

    #[test]
    fn cookie_policy_errors_name_the_js_field() {
        let field = |v: Value| {
            let e = cookie_policy_from_js(&v).unwrap_err();
            assert_eq!(e.code, "config_invalid");
            e.field.unwrap()
        };
        // Validation names the field; a value of the wrong type is located by the core at the
        // level of the `cookies` section, which is the whole JS cookie policy.
        assert_eq!(field(json!({"maxAgeSecs": 0})), "maxAgeSecs");
        for bad in [json!({"mode": "explode"}), json!({"sameSite": "lax"}), json!({"scriptReadable": "theme"}), json!("fix")] {
            assert!(["policy", "mode", "sameSite", "scriptReadable"].contains(&field(bad.clone()).as_str()), "{bad}");
        }
        assert_eq!(field(json!({"max_age_secs": 5})), "max_age_secs", "snake_case names are unknown fields");
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
