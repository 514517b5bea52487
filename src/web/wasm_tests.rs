//! The JS boundary, run in Node by `wasm-pack test --node`: argument conversion, camelCase names,
//! `EdgewardError` objects, and the browser-side randomness. The logic itself is host-tested in
//! [`super::verify`](mod@super::verify), [`super::cookies`], [`super::tokens`] and [`super::ratelimit_headers`].

use super::testkit::Issuer;
use super::verifier::{create_verifier, explain, verify};
use super::*;
use js_sys::{Array, Promise, Reflect};
use serde_json::json;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

const NOW: f64 = 1_800_000_000.0;

fn js(v: &Value) -> JsValue {
    JSON::parse(&v.to_string()).unwrap()
}

fn back(v: &JsValue) -> Value {
    serde_json::from_str(&JSON::stringify(v).unwrap().as_string().unwrap()).unwrap()
}

fn prop(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap()
}

fn policy() -> JsValue {
    js(&json!({"issuer": "https://id.example", "audiences": ["api://demo"], "algorithms": ["EdDSA"], "leewaySecs": 0}))
}

fn claims(exp: f64) -> Value {
    json!({"iss": "https://id.example", "aud": "api://demo", "sub": "user-42", "iat": NOW - 10.0, "exp": exp})
}

/// What a promise of the package settles to.
async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// The thrown value is an `Error` named `EdgewardError` with this `code`.
fn assert_edgeward_error(e: &JsValue, code: &str) {
    assert!(e.is_instance_of::<js_sys::Error>(), "an Error object");
    assert_eq!(prop(e, "name").as_string().as_deref(), Some("EdgewardError"));
    assert_eq!(prop(e, "code").as_string().as_deref(), Some(code));
    assert!(!prop(e, "message").as_string().unwrap_or_default().is_empty());
}

#[wasm_bindgen_test]
async fn verify_returns_claims_as_a_plain_object() {
    let iss = Issuer::new("k1");
    let token = iss.token(claims(NOW + 600.0));
    let got = settle(verify(token.clone().into(), js(&iss.jwks()), policy(), NOW.into())).await.unwrap();
    assert_eq!(prop(&got, "sub").as_string().as_deref(), Some("user-42"));
    assert_eq!(prop(&got, "exp").as_f64(), Some(NOW + 600.0));
    // The JWK Set may also be JSON text.
    let got = settle(verify(token.into(), iss.jwks().to_string().into(), policy(), NOW.into())).await.unwrap();
    assert_eq!(back(&got)["aud"], "api://demo");
}

#[wasm_bindgen_test]
async fn verify_throws_the_workers_reason_code() {
    let iss = Issuer::new("k1");
    let expired = iss.token(claims(NOW - 1.0));
    let e = settle(verify(expired.into(), js(&iss.jwks()), policy(), NOW.into())).await.unwrap_err();
    assert_edgeward_error(&e, "expired");
    assert_eq!(prop(&e, "status").as_f64(), Some(401.0));
    let forged = Issuer::new("k1").token(claims(NOW + 600.0));
    assert_edgeward_error(&settle(verify(forged.into(), js(&iss.jwks()), policy(), NOW.into())).await.unwrap_err(), "bad_signature");
    // Without nowSecs the browser clock is used: a token that expired in 2001 is expired now.
    let old = iss.token(json!({"iss": "https://id.example", "aud": "api://demo", "exp": 1_000_000_000}));
    assert_edgeward_error(&settle(verify(old.into(), js(&iss.jwks()), policy(), JsValue::UNDEFINED)).await.unwrap_err(), "expired");
}

#[wasm_bindgen_test]
async fn bad_arguments_and_policies_are_typed_errors() {
    let iss = Issuer::new("k1");
    let token: JsValue = iss.token(claims(NOW + 600.0)).into();
    assert_edgeward_error(&settle(verify(JsValue::from_f64(1.0), js(&iss.jwks()), policy(), NOW.into())).await.unwrap_err(), "invalid_argument");
    let e = settle(verify(token.clone(), js(&iss.jwks()), js(&json!({"issuer": "x", "algorithms": ["EdDSA", "nope"]})), NOW.into())).await.unwrap_err();
    assert_edgeward_error(&e, "config_invalid");
    assert_eq!(prop(&e, "field").as_string().as_deref(), Some("algorithms[1]"));
    let e = settle(verify(token.clone(), JsValue::UNDEFINED, policy(), NOW.into())).await.unwrap_err();
    assert_eq!(prop(&e, "field").as_string().as_deref(), Some("jwks"));
    let e = settle(verify(token.clone(), "{not json".into(), policy(), NOW.into())).await.unwrap_err();
    assert_edgeward_error(&e, "config_invalid");
    assert_edgeward_error(&settle(verify(token, js(&iss.jwks()), policy(), "soon".into())).await.unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
async fn explain_lists_every_step() {
    let iss = Issuer::new("k1");
    let got = back(&settle(explain(iss.token(claims(NOW - 1.0)).into(), js(&iss.jwks()), policy(), NOW.into())).await.unwrap());
    assert_eq!((got["verdict"].as_str(), got["code"].as_str()), (Some("reject"), Some("expired")));
    let results: Vec<&str> = got["steps"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["pass", "pass", "pass", "pass", "pass", "fail"]);
    // Not JSON at all: the policy step fails, nothing throws.
    let got = back(&settle(explain("x".into(), "{".into(), policy(), NOW.into())).await.unwrap());
    assert_eq!(
        (got["code"].as_str(), got["steps"][0]["result"].as_str(), got["steps"][1]["result"].as_str()),
        (Some("config_invalid"), Some("fail"), Some("skipped"))
    );
}

#[wasm_bindgen_test]
async fn a_verifier_parses_once_and_takes_options() {
    let iss = Issuer::new("k1");
    let keys = js(&json!({"jwks": iss.jwks()}));
    let v = create_verifier(policy(), keys).unwrap();
    let at = |secs: f64| js(&json!({"nowSecs": secs}));
    for sub in ["a", "b"] {
        let token = iss.token(json!({"iss": "https://id.example", "aud": "api://demo", "sub": sub, "exp": NOW + 60.0}));
        let got = settle(v.verify(token.into(), at(NOW))).await.unwrap();
        assert_eq!(prop(&got, "sub").as_string().as_deref(), Some(sub));
    }
    let late = iss.token(claims(NOW + 60.0));
    assert_edgeward_error(&settle(v.verify(late.clone().into(), at(NOW + 61.0))).await.unwrap_err(), "expired");
    let got = back(&settle(v.explain(late.into(), at(NOW))).await.unwrap());
    assert_eq!(got["verdict"], "accept");
    // The key source: exactly one of jwks and jwksUri, nothing else.
    let field = |keys: Value| {
        let e = create_verifier(policy(), js(&keys)).err().unwrap();
        assert_edgeward_error(&e, "config_invalid");
        prop(&e, "field").as_string().unwrap()
    };
    assert_eq!(field(json!({"jwks": iss.jwks(), "jwksUri": "https://id.example/jwks"})), "keys");
    assert_eq!(field(json!({"jwks": iss.jwks(), "extra": 1})), "extra");
    assert_eq!(field(json!({"jwksUri": "ftp://id.example/jwks"})), "jwksUri");
}

#[wasm_bindgen_test]
fn decode_unverified_reads_untrusted_parts() {
    let iss = Issuer::new("k1");
    let got = back(&decode_unverified(iss.token(claims(NOW)).into()).unwrap());
    assert_eq!((got["header"]["kid"].as_str(), got["claims"]["sub"].as_str()), (Some("k1"), Some("user-42")));
    assert_edgeward_error(&decode_unverified("a.b".into()).unwrap_err(), "malformed_token");
    assert_edgeward_error(&decode_unverified(JsValue::NULL).unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
fn refresh_at_uses_options_and_randomness() {
    let iss = Issuer::new("k1");
    let t: JsValue = iss.token(json!({"iat": 1000, "exp": 4600})).into();
    assert_eq!(refresh_at(t.clone(), js(&json!({"skewSecs": 100, "jitter": 0}))).unwrap().as_f64(), Some(4500.0));
    let v = refresh_at(t.clone(), JsValue::UNDEFINED).unwrap().as_f64().unwrap();
    assert!((4186.0..=4540.0).contains(&v), "default skew 60 s and jitter 0.1 of 3540 s: {v}");
    assert_eq!(refresh_at(t.clone(), js(&json!({"jitter": 0}))).unwrap().as_f64(), Some(4540.0));
    let spread: std::collections::HashSet<i64> = (0..20).map(|_| refresh_at(t.clone(), js(&json!({"jitter": 1}))).unwrap().as_f64().unwrap() as i64).collect();
    assert!(spread.len() > 1, "jitter draws from the platform's random source");
    assert!(refresh_at(iss.token(json!({"sub": "x"})).into(), JsValue::UNDEFINED).unwrap().is_null());
    assert_edgeward_error(&refresh_at(t, js(&json!({"skewSecs": 1.5}))).unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
fn pkce_and_random_tokens() {
    let pair = back(&pkce_pair().unwrap());
    let verifier = pair["verifier"].as_str().unwrap();
    assert_eq!(verifier.len(), 43);
    assert_eq!(pair["challenge"].as_str(), Some(tokens::pkce_challenge(verifier).as_str()));
    assert_eq!(pair["method"], "S256");
    assert_ne!(back(&pkce_pair().unwrap())["verifier"], pair["verifier"]);
    assert_eq!(random_token(JsValue::UNDEFINED).unwrap().len(), 43);
    assert_eq!(random_token(JsValue::from_f64(3.0)).unwrap().len(), 4);
    assert_eq!(nonce().unwrap().len(), 22);
    assert_edgeward_error(&random_token(JsValue::from_f64(0.0)).unwrap_err(), "invalid_argument");
    assert_edgeward_error(&random_token(JsValue::from_f64(2.5)).unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
fn rate_limit_from_plain_objects_and_headers() {
    let plain = js(&json!({
        "RateLimit": "\"default\";r=50;t=30",
        "ratelimit-policy": ["\"default\";q=100;w=60"],
        "Retry-After": "7",
    }));
    let got = back(&parse_rate_limit(plain, NOW.into()).unwrap());
    assert_eq!(got, json!({"remaining": 50, "resetSecs": 30, "limit": 100, "windowSecs": 60, "retryAfterSecs": 7}));
    // The platform's Headers class (Node 18+ and browsers).
    let class: js_sys::Function = Reflect::get(&js_sys::global(), &"Headers".into()).unwrap().dyn_into().unwrap();
    let pairs = Array::of2(&Array::of2(&"RateLimit-Remaining".into(), &"3".into()), &Array::of2(&"ratelimit-reset".into(), &"9".into()));
    let headers = Reflect::construct(&class, &Array::of1(&pairs)).unwrap();
    let got = back(&parse_rate_limit(headers, NOW.into()).unwrap());
    assert_eq!(got, json!({"remaining": 3, "resetSecs": 9, "limit": null, "windowSecs": null, "retryAfterSecs": null}));
    assert_edgeward_error(&parse_rate_limit("RateLimit: x".into(), NOW.into()).unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
fn lint_set_cookie_reports_the_edges_findings() {
    let got = back(&lint_set_cookie("sid=1; Path=/".into(), JsValue::UNDEFINED, NOW.into()).unwrap());
    assert_eq!(got["findings"], json!(["missing_secure", "missing_httponly", "missing_samesite"]));
    assert_eq!(got["action"], "fix");
    let got = back(&lint_set_cookie("sid=1".into(), js(&json!({"mode": "drop"})), NOW.into()).unwrap());
    assert_eq!((got["action"].as_str(), &got["header"]), (Some("drop"), &Value::Null));
    let e = lint_set_cookie("sid=1".into(), js(&json!({"maxAgeSecs": -5})), NOW.into()).unwrap_err();
    assert_edgeward_error(&e, "config_invalid");
    assert_eq!(prop(&e, "field").as_string().as_deref(), Some("maxAgeSecs"));
    assert_edgeward_error(&lint_set_cookie(JsValue::UNDEFINED, JsValue::UNDEFINED, NOW.into()).unwrap_err(), "invalid_argument");
}

#[wasm_bindgen_test]
fn check_api_key_flags_a_typo_offline() {
    let key = crate::core::apikey::generate(crate::core::apikey::KeyEnv::Test, &[3u8; crate::core::apikey::RANDOM_BYTES]).unwrap();
    let ok = back(&check_api_key(key.clone().into()).unwrap());
    assert_eq!(ok, json!({"valid": true, "env": "test", "reason": null}));
    let typo = format!("{}{}", &key[..10], &key[11..]);
    assert_eq!(back(&check_api_key(typo.into()).unwrap())["valid"], false);
    assert!(check_api_key(JsValue::from(42)).is_err(), "a non-string is a typed error");
}

#[wasm_bindgen_test]
fn jwk_thumbprint_takes_an_object_or_json_text() {
    // RFC 9449 §4.1's proof key and the `cnf.jkt` of §6.1.
    let jwk = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
    assert_eq!(jwk_thumbprint(js(&jwk)).unwrap(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(jwk_thumbprint(jwk.to_string().into()).unwrap(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    for bad in [JsValue::UNDEFINED, JsValue::from(42), "{".into(), js(&json!({"kty": "oct", "k": "c2VjcmV0"}))] {
        let e = jwk_thumbprint(bad).unwrap_err();
        assert_edgeward_error(&e, "invalid_argument");
        assert!(prop(&e, "field").is_undefined());
    }
}
