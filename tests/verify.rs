//! Host tests of the pipeline's JWT step and the policy it applies: every algorithm, every rejection code
//! with its HTTP status, issuer selection, key selection, time checks, audiences and scopes.
//! Time is always the fixed `NOW` (or an explicit boundary value).

#![allow(clippy::type_complexity)] // test tables are tuples

mod common;

use common::*;
use edgeward::core::access::Requirement;
use edgeward::core::alg::Algorithm::*;
use edgeward::core::config::Policy;
use edgeward::core::crypto::{NativeBackend, SignatureBackend};
use edgeward::core::error::{AuthError, Side};
use edgeward::core::jwk::{KeySet, KeySource};
use edgeward::core::token::UnverifiedToken;
use edgeward::core::verify::{PendingToken, SignatureJob, SignatureProof};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Table runner
// ---------------------------------------------------------------------------------------------

struct Case<'p> {
    name: String,
    policy: &'p Policy,
    token: String,
    now: i64,
    want: &'static str,
}

fn case<'p>(name: impl Into<String>, policy: &'p Policy, token: impl Into<String>, want: &'static str) -> Case<'p> {
    Case { name: name.into(), policy, token: token.into(), now: NOW, want }
}

fn case_at<'p>(name: impl Into<String>, policy: &'p Policy, token: impl Into<String>, now: i64, want: &'static str) -> Case<'p> {
    Case { name: name.into(), policy, token: token.into(), now, want }
}

/// The status each reason code must map to.
fn expected_status(code: &str) -> u16 {
    match code {
        "insufficient_scope" => 403,
        "jwks_unavailable" => 503,
        "origin_unreachable" => 502,
        "config_invalid" | "internal_error" => 500,
        _ => 401,
    }
}

/// Runs every case and reports all mismatches at once. For rejections it also checks the wire
/// mapping: status, code, and for token errors the RFC 6750 `invalid_token` challenge.
fn run(cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for c in cases {
        let r = verify_at(c.policy, &c.token, c.now);
        let got = outcome(&r);
        if got != c.want {
            failures.push(format!("{}: want {}, got {} ({:?})", c.name, c.want, got, r.as_ref().err()));
            continue;
        }
        if let Err(e) = &r {
            let rej = e.rejection(&c.policy.realm);
            let status = expected_status(c.want);
            if rej.status != status || rej.code != c.want {
                failures.push(format!("{}: rejection {} {} (want status {status})", c.name, rej.status, rej.code));
            }
            if status == 401 {
                let h = rej.www_authenticate.clone().unwrap_or_default();
                if !h.starts_with(&format!("Bearer realm=\"{}\", error=\"invalid_token\"", c.policy.realm)) {
                    failures.push(format!("{}: WWW-Authenticate {h:?}", c.name));
                }
                if rej.side != Side::Client {
                    failures.push(format!("{}: side {:?}", c.name, rej.side));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n  {}", failures.len(), cases.len(), failures.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// Reference policy: one issuer, ES512 (verified with the p521 crate) and EdDSA keys inline.
// ---------------------------------------------------------------------------------------------

fn reference_doc() -> Value {
    let mut doc = config(vec![issuer_entry(Some(ISS), &["ES512", "EdDSA"], vec![key(ES512).jwk("es", json!({})), key(EdDSA).jwk("ed", json!({}))])]);
    doc["max_lifetime_secs"] = json!(3600);
    doc["max_token_bytes"] = json!(4096);
    doc
}

fn reference() -> Policy {
    policy(&reference_doc())
}

/// ES512 token with the standard header and kid "es".
fn es(c: &Value) -> String {
    key(ES512).sign(Some("es"), c)
}

/// ES512 token with exactly this header (a JSON value) and claims text.
fn es_raw(header: Value, claims: &str) -> String {
    key(ES512).sign_raw(&header.to_string(), claims)
}

fn es_header() -> Value {
    json!({"alg": "ES512", "kid": "es"})
}

/// A policy document variant of the reference one.
fn reference_with(patch: Value) -> Policy {
    policy(&with(reference_doc(), patch))
}

// ---------------------------------------------------------------------------------------------
// 1. Every algorithm
// ---------------------------------------------------------------------------------------------

#[test]
fn every_algorithm_verifies_and_detects_tampering() {
    let mut failures = Vec::new();
    for alg in ALL_ALGS {
        let k = key(alg);
        let p = single_key_policy(k, "k1");
        let token = k.sign(Some("k1"), &claims());

        match verify(&p, &token) {
            Ok(vt) => {
                assert_eq!(vt.alg(), Some(alg), "{alg}");
                assert_eq!(vt.kid(), Some("k1"), "{alg}");
                assert_eq!(vt.subject(), Some("user-1"), "{alg}");
                assert_eq!(vt.issuer(), Some(ISS), "{alg}");
                assert_eq!(vt.expires_at(), Some(NOW + 600), "{alg}");
                assert_eq!(vt.issuer_index(), 0, "{alg}");
                assert_eq!(vt.scopes().collect::<Vec<_>>(), ["read", "write"], "{alg}");
            }
            Err(e) => failures.push(format!("{alg}: valid token rejected: {e:?}")),
        }

        // Without a kid, the issuer's single fitting key is used.
        let no_kid = k.sign(None, &claims());
        if let Err(e) = verify(&p, &no_kid) {
            failures.push(format!("{alg}: valid token without kid rejected: {e:?}"));
        }

        let sig_len = signature_bytes(&token).len();
        for (index, mask) in [(0, 0x01), (sig_len / 2, 0x80), (sig_len - 1, 0x01)] {
            let bad = flip_signature_byte(&token, index, mask);
            let got = outcome(&verify(&p, &bad));
            if got != "bad_signature" {
                failures.push(format!("{alg}: signature byte {index} flipped: got {got}"));
            }
        }

        // Payload changed, signature kept.
        let forged = replace_payload(&token, &with(claims(), json!({"sub": "admin"})));
        let got = outcome(&verify(&p, &forged));
        if got != "bad_signature" {
            failures.push(format!("{alg}: payload changed: got {got}"));
        }

        // Another key of the same kind under the same kid (RSA has only one test key).
        if alg.key_family() != edgeward::core::alg::KeyFamily::Rsa {
            let other = key_seeded(alg, 1).sign(Some("k1"), &claims());
            let got = outcome(&verify(&p, &other));
            if got != "bad_signature" {
                failures.push(format!("{alg}: signed by another key: got {got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eddsa_and_ed25519_names_share_ed25519_keys() {
    // A key declaring either name verifies a token with either header name, when the issuer
    // allows both names.
    let doc = config(vec![issuer_entry(
        Some(ISS),
        &["EdDSA", "Ed25519"],
        vec![key(EdDSA).jwk("decl-eddsa", json!({"alg": "EdDSA"})), key(EdDSA).jwk("decl-ed25519", json!({"alg": "Ed25519"}))],
    )]);
    let p = policy(&doc);
    for header_alg in [EdDSA, Ed25519] {
        for kid in ["decl-eddsa", "decl-ed25519"] {
            let t = key(header_alg).sign(Some(kid), &claims());
            let vt = verify(&p, &t).unwrap_or_else(|e| panic!("{header_alg} with {kid}: {e:?}"));
            assert_eq!(vt.alg(), Some(header_alg));
        }
    }
    // The allow-list is exact: an issuer listing only "EdDSA" does not accept the header name
    // "Ed25519" (RFC 9864 makes it a distinct, fully-specified algorithm identifier).
    let only_eddsa = single_key_policy(key(EdDSA), "k1");
    let t = key(Ed25519).sign(Some("k1"), &claims());
    assert_eq!(outcome(&verify(&only_eddsa, &t)), "alg_not_allowed");
}

// ---------------------------------------------------------------------------------------------
// 2. Every rejection code
// ---------------------------------------------------------------------------------------------

#[test]
fn reference_tokens_verify() {
    let p = reference();
    run(&[
        case("ES512 with kid", &p, es(&claims()), "ok"),
        case("ES512 without kid (only one P-521 key)", &p, key(ES512).sign(None, &claims()), "ok"),
        case("EdDSA with kid", &p, key(EdDSA).sign(Some("ed"), &claims()), "ok"),
        case("typ at+jwt", &p, es_raw(json!({"alg":"ES512","kid":"es","typ":"at+jwt"}), &claims().to_string()), "ok"),
        case("typ lower-case jwt", &p, es_raw(json!({"alg":"ES512","kid":"es","typ":"jwt"}), &claims().to_string()), "ok"),
        case(
            "jku/x5u/jwk header members are ignored, never used as keys",
            &p,
            es_raw(
                json!({"alg":"ES512","kid":"es","jku":"https://evil.example/jwks","x5u":"https://evil.example/c","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}),
                &claims().to_string(),
            ),
            "ok",
        ),
    ]);
}

#[test]
fn token_too_large_boundary() {
    let t = es(&claims());
    let exact = reference_with(json!({"max_token_bytes": t.len()}));
    assert!(verify(&exact, &t).is_ok(), "a token of exactly max_token_bytes is accepted");
    let under = reference_with(json!({"max_token_bytes": t.len() - 1}));
    let err = verify(&under, &t).unwrap_err();
    assert_eq!(err, AuthError::TokenTooLarge { len: t.len(), max: t.len() - 1 });
    assert_eq!(err.rejection("edgeward").status, 401);
    // The size check comes first: even garbage over the limit is token_too_large.
    let p = reference();
    assert_eq!(outcome(&verify(&p, &"x".repeat(4097))), "token_too_large");
}

#[test]
fn structural_rejections() {
    let p = reference();
    let good = es(&claims());
    let (h, pl, s) = segments(&good);
    let ed = key(EdDSA).sign(Some("ed"), &claims());
    let (eh, ep, esig) = segments(&ed);
    assert_eq!(esig.len() % 4, 2, "a 64-byte signature encodes with 4 unused bits");
    let non_canonical_sig = format!("{}B", &esig[..esig.len() - 1]);
    let big = es(&with(claims(), json!({"pad": "x".repeat(5000)})));

    run(&[
        case("too large", &p, big, "token_too_large"),
        // malformed_token
        case("4 segments", &p, format!("{good}.x"), "malformed_token"),
        case("4 segments (signature twice)", &p, format!("{good}.{s}"), "malformed_token"),
        case("2 segments", &p, format!("{h}.{pl}"), "malformed_token"),
        case("1 segment", &p, h.clone(), "malformed_token"),
        case("empty string", &p, "", "malformed_token"),
        case("only dots", &p, "..", "malformed_token"),
        case("empty header segment", &p, format!(".{pl}.{s}"), "malformed_token"),
        case("empty payload segment", &p, format!("{h}..{s}"), "malformed_token"),
        case("padding on header", &p, format!("{h}=.{pl}.{s}"), "malformed_token"),
        case("padding on payload", &p, format!("{h}.{pl}==.{s}"), "malformed_token"),
        case("padding on signature", &p, format!("{eh}.{ep}.{esig}=="), "malformed_token"),
        case("'+' (standard alphabet)", &p, format!("+{}.{pl}.{s}", &h[1..]), "malformed_token"),
        case("'/' (standard alphabet)", &p, format!("{h}.{pl}.{}/", &s[..s.len() - 1]), "malformed_token"),
        case("'*' in payload", &p, format!("{h}.*{}.{s}", &pl[1..]), "malformed_token"),
        case("space inside", &p, format!("{h}.{} {}.{s}", &pl[..4], &pl[4..]), "malformed_token"),
        case("leading space", &p, format!(" {good}"), "malformed_token"),
        case("trailing newline", &p, format!("{good}\n"), "malformed_token"),
        case("non-ASCII", &p, format!("{h}é.{pl}.{s}"), "malformed_token"),
        case("non-zero trailing bits", &p, format!("{eh}.{ep}.{non_canonical_sig}"), "malformed_token"),
        case("empty signature segment", &p, format!("{h}.{pl}."), "bad_signature"),
    ]);
}

#[test]
fn header_rejections() {
    let p = reference();
    let c = claims().to_string();
    let raw = |header: &str| key(ES512).sign_raw(header, &c);
    let mut cases = vec![
        case("header is an array", &p, raw("[1]"), "malformed_header"),
        case("header is null", &p, raw("null"), "malformed_header"),
        case("header is not JSON", &p, raw("{"), "malformed_header"),
        case("header has trailing data", &p, raw(r#"{"alg":"ES512","kid":"es"} {}"#), "malformed_header"),
        case("header is not UTF-8", &p, format!("{}.{}.{}", b64(&[0xff, 0xfe]), b64(c.as_bytes()), b64(&[1; 132])), "malformed_header"),
        case("alg is a number", &p, raw(r#"{"alg":1}"#), "malformed_header"),
        case("kid is a number", &p, raw(r#"{"alg":"ES512","kid":7}"#), "malformed_header"),
        case("typ not a JWT type", &p, raw(r#"{"alg":"ES512","kid":"es","typ":"JOSE+JSON"}"#), "malformed_header"),
        case("typ not a string", &p, raw(r#"{"alg":"ES512","kid":"es","typ":1}"#), "malformed_header"),
        case("nested JWT (cty JWT)", &p, raw(r#"{"alg":"ES512","kid":"es","cty":"JWT"}"#), "malformed_header"),
        case("duplicate kid", &p, raw(r#"{"alg":"ES512","kid":"es","kid":"es"}"#), "duplicate_member"),
        case("duplicate alg (second none)", &p, raw(r#"{"alg":"ES512","alg":"none"}"#), "duplicate_member"),
        case("duplicate alg (same value)", &p, raw(r#"{"alg":"ES512","alg":"ES512","kid":"es"}"#), "duplicate_member"),
        case("alg missing", &p, raw(r#"{"typ":"JWT","kid":"es"}"#), "alg_missing"),
        case("alg missing (empty header)", &p, raw("{}"), "alg_missing"),
        case("crit", &p, raw(r#"{"alg":"ES512","kid":"es","crit":["exp"],"exp":1}"#), "unsupported_header"),
        case("crit empty", &p, raw(r#"{"alg":"ES512","kid":"es","crit":[]}"#), "unsupported_header"),
        case("b64 false", &p, raw(r#"{"alg":"ES512","kid":"es","b64":false}"#), "unsupported_header"),
        case("b64 true", &p, raw(r#"{"alg":"ES512","kid":"es","b64":true}"#), "unsupported_header"),
        case("zip", &p, raw(r#"{"alg":"ES512","kid":"es","zip":"DEF"}"#), "unsupported_header"),
        // alg_not_allowed: known but not listed for the issuer, unknown, or wrong case.
        case("ES256 token, issuer allows ES512/EdDSA", &p, key(ES256).sign(Some("es"), &claims()), "alg_not_allowed"),
        case("RS256 header", &p, raw(r#"{"alg":"RS256","kid":"es"}"#), "alg_not_allowed"),
        case("HS256 token", &p, key(HS256).sign(Some("es"), &claims()), "alg_not_allowed"),
        case("unknown alg", &p, raw(r#"{"alg":"XS999","kid":"es"}"#), "alg_not_allowed"),
        case("lower-case es512", &p, raw(r#"{"alg":"es512","kid":"es"}"#), "alg_not_allowed"),
        case("empty alg", &p, raw(r#"{"alg":"","kid":"es"}"#), "alg_not_allowed"),
    ];
    for none in ["none", "None", "NONE", "nOnE", " none "] {
        let h = json!({"alg": none, "typ": "JWT"}).to_string();
        cases.push(case(format!("alg {none:?} with a signature"), &p, raw(&h), "alg_none"));
        cases.push(case(format!("alg {none:?} unsigned"), &p, format!("{}.{}.", b64(h.as_bytes()), b64(c.as_bytes())), "alg_none"));
    }
    run(&cases);
}

#[test]
fn hmac_token_never_verifies_against_an_rsa_issuer() {
    // The classic key-confusion attack: the attacker signs HS256 with the RSA public key (in any
    // encoding) as the HMAC secret and hopes the verifier uses the RSA key as an HMAC key.
    let rsa = key(RS256);
    let p = single_key_policy(rsa, "rsa");
    assert!(verify(&p, &rsa.sign(Some("rsa"), &claims())).is_ok(), "control: RS256 verifies");

    let jwk_text = rsa.jwk("rsa", json!({})).to_string();
    let (n, _) = rsa_components();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa"}).to_string();
    let input = format!("{}.{}", b64(header.as_bytes()), b64j(&claims()));
    for (what, secret) in [("JWK JSON", jwk_text.as_bytes().to_vec()), ("modulus", n.clone()), ("b64 modulus", b64(&n).into_bytes())] {
        use jwt_simple::prelude::MACLike;
        let tag = jwt_simple::prelude::HS256Key::from_bytes(&secret).authentication_tag(input.as_bytes());
        let t = format!("{input}.{}", b64(&tag));
        let r = verify(&p, &t);
        assert_eq!(outcome(&r), "alg_not_allowed", "HS256 signed with the RSA {what}");
    }

    // Even an issuer that allows HS256 never uses an RSA key as an HMAC secret.
    let hs_with_rsa_key = policy(&config(vec![issuer_entry(Some(ISS), &["HS256"], vec![rsa.jwk("rsa", json!({}))])]));
    let tag = {
        use jwt_simple::prelude::MACLike;
        jwt_simple::prelude::HS256Key::from_bytes(&n).authentication_tag(input.as_bytes())
    };
    assert_eq!(outcome(&verify(&hs_with_rsa_key, &format!("{input}.{}", b64(&tag)))), "no_matching_key");

    // And mixing HS* with asymmetric algorithms for one issuer is a configuration error.
    let mixed = config(vec![issuer_entry(Some(ISS), &["RS256", "HS256"], vec![rsa.jwk("rsa", json!({}))])]);
    assert_eq!(Policy::from_json(&mixed.to_string()).unwrap_err().field, "issuers[0].algorithms");
}

#[test]
fn claims_rejections() {
    let p = reference();
    let no_aud = reference_with(json!({"issuers": [with(reference_doc()["issuers"][0].clone(), json!({"audiences": []}))]}));
    let cl = |patch: Value| es(&with(claims(), patch));
    let raw = |claims: &str| es_raw(es_header(), claims);
    run(&[
        // malformed_claims (ES512 is verified by the p521 crate alone, so these reach the claim checks)
        case("claims is an array", &p, raw("[]"), "malformed_claims"),
        case("claims is null", &p, raw("null"), "malformed_claims"),
        case("claims is not JSON", &p, raw("{"), "malformed_claims"),
        case("claims not UTF-8", &p, format!("{}.{}.{}", b64j(&es_header()), b64(&[0xc3, 0x28]), b64(&[1; 132])), "malformed_claims"),
        case("exp is a string", &p, cl(json!({"exp": "soon"})), "malformed_claims"),
        case("exp is a numeric string", &p, cl(json!({"exp": (NOW + 600).to_string()})), "malformed_claims"),
        case("exp is negative", &p, cl(json!({"exp": -1})), "malformed_claims"),
        case("exp is boolean", &p, cl(json!({"exp": true})), "malformed_claims"),
        case("exp is absurdly large", &p, cl(json!({"exp": 1e16})), "malformed_claims"),
        case("nbf is a string", &p, cl(json!({"nbf": "x"})), "malformed_claims"),
        case("iat is an array", &p, cl(json!({"iat": []})), "malformed_claims"),
        case("aud is a number", &p, cl(json!({"aud": 5})), "malformed_claims"),
        case("aud is an object", &p, cl(json!({"aud": {"a": 1}})), "malformed_claims"),
        case("aud array holds a number", &p, cl(json!({"aud": [AUD, 5]})), "malformed_claims"),
        case("aud is a number (audiences not checked)", &no_aud, cl(json!({"aud": 5})), "malformed_claims"),
        case("sub is a number", &p, cl(json!({"sub": 5})), "malformed_claims"),
        case("jti is a number", &p, cl(json!({"jti": 5})), "malformed_claims"),
        case("scope is an array", &p, cl(json!({"scope": ["read"]})), "malformed_claims"),
        case("scp holds a number", &p, cl(json!({"scp": ["read", 1]})), "malformed_claims"),
        case("scp is a number", &p, cl(json!({"scp": 1})), "malformed_claims"),
        case("iss is a number", &p, cl(json!({"iss": 5})), "malformed_claims"),
        case("duplicate sub", &p, raw(&format!(r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"sub":"a","sub":"b"}}"#, NOW + 60)), "duplicate_member"),
        case("duplicate exp", &p, raw(&format!(r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"exp":1}}"#, NOW + 60)), "duplicate_member"),
        case("nested duplicate", &p, raw(&format!(r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"x":{{"a":1,"a":2}}}}"#, NOW + 60)), "duplicate_member"),
        // issuer_mismatch
        case("other iss", &p, cl(json!({"iss": "https://other.example"})), "issuer_mismatch"),
        case("iss with trailing slash", &p, cl(json!({"iss": format!("{ISS}/")})), "issuer_mismatch"),
        case("iss missing", &p, cl(json!({"iss": null})), "issuer_mismatch"),
        // audience_mismatch
        case("aud other string", &p, cl(json!({"aud": "api://other"})), "audience_mismatch"),
        case("aud differs in case", &p, cl(json!({"aud": AUD.to_uppercase()})), "audience_mismatch"),
        case("aud array without ours", &p, cl(json!({"aud": ["x", "y"]})), "audience_mismatch"),
        case("aud empty array", &p, cl(json!({"aud": []})), "audience_mismatch"),
        case("aud missing", &p, cl(json!({"aud": null})), "audience_mismatch"),
        case("aud array with ours", &p, cl(json!({"aud": ["x", AUD]})), "ok"),
        case("aud not checked: missing", &no_aud, cl(json!({"aud": null})), "ok"),
        case("aud not checked: any string", &no_aud, cl(json!({"aud": "anything"})), "ok"),
        case("aud not checked: array", &no_aud, cl(json!({"aud": ["a", "b"]})), "ok"),
        // claims Edgeward does not know are allowed, whatever their type
        case("custom claims of any type", &p, cl(json!({"nonce": 5, "roles": {"a": [1, 2]}, "n": null})), "ok"),
    ]);
}

#[test]
fn key_selection_rejections() {
    let p = reference();
    let es0 = key(ES512);
    let es1 = key_seeded(ES512, 1);
    let issuer_with = |keys: Vec<Value>| policy(&config(vec![issuer_entry(Some(ISS), &["ES512"], keys)]));
    let two = issuer_with(vec![es0.jwk("a", json!({})), es1.jwk("b", json!({}))]);
    let same_kid = issuer_with(vec![es0.jwk("a", json!({})), es1.jwk("a", json!({}))]);
    let enc = issuer_with(vec![es0.jwk("a", json!({"use": "enc"}))]);
    let sig = issuer_with(vec![es0.jwk("a", json!({"use": "sig"}))]);
    let ops_sign = issuer_with(vec![es0.jwk("a", json!({"key_ops": ["sign"]}))]);
    let ops_verify = issuer_with(vec![es0.jwk("a", json!({"key_ops": ["sign", "verify"]}))]);
    let declared_other = issuer_with(vec![es0.jwk("a", json!({"alg": "ES384"}))]);
    let declared_same = issuer_with(vec![es0.jwk("a", json!({"alg": "ES512"}))]);
    let rsa_declared_rs = policy(&config(vec![issuer_entry(Some(ISS), &["RS256", "PS256"], vec![key(RS256).jwk("r", json!({"alg": "RS256"}))])]));
    let hs_short = policy(&config(vec![issuer_entry(Some(ISS), &["HS512"], vec![json!({"kty":"oct","kid":"h","k": b64(&[7u8; 32])})])]));
    let t = |k: common::TestKey, kid: Option<&str>| k.sign(kid, &claims());

    run(&[
        case("unknown kid (inline keys only)", &p, t(es0, Some("nope")), "unknown_kid"),
        case("kid names a key of another type", &p, t(es0, Some("ed")), "no_matching_key"),
        case("EdDSA token naming the P-521 key", &p, t(key(EdDSA), Some("es")), "no_matching_key"),
        case("no kid, two fitting keys", &two, t(es0, None), "no_matching_key"),
        case("kid a of two", &two, t(es0, Some("a")), "ok"),
        case("kid b of two", &two, t(es1, Some("b")), "ok"),
        case("kid a, signed with key b", &two, t(es1, Some("a")), "bad_signature"),
        case("kid names two fitting keys", &same_kid, t(es0, Some("a")), "no_matching_key"),
        case("use enc, with kid", &enc, t(es0, Some("a")), "no_matching_key"),
        case("use enc, without kid", &enc, t(es0, None), "no_matching_key"),
        case("use sig", &sig, t(es0, Some("a")), "ok"),
        case("key_ops without verify", &ops_sign, t(es0, Some("a")), "no_matching_key"),
        case("key_ops without verify, no kid", &ops_sign, t(es0, None), "no_matching_key"),
        case("key_ops with verify", &ops_verify, t(es0, Some("a")), "ok"),
        case("key declares another alg", &declared_other, t(es0, Some("a")), "no_matching_key"),
        case("key declares this alg", &declared_same, t(es0, Some("a")), "ok"),
        case("RSA key declared RS256 used for PS256", &rsa_declared_rs, t(key(PS256), Some("r")), "no_matching_key"),
        case("RSA key declared RS256 used for RS256", &rsa_declared_rs, t(key(RS256), Some("r")), "ok"),
        case("HS512 with a 32-byte secret", &hs_short, key(HS512).sign_raw(r#"{"alg":"HS512","kid":"h"}"#, &claims().to_string()), "no_matching_key"),
    ]);
}

#[test]
fn signature_length_and_encoding() {
    let p = reference();
    let es256 = single_key_policy(key(ES256), "k1");
    let es384 = single_key_policy(key(ES384), "k1");
    let rsa = single_key_policy(key(RS256), "k1");
    let hs = single_key_policy(key(HS256), "k1");

    let t512 = es(&claims());
    let t256 = key(ES256).sign(Some("k1"), &claims());
    let t384 = key(ES384).sign(Some("k1"), &claims());
    let ted = key(EdDSA).sign(Some("ed"), &claims());
    let trs = key(RS256).sign(Some("k1"), &claims());
    let ths = key(HS256).sign(Some("k1"), &claims());
    let s512 = signature_bytes(&t512);
    let s256 = signature_bytes(&t256);
    let s384 = signature_bytes(&t384);
    assert_eq!((s256.len(), s384.len(), s512.len()), (64, 96, 132), "raw R||S lengths");
    let ext = |v: &[u8], extra: &[u8]| [v, extra].concat();

    run(&[
        case("ES512 DER", &p, replace_signature(&t512, &der_signature(&s512)), "bad_signature"),
        case("ES512 131 bytes", &p, replace_signature(&t512, &s512[..131]), "bad_signature"),
        case("ES512 133 bytes", &p, replace_signature(&t512, &ext(&s512, &[0])), "bad_signature"),
        case("ES512 zero R and S", &p, replace_signature(&t512, &[0u8; 132]), "bad_signature"),
        case("ES256 DER", &es256, replace_signature(&t256, &der_signature(&s256)), "bad_signature"),
        case("ES256 63 bytes", &es256, replace_signature(&t256, &s256[..63]), "bad_signature"),
        case("ES256 65 bytes", &es256, replace_signature(&t256, &ext(&s256, &[0])), "bad_signature"),
        case("ES384 DER", &es384, replace_signature(&t384, &der_signature(&s384)), "bad_signature"),
        case("ES384 95 bytes", &es384, replace_signature(&t384, &s384[..95]), "bad_signature"),
        case("Ed25519 63 bytes", &p, replace_signature(&ted, &signature_bytes(&ted)[..63]), "bad_signature"),
        case("RSA 255 bytes", &rsa, replace_signature(&trs, &signature_bytes(&trs)[..255]), "bad_signature"),
        case("RSA 257 bytes", &rsa, replace_signature(&trs, &ext(&signature_bytes(&trs), &[0])), "bad_signature"),
        case("HS256 31 bytes", &hs, replace_signature(&ths, &signature_bytes(&ths)[..31]), "bad_signature"),
        case("HS256 64 bytes", &hs, replace_signature(&ths, &ext(&signature_bytes(&ths), &[0; 32])), "bad_signature"),
        case("signature of another token", &p, replace_signature(&t512, &signature_bytes(&es(&with(claims(), json!({"sub": "x"}))))), "bad_signature"),
        case(
            "header changed, signature kept",
            &p,
            format!("{}.{}.{}", b64j(&json!({"alg":"ES512","kid":"es","typ":"at+jwt"})), segments(&t512).1, segments(&t512).2),
            "bad_signature",
        ),
    ]);
}

/// DER `ECDSA-Sig-Value` of a raw R||S signature.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    fn int(b: &[u8]) -> Vec<u8> {
        let nz = b.iter().position(|&x| x != 0).unwrap_or(b.len() - 1);
        let mut v = b[nz..].to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 128 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[test]
fn exp_boundaries() {
    let p = reference();
    let e = NOW + 100;
    let t = es(&json!({"iss": ISS, "aud": AUD, "sub": "s", "iat": NOW, "exp": e}));
    let frac = es(&json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": e as f64 + 0.5}));
    let zero = reference_with(json!({"leeway_secs": 0}));
    run(&[
        case_at("now == exp + leeway", &p, t.clone(), e + 60, "expired"),
        case_at("now == exp + leeway - 1", &p, t.clone(), e + 59, "ok"),
        case_at("long expired", &p, t.clone(), e + 10_000, "expired"),
        case_at("leeway 0: now == exp", &zero, t.clone(), e, "expired"),
        case_at("leeway 0: now == exp - 1", &zero, t.clone(), e - 1, "ok"),
        case_at("fractional exp: now == floor(exp) + leeway", &p, frac.clone(), e + 60, "ok"),
        case_at("fractional exp: now == ceil(exp) + leeway", &p, frac, e + 61, "expired"),
    ]);
    match verify_at(&p, &t, e + 60).unwrap_err() {
        AuthError::Expired { now, exp } => assert_eq!((now, exp), (e + 60, e)),
        other => panic!("{other:?}"),
    }
    // The public description does not echo times.
    let r = verify_at(&p, &t, e + 60).unwrap_err().rejection("edgeward");
    assert_eq!(r.message, "token expired");
}

#[test]
fn exp_requirement() {
    let without_exp = es(&json!({"iss": ISS, "aud": AUD, "sub": "s", "iat": NOW}));
    let p = reference();
    let optional = reference_with(json!({"require_exp": false}));
    let v = verify(&optional, &without_exp).expect("exp optional");
    assert_eq!(v.expires_at(), None);
    run(&[
        case("no exp, required (default)", &p, without_exp.clone(), "missing_exp"),
        case("no exp, optional", &optional, without_exp, "ok"),
        case("exp present, optional: still checked", &optional, es(&with(claims(), json!({"exp": NOW - 1000}))), "expired"),
    ]);
}

#[test]
fn nbf_and_iat_boundaries() {
    let p = reference();
    let n = NOW + 1000;
    let nbf = es(&json!({"iss": ISS, "aud": AUD, "nbf": n, "exp": n + 600}));
    let i = NOW + 1000;
    let iat = es(&json!({"iss": ISS, "aud": AUD, "iat": i, "exp": i + 600}));
    run(&[
        case_at("nbf == now + leeway + 1", &p, nbf.clone(), n - 61, "not_yet_valid"),
        case_at("nbf == now + leeway", &p, nbf.clone(), n - 60, "ok"),
        case_at("nbf long in the future", &p, nbf.clone(), n - 3000, "not_yet_valid"),
        case_at("iat == now + leeway + 1", &p, iat.clone(), i - 61, "issued_in_future"),
        case_at("iat == now + leeway", &p, iat.clone(), i - 60, "ok"),
        case_at("iat in the past", &p, iat, i + 10, "ok"),
    ]);
}

#[test]
fn lifetime_limits() {
    let p = reference(); // max_lifetime_secs 3600
    let default = reference_with(json!({"max_lifetime_secs": null})); // member removed: default
    let mut unlimited_doc = reference_doc();
    unlimited_doc["max_lifetime_secs"] = Value::Null; // explicit null: unlimited
    let unlimited = policy(&unlimited_doc);
    let tok = |iat: Option<i64>, exp: i64| {
        let mut c = json!({"iss": ISS, "aud": AUD, "exp": exp});
        if let Some(i) = iat {
            c["iat"] = json!(i);
        }
        es(&c)
    };
    assert_eq!(default.max_lifetime_secs, Some(86_400), "default");
    assert_eq!(unlimited.max_lifetime_secs, None);
    run(&[
        case("exp - iat == max", &p, tok(Some(NOW), NOW + 3600), "ok"),
        case("exp - iat == max + 1", &p, tok(Some(NOW), NOW + 3601), "lifetime_too_long"),
        case("no iat: exp - now == max", &p, tok(None, NOW + 3600), "ok"),
        case("no iat: exp - now == max + 1", &p, tok(None, NOW + 3601), "lifetime_too_long"),
        case("old iat counts", &p, tok(Some(NOW - 4000), NOW + 10), "lifetime_too_long"),
        case("default limit 86400 + 1", &default, tok(Some(NOW), NOW + 86_401), "lifetime_too_long"),
        case("default limit exact", &default, tok(Some(NOW), NOW + 86_400), "ok"),
        case("null = unlimited", &unlimited, tok(Some(NOW), NOW + 10 * 365 * 86_400), "ok"),
    ]);
    match verify(&p, &tok(Some(NOW), NOW + 3601)).unwrap_err() {
        AuthError::LifetimeTooLong { lifetime, max } => assert_eq!((lifetime, max), (3601, 3600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scopes_and_authorize() {
    let p = reference();
    let scope_str = verify(&p, &es(&claims())).unwrap();
    let scp_arr = verify(&p, &es(&with(claims(), json!({"scope": null, "scp": ["admin", "ops"]})))).unwrap();
    let scp_str = verify(&p, &es(&with(claims(), json!({"scope": null, "scp": "x  y"})))).unwrap();
    let both = verify(&p, &es(&with(claims(), json!({"scope": "read read write", "scp": ["admin", "read"]})))).unwrap();
    let none = verify(&p, &es(&with(claims(), json!({"scope": null})))).unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(scope_str.scopes().collect::<Vec<_>>(), s(&["read", "write"]));
    assert_eq!(scp_arr.scopes().collect::<Vec<_>>(), s(&["admin", "ops"]));
    assert_eq!(scp_str.scopes().collect::<Vec<_>>(), s(&["x", "y"]));
    assert_eq!(both.scopes().collect::<Vec<_>>(), s(&["admin", "read", "write"]), "merged, sorted, deduplicated");
    assert_eq!(none.scopes().next(), None);

    let need = |v: &[&str]| Requirement::Token { scopes: s(v) };
    let table: Vec<(&str, &edgeward::core::verify::VerifiedToken, Requirement, Option<(&str, &str)>)> = vec![
        ("public route", &none, Requirement::Public, None),
        ("no scopes needed", &none, need(&[]), None),
        ("scope string: read", &scope_str, need(&["read"]), None),
        ("scope string: read write", &scope_str, need(&["write", "read"]), None),
        ("scope string lacks admin", &scope_str, need(&["admin"]), Some(("admin", "admin"))),
        ("scope string lacks one of two", &scope_str, need(&["read", "admin"]), Some(("read admin", "admin"))),
        ("scp array: admin", &scp_arr, need(&["admin"]), None),
        ("scp array lacks read", &scp_arr, need(&["admin", "read"]), Some(("admin read", "read"))),
        ("scp string", &scp_str, need(&["y"]), None),
        ("no scopes at all", &none, need(&["read"]), Some(("read", "read"))),
        ("prefix is not a scope", &scope_str, need(&["rea"]), Some(("rea", "rea"))),
    ];
    for (name, vt, req, want) in table {
        match (vt.authorize(&req), want) {
            (Ok(()), None) => {}
            (Err(e), Some((required, missing))) => {
                assert_eq!(e, AuthError::InsufficientScope { required: required.into(), missing: missing.into() }, "{name}");
                let r = e.rejection("edgeward");
                assert_eq!((r.status, r.code, r.rfc_error), (403, "insufficient_scope", Some("insufficient_scope")), "{name}");
                let h = r.www_authenticate.expect("challenge");
                assert!(h.starts_with("Bearer realm=\"edgeward\", error=\"insufficient_scope\""), "{name}: {h}");
                assert!(h.ends_with(&format!("scope=\"{required}\"")), "{name}: {h}");
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    // Through the route table of a policy.
    let routed = reference_with(json!({"routes": [{"path": "/admin/*", "scopes": ["admin"]}, {"path": "/health", "public": true}]}));
    let req = routed.routes.requirement("GET", "/admin/users");
    assert_eq!(req, need(&["admin"]));
    assert_eq!(scope_str.authorize(&req).unwrap_err().code(), "insufficient_scope");
    assert!(scp_arr.authorize(&req).is_ok());
    assert_eq!(routed.routes.requirement("GET", "/health"), Requirement::Public);
    assert_eq!(routed.routes.requirement("GET", "/other"), need(&[]));
}

#[test]
fn rejection_wire_format() {
    let r = AuthError::MissingToken.rejection("edgeward");
    assert_eq!((r.status, r.www_authenticate.as_deref()), (401, Some("Bearer realm=\"edgeward\"")));
    let p = reference_with(json!({"realm": "my \"api\""}));
    let e = verify(&p, "a.b").unwrap_err();
    let r = e.rejection(&p.realm);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.www_authenticate.as_deref(),
        Some("Bearer realm=\"my \\\"api\\\"\", error=\"invalid_token\", error_description=\"token is not three segments of canonical base64url\"")
    );
    let r = AuthError::JwksUnavailable.rejection("edgeward");
    assert_eq!((r.status, r.www_authenticate, r.side), (503, None, Side::Upstream));
    // Attacker-controlled alg names are bounded and printable in the description.
    let t = key(ES512).sign_raw(&json!({"alg": format!("{}\r\n", "A".repeat(300))}).to_string(), "{}");
    let e = verify(&reference(), &t).unwrap_err();
    assert_eq!(e.code(), "alg_not_allowed");
    let r = e.rejection("edgeward");
    assert!(r.message.len() < 120 && !r.message.contains('\r') && !r.message.contains('\n'), "{:?}", r.message);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors about keys
// ---------------------------------------------------------------------------------------------

fn rsa_modulus(bits: usize) -> Vec<u8> {
    let mut n = vec![0xffu8; bits.div_ceil(8)];
    let top_bits = bits - (n.len() - 1) * 8;
    n[0] = if top_bits == 8 { 0xc1 } else { (1u8 << (top_bits - 1)) | 1 };
    n
}

#[test]
fn rsa_key_size_in_inline_config() {
    let doc = |n: &[u8]| config(vec![issuer_entry(Some(ISS), &["RS256"], vec![json!({"kty":"RSA","kid":"r","n": b64(n),"e":"AQAB"})])]);
    for bits in [512, 1024, 2047] {
        let n = rsa_modulus(bits);
        let err = Policy::from_json(&doc(&n).to_string()).expect_err("short RSA key must be refused");
        assert_eq!(err.field, "issuers[0].jwks", "{bits} bits");
        assert!(err.message.contains(&format!("{bits} bits")) && err.message.contains("2048"), "{bits}: {}", err.message);
    }
    // 2048 bits are fine, with or without a leading zero byte.
    let n = rsa_modulus(2048);
    assert!(Policy::from_json(&doc(&n).to_string()).is_ok());
    assert!(Policy::from_json(&doc(&[&[0u8][..], &n].concat()).to_string()).is_ok());
    // A real key is accepted.
    let (real_n, _) = rsa_components();
    assert!(Policy::from_json(&doc(&real_n).to_string()).is_ok());
    // Fetched sets skip (rather than refuse) short keys.
    let set = KeySet::parse(&json!({"keys":[{"kty":"RSA","n": b64(&rsa_modulus(1024)),"e":"AQAB"}]}), KeySource::Fetched).unwrap();
    assert!(set.keys.is_empty() && set.skipped.len() == 1);
}

#[test]
fn inline_key_config_errors_name_the_field() {
    let ed = key(EdDSA);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("private member d", config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![ed.jwk("k", json!({"d": b64(&[1; 32])}))])]), "issuers[0].jwks"),
        ("bad base64url x", config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![ed.jwk("k", json!({"x": "AA=="}))])]), "issuers[0].jwks"),
        ("oct key without HS alg", config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![key(HS256).jwk("h", json!({}))])]), "issuers[0].jwks"),
        ("jwks not a key set", config(vec![json!({"issuer": ISS, "algorithms": ["EdDSA"], "jwks": [1]})]), "issuers[0].jwks"),
        (
            "second issuer's keys",
            config(vec![
                issuer_entry(Some(ISS), &["EdDSA"], vec![ed.jwk("k", json!({}))]),
                issuer_entry(Some("https://b"), &["EdDSA"], vec![json!({"kty":"RSA","n":"AQAB","e":"AQAB"})]),
            ]),
            "issuers[1].jwks",
        ),
        ("unknown algorithm", config(vec![issuer_entry(Some(ISS), &["EdDSA", "RS257"], vec![ed.jwk("k", json!({}))])]), "issuers[0].algorithms[1]"),
        ("none algorithm", config(vec![issuer_entry(Some(ISS), &["none"], vec![ed.jwk("k", json!({}))])]), "issuers[0].algorithms[0]"),
        ("no algorithms", config(vec![issuer_entry(Some(ISS), &[], vec![ed.jwk("k", json!({}))])]), "issuers[0].algorithms"),
        (
            "empty audience",
            config(vec![with(issuer_entry(Some(ISS), &["EdDSA"], vec![ed.jwk("k", json!({}))]), json!({"audiences": [""]}))]),
            "issuers[0].audiences[0]",
        ),
        ("no keys at all", config(vec![json!({"issuer": ISS, "algorithms": ["EdDSA"]})]), "issuers[0].jwks_uri"),
        ("HMAC with jwks_uri", config(vec![json!({"issuer": ISS, "algorithms": ["HS256"], "jwks_uri": "https://issuer.example/jwks"})]), "issuers[0].jwks_uri"),
    ];
    for (name, doc, field) in cases {
        let err = Policy::from_json(&doc.to_string()).expect_err(name);
        assert_eq!(err.field, field, "{name}: {}", err.message);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Several issuers
// ---------------------------------------------------------------------------------------------

#[test]
fn iss_selects_the_issuer_entry() {
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    let doc = config(vec![
        json!({"issuer": A, "audiences": ["aud-a"], "algorithms": ["EdDSA"], "jwks": {"keys": [key(EdDSA).jwk("a1", json!({}))]}}),
        json!({"issuer": B, "audiences": ["aud-b"], "algorithms": ["ES512", "EdDSA"],
               "jwks": {"keys": [key(ES512).jwk("b1", json!({})), key_seeded(EdDSA, 2).jwk("b2", json!({}))]}}),
    ]);
    let p = policy(&doc);
    let c = |iss: &str, aud: &str| json!({"iss": iss, "aud": aud, "sub": "s", "iat": NOW, "exp": NOW + 60});
    let a_ok = key(EdDSA).sign(Some("a1"), &c(A, "aud-a"));
    let b_ok = key(ES512).sign(Some("b1"), &c(B, "aud-b"));
    assert_eq!(verify(&p, &a_ok).unwrap().issuer_index(), 0);
    assert_eq!(verify(&p, &b_ok).unwrap().issuer_index(), 1);
    assert_eq!(verify(&p, &key_seeded(EdDSA, 2).sign(Some("b2"), &c(B, "aud-b"))).unwrap().issuer_index(), 1);
    run(&[
        case("A token with B's alg", &p, key(ES512).sign(Some("b1"), &c(A, "aud-a")), "alg_not_allowed"),
        case("A token with B's kid (keys are per issuer)", &p, key_seeded(EdDSA, 2).sign(Some("b2"), &c(A, "aud-a")), "unknown_kid"),
        case("A token without kid signed by B's key", &p, key_seeded(EdDSA, 2).sign(None, &c(A, "aud-a")), "bad_signature"),
        case("B token with A's audience", &p, key(ES512).sign(Some("b1"), &c(B, "aud-a")), "audience_mismatch"),
        case("unknown issuer", &p, key(EdDSA).sign(Some("a1"), &c("https://c.example", "aud-a")), "issuer_mismatch"),
        case("no iss with several issuers", &p, key(EdDSA).sign(Some("a1"), &with(c(A, "aud-a"), json!({"iss": null}))), "issuer_mismatch"),
    ]);

    // `issuer: null` is allowed only alone.
    let mut two_with_null = doc.clone();
    two_with_null["issuers"][1]["issuer"] = Value::Null;
    let err = Policy::from_json(&two_with_null.to_string()).unwrap_err();
    assert_eq!(err.field, "issuers[1].issuer");
    // Duplicate issuers are refused.
    let mut dup = doc.clone();
    dup["issuers"][1]["issuer"] = json!(A);
    assert_eq!(Policy::from_json(&dup.to_string()).unwrap_err().field, "issuers[1].issuer");
    // Empty issuer string is refused.
    let mut empty = doc;
    empty["issuers"][0]["issuer"] = json!("");
    assert_eq!(Policy::from_json(&empty.to_string()).unwrap_err().field, "issuers[0].issuer");
}

#[test]
fn null_issuer_alone_accepts_any_iss() {
    let p = policy(&config(vec![issuer_entry(None, &["EdDSA"], vec![key(EdDSA).jwk("k", json!({}))])]));
    let t = |patch: Value| key(EdDSA).sign(Some("k"), &with(claims(), patch));
    run(&[
        case("any iss", &p, t(json!({"iss": "https://anyone.example"})), "ok"),
        case("no iss", &p, t(json!({"iss": null})), "ok"),
        case("iss of wrong type", &p, t(json!({"iss": 5})), "malformed_claims"),
        case("audiences still checked", &p, t(json!({"aud": "other"})), "audience_mismatch"),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Fetched keys through the gate
// ---------------------------------------------------------------------------------------------

#[test]
fn gate_with_fetched_keys() {
    let doc = config(vec![json!({"issuer": ISS, "audiences": [AUD], "algorithms": ["ES512", "EdDSA"], "jwks_uri": "https://issuer.example/jwks"})]);
    let p = policy(&doc);
    let jwks = json!({"keys": [key(ES512).jwk("es", json!({}))]});
    let fetched = [Some(KeySet::parse(&jwks, KeySource::Fetched).unwrap())];
    let nothing: Vec<Option<KeySet>> = vec![None];
    let t = es(&claims());

    let vt = verify_with(&p, &t, &fetched[..], NativeBackend, NOW).expect("verifies with fetched keys");
    assert_eq!(vt.kid(), Some("es"));
    let unknown = key(ES512).sign(Some("rotated"), &claims());
    let wrong_type = key(EdDSA).sign(Some("es"), &claims());
    let table: Vec<(&str, &[Option<KeySet>], &str, &str)> = vec![
        ("no fetched keys: unavailable, not unknown", &nothing[..], t.as_str(), "jwks_unavailable"),
        ("InlineOnly-equivalent empty slice", &[][..], t.as_str(), "jwks_unavailable"),
        ("fetched keys, unknown kid", &fetched[..], unknown.as_str(), "unknown_kid"),
        ("fetched keys, kid of wrong type", &fetched[..], wrong_type.as_str(), "no_matching_key"),
    ];
    for (name, keys, token, want) in table {
        let got = outcome(&verify_with(&p, token, keys, NativeBackend, NOW));
        assert_eq!(got, want, "{name}");
    }
    let e = verify_with(&p, &t, &[], NativeBackend, NOW).unwrap_err();
    assert_eq!(e.rejection("edgeward").status, 503);
    // Header errors are still reported as such without keys.
    assert_eq!(outcome(&verify_with(&p, "x.y", &nothing[..], NativeBackend, NOW)), "malformed_token");
}

// ---------------------------------------------------------------------------------------------
// The signature seam: what reaches a backend, and proofs bound to their token
// ---------------------------------------------------------------------------------------------

struct CountingBackend {
    calls: std::cell::Cell<u32>,
}

impl SignatureBackend for CountingBackend {
    fn verify(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        self.calls.set(self.calls.get() + 1);
        NativeBackend.verify(job)
    }
}

#[test]
fn policy_checks_run_before_any_signature_work() {
    let p = reference();
    let hs = single_key_policy(key(HS256), "k1");
    let good = es(&claims());
    let s512 = signature_bytes(&good);
    let ths = key(HS256).sign(Some("k1"), &claims());
    let expired_forgery = replace_payload(&good, &with(claims(), json!({"exp": NOW - 1000})));
    // (name, policy, token, expected code, expected backend calls)
    let table: Vec<(&str, &Policy, String, &str, u32)> = vec![
        ("valid", &p, good.clone(), "ok", 1),
        ("right length, wrong signature", &p, flip_signature_byte(&good, 5, 1), "bad_signature", 1),
        ("forged payload with past exp: signature first, no claim oracle", &p, expired_forgery, "bad_signature", 1),
        ("ES512 DER signature", &p, replace_signature(&good, &der_signature(&s512)), "bad_signature", 0),
        ("ES512 131 bytes", &p, replace_signature(&good, &s512[..131]), "bad_signature", 0),
        ("HS256 31 bytes", &hs, replace_signature(&ths, &signature_bytes(&ths)[..31]), "bad_signature", 0),
        ("HS256 33 bytes", &hs, replace_signature(&ths, &[signature_bytes(&ths), vec![0]].concat()), "bad_signature", 0),
        ("alg none", &p, format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64j(&claims())), "alg_none", 0),
        ("HS256 against an asymmetric issuer", &p, key(HS256).sign(Some("es"), &claims()), "alg_not_allowed", 0),
        ("unknown kid", &p, key(ES512).sign(Some("zz"), &claims()), "unknown_kid", 0),
        ("kid of wrong key type", &p, key(ES512).sign(Some("ed"), &claims()), "no_matching_key", 0),
        ("issuer mismatch", &p, es(&with(claims(), json!({"iss": "https://x"}))), "issuer_mismatch", 0),
        ("crit", &p, es_raw(json!({"alg":"ES512","kid":"es","crit":["x"]}), "{}"), "unsupported_header", 0),
    ];
    for (name, pol, token, want, calls) in table {
        let b = CountingBackend { calls: std::cell::Cell::new(0) };
        let got = outcome(&verify_with(pol, &token, &[], &b, NOW));
        assert_eq!((got, b.calls.get()), (want, calls), "{name}");
    }
}

#[test]
fn signature_job_carries_exactly_the_signed_bytes() {
    let p = reference();
    let t = es(&claims());
    let (h, pl, s) = segments(&t);
    let pending = PendingToken::new(UnverifiedToken::parse(&t, p.max_token_bytes).unwrap(), &p).unwrap();
    assert_eq!((pending.issuer_index(), pending.alg(), pending.kid()), (0, ES512, Some("es")));
    let k = pending.select_key(p.issuers[0].inline_keys.keys.iter()).unwrap();
    assert_eq!(k.kid.as_deref(), Some("es"));
    let job = pending.job(k).unwrap();
    assert_eq!(job.alg, ES512);
    assert_eq!(job.signing_input, format!("{h}.{pl}").as_bytes());
    assert_eq!(job.signature, edgeward::core::json::b64url_decode(&s).unwrap().as_slice());
    assert_eq!(job.compact, t);
    // Wrong-length signatures never become a job.
    let short = replace_signature(&t, &signature_bytes(&t)[..100]);
    let pending = PendingToken::new(UnverifiedToken::parse(&short, p.max_token_bytes).unwrap(), &p).unwrap();
    let k = pending.select_key(p.issuers[0].inline_keys.keys.iter()).unwrap();
    assert_eq!(pending.job(k).unwrap_err(), AuthError::BadSignature);
}

/// A backend that ignores its job and hands back a genuine proof for another, valid token.
struct SwappingBackend {
    other: SignatureJob<'static>,
}

impl SignatureBackend for SwappingBackend {
    fn verify(&self, _job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        NativeBackend.verify(&self.other)
    }
}

#[test]
fn a_proof_for_another_token_is_refused() {
    let p: &'static Policy = Box::leak(Box::new(reference()));
    let valid: &'static str = Box::leak(es(&claims()).into_boxed_str());
    let pending: &'static PendingToken<'static> = Box::leak(Box::new(PendingToken::new(UnverifiedToken::parse(valid, p.max_token_bytes).unwrap(), p).unwrap()));
    let k = pending.select_key(p.issuers[0].inline_keys.keys.iter()).unwrap();
    let backend = SwappingBackend { other: pending.job(k).unwrap() };
    // Control: the token itself verifies with an honest backend.
    assert!(verify_with(p, valid, &[], NativeBackend, NOW).is_ok());
    // The proof is bound to the job it was made for, not to the token text: even the same token,
    // parsed again, cannot reuse it.
    assert_eq!(verify_with(p, valid, &[], &backend, NOW).unwrap_err(), AuthError::Internal);
    // A forged token (same length signature) gets the other token's proof: refused.
    let forged = es(&with(claims(), json!({"sub": "admin"})));
    let forged = flip_signature_byte(&forged, 0, 1);
    let e = verify_with(p, &forged, &[], &backend, NOW).unwrap_err();
    assert_eq!(e, AuthError::Internal);
    assert_eq!(e.rejection("edgeward").status, 500);
}

#[test]
fn a_proof_for_a_doctored_job_or_another_key_is_refused() {
    let p = reference();
    let genuine = es(&claims());
    let forged = flip_signature_byte(&es(&with(claims(), json!({"sub": "admin"}))), 0, 1);
    fn pending<'t>(p: &Policy, t: &'t str) -> PendingToken<'t> {
        PendingToken::new(UnverifiedToken::parse(t, p.max_token_bytes).unwrap(), p).unwrap()
    }
    let (pending_genuine, pending_forged) = (pending(&p, &genuine), pending(&p, &forged));
    let k = pending_forged.select_key(p.issuers[0].inline_keys.keys.iter()).unwrap();
    // A copy of the forged token's job carrying the genuine token's bytes (the fields are public):
    // the backend's proof is real, but not for the forged token's own bytes.
    let genuine_job = pending_genuine.job(k).unwrap();
    let mut doctored = pending_forged.job(k).unwrap();
    doctored.signature = genuine_job.signature;
    doctored.signing_input = genuine_job.signing_input;
    let proof = NativeBackend.verify(&doctored).expect("the genuine bytes verify");
    assert_eq!(pending_forged.finish(proof, k, &p, NOW).unwrap_err(), AuthError::Internal);
    // The genuine job's proof, handed to finish with another key object: refused too.
    let proof = NativeBackend.verify(&genuine_job).unwrap();
    let other = k.clone();
    assert_eq!(pending_genuine.finish(proof, &other, &p, NOW).unwrap_err(), AuthError::Internal);
    // Control: the same token, parsed again, with its own job and key, verifies.
    let again = pending(&p, &genuine);
    let proof = NativeBackend.verify(&again.job(k).unwrap()).unwrap();
    assert!(again.finish(proof, k, &p, NOW).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Bugs found in src/ (these tests fail until fixed)
// ---------------------------------------------------------------------------------------------

// Regression (fixed): src/core/jwk.rs parse_jwk computes `n.len() * 8 - leading_zeros` without guarding an empty
// modulus. An RSA JWK whose "n" decodes to nothing after stripping zeros ("" or "AA") makes
// `Policy::from_json` panic with "attempt to subtract with overflow" in debug builds (and report
// a nonsense "above 8192 bits" in release). Expected: ConfigError at issuers[0].jwks.
#[test]
fn regression_rsa_jwk_with_empty_modulus_is_a_config_error_not_a_panic() {
    for n in ["", "AA", "AAAA"] {
        let doc = config(vec![issuer_entry(Some(ISS), &["RS256"], vec![json!({"kty":"RSA","n": n,"e":"AQAB"})])]);
        let r = std::panic::catch_unwind(|| Policy::from_json(&doc.to_string()).map(|_| ()));
        match r {
            Ok(Err(e)) => assert_eq!(e.field, "issuers[0].jwks", "n = {n:?}: {}", e.message),
            Ok(Ok(())) => panic!("n = {n:?}: accepted"),
            Err(_) => panic!("n = {n:?}: Policy::from_json panicked"),
        }
        // A fetched JWKS must skip such a key, not panic.
        let r = std::panic::catch_unwind(|| KeySet::parse(&json!({"keys":[{"kty":"RSA","n": n,"e":"AQAB"}]}), KeySource::Fetched).map(|s| s.keys.len()));
        assert!(matches!(r, Ok(Ok(0))), "fetched n = {n:?}: {r:?}");
    }
}

// Regression (fixed): src/core/crypto.rs verifies RS*, PS*, ES256, ES384, EdDSA and HS* through jwt-simple's
// `verify_token`, which also deserializes the claims into `JWTClaims<NoCustomClaims>` (and the
// header into its `JWTHeader`) and turns any type error into an error that NativeBackend reports as
// `bad_signature`. The same token content therefore gets a different verdict depending on the
// algorithm: ES512 (p521, raw signature check) says `malformed_claims`, the others `bad_signature`;
// and a correctly signed token with a claim Edgeward does not restrict (`"nonce": 5`) or a JWS
// `jwk` header object is accepted with ES512 but rejected as `bad_signature` with every other alg.
// Expected: the backend checks only the signature over `signing_input`; claim verdicts come from
// verify.rs alone, for every algorithm.
#[test]
fn regression_claim_verdicts_do_not_depend_on_the_algorithm() {
    let claim_cases: Vec<(&str, Value, &str)> = vec![
        ("exp is a string", json!({"exp": "soon"}), "malformed_claims"),
        ("exp is negative", json!({"exp": -1}), "malformed_claims"),
        ("aud is a number", json!({"aud": 5}), "malformed_claims"),
        ("sub is a number", json!({"sub": 5}), "malformed_claims"),
        ("jti is a number", json!({"jti": 5}), "malformed_claims"),
        ("numeric nonce (unrestricted claim)", json!({"nonce": 5}), "ok"),
    ];
    let mut failures = Vec::new();
    for alg in [ES512, EdDSA, HS256, ES256, RS256] {
        let k = key(alg);
        let p = single_key_policy(k, "k1");
        for (name, patch, want) in &claim_cases {
            let got = outcome(&verify(&p, &k.sign(Some("k1"), &with(claims(), patch.clone()))));
            if got != *want {
                failures.push(format!("{alg}: {name}: want {want}, got {got}"));
            }
        }
    }
    for alg in [ES512, EdDSA, HS256] {
        let k = key(alg);
        let p = single_key_policy(k, "k1");
        let h = json!({"alg": alg.name(), "kid": "k1", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}});
        let got = outcome(&verify(&p, &k.sign_raw(&h.to_string(), &claims().to_string())));
        if got != "ok" {
            failures.push(format!("{alg}: header with a jwk object (never read): want ok, got {got}"));
        }
    }
    assert!(failures.is_empty(), "verdict depends on the algorithm:\n  {}", failures.join("\n  "));
}

#[test]
fn every_code_maps_to_the_documented_status() {
    // Table of the error enum as the wire contract.
    let table: Vec<(AuthError, &str, u16)> = vec![
        (AuthError::MissingToken, "missing_token", 401),
        (AuthError::TokenTooLarge { len: 2, max: 1 }, "token_too_large", 401),
        (AuthError::MalformedToken, "malformed_token", 401),
        (AuthError::MalformedHeader("x"), "malformed_header", 401),
        (AuthError::DuplicateMember("a".into()), "duplicate_member", 401),
        (AuthError::AlgMissing, "alg_missing", 401),
        (AuthError::AlgNone, "alg_none", 401),
        (AuthError::AlgNotAllowed("X".into()), "alg_not_allowed", 401),
        (AuthError::UnsupportedHeader("crit"), "unsupported_header", 401),
        (AuthError::MalformedClaims("x"), "malformed_claims", 401),
        (AuthError::IssuerMismatch, "issuer_mismatch", 401),
        (AuthError::UnknownKid, "unknown_kid", 401),
        (AuthError::NoMatchingKey("x"), "no_matching_key", 401),
        (AuthError::BadSignature, "bad_signature", 401),
        (AuthError::MissingExp, "missing_exp", 401),
        (AuthError::Expired { now: 2, exp: 1 }, "expired", 401),
        (AuthError::NotYetValid { now: 1, nbf: 2 }, "not_yet_valid", 401),
        (AuthError::IssuedInFuture { now: 1, iat: 2 }, "issued_in_future", 401),
        (AuthError::LifetimeTooLong { lifetime: 2, max: 1 }, "lifetime_too_long", 401),
        (AuthError::AudienceMismatch, "audience_mismatch", 401),
        (AuthError::InsufficientScope { required: "a".into(), missing: "a".into() }, "insufficient_scope", 403),
        (AuthError::JwksUnavailable, "jwks_unavailable", 503),
        (AuthError::OriginUnreachable, "origin_unreachable", 502),
        (AuthError::ConfigInvalid, "config_invalid", 500),
        (AuthError::Internal, "internal_error", 500),
    ];
    assert_eq!(table.len(), ALL_CODES.len());
    for (e, code, status) in table {
        let r = e.rejection("edgeward");
        assert_eq!((e.code(), r.code, r.status), (code, code, status), "{e:?}");
        assert_eq!(expected_status(code), status);
        assert!(ALL_CODES.contains(&code));
        match status {
            401 if code == "missing_token" => assert_eq!(r.rfc_error, None),
            401 => assert_eq!(r.rfc_error, Some("invalid_token"), "{code}"),
            403 => assert_eq!(r.rfc_error, Some("insufficient_scope")),
            _ => assert!(r.www_authenticate.is_none(), "{code}"),
        }
    }
}
