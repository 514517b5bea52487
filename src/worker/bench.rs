//! Benchmark-only route (feature `bench`, never in a production build): performs Edgeward's
//! verification `n` times inside one request, so a client outside the Worker can time it
//! (`Date.now()` does not advance during computation inside a Worker). Run by `bench/run`.
//!
//! `GET /__edgeward/bench?mode=miss|hit&n=N` with `Authorization: Bearer <token>`:
//! - `miss`: the pipeline's JWT step ([`Gate::verify_jwt`]) N times on a gate without a token
//!   cache, with the token's cache key (`token_hash`, SHA-256) computed each time as the gate
//!   does on every request: `UnverifiedToken::parse` → `PendingToken::new` → `select_key` over the issuer's
//!   inline keys → job → WebCrypto verify (the `CryptoKey` is
//!   imported once per isolate and cached, as in the gate) → `finish`.
//! - `hit`: the token is verified once through the gate's pipeline (filling the isolate's
//!   verified-token cache); then N times `token_hash` + the pipeline's JWT step (a cache hit) +
//!   route authorization, what the gate does for a repeated token.
//!
//! Breakdown modes (to explain the `miss` cost, not to compare):
//! - `core`: `miss` without the signature check (parse, issuer, key selection, job, claims);
//!   the proof is made without checking anything, which only this bench-only build can do.
//! - `sig`: the token is parsed once; then N times `webcrypto::verify` on the same job (the
//!   WebCrypto call with its JS glue and the per-call key-cache lookup).
//! - `cachekey`: N times the per-isolate key-cache lookup every verify makes (by the JWK's
//!   fingerprint, borrowed: no allocation).
//! - `rawsig`: the key, algorithm object, signature and input are prepared once; then N times
//!   only `crypto.subtle.verify` through `js::call` (`Reflect.get`, `Function.apply`, and
//!   the await of `promise::settle`): a WebCrypto call made from Rust without the gate's fused call.
//! - `rawsig_jsfuture`: the same, awaited with wasm-bindgen's `JsFuture` (the comparison).
//! - `await`: N awaits of an already-settled promise from Rust (`promise::settle`, the request
//!   driven by `executor.rs`): the cost of resuming after an await.
//! - `await_js`: the same N awaits in a JS loop, awaited once from Rust (the JS floor).
//!
//! Revocation modes (issue 5):
//! - `revoked100k`: the token is verified once; then N times `RevocationSet::check` against a set
//!   of 100,000 active revocations (80 % `jti`, 10 % subject watermarks, 10 % key ids, none
//!   matching the token, so every lookup runs), built once per isolate from its compact snapshot
//!   (as `examples/bench_revocation.rs` builds it natively).
//! - `revoked0`: the same against an empty set (the baseline).
//!
//! Usage counters (issue 17):
//! - `flush`, `flush0`: N distinct subjects counted, then (`flush` only) a flush started, every
//!   batch serialized as the gate sends it, and the flush ended: the difference is a flush's CPU.
//! - `usage`: N times the count the gate adds to an accepted JWT request (`Gate::tally`: its
//!   `sub` and client id, entries that already exist); with `n=0` the request's own cost.
//!
//! Answers `{"n", "mode", "ok"}` (`ok`: every iteration succeeded). The configuration must use
//! inline `jwks` only, so no fetch is involved. N is capped at [`MAX_N`].
//!
//! `GET /__edgeward/bench/differential` with `Authorization: Bearer <token>`: the differential
//! check of the signature seam. The whole uncached path (as in `miss`) runs twice on the same
//! policy and `now`, once with WebCrypto and once with [`NativeBackend`] (the pure-Rust backend
//! of the CLI and the JS package), and the answer is `{"webcrypto": CODE, "native": CODE}`, each
//! `"ok"` or the stable reason code of the refusal (`bad_signature`, `no_matching_key`, ...).
//! One token per request: this handler does not get the request body.

use super::runtime::{promise, webcrypto};
use crate::core::config::Policy;
use crate::core::crypto::{AsyncSignatureBackend, NativeBackend, SignatureBackend};
use crate::core::error::AuthError;
use crate::core::io::InlineIo;
use crate::core::jwt::issuer_keys;
use crate::core::log::DecisionLog;
use crate::core::pipeline::Gate;
use crate::core::request::{extract_credential, split_url, RequestView};
use crate::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target};
use crate::core::token::UnverifiedToken;
use crate::core::token_cache::token_hash;
use crate::core::verify::{PendingToken, SignatureJob, SignatureProof, VerifiedToken};
use worker::Response;

/// Requests under this path are benchmark requests.
pub const PATH_PREFIX: &str = "/__edgeward/bench";

/// The differential route: both backends' verdicts for one token.
const DIFFERENTIAL_PATH: &str = "/__edgeward/bench/differential";

/// Most iterations per request (keeps a request bounded).
const MAX_N: u32 = 100_000;

/// The signature backend of a verification.
#[derive(Clone, Copy)]
enum Backend {
    /// The Worker's: `crypto.subtle.verify`, `CryptoKey`s cached per isolate.
    WebCrypto,
    /// The pure-Rust one (jwt-simple and the primitives behind it, `p521`).
    Native,
}

impl AsyncSignatureBackend for Backend {
    async fn verify_async(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        match self {
            Backend::WebCrypto => webcrypto::verify(job).await,
            Backend::Native => NativeBackend.verify(job),
        }
    }
}

/// The whole uncached verification of `token`: the pipeline's JWT step on a gate whose
/// verified-token cache is off.
async fn verify_uncached(uncached: &Gate, token: &str, now: i64, backend: Backend) -> Result<VerifiedToken, AuthError> {
    let io = InlineIo { backend, now_ms: now * 1000, trace: false };
    uncached.verify_jwt(&io, token, &token_hash(token), now, &mut DecisionLog::default()).await
}

/// `"ok"` or the stable reason code of the refusal.
fn verdict(result: Result<VerifiedToken, AuthError>) -> &'static str {
    result.map_or_else(|e| e.code(), |_| "ok")
}

/// `verify_uncached` without the signature check (bench breakdown only).
fn verify_unsigned(token: &str, policy: &Policy, now: i64) -> Result<VerifiedToken, AuthError> {
    let unverified = UnverifiedToken::parse(token, policy.max_token_bytes)?;
    let pending = PendingToken::new(unverified, policy)?;
    let i = pending.issuer_index();
    let key = pending.select_key(issuer_keys(&policy.issuers, None, i))?;
    let proof = SignatureProof::for_job(&pending.job(key)?);
    pending.finish(proof, key, policy, now)
}

/// N bare `crypto.subtle.verify` calls from Rust on arguments prepared once (bench breakdown).
async fn raw_sig(job: &crate::core::verify::SignatureJob<'_>, n: u32, jsfuture: bool) -> bool {
    use worker::js_sys::{Array, Uint8Array};
    let Some((import_alg, verify_alg)) = webcrypto::params(job.alg, &job.key.material) else { return false };
    let (Ok(key), Ok(subtle)) = (webcrypto::import(job, &import_alg).await, webcrypto::subtle()) else { return false };
    let args = Array::of4(&verify_alg, &key, &Uint8Array::from(job.signature), &Uint8Array::from(job.signing_input));
    let mut ok = true;
    for _ in 0..n {
        let r = if jsfuture { webcrypto::call_jsfuture(&subtle, "verify", &args).await } else { super::runtime::js::call(&subtle, "verify", &args).await };
        ok &= matches!(r, Ok(v) if v.as_bool() == Some(true));
    }
    ok
}

#[worker::wasm_bindgen::prelude::wasm_bindgen(
    inline_js = "export async function edgeward_bench_await_js(n) { let ok = true; for (let i = 0; i < n; i++) ok = (await Promise.resolve(true)) && ok; return ok; }"
)]
extern "C" {
    fn edgeward_bench_await_js(n: u32) -> worker::js_sys::Promise;
}

thread_local! {
    /// 100,000 active revocations, built once per isolate (from the compact snapshot).
    static BIG_SET: std::rc::Rc<RevocationSet> = std::rc::Rc::new(big_set());
}

fn big_set() -> RevocationSet {
    let now = (worker::Date::now().as_millis() / 1000) as i64;
    let iss = "https://issuer.bench";
    let entries = (0..100_000)
        .map(|i| {
            let target = match i % 10 {
                0 => Target::SubjectBefore { iss: iss.into(), sub: format!("user-{i}"), before: now - 60 },
                1 => Target::Kid { kid: format!("key-{i}") },
                _ => Target::Jti { iss: iss.into(), jti: format!("{i:032x}") },
            };
            Revocation { target, reason: "bench".into(), created_at: now, expires_at: now + 86_400 }
        })
        .collect();
    let compact = RevocationSet::from_snapshot(&RevocationSnapshot { version: 1, entries }, now).to_compact();
    RevocationSet::from_compact(&compact, now).expect("own snapshot")
}

fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn answer(status: u16, body: serde_json::Value) -> worker::Result<Response> {
    let mut r = Response::ok(body.to_string())?.with_status(status);
    let _ = r.headers_mut().set("content-type", "application/json");
    let _ = r.headers_mut().set("cache-control", "no-store");
    Ok(r)
}

/// Handles one benchmark request (see the module docs).
pub async fn handle(gate: &Gate, url: &str, headers: &[(String, String)], now: i64) -> worker::Result<Response> {
    let policy = gate.policy();
    let (origin, path, query) = split_url(url).unwrap_or_default();
    let view = &RequestView { method: "GET", path, query, headers, client_ip: None, origin };
    let uncached = {
        let mut p = policy.clone();
        p.token_cache.capacity = 0;
        Gate::new(p)
    };
    let n = query_value(view.query, "n").and_then(|v| v.parse::<u32>().ok()).unwrap_or(0).min(MAX_N);
    let mode = query_value(view.query, "mode").unwrap_or("miss");
    let token = match extract_credential(view, policy) {
        Ok(Some(c)) => c.token,
        _ => return answer(400, serde_json::json!({"error": "a bearer token is required"})),
    };
    if view.path == DIFFERENTIAL_PATH {
        let by_webcrypto = verdict(verify_uncached(&uncached, &token, now, Backend::WebCrypto).await);
        let by_native = verdict(verify_uncached(&uncached, &token, now, Backend::Native).await);
        return answer(200, serde_json::json!({"webcrypto": by_webcrypto, "native": by_native}));
    }
    let ok = match mode {
        "miss" => {
            let mut ok = true;
            for _ in 0..n {
                ok &= verify_uncached(&uncached, &token, now, Backend::WebCrypto).await.is_ok();
            }
            ok
        }
        "core" => (0..n).fold(true, |ok, _| ok & verify_unsigned(&token, policy, now).is_ok()),
        // N awaits of an already-resolved promise from Rust (the executor's cost per await) ...
        "await" => {
            let mut ok = true;
            for _ in 0..n {
                let p = worker::js_sys::Promise::resolve(&worker::wasm_bindgen::JsValue::TRUE);
                ok &= promise::settle(&p).await.is_ok();
            }
            ok
        }
        // ... and the same N awaits in JS, awaited once from Rust.
        "await_js" => promise::settle(&edgeward_bench_await_js(n)).await.is_ok(),
        "sig" | "cachekey" | "rawsig" | "rawsig_jsfuture" => {
            let prepared = UnverifiedToken::parse(&token, policy.max_token_bytes).and_then(|u| PendingToken::new(u, policy));
            let Ok(pending) = prepared else { return answer(400, serde_json::json!({"error": "token rejected"})) };
            let Ok(key) = pending.select_key(issuer_keys(&policy.issuers, None, pending.issuer_index())) else {
                return answer(400, serde_json::json!({"error": "no key"}));
            };
            let Ok(job) = pending.job(key) else { return answer(400, serde_json::json!({"error": "no job"})) };
            if mode == "rawsig" || mode == "rawsig_jsfuture" {
                return answer(200, serde_json::json!({"n": n, "mode": mode, "ok": raw_sig(&job, n, mode == "rawsig_jsfuture").await}));
            }
            let mut ok = true;
            for _ in 0..n {
                if mode == "sig" {
                    ok &= webcrypto::verify(&job).await.is_ok();
                } else {
                    std::hint::black_box(webcrypto::is_cached(std::hint::black_box(&job)));
                }
            }
            ok
        }
        // N times what the gate adds to an accepted JWT request for the usage counters: the
        // finished record counted under its sub and client id (entries that exist: the common case).
        "usage" => {
            let log =
                DecisionLog { client_id: Some("bench-app".into()), client_ip: Some("203.0.113.0/24".into()), ..accepted_record(now, "bench-user-0001".into()) };
            for _ in 0..n {
                std::hint::black_box(gate.tally(std::hint::black_box(&log)));
            }
            gate.state().usage_entries() >= 2
        }
        // The flush's own work, in the request that runs it: `flush` counts N distinct subjects
        // (each a new entry: N ≤ the 4,096 the aggregator holds), then starts a flush, serializes
        // every shard's batch as the gate sends it and ends the flush; `flush0` only counts them
        // (the baseline). The difference is the CPU a flush of N entries takes (the sends
        // themselves are subrequests, waited on, not computed).
        "flush" | "flush0" => {
            let subs: Vec<String> = (0..n).map(|i| format!("bench-subject-{i:06}")).collect();
            for sub in &subs {
                let log = accepted_record(now, sub.clone());
                std::hint::black_box(gate.tally(&log));
            }
            if mode == "flush" {
                let batches = gate.state().usage.borrow_mut().start_flush(now * 1000);
                let bytes: usize = batches.iter().map(|(_, b)| serde_json::to_string(b).map_or(0, |t| std::hint::black_box(t).len())).sum();
                gate.state().usage.borrow_mut().finish_flush(&[]);
                bytes > 0 && gate.state().usage_entries() == 0
            } else {
                let held = gate.state().usage_entries();
                *gate.state().usage.borrow_mut() = crate::core::usage::UsageAggregator::new(&gate.policy().observability);
                held > 0 || n == 0
            }
        }
        "revoked100k" | "revoked0" => match verify_uncached(&uncached, &token, now, Backend::WebCrypto).await {
            Err(_) => false,
            Ok(verified) => {
                let set = if mode == "revoked0" { std::rc::Rc::new(RevocationSet::default()) } else { BIG_SET.with(std::rc::Rc::clone) };
                let mut ok = true;
                for _ in 0..n {
                    ok &= std::hint::black_box(&*set).check(std::hint::black_box(&verified), now).is_ok();
                }
                ok && (mode == "revoked0" || set.len() == 100_000)
            }
        },
        "hit" => {
            let requirement = policy.routes.requirement(view.method, view.path);
            // The first verification fills the gate's cache; it is the same for every n, so it
            // cancels out when the client subtracts the n = 0 time. Then the pipeline's JWT step
            // as the gate runs it for a repeated token: hash, cache hit, authorize.
            let io = InlineIo { backend: Backend::WebCrypto, now_ms: now * 1000, trace: false };
            let mut ok = gate.verify_jwt(&io, &token, &token_hash(&token), now, &mut DecisionLog::default()).await.is_ok();
            for _ in 0..n {
                let hash = token_hash(&token);
                ok &= gate.verify_jwt(&io, &token, &hash, now, &mut DecisionLog::default()).await.is_ok_and(|v| v.authorize(&requirement).is_ok());
            }
            ok
        }
        _ => {
            return answer(
                400,
                serde_json::json!({"error": "mode must be miss, hit, core, sig, rawsig, rawsig_jsfuture, cachekey, await, await_js, revoked100k or revoked0"}),
            )
        }
    };
    answer(200, serde_json::json!({"n": n, "mode": mode, "ok": ok}))
}

/// The decision record of an accepted JWT request of `sub` (the usage benches' input).
fn accepted_record(now: i64, sub: String) -> DecisionLog<'static> {
    DecisionLog {
        event: "decision",
        ts_ms: now * 1000,
        request_id: "0123456789abcdef0123456789abcdef",
        decision: "accept",
        status: 200,
        iss: Some("https://issuer.bench".into()),
        sub: Some(sub),
        country: Some("DE".into()),
        ..Default::default()
    }
}
