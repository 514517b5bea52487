//! [`GateIo`] in a Worker: `fetch` (with a timeout and a size cap) for JWKS, KV through its JS
//! API, the `RevocationLedger` and `RateLimiter` Durable Objects and the rate-limiting binding,
//! WebCrypto for signatures, Worker secrets, `console` for events, and `ctx.waitUntil` for
//! deferred work.

use super::js::{read_capped, Capped, KvStore};
use super::webcrypto;
use crate::core::error::AuthError;
use crate::core::io::{Deferred, GateIo, IoError, LedgerFacts, Level};
use crate::core::jwks_cache::{FetchOutcome, MAX_JWKS_BYTES};
use crate::core::log::fingerprint;
use crate::core::pipeline::Gate;
use crate::core::ratelimit::{Bucket, Decision, Quota};
use crate::core::verify::{SignatureJob, SignatureProof};
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Duration;
use worker::{console_error, console_log, console_warn, Context, Env, Request, Response};

/// Name of the KV binding (JWKS snapshots, API key records, the revocation snapshot).
pub const KV_BINDING: &str = "EDGEWARD_KV";
/// Durable Object binding of the revocation ledger.
pub const LEDGER_BINDING: &str = "EDGEWARD_LEDGER";
/// Durable Object binding of the rate limiter.
pub const DO_BINDING: &str = "EDGEWARD_LIMITER";
/// Rate-limit keys are spread over this many objects.
const SHARDS: u64 = 32;
/// Durable Object binding of the DPoP replay guard (`dpop.replay: "exact"`).
pub const REPLAY_BINDING: &str = "EDGEWARD_REPLAY";
/// Durable Object binding of the usage store (control Worker), [`crate::core::usage::SHARDS`]
/// objects `usage-N`.
pub const USAGE_BINDING: &str = "EDGEWARD_USAGE";
/// The optional Workers Analytics Engine binding: one data point per counted decision.
pub const ANALYTICS_BINDING: &str = "EDGEWARD_ANALYTICS";
/// DPoP replay keys are spread over this many objects (the control Worker's `replay::SHARDS`).
const REPLAY_SHARDS: u64 = 32;

/// What the gate asks the `RateLimiter` object (a contract between the two Workers).
#[derive(Serialize, Deserialize)]
pub(crate) struct LimiterAsk {
    pub(crate) key: String,
    pub(crate) quota: Quota,
}

/// The pipeline's I/O for one request (or one deferred task: then without a context).
pub struct WorkerIo {
    env: Env,
    ctx: Option<Rc<Context>>,
    gate: Rc<Gate>,
    kv: OnceCell<Option<KvStore>>,
}

impl WorkerIo {
    /// The I/O of a request served by `gate`; deferred work goes to `ctx.waitUntil`.
    pub fn new(env: Env, ctx: Option<Rc<Context>>, gate: Rc<Gate>) -> WorkerIo {
        WorkerIo { env, ctx, gate, kv: OnceCell::new() }
    }

    /// The environment.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Keeps the request's context alive until `p` settles (`ctx.waitUntil`); without a context
    /// (already in the background), nothing to extend.
    pub fn wait_until(&self, p: worker::js_sys::Promise) {
        if let Some(ctx) = &self.ctx {
            ctx.wait_until(async move {
                let _ = super::promise::settle(&p).await;
            });
        }
    }

    fn kv(&self) -> Option<&KvStore> {
        self.kv.get_or_init(|| kv_binding(&self.env)).as_ref()
    }
}

impl GateIo for WorkerIo {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.env.secret(name).ok().map(|s| s.to_string())
    }

    fn log(&self, level: Level, event: &serde_json::Value) {
        match level {
            Level::Info => console_log!("{event}"),
            Level::Warn => console_warn!("{event}"),
            Level::Error => console_error!("{event}"),
        }
    }

    fn defer(&self, task: Deferred) {
        let Some(ctx) = &self.ctx else {
            // Already in the background: nothing runs after it.
            console_warn!("{}", serde_json::json!({"event": "deferred_dropped", "task": task.name()}));
            return;
        };
        let (gate, io) = (self.gate.clone(), WorkerIo::new(self.env.clone(), None, self.gate.clone()));
        ctx.wait_until(async move { gate.run_deferred(&io, task).await });
    }

    fn has_kv(&self) -> bool {
        self.kv().is_some()
    }

    fn counts_usage(&self) -> bool {
        true
    }

    fn has_analytics(&self) -> bool {
        super::js::analytics(&self.env, ANALYTICS_BINDING).is_some()
    }

    fn write_data_point(&self, point: &crate::core::usage::AnalyticsPoint) {
        if let Some(binding) = super::js::analytics(&self.env, ANALYTICS_BINDING) {
            if let Err(e) = super::js::write_data_point(&binding, point) {
                console_warn!("{}", serde_json::json!({"event": "analytics_write_failed", "error": e.to_string()}));
            }
        }
    }

    async fn sleep_ms(&self, ms: u32) {
        worker::Delay::from(Duration::from_millis(u64::from(ms))).await;
    }

    async fn send_usage(&self, shard: u32, batch: &str) -> Result<(), IoError> {
        let failed = |e: worker::Error| IoError::Failed(e.to_string());
        let ns = self.env.durable_object(USAGE_BINDING).map_err(|_| IoError::NotBound(USAGE_BINDING))?;
        let stub = ns.get_by_name(&format!("usage-{shard}")).map_err(failed)?;
        let resp = stub.fetch_with_request(post_request("https://usage/ingest", batch)?).await.map_err(failed)?;
        match resp.status_code() {
            200 => Ok(()),
            s => Err(IoError::BadAnswer(format!("usage store answered {s}"))),
        }
    }

    async fn fetch_jwks(&self, uri: &str, timeout_ms: u32) -> FetchOutcome {
        http_fetch(uri, timeout_ms).await
    }

    async fn kv_read(&self, key: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, IoError> {
        let kv = self.kv().ok_or(IoError::NotBound("KV"))?;
        kv.bytes_capped(key, max_bytes).await
    }

    async fn kv_write(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        let kv = self.kv().ok_or(IoError::NotBound("KV"))?;
        kv.put_bytes(key, value).await
    }

    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        webcrypto::verify(job).await
    }

    async fn introspect(&self, endpoint: &str, form: &str, authorization: Option<&str>, timeout_ms: u32) -> Result<(u16, String), IoError> {
        use worker::web_sys;
        let failed = |e: String| IoError::Failed(e);
        let headers = web_sys::Headers::new().map_err(|_| failed("headers".into()))?;
        let _ = headers.set("content-type", "application/x-www-form-urlencoded");
        let _ = headers.set("accept", "application/json");
        if let Some(a) = authorization {
            let _ = headers.set("authorization", a);
        }
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        init.set_body(&worker::wasm_bindgen::JsValue::from_str(form));
        init.set_redirect(web_sys::RequestRedirect::Manual);
        let req = web_sys::Request::new_with_str_and_init(endpoint, &init).map_err(|e| failed(format!("bad introspection request: {e:?}")))?;
        let call = async {
            let resp: web_sys::Response = worker::Fetch::Request(Request::from(req)).send().await.map_err(|e| IoError::Failed(e.to_string()))?.into();
            let status = resp.status();
            let body = match resp.body() {
                Some(stream) => match read_capped(&stream, crate::core::io::MAX_INTROSPECTION_BYTES).await? {
                    Capped::Whole(b) => String::from_utf8(b).map_err(|_| IoError::BadAnswer("not UTF-8".into()))?,
                    Capped::TooLarge(_) => return Err(IoError::TooLarge(crate::core::io::MAX_INTROSPECTION_BYTES)),
                },
                None => String::new(),
            };
            Ok((status, body))
        };
        let timer = worker::Delay::from(Duration::from_millis(u64::from(timeout_ms)));
        match select(Box::pin(call), timer).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(IoError::Failed(format!("no answer within {timeout_ms} ms"))),
        }
    }

    async fn ask_ledger(&self, facts: &LedgerFacts) -> Result<bool, IoError> {
        let mut resp = ask_ledger(&self.env, serde_json::json!({"op": "check", "body": facts})).await.map_err(|e| IoError::Failed(e.to_string()))?;
        if resp.status_code() != 200 {
            return Err(IoError::BadAnswer(format!("ledger answered {}", resp.status_code())));
        }
        let text = resp.text().await.map_err(|e| IoError::Failed(e.to_string()))?;
        match serde_json::from_str::<serde_json::Value>(&text).map_err(|e| IoError::BadAnswer(e.to_string()))?["revoked"] {
            serde_json::Value::Bool(b) => Ok(b),
            _ => Err(IoError::BadAnswer("no \"revoked\"".into())),
        }
    }

    async fn claim_once(&self, key: u64, until: i64) -> Result<bool, IoError> {
        let failed = |e: worker::Error| IoError::Failed(e.to_string());
        let ns = self.env.durable_object(REPLAY_BINDING).map_err(|_| IoError::NotBound(REPLAY_BINDING))?;
        let stub = ns.get_by_name(&format!("replay-{}", key % REPLAY_SHARDS)).map_err(failed)?;
        let body = serde_json::json!({"key": format!("{key:016x}"), "until": until}).to_string();
        let mut resp = stub.fetch_with_request(post_request("https://replay/claim", &body)?).await.map_err(failed)?;
        if resp.status_code() != 200 {
            return Err(IoError::BadAnswer(format!("replay guard answered {}", resp.status_code())));
        }
        let text = resp.text().await.map_err(failed)?;
        match serde_json::from_str::<serde_json::Value>(&text).map_err(|e| IoError::BadAnswer(e.to_string()))?["first"] {
            serde_json::Value::Bool(b) => Ok(b),
            _ => Err(IoError::BadAnswer("no \"first\"".into())),
        }
    }

    async fn ask_limiter(&self, bucket: &Bucket) -> Result<Decision, IoError> {
        let failed = |e: worker::Error| IoError::Failed(e.to_string());
        let ns = self.env.durable_object(DO_BINDING).map_err(|_| IoError::NotBound(DO_BINDING))?;
        let stub = ns.get_by_name(&shard(&bucket.key)).map_err(failed)?;
        let body = serde_json::to_string(&LimiterAsk { key: bucket.key.clone(), quota: bucket.quota }).map_err(|e| IoError::Failed(e.to_string()))?;
        let req = post_request("https://limiter/check", &body)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(failed)?;
        if resp.status_code() != 200 {
            return Err(IoError::BadAnswer(format!("limiter answered {}", resp.status_code())));
        }
        let text = resp.text().await.map_err(failed)?;
        crate::core::json::from_text::<Decision>(&text).map_err(|e| IoError::BadAnswer(e.to_string()))
    }

    async fn ask_limit_binding(&self, binding: &str, key: &str) -> Result<bool, IoError> {
        super::js::rate_limit(&self.env, binding, key).await
    }
}

/// The KV namespace, if bound.
pub fn kv_binding(env: &Env) -> Option<KvStore> {
    KvStore::from_env(env, KV_BINDING)
}

/// Milliseconds since the Unix epoch (the adapters' clock; the core takes `now`).
pub fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

fn shard(key: &str) -> String {
    let fp = fingerprint(key.as_bytes());
    let n = u64::from_str_radix(&fp["sha256:".len().."sha256:".len() + 8], 16).unwrap_or(0);
    format!("shard-{}", n % SHARDS)
}

/// One command to the ledger Durable Object (the gate's strict mode, the control plane).
pub(crate) async fn ask_ledger(env: &Env, cmd: serde_json::Value) -> worker::Result<Response> {
    let stub = env.durable_object(LEDGER_BINDING)?.get_by_name("ledger")?;
    let req = post_request("https://ledger/cmd", &cmd.to_string()).map_err(|e| worker::Error::RustError(e.to_string()))?;
    stub.fetch_with_request(req).await
}

/// A `POST` with a text body for a Durable Object stub, built on `web_sys` directly
/// (`worker::Request::new_with_init` links ~10 KB of conversions this does not need).
pub(crate) fn post_request(url: &str, body: &str) -> Result<Request, IoError> {
    use worker::web_sys;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&worker::wasm_bindgen::JsValue::from_str(body));
    web_sys::Request::new_with_str_and_init(url, &init).map(Request::from).map_err(|e| IoError::Failed(format!("bad request: {e:?}")))
}

/// GET the JWKS (or the discovery document) with a timeout; only a 200 is read, as a stream,
/// never past the cap (counted after decompression). A redirect is not followed: its 3xx is the
/// answer, a failed fetch (the configuration's https-or-loopback rule holds for the URL fetched,
/// not only for the one configured).
async fn http_fetch(uri: &str, timeout_ms: u32) -> FetchOutcome {
    let req = {
        use worker::web_sys;
        let init = web_sys::RequestInit::new();
        init.set_method("GET");
        init.set_redirect(web_sys::RequestRedirect::Manual);
        match web_sys::Request::new_with_str_and_init(uri, &init) {
            Ok(r) => Request::from(r),
            Err(e) => return FetchOutcome::Failed(format!("bad jwks_uri: {e:?}")),
        }
    };
    let fetch = async {
        let resp = worker::Fetch::Request(req).send().await.map_err(|e| e.to_string())?;
        let status = resp.status_code();
        let cache_control = resp.headers().get("cache-control").ok().flatten();
        let raw: worker::web_sys::Response = resp.into();
        let body = match raw.body() {
            Some(stream) if status == 200 => match read_capped(&stream, MAX_JWKS_BYTES).await.map_err(|e| e.to_string())? {
                Capped::Whole(b) => String::from_utf8(b).map_err(|_| "JWKS is not UTF-8".to_string())?,
                Capped::TooLarge(n) => return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes (stopped reading at {n})")),
            },
            _ => String::new(),
        };
        Ok::<_, String>(FetchOutcome::Response { status, cache_control, body })
    };
    let timer = worker::Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    match select(Box::pin(fetch), timer).await {
        Either::Left((Ok(o), _)) => o,
        Either::Left((Err(e), _)) => FetchOutcome::Failed(e),
        Either::Right(_) => FetchOutcome::Failed(format!("timed out after {timeout_ms} ms")),
    }
}
