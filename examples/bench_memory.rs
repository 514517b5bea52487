//! The isolate's memory at issue 15's scale: 100,000 active revocations, 10,000 cached verified
//! tokens and 10,000 cached API key records, filled the way the gate fills them (requests
//! through `Gate::decide` with an I/O that serves a KV), and measured as the live heap the
//! gate's state holds (a counting allocator: bytes allocated and not freed, after minus before).
//! Native 64-bit: pointers and `usize` are twice their wasm32 size, so the Worker's figure is
//! at most this one. Run by `bench/memory.sh` (`cargo run --release --example bench_memory`).

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use edgeward::core::apikey::{generate, hash_storage_key, key_hash, key_id, KeyEnv, KeyRecord, KeySecret, KeyStatus, PresentedKey, PEPPER_SECRET};
use edgeward::core::crypto::{NativeBackend, SignatureBackend};
use edgeward::core::error::AuthError;
use edgeward::core::io::{run_ready, Deferred, GateIo, IoError, LedgerFacts, Level};
use edgeward::core::jwks_cache::FetchOutcome;
use edgeward::core::pipeline::{Gate, Incoming, Outcome};
use edgeward::core::ratelimit::{Bucket, Decision};
use edgeward::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target, SNAPSHOT_KEY};
use edgeward::core::verify::{SignatureJob, SignatureProof};
use jwt_simple::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

#[path = "support/counting.rs"]
mod counting;
use counting::{mib, LIVE, PEAK};

const PEPPER: &str = "bench-pepper-bench-pepper-bench-pepper";
const TOKENS: usize = 10_000;
const KEYS: usize = 10_000;
const REVOCATIONS: usize = 100_000;

/// A KV and a pepper, nothing else.
struct MemIo {
    kv: HashMap<String, Vec<u8>>,
    now_ms: i64,
}

impl GateIo for MemIo {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    fn secret(&self, name: &str) -> Option<String> {
        (name == PEPPER_SECRET).then(|| PEPPER.to_string())
    }
    fn log(&self, _: Level, _: &serde_json::Value) {}
    fn defer(&self, _: Deferred) {}
    fn has_kv(&self) -> bool {
        true
    }
    async fn fetch_jwks(&self, _: &str, _: u32) -> FetchOutcome {
        FetchOutcome::Failed("inline keys".into())
    }
    async fn kv_read(&self, key: &str, _: usize) -> Result<Option<Vec<u8>>, IoError> {
        Ok(self.kv.get(key).cloned())
    }
    async fn kv_write(&self, _: &str, _: &[u8]) -> Result<(), IoError> {
        Ok(())
    }
    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        NativeBackend.verify(job)
    }
    async fn ask_ledger(&self, _: &LedgerFacts) -> Result<bool, IoError> {
        Ok(false)
    }
    async fn ask_limiter(&self, _: &Bucket) -> Result<Decision, IoError> {
        Err(IoError::NotBound("limiter"))
    }
    async fn ask_limit_binding(&self, _: &str, _: &str) -> Result<bool, IoError> {
        Err(IoError::NotBound("binding"))
    }
}

fn random64(seed: u64) -> [u8; 64] {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::array::from_fn(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    })
}

fn main() {
    let now = Clock::now_since_epoch().as_secs() as i64;
    let iss = "https://issuer.bench";
    let signer = Ed25519KeyPair::generate().with_key_id("k");
    let x = Base64UrlSafeNoPadding::encode_to_string(signer.public_key().to_bytes()).unwrap();
    let config = serde_json::json!({
        "issuers": [{"issuer": iss, "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k"}]}, "algorithms": ["EdDSA"]}],
        "origin": "https://origin.bench",
        "routes": [{"path": "/svc/*", "auth": "api_key"}],
        "rate_limits": {"ip_pre_auth": {"rate": 1_000_000, "period_secs": 1, "burst": 1_000_000}},
    });
    let policy = edgeward::core::config::Policy::from_json(&config.to_string()).expect("valid");

    // What KV holds (not the isolate's): the revocation snapshot and the key records.
    let entries = (0..REVOCATIONS)
        .map(|i| {
            let target = match i % 10 {
                0 => Target::SubjectBefore { iss: iss.into(), sub: format!("user-{i}"), before: now - 60 },
                1 => Target::Kid { kid: format!("key-{i}") },
                _ => Target::Jti { iss: iss.into(), jti: format!("{i:032x}") },
            };
            Revocation { target, reason: "bench".into(), created_at: now, expires_at: now + 86_400 }
        })
        .collect();
    let snapshot = RevocationSet::from_snapshot(&RevocationSnapshot { version: 1, entries }, now).to_compact();
    let mut kv = HashMap::from([(SNAPSHOT_KEY.to_string(), snapshot)]);
    let keys: Vec<String> = (0..KEYS as u64).map(|i| generate(KeyEnv::Live, &random64(i + 1)).expect("usable random bytes")).collect();
    for (i, k) in keys.iter().enumerate() {
        let hash = key_hash(PEPPER.as_bytes(), &PresentedKey::parse(k, None).unwrap()).unwrap();
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let record = KeyRecord {
            id: key_id(&id),
            owner: format!("owner-{i}"),
            description: "bench key".into(),
            scopes: vec!["read".into()],
            tier: None,
            allowed_ips: vec![],
            not_before: None,
            expires_at: None,
            status: KeyStatus::Active,
            env: KeyEnv::Live,
            created_at: now - 100,
            secrets: vec![KeySecret { hash: hash.hex(), created_at: now - 100, not_after: None }],
        };
        kv.insert(hash_storage_key(&hash.hex()), serde_json::to_vec(&record).unwrap());
    }
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let c =
                Claims::create(Duration::from_hours(1)).with_issuer(iss).with_subject(format!("user-{i}x")).with_jwt_id(format!("t-{i}")).with_audience("api");
            signer.sign(c).unwrap()
        })
        .collect();
    let requests: Vec<(String, Vec<(String, String)>)> = tokens
        .iter()
        .map(|t| ("https://edge.bench/api/x".to_string(), vec![("authorization".to_string(), format!("Bearer {t}"))]))
        .chain(keys.iter().map(|k| ("https://edge.bench/svc/x".to_string(), vec![("x-api-key".to_string(), k.clone())])))
        .collect();
    let io = MemIo { kv, now_ms: now * 1000 };

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let gate = Gate::new(policy);
    let empty = LIVE.load(Ordering::Relaxed);
    let mut forwarded = 0;
    let mut marks = Vec::new();
    for (i, (url, headers)) in requests.iter().enumerate() {
        let req =
            Incoming { method: "GET", url, headers, request_id: "0123456789abcdef0123456789abcdef", client_cert_sha256: None, geo: None, now_ms: now * 1000 };
        forwarded += usize::from(matches!(run_ready(gate.decide(&io, &req)), Some(Outcome::Forward(_))));
        if i == 0 || i + 1 == TOKENS {
            marks.push(LIVE.load(Ordering::Relaxed));
        }
    }
    let after = LIVE.load(Ordering::Relaxed);
    let s = gate.state();
    assert_eq!(forwarded, TOKENS + KEYS, "every request was accepted");
    assert_eq!((s.cached_tokens(), s.cached_keys(), s.revocations()), (TOKENS, KEYS, REVOCATIONS));
    println!("state                         live heap");
    println!("empty gate (policy + caches)  {:>8.2} MiB", mib(empty - before));
    println!("after the first request (revocation set loaded, 1 token)  {:>8.2} MiB", mib(marks[0] - before));
    println!("after {TOKENS} tokens                  {:>8.2} MiB", mib(marks[1] - before));
    println!(
        "filled: {} revocations, {} tokens, {} key records  {:>8.2} MiB (native 64-bit; target <= 32 MiB)",
        s.revocations(),
        s.cached_tokens(),
        s.cached_keys(),
        mib(after - before)
    );
    println!("peak while filling (what wasm linear memory grows to)  {:>8.2} MiB", mib(PEAK.load(Ordering::Relaxed) - before));
}
