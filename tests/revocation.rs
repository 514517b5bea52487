//! Revocation checks on fixed `now`: jti scoped to its issuer, subject watermarks, key ids,
//! expiry pruning, stable ids (idempotence) and input validation.

mod common;

use common::*;
use edgeward::core::alg::Algorithm;
use edgeward::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target};
use serde_json::json;

fn token(extra: serde_json::Value) -> edgeward::core::verify::VerifiedToken {
    let k = key_seeded(Algorithm::EdDSA, 3);
    let p = single_key_policy(k, "k1");
    let t = key_seeded(Algorithm::EdDSA, 3).sign(Some("k1"), &with(claims(), extra));
    verify(&p, &t).expect("valid")
}

fn rev(target: Target, expires_at: i64) -> Revocation {
    Revocation { target, reason: "test".into(), created_at: NOW, expires_at }
}

fn set(entries: Vec<Revocation>) -> RevocationSet {
    RevocationSet::from_snapshot(&RevocationSnapshot { version: 7, entries }, NOW)
}

#[test]
fn jti_is_scoped_to_its_issuer() {
    let t = token(json!({"jti": "abc"}));
    let s = set(vec![rev(Target::Jti { iss: ISS.into(), jti: "abc".into() }, NOW + 100)]);
    assert_eq!(s.check(&t, NOW).unwrap_err().code(), "token_revoked");
    let other_iss = set(vec![rev(Target::Jti { iss: "https://other".into(), jti: "abc".into() }, NOW + 100)]);
    assert!(other_iss.check(&t, NOW).is_ok());
    assert!(s.check(&token(json!({"jti": "abd"})), NOW).is_ok());
    assert_eq!(s.version(), 7);
}

#[test]
fn subject_watermark_revokes_older_tokens_only() {
    let sub = claims()["sub"].as_str().unwrap().to_string();
    let s = set(vec![rev(Target::SubjectBefore { iss: ISS.into(), sub: sub.clone(), before: NOW - 10 }, NOW + 100)]);
    assert!(s.check(&token(json!({"iat": NOW - 11})), NOW).is_err(), "issued before the watermark");
    assert!(s.check(&token(json!({"iat": NOW - 10})), NOW).is_ok(), "issued at the watermark");
    let mut no_iat = claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    let k = key_seeded(Algorithm::EdDSA, 3);
    let p = single_key_policy(k, "k1");
    let t = verify(&p, &key_seeded(Algorithm::EdDSA, 3).sign(Some("k1"), &no_iat)).unwrap();
    assert!(s.check(&t, NOW).is_err(), "no iat cannot prove it is newer");
    // Two watermarks for one subject: the later wins.
    let s2 = set(vec![
        rev(Target::SubjectBefore { iss: ISS.into(), sub: sub.clone(), before: NOW - 100 }, NOW + 100),
        rev(Target::SubjectBefore { iss: ISS.into(), sub, before: NOW - 5 }, NOW + 100),
    ]);
    assert!(s2.check(&token(json!({"iat": NOW - 50})), NOW).is_err());
}

#[test]
fn kid_revocation_and_expiry_pruning() {
    let t = token(json!({}));
    let s = set(vec![rev(Target::Kid { kid: "k1".into() }, NOW + 5)]);
    assert!(s.check(&t, NOW).is_err());
    assert!(s.check(&t, NOW + 5).is_ok(), "expired revocations stop applying");
    let pruned = set(vec![rev(Target::Kid { kid: "k1".into() }, NOW)]);
    assert!(pruned.is_empty(), "already expired entries are not loaded");
    let api = set(vec![rev(Target::ApiKey { key_id: "key_1".into() }, NOW + 5)]);
    assert!(api.api_key_revoked("key_1", NOW) && !api.api_key_revoked("key_2", NOW));
}

#[test]
fn ids_are_stable_and_watermark_updates_are_idempotent() {
    let a = Target::Jti { iss: ISS.into(), jti: "x".into() };
    assert_eq!(a.id(), Target::Jti { iss: ISS.into(), jti: "x".into() }.id());
    assert_ne!(a.id(), Target::Jti { iss: ISS.into(), jti: "y".into() }.id());
    let w1 = Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: 1 };
    let w2 = Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: 2 };
    assert_eq!(w1.id(), w2.id(), "one entry per subject");
    assert_ne!(Target::Kid { kid: "x".into() }.id(), Target::ApiKey { key_id: "x".into() }.id());
}

#[test]
fn validation_rejects_bad_input() {
    let ok = rev(Target::Jti { iss: ISS.into(), jti: "x".into() }, NOW + 10);
    assert!(ok.validate(NOW).is_ok());
    let cases = [
        (rev(Target::Jti { iss: "".into(), jti: "x".into() }, NOW + 10), "target.iss"),
        (rev(Target::Kid { kid: "a\nb".into() }, NOW + 10), "target.kid"),
        (rev(Target::Jti { iss: ISS.into(), jti: "x".into() }, NOW), "expires_at"),
        (rev(Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: NOW + 100_000 }, NOW + 10), "target.before"),
    ];
    for (r, field) in cases {
        assert_eq!(r.validate(NOW).unwrap_err().field, field);
    }
    let mut long = ok.clone();
    long.reason = "x".repeat(201);
    assert_eq!(long.validate(NOW).unwrap_err().field, "reason");
    let parsed: Result<Revocation, _> = serde_json::from_value(json!({"target": {"kind": "jti", "iss": "i", "jti": "j", "extra": 1}, "reason": "", "created_at": 1, "expires_at": 2}));
    assert!(parsed.is_err(), "unknown fields refused");
}
