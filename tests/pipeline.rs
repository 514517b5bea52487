//! Host tests of the decision pipeline (`core::pipeline::Gate`) on the full `decide` path, over a
//! fake `GateIo`: a fixed clock the test advances, every I/O call recorded, every answer scripted
//! (JWKS documents per URI, a KV map, secrets, the revocation ledger, the rate limiters), deferred
//! work collected for the test to run when it wants, log events collected, and signatures checked
//! by the native backend. Tokens are real (RS256, ES256, EdDSA, HS256, signed by `common`), API
//! key records are built with the `core::apikey` functions, revocation snapshots with
//! `core::revocation`.
//!
//! Every future here is ready at once (the fake never waits), so `run_ready` runs a whole decision
//! on the test's thread: no runtime, no sleeps.
//!
//! The last test collects the reason code of every refusal the other tests' scenarios produce and
//! compares it with the codes of README's "Responses and reason codes" table, so a documented code
//! without a host test (or a produced code that is not documented) fails.

mod common;

use common::*;
use edgeward::core::alg::Algorithm::{EdDSA, ES256, HS256, RS256};
use edgeward::core::apikey::{generate, hash_storage_key, key_hash, key_id, KeyEnv, KeyHash, KeyRecord, KeySecret, KeyStatus, PresentedKey, RANDOM_BYTES};
use edgeward::core::config::Policy;
use edgeward::core::crypto::{NativeBackend, SignatureBackend};
use edgeward::core::error::AuthError;
use edgeward::core::io::{run_ready, Deferred, GateIo, IoError, LedgerFacts, Level};
use edgeward::core::jwks_cache::FetchOutcome;
use edgeward::core::log::CredentialSource;
use edgeward::core::pipeline::{jwks_snapshot_key, Forward, Gate, Incoming, OriginCookies, Outcome, Refusal};
use edgeward::core::ratelimit::{Bucket, Decision, LocalLimiter};
use edgeward::core::revocation::{
    encode_shard, shard_key, shard_of, sharded_snapshot, Manifest, Record, Revocation, RevocationSet, RevocationSnapshot, ShardRef, Target, MANIFEST_KEY,
    SNAPSHOT_KEY,
};
use edgeward::core::verify::{SignatureJob, SignatureProof};
use edgeward::core::websocket::{CloseReason, SocketCheck};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

// ---------------------------------------------------------------------------------------------
// The fake I/O
// ---------------------------------------------------------------------------------------------

/// What the fake issuer answers for one JWKS URI.
#[derive(Debug, Clone)]
enum JwksAnswer {
    Doc { status: u16, cache_control: Option<String>, body: String },
    Fail(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kv {
    Bound,
    Unbound,
    Failing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    NotRevoked,
    Revoked,
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limiter {
    /// The Durable Object's answer: a GCRA of its own (one `LocalLimiter` standing for it).
    Gcra,
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    Allow,
    Deny,
    Unreachable,
}

/// What the fake introspection endpoint answers for a token: (status, body), or a failure.
type IntrospectionAnswer = Result<(u16, String), String>;

/// A `GateIo` on a fixed clock that records every call and answers as scripted.
struct FakeIo {
    now_ms: Cell<i64>,
    calls: RefCell<Vec<String>>,
    jwks: RefCell<HashMap<String, JwksAnswer>>,
    kv: RefCell<HashMap<String, Vec<u8>>>,
    kv_state: Cell<Kv>,
    secrets: RefCell<HashMap<String, String>>,
    ledger: Cell<Ledger>,
    ledger_facts: RefCell<Vec<Value>>,
    limiter: Cell<Limiter>,
    remote_limiter: RefCell<LocalLimiter>,
    binding: Cell<Binding>,
    deferred: RefCell<Vec<Deferred>>,
    logs: RefCell<Vec<(Level, Value)>>,
    /// A KV key whose reads stay pending until cleared (a slow read, for interleavings).
    blocked: RefCell<Option<String>>,
    /// Introspection answers by token; every call's (endpoint, form, authorization).
    introspection: RefCell<HashMap<String, IntrospectionAnswer>>,
    introspected: RefCell<Vec<(String, String, Option<String>)>>,
    /// The replay Durable Object: claimed keys until when; or unreachable.
    claimed: RefCell<HashMap<u64, i64>>,
    replay_down: Cell<bool>,
    /// Usage counting on (`counts_usage`), the batches sent by shard, the store unreachable.
    usage_on: Cell<bool>,
    usage_sent: RefCell<Vec<(u32, String)>>,
    usage_down: Cell<bool>,
}

impl FakeIo {
    /// At `NOW`, KV bound and empty, no secrets, no JWKS served, ledger and limiters healthy.
    fn new() -> FakeIo {
        FakeIo {
            now_ms: Cell::new(NOW * 1000),
            calls: RefCell::new(Vec::new()),
            jwks: RefCell::new(HashMap::new()),
            kv: RefCell::new(HashMap::new()),
            kv_state: Cell::new(Kv::Bound),
            secrets: RefCell::new(HashMap::new()),
            ledger: Cell::new(Ledger::NotRevoked),
            ledger_facts: RefCell::new(Vec::new()),
            limiter: Cell::new(Limiter::Gcra),
            remote_limiter: RefCell::new(LocalLimiter::default()),
            binding: Cell::new(Binding::Allow),
            deferred: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            blocked: RefCell::new(None),
            introspection: RefCell::new(HashMap::new()),
            introspected: RefCell::new(Vec::new()),
            claimed: RefCell::new(HashMap::new()),
            replay_down: Cell::new(false),
            usage_on: Cell::new(false),
            usage_sent: RefCell::new(Vec::new()),
            usage_down: Cell::new(false),
        }
    }

    /// With the API key pepper set.
    fn with_pepper() -> FakeIo {
        let io = FakeIo::new();
        io.set_secret(edgeward::core::apikey::PEPPER_SECRET, PEPPER);
        io
    }

    fn advance_secs(&self, s: i64) {
        self.now_ms.set(self.now_ms.get() + s * 1000);
    }

    fn now_secs(&self) -> i64 {
        self.now_ms.get().div_euclid(1000)
    }

    fn set_secret(&self, name: &str, value: &str) {
        self.secrets.borrow_mut().insert(name.into(), value.into());
    }

    fn serve_jwks(&self, uri: &str, answer: JwksAnswer) {
        self.jwks.borrow_mut().insert(uri.into(), answer);
    }

    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    /// The calls recorded since the last `take_calls`.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls.borrow().iter().filter(|c| c.starts_with(prefix)).count()
    }

    fn take_deferred(&self) -> Vec<Deferred> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }

    fn events(&self, name: &str) -> Vec<(Level, Value)> {
        self.logs.borrow().iter().filter(|(_, e)| e["event"] == name).cloned().collect()
    }
}

impl GateIo for FakeIo {
    fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }
    fn secret(&self, name: &str) -> Option<String> {
        self.secrets.borrow().get(name).cloned()
    }
    fn log(&self, level: Level, event: &Value) {
        self.logs.borrow_mut().push((level, event.clone()));
    }
    fn defer(&self, task: Deferred) {
        self.deferred.borrow_mut().push(task);
    }
    fn has_kv(&self) -> bool {
        self.kv_state.get() != Kv::Unbound
    }
    fn counts_usage(&self) -> bool {
        self.usage_on.get()
    }
    async fn sleep_ms(&self, ms: u32) {
        self.record(format!("sleep {ms}"));
        self.advance_secs(i64::from(ms) / 1000);
    }
    async fn send_usage(&self, shard: u32, batch: &str) -> Result<(), IoError> {
        self.record(format!("send_usage {shard}"));
        if self.usage_down.get() {
            return Err(IoError::Failed("usage store unreachable".into()));
        }
        self.usage_sent.borrow_mut().push((shard, batch.into()));
        Ok(())
    }
    async fn fetch_jwks(&self, uri: &str, timeout_ms: u32) -> FetchOutcome {
        assert!(timeout_ms > 0, "a fetch always has a timeout");
        self.record(format!("fetch_jwks {uri}"));
        match self.jwks.borrow().get(uri).cloned() {
            Some(JwksAnswer::Doc { status, cache_control, body }) => FetchOutcome::Response { status, cache_control, body },
            Some(JwksAnswer::Fail(e)) => FetchOutcome::Failed(e),
            None => FetchOutcome::Failed(format!("no route to {uri}")),
        }
    }
    async fn introspect(&self, endpoint: &str, form: &str, authorization: Option<&str>, timeout_ms: u32) -> Result<(u16, String), IoError> {
        assert!(timeout_ms > 0, "a call always has a timeout");
        self.record(format!("introspect {endpoint}"));
        self.introspected.borrow_mut().push((endpoint.into(), form.into(), authorization.map(str::to_owned)));
        let token = form.split('&').find_map(|p| p.strip_prefix("token=")).unwrap_or("").to_string();
        match self.introspection.borrow().get(&token).cloned() {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => Err(IoError::Failed(e)),
            None => Ok((200, r#"{"active":false}"#.into())),
        }
    }
    async fn claim_once(&self, key: u64, until: i64) -> Result<bool, IoError> {
        self.record(format!("claim_once {key:016x}"));
        if self.replay_down.get() {
            return Err(IoError::Failed("replay object unreachable".into()));
        }
        let now = self.now_secs();
        let mut claimed = self.claimed.borrow_mut();
        if claimed.get(&key).is_some_and(|u| *u >= now) {
            return Ok(false);
        }
        claimed.insert(key, until);
        Ok(true)
    }
    async fn kv_read(&self, key: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, IoError> {
        std::future::poll_fn(|_| if self.blocked.borrow().as_deref() == Some(key) { Poll::Pending } else { Poll::Ready(()) }).await;
        self.record(format!("kv_read {key}"));
        match self.kv_state.get() {
            Kv::Unbound => Err(IoError::NotBound("KV")),
            Kv::Failing => Err(IoError::Failed("KV is down".into())),
            Kv::Bound => match self.kv.borrow().get(key) {
                Some(v) if v.len() > max_bytes => Err(IoError::TooLarge(max_bytes)),
                v => Ok(v.cloned()),
            },
        }
    }
    async fn kv_write(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.record(format!("kv_write {key}"));
        match self.kv_state.get() {
            Kv::Unbound => Err(IoError::NotBound("KV")),
            Kv::Failing => Err(IoError::Failed("KV is down".into())),
            Kv::Bound => {
                self.kv.borrow_mut().insert(key.into(), value.to_vec());
                Ok(())
            }
        }
    }
    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        self.record("verify_signature".into());
        NativeBackend.verify(job)
    }
    async fn ask_ledger(&self, facts: &LedgerFacts) -> Result<bool, IoError> {
        self.record("ask_ledger".into());
        self.ledger_facts.borrow_mut().push(facts.clone());
        match self.ledger.get() {
            Ledger::NotRevoked => Ok(false),
            Ledger::Revoked => Ok(true),
            Ledger::Unreachable => Err(IoError::Failed("ledger unreachable".into())),
        }
    }
    async fn ask_limiter(&self, bucket: &Bucket) -> Result<Decision, IoError> {
        self.record(format!("ask_limiter {}", bucket.key));
        match self.limiter.get() {
            Limiter::Gcra => Ok(self.remote_limiter.borrow_mut().check(bucket, self.now_ms.get())),
            Limiter::Unreachable => Err(IoError::Failed("limiter unreachable".into())),
        }
    }
    async fn ask_limit_binding(&self, binding: &str, key: &str) -> Result<bool, IoError> {
        self.record(format!("ask_limit_binding {binding} {key}"));
        match self.binding.get() {
            Binding::Allow => Ok(true),
            Binding::Deny => Ok(false),
            Binding::Unreachable => Err(IoError::Failed("binding unreachable".into())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, tokens, keys
// ---------------------------------------------------------------------------------------------

/// The gateway's own origin (the request URLs').
const EDGE: &str = "https://edge.example";
/// The JWKS of the standard issuer (`ISS`): ES256 and RS256 keys, fetched.
const JWKS_URI: &str = "https://issuer.example/.well-known/jwks.json";
/// An issuer with an inline EdDSA key `ed-1`.
const INLINE_ISS: &str = "https://inline.example";
/// An issuer with two inline HS256 keys, `hs-1` and `hs-2`.
const HMAC_ISS: &str = "https://hmac.example";
const PEPPER: &str = "pipeline-test-pepper-0123456789abcdef";
const PARTNER_SECRET_NAME: &str = "PARTNER_ORIGIN_TOKEN";
const PARTNER_SECRET: &str = "origin-secret-42";
const CLIENT_IP: &str = "203.0.113.9";
/// The isolate's first read of the published block list (`ip_blocks`), on its first request.
const BLOCKS_READ: &str = "kv_read ip-blocks:v1";
const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"edgeward\", error=\"invalid_token\", error_description=";

/// A realistic configuration: a fetched issuer, an inline EdDSA issuer, an HMAC issuer; public,
/// method-limited, scoped, sensitive, API-key, either and upstream-credential routes; a token
/// cookie. Tests add `rate_limits` and the like to it.
fn doc() -> Value {
    json!({
        "issuers": [
            {"issuer": ISS, "audiences": [AUD], "algorithms": ["ES256", "RS256"], "jwks_uri": JWKS_URI},
            issuer_entry(Some(INLINE_ISS), &["EdDSA"], vec![key(EdDSA).jwk("ed-1", json!({}))]),
            issuer_entry(Some(HMAC_ISS), &["HS256"], vec![key(HS256).jwk("hs-1", json!({})), key_seeded(HS256, 1).jwk("hs-2", json!({}))]),
        ],
        "origin": ORIGIN,
        "cookie_name": "__Host-session",
        "routes": [
            {"path": "/public/*", "public": true},
            {"path": "/docs/*", "methods": ["GET"], "public": true},
            {"path": "/admin/*", "methods": ["POST"], "scopes": ["admin"]},
            {"path": "/billing/*", "scopes": ["billing"], "sensitive": true},
            {"path": "/partner/*", "auth": "api_key", "upstream_credential": "partner_origin"},
            {"path": "/svc/*", "auth": "either"},
            {"path": "/ws/*", "websocket": true},
            {"path": "/ws-keys/*", "websocket": true, "auth": "api_key"},
            {"path": "/ws-public/*", "websocket": true, "public": true},
            {"path": "/dpop-only/*", "dpop": "required"},
            {"path": "/no-dpop/*", "dpop": "disabled"}
        ],
        "upstream_credentials": {
            "partner_origin": {"header": "Authorization", "value": "Bearer {secret}", "secret": PARTNER_SECRET_NAME}
        }
    })
}

/// `doc()` with `section` set to `value`.
fn doc_with(section: &str, value: Value) -> Value {
    let mut d = doc();
    d[section] = value;
    d
}

fn gate(d: &Value) -> Gate {
    Gate::new(policy(d))
}

/// The standard claims for issuer `iss`, patched (`null` removes a claim).
fn claims_of(iss: &str, patch: Value) -> Value {
    with(with(claims(), json!({ "iss": iss })), patch)
}

/// An EdDSA token of the inline issuer.
fn ed_token(patch: Value) -> String {
    key(EdDSA).sign(Some("ed-1"), &claims_of(INLINE_ISS, patch))
}

/// An HS256 token of the HMAC issuer, signed by `hs-1`.
fn hs_token(patch: Value) -> String {
    key(HS256).sign(Some("hs-1"), &claims_of(HMAC_ISS, patch))
}

/// An HS256 token with exactly this header text and the HMAC issuer's claims.
fn hs_raw(header: &str) -> String {
    key(HS256).sign_raw(header, &claims_of(HMAC_ISS, json!({})).to_string())
}

/// An ES256 token of the fetched issuer, signed by the ES256 key of `seed`.
fn es_token(seed: u8, kid: &str, patch: Value) -> String {
    key_seeded(ES256, seed).sign(Some(kid), &claims_of(ISS, patch))
}

fn es_jwk(seed: u8, kid: &str) -> Value {
    key_seeded(ES256, seed).jwk(kid, json!({"use": "sig", "alg": "ES256"}))
}

fn jwks_doc(keys: Vec<Value>) -> JwksAnswer {
    JwksAnswer::Doc { status: 200, cache_control: Some("max-age=600".into()), body: json!({ "keys": keys }).to_string() }
}

// ---- API keys --------------------------------------------------------------------------------

/// Deterministic "CSPRNG" bytes (splitmix64) for `generate`.
fn random_bytes<const N: usize>(seed: u64) -> [u8; N] {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn api_key(seed: u64) -> String {
    generate(KeyEnv::Live, &random_bytes::<RANDOM_BYTES>(seed)).expect("enough usable random bytes")
}

fn hash_of(k: &str) -> KeyHash {
    key_hash(PEPPER.as_bytes(), &PresentedKey::parse(k, None).expect("well-formed key")).expect("hmac")
}

/// The KV key the gate reads for `k`.
fn storage_key(k: &str) -> String {
    hash_storage_key(&hash_of(k).hex())
}

/// An active record for `k`, as the control plane stores it.
fn record_for(k: &str, id_seed: u8) -> KeyRecord {
    KeyRecord {
        id: key_id(&[id_seed; 12]),
        owner: "acme-billing".into(),
        description: "billing batch".into(),
        scopes: vec!["invoices:read".into()],
        tier: None,
        allowed_ips: vec![],
        not_before: None,
        expires_at: None,
        status: KeyStatus::Active,
        env: KeyEnv::Live,
        created_at: NOW - 1000,
        secrets: vec![KeySecret { hash: hash_of(k).hex(), created_at: NOW - 1000, not_after: None }],
    }
}

/// A change to a stored record (a test case's).
type RecordEdit = fn(&mut KeyRecord);

fn store_record(io: &FakeIo, k: &str, rec: &KeyRecord) {
    io.kv.borrow_mut().insert(storage_key(k), serde_json::to_vec(rec).unwrap());
}

fn revocations_of(targets: Vec<Target>) -> Vec<Revocation> {
    targets.into_iter().map(|target| Revocation { target, reason: "test".into(), created_at: NOW - 5, expires_at: NOW + 86_400 }).collect()
}

/// The sharded revocation snapshot holding `targets` at `version`, as the ledger publishes it:
/// the manifest under `MANIFEST_KEY` and its shards.
fn publish_revocations(io: &FakeIo, version: u64, targets: Vec<Target>) {
    let (manifest, shards) = sharded_snapshot(version, revocations_of(targets).iter().map(Revocation::record).collect(), NOW);
    let mut kv = io.kv.borrow_mut();
    kv.insert(MANIFEST_KEY.into(), manifest.encode());
    kv.extend(shards);
}

/// The format-2 single-value snapshot an earlier ledger published (no manifest).
fn publish_legacy_revocations(io: &FakeIo, version: u64, targets: Vec<Target>) {
    let set = RevocationSet::from_snapshot(&RevocationSnapshot { version, entries: revocations_of(targets) }, NOW);
    io.kv.borrow_mut().insert(SNAPSHOT_KEY.into(), set.to_compact());
}

// ---------------------------------------------------------------------------------------------
// Requests and outcomes
// ---------------------------------------------------------------------------------------------

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A request as the adapter received it (owned, so outcomes can borrow it).
#[derive(Debug, Clone)]
struct Req {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    id: String,
    cert: Option<String>,
    geo: Option<(String, String)>,
}

fn req(method: &str, path_and_query: &str) -> Req {
    let n = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    Req { method: method.into(), url: format!("{EDGE}{path_and_query}"), headers: Vec::new(), id: format!("req-{n:06}"), cert: None, geo: None }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }
    fn api_key(self, k: &str) -> Req {
        self.header("X-API-Key", k)
    }
    fn client_ip(self, ip: &str) -> Req {
        self.header("CF-Connecting-IP", ip)
    }
    fn incoming(&self, now_ms: i64) -> Incoming<'_> {
        Incoming {
            method: &self.method,
            url: &self.url,
            headers: &self.headers,
            request_id: &self.id,
            now_ms,
            client_cert_sha256: self.cert.as_deref(),
            geo: self.geo.as_ref().map(|(c, l)| (c.as_str(), l.as_str())),
        }
    }
}

/// Runs one whole decision at the fake's clock. The outcome borrows the request (its id and
/// headers); a copy of it is leaked so that tests can build requests in place.
fn decide(gate: &Gate, io: &FakeIo, r: &Req) -> Outcome<'static> {
    let r: &'static Req = Box::leak(Box::new(r.clone()));
    run_ready(gate.decide(io, &r.incoming(io.now_ms()))).expect("every fake I/O call is ready at once")
}

fn hdr<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn hdr_all<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

fn forwarded<'a>(o: Outcome<'a>) -> Box<Forward<'a>> {
    match o {
        Outcome::Forward(f) => f,
        Outcome::Refuse(r) | Outcome::Answer(r) => panic!("expected a forward, got {} {:?} ({:?})", r.response.status, r.log.reason, r.log.detail),
        Outcome::Admin(a) => panic!("expected a forward, got an admin call for {}", a.path),
    }
}

/// The `WWW-Authenticate` a refusal must carry.
#[derive(Debug, Clone, Copy)]
enum Www<'s> {
    Absent,
    Is(&'s str),
    /// Starts with this.
    Starts(&'s str),
    /// `Bearer realm="edgeward", error="invalid_token", error_description=…`
    InvalidToken,
}

thread_local! {
    /// Reason codes of the refusals checked on this thread (see the last test).
    static PRODUCED: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

/// Checks a refusal as the client and the operator see it: status, code, challenge, request id
/// (header and body), `Retry-After` on 429/503 only, the decision record; and records the code.
fn check_refusal(r: &Refusal<'_>, status: u16, code: &'static str, www: Www<'_>, request_id_header: &str) {
    assert_eq!((r.response.status, r.log.reason), (status, Some(code)), "detail: {:?}", r.log.detail);
    assert_eq!((r.log.status, r.log.decision), (status, "reject"));
    let body: Value = serde_json::from_str(&r.response.body).expect("JSON body");
    assert_eq!(body["code"], code);
    assert_eq!(body["request_id"], r.log.request_id);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let h = &r.response.headers;
    assert_eq!(hdr_all(h, request_id_header), vec![r.log.request_id], "request id header {request_id_header}");
    assert_eq!(hdr(h, "content-type"), Some("application/json"));
    assert_eq!(hdr(h, "cache-control"), Some("no-store"));
    match (www, hdr(h, "www-authenticate")) {
        (Www::Absent, None) => {}
        (Www::Is(want), Some(got)) => assert_eq!(got, want),
        (Www::Starts(want), Some(got)) => assert!(got.starts_with(want), "{code}: {got}"),
        (Www::InvalidToken, Some(got)) => assert!(got.starts_with(INVALID_TOKEN_CHALLENGE), "{got}"),
        (want, got) => panic!("{code}: WWW-Authenticate {got:?}, expected {want:?}"),
    }
    if status == 401 {
        assert!(hdr(h, "www-authenticate").is_some(), "every 401 has a challenge");
    }
    match status {
        503 => assert_eq!(hdr(h, "retry-after"), Some("5")),
        429 => assert!(hdr(h, "retry-after").and_then(|v| v.parse::<i64>().ok()).is_some_and(|s| s >= 1)),
        _ => assert_eq!(hdr(h, "retry-after"), None, "{code}: no Retry-After"),
    }
    PRODUCED.with(|p| p.borrow_mut().insert(code));
}

fn refused<'a>(o: Outcome<'a>, status: u16, code: &'static str, www: Www<'_>) -> Refusal<'a> {
    match o {
        Outcome::Refuse(r) => {
            check_refusal(&r, status, code, www, "x-request-id");
            r
        }
        Outcome::Forward(f) => panic!("expected {status} {code}, got a forward to {}", f.plan.url),
        Outcome::Answer(r) => panic!("expected {status} {code}, got the gate's own {}", r.response.status),
        Outcome::Admin(a) => panic!("expected {status} {code}, got an admin call for {}", a.path),
    }
}

#[test]
fn decision_records_say_who_asked_per_the_logging_section() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let mut r = req("GET", "/public/x").client_ip("203.0.113.77").header("User-Agent", &format!("curl/8 {}", "x".repeat(400)));
    r.geo = Some(("NL".into(), "AMS".into()));
    let f = forwarded(decide(&gate, &io, &r));
    assert_eq!(f.log.client_ip.as_deref(), Some("203.0.113.0/24"), "truncated by default");
    assert_eq!(f.log.user_agent.as_ref().map(|u| u.chars().count()), Some(256));
    assert_eq!((f.log.country.as_deref(), f.log.colo.as_deref(), f.log.rule.as_deref()), (Some("NL"), Some("AMS"), Some("/public/*")));
    assert!(!f.log.sampled_out);
    let line = serde_json::to_value(&f.log).unwrap();
    assert!(line.get("sampled_out").is_none() && line["rule"] == "/public/*");
    // Refusals carry them too, before any credential is read.
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").client_ip("2001:db8:abcd:12::1")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!(rf.log.client_ip.as_deref(), Some("2001:db8:abcd::/48"));
    assert_eq!(rf.log.rule, None, "no rule matched /api/x");
    // Hashed without its secret logs nothing; with it, a stable keyed hash.
    let hashed = gate_with_logging(json!({"client_ip": "hashed"}));
    assert_eq!(forwarded(decide(&hashed, &io, &req("GET", "/public/x").client_ip("203.0.113.77"))).log.client_ip, None);
    io.set_secret("EDGEWARD_LOG_IP_KEY", "log-ip-key-0123456789");
    let h1 = forwarded(decide(&hashed, &io, &req("GET", "/public/x").client_ip("203.0.113.77"))).log.client_ip.unwrap();
    assert_eq!(forwarded(decide(&hashed, &io, &req("GET", "/api/x").bearer(&t).client_ip("203.0.113.77"))).log.client_ip.unwrap(), h1);
    assert!(!h1.contains("203"));
    // accepted: "none" samples out every accepted request, never a refusal.
    let quiet = gate_with_logging(json!({"accepted": "none", "client_ip": "none"}));
    let f = forwarded(decide(&quiet, &io, &req("GET", "/api/x").bearer(&t).client_ip("203.0.113.77")));
    assert!(f.log.sampled_out && f.log.client_ip.is_none());
    let rf = refused(decide(&quiet, &io, &req("GET", "/api/x")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!(rf.log.decision, "reject", "a refusal is written whatever the sample");
    assert!(Policy::from_json(&doc_with("logging", json!({"accepted": {"sample": 1.5}})).to_string()).is_err());
}

/// Every row the fake usage store received, as (kind, id, accepted, rejected, auth_failures,
/// revoked), sorted.
fn usage_rows(io: &FakeIo) -> Vec<(String, String, u64, Value, u64, u64)> {
    let mut rows: Vec<_> = io
        .usage_sent
        .borrow()
        .iter()
        .flat_map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["rows"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
                r["accepted"].as_u64().unwrap(),
                r["rejected"].clone(),
                r["auth_failures"].as_u64().unwrap(),
                r["revoked"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    rows
}

fn run_flushes(gate: &Gate, io: &FakeIo) -> usize {
    let tasks: Vec<Deferred> = io.take_deferred().into_iter().filter(|t| matches!(t, Deferred::FlushUsage)).collect();
    let n = tasks.len();
    for t in tasks {
        run_ready(gate.run_deferred(io, t)).unwrap();
    }
    n
}

#[test]
fn every_decision_counts_under_its_subjects_and_flushes_at_most_every_flush_secs() {
    let gate = gate(&doc_with("observability", json!({"flush_secs": 10})));
    let io = FakeIo::new();
    io.usage_on.set(true);
    // A JWT with a client (azp), verified then served from the cache: both count.
    let t = ed_token(json!({"sub": "alice", "azp": "web-app"}));
    let first = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t).client_ip(CLIENT_IP)));
    let mut first = first;
    gate.respond(&io, &mut first, 200, OriginCookies::Each(vec![]), None, NOW);
    assert_eq!(first.log.client_id.as_deref(), Some("web-app"));
    assert_eq!(run_flushes(&gate, &io), 1, "the first decision starts a flush");
    io.advance_secs(1);
    let mut second = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t).client_ip(CLIENT_IP)));
    assert_eq!(second.log.token_cache, Some("hit"));
    gate.respond(&io, &mut second, 200, OriginCookies::Each(vec![]), None, NOW);
    // Refusals: bad signatures from one IP (auth failures), a missing token (not one).
    let forged = flip_signature_byte(&t, 0, 1);
    for _ in 0..3 {
        refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&forged).client_ip(CLIENT_IP)), 401, "bad_signature", Www::InvalidToken);
    }
    refused(decide(&gate, &io, &req("GET", "/api/x").client_ip(CLIENT_IP)), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    // Public routes and preflights have no subject: not counted.
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip(CLIENT_IP)));
    assert_eq!(gate.state().usage_entries(), 3, "alice, web-app (the first flush took the first decision), and the IP of the refusals");
    io.take_calls();
    // One flush asked for since the first (not one per decision); it waits out flush_secs.
    assert_eq!(run_flushes(&gate, &io), 1);
    let calls = io.take_calls();
    assert_eq!(calls.first().map(String::as_str), Some("sleep 9000"), "{calls:?}");
    assert!(calls[1..].iter().all(|c| c.starts_with("send_usage ")), "{calls:?}");
    assert_eq!(gate.state().usage_entries(), 0);
    let mut third = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t).client_ip(CLIENT_IP)));
    gate.respond(&io, &mut third, 200, OriginCookies::Each(vec![]), None, NOW);
    assert_eq!(run_flushes(&gate, &io), 1);
    assert_eq!(io.take_calls().first().map(String::as_str), Some("sleep 10000"), "a whole flush_secs after the last");
    let rows = usage_rows(&io);
    let total = |kind: &str, id: &str| rows.iter().filter(|r| r.0 == kind && r.1 == id).map(|r| r.2).sum::<u64>();
    assert_eq!(total("sub", "alice"), 3, "verified, cached, and the third: every accepted decision");
    assert_eq!(total("client_id", "web-app"), 3);
    let ip: Vec<_> = rows.iter().filter(|r| r.0 == "ip").collect();
    assert_eq!(ip.len(), 1);
    assert_eq!(ip[0].1, "203.0.113.0/24", "as logging.client_ip renders it");
    assert_eq!(ip[0].3, json!({"bad_signature": 3, "missing_token": 1}));
    assert_eq!((ip[0].4, ip[0].5), (3, 0), "three refused credentials; a missing one is not");
    assert_eq!(gate.state().usage_entries(), 0);
}

#[test]
fn a_deferred_usage_flush_stops_within_its_background_time() {
    let gate = gate(&doc_with("observability", json!({"flush_secs": 20})));
    let io = FakeIo::new();
    io.usage_on.set(true);
    io.usage_down.set(true);
    let t = ed_token(json!({}));
    let accepted = |io: &FakeIo| {
        let mut f = forwarded(decide(&gate, io, &req("GET", "/api/x").bearer(&t)));
        gate.respond(io, &mut f, 200, OriginCookies::Each(vec![]), None, NOW);
    };
    accepted(&io);
    assert_eq!(run_flushes(&gate, &io), 1);
    // The retry would start 20 s after the first attempt: within 25 s, so one more; a third at
    // 40 s would not be.
    assert_eq!(io.events("usage_flush_failed").len(), 2);
    assert_eq!(gate.state().usage_entries(), 1, "the counts are kept for the next flush");
    // Nothing is left asked for: the next decision asks again.
    io.usage_down.set(false);
    accepted(&io);
    assert_eq!(run_flushes(&gate, &io), 1);
    assert_eq!(gate.state().usage_entries(), 0);
}

#[test]
fn a_failed_usage_flush_keeps_its_counts_and_revoked_keys_are_marked() {
    let gate = gate(&doc_with("observability", json!({"flush_secs": 5})));
    let io = FakeIo::with_pepper();
    io.usage_on.set(true);
    io.usage_down.set(true);
    let k = api_key(77);
    let rec = record_for(&k, 7);
    store_record(&io, &k, &rec);
    publish_revocations(&io, 1, vec![Target::ApiKey { key_id: rec.id.clone() }]);
    for _ in 0..2 {
        refused(decide(&gate, &io, &req("GET", "/partner/x").api_key(&k)), 401, "api_key_invalid", Www::Starts("ApiKey realm="));
        io.take_calls();
    }
    run_flushes(&gate, &io);
    // Tried at once, then (its counts back) every flush_secs, three times in all per task (5 s
    // apart: within the task's 25 s).
    assert_eq!(io.events("usage_flush_failed").len(), 3);
    assert!(io.events("usage_flush_failed").iter().all(|(l, _)| *l == Level::Warn));
    assert!(io.usage_sent.borrow().is_empty());
    io.usage_down.set(false);
    io.advance_secs(5);
    refused(decide(&gate, &io, &req("GET", "/partner/x").api_key(&k)), 401, "api_key_invalid", Www::Starts("ApiKey realm="));
    assert_eq!(run_flushes(&gate, &io), 1);
    let rows = usage_rows(&io);
    let key: Vec<_> = rows.iter().filter(|r| r.0 == "key_id").collect();
    assert_eq!(key.len(), 1, "{rows:?}");
    assert_eq!(
        (key[0].1.as_str(), &key[0].3, key[0].4, key[0].5),
        (rec.id.as_str(), &json!({"api_key_invalid": 3}), 3, 3),
        "the two kept through the failed flush, and the third"
    );
}

fn gate_with_logging(logging: Value) -> Gate {
    gate(&doc_with("logging", logging))
}

// ---------------------------------------------------------------------------------------------
// Sender-constrained tokens: DPoP (RFC 9449) and certificate-bound (RFC 8705)
// ---------------------------------------------------------------------------------------------

const DPOP_ALGS: &str = "algs=\"ES256 ES384 PS256 RS256 EdDSA\"";

fn jkt_of(k: &TestKey) -> String {
    edgeward::core::jwk::thumbprint(&edgeward::core::jwk::parse_public_jwk(&k.public_jwk()).unwrap())
}

#[allow(clippy::too_many_arguments)]
/// A DPoP proof (EdDSA) by `k` for `method` and `htu`, bound to `token`, at `iat`; `header` and
/// `claims` patch the standard ones (`null` removes).
fn dpop_proof(k: &TestKey, method: &str, htu: &str, token: &str, iat: i64, jti: &str, header: Value, claims: Value) -> String {
    use sha2::Digest;
    let h = with(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.public_jwk()}), header);
    let ath = b64(&sha2::Sha256::digest(token.as_bytes()));
    let c = with(json!({"htm": method, "htu": htu, "iat": iat, "jti": jti, "ath": ath}), claims);
    k.sign_raw(&h.to_string(), &c.to_string())
}

fn dpop_req(path: &str, token: &str, proof: &str) -> Req {
    req("GET", path).header("Authorization", &format!("DPoP {token}")).header("DPoP", proof)
}

#[test]
fn dpop_bound_token_with_its_proof() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let k = key_seeded(EdDSA, 21);
    let t = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}}));
    let p = dpop_proof(&k, "GET", &format!("{EDGE}/api/orders"), &t, NOW, "p-1", json!({}), json!({}));
    let f = forwarded(decide(&gate, &io, &dpop_req("/api/orders?page=2", &t, &p)));
    assert_eq!(f.log.credential, Some(CredentialSource::Dpop));
    assert_eq!(hdr(&f.plan.headers, "x-edgeward-cnf"), Some("dpop"));
    assert_eq!(hdr(&f.plan.headers, "x-edgeward-jkt"), Some(jkt_of(&k).as_str()));
    for h in ["authorization", "dpop"] {
        assert_eq!(hdr(&f.plan.headers, h), None, "{h} never reaches the origin");
    }
    // The same proof again: a replay.
    let rf =
        refused(decide(&gate, &io, &dpop_req("/api/orders", &t, &p)), 401, "dpop_replay", Www::Starts("DPoP realm=\"edgeward\", error=\"invalid_dpop_proof\""));
    assert!(hdr(&rf.response.headers, "www-authenticate").is_some_and(|w| w.ends_with(DPOP_ALGS)));
    // A fresh proof, for the same token (a cache hit): accepted; the proof is checked every time.
    let p2 = dpop_proof(&k, "GET", &format!("{EDGE}/api/orders"), &t, NOW, "p-2", json!({}), json!({}));
    assert_eq!(forwarded(decide(&gate, &io, &dpop_req("/api/orders", &t, &p2))).log.token_cache, Some("hit"));
    // htu is compared canonically (the route decision's spelling), without query or fragment;
    // the scheme and host without case and default port.
    let p3 = dpop_proof(&k, "GET", "HTTPS://Edge.Example:443/api/./orders%7e?x=1#f", &t, NOW, "p-3", json!({}), json!({}));
    forwarded(decide(&gate, &io, &dpop_req("/api/orders~", &t, &p3)));
    // An expired token with DPoP is challenged in the DPoP scheme.
    let old = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}, "iat": NOW - 1000, "exp": NOW - 500}));
    let p4 = dpop_proof(&k, "GET", &format!("{EDGE}/api/orders"), &old, NOW, "p-4", json!({}), json!({}));
    refused(decide(&gate, &io, &dpop_req("/api/orders", &old, &p4)), 401, "expired", Www::Starts("DPoP realm=\"edgeward\", error=\"invalid_token\""));
}

#[test]
fn dpop_each_failed_check_has_its_code() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let k = key_seeded(EdDSA, 22);
    let t = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}}));
    let htu = format!("{EDGE}/api/x");
    let mut n = 0;
    let mut proof = |header: Value, claims: Value| {
        n += 1;
        dpop_proof(&k, "GET", &htu, &t, NOW, &format!("j-{n}"), header, claims)
    };
    let mut private = k.public_jwk();
    private["d"] = json!(b64(&[7u8; 32]));
    let other = key_seeded(EdDSA, 23);
    let wrong_sig = {
        let good = proof(json!({}), json!({}));
        let (h, c, _) = segments(&good);
        format!("{h}.{c}.{}", b64(&other.signature(format!("{h}.{c}").as_bytes())))
    };
    let cases: Vec<(&str, Vec<String>, &'static str)> = vec![
        ("no proof", vec![], "dpop_proof_missing"),
        ("two proofs", vec![proof(json!({}), json!({})), proof(json!({}), json!({}))], "dpop_proof_multiple"),
        ("not a JWT", vec!["abc.def".into()], "dpop_proof_malformed"),
        ("typ JWT", vec![proof(json!({"typ": "JWT"}), json!({}))], "dpop_typ"),
        ("no typ", vec![proof(json!({"typ": null}), json!({}))], "dpop_typ"),
        ("alg none", vec![proof(json!({"alg": "none"}), json!({}))], "dpop_alg"),
        ("alg not allowed", vec![proof(json!({"alg": "ES512"}), json!({}))], "dpop_alg"),
        ("no jwk", vec![proof(json!({"jwk": null}), json!({}))], "dpop_jwk"),
        ("private jwk", vec![proof(json!({"jwk": private}), json!({}))], "dpop_jwk"),
        ("symmetric jwk", vec![proof(json!({"jwk": {"kty": "oct", "k": b64(&[1u8; 32])}}), json!({}))], "dpop_jwk"),
        ("jwk of another type than alg", vec![proof(json!({"jwk": key_seeded(ES256, 1).public_jwk()}), json!({}))], "dpop_jwk"),
        ("another key signed it", vec![wrong_sig], "dpop_signature"),
        ("htm", vec![proof(json!({}), json!({"htm": "POST"}))], "dpop_htm"),
        ("htu path", vec![proof(json!({}), json!({"htu": format!("{EDGE}/api/y")}))], "dpop_htu"),
        ("htu host", vec![proof(json!({}), json!({"htu": "https://evil.example/api/x"}))], "dpop_htu"),
        ("no htu", vec![proof(json!({}), json!({"htu": null}))], "dpop_htu"),
        ("iat old", vec![proof(json!({}), json!({"iat": NOW - 61}))], "dpop_iat"),
        ("iat future", vec![proof(json!({}), json!({"iat": NOW + 61}))], "dpop_iat"),
        ("no jti", vec![proof(json!({}), json!({"jti": null}))], "dpop_jti"),
        ("ath of another token", vec![proof(json!({}), json!({"ath": b64(&[0u8; 32])}))], "dpop_ath"),
        ("no ath", vec![proof(json!({}), json!({"ath": null}))], "dpop_ath"),
    ];
    for (what, proofs, code) in cases {
        let mut r = req("GET", "/api/x").header("Authorization", &format!("DPoP {t}"));
        for p in &proofs {
            r = r.header("DPoP", p);
        }
        let rf = refused(decide(&gate, &io, &r), 401, code, Www::Starts("DPoP realm=\"edgeward\", error=\"invalid_dpop_proof\""));
        assert!(rf.log.detail.is_some(), "{what}");
    }
    // The token bound to another key than the proof's.
    let t_other = ed_token(json!({"cnf": {"jkt": jkt_of(&other)}}));
    let p = dpop_proof(&k, "GET", &htu, &t_other, NOW, "j-x", json!({}), json!({}));
    refused(decide(&gate, &io, &dpop_req("/api/x", &t_other, &p)), 401, "dpop_key_mismatch", Www::Starts("DPoP realm="));
    // An unbound token sent with a proof: nothing binds them.
    let plain = ed_token(json!({}));
    let p = dpop_proof(&k, "GET", &htu, &plain, NOW, "j-y", json!({}), json!({}));
    refused(decide(&gate, &io, &dpop_req("/api/x", &plain, &p)), 401, "dpop_key_mismatch", Www::Starts("DPoP realm="));
}

#[test]
fn dpop_route_modes_and_downgrade() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let k = key_seeded(EdDSA, 24);
    let bound = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}}));
    // A bound token as a bearer token: no downgrade, anywhere.
    for path in ["/api/x", "/no-dpop/x", "/dpop-only/x"] {
        refused(decide(&gate, &io, &req("GET", path).bearer(&bound)), 401, "dpop_bound_token_as_bearer", Www::InvalidToken);
    }
    // `required`: a plain bearer token is refused with the DPoP challenge.
    let plain = ed_token(json!({}));
    refused(decide(&gate, &io, &req("GET", "/dpop-only/x").bearer(&plain)), 401, "dpop_required", Www::Is(&format!("DPoP realm=\"edgeward\", {DPOP_ALGS}")));
    let p = dpop_proof(&k, "GET", &format!("{EDGE}/dpop-only/x"), &bound, NOW, "m-1", json!({}), json!({}));
    forwarded(decide(&gate, &io, &dpop_req("/dpop-only/x", &bound, &p)));
    // `allowed` (default): plain bearer tokens pass as before.
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&plain))).authenticated);
    // `disabled`: the DPoP scheme is refused.
    let p = dpop_proof(&k, "GET", &format!("{EDGE}/no-dpop/x"), &bound, NOW, "m-2", json!({}), json!({}));
    refused(decide(&gate, &io, &dpop_req("/no-dpop/x", &bound, &p)), 401, "dpop_not_accepted", Www::Starts("DPoP realm=\"edgeward\""));
    // A token bound by a method the gate does not enforce is refused, not taken as a bearer token.
    let other_cnf = ed_token(json!({"cnf": {"jwk": {"kty": "EC"}}}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&other_cnf)), 401, "cnf_unsupported", Www::InvalidToken);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"cnf": "x"})))), 401, "malformed_claims", Www::InvalidToken);
}

#[test]
fn dpop_server_nonces() {
    let gate = gate(&doc_with("dpop", json!({"nonce": true})));
    let io = FakeIo::new();
    let k = key_seeded(EdDSA, 25);
    let t = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}}));
    let htu = format!("{EDGE}/api/x");
    // Without the secret the gate cannot make nonces: closed.
    let p = dpop_proof(&k, "GET", &htu, &t, NOW, "n-0", json!({}), json!({}));
    refused(decide(&gate, &io, &dpop_req("/api/x", &t, &p)), 500, "config_invalid", Www::Absent);
    io.set_secret("EDGEWARD_DPOP_NONCE_SECRET", "nonce-secret-0123456789abcdef0123456789");
    // No nonce: the challenge carries one.
    let p = dpop_proof(&k, "GET", &htu, &t, NOW, "n-1", json!({}), json!({}));
    let rf =
        refused(decide(&gate, &io, &dpop_req("/api/x", &t, &p)), 401, "dpop_nonce_required", Www::Starts("DPoP realm=\"edgeward\", error=\"use_dpop_nonce\""));
    let nonce = hdr(&rf.response.headers, "dpop-nonce").expect("a DPoP-Nonce header").to_string();
    let p = dpop_proof(&k, "GET", &htu, &t, NOW, "n-2", json!({}), json!({"nonce": nonce}));
    forwarded(decide(&gate, &io, &dpop_req("/api/x", &t, &p)));
    // A forged or stale nonce: challenged again.
    let p = dpop_proof(&k, "GET", &htu, &t, NOW, "n-3", json!({}), json!({"nonce": b64(&[0u8; 24])}));
    refused(decide(&gate, &io, &dpop_req("/api/x", &t, &p)), 401, "dpop_nonce_required", Www::Starts("DPoP realm="));
    io.advance_secs(601);
    let t2 = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}, "iat": io.now_secs() - 10, "exp": io.now_secs() + 600}));
    let p = dpop_proof(&k, "GET", &htu, &t2, io.now_secs(), "n-4", json!({}), json!({"nonce": nonce}));
    refused(decide(&gate, &io, &dpop_req("/api/x", &t2, &p)), 401, "dpop_nonce_required", Www::Starts("DPoP realm="));
}

#[test]
fn dpop_exact_replay_across_isolates() {
    let d = doc_with("dpop", json!({"replay": "exact"}));
    let (a, b) = (gate(&d), gate(&d));
    let io = FakeIo::new();
    let k = key_seeded(EdDSA, 26);
    let t = ed_token(json!({"cnf": {"jkt": jkt_of(&k)}}));
    let p = dpop_proof(&k, "GET", &format!("{EDGE}/api/x"), &t, NOW, "x-1", json!({}), json!({}));
    forwarded(decide(&a, &io, &dpop_req("/api/x", &t, &p)));
    assert!(io.take_calls().iter().any(|c| c.starts_with("claim_once ")));
    // Another isolate (its own replay cache, empty): the Durable Object has seen it.
    refused(decide(&b, &io, &dpop_req("/api/x", &t, &p)), 401, "dpop_replay", Www::Starts("DPoP realm="));
    // Unreachable: closed.
    io.replay_down.set(true);
    let p2 = dpop_proof(&k, "GET", &format!("{EDGE}/api/x"), &t, NOW, "x-2", json!({}), json!({}));
    refused(decide(&b, &io, &dpop_req("/api/x", &t, &p2)), 503, "dpop_replay_unavailable", Www::Absent);
    // The default (isolate) never asks.
    let iso = gate(&doc());
    let p3 = dpop_proof(&k, "GET", &format!("{EDGE}/api/x"), &t, NOW, "x-3", json!({}), json!({}));
    io.take_calls();
    forwarded(decide(&iso, &io, &dpop_req("/api/x", &t, &p3)));
    assert!(!io.take_calls().iter().any(|c| c.starts_with("claim_once ")));
}

#[test]
fn certificate_bound_tokens() {
    use sha2::Digest;
    let gate = gate(&doc());
    let io = FakeIo::new();
    let cert_der = b"a client certificate";
    let fp = sha2::Sha256::digest(cert_der);
    let t = ed_token(json!({"cnf": {"x5t#S256": b64(&fp)}}));
    // Without the certificate it is bound to (none, or another one): refused.
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 401, "certificate_mismatch", Www::InvalidToken);
    let mut other = req("GET", "/api/x").bearer(&t);
    other.cert = Some(hex::encode(sha2::Sha256::digest(b"another certificate")));
    refused(decide(&gate, &io, &other), 401, "certificate_mismatch", Www::InvalidToken);
    // A header claiming a certificate is not a certificate.
    let spoof = req("GET", "/api/x").bearer(&t).header("cf-client-cert-sha256", &hex::encode(fp));
    refused(decide(&gate, &io, &spoof), 401, "certificate_mismatch", Www::InvalidToken);
    let mut ok = req("GET", "/api/x").bearer(&t);
    ok.cert = Some(hex::encode(fp));
    let f = forwarded(decide(&gate, &io, &ok));
    assert_eq!(hdr(&f.plan.headers, "x-edgeward-cnf"), Some("mtls"));
    assert_eq!(hdr(&f.plan.headers, "x-edgeward-x5t-s256"), Some(b64(&fp).as_str()));
}

// ---------------------------------------------------------------------------------------------
// Opaque tokens (RFC 7662 introspection)
// ---------------------------------------------------------------------------------------------

const OPAQUE_ISS: &str = "https://as.example";
const INTROSPECT: &str = "https://as.example/oauth2/introspect";

fn opaque_doc(auth: &str) -> Value {
    json!({
        "issuers": [
            {"issuer": OPAQUE_ISS, "audiences": [AUD], "introspection": {"endpoint": INTROSPECT, "client_id": "edge gate", "client_secret": "INTROSPECTION_SECRET", "auth": auth, "cache_ttl_secs": 30, "negative_cache_ttl_secs": 5}},
            {"issuer": "https://other-as.example", "token_prefix": "oth_", "introspection": {"endpoint": "https://other-as.example/introspect", "client_id": "g", "client_secret": "INTROSPECTION_SECRET"}}
        ],
        "origin": ORIGIN,
        "forward_claims": {"x-user": "sub"},
        "routes": [{"path": "/admin/*", "scopes": ["admin"]}]
    })
}

fn active(io: &FakeIo, token: &str, claims: Value) {
    let answer = with(json!({"active": true, "sub": "opaque-user", "aud": AUD, "exp": NOW + 600, "iat": NOW - 5, "scope": "read"}), claims);
    io.introspection.borrow_mut().insert(token.into(), Ok((200, answer.to_string())));
}

#[test]
fn introspected_opaque_tokens() {
    let gate = gate(&opaque_doc("client_secret_basic"));
    let io = FakeIo::new();
    // Without the client secret: closed.
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_abc")), 500, "config_invalid", Www::Absent);
    io.set_secret("INTROSPECTION_SECRET", "s3cret:with/odd=chars");
    // Active: the answer's claims decide, and it is cached for cache_ttl_secs.
    active(&io, "op_abc", json!({}));
    let f = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer("op_abc")));
    assert_eq!(hdr(&f.plan.headers, "x-user"), Some("opaque-user"));
    assert_eq!((f.log.iss.as_deref(), f.log.token_cache), (Some(OPAQUE_ISS), Some("miss")));
    let (endpoint, form, auth) = io.introspected.borrow()[0].clone();
    assert_eq!(endpoint, INTROSPECT);
    assert_eq!(form, "token=op_abc&token_type_hint=access_token");
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "edge%20gate:s3cret%3Awith%2Fodd%3Dchars");
    assert_eq!(auth, Some(format!("Basic {basic}")));
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer("op_abc"))).log.token_cache, Some("hit"));
    assert_eq!(io.introspected.borrow().len(), 1, "cached");
    io.advance_secs(31);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer("op_abc")));
    assert_eq!(io.introspected.borrow().len(), 2, "cache_ttl_secs passed: asked again");
    // Scopes from the answer.
    refused(
        decide(&gate, &io, &req("GET", "/admin/x").bearer("op_abc")),
        403,
        "insufficient_scope",
        Www::Starts("Bearer realm=\"edgeward\", error=\"insufficient_scope\""),
    );
    // Inactive: refused and remembered for negative_cache_ttl_secs.
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_gone")), 401, "token_inactive", Www::InvalidToken);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_gone")), 401, "token_inactive", Www::InvalidToken);
    assert_eq!(io.introspected.borrow().iter().filter(|c| c.1.contains("op_gone")).count(), 1);
    // The answer's claims are checked like a signed token's.
    active(&io, "op_old", json!({"exp": io.now_secs() - 100}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_old")), 401, "expired", Www::InvalidToken);
    active(&io, "op_aud", json!({"aud": "someone-else"}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_aud")), 401, "audience_mismatch", Www::InvalidToken);
    active(&io, "op_iss", json!({"iss": "https://evil.example"}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_iss")), 401, "issuer_mismatch", Www::InvalidToken);
    // A DPoP-bound opaque token as a bearer token: no downgrade.
    active(&io, "op_bound", json!({"cnf": {"jkt": "abc"}}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_bound")), 401, "dpop_bound_token_as_bearer", Www::InvalidToken);
    // The endpoint failing, erring or answering nonsense: 503, never an accept.
    io.introspection.borrow_mut().insert("op_down".into(), Err("timed out".into()));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_down")), 503, "introspection_unavailable", Www::Absent);
    io.introspection.borrow_mut().insert("op_500".into(), Ok((500, "oops".into())));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_500")), 503, "introspection_unavailable", Www::Absent);
    io.introspection.borrow_mut().insert("op_weird".into(), Ok((200, r#"{"active":"yes"}"#.into())));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_weird")), 503, "introspection_unavailable", Www::Absent);
    // With several introspecting issuers, token_prefix picks one.
    io.introspection.borrow_mut().insert("oth_1".into(), Ok((200, json!({"active": true, "sub": "o", "exp": io.now_secs() + 60}).to_string())));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer("oth_1")));
    assert_eq!(io.introspected.borrow().last().unwrap().0, "https://other-as.example/introspect");
    // client_secret_post: the credentials in the form, no Authorization.
    let post = Gate::new(policy(&opaque_doc("client_secret_post")));
    active(&io, "op_post", json!({}));
    forwarded(decide(&post, &io, &req("GET", "/api/x").bearer("op_post")));
    let (_, form, auth) = io.introspected.borrow().last().unwrap().clone();
    assert_eq!((form.as_str(), auth), ("token=op_post&token_type_hint=access_token&client_id=edge%20gate&client_secret=s3cret%3Awith%2Fodd%3Dchars", None));
    assert!(!io.logs.borrow().iter().any(|(_, e)| e.to_string().contains("s3cret")), "the secret is never logged");
}

// ---------------------------------------------------------------------------------------------
// Issuers found by discovery
// ---------------------------------------------------------------------------------------------

const DISC_ISS: &str = "https://login.example/tenant-1";

fn discovery_doc() -> Value {
    json!({
        "issuers": [{"issuer": DISC_ISS, "audiences": [AUD], "algorithms": ["ES256"], "discovery": true}],
        "origin": ORIGIN,
    })
}

fn disc_token() -> String {
    key_seeded(ES256, 31).sign(Some("d-1"), &claims_of(DISC_ISS, json!({})))
}

fn serve_metadata(io: &FakeIo, url: &str, issuer: &str, jwks_uri: &str) {
    io.serve_jwks(
        url,
        JwksAnswer::Doc { status: 200, cache_control: Some("max-age=900".into()), body: json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string() },
    );
}

#[test]
fn discovery_finds_the_keys_once_and_a_fresh_isolate_reads_its_snapshot() {
    let d = discovery_doc();
    let gate = Gate::new(policy(&d));
    let io = FakeIo::new();
    let oidc = format!("{DISC_ISS}/.well-known/openid-configuration");
    serve_metadata(&io, &oidc, DISC_ISS, "https://keys.login.example/t1/jwks");
    io.serve_jwks("https://keys.login.example/t1/jwks", jwks_doc(vec![key_seeded(ES256, 31).jwk("d-1", json!({"alg": "ES256"}))]));
    let f = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&disc_token())));
    assert_eq!(f.log.jwks_fetches, 2, "the metadata, then the keys");
    let calls = io.take_calls();
    assert!(calls.starts_with(&[format!("kv_read {}", edgeward::core::pipeline::discovery_snapshot_key(DISC_ISS)), format!("fetch_jwks {oidc}")]), "{calls:?}");
    assert!(calls.contains(&"fetch_jwks https://keys.login.example/t1/jwks".to_string()));
    // Fresh: the next token fetches nothing.
    let t2 = key_seeded(ES256, 31).sign(Some("d-1"), &claims_of(DISC_ISS, json!({"sub": "other"})));
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t2))).log.jwks_fetches, 0);
    // The metadata and keys are snapshotted; a fresh isolate reads them and fetches nothing.
    for t in io.take_deferred() {
        run_ready(gate.run_deferred(&io, t)).unwrap();
    }
    let fresh = Gate::new(policy(&d));
    io.take_calls();
    let f = forwarded(decide(&fresh, &io, &req("GET", "/api/x").bearer(&disc_token())));
    assert_eq!(f.log.jwks_fetches, 0, "{:?}", io.take_calls());
    assert!(io.events("discovery_snapshot_restore").iter().any(|(_, e)| e["fresh"] == true));
}

#[test]
fn discovery_refuses_metadata_for_another_issuer_and_falls_back_to_rfc8414() {
    let d = discovery_doc();
    let gate = Gate::new(policy(&d));
    let io = FakeIo::new();
    // Mix-up: the metadata names another issuer (its keys would be someone else's).
    serve_metadata(&io, &format!("{DISC_ISS}/.well-known/openid-configuration"), "https://login.example/tenant-2", "https://keys.login.example/t2/jwks");
    io.serve_jwks("https://keys.login.example/t2/jwks", jwks_doc(vec![key_seeded(ES256, 31).jwk("d-1", json!({"alg": "ES256"}))]));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&disc_token())), 503, "jwks_unavailable", Www::Absent);
    assert!(io.events("discovery_failed")[0].1["error"].as_str().is_some_and(|e| e.contains("another issuer")));
    assert!(!io.take_calls().contains(&"fetch_jwks https://keys.login.example/t2/jwks".to_string()), "its keys are never fetched");
    // No OpenID document (404): the RFC 8414 one, its well-known name before the issuer's path.
    let g2 = Gate::new(policy(&d));
    let io2 = FakeIo::new();
    io2.serve_jwks(&format!("{DISC_ISS}/.well-known/openid-configuration"), JwksAnswer::Doc { status: 404, cache_control: None, body: String::new() });
    serve_metadata(&io2, "https://login.example/.well-known/oauth-authorization-server/tenant-1", DISC_ISS, "https://keys.login.example/t1/jwks");
    io2.serve_jwks("https://keys.login.example/t1/jwks", jwks_doc(vec![key_seeded(ES256, 31).jwk("d-1", json!({"alg": "ES256"}))]));
    forwarded(decide(&g2, &io2, &req("GET", "/api/x").bearer(&disc_token())));
    // An insecure jwks_uri in the metadata is refused like a configured one.
    let g3 = Gate::new(policy(&d));
    let io3 = FakeIo::new();
    serve_metadata(&io3, &format!("{DISC_ISS}/.well-known/openid-configuration"), DISC_ISS, "http://keys.login.example/jwks");
    refused(decide(&g3, &io3, &req("GET", "/api/x").bearer(&disc_token())), 503, "jwks_unavailable", Www::Absent);
    // Configuration: discovery needs the issuer, and takes jwks_uri from it.
    for (issuer, what) in [
        (json!({"issuer": null, "algorithms": ["ES256"], "discovery": true}), "issuers[0].discovery"),
        (json!({"issuer": DISC_ISS, "jwks_uri": "https://k.example/jwks", "algorithms": ["ES256"], "discovery": true}), "issuers[0].discovery"),
        (json!({"issuer": "http://login.example", "algorithms": ["ES256"], "discovery": true}), "issuers[0].issuer"),
    ] {
        let e = Policy::from_json(&json!({"issuers": [issuer], "origin": ORIGIN}).to_string()).unwrap_err();
        assert_eq!(e.field, what);
    }
}

#[test]
fn discovery_names_the_introspection_endpoint_when_the_configuration_does_not() {
    let d = json!({
        "issuers": [{"issuer": DISC_ISS, "audiences": [AUD], "discovery": true,
                     "introspection": {"client_id": "gate", "client_secret": "INTROSPECTION_SECRET"}}],
        "origin": ORIGIN,
    });
    let oidc = format!("{DISC_ISS}/.well-known/openid-configuration");
    let endpoint = "https://login.example/tenant-1/introspect";
    let serve = |io: &FakeIo, doc: Value| {
        io.serve_jwks(&oidc, JwksAnswer::Doc { status: 200, cache_control: Some("max-age=900".into()), body: doc.to_string() });
    };
    let gate = Gate::new(policy(&d));
    let io = FakeIo::new();
    io.set_secret("INTROSPECTION_SECRET", "s");
    // The metadata lacks the endpoint: 503, never an accept; the token is not sent anywhere.
    serve(&io, json!({"issuer": DISC_ISS, "jwks_uri": "https://keys.login.example/jwks"}));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("op_1")), 503, "introspection_unavailable", Www::Absent);
    assert!(io.introspected.borrow().is_empty());
    assert!(io.events("discovery_failed")[0].1["error"].as_str().is_some_and(|e| e.contains("no introspection_endpoint")));
    // An insecure one is refused like a configured one.
    let g2 = Gate::new(policy(&d));
    serve(&io, json!({"issuer": DISC_ISS, "jwks_uri": "https://keys.login.example/jwks", "introspection_endpoint": "http://login.example/introspect"}));
    refused(decide(&g2, &io, &req("GET", "/api/x").bearer("op_1")), 503, "introspection_unavailable", Www::Absent);
    assert!(io.introspected.borrow().is_empty());
    // Named by the metadata: the token goes there, once per cache_ttl_secs as with a configured one.
    let g3 = Gate::new(policy(&d));
    serve(&io, json!({"issuer": DISC_ISS, "jwks_uri": "https://keys.login.example/jwks", "introspection_endpoint": endpoint}));
    active(&io, "op_1", json!({"iss": DISC_ISS}));
    forwarded(decide(&g3, &io, &req("GET", "/api/x").bearer("op_1")));
    forwarded(decide(&g3, &io, &req("GET", "/api/x").bearer("op_1")));
    assert_eq!(io.introspected.borrow().iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), [endpoint]);
    // Its snapshot keeps the endpoint: a fresh isolate introspects without fetching the metadata.
    for t in io.take_deferred() {
        run_ready(g3.run_deferred(&io, t)).unwrap();
    }
    let g4 = Gate::new(policy(&d));
    io.take_calls();
    active(&io, "op_2", json!({"iss": DISC_ISS}));
    forwarded(decide(&g4, &io, &req("GET", "/api/x").bearer("op_2")));
    assert!(!io.take_calls().contains(&format!("fetch_jwks {oidc}")), "read from the snapshot");
    assert_eq!(io.introspected.borrow().last().map(|c| c.0.clone()), Some(endpoint.to_string()));
    // An earlier gate's snapshot (no endpoint) is refetched, not trusted to lack it.
    let key = edgeward::core::pipeline::discovery_snapshot_key(DISC_ISS);
    let old = json!({"metadata": {"jwks_uri": "https://keys.login.example/jwks"}, "fetched_at": io.now_secs(), "ttl_secs": 900});
    run_ready(io.kv_write(&key, old.to_string().as_bytes())).unwrap().unwrap();
    let g5 = Gate::new(policy(&d));
    io.take_calls();
    active(&io, "op_3", json!({"iss": DISC_ISS}));
    forwarded(decide(&g5, &io, &req("GET", "/api/x").bearer("op_3")));
    assert!(io.take_calls().contains(&format!("fetch_jwks {oidc}")), "refetched");
    // Configuration: without discovery, the endpoint is required.
    let e =
        Policy::from_json(&json!({"issuers": [{"issuer": DISC_ISS, "introspection": {"client_id": "g", "client_secret": "S"}}], "origin": ORIGIN}).to_string())
            .unwrap_err();
    assert_eq!(e.field, "issuers[0].introspection.endpoint");
}

// ---------------------------------------------------------------------------------------------
// The block list
// ---------------------------------------------------------------------------------------------

fn publish_blocks(io: &FakeIo, version: u64, blocks: &[(&str, i64)]) {
    let list = json!({"version": version, "blocks": blocks.iter().map(|(t, e)| json!({"target": t, "expires_at": e})).collect::<Vec<_>>()});
    io.kv.borrow_mut().insert(edgeward::core::ipblock::BLOCKS_KEY.into(), list.to_string().into_bytes());
}

#[test]
fn blocked_addresses_are_refused_before_anything_else_until_their_block_ends() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_blocks(&io, 1, &[("198.51.100.7", NOW + 60), ("192.0.2.0/24", NOW + 600), ("2001:db8:1::/48", NOW + 600)]);
    let token = es_token(1, "k1", json!({}));
    // Refused with a credential it never reads: no key fetch, no KV read but the list's.
    let r = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&token).client_ip("198.51.100.7")), 403, "ip_blocked", Www::Absent);
    assert_eq!((r.log.decision, r.log.credential), ("reject", None));
    assert_eq!(io.take_calls(), [BLOCKS_READ]);
    // Even on a public route, a preflight or the admin API; in a blocked prefix, IPv4 and IPv6.
    for r in [
        req("GET", "/public/x").client_ip("192.0.2.200"),
        req("OPTIONS", "/api/x").client_ip("192.0.2.1").header("Origin", "https://app.example").header("Access-Control-Request-Method", "GET"),
        req("GET", "/__edgeward/admin/revocations").client_ip("2001:db8:1:abcd::9"),
    ] {
        refused(decide(&gate, &io, &r), 403, "ip_blocked", Www::Absent);
    }
    assert!(io.take_calls().is_empty(), "the list was read once");
    // Another address is not.
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.8")));
    // A block ends at its expiry.
    io.advance_secs(60);
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.7")));
    // After refresh_secs (10) the list is re-read in the background: a new block takes effect then.
    publish_blocks(&io, 2, &[("198.51.100.9", NOW + 3600)]);
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.9")));
    let tasks = io.take_deferred();
    assert!(tasks.iter().any(|t| t.name() == "refresh_blocks"), "{tasks:?}");
    for t in tasks {
        run_ready(gate.run_deferred(&io, t)).unwrap();
    }
    refused(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.9")), 403, "ip_blocked", Www::Absent);
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("192.0.2.200")));
    // An older list (a KV cache behind) does not replace a newer one.
    publish_blocks(&io, 1, &[]);
    io.advance_secs(10);
    decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.1"));
    for t in io.take_deferred() {
        run_ready(gate.run_deferred(&io, t)).unwrap();
    }
    refused(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.9")), 403, "ip_blocked", Www::Absent);
    // Switched off: not read, not enforced.
    let off = Gate::new(policy(&doc_with("ip_blocks", json!({"enabled": false}))));
    io.take_calls();
    forwarded(decide(&off, &io, &req("GET", "/public/x").client_ip("198.51.100.9")));
    assert!(io.take_calls().is_empty());
}

#[test]
fn requests_arriving_during_the_first_block_list_read_read_it_themselves() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_blocks(&io, 1, &[("198.51.100.7", NOW + 60)]);
    // The isolate's first read is slow; a second request meanwhile does not pass unchecked (nor
    // wait on the first's read): it reads the list too.
    *io.blocked.borrow_mut() = Some(edgeward::core::ipblock::BLOCKS_KEY.to_string());
    let (ra, rb) = (req("GET", "/public/a").client_ip("198.51.100.7"), req("GET", "/public/b").client_ip("198.51.100.7"));
    let (ia, ib) = (ra.incoming(io.now_ms()), rb.incoming(io.now_ms()));
    let mut cx = Context::from_waker(Waker::noop());
    let mut a = std::pin::pin!(gate.decide(&io, &ia));
    let mut b = std::pin::pin!(gate.decide(&io, &ib));
    assert!(a.as_mut().poll(&mut cx).is_pending());
    assert!(b.as_mut().poll(&mut cx).is_pending(), "the second request reads the list too");
    *io.blocked.borrow_mut() = None;
    for f in [a.as_mut().poll(&mut cx), b.as_mut().poll(&mut cx)] {
        let Poll::Ready(Outcome::Refuse(r)) = f else { panic!("both refused") };
        assert_eq!(r.log.reason, Some("ip_blocked"));
    }
    assert_eq!(io.take_calls(), [BLOCKS_READ, BLOCKS_READ]);
}

#[test]
fn the_block_list_fails_open_and_matches_hashed_addresses_in_hashed_mode() {
    // KV failing: requests go on (to the checks every request gets), and it is logged.
    let gate = gate(&doc());
    let io = FakeIo::new();
    io.kv_state.set(Kv::Failing);
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.7")));
    assert!(io.events("ip_blocks_read_failed")[0].1["error"].as_str().is_some_and(|e| e.contains("KV is down")));
    // Retried at most once a second while it fails, then read.
    io.take_calls();
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.7")));
    assert!(io.take_calls().is_empty());
    io.kv_state.set(Kv::Bound);
    publish_blocks(&io, 1, &[("198.51.100.7", NOW + 60)]);
    io.advance_secs(1);
    refused(decide(&gate, &io, &req("GET", "/public/x").client_ip("198.51.100.7")), 403, "ip_blocked", Www::Absent);
    // Hashed logging: a block written as the record shows the client (an alert's subject).
    let hashed = Gate::new(policy(&doc_with("logging", json!({"client_ip": "hashed"}))));
    io.set_secret("EDGEWARD_LOG_IP_KEY", "a log key of some length");
    let seen = forwarded(decide(&hashed, &io, &req("GET", "/public/x").client_ip("192.0.2.33"))).log.client_ip.unwrap();
    publish_blocks(&io, 2, &[(seen.as_str(), NOW + 600)]);
    let fresh = Gate::new(policy(&doc_with("logging", json!({"client_ip": "hashed"}))));
    refused(decide(&fresh, &io, &req("GET", "/public/x").client_ip("192.0.2.33")), 403, "ip_blocked", Www::Absent);
    forwarded(decide(&fresh, &io, &req("GET", "/public/x").client_ip("192.0.2.34")));
    // The same hashed block means nothing to a gate that does not hash (it cannot tell).
    forwarded(decide(&Gate::new(policy(&doc())), &io, &req("GET", "/public/x").client_ip("192.0.2.33")));
    // Configuration.
    assert_eq!(Policy::from_json(&doc_with("ip_blocks", json!({"refresh_secs": 0})).to_string()).unwrap_err().field, "ip_blocks.refresh_secs");
    let e = Policy::from_json(&doc_with("ip_blocks", json!({"ttl": 3})).to_string()).unwrap_err();
    assert!(e.field == "ip_blocks" && e.message.contains("ttl"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// WebSockets
// ---------------------------------------------------------------------------------------------

/// A browser's upgrade request for `path`.
fn upgrade(path: &str) -> Req {
    req("GET", path)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Extensions", "permessage-deflate")
}

fn watch(gate: &Gate, io: &FakeIo, f: &Forward<'_>) -> SocketCheck {
    run_ready(gate.watch_socket(io, f.socket.as_ref().expect("a WebSocket forward"), io.now_ms())).unwrap()
}

#[test]
fn websocket_upgrades_only_where_allowed() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    // A route without `websocket`: refused before any credential is looked at, never forwarded.
    refused(decide(&gate, &io, &upgrade("/api/chat").bearer(&t)), 400, "websocket_not_allowed", Www::Absent);
    refused(decide(&gate, &io, &upgrade("/public/feed")), 400, "websocket_not_allowed", Www::Absent);
    // Any spelling of the token among others; not as a POST.
    refused(decide(&gate, &io, &req("GET", "/api/chat").header("upgrade", "foo, WebSocket").bearer(&t)), 400, "websocket_not_allowed", Www::Absent);
    let mut post = upgrade("/ws/chat").bearer(&t);
    post.method = "POST".into();
    refused(decide(&gate, &io, &post), 400, "websocket_not_allowed", Www::Absent);
    // Another upgrade (h2c) is not a WebSocket: its header is dropped as hop-by-hop.
    let f = forwarded(decide(&gate, &io, &req("GET", "/api/x").header("Upgrade", "h2c").bearer(&t)));
    assert_eq!(hdr(&f.plan.headers, "upgrade"), None);
    assert!(f.socket.is_none());
    // On a websocket route: checked like any request (no credential: 401), then forwarded as an
    // upgrade without the client's one-hop handshake headers.
    refused(decide(&gate, &io, &upgrade("/ws/chat")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    let f = forwarded(decide(&gate, &io, &upgrade("/ws/chat").bearer(&t)));
    assert!(f.socket.is_some() && f.authenticated);
    assert_eq!(hdr_all(&f.plan.headers, "upgrade"), vec!["websocket"]);
    for h in ["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "authorization", "connection"] {
        assert_eq!(hdr(&f.plan.headers, h), None, "{h}");
    }
    assert_eq!(f.plan.url, format!("{ORIGIN}/ws/chat"));
    // A plain request on a websocket route is a plain request.
    assert!(forwarded(decide(&gate, &io, &req("GET", "/ws/chat").bearer(&t))).socket.is_none());
    // A public websocket route needs no credential; its socket has nothing to watch.
    let f = forwarded(decide(&gate, &io, &upgrade("/ws-public/feed")));
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Open { recheck_at_ms: None });
    // Scopes, rate limits and the rest apply to the upgrade as to any request.
    refused(decide(&gate, &io, &upgrade("/ws/chat").bearer(&ed_token(json!({"exp": NOW - 100})))), 401, "expired", Www::InvalidToken);
}

#[test]
fn websocket_token_in_a_subprotocol() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let offer = |protocols: &str| upgrade("/ws/chat").header("Sec-WebSocket-Protocol", protocols);
    // The browser's way: the token as a subprotocol entry, removed before forwarding.
    let f = forwarded(decide(&gate, &io, &offer(&format!("chat.v2, edgeward.bearer.{t}"))));
    assert_eq!(f.log.credential, Some(CredentialSource::Subprotocol));
    assert_eq!(hdr_all(&f.plan.headers, "sec-websocket-protocol"), vec!["chat.v2"]);
    assert!(!format!("{:?}", f.plan).contains(&t), "the token never reaches the origin");
    // Alone, the origin would have nothing to select: refused.
    refused(decide(&gate, &io, &offer(&format!("edgeward.bearer.{t}"))), 400, "websocket_protocol_required", Www::Absent);
    // Two different tokens, or a header token with another subprotocol token: ambiguous.
    let other = ed_token(json!({"sub": "user-9"}));
    refused(decide(&gate, &io, &offer(&format!("chat, edgeward.bearer.{t}, edgeward.bearer.{other}"))), 401, "malformed_token", Www::InvalidToken);
    refused(decide(&gate, &io, &offer(&format!("chat, edgeward.bearer.{t}")).bearer(&other)), 401, "malformed_token", Www::InvalidToken);
    // A bad token there is refused like any bad token.
    refused(decide(&gate, &io, &offer(&format!("chat, edgeward.bearer.{}", flip_signature_byte(&t, 0, 1)))), 401, "bad_signature", Www::InvalidToken);
    // Not an upgrade: the entry is no credential, and it is still never forwarded.
    refused(
        decide(&gate, &io, &req("GET", "/ws/chat").header("Sec-WebSocket-Protocol", &format!("chat, edgeward.bearer.{t}"))),
        401,
        "missing_token",
        Www::Is("Bearer realm=\"edgeward\""),
    );
    let f = forwarded(decide(&gate, &io, &req("GET", "/public/x").header("Sec-WebSocket-Protocol", &format!("edgeward.bearer.{t}"))));
    assert_eq!(hdr(&f.plan.headers, "sec-websocket-protocol"), None);
    // API keys come through their header, as on any route.
    let k = api_key(41);
    let io_k = FakeIo::with_pepper();
    store_record(&io_k, &k, &record_for(&k, 41));
    let f = forwarded(decide(&gate, &io_k, &upgrade("/ws-keys/feed").api_key(&k)));
    assert!(f.socket.is_some());
    assert_eq!(hdr(&f.plan.headers, "x-api-key"), None);
}

#[test]
fn websocket_with_the_token_cookie_needs_an_allowed_origin() {
    let d = doc_with("csrf", json!({"allowed_origins": ["https://app.example"]}));
    let gate = gate(&d);
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let cookie = format!("__Host-session={t}");
    // Cross-site WebSocket hijacking: a page elsewhere opens a socket and the browser sends the
    // cookie (CORS does not apply to upgrades).
    for origin in [Some("https://evil.example"), None, Some("null")] {
        let mut r = upgrade("/ws/chat").header("Cookie", &cookie);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        refused(decide(&gate, &io, &r), 403, "csrf_rejected", Www::Absent);
    }
    for origin in [EDGE, "https://app.example"] {
        let f = forwarded(decide(&gate, &io, &upgrade("/ws/chat").header("Cookie", &cookie).header("Origin", origin)));
        assert!(f.socket.is_some(), "{origin}");
        assert_eq!(hdr(&f.plan.headers, "cookie"), None, "the token cookie never reaches the origin");
    }
    // A header token from another origin is not ambient authority: not refused.
    assert!(forwarded(decide(&gate, &io, &upgrade("/ws/chat").bearer(&t).header("Origin", "https://evil.example"))).socket.is_some());
}

#[test]
fn websocket_ends_at_exp_and_on_revocation() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_revocations(&io, 1, vec![]);
    let t = ed_token(json!({"jti": "sock-1", "exp": NOW + 25}));
    let f = forwarded(decide(&gate, &io, &upgrade("/ws/chat").bearer(&t)));
    io.take_calls();
    // Next look: when the edge copy of the revocation list goes stale (refresh_secs 10), not
    // later; at `exp` at the latest.
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Open { recheck_at_ms: Some((NOW + 10) * 1000) });
    assert!(io.take_calls().is_empty(), "a fresh copy is not re-read");
    io.advance_secs(10);
    // Stale: re-read here (a socket has no later request to refresh it for it), not deferred.
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Open { recheck_at_ms: Some((NOW + 20) * 1000) });
    assert_eq!(io.take_calls(), vec![format!("kv_read {MANIFEST_KEY}")]);
    assert!(io.take_deferred().is_empty());
    // Revoked: the next check ends it.
    publish_revocations(&io, 2, vec![Target::Jti { iss: INLINE_ISS.into(), jti: "sock-1".into() }]);
    io.advance_secs(10);
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Close(CloseReason::TokenRevoked));
    assert_eq!((CloseReason::TokenRevoked.code(), CloseReason::TokenRevoked.text()), (1008, "token_revoked"));

    // Expiry: the check is due at `exp` itself (leeway does not extend a live socket).
    let g2 = Gate::new(policy(&doc()));
    let io2 = FakeIo::new();
    publish_revocations(&io2, 1, vec![]);
    let f2 = forwarded(decide(&g2, &io2, &upgrade("/ws/chat").bearer(&ed_token(json!({"exp": NOW + 5})))));
    assert_eq!(watch(&g2, &io2, &f2), SocketCheck::Open { recheck_at_ms: Some((NOW + 5) * 1000) });
    io2.now_ms.set((NOW + 5) * 1000 - 1);
    assert!(matches!(watch(&g2, &io2, &f2), SocketCheck::Open { .. }));
    io2.now_ms.set((NOW + 5) * 1000);
    assert_eq!(watch(&g2, &io2, &f2), SocketCheck::Close(CloseReason::TokenExpired));

    // No list past max_age_secs: the gate cannot tell, so the socket ends (1011).
    let g3 = Gate::new(policy(&doc()));
    let io3 = FakeIo::new();
    publish_revocations(&io3, 1, vec![]);
    let f3 = forwarded(decide(&g3, &io3, &upgrade("/ws/chat").bearer(&ed_token(json!({"exp": NOW + 3600})))));
    io3.kv_state.set(Kv::Failing);
    io3.advance_secs(301);
    assert_eq!(watch(&g3, &io3, &f3), SocketCheck::Close(CloseReason::RevocationsUnavailable));
    assert_eq!(CloseReason::RevocationsUnavailable.code(), 1011);

    // Without revocations, only the expiry is watched.
    let g4 = Gate::new(policy(&doc_with("revocations", json!({"enabled": false}))));
    let io4 = FakeIo::new();
    let f4 = forwarded(decide(&g4, &io4, &upgrade("/ws/chat").bearer(&ed_token(json!({"exp": NOW + 60})))));
    assert_eq!(watch(&g4, &io4, &f4), SocketCheck::Open { recheck_at_ms: Some((NOW + 60) * 1000) });
}

#[test]
fn websocket_upgrades_the_runtime_would_not_take_are_refused() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    // workerd takes an upgrade only when the one `Upgrade` value is `websocket`: anything else
    // naming it would open the origin's socket and then fail the client's. Refused, on any route.
    let spellings: [&[&str]; 4] = [&["websocket, h2c"], &["h2c, websocket"], &["websocket", "websocket"], &["websocket", "h2c"]];
    for ups in spellings {
        let mut r = req("GET", "/ws/chat").bearer(&t);
        for u in ups {
            r = r.header("Upgrade", u);
        }
        refused(decide(&gate, &io, &r), 400, "websocket_not_allowed", Www::Absent);
    }
    // A token already at its exp (within leeway at the check) opens no socket: it would be closed
    // at once.
    let at_exp = ed_token(json!({"iat": NOW - 100, "exp": NOW}));
    refused(decide(&gate, &io, &upgrade("/ws/chat").bearer(&at_exp)), 401, "expired", Www::InvalidToken);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&at_exp))).authenticated, "a plain request within leeway passes");
}

#[test]
fn websocket_token_entries_never_reach_the_origin_in_any_spelling() {
    let gate = gate(&doc_with("request", json!({"underscore_headers": "keep"})));
    let io = FakeIo::new();
    let mine = ed_token(json!({}));
    let unchecked = ed_token(json!({"sub": "someone-else", "iat": NOW - 7200, "exp": NOW - 3600}));
    // Under an underscore name (read as `HTTP_SEC_WEBSOCKET_PROTOCOL` by CGI-style origins).
    let f = forwarded(decide(&gate, &io, &upgrade("/ws/chat").bearer(&mine).header("Sec_WebSocket_Protocol", &format!("chat, edgeward.bearer.{unchecked}"))));
    assert!(!format!("{:?}", f.plan).contains(&unchecked), "{:?}", f.plan.headers);
    // The prefix in another case, or inside another entry: refused, never forwarded.
    for entry in [format!("Edgeward.Bearer.{unchecked}"), format!("EDGEWARD.BEARER.{unchecked}"), format!("v1 edgeward.bearer.{unchecked}")] {
        let r = upgrade("/ws/chat").bearer(&mine).header("Sec-WebSocket-Protocol", &format!("chat, {entry}"));
        refused(decide(&gate, &io, &r), 401, "malformed_token", Www::InvalidToken);
        let plain = req("GET", "/public/x").header("Sec-WebSocket-Protocol", &format!("chat, {entry}"));
        let f = forwarded(decide(&gate, &io, &plain));
        assert_eq!(hdr(&f.plan.headers, "sec-websocket-protocol"), Some("chat"));
    }
}

#[test]
fn websocket_watch_never_waits_on_another_read_nor_for_long() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_revocations(&io, 1, vec![]);
    let a = forwarded(decide(&gate, &io, &upgrade("/ws/a").bearer(&ed_token(json!({"jti": "a"})))));
    let b = forwarded(decide(&gate, &io, &upgrade("/ws/b").bearer(&ed_token(json!({"jti": "b"})))));
    assert_eq!(watch(&gate, &io, &a), watch(&gate, &io, &b), "every socket of the isolate is due at the same moment");
    io.advance_secs(10);
    // a's watch starts the read (slow); b's decides on the copy it has and looks again in a
    // second, rather than waiting to be resumed by a's (in a's request's context).
    *io.blocked.borrow_mut() = Some(MANIFEST_KEY.to_string());
    let mut cx = Context::from_waker(Waker::noop());
    let mut wa = std::pin::pin!(gate.watch_socket(&io, a.socket.as_ref().unwrap(), io.now_ms()));
    assert!(wa.as_mut().poll(&mut cx).is_pending(), "a's watch reads the list");
    let mut wb = std::pin::pin!(gate.watch_socket(&io, b.socket.as_ref().unwrap(), io.now_ms()));
    assert_eq!(wb.as_mut().poll(&mut cx), Poll::Ready(SocketCheck::Open { recheck_at_ms: Some((NOW + 11) * 1000) }));
    *io.blocked.borrow_mut() = None;
    assert!(wa.as_mut().poll(&mut cx).is_ready());
    // However far the credential's expiry, the next look is within an hour (a JS timer cannot
    // wait past 24.8 days).
    let g2 = Gate::new(policy(&doc_with("revocations", json!({"enabled": false}))));
    let io2 = FakeIo::with_pepper();
    let k = api_key(45);
    let mut rec = record_for(&k, 45);
    rec.expires_at = Some(NOW + 90 * 86_400);
    store_record(&io2, &k, &rec);
    let f = forwarded(decide(&g2, &io2, &upgrade("/ws-keys/feed").api_key(&k)));
    assert_eq!(watch(&g2, &io2, &f), SocketCheck::Open { recheck_at_ms: Some(NOW * 1000 + 3_600_000) });
}

#[test]
fn websocket_with_an_api_key_ends_at_its_expiry_or_revocation() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    publish_revocations(&io, 1, vec![]);
    let k = api_key(43);
    let mut rec = record_for(&k, 43);
    rec.expires_at = Some(NOW + 30);
    store_record(&io, &k, &rec);
    let f = forwarded(decide(&gate, &io, &upgrade("/ws-keys/feed").api_key(&k)));
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Open { recheck_at_ms: Some((NOW + 10) * 1000) });
    io.now_ms.set((NOW + 30) * 1000);
    assert_eq!(watch(&gate, &io, &f), SocketCheck::Close(CloseReason::ApiKeyExpired));
    // Revoked by id.
    let k2 = api_key(44);
    let rec2 = record_for(&k2, 44);
    store_record(&io, &k2, &rec2);
    let f2 = forwarded(decide(&gate, &io, &upgrade("/ws-keys/feed").api_key(&k2)));
    publish_revocations(&io, 2, vec![Target::ApiKey { key_id: rec2.id.clone() }]);
    io.advance_secs(10);
    assert_eq!(watch(&gate, &io, &f2), SocketCheck::Close(CloseReason::ApiKeyRevoked));
}

// ---------------------------------------------------------------------------------------------
// Route rules
// ---------------------------------------------------------------------------------------------

#[test]
fn public_route_is_forwarded_without_credential_or_any_io() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    // Whatever credential-looking and identity-looking headers the client sends.
    let r = req("GET", "/public/logo.png?v=2").bearer("garbage").header("X-Edgeward-Sub", "admin").header("Accept", "image/png");
    let mut fwd = forwarded(decide(&gate, &io, &r));
    assert!(!fwd.authenticated);
    assert_eq!(fwd.method, "GET");
    assert_eq!(fwd.plan.url, format!("{ORIGIN}/public/logo.png?v=2"));
    let h = &fwd.plan.headers;
    assert_eq!(hdr(h, "authorization"), None, "a credential never reaches the origin");
    assert_eq!(hdr(h, "x-edgeward-sub"), None);
    assert_eq!(hdr(h, "x-edgeward-auth"), None);
    assert_eq!(hdr(h, "accept"), Some("image/png"));
    assert_eq!(hdr_all(h, "x-request-id"), vec![r.id.as_str()]);
    assert!(fwd.limit_headers.is_empty() && !fwd.mint_csrf);
    assert_eq!((fwd.log.credential, fwd.log.token_cache, fwd.log.jwks_fetches), (None, None, 0));
    assert!(io.take_calls().is_empty(), "no I/O for a public route");
    assert!(io.take_deferred().is_empty() && io.logs.borrow().is_empty());
    let edits = gate.respond(&io, &mut fwd, 200, OriginCookies::Each(vec![]), None, NOW);
    assert_eq!(edits.set, vec![("x-request-id".to_string(), r.id.clone())]);
    assert_eq!(edits.set_cookies, None);
    assert_eq!((fwd.log.decision, fwd.log.status), ("public", 200));
}

#[test]
fn route_methods_head_as_get_and_extension_methods() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    // `/docs/*` is public for GET only; HEAD is authorized as GET and forwarded as HEAD.
    for m in ["GET", "HEAD", "get", "head"] {
        let r = req(m, "/docs/intro");
        let fwd = forwarded(decide(&gate, &io, &r));
        assert!(!fwd.authenticated, "{m}");
        assert_eq!(fwd.method, m.to_ascii_uppercase());
    }
    assert!(io.take_calls().is_empty());
    // Another method falls through to the default rule: a token is needed.
    let r = req("POST", "/docs/intro");
    let rf = refused(decide(&gate, &io, &r), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!((rf.log.method.as_str(), rf.log.path.as_str()), ("POST", "/docs/intro"));
    // `/admin/*` needs `admin` for POST only; an extension method is matched by POST rules.
    let t = ed_token(json!({}));
    for m in ["GET", "DELETE"] {
        let r = req(m, "/admin/users").bearer(&t);
        assert!(forwarded(decide(&gate, &io, &r)).authenticated, "{m}");
    }
    for m in ["POST", "PROPFIND"] {
        let r = req(m, "/admin/users").bearer(&t);
        refused(
            decide(&gate, &io, &r),
            403,
            "insufficient_scope",
            Www::Is("Bearer realm=\"edgeward\", error=\"insufficient_scope\", error_description=\"missing scope: admin\", scope=\"admin\""),
        );
    }
    let r = req("PROPFIND", "/admin/users").bearer(&ed_token(json!({"scope": "admin"})));
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!(fwd.method, "PROPFIND", "an extension method keeps its name");
}

#[test]
fn route_auth_kinds_and_credential_not_accepted() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    let k = api_key(1);
    store_record(&io, &k, &record_for(&k, 1));
    let t = ed_token(json!({}));

    // No credential: the challenge names what the route takes.
    refused(decide(&gate, &io, &req("GET", "/api/x")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    refused(decide(&gate, &io, &req("GET", "/partner/x")), 401, "missing_api_key", Www::Is("ApiKey realm=\"edgeward\""));
    refused(decide(&gate, &io, &req("GET", "/svc/x")), 401, "missing_credential", Www::Is("Bearer realm=\"edgeward\", ApiKey realm=\"edgeward\""));
    assert!(io.take_calls().is_empty());

    // A credential of the wrong kind is refused before any lookup or signature check.
    let r = req("GET", "/api/x").api_key(&k);
    let rf = refused(decide(&gate, &io, &r), 401, "credential_not_accepted", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!(rf.log.credential, Some(CredentialSource::ApiKey));
    let r = req("GET", "/partner/x").bearer(&t);
    let rf = refused(decide(&gate, &io, &r), 401, "credential_not_accepted", Www::Is("ApiKey realm=\"edgeward\""));
    assert_eq!(rf.log.credential, Some(CredentialSource::Header));
    assert!(io.take_calls().is_empty(), "no KV read, no signature check");

    // `either` takes both.
    let r = req("GET", "/svc/x").api_key(&k);
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!(hdr(&fwd.plan.headers, "x-edgeward-auth"), Some("api_key"));
    let r = req("GET", "/svc/x").bearer(&t);
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!(hdr(&fwd.plan.headers, "x-edgeward-auth"), Some("jwt"));

    // Two different credentials at once are ambiguous.
    let r = req("GET", "/svc/x").bearer(&t).api_key(&k);
    refused(decide(&gate, &io, &r), 401, "malformed_token", Www::InvalidToken);
}

#[test]
fn admin_prefix_is_the_control_planes() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let r = req("POST", "/__edgeward/admin/./revocations?limit=5").bearer("whatever").client_ip(CLIENT_IP);
    match decide(&gate, &io, &r) {
        Outcome::Admin(call) => {
            assert_eq!(call.path, "/__edgeward/admin/revocations");
            assert_eq!(call.query, "limit=5");
            assert_eq!(call.client_ip, Some(CLIENT_IP.parse().unwrap()));
        }
        other => panic!("expected an admin call, got {other:?}"),
    }
    // A path that only starts with the same letters is not the admin API.
    refused(decide(&gate, &io, &req("GET", "/__edgeward/administrator")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!(io.take_calls(), [BLOCKS_READ], "the isolate's first request read the block list; nothing else");
}

// ---------------------------------------------------------------------------------------------
// Reason codes: requests, tokens, scopes, configuration, origin
// ---------------------------------------------------------------------------------------------

#[test]
fn request_refusals_come_before_any_credential_or_io() {
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let g = gate(&doc());
    refused(decide(&g, &io, &req("GET", "/api/a%2Fb").bearer(&t)), 400, "ambiguous_path", Www::Absent);
    refused(decide(&g, &io, &req("GE(T", "/api/x").bearer(&t)), 400, "bad_method", Www::Absent);
    refused(decide(&g, &io, &req("TRACE", "/public/x")), 405, "method_not_allowed", Www::Absent);
    // The gate is handed absolute http(s) URLs; anything else is a bug in the adapter.
    let mut odd = req("GET", "/api/x").bearer(&t);
    odd.url = "ftp://edge.example/api/x".into();
    refused(decide(&g, &io, &odd), 500, "internal_error", Www::Absent);

    let g = gate(&doc_with("request", json!({"max_path_bytes": 16})));
    let rf = refused(decide(&g, &io, &req("GET", &format!("/api/{}", "a".repeat(40))).bearer(&t)), 414, "path_too_long", Www::Absent);
    assert!(rf.log.path.len() <= 256);
    assert!(forwarded(decide(&g, &io, &req("GET", "/api/short").bearer(&t))).authenticated);
    io.take_calls();

    let g = gate(&doc_with("request", json!({"method_override": "reject"})));
    let r = req("POST", "/public/form").header("X-HTTP-Method-Override", "DELETE");
    refused(decide(&g, &io, &r), 400, "method_override", Www::Absent);
    refused(decide(&g, &io, &req("POST", "/public/form?_method=DELETE")), 400, "method_override", Www::Absent);

    let g = gate(&doc_with("query_param", json!("access_token")));
    refused(decide(&g, &io, &req("GET", &format!("/api/x?ACCESS_TOKEN={t}"))), 400, "ambiguous_query", Www::Absent);
    assert!(io.take_calls().is_empty(), "nothing was verified or looked up");
}

/// Every way a JWT itself is refused, through `decide` (HMAC issuer unless said otherwise): the
/// code, and whether the signature was checked before the refusal.
#[test]
fn jwt_refusals_on_the_full_path() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let table: Vec<(&str, String, &'static str, bool)> = vec![
        ("over max_token_bytes", ed_token(json!({"pad": "x".repeat(17_000)})), "token_too_large", false),
        ("two segments", "abc.def".into(), "malformed_token", false),
        ("header not an object", hs_raw("[1]"), "malformed_header", false),
        ("alg twice", hs_raw(r#"{"alg":"HS256","alg":"HS256","kid":"hs-1"}"#), "duplicate_member", false),
        ("no alg", hs_raw(r#"{"kid":"hs-1","typ":"JWT"}"#), "alg_missing", false),
        ("alg none", hs_raw(r#"{"alg":"none","kid":"hs-1"}"#), "alg_none", false),
        ("ES256 for an HS256 issuer", key(ES256).sign(Some("hs-1"), &claims_of(HMAC_ISS, json!({}))), "alg_not_allowed", false),
        ("crit", hs_raw(r#"{"alg":"HS256","kid":"hs-1","crit":["exp"]}"#), "unsupported_header", false),
        ("exp a string", hs_token(json!({"exp": "soon"})), "malformed_claims", true),
        ("unknown iss", hs_token(json!({"iss": "https://evil.example"})), "issuer_mismatch", false),
        ("kid of no key", key(HS256).sign(Some("hs-9"), &claims_of(HMAC_ISS, json!({}))), "unknown_kid", false),
        ("no kid, two keys fit", key(HS256).sign(None, &claims_of(HMAC_ISS, json!({}))), "no_matching_key", false),
        ("flipped signature", flip_signature_byte(&hs_token(json!({})), 0, 1), "bad_signature", true),
        ("another key's signature", key_seeded(HS256, 7).sign(Some("hs-1"), &claims_of(HMAC_ISS, json!({}))), "bad_signature", true),
        ("no exp", hs_token(json!({"exp": null})), "missing_exp", true),
        ("expired past leeway", hs_token(json!({"exp": NOW - 61, "iat": NOW - 600})), "expired", true),
        ("nbf ahead", hs_token(json!({"nbf": NOW + 600})), "not_yet_valid", true),
        ("iat ahead", hs_token(json!({"iat": NOW + 600, "exp": NOW + 1200})), "issued_in_future", true),
        ("lives too long", hs_token(json!({"exp": NOW + 200_000})), "lifetime_too_long", true),
        ("other audience", hs_token(json!({"aud": "api://other"})), "audience_mismatch", true),
        ("EdDSA, other audience", ed_token(json!({"aud": ["api://a", "api://b"]})), "audience_mismatch", true),
    ];
    for (what, token, code, signature_checked) in table {
        let r = req("GET", "/api/orders").bearer(&token);
        let rf = refused(decide(&gate, &io, &r), 401, code, Www::InvalidToken);
        assert_eq!(rf.log.credential, Some(CredentialSource::Header), "{what}");
        assert!(rf.log.token_fp.as_deref().is_some_and(|fp| fp.starts_with("sha256:")), "{what}");
        assert_eq!(hdr(&rf.response.headers, "set-cookie"), None, "{what}: a header token is not cleared");
        let calls = io.take_calls();
        let want: Vec<String> = if signature_checked { vec!["verify_signature".into()] } else { vec![] };
        assert_eq!(calls, want, "{what}: no revocation read or other I/O for a refused token");
        assert!(!rf.response.body.contains(&token), "{what}: the token is not echoed");
    }
    assert_eq!(gate.state().cached_tokens(), 0, "refused tokens are not cached");
    // Each key is used for what it is: the same claims, properly signed, pass.
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/orders").bearer(&hs_token(json!({}))))).authenticated);
    assert!(
        forwarded(decide(&gate, &io, &req("GET", "/api/orders").bearer(&key_seeded(HS256, 1).sign(Some("hs-2"), &claims_of(HMAC_ISS, json!({}))))))
            .authenticated
    );
}

#[test]
fn insufficient_scope_and_claim_not_forwardable() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let r = req("GET", "/billing/invoices").bearer(&ed_token(json!({"scope": "read"})));
    let rf = refused(
        decide(&gate, &io, &r),
        403,
        "insufficient_scope",
        Www::Is("Bearer realm=\"edgeward\", error=\"insufficient_scope\", error_description=\"missing scope: billing\", scope=\"billing\""),
    );
    assert_eq!((rf.log.iss.as_deref(), rf.log.sub.as_deref()), (Some(INLINE_ISS), Some("user-1")));
    assert_eq!(io.count("ask_ledger"), 1, "revocations are checked before scopes");
    // `scp` arrays count too.
    let r = req("GET", "/billing/invoices").bearer(&ed_token(json!({"scope": null, "scp": ["billing"]})));
    forwarded(decide(&gate, &io, &r));

    // A claim no header can carry verbatim.
    let t = ed_token(json!({"sub": "Jos\u{e9}"}));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/me").bearer(&t)), 403, "claim_not_forwardable", Www::Absent);
    assert!(rf.log.detail.as_deref().is_some_and(|d| d.contains("x-edgeward-sub")), "{:?}", rf.log.detail);
    let percent = Gate::new(policy(&doc_with("request", json!({"claim_values": "percent"}))));
    let fwd = forwarded(decide(&percent, &io, &req("GET", "/api/me").bearer(&t)));
    assert_eq!(hdr(&fwd.plan.headers, "x-edgeward-sub"), Some("Jos%C3%A9"));
}

#[test]
fn config_invalid_when_unconfigured_or_an_upstream_secret_is_missing() {
    // The whole configuration is invalid: every request gets the default-shaped 500.
    let err = Policy::from_json(&json!({"origin": ORIGIN}).to_string()).unwrap_err().to_string();
    let r = req("GET", "/api/x").bearer("anything");
    let rf = Refusal::unconfigured(&r.incoming(NOW * 1000), err.clone());
    check_refusal(&rf, 500, "config_invalid", Www::Absent, "x-request-id");
    assert_eq!(rf.log.detail.as_deref(), Some(err.as_str()));
    assert_eq!(rf.log.path, "/api/x");
    assert!(!rf.response.body.contains("issuers"), "the configuration error is the operator's, not the client's");

    // A route's upstream credential whose secret is not set fails that route closed.
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    let k = api_key(2);
    store_record(&io, &k, &record_for(&k, 2));
    let r = req("GET", "/partner/reports").api_key(&k);
    let rf = refused(decide(&gate, &io, &r), 500, "config_invalid", Www::Absent);
    assert!(rf.log.detail.as_deref().is_some_and(|d| d.contains(PARTNER_SECRET_NAME)), "{:?}", rf.log.detail);
    assert!(!rf.response.body.contains(PARTNER_SECRET_NAME));
    // A secret that cannot go in a header is as good as missing.
    io.set_secret(PARTNER_SECRET_NAME, "line\nbreak");
    refused(decide(&gate, &io, &req("GET", "/partner/reports").api_key(&k)), 500, "config_invalid", Www::Absent);
    io.set_secret(PARTNER_SECRET_NAME, PARTNER_SECRET);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/partner/reports").api_key(&k)));
    assert_eq!(hdr_all(&fwd.plan.headers, "authorization"), vec![format!("Bearer {PARTNER_SECRET}").as_str()]);
    // Other routes never needed it.
    assert!(forwarded(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k))).authenticated);
}

#[test]
fn origin_unreachable_is_a_502_without_detail() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let r = req("GET", "/api/x").bearer(&ed_token(json!({})));
    let fwd = forwarded(decide(&gate, &io, &r));
    let rf = gate.origin_failed(*fwd, "origin fetch failed: connection refused".into());
    check_refusal(&rf, 502, "origin_unreachable", Www::Absent, "x-request-id");
    assert_eq!(rf.log.detail.as_deref(), Some("origin fetch failed: connection refused"));
    assert!(!rf.response.body.contains("connection refused"));
    assert_eq!((rf.log.iss.as_deref(), rf.log.credential), (Some(INLINE_ISS), Some(CredentialSource::Header)), "the record keeps who it was");
}

/// Issue 20: a route may name its own origin — a URL, or `service:NAME`, a service binding
/// (then the request keeps the gate's own URL) — and its own timeout; past the timeout the
/// adapter gets `504 origin_timeout`, readable cross-origin like any refusal.
#[test]
fn per_route_origins_and_timeouts() {
    let mut d = doc_with("cors", json!({"allowed_origins": [APP]}));
    d["origin_timeout_ms"] = json!(5000);
    let routes = d["routes"].as_array_mut().unwrap();
    routes.insert(0, json!({"path": "/reports/*", "origin": "https://reports.internal/v2/", "timeout_ms": 120000}));
    routes.insert(0, json!({"path": "/worker/*", "origin": "service:API_WORKER"}));
    let gate = gate(&d);
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/reports/q1?x=1").bearer(&t)));
    assert_eq!((fwd.plan.url.as_str(), fwd.plan.service.as_deref(), fwd.timeout_ms), ("https://reports.internal/v2/reports/q1?x=1", None, 120_000));
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/worker/a").bearer(&t)));
    assert_eq!((fwd.plan.service.as_deref(), fwd.timeout_ms), (Some("API_WORKER"), 5000));
    assert!(fwd.plan.url.ends_with("/worker/a") && !fwd.plan.url.starts_with(ORIGIN), "{}", fwd.plan.url);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/a").bearer(&t).header("origin", APP)));
    assert_eq!((fwd.plan.service.as_deref(), fwd.timeout_ms), (None, 5000));
    assert!(fwd.plan.url.starts_with(ORIGIN));
    let rf = gate.origin_timed_out(*fwd, 5003);
    check_refusal(&rf, 504, "origin_timeout", Www::Absent, "x-request-id");
    assert_eq!(rf.log.detail.as_deref(), Some("no response headers after 5003 ms (timeout 5000 ms)"));
    assert_eq!(hdr(&rf.response.headers, "access-control-allow-origin"), Some(APP), "readable by the app");

    let bad = |d: Value| Policy::from_json(&d.to_string()).unwrap_err();
    for (route, field) in [
        (json!({"path": "/x/*", "origin": "ftp://x"}), "routes[0]"),
        (json!({"path": "/x/*", "origin": "https://x/?q"}), "routes[0]"),
        (json!({"path": "/x/*", "origin": "service:"}), "routes[0]"),
        (json!({"path": "/x/*", "origin": "service:a-b"}), "routes[0]"),
        (json!({"path": "/x/*", "timeout_ms": 99}), "routes[0]"),
        (json!({"path": "/x/*", "timeout_ms": 600001}), "routes[0]"),
    ] {
        let mut d = doc();
        d["routes"] = json!([route.clone()]);
        assert_eq!(bad(d).field, field, "{route}");
    }
    assert_eq!(bad(doc_with("origin_timeout_ms", json!(0))).field, "origin_timeout_ms");
    assert_eq!(bad(doc_with("origin", json!("service:has space"))).field, "origin");
    assert_eq!(policy(&doc_with("origin", json!("service:API"))).origin, "service:API", "the top-level origin may be a binding too");
}

// `admin_unavailable` (503: an admin call to a gate without its EDGEWARD_CONTROL binding) is the
// Worker adapter's: the pipeline hands admin calls over as `Outcome::Admin`
// (`admin_prefix_is_the_control_planes`) and never produces it.

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

#[test]
fn api_key_accepted_cache_hit_vs_miss_and_record_ttl() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    io.set_secret(PARTNER_SECRET_NAME, PARTNER_SECRET);
    let k = api_key(3);
    let mut rec = record_for(&k, 3);
    store_record(&io, &k, &rec);

    let r = req("GET", "/partner/reports?month=11").api_key(&k).client_ip(CLIENT_IP);
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!((fwd.log.key_cache, fwd.log.kv_reads, fwd.log.key_id.as_deref()), (Some("miss"), 1, Some(rec.id.as_str())));
    assert_eq!(fwd.log.credential, Some(CredentialSource::ApiKey));
    assert_eq!(
        io.take_calls(),
        vec![
            BLOCKS_READ.to_string(),
            format!("kv_read {}", storage_key(&k)),
            format!("kv_read {MANIFEST_KEY}"),
            format!("kv_read {SNAPSHOT_KEY}"),
            "kv_read revocations:v1".to_string()
        ]
    );
    let h = &fwd.plan.headers;
    assert_eq!(fwd.plan.url, format!("{ORIGIN}/partner/reports?month=11"));
    assert_eq!(hdr(h, "x-api-key"), None, "the client's key never reaches the origin");
    assert_eq!(hdr_all(h, "authorization"), vec![format!("Bearer {PARTNER_SECRET}").as_str()], "the origin's own credential instead");
    assert_eq!(hdr(h, "x-edgeward-auth"), Some("api_key"));
    assert_eq!(hdr(h, "x-edgeward-key-id"), Some(rec.id.as_str()));
    assert_eq!(hdr(h, "x-edgeward-sub"), Some("acme-billing"));
    assert_eq!(hdr(h, "x-edgeward-scope"), Some("invoices:read"));

    // Within cache_ttl_secs (30): no KV read, also with `Authorization: ApiKey`.
    io.advance_secs(5);
    let r = req("GET", "/partner/reports").header("Authorization", &format!("ApiKey {k}"));
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!((fwd.log.key_cache, fwd.log.kv_reads), (Some("hit"), 0));
    assert!(io.take_calls().is_empty());
    assert_eq!(gate.state().cached_keys(), 1);

    // A record change is seen once the cached lookup expires: until then the isolate trusts it.
    rec.status = KeyStatus::Disabled;
    store_record(&io, &k, &rec);
    io.advance_secs(5);
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/partner/x").api_key(&k))).log.key_cache, Some("hit"));
    io.advance_secs(21);
    let rf = refused(
        decide(&gate, &io, &req("GET", "/partner/x").api_key(&k)),
        401,
        "api_key_invalid",
        Www::Is("ApiKey realm=\"edgeward\", error=\"invalid_key\", error_description=\"API key not accepted\""),
    );
    assert_eq!((rf.log.key_cache, rf.log.kv_reads), (Some("miss"), 1));
    assert_eq!(rf.log.detail.as_deref(), Some("API key refused: disabled"));

    // A cached record is still checked at each request's time and address.
    let k2 = api_key(33);
    let mut rec2 = record_for(&k2, 33);
    rec2.expires_at = Some(io.now_secs() + 10);
    rec2.allowed_ips = vec!["203.0.113.0/24".into()];
    store_record(&io, &k2, &rec2);
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/partner/x").api_key(&k2).client_ip(CLIENT_IP))).log.key_cache, Some("miss"));
    let rf = refused(decide(&gate, &io, &req("GET", "/partner/x").api_key(&k2).client_ip("192.0.2.1")), 403, "ip_not_allowed", Www::Absent);
    assert_eq!(rf.log.key_cache, Some("hit"));
    io.advance_secs(10);
    let rf = refused(
        decide(&gate, &io, &req("GET", "/partner/x").api_key(&k2).client_ip(CLIENT_IP)),
        401,
        "api_key_invalid",
        Www::Is("ApiKey realm=\"edgeward\", error=\"invalid_key\", error_description=\"API key not accepted\""),
    );
    assert_eq!((rf.log.key_cache, rf.log.detail.as_deref()), (Some("hit"), Some("API key refused: expired")));
    assert!(io.logs.borrow().iter().all(|(_, e)| !e.to_string().contains(&k) && !e.to_string().contains(PEPPER)), "no key or pepper in logs");
}

#[test]
fn api_key_unknown_is_negatively_cached() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    let k = api_key(4);
    let unknown = || req("GET", "/svc/items").api_key(&k);
    let invalid = Www::Is("ApiKey realm=\"edgeward\", error=\"invalid_key\", error_description=\"API key not accepted\"");
    let rf = refused(decide(&gate, &io, &unknown()), 401, "api_key_invalid", invalid);
    assert_eq!((rf.log.key_cache, rf.log.kv_reads, rf.log.key_id.as_deref()), (Some("miss"), 1, None));
    assert_eq!(rf.log.detail.as_deref(), Some("API key refused: unknown"));
    assert_eq!(io.take_calls(), vec![format!("kv_read {}", storage_key(&k))]);
    // Remembered for negative_cache_ttl_secs (30): the flood costs no KV read.
    for _ in 0..3 {
        let rf = refused(decide(&gate, &io, &unknown()), 401, "api_key_invalid", invalid);
        assert_eq!((rf.log.key_cache, rf.log.kv_reads), (Some("hit"), 0));
    }
    assert!(io.take_calls().is_empty());
    // The key is created meanwhile: seen once the negative entry expires.
    store_record(&io, &k, &record_for(&k, 4));
    io.advance_secs(29);
    refused(decide(&gate, &io, &unknown()), 401, "api_key_invalid", invalid);
    io.advance_secs(1);
    let fwd = forwarded(decide(&gate, &io, &unknown()));
    assert_eq!((fwd.log.key_cache, fwd.log.kv_reads), (Some("miss"), 1));
}

#[test]
fn api_key_record_refusals() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    let invalid = Www::Is("ApiKey realm=\"edgeward\", error=\"invalid_key\", error_description=\"API key not accepted\"");
    let malformed = Www::Is("ApiKey realm=\"edgeward\", error=\"invalid_key\", error_description=\"API key is malformed\"");

    // Malformed: refused offline, no lookup at all.
    let k = api_key(5);
    let last = k.chars().last().unwrap();
    let typo = format!("{}{}", &k[..k.len() - 1], if last == 'A' { 'B' } else { 'A' });
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&typo)), 401, "api_key_malformed", malformed);
    let test_env = generate(KeyEnv::Test, &random_bytes::<RANDOM_BYTES>(5)).unwrap();
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&test_env)), 401, "api_key_malformed", malformed);
    refused(decide(&gate, &io, &req("GET", "/svc/x").header("Authorization", "ApiKey ew_live_short")), 401, "api_key_malformed", malformed);
    assert!(io.take_calls().is_empty());

    // Each record state, one answer to the client, the reason in the log.
    let cases: [(u64, &str, RecordEdit); 4] = [
        (6, "disabled", |r| r.status = KeyStatus::Disabled),
        (7, "expired", |r| r.expires_at = Some(NOW)),
        (8, "not yet valid", |r| r.not_before = Some(NOW + 60)),
        (9, "rotated out", |r| r.secrets[0].not_after = Some(NOW - 1)),
    ];
    for (seed, why, edit) in cases {
        let k = api_key(seed);
        let mut rec = record_for(&k, seed as u8);
        edit(&mut rec);
        store_record(&io, &k, &rec);
        let rf = refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 401, "api_key_invalid", invalid);
        assert_eq!(rf.log.detail, Some(format!("API key refused: {why}")));
        assert_eq!(rf.log.key_id.as_deref(), Some(rec.id.as_str()), "{why}: the id is logged, never the key");
    }

    // Client ranges.
    let k = api_key(10);
    let mut rec = record_for(&k, 10);
    rec.allowed_ips = vec!["198.51.100.0/24".into(), "2001:db8::/32".into()];
    store_record(&io, &k, &rec);
    let rf = refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k).client_ip(CLIENT_IP)), 403, "ip_not_allowed", Www::Absent);
    assert_eq!(rf.log.key_id.as_deref(), Some(rec.id.as_str()));
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 403, "ip_not_allowed", Www::Absent);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k).client_ip("198.51.100.77"))).authenticated);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k).client_ip("2001:db8:1::5"))).authenticated);

    // Revoked by id (the published snapshot), on a fresh isolate.
    let gate = Gate::new(policy(&doc()));
    let k = api_key(11);
    let rec = record_for(&k, 11);
    store_record(&io, &k, &rec);
    publish_revocations(&io, 3, vec![Target::ApiKey { key_id: rec.id.clone() }]);
    let rf = refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 401, "api_key_invalid", invalid);
    assert_eq!(rf.log.detail.as_deref(), Some("API key refused: revoked"));
    assert_eq!(gate.state().revocations(), 1);
}

#[test]
fn api_keys_unavailable_without_pepper_or_kv() {
    let k = api_key(12);
    let gate = gate(&doc());
    // No pepper: nothing can be looked up.
    let io = FakeIo::new();
    store_record(&io, &k, &record_for(&k, 12));
    let rf = refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 503, "api_keys_unavailable", Www::Absent);
    assert!(rf.log.detail.as_deref().is_some_and(|d| d.contains("EDGEWARD_API_KEY_PEPPER")), "{:?}", rf.log.detail);
    // A pepper shorter than 32 characters is refused the same.
    io.set_secret("EDGEWARD_API_KEY_PEPPER", &PEPPER[..31]);
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 503, "api_keys_unavailable", Www::Absent);
    assert!(io.take_calls().is_empty());

    // KV unbound or failing: 503, and the failure is not cached.
    io.set_secret("EDGEWARD_API_KEY_PEPPER", PEPPER);
    io.kv_state.set(Kv::Unbound);
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 503, "api_keys_unavailable", Www::Absent);
    assert!(io.take_calls().is_empty());
    io.kv_state.set(Kv::Failing);
    let rf = refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)), 503, "api_keys_unavailable", Www::Absent);
    assert!(rf.log.detail.as_deref().is_some_and(|d| d.starts_with("KV read failed")), "{:?}", rf.log.detail);
    assert_eq!(gate.state().cached_keys(), 0);
    io.kv_state.set(Kv::Bound);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k)));
    assert_eq!(fwd.log.key_cache, Some("miss"));

    // A record that does not parse is the store's fault, not the client's.
    let k2 = api_key(13);
    io.kv.borrow_mut().insert(storage_key(&k2), b"{\"id\":".to_vec());
    refused(decide(&gate, &io, &req("GET", "/svc/x").api_key(&k2)), 503, "api_keys_unavailable", Www::Absent);
    assert_eq!(io.events("api_key_record_invalid").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// JWTs: the verified-token cache and revocations
// ---------------------------------------------------------------------------------------------

#[test]
fn jwt_token_cache_hit_skips_the_signature() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({"jti": "c-1"}));
    let first = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!((first.log.token_cache, first.log.alg, first.log.kid.as_deref()), (Some("miss"), Some("EdDSA"), Some("ed-1")));
    let second = forwarded(decide(&gate, &io, &req("GET", "/api/y").bearer(&t)));
    assert_eq!(second.log.token_cache, Some("hit"));
    assert_eq!((second.log.iss.as_deref(), second.log.sub.as_deref(), second.log.kid.as_deref()), (Some(INLINE_ISS), Some("user-1"), Some("ed-1")));
    assert_eq!(first.log.token_fp, second.log.token_fp);
    assert_eq!(io.count("verify_signature"), 1, "two identical requests, one signature check");
    assert_eq!(hdr(&second.plan.headers, "x-edgeward-sub"), Some("user-1"), "a hit forwards the same identity");
    // Another token is another entry.
    let other = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "c-2"})))));
    assert_eq!(other.log.token_cache, Some("miss"));
    assert_eq!(io.count("verify_signature"), 2);
    assert_eq!(gate.state().cached_tokens(), 2);
    // Scopes still run on a hit.
    refused(
        decide(&gate, &io, &req("POST", "/admin/x").bearer(&t)),
        403,
        "insufficient_scope",
        Www::Is("Bearer realm=\"edgeward\", error=\"insufficient_scope\", error_description=\"missing scope: admin\", scope=\"admin\""),
    );
    // An entry never outlives its token.
    let short = ed_token(json!({"exp": NOW + 30, "jti": "c-3"}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&short)));
    io.advance_secs(95);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&short)), 401, "expired", Www::InvalidToken);
    assert_eq!(rf.log.token_cache, Some("miss"));
}

/// What a decision produced, everything but whether the token cache was hit: for a forward, the
/// method, the origin request, the rate-limit headers and the decision record; for a refusal, the
/// response and the record.
fn decision_summary(o: Outcome<'_>) -> Value {
    let log = |l: &edgeward::core::log::DecisionLog<'_>| {
        let mut v = serde_json::to_value(l).unwrap();
        v.as_object_mut().unwrap().remove("token_cache");
        v
    };
    match o {
        Outcome::Forward(f) => json!({"forward": {"method": f.method, "url": f.plan.url, "headers": f.plan.headers,
            "authenticated": f.authenticated, "limit_headers": f.limit_headers, "log": log(&f.log)}}),
        Outcome::Refuse(r) => json!({"refuse": {"status": r.response.status, "headers": r.response.headers, "body": r.response.body, "log": log(&r.log)}}),
        Outcome::Answer(r) => json!({"answer": {"status": r.response.status, "headers": r.response.headers, "log": log(&r.log)}}),
        Outcome::Admin(a) => panic!("unexpected admin call {}", a.path),
    }
}

#[test]
fn a_cache_hit_decides_exactly_as_a_fresh_verification() {
    // A typical IdP's 13 claims plus the ones this policy limits and forwards by (a plan, a tier,
    // a boolean, a list, an object no reader takes).
    let t = ed_token(json!({
        "aud": AUD, "nbf": NOW - 10, "jti": "5b0c7e1a-3f4d-4c2b-9a8e-d1f2e3c4b5a6", "azp": "spa-client",
        "scope": "openid profile email admin", "email": "jane@example.com", "name": "Jane Doe", "given_name": "Jane",
        "family_name": "Doe", "plan": "pro", "tier": "gold", "email_verified": true, "groups": ["staff", "ops"],
        "address": {"country": "NZ"},
    }));
    let mut d = doc();
    d["forward_claims"] = json!({"x-user": "sub", "x-issuer": "iss", "x-email": "email", "x-name": "name", "x-exp": "exp",
        "x-verified": "email_verified", "x-groups": "groups", "x-scope": "scope", "x-address": "address", "x-absent": "nickname"});
    d["rate_limits"] = json!({"rules": [
        per_sub_rule(json!({})),
        {"name": "per-plan", "key": "claim:plan", "rate": 100, "period_secs": 60, "burst": 5,
            "tier_claim": "tier", "tiers": {"gold": {"rate": 1000, "period_secs": 60, "burst": 3}}},
        {"name": "per-client", "key": "client_id", "rate": 100, "period_secs": 60, "burst": 4},
    ]});
    d["revocations"] = json!({"enabled": true});
    let requests = || {
        vec![
            req("GET", "/api/x").bearer(&t).client_ip("203.0.113.7"),
            // Route scopes: one held, one not; a sensitive route asks the ledger.
            req("POST", "/admin/x").bearer(&t),
            req("GET", "/billing/x").bearer(&t),
            // The per-sub burst of 2 is spent by now.
            req("GET", "/api/y").bearer(&t),
            req("GET", "/api/z").bearer(&t),
        ]
    };
    // (revocation, whether it revokes the token)
    let revoked_by = [
        (None, false),
        (Some(Target::Jti { iss: INLINE_ISS.into(), jti: "5b0c7e1a-3f4d-4c2b-9a8e-d1f2e3c4b5a6".into() }), true),
        (Some(Target::SubjectBefore { iss: INLINE_ISS.into(), sub: "user-1".into(), before: NOW - 5 }), true),
        (Some(Target::SubjectBefore { iss: INLINE_ISS.into(), sub: "user-1".into(), before: NOW - 15 }), false),
        (Some(Target::Kid { kid: "ed-1".into() }), true),
    ];
    for (target, revoked) in revoked_by {
        let mut uncached = d.clone();
        uncached["token_cache"] = json!({"capacity": 0});
        let (fresh, cached) = (gate(&uncached), gate(&d));
        let (io_fresh, io_cached) = (FakeIo::new(), FakeIo::new());
        for io in [&io_fresh, &io_cached] {
            publish_revocations(io, 1, target.iter().cloned().collect());
        }
        // The first request fills the cache; every later one is a hit there, a verification here.
        let mut outcomes = Vec::new();
        for (i, r) in requests().iter().enumerate() {
            let a = decide(&fresh, &io_fresh, r);
            let b = decide(&cached, &io_cached, r);
            let cache = |o: &Outcome<'_>| match o {
                Outcome::Forward(f) => f.log.token_cache,
                Outcome::Refuse(r) | Outcome::Answer(r) => r.log.token_cache,
                Outcome::Admin(_) => None,
            };
            assert_eq!((cache(&a), cache(&b)), (Some("miss"), Some(if i == 0 { "miss" } else { "hit" })), "{target:?} {}", r.url);
            let (a, b) = (decision_summary(a), decision_summary(b));
            assert_eq!(a, b, "{target:?} {}", r.url);
            outcomes.push(a.pointer("/refuse/log/reason").and_then(Value::as_str).unwrap_or("forward").to_string());
        }
        let expected: &[&str] = if revoked { &["token_revoked"; 5] } else { &["forward", "forward", "insufficient_scope", "rate_limited", "rate_limited"] };
        assert_eq!(outcomes, expected, "{target:?}");
        assert_eq!(*io_fresh.ledger_facts.borrow(), *io_cached.ledger_facts.borrow(), "the ledger is asked the same");
        assert_eq!(io_fresh.count("verify_signature"), 5);
        assert_eq!(io_cached.count("verify_signature"), 1);
    }

    // The scenario means something: claims forwarded, tiers and limits applied, scopes checked.
    let g = gate(&d);
    let io = FakeIo::new();
    publish_revocations(&io, 1, vec![]);
    let first = forwarded(decide(&g, &io, &req("GET", "/api/x").bearer(&t)));
    let h = &first.plan.headers;
    assert_eq!(
        [hdr(h, "x-user"), hdr(h, "x-issuer"), hdr(h, "x-email"), hdr(h, "x-exp"), hdr(h, "x-verified"), hdr(h, "x-scope")],
        [Some("user-1"), Some(INLINE_ISS), Some("jane@example.com"), Some(&*(NOW + 600).to_string()), Some("true"), Some("openid profile email admin")]
    );
    assert_eq!(hdr_all(h, "x-groups"), [r#""staff", "ops""#]);
    assert_eq!((hdr(h, "x-address"), hdr(h, "x-absent")), (None, None), "an object and an absent claim are not forwarded");
    let v = g.verify_inline(&t, NativeBackend, NOW, false).0.unwrap();
    assert_eq!(v.claims(), None, "a hit keeps no payload");
    let kept: Vec<&str> = v.claim_names().collect();
    assert_eq!(
        kept,
        ["azp", "email", "email_verified", "exp", "groups", "iat", "iss", "jti", "name", "plan", "scope", "sub", "tier"],
        "aud, nbf, given_name, family_name and the object are not read"
    );
    let buckets = g.policy().rate_limits.buckets("/api/x", edgeward::core::identity::Identity::Token(&v), None);
    // A rule whose key claim is missing does not apply; the gold tier's rate is 1000.
    assert_eq!(buckets.iter().map(|b| (b.rule.as_str(), b.quota.rate)).collect::<Vec<_>>(), [("per-sub", 60), ("per-plan", 1000), ("per-client", 100)]);
    assert!(v.authorize(&edgeward::core::access::Requirement::Token { scopes: vec!["admin".into(), "email".into()] }).is_ok());
}

#[test]
fn revocation_snapshot_revokes_tokens_cached_ones_included() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_revocations(
        &io,
        7,
        vec![
            Target::Jti { iss: INLINE_ISS.into(), jti: "t-revoked".into() },
            Target::SubjectBefore { iss: INLINE_ISS.into(), sub: "user-2".into(), before: NOW },
        ],
    );
    let r = req("GET", "/api/x").bearer(&ed_token(json!({"jti": "t-revoked"})));
    let rf = refused(
        decide(&gate, &io, &r),
        401,
        "token_revoked",
        Www::Is("Bearer realm=\"edgeward\", error=\"invalid_token\", error_description=\"token revoked\""),
    );
    assert_eq!(rf.log.token_cache, Some("miss"));
    assert_eq!(
        io.take_calls(),
        vec!["verify_signature".to_string(), format!("kv_read {MANIFEST_KEY}"), format!("kv_read {}", shard_key(0, 0, 7))],
        "the manifest and its one shard, read once"
    );
    assert_eq!(gate.state().revocations(), 2);
    // "Log out everywhere": tokens of user-2 issued before the watermark.
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "user-2"})))), 401, "token_revoked", Www::InvalidToken);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "user-2", "iat": NOW + 1}))))).authenticated);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "t-ok"}))))).authenticated);
    // Every token a compromised key signed.
    let by_kid = Gate::new(policy(&doc()));
    let io_kid = FakeIo::new();
    publish_revocations(&io_kid, 9, vec![Target::Kid { kid: "ed-1".into() }]);
    refused(decide(&by_kid, &io_kid, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "any"})))), 401, "token_revoked", Www::InvalidToken);
    assert!(forwarded(decide(&by_kid, &io_kid, &req("GET", "/api/x").bearer(&hs_token(json!({}))))).authenticated);

    // A token accepted (and cached), then revoked: the next snapshot refresh stops it.
    let later = ed_token(json!({"jti": "t-later"}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&later)));
    publish_revocations(&io, 8, vec![Target::Jti { iss: INLINE_ISS.into(), jti: "t-later".into() }]);
    io.take_calls();
    io.advance_secs(10);
    // Past refresh_secs the re-read is deferred (never on the hot path): this request still passes.
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&later)));
    assert_eq!(fwd.log.token_cache, Some("hit"));
    assert!(io.take_calls().is_empty());
    let tasks = io.take_deferred();
    assert!(matches!(tasks.as_slice(), [Deferred::RefreshRevocations]), "{tasks:?}");
    for t in tasks {
        run_ready(gate.run_deferred(&io, t)).unwrap();
    }
    assert_eq!(io.take_calls(), vec![format!("kv_read {MANIFEST_KEY}"), format!("kv_read {}", shard_key(0, 0, 8))]);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&later)), 401, "token_revoked", Www::InvalidToken);
    assert_eq!(rf.log.token_cache, Some("hit"), "revocation is checked on cache hits too");
}

#[test]
fn revocations_unavailable_without_kv_or_past_max_age() {
    let t = ed_token(json!({}));
    // No KV binding: no revocation list, protected routes fail closed; public ones do not care.
    let gate = gate(&doc());
    let io = FakeIo::new();
    io.kv_state.set(Kv::Unbound);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "revocations_unavailable", Www::Absent);
    forwarded(decide(&gate, &io, &req("GET", "/public/x")));
    // With revocations switched off, no KV is needed.
    let off = Gate::new(policy(&doc_with("revocations", json!({"enabled": false}))));
    assert!(forwarded(decide(&off, &io, &req("GET", "/api/x").bearer(&t))).authenticated);

    // KV fails after a good read: the last copy serves up to max_age_secs (300), then 503.
    let gate = Gate::new(policy(&doc()));
    let io = FakeIo::new();
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    io.kv_state.set(Kv::Failing);
    io.take_deferred();
    io.advance_secs(200);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    let tasks = io.take_deferred();
    assert!(matches!(tasks.as_slice(), [Deferred::RefreshRevocations]), "{tasks:?}");
    for task in tasks {
        run_ready(gate.run_deferred(&io, task)).unwrap();
    }
    assert_eq!(io.events("revocations_read_failed").len(), 1);
    io.advance_secs(101);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "revocations_unavailable", Www::Absent);
    // A copy past max_age_secs is re-read on the request path, not deferred.
    assert!(io.take_deferred().is_empty());
    assert_eq!(io.events("revocations_read_failed").len(), 2, "the request tried to read it");
    // Within the same second no second read is attempted; KV is back: the next request restores service.
    io.kv_state.set(Kv::Bound);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "revocations_unavailable", Www::Absent);
    io.advance_secs(1);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).authenticated);

    // KV failing from the start: nothing was ever loaded.
    let gate = Gate::new(policy(&doc()));
    let io = FakeIo::new();
    io.kv_state.set(Kv::Failing);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "revocations_unavailable", Www::Absent);
}

/// A sharded publication by hand: `2^bits` shards, `changed` (indexes) at `version`, the others
/// as `prev` had them (or at version 1). Returns the manifest written.
fn publish_shards(io: &FakeIo, version: u64, bits: u8, targets: &[Target], prev: Option<&Manifest>, changed: &[usize]) -> Manifest {
    let records: Vec<Record> = revocations_of(targets.to_vec()).iter().map(Revocation::record).collect();
    let mut shards = vec![ShardRef::default(); 1 << bits];
    for (i, slot) in shards.iter_mut().enumerate() {
        let mut mine: Vec<Record> = records.iter().copied().filter(|r| shard_of(r.id, bits) == i).collect();
        let v = match prev {
            Some(p) if !changed.contains(&i) => p.shards[i].version,
            _ => version,
        };
        *slot = ShardRef { version: v, count: mine.len() as u32 };
        if !mine.is_empty() && v == version {
            io.kv.borrow_mut().insert(shard_key(bits, i, v), encode_shard(v, bits, i, &mut mine));
        }
    }
    let m = Manifest { version, bits, shards };
    io.kv.borrow_mut().insert(MANIFEST_KEY.into(), m.encode());
    m
}

/// Issue 21: the edge reads the sharded snapshot shard by shard, and a refresh reads only the
/// shards whose version changed; empty shards are never read; a shard the manifest names but KV
/// does not have yet (or a corrupt one) keeps the last copy and is retried; an older manifest
/// than the one held changes nothing; a re-sharded list is rebuilt beside the live one.
#[test]
fn sharded_revocations_are_read_shard_by_shard() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    // Jtis spread over 4 shards, none in the shard of "t-2" to start with.
    let jti = |j: &str| Target::Jti { iss: INLINE_ISS.into(), jti: j.into() };
    let shard_of_jti = |j: &str| shard_of(jti(j).id_u64(), 2);
    let probe = "t-2";
    let others: Vec<String> = (0..200).map(|i| format!("x-{i}")).filter(|j| shard_of_jti(j) != shard_of_jti(probe)).take(12).collect();
    // One entry shares the probe's shard, so that shard is never empty.
    let buddy = (0..200).map(|i| format!("y-{i}")).find(|j| shard_of_jti(j) == shard_of_jti(probe)).unwrap();
    let mut targets: Vec<Target> = others.iter().chain([&buddy]).map(|j| jti(j)).collect();
    let m1 = publish_shards(&io, 1, 2, &targets, None, &[0, 1, 2, 3]);
    let empty = m1.shards.iter().filter(|s| s.count == 0).count();
    let t_probe = ed_token(json!({"jti": probe}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)));
    let calls = io.take_calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("kv_read revocations:v3:")).count(), 4 - empty, "every non-empty shard once: {calls:?}");
    assert_eq!(gate.state().revocations(), 13);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": others[0].clone()})))), 401, "token_revoked", Www::InvalidToken);

    // The probe is revoked: only its shard changes.
    targets.push(jti(probe));
    let changed = shard_of_jti(probe);
    let m2 = publish_shards(&io, 2, 2, &targets, Some(&m1), &[changed]);
    io.take_calls();
    io.advance_secs(10);
    let refresh = |io: &FakeIo| {
        forwarded(decide(&gate, io, &req("GET", "/public/x")));
        let _ = decide(&gate, io, &req("GET", "/api/x").bearer(&t_probe));
        for t in io.take_deferred() {
            run_ready(gate.run_deferred(io, t)).unwrap();
        }
    };
    refresh(&io);
    assert_eq!(io.take_calls(), vec![format!("kv_read {MANIFEST_KEY}"), format!("kv_read {}", shard_key(2, changed, 2))]);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    assert_eq!(gate.state().revocations(), 14);

    // A manifest naming a shard KV does not serve yet: the read fails, the copy held stays.
    targets.pop();
    let m3 = publish_shards(&io, 3, 2, &targets, Some(&m2), &[changed]);
    io.kv.borrow_mut().remove(&shard_key(2, changed, 3));
    io.advance_secs(10);
    refresh(&io);
    assert_eq!(io.events("revocations_read_failed").len(), 1);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    // A corrupt one (another shard's bytes under its key) is refused the same way.
    let wrong = io.kv.borrow().get(&shard_key(2, m3.shards.iter().position(|s| s.count > 0 && s.version == 1).unwrap(), 1)).cloned().unwrap();
    io.kv.borrow_mut().insert(shard_key(2, changed, 3), wrong);
    io.advance_secs(10);
    refresh(&io);
    assert_eq!(io.events("revocations_read_failed").len(), 2);
    // Then it arrives: the probe passes again.
    publish_shards(&io, 3, 2, &targets, Some(&m2), &[changed]);
    io.advance_secs(10);
    refresh(&io);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe))).authenticated);

    // An older manifest (a KV cache behind) changes nothing and reads no shard.
    io.kv.borrow_mut().insert(MANIFEST_KEY.into(), m1.encode());
    io.take_calls();
    io.advance_secs(10);
    refresh(&io);
    assert_eq!(io.take_calls(), vec![format!("kv_read {MANIFEST_KEY}")]);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe))).authenticated);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": others[1].clone()})))), 401, "token_revoked", Www::InvalidToken);

    // Re-sharded into one shard: rebuilt; the same verdicts.
    targets.push(jti(probe));
    publish_shards(&io, 4, 0, &targets, None, &[0]);
    io.advance_secs(10);
    refresh(&io);
    assert_eq!(gate.state().revocations(), 14);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "fine"}))))).authenticated);
}

/// Without a manifest (a ledger of an earlier version), the format-2 single value is read; once
/// a manifest exists it is what counts.
#[test]
fn the_single_value_snapshot_is_read_without_a_manifest() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    publish_legacy_revocations(&io, 5, vec![Target::Jti { iss: INLINE_ISS.into(), jti: "old".into() }]);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "old"})))), 401, "token_revoked", Www::InvalidToken);
    assert_eq!(io.take_calls(), vec!["verify_signature".to_string(), format!("kv_read {MANIFEST_KEY}"), format!("kv_read {SNAPSHOT_KEY}")]);
    publish_revocations(&io, 6, vec![Target::Jti { iss: INLINE_ISS.into(), jti: "new".into() }]);
    io.advance_secs(301);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "new"})))), 401, "token_revoked", Www::InvalidToken);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"jti": "old"}))))).authenticated);
}

/// Found in review: a refresh that overlaps another could install one layout's shards into the
/// other's set. Reads are one at a time now: a refresh started while one is in flight does
/// nothing, and the slow one completes into the layout it read.
#[test]
fn overlapping_refreshes_do_not_mix_layouts() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let jti = |j: &str| Target::Jti { iss: INLINE_ISS.into(), jti: j.into() };
    let probe = (0..1000).map(|i| format!("p-{i}")).find(|j| shard_of(jti(j).id_u64(), 1) == 0 && shard_of(jti(j).id_u64(), 2) == 1).unwrap();
    let mut targets: Vec<Target> = (0..40).map(|i| jti(&format!("x-{i}"))).collect();
    targets.push(jti(&probe));
    let t_probe = ed_token(json!({"jti": probe.clone()}));
    let m4 = publish_shards(&io, 4, 1, &targets, None, &[0, 1]);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    targets.push(jti("new-one"));
    publish_shards(&io, 9, 1, &targets, Some(&m4), &[0, 1]);
    io.advance_secs(11);
    *io.blocked.borrow_mut() = Some(shard_key(1, 0, 9));
    let mut slow = std::pin::pin!(gate.run_deferred(&io, Deferred::RefreshRevocations));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(slow.as_mut().poll(&mut cx).is_pending());
    // An older manifest in another layout, read by a second refresh: it does not start.
    targets.pop();
    publish_shards(&io, 5, 2, &targets, None, &[0, 1, 2, 3]);
    io.advance_secs(1);
    io.take_calls();
    run_ready(gate.run_deferred(&io, Deferred::RefreshRevocations)).unwrap();
    assert!(io.take_calls().is_empty(), "no second read while one is in flight");
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    *io.blocked.borrow_mut() = None;
    assert!(slow.as_mut().poll(&mut cx).is_ready());
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t_probe)), 401, "token_revoked", Www::InvalidToken);
    assert_eq!(gate.state().revocations(), 42, "the slow refresh's list (v9) in full");
}

/// Found in review: while an isolate's first read is in flight, other requests got 503. They
/// wait for that read and share its result.
#[test]
fn requests_wait_for_the_first_read_in_flight() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let m = publish_shards(&io, 3, 1, &[Target::Kid { kid: "a".into() }, Target::Kid { kid: "b".into() }, Target::Kid { kid: "c".into() }], None, &[0, 1]);
    *io.blocked.borrow_mut() = Some(m.shard_key(m.shards.iter().position(|s| s.count > 0).unwrap()));
    let (r1, r2) = (req("GET", "/api/x").bearer(&ed_token(json!({}))), req("GET", "/api/y").bearer(&ed_token(json!({"sub": "u-2"}))));
    let (in1, in2) = (r1.incoming(io.now_ms()), r2.incoming(io.now_ms()));
    let mut first = std::pin::pin!(gate.decide(&io, &in1));
    let mut second = std::pin::pin!(gate.decide(&io, &in2));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending(), "waits instead of 503");
    let before = io.take_calls();
    assert_eq!(before.iter().filter(|c| *c == &format!("kv_read {MANIFEST_KEY}")).count(), 1, "one read started: {before:?}");
    *io.blocked.borrow_mut() = None;
    let Poll::Ready(o1) = first.as_mut().poll(&mut cx) else { panic!("the first completes") };
    let Poll::Ready(o2) = second.as_mut().poll(&mut cx) else { panic!("the second completes") };
    assert!(forwarded(o1).authenticated && forwarded(o2).authenticated);
    let shard_reads = before.iter().chain(io.take_calls().iter()).filter(|c| c.starts_with("kv_read revocations:v3:")).count();
    assert_eq!(shard_reads, m.shards.iter().filter(|s| s.count > 0).count(), "each shard read once, for both requests");
}

/// A first read that cannot complete (a shard missing) leaves the isolate without a list: it
/// fails closed rather than check against part of one.
#[test]
fn a_partial_first_read_fails_closed() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let m = publish_shards(&io, 1, 1, &[Target::Kid { kid: "a".into() }, Target::Kid { kid: "b".into() }, Target::Kid { kid: "c".into() }], None, &[0, 1]);
    let missing = m.shards.iter().position(|s| s.count > 0).unwrap();
    io.kv.borrow_mut().remove(&m.shard_key(missing));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({})))), 503, "revocations_unavailable", Www::Absent);
    assert_eq!(gate.state().revocations(), 0);

    // Empty shards are not read: one entry in four shards is one shard read.
    let gate = Gate::new(policy(&doc()));
    let io = FakeIo::new();
    publish_shards(&io, 1, 2, &[Target::Kid { kid: "a".into() }], None, &[0, 1, 2, 3]);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({})))));
    assert_eq!(io.take_calls().iter().filter(|c| c.starts_with("kv_read revocations:v3:")).count(), 1);
}

/// An isolate that served nothing for longer than `max_age_secs` while KV stayed healthy has an
/// old copy only because nobody asked: README ("if KV cannot be read, the last snapshot is used
/// for up to `max_age_secs`, then protected routes fail closed") ties the 503 to KV failing.
#[test]
fn revocations_after_idle_isolate_with_healthy_kv() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    io.advance_secs(400);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).authenticated);
}

#[test]
fn strict_mode_asks_the_ledger_on_sensitive_routes_only() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({"scope": "billing", "jti": "j-1"}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!(io.count("ask_ledger"), 0, "not on ordinary routes");
    forwarded(decide(&gate, &io, &req("GET", "/billing/invoices").bearer(&t)));
    assert_eq!(io.count("ask_ledger"), 1);
    assert_eq!(io.ledger_facts.borrow()[0], json!({"iss": INLINE_ISS, "jti": "j-1", "sub": "user-1", "iat": (NOW - 10) as f64, "kid": "ed-1"}));
    // Asked on a token-cache hit too: no propagation delay.
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/billing/invoices").bearer(&t)));
    assert_eq!((fwd.log.token_cache, io.count("ask_ledger")), (Some("hit"), 2));

    io.ledger.set(Ledger::Revoked);
    refused(decide(&gate, &io, &req("GET", "/billing/invoices").bearer(&t)), 401, "token_revoked", Www::InvalidToken);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).authenticated, "the snapshot does not know it yet");

    io.ledger.set(Ledger::Unreachable);
    refused(decide(&gate, &io, &req("GET", "/billing/invoices").bearer(&t)), 503, "revocations_unavailable", Www::Absent);
    assert_eq!(io.events("revocation_ledger_unreachable").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

fn per_sub_rule(extra: Value) -> Value {
    with(json!({"name": "per-sub", "key": "sub", "rate": 60, "period_secs": 60, "burst": 2}), extra)
}

#[test]
fn rate_limit_local_burst_then_429() {
    let gate = gate(&doc_with("rate_limits", json!({"rules": [per_sub_rule(json!({}))]})));
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let first = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!(
        first.limit_headers,
        vec![("ratelimit-policy".to_string(), "\"per-sub\";q=60;w=60".to_string()), ("ratelimit".to_string(), "\"per-sub\";r=1;t=1".to_string())]
    );
    io.take_calls();
    let second = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!(hdr(&second.limit_headers, "ratelimit"), Some("\"per-sub\";r=0;t=2"));
    assert!(io.take_calls().is_empty(), "local mode: no I/O");
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 429, "rate_limited", Www::Absent);
    let h = &rf.response.headers;
    assert_eq!(hdr(h, "retry-after"), Some("1"));
    assert_eq!(hdr(h, "ratelimit-policy"), Some("\"per-sub\";q=60;w=60"));
    assert_eq!(hdr(h, "ratelimit"), Some("\"per-sub\";r=0;t=2"));
    // Another subject has its own bucket; the first gets one more after the emission interval.
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "user-9"}))))).authenticated);
    io.advance_secs(1);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 429, "rate_limited", Www::Absent);

    // headers_on_success: false keeps them off successful responses only.
    let quiet = Gate::new(policy(&doc_with("rate_limits", json!({"rules": [per_sub_rule(json!({}))], "headers_on_success": false}))));
    assert!(forwarded(decide(&quiet, &io, &req("GET", "/api/x").bearer(&t))).limit_headers.is_empty());
}

#[test]
fn rate_limit_exact_mode_and_its_outage() {
    let rules = json!([per_sub_rule(json!({}))]);
    let gate = gate(&doc_with("rate_limits", json!({"mode": "exact", "rules": rules})));
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!(hdr(&fwd.limit_headers, "ratelimit"), Some("\"per-sub\";r=1;t=1"));
    let asks: Vec<String> = io.take_calls().into_iter().filter(|c| c.starts_with("ask_limiter")).collect();
    assert_eq!(asks.len(), 1);
    assert!(asks[0].starts_with("ask_limiter per-sub:sub:") && !asks[0].contains("user-1"), "the bucket key holds a fingerprint: {}", asks[0]);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 429, "rate_limited", Www::Absent);
    assert_eq!(hdr(&rf.response.headers, "retry-after"), Some("1"));
    assert_eq!(io.count("ask_limiter"), 2, "every check goes to the Durable Object");

    // Unreachable, on_unavailable: local (the default): limited in the isolate, logged.
    let gate = Gate::new(policy(&doc_with("rate_limits", json!({"mode": "exact", "rules": rules}))));
    let io = FakeIo::new();
    io.limiter.set(Limiter::Unreachable);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 429, "rate_limited", Www::Absent);
    let logged = io.events("rate_limiter_unavailable");
    assert_eq!(logged.len(), 3);
    assert!(logged.iter().all(|(l, e)| *l == Level::Warn && e["fallback"] == true && e["rule"] == "per-sub"));

    // Unreachable, fail_closed: 503.
    let gate = Gate::new(policy(&doc_with("rate_limits", json!({"mode": "exact", "on_unavailable": "fail_closed", "rules": rules}))));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "rate_limiter_unavailable", Www::Absent);
    io.limiter.set(Limiter::Gcra);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).authenticated);
}

#[test]
fn rate_limit_binding_mode() {
    let rules = json!([with(per_sub_rule(json!({"binding": "RL_SUB"})), json!({"rate": 10, "burst": 10}))]);
    let gate = gate(&doc_with("rate_limits", json!({"mode": "binding", "rules": rules, "ip_pre_auth": {"rate": 100, "period_secs": 60, "burst": 100}})));
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t).client_ip(CLIENT_IP)));
    assert!(fwd.limit_headers.is_empty(), "the binding reports no remaining count");
    let calls = io.take_calls();
    let asks: Vec<&String> = calls.iter().filter(|c| c.starts_with("ask_")).collect();
    assert_eq!(asks.len(), 1, "the pre-auth IP limit stays in the isolate: {calls:?}");
    assert!(asks[0].starts_with("ask_limit_binding RL_SUB per-sub:sub:"), "{}", asks[0]);

    io.binding.set(Binding::Deny);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 429, "rate_limited", Www::Absent);
    assert_eq!(hdr(&rf.response.headers, "retry-after"), Some("6"), "the rule's emission interval (60 s / 10)");

    io.binding.set(Binding::Unreachable);
    assert!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).authenticated, "limited locally instead");
    assert_eq!(io.events("rate_limiter_unavailable").len(), 1);
}

#[test]
fn pre_auth_ip_limit_comes_before_the_credential() {
    let gate = gate(&doc_with("rate_limits", json!({"ip_pre_auth": {"rate": 60, "period_secs": 60, "burst": 2}})));
    let io = FakeIo::new();
    let good = ed_token(json!({}));
    for _ in 0..2 {
        refused(decide(&gate, &io, &req("GET", "/api/x").bearer("garbage").client_ip(CLIENT_IP)), 401, "malformed_token", Www::InvalidToken);
    }
    // Over the limit: refused before the (valid) token is even parsed.
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&good).client_ip(CLIENT_IP)), 429, "rate_limited", Www::Absent);
    assert_eq!(hdr(&rf.response.headers, "ratelimit-policy"), Some("\"ip_pre_auth\";q=60;w=60"));
    assert_eq!((rf.log.credential, rf.log.token_cache), (None, None));
    assert_eq!(io.count("verify_signature"), 0);
    // Other clients, clients without an address, and public routes are not affected.
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("garbage").client_ip("198.51.100.1")), 401, "malformed_token", Www::InvalidToken);
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer("garbage")), 401, "malformed_token", Www::InvalidToken);
    forwarded(decide(&gate, &io, &req("GET", "/public/x").client_ip(CLIENT_IP)));
    // IPv6 clients are limited per /64.
    for ip in ["2001:db8:0:1::1", "2001:db8:0:1::2"] {
        refused(decide(&gate, &io, &req("GET", "/api/x").bearer("garbage").client_ip(ip)), 401, "malformed_token", Www::InvalidToken);
    }
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&good).client_ip("2001:db8:0:1::3")), 429, "rate_limited", Www::Absent);
    refused(decide(&gate, &io, &req("GET", "/partner/x").client_ip("2001:db8:0:1::3")), 429, "rate_limited", Www::Absent);
}

/// Issue 21: a rule's key table at `local_capacity` drops its least recently used key even while
/// that key's window is open; the gate says so, at most once a minute.
#[test]
fn live_limiter_evictions_are_logged_once_a_minute() {
    let gate = gate(&doc_with("rate_limits", json!({"local_capacity": 2, "ip_pre_auth": {"rate": 1, "period_secs": 3600, "burst": 5}})));
    let io = FakeIo::new();
    let from = |i: u32| req("GET", "/api/x").bearer("garbage").client_ip(&format!("198.51.100.{i}"));
    for i in 0..2 {
        refused(decide(&gate, &io, &from(i)), 401, "malformed_token", Www::InvalidToken);
    }
    assert!(io.events("rate_limiter_evicting_live").is_empty(), "below the capacity nothing is evicted");
    for i in 2..6 {
        refused(decide(&gate, &io, &from(i)), 401, "malformed_token", Www::InvalidToken);
    }
    let ev = io.events("rate_limiter_evicting_live");
    assert_eq!(ev.len(), 1, "once a minute: {ev:?}");
    assert_eq!(ev[0].0, Level::Warn);
    assert_eq!((ev[0].1["evicted_live"].as_u64(), ev[0].1["capacity_per_rule"].as_u64()), (Some(1), Some(2)));
    io.advance_secs(61);
    refused(decide(&gate, &io, &from(7)), 401, "malformed_token", Www::InvalidToken);
    let ev = io.events("rate_limiter_evicting_live");
    assert_eq!((ev.len(), ev[1].1["evicted_live"].as_u64(), ev[1].1["since_last"].as_u64()), (2, Some(5), Some(4)));
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

const APP: &str = "https://app.example";

fn cors_doc() -> Value {
    let mut d = doc_with("cors", json!({"allowed_origins": [APP], "allow_credentials": true, "max_age_secs": 300}));
    d["csrf"] = json!({"allowed_origins": [APP]});
    d["rate_limits"] = json!({"ip_pre_auth": {"rate": 60, "period_secs": 60, "burst": 3}});
    d["routes"].as_array_mut().unwrap().insert(0, json!({"path": "/nocors/*", "cors": false}));
    d
}

fn preflight(path: &str, origin: &str, method: &str, headers: Option<&str>) -> Req {
    let r = req("OPTIONS", path).header("origin", origin).header("access-control-request-method", method).client_ip(CLIENT_IP);
    match headers {
        Some(h) => r.header("access-control-request-headers", h),
        None => r,
    }
}

/// Issue 20: a preflight is answered at the edge without a credential or any I/O, from an
/// allowed origin for allowed methods and headers only; every answer to an allowed origin —
/// refusals included — carries the CORS headers, and the origin's response gets them in place of
/// its own; a route with `cors: false` is left alone.
#[test]
fn cors_preflights_and_headers_on_every_answer() {
    let gate = gate(&cors_doc());
    let io = FakeIo::new();
    let r = preflight("/api/x", APP, "POST", Some("Authorization, Content-Type, X-CSRF-Token"));
    let Outcome::Answer(a) = decide(&gate, &io, &r) else { panic!("a preflight is answered by the gate") };
    let h = &a.response.headers;
    assert_eq!(a.response.status, 204);
    assert_eq!(
        [
            hdr(h, "access-control-allow-origin"),
            hdr(h, "access-control-allow-methods"),
            hdr(h, "access-control-allow-headers"),
            hdr(h, "access-control-max-age"),
            hdr(h, "access-control-allow-credentials"),
            hdr(h, "vary")
        ],
        [
            Some(APP),
            Some("GET, HEAD, POST, PUT, PATCH, DELETE"),
            Some("authorization, content-type, x-csrf-token, dpop"),
            Some("300"),
            Some("true"),
            Some("Origin")
        ]
    );
    assert_eq!(hdr(h, "x-request-id"), Some(r.id.as_str()));
    assert_eq!((a.log.decision, a.log.status), ("preflight", 204));
    assert_eq!(io.take_calls(), [BLOCKS_READ], "no credential, no I/O but the isolate's first read of the block list");

    // Refused preflights: another origin, method or header. No allow header: the browser blocks.
    for (what, p) in [
        ("origin", preflight("/api/x", "https://evil.example", "GET", None)),
        ("method", preflight("/api/x", APP, "PROPFIND", None)),
        ("header", preflight("/api/x", APP, "GET", Some("authorization, x-evil"))),
    ] {
        io.advance_secs(1);
        let rf = refused(decide(&gate, &io, &p), 403, "cors_rejected", Www::Absent);
        assert!(rf.response.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{what}: {:?}", rf.response.headers);
        assert_eq!(hdr(&rf.response.headers, "vary"), Some("Origin"), "{what}");
        assert!(rf.log.detail.as_deref().is_some_and(|d| d.contains(what)), "{what}: {:?}", rf.log.detail);
    }
    // Preflights count against ip_pre_auth like any request without a credential (burst 3).
    for _ in 0..3 {
        let _ = decide(&gate, &io, &preflight("/api/x", APP, "GET", None));
    }
    refused(decide(&gate, &io, &preflight("/api/x", APP, "GET", None)), 429, "rate_limited", Www::Absent);

    // A refusal to an allowed origin is readable by the app: 401 with its challenge exposed.
    let gate = Gate::new(policy(&cors_doc()));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").header("origin", APP)), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    let h = &rf.response.headers;
    assert_eq!((hdr(h, "access-control-allow-origin"), hdr(h, "access-control-allow-credentials"), hdr(h, "vary")), (Some(APP), Some("true"), Some("Origin")));
    assert_eq!(hdr(h, "access-control-expose-headers"), Some("www-authenticate, retry-after, ratelimit, ratelimit-policy, dpop-nonce, x-request-id"));
    // Another origin: nothing to read. No Origin at all (not a browser's cross-origin call): no CORS headers.
    let other =
        refused(decide(&gate, &io, &req("GET", "/api/x").header("origin", "https://evil.example")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert_eq!((hdr(&other.response.headers, "access-control-allow-origin"), hdr(&other.response.headers, "vary")), (None, Some("Origin")));
    let plain = refused(decide(&gate, &io, &req("GET", "/api/x")), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert!(plain.response.headers.iter().all(|(k, _)| !k.starts_with("access-control-")));
    assert_eq!(hdr(&plain.response.headers, "vary"), Some("Origin"), "a cache must not serve it to a CORS call");

    // A forwarded request: the origin's response gets the gate's CORS headers instead of its own.
    let mut fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({}))).header("origin", APP)));
    let edits = gate.respond(&io, &mut fwd, 200, OriginCookies::Each(vec![]), None, NOW);
    assert!(edits.replace_cors);
    assert_eq!(hdr(&edits.set, "access-control-allow-origin"), Some(APP));
    assert_eq!(edits.append, vec![("vary".to_string(), "Origin".to_string())]);
    let mut public = forwarded(decide(&gate, &io, &req("GET", "/public/x")));
    let edits = gate.respond(&io, &mut public, 200, OriginCookies::Each(vec![]), None, NOW);
    assert!(edits.replace_cors && hdr(&edits.set, "access-control-allow-origin").is_none(), "no Origin: none of the origin's CORS headers either");
    assert_eq!(edits.append, vec![("vary".to_string(), "Origin".to_string())]);
    // The gate's own 502 is readable by the app too.
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "u-5"}))).header("origin", APP)));
    let down = gate.origin_failed(*fwd, "down".into());
    assert_eq!(hdr(&down.response.headers, "access-control-allow-origin"), Some(APP));

    // `cors: false` on a route: its preflight is an ordinary OPTIONS request (here refused for
    // want of a token), and the origin's own CORS headers pass.
    let rf = refused(decide(&gate, &io, &preflight("/nocors/x", APP, "GET", None)), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
    assert!(rf.response.headers.iter().all(|(k, _)| !k.starts_with("access-control-")));
    let mut fwd = forwarded(decide(&gate, &io, &req("GET", "/nocors/x").bearer(&ed_token(json!({"sub": "u-9"}))).header("origin", APP)));
    let edits = gate.respond(&io, &mut fwd, 200, OriginCookies::Each(vec![]), None, NOW);
    assert!(!edits.replace_cors && edits.append.is_empty());

    // Found in review: a `cors: false` rule for some methods only. Its preflight (asking for
    // POST) is left alone all the way: forwarded as an ordinary request, the origin's CORS
    // headers kept, though the OPTIONS request itself matches a CORS rule.
    let mut d = cors_doc();
    let routes = d["routes"].as_array_mut().unwrap();
    routes.insert(0, json!({"path": "/legacy/*", "methods": ["POST"], "public": true, "cors": false}));
    routes.insert(1, json!({"path": "/legacy/*", "public": true}));
    let legacy = Gate::new(policy(&d));
    let mut fwd = forwarded(decide(&legacy, &io, &preflight("/legacy/x", APP, "POST", None)));
    let edits = legacy.respond(&io, &mut fwd, 204, OriginCookies::Each(vec![]), None, NOW);
    assert!(!edits.replace_cors && edits.append.is_empty());
    let Outcome::Answer(a) = decide(&legacy, &io, &preflight("/legacy/x", APP, "GET", None)) else { panic!("GET is a CORS rule's: answered") };
    assert_eq!(a.response.status, 204);

    // Without a cors section nothing changes: a preflight needs a credential like any request.
    let plain_gate = gate_without_cors();
    refused(decide(&plain_gate, &io, &preflight("/api/x", APP, "GET", None)), 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""));
}

fn gate_without_cors() -> Gate {
    Gate::new(policy(&doc()))
}

#[test]
fn cors_configuration_is_checked() {
    let bad = |cors: Value| Policy::from_json(&doc_with("cors", cors).to_string()).unwrap_err().field;
    assert_eq!(bad(json!({"allowed_origins": ["*"], "allow_credentials": true})), "cors.allowed_origins");
    assert_eq!(bad(json!({"allowed_origins": ["https://app.example/"]})), "cors.allowed_origins[0]");
    assert_eq!(bad(json!({"allowed_origins": ["app.example"]})), "cors.allowed_origins[0]");
    assert_eq!(bad(json!({"allowed_origins": []})), "cors.allowed_origins");
    assert_eq!(bad(json!({"allowed_origins": [APP], "allowed_methods": ["G T"]})), "cors.allowed_methods[0]");
    assert_eq!(bad(json!({"allowed_origins": [APP], "allowed_headers": ["a:b"]})), "cors.allowed_headers[0]");
    assert_eq!(bad(json!({"allowed_origins": [APP], "max_age_secs": 86401})), "cors.max_age_secs");
    assert_eq!(bad(json!({"allowed_origins": [APP], "nope": 1})), "cors");
    // "*" without credentials: any origin may read, answered with "*".
    let star = Gate::new(policy(&doc_with("cors", json!({"allowed_origins": ["*"]}))));
    let rf = refused(
        decide(&star, &FakeIo::new(), &req("GET", "/api/x").header("origin", "https://any.example")),
        401,
        "missing_token",
        Www::Is("Bearer realm=\"edgeward\""),
    );
    assert_eq!(hdr(&rf.response.headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(hdr(&rf.response.headers, "access-control-allow-credentials"), None);
    // CORS does not widen CSRF: an origin allowed with credentials but not for CSRF is a warning.
    let p = policy(&doc_with("cors", json!({"allowed_origins": [APP], "allow_credentials": true})));
    assert!(p.warnings.iter().any(|w| w.contains(APP) && w.contains("csrf.allowed_origins")), "{:?}", p.warnings);
    assert!(!policy(&cors_doc()).warnings.iter().any(|w| w.contains("csrf.allowed_origins")));
}

// ---------------------------------------------------------------------------------------------
// Cookies and CSRF
// ---------------------------------------------------------------------------------------------

#[test]
fn csrf_on_cookie_authenticated_unsafe_requests() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let cookie = format!("__Host-session={t}; theme=dark");
    let post = || req("POST", "/api/orders").header("Cookie", &cookie);

    let rf = refused(decide(&gate, &io, &post()), 403, "csrf_rejected", Www::Absent);
    assert_eq!(rf.log.credential, Some(CredentialSource::Cookie));
    assert_eq!(io.count("verify_signature"), 0, "refused before verification");
    refused(decide(&gate, &io, &post().header("Origin", "https://evil.example")), 403, "csrf_rejected", Www::Absent);
    refused(decide(&gate, &io, &post().header("Sec-Fetch-Site", "cross-site")), 403, "csrf_rejected", Www::Absent);
    refused(decide(&gate, &io, &post().header("X-CSRF-Token", "guess")), 403, "csrf_rejected", Www::Absent);

    // The same origin: forwarded, the token cookie removed (others kept), a CSRF cookie minted.
    let mut fwd = forwarded(decide(&gate, &io, &post().header("Origin", EDGE)));
    assert!(fwd.mint_csrf);
    assert_eq!(fwd.log.credential, Some(CredentialSource::Cookie));
    assert_eq!(hdr_all(&fwd.plan.headers, "cookie"), vec!["theme=dark"]);
    let edits = gate.respond(&io, &mut fwd, 201, OriginCookies::Each(vec![]), Some([7u8; 32]), io.now_secs());
    let minted = edits.set_cookies.expect("a CSRF cookie");
    assert_eq!(minted, vec![format!("__Host-edgeward-csrf={}; Path=/; Secure; SameSite=Strict", b64(&[7u8; 32]))]);

    // Other same-origin signals, and the double-submit token (then nothing is minted).
    assert!(forwarded(decide(&gate, &io, &post().header("Sec-Fetch-Site", "same-origin"))).mint_csrf);
    let with_csrf = format!("{cookie}; __Host-edgeward-csrf=abc123");
    let fwd = forwarded(decide(&gate, &io, &req("POST", "/api/orders").header("Cookie", &with_csrf).header("X-CSRF-Token", "abc123")));
    assert!(!fwd.mint_csrf);
    // Safe methods and bearer headers are not affected.
    forwarded(decide(&gate, &io, &req("GET", "/api/orders").header("Cookie", &cookie)));
    assert!(!forwarded(decide(&gate, &io, &req("POST", "/api/orders").bearer(&t))).mint_csrf);
    // Allowed other origins.
    let allowed = Gate::new(policy(&doc_with("csrf", json!({"allowed_origins": ["https://app.example"]}))));
    forwarded(decide(&allowed, &io, &post().header("Origin", "https://app.example")));
}

#[test]
fn a_dead_token_in_the_cookie_is_cleared() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let clear = "__Host-session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax";
    let expired = ed_token(json!({"exp": NOW - 3600, "iat": NOW - 7200}));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").header("Cookie", &format!("__Host-session={expired}"))), 401, "expired", Www::InvalidToken);
    assert_eq!(hdr_all(&rf.response.headers, "set-cookie"), vec![clear]);
    // The same token as a bearer header: nothing to clear.
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&expired)), 401, "expired", Www::InvalidToken);
    assert_eq!(hdr(&rf.response.headers, "set-cookie"), None);
    // A forged one is cleared too; a valid one lacking a scope is not.
    let forged = flip_signature_byte(&ed_token(json!({})), 3, 0x40);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").header("Cookie", &format!("__Host-session={forged}"))), 401, "bad_signature", Www::InvalidToken);
    assert_eq!(hdr_all(&rf.response.headers, "set-cookie"), vec![clear]);
    let rf = refused(
        decide(&gate, &io, &req("GET", "/billing/x").header("Cookie", &format!("__Host-session={}", ed_token(json!({}))))),
        403,
        "insufficient_scope",
        Www::Is("Bearer realm=\"edgeward\", error=\"insufficient_scope\", error_description=\"missing scope: billing\", scope=\"billing\""),
    );
    assert_eq!(hdr(&rf.response.headers, "set-cookie"), None);
}

// ---------------------------------------------------------------------------------------------
// Forwarding and the response
// ---------------------------------------------------------------------------------------------

#[test]
fn forward_plan_strips_the_credential_and_sets_the_verified_identity() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    let t = ed_token(json!({"scope": "read write"}));
    let r = req("GET", "/api/./v1//items/../orders?x=1&y=2")
        .bearer(&t)
        .client_ip(CLIENT_IP)
        .header("X-Edgeward-Sub", "spoofed")
        .header("x_edgeward_sub", "spoofed-too")
        .header("X-Forwarded-For", "10.0.0.1")
        .header("X-Request-Id", "client-chosen")
        .header("X-Original-URL", "/admin")
        .header("Accept", "application/json");
    let fwd = forwarded(decide(&gate, &io, &r));
    assert!(fwd.authenticated);
    assert_eq!(fwd.plan.url, format!("{ORIGIN}/api/v1/orders?x=1&y=2"));
    assert_eq!((fwd.log.method.as_str(), fwd.log.path.as_str()), ("GET", "/api/v1/orders"));
    let h = &fwd.plan.headers;
    assert_eq!(hdr(h, "authorization"), None);
    assert!(h.iter().all(|(_, v)| !v.contains(&t)), "the token is nowhere in the origin request");
    assert_eq!(hdr(h, "x-edgeward-auth"), Some("jwt"));
    assert_eq!(hdr_all(h, "x-edgeward-sub"), vec!["user-1"]);
    assert_eq!(hdr_all(h, "x-edgeward-iss"), vec![INLINE_ISS]);
    assert_eq!(hdr_all(h, "x-edgeward-scope"), vec!["read write"]);
    assert_eq!(hdr_all(h, "x-forwarded-for"), vec![CLIENT_IP]);
    assert_eq!(hdr_all(h, "x-request-id"), vec![r.id.as_str()], "the gate's request id, not the client's");
    assert_eq!(hdr(h, "x-original-url"), None);
    assert_eq!(hdr(h, "accept"), Some("application/json"));

    // Method overrides are stripped (request.method_override: strip, the default).
    let r = req("POST", "/api/x?_method=DELETE&keep=1").bearer(&t).header("X-HTTP-Method-Override", "DELETE");
    let fwd = forwarded(decide(&gate, &io, &r));
    assert_eq!((fwd.method.as_str(), fwd.plan.url.as_str()), ("POST", format!("{ORIGIN}/api/x?keep=1").as_str()));
    assert_eq!(hdr(&fwd.plan.headers, "x-http-method-override"), None);

    // A token in the query parameter is taken out of the forwarded query.
    let q = Gate::new(policy(&doc_with("query_param", json!("access_token"))));
    let fwd = forwarded(decide(&q, &io, &req("GET", &format!("/api/x?a=1&access_token={t}&b=2"))));
    assert_eq!(fwd.log.credential, Some(CredentialSource::Query));
    assert_eq!(fwd.plan.url, format!("{ORIGIN}/api/x?a=1&b=2"));
}

#[test]
fn respond_sets_the_request_id_limit_headers_and_cookie_policy() {
    let d = doc_with("rate_limits", json!({"rules": [per_sub_rule(json!({}))]}));
    let gate = gate(&d);
    let io = FakeIo::new();
    let t = ed_token(json!({}));
    let r = req("GET", "/api/x").bearer(&t);
    let mut fwd = forwarded(decide(&gate, &io, &r));
    let cookies = vec!["sid=abc".to_string(), "ok=1; Secure; HttpOnly; SameSite=Lax".to_string(), "bad".to_string()];
    let edits = gate.respond(&io, &mut fwd, 200, OriginCookies::Each(cookies), None, NOW);
    assert_eq!(
        edits.set,
        vec![
            ("x-request-id".to_string(), r.id.clone()),
            ("ratelimit-policy".to_string(), "\"per-sub\";q=60;w=60".to_string()),
            ("ratelimit".to_string(), "\"per-sub\";r=1;t=1".to_string()),
        ]
    );
    assert_eq!(edits.set_cookies, Some(vec!["sid=abc; HttpOnly; SameSite=Lax; Secure".to_string(), "ok=1; Secure; HttpOnly; SameSite=Lax".to_string()]));
    assert_eq!((fwd.log.decision, fwd.log.status, fwd.log.reason), ("accept", 200, None));
    let policy_events = io.events("cookie_policy");
    assert_eq!(policy_events.len(), 2, "the fixed and the dropped cookie are logged: {policy_events:?}");
    assert!(policy_events.iter().all(|(_, e)| !e.to_string().contains("abc")), "never a cookie's value");

    // A runtime that cannot list the cookies: none is relayed unchecked.
    let mut fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "u-2"})))));
    let edits = gate.respond(&io, &mut fwd, 200, OriginCookies::Unreadable { present: true }, None, NOW);
    assert_eq!(edits.set_cookies, Some(vec![]));
    assert_eq!(io.events("cookie_policy_unavailable").first().map(|(l, _)| *l), Some(Level::Error));
    let mut fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&ed_token(json!({"sub": "u-3"})))));
    assert_eq!(gate.respond(&io, &mut fwd, 304, OriginCookies::Unreadable { present: false }, None, NOW).set_cookies, None);
    assert_eq!(fwd.log.status, 304);

    // The policy's request id header, on forwards and on refusals.
    let custom = Gate::new(policy(&with(d, json!({"request_id_header": "X-Trace-Id"}))));
    let r = req("GET", "/api/x").bearer(&t);
    let mut fwd = forwarded(decide(&custom, &io, &r));
    assert_eq!(hdr_all(&fwd.plan.headers, "x-trace-id"), vec![r.id.as_str()]);
    assert_eq!(custom.respond(&io, &mut fwd, 200, OriginCookies::Each(vec![]), None, NOW).set[0], ("x-trace-id".to_string(), r.id.clone()));
    let r = req("GET", "/api/x");
    match decide(&custom, &io, &r) {
        Outcome::Refuse(rf) => check_refusal(&rf, 401, "missing_token", Www::Is("Bearer realm=\"edgeward\""), "x-trace-id"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------------------

fn serve_standard_jwks(io: &FakeIo) {
    io.serve_jwks(JWKS_URI, jwks_doc(vec![es_jwk(0, "es-1"), key(RS256).jwk("rs-1", json!({"use": "sig", "alg": "RS256"}))]));
}

#[test]
fn jwks_fetched_once_persisted_and_restored_by_a_fresh_isolate() {
    let gate1 = gate(&doc());
    let io = FakeIo::new();
    serve_standard_jwks(&io);
    let snapshot_key = jwks_snapshot_key(JWKS_URI);
    let t = es_token(0, "es-1", json!({}));
    let fwd = forwarded(decide(&gate1, &io, &req("GET", "/api/x").bearer(&t)));
    assert_eq!((fwd.log.jwks_fetches, fwd.log.alg, fwd.log.iss.as_deref()), (1, Some("ES256"), Some(ISS)));
    assert_eq!(
        io.take_calls(),
        vec![
            format!("kv_read {snapshot_key}"),
            format!("fetch_jwks {JWKS_URI}"),
            "verify_signature".into(),
            format!("kv_read {MANIFEST_KEY}"),
            format!("kv_read {SNAPSHOT_KEY}"),
            "kv_read revocations:v1".into(),
        ]
    );
    assert_eq!(io.events("jwks_fetch").len(), 1);
    // Another token of the same issuer (RS256 this time): keys cached, no fetch.
    let rs = key(RS256).sign(Some("rs-1"), &claims_of(ISS, json!({"sub": "user-rs"})));
    let fwd = forwarded(decide(&gate1, &io, &req("GET", "/api/x").bearer(&rs)));
    assert_eq!((fwd.log.jwks_fetches, fwd.log.alg), (0, Some("RS256")));
    assert_eq!(io.take_calls(), vec!["verify_signature".to_string()]);

    // The fresh set is persisted after the response.
    let tasks = io.take_deferred();
    assert!(matches!(tasks.as_slice(), [Deferred::PersistJwks { issuer: 0, .. }]), "{tasks:?}");
    for task in tasks {
        run_ready(gate1.run_deferred(&io, task)).unwrap();
    }
    assert_eq!(io.take_calls(), vec![format!("kv_write {snapshot_key}")]);

    // A fresh isolate (new gate, same KV, issuer unreachable) verifies without fetching.
    let io2 = FakeIo::new();
    *io2.kv.borrow_mut() = io.kv.borrow().clone();
    let gate2 = gate(&doc());
    let t2 = es_token(0, "es-1", json!({"jti": "fresh-isolate"}));
    let fwd = forwarded(decide(&gate2, &io2, &req("GET", "/api/x").bearer(&t2)));
    assert_eq!(fwd.log.jwks_fetches, 0);
    assert_eq!(io2.count("fetch_jwks"), 0);
    assert_eq!(io2.count(&format!("kv_read {snapshot_key}")), 1);
    assert_eq!(io2.events("jwks_snapshot_restore")[0].1["taken"], true);
    forwarded(decide(&gate2, &io2, &req("GET", "/api/x").bearer(&rs)));
    assert_eq!(io2.count(&format!("kv_read {snapshot_key}")), 1, "the snapshot is looked at once per isolate");
    assert_eq!(io2.count("fetch_jwks"), 0);

    // A snapshot that does not parse is ignored: the isolate fetches.
    let io3 = FakeIo::new();
    serve_standard_jwks(&io3);
    io3.kv.borrow_mut().insert(snapshot_key.clone(), b"{\"v\":1,".to_vec());
    let fwd = forwarded(decide(&gate(&doc()), &io3, &req("GET", "/api/x").bearer(&t)));
    assert_eq!(fwd.log.jwks_fetches, 1);
    assert_eq!(io3.events("jwks_snapshot_restore")[0].1["taken"], false);
}

#[test]
fn jwks_outage_without_inline_keys_is_503() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    io.serve_jwks(JWKS_URI, JwksAnswer::Fail("connect timeout".into()));
    let t = es_token(0, "es-1", json!({}));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "jwks_unavailable", Www::Absent);
    assert_eq!(rf.log.jwks_fetches, 1);
    assert_eq!(io.count("fetch_jwks"), 1);
    assert_eq!(io.count("verify_signature"), 0);
    assert!(io.events("jwks_fetch").iter().any(|(l, e)| *l == Level::Warn && e["report"]["ok"] == false));
    // Within the cooldown the failing issuer is not hammered.
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "jwks_unavailable", Www::Absent);
    assert_eq!((rf.log.jwks_fetches, io.count("fetch_jwks")), (0, 1));
    // A non-200 answer after the cooldown is no better; a good one restores service.
    io.advance_secs(30);
    io.serve_jwks(JWKS_URI, JwksAnswer::Doc { status: 500, cache_control: None, body: "oops".into() });
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&t)), 503, "jwks_unavailable", Www::Absent);
    assert_eq!(io.count("fetch_jwks"), 2);
    io.advance_secs(30);
    serve_standard_jwks(&io);
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t))).log.jwks_fetches, 1);
    assert!(io.take_deferred().iter().all(|d| matches!(d, Deferred::PersistJwks { .. })), "only a good set is persisted");
}

#[test]
fn jwks_unknown_kid_refetches_once_then_cools_down() {
    let gate = gate(&doc());
    let io = FakeIo::new();
    serve_standard_jwks(&io);
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&es_token(0, "es-1", json!({})))));
    assert_eq!(io.count("fetch_jwks"), 1);
    // Right after a fetch, an unknown kid does not refetch.
    let rotated = es_token(1, "es-2", json!({}));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&rotated)), 401, "unknown_kid", Www::InvalidToken);
    assert_eq!((rf.log.jwks_fetches, io.count("fetch_jwks")), (0, 1));
    // Past the cooldown: exactly one refetch, then the cooldown again.
    io.advance_secs(30);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&rotated)), 401, "unknown_kid", Www::InvalidToken);
    assert_eq!((rf.log.jwks_fetches, io.count("fetch_jwks")), (1, 2));
    io.advance_secs(29);
    let garbage = es_token(1, "no-such-kid", json!({}));
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&garbage)), 401, "unknown_kid", Www::InvalidToken);
    assert_eq!((rf.log.jwks_fetches, io.count("fetch_jwks")), (0, 2));
    // The issuer publishes the new key: the next refetch (cooldown over) picks it up.
    io.serve_jwks(JWKS_URI, jwks_doc(vec![es_jwk(0, "es-1"), es_jwk(1, "es-2")]));
    io.advance_secs(1);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&rotated)));
    assert_eq!((fwd.log.jwks_fetches, fwd.log.kid.as_deref()), (1, Some("es-2")));
    // An unknown kid while the issuer is down is the issuer's problem, not the client's.
    io.advance_secs(30);
    io.serve_jwks(JWKS_URI, JwksAnswer::Fail("down".into()));
    refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&es_token(2, "es-3", json!({})))), 503, "jwks_unavailable", Www::Absent);
}

#[test]
fn jwks_background_refresh_keeps_serving_the_last_good_keys() {
    let gate = gate(&doc_with("revocations", json!({"enabled": false})));
    let io = FakeIo::new();
    let ttl_300 = |keys: Vec<Value>| JwksAnswer::Doc { status: 200, cache_control: Some("max-age=300".into()), body: json!({ "keys": keys }).to_string() };
    io.serve_jwks(JWKS_URI, ttl_300(vec![es_jwk(0, "es-1")]));
    let t = |n: u32| es_token(0, "es-1", json!({ "jti": format!("bg-{n}") }));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t(1))));
    assert_eq!(io.count("fetch_jwks"), 1);
    io.take_deferred();
    // At 90 % of the TTL a refresh is due: this request is served from the cache and the
    // refresh runs after the response, one at a time.
    io.advance_secs(270);
    io.serve_jwks(JWKS_URI, ttl_300(vec![es_jwk(0, "es-1"), es_jwk(1, "es-2")]));
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t(2))));
    assert_eq!((fwd.log.jwks_fetches, io.count("fetch_jwks")), (0, 1));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t(3))));
    let tasks = io.take_deferred();
    assert!(matches!(tasks.as_slice(), [Deferred::RefreshJwks { issuer: 0 }]), "one refresh in flight: {tasks:?}");
    io.take_calls();
    for task in tasks {
        run_ready(gate.run_deferred(&io, task)).unwrap();
    }
    assert_eq!(io.take_calls(), vec![format!("fetch_jwks {JWKS_URI}"), format!("kv_write {}", jwks_snapshot_key(JWKS_URI))], "refreshed and persisted");
    // The rotated-in key works with no fetch on the request path.
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&es_token(1, "es-2", json!({})))));
    assert_eq!(fwd.log.jwks_fetches, 0);

    // The next refresh fails (and so does the snapshot write): the last good keys keep working
    // past their TTL (stale, within max_stale_secs).
    io.advance_secs(270);
    io.serve_jwks(JWKS_URI, JwksAnswer::Fail("down".into()));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t(4))));
    for task in io.take_deferred() {
        run_ready(gate.run_deferred(&io, task)).unwrap();
    }
    assert!(io.events("jwks_fetch").iter().any(|(l, e)| *l == Level::Warn && e["report"]["ok"] == false));
    io.advance_secs(100);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&t(5))));
    assert_eq!(fwd.log.jwks_fetches, 0);
    assert_eq!(io.count("fetch_jwks"), 1, "only the deferred refresh fetched");
    // A snapshot write that fails is logged, not fatal.
    io.kv_state.set(Kv::Failing);
    let snapshot = edgeward::core::jwks_cache::JwksSnapshot { v: 1, jwks_uri: JWKS_URI.into(), fetched_at: NOW, ttl_secs: 300, jwks: "{}".into() };
    run_ready(gate.run_deferred(&io, Deferred::PersistJwks { issuer: 0, snapshot })).unwrap();
    assert_eq!(io.events("jwks_snapshot_write_failed").len(), 1);
}

#[test]
fn jwks_rotation_drops_cached_tokens_of_withdrawn_keys() {
    // (Revocations off: this isolate is idle for 9 minutes, see `revocations_after_idle_isolate_with_healthy_kv`.)
    let gate = gate(&doc_with("revocations", json!({"enabled": false})));
    let io = FakeIo::new();
    io.serve_jwks(JWKS_URI, jwks_doc(vec![es_jwk(0, "es-1"), es_jwk(1, "es-2")]));
    let old = es_token(1, "es-2", json!({}));
    let keep = es_token(0, "es-1", json!({}));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&old)));
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&keep)));
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&old))).log.token_cache, Some("hit"));
    // es-2 is withdrawn (compromised); the next refresh (due at 90 % of max-age=600) sees it.
    io.serve_jwks(JWKS_URI, jwks_doc(vec![es_jwk(0, "es-1")]));
    io.advance_secs(540);
    io.take_deferred();
    forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&keep)));
    for task in io.take_deferred() {
        run_ready(gate.run_deferred(&io, task)).unwrap();
    }
    assert_eq!(io.events("jwks_fetch").last().unwrap().1["purged_tokens"], 1);
    let rf = refused(decide(&gate, &io, &req("GET", "/api/x").bearer(&old)), 401, "unknown_kid", Www::InvalidToken);
    assert_eq!(rf.log.token_cache, Some("miss"), "the cached verdict went with its key");
    assert_eq!(forwarded(decide(&gate, &io, &req("GET", "/api/x").bearer(&keep))).log.token_cache, Some("hit"));
}

// ---------------------------------------------------------------------------------------------
// The I/O of the common cases
// ---------------------------------------------------------------------------------------------

#[test]
fn io_calls_per_request_for_the_common_cases() {
    let gate = gate(&doc());
    let io = FakeIo::with_pepper();
    serve_standard_jwks(&io);
    let k = api_key(20);
    store_record(&io, &k, &record_for(&k, 20));
    let jwt = es_token(0, "es-1", json!({}));
    let revocation_reads = vec![format!("kv_read {MANIFEST_KEY}"), format!("kv_read {SNAPSHOT_KEY}"), "kv_read revocations:v1".to_string()];

    // Public: none.
    forwarded(decide(&gate, &io, &req("GET", "/public/a")));
    assert_eq!(io.take_calls(), Vec::<String>::new());
    // First JWT: snapshot look-up, fetch, signature, first revocation read.
    forwarded(decide(&gate, &io, &req("GET", "/api/a").bearer(&jwt)));
    let want: Vec<String> = [format!("kv_read {}", jwks_snapshot_key(JWKS_URI)), format!("fetch_jwks {JWKS_URI}"), "verify_signature".into()]
        .into_iter()
        .chain(revocation_reads)
        .collect();
    assert_eq!(io.take_calls(), want);
    // Cached JWT: none.
    forwarded(decide(&gate, &io, &req("GET", "/api/b").bearer(&jwt)));
    assert_eq!(io.take_calls(), Vec::<String>::new());
    // Another JWT, keys cached: the signature only.
    forwarded(decide(&gate, &io, &req("GET", "/api/b").bearer(&es_token(0, "es-1", json!({"sub": "user-7"})))));
    assert_eq!(io.take_calls(), vec!["verify_signature".to_string()]);
    // API key miss: one KV read; hit: none.
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/svc/a").api_key(&k)));
    assert_eq!(fwd.log.kv_reads, 1);
    assert_eq!(io.take_calls(), vec![format!("kv_read {}", storage_key(&k))]);
    let fwd = forwarded(decide(&gate, &io, &req("GET", "/svc/b").api_key(&k)));
    assert_eq!((fwd.log.kv_reads, fwd.log.key_cache), (0, Some("hit")));
    assert_eq!(io.take_calls(), Vec::<String>::new());
    // And nothing of it was deferred but the one JWKS persist.
    let tasks = io.take_deferred();
    assert!(matches!(tasks.as_slice(), [Deferred::PersistJwks { .. }]), "{tasks:?}");
}

// ---------------------------------------------------------------------------------------------
// README's reason codes
// ---------------------------------------------------------------------------------------------

/// The tests whose refusals are checked with `refused`/`check_refusal` (each records its codes).
const REFUSAL_TESTS: &[fn()] = &[
    introspected_opaque_tokens,
    blocked_addresses_are_refused_before_anything_else_until_their_block_ends,
    dpop_bound_token_with_its_proof,
    dpop_each_failed_check_has_its_code,
    dpop_route_modes_and_downgrade,
    dpop_server_nonces,
    dpop_exact_replay_across_isolates,
    certificate_bound_tokens,
    websocket_upgrades_only_where_allowed,
    websocket_upgrades_the_runtime_would_not_take_are_refused,
    websocket_token_entries_never_reach_the_origin_in_any_spelling,
    websocket_token_in_a_subprotocol,
    per_route_origins_and_timeouts,
    cors_preflights_and_headers_on_every_answer,
    route_methods_head_as_get_and_extension_methods,
    route_auth_kinds_and_credential_not_accepted,
    admin_prefix_is_the_control_planes,
    request_refusals_come_before_any_credential_or_io,
    jwt_refusals_on_the_full_path,
    insufficient_scope_and_claim_not_forwardable,
    config_invalid_when_unconfigured_or_an_upstream_secret_is_missing,
    origin_unreachable_is_a_502_without_detail,
    api_key_accepted_cache_hit_vs_miss_and_record_ttl,
    api_key_unknown_is_negatively_cached,
    api_key_record_refusals,
    api_keys_unavailable_without_pepper_or_kv,
    jwt_token_cache_hit_skips_the_signature,
    revocation_snapshot_revokes_tokens_cached_ones_included,
    revocations_unavailable_without_kv_or_past_max_age,
    strict_mode_asks_the_ledger_on_sensitive_routes_only,
    rate_limit_local_burst_then_429,
    rate_limit_exact_mode_and_its_outage,
    rate_limit_binding_mode,
    pre_auth_ip_limit_comes_before_the_credential,
    csrf_on_cookie_authenticated_unsafe_requests,
    a_dead_token_in_the_cookie_is_cleared,
    respond_sets_the_request_id_limit_headers_and_cookie_policy,
    jwks_outage_without_inline_keys_is_503,
    jwks_unknown_kid_refetches_once_then_cools_down,
    jwks_rotation_drops_cached_tokens_of_withdrawn_keys,
];

/// Codes that only an adapter produces (see the comment after `origin_unreachable_is_a_502_without_detail`).
const ADAPTER_ONLY_CODES: &[&str] = &["admin_unavailable"];

/// `s` without its parenthesized parts.
fn strip_parens(s: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The codes of README's "Responses and reason codes" table: in its last column, each item
/// (separated by `,` or `;`, parenthesized remarks removed) that starts with a code in backticks.
fn readme_codes() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let section = readme.split("\n## Responses and reason codes").nth(1).expect("README has the reason code section");
    let section = section.split("\n## ").next().unwrap();
    let mut codes = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').collect();
        let status = cells.get(1).map_or("", |c| c.trim());
        if cells.len() < 5 || status.is_empty() || !status.bytes().all(|b| b.is_ascii_digit()) {
            continue; // the heading and separator rows
        }
        for item in strip_parens(cells[cells.len() - 2]).split([',', ';']) {
            let Some(rest) = item.trim().strip_prefix('`') else { continue };
            let Some((code, _)) = rest.split_once('`') else { continue };
            if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                codes.insert(code.to_string());
            }
        }
    }
    codes
}

#[test]
fn every_readme_reason_code_has_a_host_test() {
    let documented = readme_codes();
    // The parser itself: codes from several rows and shapes of the table.
    for c in ["missing_token", "credential_not_accepted", "api_key_invalid", "audience_mismatch", "method_not_allowed", "rate_limited", "admin_unavailable"] {
        assert!(documented.contains(c), "README parser missed {c}: {documented:?}");
    }
    assert!(documented.len() >= 40, "{documented:?}");
    PRODUCED.with(|p| p.borrow_mut().clear());
    for t in REFUSAL_TESTS {
        t();
    }
    let produced: BTreeSet<&str> = PRODUCED.with(|p| p.borrow().clone());
    let untested: Vec<&String> = documented.iter().filter(|c| !produced.contains(c.as_str()) && !ADAPTER_ONLY_CODES.contains(&c.as_str())).collect();
    assert!(untested.is_empty(), "README reason codes no host test produces through the pipeline: {untested:?}");
    let undocumented: Vec<&&str> = produced.iter().filter(|c| !documented.contains(**c)).collect();
    assert!(undocumented.is_empty(), "codes the pipeline produces that README's table does not list: {undocumented:?}");
    for c in ADAPTER_ONLY_CODES {
        assert!(documented.contains(*c) && !produced.contains(c));
    }
}
