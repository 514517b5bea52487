//! The gate and the npm package decide alike: tests/fixtures/agreement.json (tokens signed by
//! jose for RS256, PS256, ES256, EdDSA and HS256, with the verdict for each: accepted or one of the
//! token reason codes; written by tests/fixtures/gen-agreement.mjs) run through the gate's JWT
//! step, the core pipeline's `Gate::verify_inline` on the policy the configuration builds (native
//! signature checks). tests/www/package.test.mjs runs the same file through the package
//! (WebCrypto signatures) and expects the same verdicts.

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::pipeline::Gate;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const FIXTURE: &str = include_str!("fixtures/agreement.json");

/// The gate's configuration for a suite: its policy and JWK Set as one issuer's entry.
fn policy(suite: &Value) -> Policy {
    let p = &suite["policy"];
    let doc = json!({
        "origin": "https://origin.example",
        "issuers": [{"issuer": p["issuer"], "audiences": p["audiences"], "algorithms": p["algorithms"], "jwks": suite["jwks"]}],
    });
    Policy::from_json(&doc.to_string()).unwrap_or_else(|e| panic!("{}: {e}", suite["alg"]))
}

#[test]
fn the_gate_gives_every_verdict_of_the_shared_fixture() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let now = fixture["nowSecs"].as_i64().unwrap();
    let mut codes = BTreeSet::new();
    let mut algs = BTreeSet::new();
    for suite in fixture["suites"].as_array().unwrap() {
        let gate = Gate::new(policy(suite));
        for case in suite["cases"].as_array().unwrap() {
            let token = case["token"].as_str().unwrap();
            let (verdict, _) = gate.verify_inline(token, NativeBackend, now, false);
            let got = verdict.as_ref().err().map(|e| e.code());
            assert_eq!(got, case["code"].as_str(), "{} / {}", suite["alg"], case["name"]);
            if let Err(e) = &verdict {
                assert_eq!(e.rejection("edgeward").status, 401, "{} / {}: a client error", suite["alg"], case["name"]);
                codes.insert(e.code());
            } else {
                algs.insert(suite["alg"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(algs.into_iter().collect::<Vec<_>>(), ["ES256", "EdDSA", "HS256", "PS256", "RS256"], "an accepted token per algorithm");
    let every_token_code = [
        "token_too_large",
        "malformed_token",
        "malformed_header",
        "duplicate_member",
        "alg_missing",
        "alg_none",
        "alg_not_allowed",
        "unsupported_header",
        "malformed_claims",
        "issuer_mismatch",
        "unknown_kid",
        "no_matching_key",
        "bad_signature",
        "missing_exp",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "lifetime_too_long",
        "audience_mismatch",
    ];
    assert_eq!(codes, every_token_code.into_iter().collect(), "each token reason code has a case");
}
