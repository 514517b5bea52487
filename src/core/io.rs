//! The I/O the decision pipeline ([`super::pipeline`]) needs, injected by the caller.
//!
//! The pipeline is written once, in the core, as `async` code over this trait: the Worker
//! implements it with `fetch`, KV, the Durable Objects, WebCrypto and `Date.now()`; the CLI, the
//! JS package and the bench with inline keys and the native (or WebCrypto) backend; the host
//! tests with a fake that records every call on a fixed clock. This is the Envoy `jwt_authn`
//! shape (the filter gets its fetcher and time source injected) rather than a quinn-style state
//! machine that yields I/O requests: the request path has eight kinds of I/O, interleaved with
//! decisions that depend on their answers, and a trait keeps that path readable as one function
//! while the core still reads no clock and touches no network (the trait does, for it).
//!
//! Rules the pipeline keeps with any implementation: no state is borrowed across an `.await`
//! (an isolate serves concurrent requests), every I/O failure has a decided outcome (fail
//! closed or a documented fallback), and nothing secret is passed to [`GateIo::log`].

use super::error::AuthError;
use super::jwks_cache::{FetchOutcome, JwksSnapshot};
use super::ratelimit::{Bucket, Decision};
use super::verify::{SignatureJob, SignatureProof};

/// A failed I/O call, typed by what failed (for the operator's log: never shown to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The binding (KV namespace, Durable Object, rate-limiting binding) is not configured.
    NotBound(&'static str),
    /// The call failed (network, runtime), with what the runtime said.
    Failed(String),
    /// The answer was not what the protocol expects (status, body).
    BadAnswer(String),
    /// The value was larger than the cap.
    TooLarge(usize),
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoError::NotBound(b) => write!(f, "no {b} binding"),
            IoError::Failed(e) => write!(f, "{e}"),
            IoError::BadAnswer(e) => write!(f, "unexpected answer: {e}"),
            IoError::TooLarge(n) => write!(f, "value larger than {n} bytes"),
        }
    }
}

impl std::error::Error for IoError {}

/// Severity of an operational event ([`GateIo::log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine (a JWKS fetch, a snapshot restore).
    Info,
    /// Something degraded (a fallback taken, a read failed).
    Warn,
    /// Something is broken (a record that does not parse).
    Error,
}

/// Work the pipeline leaves to run after the response (the Worker's `ctx.waitUntil`). Run it
/// with [`super::pipeline::Gate::run_deferred`].
#[derive(Debug, Clone)]
pub enum Deferred {
    /// Refetch issuer `issuer`'s JWKS (the cache already marked the fetch as begun).
    RefreshJwks {
        /// Issuer index.
        issuer: usize,
    },
    /// Write issuer `issuer`'s fresh JWKS snapshot to KV.
    PersistJwks {
        /// Issuer index.
        issuer: usize,
        /// What to write.
        snapshot: JwksSnapshot,
    },
    /// Re-read the revocation snapshot from KV.
    RefreshRevocations,
    /// Re-read the published block list.
    RefreshBlocks,
    /// Write issuer `issuer`'s discovered metadata to KV.
    PersistDiscovery {
        /// Issuer index.
        issuer: usize,
    },
    /// Send the usage counters to the control Worker ([`super::usage`]).
    FlushUsage,
}

impl Deferred {
    /// The task's name (for logs).
    pub fn name(&self) -> &'static str {
        match self {
            Deferred::RefreshJwks { .. } => "refresh_jwks",
            Deferred::PersistJwks { .. } => "persist_jwks",
            Deferred::PersistDiscovery { .. } => "persist_discovery",
            Deferred::RefreshRevocations => "refresh_revocations",
            Deferred::RefreshBlocks => "refresh_blocks",
            Deferred::FlushUsage => "flush_usage",
        }
    }
}

/// Largest introspection answer read.
pub const MAX_INTROSPECTION_BYTES: usize = 64 * 1024;

/// Where the ledger is asked (strict mode on `sensitive` routes): the message the gate sends the
/// control plane's `RevocationLedger` (`{"op": "check", "body": facts}`; a stable contract).
pub type LedgerFacts = serde_json::Value;

/// The I/O of one request (or of one deferred task). See the module docs.
#[allow(async_fn_in_trait)] // single-threaded runtimes: the futures need not be `Send`
pub trait GateIo {
    /// Milliseconds since the Unix epoch, for steps that run after an await (a fetch's
    /// completion time). The pipeline's decisions take `now` as a parameter.
    fn now_ms(&self) -> i64;
    /// A Worker secret (or environment value) by name, if set.
    fn secret(&self, name: &str) -> Option<String>;
    /// An operational event (never a token, key or secret).
    fn log(&self, level: Level, event: &serde_json::Value);
    /// Runs `task` after the response (or drops it where there is no "after": CLI, JS).
    fn defer(&self, task: Deferred);
    /// Whether the KV namespace is bound.
    fn has_kv(&self) -> bool;
    /// Whether the pipeline records the steps it takes ([`super::log::DecisionLog::trace`]):
    /// `explain` in the CLI and the JS package. A constant `false` (the default) lets the
    /// compiler drop the step descriptions from the Worker.
    fn tracing(&self) -> bool {
        false
    }
    /// Whether the pipeline counts decisions in the usage counters ([`super::usage`]) and
    /// flushes them with [`GateIo::send_usage`] (the Worker; not where nothing runs after the
    /// answer: the CLI, the JS package).
    fn counts_usage(&self) -> bool {
        false
    }
    /// Writes one data point to the Analytics Engine binding `EDGEWARD_ANALYTICS`, if there is
    /// one (never awaited; where there is none: nothing).
    fn write_data_point(&self, point: &super::usage::AnalyticsPoint) {
        let _ = point;
    }
    /// Whether the Analytics Engine binding is there (so the point is made only then).
    fn has_analytics(&self) -> bool {
        false
    }
    /// Waits `ms` milliseconds (a deferred flush waiting for its time). Where nothing runs after
    /// the answer: at once.
    async fn sleep_ms(&self, ms: u32) {
        let _ = ms;
    }
    /// Sends one usage batch (JSON, [`super::usage::UsageBatch`]) to `UsageStore` shard `shard`.
    async fn send_usage(&self, shard: u32, batch: &str) -> Result<(), IoError> {
        let _ = (shard, batch);
        Err(IoError::NotBound("usage store"))
    }
    /// GETs a JWKS document, at most [`super::jwks_cache::MAX_JWKS_BYTES`] of it, within
    /// `timeout_ms`.
    async fn fetch_jwks(&self, uri: &str, timeout_ms: u32) -> FetchOutcome;
    /// Reads a KV value, failing with [`IoError::TooLarge`] past `max_bytes`.
    async fn kv_read(&self, key: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, IoError>;
    /// Writes a KV value.
    async fn kv_write(&self, key: &str, value: &[u8]) -> Result<(), IoError>;
    /// POSTs a token introspection request (RFC 7662): `form` as
    /// `application/x-www-form-urlencoded`, with `authorization` when given; the status and the
    /// body (at most [`MAX_INTROSPECTION_BYTES`]), within `timeout_ms`. Where there is no network
    /// (the CLI, the JS package): not bound.
    async fn introspect(&self, endpoint: &str, form: &str, authorization: Option<&str>, timeout_ms: u32) -> Result<(u16, String), IoError> {
        let _ = (endpoint, form, authorization, timeout_ms);
        Err(IoError::NotBound("introspection"))
    }
    /// Claims a DPoP proof's replay key until `until` (Unix seconds) in the replay Durable Object
    /// (`dpop.replay: "exact"`): `Ok(true)` the first time, `Ok(false)` when it was claimed
    /// before and has not expired. Where there is none: not bound.
    async fn claim_once(&self, key: u64, until: i64) -> Result<bool, IoError> {
        let _ = (key, until);
        Err(IoError::NotBound("replay"))
    }
    /// Checks one signature ([`super::crypto::SignatureBackend`], possibly asynchronous).
    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError>;
    /// Asks the revocation ledger whether the facts are revoked (`Ok(true)`: revoked).
    /// (Where there is no ledger: not bound.)
    async fn ask_ledger(&self, facts: &LedgerFacts) -> Result<bool, IoError> {
        let _ = facts;
        Err(IoError::NotBound("revocation ledger"))
    }
    /// Applies one request to a bucket in the `RateLimiter` Durable Object (`exact` mode).
    async fn ask_limiter(&self, bucket: &Bucket) -> Result<Decision, IoError> {
        let _ = bucket;
        Err(IoError::NotBound("rate limiter"))
    }
    /// Asks the platform's rate-limiting binding `binding` (`binding` mode): `Ok(true)` allowed.
    async fn ask_limit_binding(&self, binding: &str, key: &str) -> Result<bool, IoError> {
        let _ = (binding, key);
        Err(IoError::NotBound("rate-limiting"))
    }
}

/// The I/O of a caller that holds every key in memory (the CLI, the JS package, the bench,
/// tests): no network, no KV, no secrets, no background; signatures by `backend`. An issuer with a
/// `jwks_uri` has no fetched keys here, so its tokens get `jwks_unavailable` unless an inline
/// key verifies them — what the gate answers while the issuer's JWKS cannot be had.
#[derive(Debug, Clone, Copy)]
pub struct InlineIo<B> {
    /// The signature backend.
    pub backend: B,
    /// The clock (ms since the Unix epoch).
    pub now_ms: i64,
    /// Record the steps taken ([`GateIo::tracing`]).
    pub trace: bool,
}

impl<B: super::crypto::AsyncSignatureBackend> GateIo for InlineIo<B> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    fn secret(&self, _: &str) -> Option<String> {
        None
    }
    fn log(&self, _: Level, _: &serde_json::Value) {}
    fn defer(&self, _: Deferred) {}
    fn has_kv(&self) -> bool {
        false
    }
    fn tracing(&self) -> bool {
        self.trace
    }
    async fn fetch_jwks(&self, _: &str, _: u32) -> FetchOutcome {
        FetchOutcome::Failed("inline keys only: no JWKS is fetched here".into())
    }
    async fn kv_read(&self, _: &str, _: usize) -> Result<Option<Vec<u8>>, IoError> {
        Err(IoError::NotBound("KV"))
    }
    async fn kv_write(&self, _: &str, _: &[u8]) -> Result<(), IoError> {
        Err(IoError::NotBound("KV"))
    }
    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        self.backend.verify_async(job).await
    }
}

/// Runs a future that never waits on anything outside (every [`InlineIo`] call is ready at
/// once) to completion, on the caller's thread: the synchronous entry of the CLI and the JS
/// package into the async pipeline. `None` if it did wait (a bug: it would never finish).
pub fn run_ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
