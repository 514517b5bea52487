//! Revocation check cost with 100,000 active revocations, native, against the same check on an
//! empty list in the same run; the size of the snapshot in both forms (the compact one the edge
//! reads, `revocations:v2`, and the JSON of full entries earlier versions published,
//! `revocations:v1`), each written next to the path given for gzip; and the time to build the
//! in-memory set from each. Run by `bench/revocation.sh`.

#![allow(clippy::disallowed_methods)] // a benchmark times itself

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::pipeline::Gate;
use edgeward::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target};
use jwt_simple::prelude::*;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "/tmp/edgeward-revocations".into());
    let now = Clock::now_since_epoch().as_secs() as i64;
    let iss = "https://issuer.bench";
    let entries: Vec<Revocation> = (0..100_000)
        .map(|i| {
            let target = match i % 10 {
                0 => Target::SubjectBefore { iss: iss.into(), sub: format!("user-{i}"), before: now - 60 },
                1 => Target::Kid { kid: format!("key-{i}") },
                _ => Target::Jti { iss: iss.into(), jti: format!("{i:032x}") },
            };
            Revocation { target, reason: "bench".into(), created_at: now, expires_at: now + 3600 }
        })
        .collect();
    let snap = RevocationSnapshot { version: 1, entries };
    let json = serde_json::to_string(&snap).unwrap();
    std::fs::write(format!("{out}.json"), &json).unwrap();
    let t = Instant::now();
    let from_json = RevocationSet::from_snapshot(&serde_json::from_str(&json).unwrap(), now);
    let build_json = t.elapsed();
    let compact = from_json.to_compact();
    std::fs::write(format!("{out}.bin"), &compact).unwrap();
    let best = |f: &dyn Fn() -> RevocationSet| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let build_compact = best(&|| RevocationSet::from_compact(black_box(&compact), now).unwrap());
    let encode_compact = {
        let t = Instant::now();
        black_box(from_json.to_compact());
        t.elapsed()
    };
    let full = RevocationSet::from_compact(&compact, now).unwrap();
    assert_eq!(full.len(), 100_000);
    let empty = RevocationSet::default();

    // A real verified token (not revoked: the whole check runs).
    let key = Ed25519KeyPair::generate().with_key_id("k");
    let x = Base64UrlSafeNoPadding::encode_to_string(key.public_key().to_bytes()).unwrap();
    let policy = Policy::from_json(
        &serde_json::json!({
            "issuers": [{"issuer": iss, "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k"}]}, "algorithms": ["EdDSA"]}],
            "origin": "https://o"
        })
        .to_string(),
    )
    .unwrap();
    let claims = Claims::create(Duration::from_hours(1)).with_issuer(iss).with_subject("user-1").with_jwt_id("not-revoked");
    let token = Gate::new(policy.clone()).verify_inline(&key.sign(claims).unwrap(), NativeBackend, now, false).0.unwrap();

    let time = |set: &RevocationSet| {
        let n = 2_000_000u32;
        (0..3)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    black_box(set.check(black_box(&token), now)).unwrap();
                }
                t.elapsed().as_secs_f64() / f64::from(n)
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (with, without) = (time(&full), time(&empty));
    println!("active revocations: {}", full.len());
    println!("snapshot compact bytes: {} (written to {out}.bin)", compact.len());
    println!("snapshot JSON (v1) bytes: {} (written to {out}.json)", json.len());
    println!("build in-memory set from compact: {:.1} ms", build_compact.as_secs_f64() * 1e3);
    println!("build in-memory set from JSON (parse + build): {:.1} ms", build_json.as_secs_f64() * 1e3);
    println!("encode compact (ledger side): {:.1} ms", encode_compact.as_secs_f64() * 1e3);
    println!("| list | check ns | ratio |");
    println!("|---|---:|---:|");
    println!("| 100,000 active | {:.0} | {:.2} |", with * 1e9, with / without);
    println!("| empty (baseline) | {:.0} | 1.00 |", without * 1e9);
}
