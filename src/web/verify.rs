//! `verify` and `explain`: the JS policy object mapped onto the configuration schema's token
//! checks ([`policy_from_js`]), then the core's JWT step ([`JwtVerifier`], the step the gate's
//! pipeline runs for every JWT) with the
//! adapter's I/O. Every decision is the core's; the I/O (WebCrypto, fetch) is
//! [`super::verifier`]'s, or any [`GateIo`] (host tests pass the native backend's).

use super::error::WebError;
use crate::core::config::{ConfigError, EdgewardConfig};
use crate::core::io::GateIo;
use crate::core::jwt::{JwtPolicy, JwtVerifier};
use crate::core::log::DecisionLog;
use crate::core::token_cache::TokenCacheConfig;
use crate::core::token_cache::TokenHash;
use serde_json::{json, Map, Value};

/// The JS policy's fields and their names in the configuration (`issuers[0].*` or top level).
const POLICY_FIELDS: [(&str, &str, bool); 6] = [
    ("issuer", "issuer", true),
    ("audiences", "audiences", true),
    ("algorithms", "algorithms", true),
    ("leewaySecs", "leeway_secs", false),
    ("maxLifetimeSecs", "max_lifetime_secs", false),
    ("requireExp", "require_exp", false),
];

/// Where the issuer's keys come from.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A JWK Set given inline (`{ jwks }`).
    Jwks(Value),
    /// A JWK Set URL (`{ jwksUri }`): fetched and cached by the core's JWKS cache
    /// ([`crate::core::jwks_cache`]), as the gate does for `jwks_uri`.
    Uri(String),
}

impl From<Value> for Keys {
    fn from(jwks: Value) -> Keys {
        Keys::Jwks(jwks)
    }
}

/// Builds the core [`JwtPolicy`] from the JS policy object
/// `{issuer, audiences?, algorithms, leewaySecs?, maxLifetimeSecs?, requireExp?}` and the
/// issuer's keys: the same configuration document the Worker reads, with one issuer. Validation
/// (and every default) is the core's; errors name the JS field. The verified-token cache is off:
/// every call checks the signature and returns the whole payload.
pub fn policy_from_js(policy: &Value, keys: impl Into<Keys>) -> Result<JwtPolicy, WebError> {
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
    match keys.into() {
        Keys::Jwks(jwks) => issuer.insert("jwks".into(), jwks),
        Keys::Uri(uri) => issuer.insert("jwks_uri".into(), uri.into()),
    };
    config.insert("issuers".into(), Value::Array(vec![Value::Object(issuer)]));
    let located = |e: ConfigError| WebError::config(js_field(&e.field), e.message);
    let mut policy = EdgewardConfig::tokens_only(&Value::Object(config)).map_err(located)?;
    policy.token_cache = TokenCacheConfig { capacity: 0, ..TokenCacheConfig::default() };
    Ok(policy)
}

/// The JS name of a configuration field path (`issuers[0].algorithms[1]` → `algorithms[1]`).
fn js_field(config_field: &str) -> String {
    let rest = config_field.strip_prefix("issuers[0]").map(|r| r.trim_start_matches('.')).unwrap_or(config_field);
    if rest.is_empty() || rest == "EDGEWARD_CONFIG" {
        return "policy".into();
    }
    if rest == "jwks_uri" {
        return "jwksUri".into();
    }
    let (head, tail) = rest.find(['.', '[']).map_or((rest, ""), |i| rest.split_at(i));
    match POLICY_FIELDS.iter().find(|(_, c, _)| *c == head) {
        Some((js, _, _)) => format!("{js}{tail}"),
        None => rest.to_string(),
    }
}

/// The token cache is off (policy_from_js): the hash it is keyed by is never read, so none is
/// computed.
const UNCACHED: TokenHash = [0; 32];

/// The core's JWT step ([`JwtVerifier::verify`]) for `token` at `now`, with `io`; the record
/// holds the steps taken when `io` traces.
async fn run<I: GateIo>(verifier: &JwtVerifier, io: &I, token: &str, now: i64) -> (Result<Map<String, Value>, WebError>, DecisionLog<'static>) {
    let mut log = DecisionLog { event: "verify", ..Default::default() };
    let verified = verifier.verify(io, token, &UNCACHED, now, &mut log).await;
    // The token cache is off (policy_from_js), so the token holds its whole payload.
    let claims = verified.map_err(WebError::from).and_then(|v| v.claims().cloned().ok_or_else(|| crate::core::error::AuthError::Internal.into()));
    (claims, log)
}

/// Verifies `token` at `now` under the gate's policy, with `io`'s signature checks (and JWKS
/// fetches): the core pipeline's JWT step, as the gate runs it. Returns the verified claims.
pub async fn verify<I: GateIo>(verifier: &JwtVerifier, io: &I, token: &str, now: i64) -> Result<Map<String, Value>, WebError> {
    run(verifier, io, token, now).await.0
}

/// [`verify`] without the claims: `Ok` when `token` verifies, whose payload segment is then the
/// claims' JSON text, read strictly by the core (canonical base64url, no repeated member, every
/// number finite). The JS adapter hands that text to `JSON.parse`, which gives the values
/// [`verify`]'s map would, without copying and printing the map.
pub async fn check<I: GateIo>(verifier: &JwtVerifier, io: &I, token: &str, now: i64) -> Result<(), WebError> {
    let mut log = DecisionLog { event: "verify", ..Default::default() };
    verifier.verify(io, token, &UNCACHED, now, &mut log).await.map(drop).map_err(WebError::from)
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

/// Runs the core pipeline's JWT step with its trace on (`io` must trace) and reports the steps
/// it took, stopping at the first failure (later steps are `skipped`). The verdict and code are
/// the ones [`verify`] gives, because it is the same run.
pub async fn explain<I: GateIo>(verifier: &JwtVerifier, io: &I, token: &str, now: i64) -> Value {
    let mut steps = Vec::new();
    step(&mut steps, "policy", Ok(policy_detail(verifier.policy())));
    let (claims, log) = run(verifier, io, token, now).await;
    for s in log.trace.unwrap_or_default() {
        match s.outcome {
            Ok(detail) => step(&mut steps, s.name, Ok(detail)),
            Err(e) => step(&mut steps, s.name, Err(&WebError::from(e))),
        }
    }
    explanation(steps, claims, now)
}

/// The explanation when the policy (or the key set) is refused: the `policy` step fails.
pub fn explain_refused(e: WebError, now: i64) -> Value {
    let mut steps = Vec::new();
    step(&mut steps, "policy", Err(&e));
    explanation(steps, Err(e), now)
}

fn explanation(mut steps: Vec<Value>, outcome: Result<Map<String, Value>, WebError>, now: i64) -> Value {
    for name in STEPS.iter().skip(steps.len()) {
        steps.push(json!({"step": name, "result": "skipped", "detail": "not reached"}));
    }
    match outcome {
        Ok(claims) => json!({"verdict": "accept", "code": null, "message": null, "steps": steps, "claims": claims, "nowSecs": now}),
        Err(e) => json!({"verdict": "reject", "code": e.code, "message": e.message, "steps": steps, "claims": null, "nowSecs": now}),
    }
}

/// What the `policy` step of [`explain`] reports.
fn policy_detail(policy: &JwtPolicy) -> String {
    policy.issuers.first().map_or(String::new(), |i| {
        let algs: Vec<&str> = i.algorithms.iter().map(|a| a.name()).collect();
        let keys = match &i.jwks_uri {
            Some(uri) => format!("keys from {}", crate::core::log::url_for_display(uri)),
            None => format!("{} key(s)", i.inline_keys.keys.len()),
        };
        format!(
            "issuer {}, audiences {}, algorithms {}, {keys}, leeway {} s",
            i.issuer.as_deref().map_or("not checked".into(), |s| format!("{s:?}")),
            if i.audiences.is_empty() { "not checked".into() } else { format!("{:?}", i.audiences) },
            algs.join(" "),
            policy.leeway_secs
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::b64url_encode as enc;

    use crate::core::crypto::NativeBackend;
    use crate::core::io::{run_ready, InlineIo};
    use crate::web::testkit::Issuer;

    const NOW: i64 = 1_800_000_000;

    /// [`super::verify`] with the native backend (every I/O call is ready at once).
    fn verify(token: &str, policy: &JwtPolicy, now: i64) -> Result<Map<String, Value>, WebError> {
        let io = InlineIo { backend: NativeBackend, now_ms: now * 1000, trace: false };
        run_ready(super::verify(&JwtVerifier::new(policy.clone()), &io, token, now)).unwrap()
    }

    /// [`super::explain`] with the native backend, from the JS policy and key set.
    fn explain(token: &str, policy: &Value, jwks: Value, now: i64) -> Value {
        let io = InlineIo { backend: NativeBackend, now_ms: now * 1000, trace: true };
        match policy_from_js(policy, jwks) {
            Ok(p) => run_ready(super::explain(&JwtVerifier::new(p), &io, token, now)).unwrap(),
            Err(e) => explain_refused(e, now),
        }
    }

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
        assert_eq!(field(json!({"issuer": "x"}), jwks.clone()), "algorithms", "missing algorithms is reported on algorithms");
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
}
