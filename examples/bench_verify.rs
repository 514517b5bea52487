//! Native verification cost per algorithm: Edgeward's JWT step as the pipeline runs it
//! (`Gate::verify_jwt` on a gate without a token cache: strict parse, issuer and key selection,
//! signature, claims) against jwt-simple's `verify_token` alone
//! on the same token and key, measured in the same run. Run by `bench/native.sh`.
//!
//! Also prints decisions per second per core (one thread): a cold decision is one full
//! verification (the row's Edgeward time); a cached decision is the whole pipeline
//! (`Gate::decide`) for a repeated token: canonical request, route, credential extraction,
//! `token_hash`, token-cache hit, revocations, route authorization and the forwarding plan.

#![allow(clippy::disallowed_methods)] // a benchmark times itself

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::io::{run_ready, InlineIo};
use edgeward::core::pipeline::{Gate, Incoming, Outcome};
use jwt_simple::prelude::*;
use std::hint::black_box;
use std::time::Instant;

fn b64(b: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(b).unwrap()
}

fn time_per_op(mut f: impl FnMut() -> bool) -> f64 {
    // Calibrate to ~300 ms per sample, best of 3 samples.
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            assert!(black_box(f()));
        }
        if t.elapsed().as_millis() > 50 || n > 1 << 24 {
            break;
        }
        n *= 2;
    }
    let n = n * 6;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                assert!(black_box(f()));
            }
            t.elapsed().as_secs_f64() / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn policy(alg: &str, jwk: serde_json::Value) -> Policy {
    Policy::from_json(
        &serde_json::json!({
            "issuers": [{"issuer": "https://bench", "audiences": ["api"], "jwks": {"keys": [jwk]}, "algorithms": [alg]}],
            "origin": "https://origin",
            // Inline I/O has no KV: the revocation list would be unavailable (and refused).
            "revocations": {"enabled": false}
        })
        .to_string(),
    )
    .unwrap()
}

fn main() {
    let now = Clock::now_since_epoch().as_secs() as i64;
    let claims = || Claims::create(Duration::from_hours(1)).with_issuer("https://bench").with_audience("api").with_subject("u");
    println!("{:<8} {:>14} {:>14} {:>8} {:>14}", "alg", "edgeward µs", "jwt-simple µs", "ratio", "decisions/s");
    let mut cached: Option<(Policy, String)> = None;
    let mut row = |alg: &str, token: String, jwk: serde_json::Value, baseline: &dyn Fn(&str) -> bool| {
        let p = policy(alg, jwk);
        let uncached = Gate::new(Policy { token_cache: edgeward::core::token_cache::TokenCacheConfig { capacity: 0, ..p.token_cache.clone() }, ..p.clone() });
        let ours = time_per_op(|| uncached.verify_inline(&token, NativeBackend, now, false).0.is_ok());
        let theirs = time_per_op(|| baseline(&token));
        println!("{:<8} {:>14.2} {:>14.2} {:>8.2} {:>14.0}", alg, ours * 1e6, theirs * 1e6, ours / theirs, 1.0 / ours);
        if cached.is_none() {
            cached = Some((p, token));
        }
    };

    let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("k");
    let c = rs.public_key().to_components();
    let pk = rs.public_key();
    row("RS256", rs.sign(claims()).unwrap(), serde_json::json!({"kty":"RSA","kid":"k","n":b64(&c.n),"e":b64(&c.e)}), &|t| {
        pk.verify_token::<NoCustomClaims>(t, None).is_ok()
    });

    let ps = PS256KeyPair::generate(2048).unwrap().with_key_id("k");
    let c = ps.public_key().to_components();
    let pk = ps.public_key();
    row("PS256", ps.sign(claims()).unwrap(), serde_json::json!({"kty":"RSA","kid":"k","n":b64(&c.n),"e":b64(&c.e)}), &|t| {
        pk.verify_token::<NoCustomClaims>(t, None).is_ok()
    });

    let es = ES256KeyPair::generate().with_key_id("k");
    let raw = es.public_key().public_key().to_bytes_uncompressed();
    let pk = es.public_key();
    row("ES256", es.sign(claims()).unwrap(), serde_json::json!({"kty":"EC","crv":"P-256","kid":"k","x":b64(&raw[1..33]),"y":b64(&raw[33..65])}), &|t| {
        pk.verify_token::<NoCustomClaims>(t, None).is_ok()
    });

    let ed = Ed25519KeyPair::generate().with_key_id("k");
    let pk = ed.public_key();
    row("EdDSA", ed.sign(claims()).unwrap(), serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"k","x":b64(&pk.to_bytes())}), &|t| {
        pk.verify_token::<NoCustomClaims>(t, None).is_ok()
    });

    let hs = HS256Key::generate().with_key_id("k");
    let hk = hs.clone();
    row("HS256", hs.authenticate(claims()).unwrap(), serde_json::json!({"kty":"oct","kid":"k","k":b64(&hs.to_bytes())}), &|t| {
        hk.verify_token::<NoCustomClaims>(t, None).is_ok()
    });

    // A cached decision: the gate's path for a repeated token (RS256 token; the algorithm does
    // not matter on a hit).
    let (p, token) = cached.expect("RS256 row ran");
    let headers = vec![
        ("host".to_string(), "gateway.example".to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
        ("accept".to_string(), "application/json".to_string()),
        ("user-agent".to_string(), "bench".to_string()),
    ];
    let gate = Gate::new(p);
    let io = InlineIo { backend: NativeBackend, now_ms: now * 1000, trace: false };
    let incoming = Incoming {
        method: "GET",
        url: "https://edge.example/api/resource?a=1",
        headers: &headers,
        request_id: "0123456789abcdef",
        client_cert_sha256: None,
        geo: None,
        now_ms: now * 1000,
    };
    match run_ready(gate.decide(&io, &incoming)) {
        Some(Outcome::Forward(_)) => {}
        Some(Outcome::Refuse(r)) => panic!("the cached decision was refused: {:?}", r.log.reason),
        other => panic!("the cached decision did not forward: {}", other.is_some()),
    }
    let hit = time_per_op(|| matches!(run_ready(gate.decide(&io, &incoming)), Some(Outcome::Forward(f)) if !f.plan.url.is_empty()));
    assert_eq!(gate.state().cached_tokens(), 1, "the timed decisions were cache hits");
    println!("{:<8} {:>14.2} {:>14} {:>8} {:>14.0}", "cached", hit * 1e6, "-", "-", 1.0 / hit);
}
