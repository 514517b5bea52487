//! The verified-token cache's cost per entry and per hit (issue 21): 10,000 distinct 13-claim
//! tokens like a typical IdP's (iss, sub, aud, exp, iat, nbf, jti, azp, scope, email, name,
//! given_name, family_name; 602 bytes compact, EdDSA) go through the real verify path
//! (`Gate::verify_inline`: parse, issuer, key, signature, claims, then the cache), and the live
//! heap the cache holds is measured with a counting allocator: bytes allocated and not freed,
//! divided by the entries (the cache's hash table included). Then every token is presented again
//! and the time of a hit (`Gate::verify_inline` on a cached token: SHA-256 of the token, the
//! lookup, the log fields) is measured.
//!
//! The cache's own estimate of the bytes it holds (`TokenCache::bytes`, what
//! `token_cache.max_bytes` bounds) is printed next to the allocator's count.
//!
//! Two policies: the default one (forward_claims sub, iss, scope; no claim-keyed limit) and one
//! that forwards all 13 claims, so the cache must keep every claim. Native 64-bit: pointers and
//! `usize` are twice their wasm32 size, so the Worker's figure is at most this one.
//!
//! `cargo run --release --example bench_token_cache`

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::pipeline::Gate;
use jwt_simple::prelude::*;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

const TOKENS: usize = 10_000;
const TOKEN_BYTES: usize = 602;
const ISS: &str = "https://id.example.com/";

fn b64(b: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(b).unwrap()
}

/// Token `i`: the same shape and length for every `i`, distinct `sub`, `jti` and `email`.
fn token(key: &ed25519_compact::KeyPair, i: usize, now: i64) -> String {
    let header = b64(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
    let payload = serde_json::json!({
        "iss": ISS,
        "sub": format!("8c6f0a4e-2b1d-4d7a-9f3e-{i:012}"),
        "aud": "https://api.example.com",
        "exp": now + 3600,
        "iat": now - 10,
        "nbf": now - 10,
        "jti": format!("f2d9c1b0-7a6e-4c3d-8b2a-{i:012}"),
        "azp": "0oa9f3c7b",
        "scope": "openid profile email",
        "email": format!("jdoe.{i:06}@example.com"),
        "name": "Jane Doe",
        "given_name": "Jane",
        "family_name": "Doe",
    });
    let input = format!("{header}.{}", b64(payload.to_string().as_bytes()));
    let sig = key.sk.sign(input.as_bytes(), None);
    let t = format!("{input}.{}", b64(sig.as_ref()));
    assert_eq!(t.len(), TOKEN_BYTES, "the bench token is {TOKEN_BYTES} bytes");
    t
}

fn policy(x: &str, forward_all: bool, capacity: usize) -> Policy {
    let mut config = serde_json::json!({
        "issuers": [{"issuer": ISS, "audiences": ["https://api.example.com"],
            "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]}, "algorithms": ["EdDSA"]}],
        "origin": "https://origin.bench",
        "token_cache": {"capacity": capacity},
    });
    if forward_all {
        let names = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "scope", "email", "name", "given_name", "family_name"];
        config["forward_claims"] = names.iter().map(|n| (format!("x-claim-{}", n.replace('_', "-")), serde_json::Value::from(*n))).collect();
    }
    Policy::from_json(&config.to_string()).expect("valid")
}

/// Fastest of 3 rounds over every token, per hit, in ns.
fn hit_ns(gate: &Gate, tokens: &[String], now: i64) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for tok in tokens {
                let (v, log) = gate.verify_inline(tok, NativeBackend, now, false);
                assert!(black_box(v).is_ok() && log.token_cache == Some("hit"));
            }
            t.elapsed().as_secs_f64() * 1e9 / tokens.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let now = Clock::now_since_epoch().as_secs() as i64;
    let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
    let x = b64(key.pk.as_ref());
    let tokens: Vec<String> = (0..TOKENS).map(|i| token(&key, i, now)).collect();
    println!("{TOKENS} tokens of {TOKEN_BYTES} bytes, 13 claims; live heap of the token cache (native 64-bit)");
    println!("{:<34} {:>10} {:>8} {:>10} {:>7}", "policy", "cache MiB", "B/entry", "estimate B", "hit ns");
    for (name, forward_all) in [("default (forwards sub, iss, scope)", false), ("forwards all 13 claims", true)] {
        // The same gate without a cache: what the rest of the state costs.
        let base = LIVE.load(Ordering::Relaxed);
        let uncached = Gate::new(policy(&x, forward_all, 0));
        for t in &tokens {
            assert!(uncached.verify_inline(t, NativeBackend, now, false).0.is_ok());
        }
        let rest = LIVE.load(Ordering::Relaxed) - base;
        drop(uncached);

        let base = LIVE.load(Ordering::Relaxed);
        let gate = Gate::new(policy(&x, forward_all, TOKENS));
        for t in &tokens {
            assert!(gate.verify_inline(t, NativeBackend, now, false).0.is_ok());
        }
        let cache = LIVE.load(Ordering::Relaxed) - base - rest;
        assert_eq!(gate.state().cached_tokens(), TOKENS, "every token is cached");
        let ns = hit_ns(&gate, &tokens, now);
        // The cache's own count (what `token_cache.max_bytes` bounds), per entry.
        let estimate = gate.state().cached_token_bytes() as f64 / TOKENS as f64;
        let per_entry = cache as f64 / TOKENS as f64;
        println!("{name:<34} {:>10.2} {per_entry:>8.0} {estimate:>10.0} {ns:>7.0}", cache as f64 / (1 << 20) as f64);
    }
}
