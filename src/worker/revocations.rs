//! Revocations in the gate. The `RevocationLedger` Durable Object (control plane,
//! `control/ledger.rs`: one instance, strongly consistent, ordered, idempotent) records every
//! change in its storage and publishes a compact, versioned snapshot of all active revocations to
//! KV ([`SNAPSHOT_KEY`], binary, see `core::revocation`); every isolate keeps that snapshot in
//! memory and re-reads it in the background every `revocations.refresh_secs`, so the hot path
//! checks an in-memory set and makes no KV read per request. Here: that edge copy, and the
//! client through which `sensitive` routes ask the ledger itself. The admin API
//! (`admin.path_prefix`, control plane) writes through the ledger.
//!
//! Publishing is batched: a write returns once it is durably stored in the ledger's storage, and
//! the first unpublished change sets a Durable Object alarm `PUBLISH_DELAY_MS` (500 ms) later,
//! which publishes whatever the ledger holds then — one KV write per burst of changes, at most
//! one per interval. A failed publish fails the alarm, which the runtime retries.

use super::js::KvStore;
use crate::core::error::AuthError;
use crate::core::revocation::{RevocationSet, RevocationSnapshot};
use std::cell::RefCell;
use std::rc::Rc;
use worker::{console_warn, Context, Env, Response};

/// Durable Object binding of the ledger.
pub const LEDGER_BINDING: &str = "EDGEWARD_LEDGER";
/// KV key of the published compact snapshot.
pub const SNAPSHOT_KEY: &str = "revocations:v2";
/// KV key of the JSON snapshot earlier versions published: read only while the compact one does
/// not exist yet (a ledger that has not been written to since the upgrade).
pub const LEGACY_SNAPSHOT_KEY: &str = "revocations:v1";
/// How long after the first unpublished change the ledger publishes.
#[cfg(feature = "control")]
pub const PUBLISH_DELAY_MS: u64 = 500;
/// Retry interval of a failed publish.
#[cfg(feature = "control")]
pub(crate) const PUBLISH_RETRY_MS: u64 = 5_000;

pub(crate) fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

// ---- the edge's copy ---------------------------------------------------------------------------

struct EdgeCopy {
    set: Rc<RevocationSet>,
    /// When the snapshot was last read successfully (None: never).
    loaded_at: Option<i64>,
    /// When a read was last started.
    attempted_at: Option<i64>,
}

thread_local! {
    static EDGE: RefCell<EdgeCopy> = RefCell::new(EdgeCopy { set: Rc::new(RevocationSet::default()), loaded_at: None, attempted_at: None });
}

/// Largest revocation snapshot read: Workers KV's value limit (25 MiB).
const MAX_SNAPSHOT_BYTES: usize = 25 << 20;

async fn read_snapshot(kv: &KvStore, now: i64) -> Result<RevocationSet, String> {
    // Read as a stream and capped at KV's own value limit (the snapshot is written by the control
    // Worker, never by a client).
    match kv.bytes_capped(SNAPSHOT_KEY, MAX_SNAPSHOT_BYTES).await {
        Ok(Some(b)) => RevocationSet::from_compact(&b, now).map_err(|e| e.to_string()),
        Ok(None) => match kv.text(LEGACY_SNAPSHOT_KEY).await {
            Ok(Some(t)) => {
                crate::core::json::from_text::<RevocationSnapshot>(&t).map(|s| RevocationSet::from_snapshot(&s, now)).map_err(|e| format!("bad snapshot: {e}"))
            }
            Ok(None) => Ok(RevocationSet::default()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn install(set: RevocationSet, now: i64) {
    EDGE.with(|e| {
        let mut e = e.borrow_mut();
        if set.version() >= e.set.version() || e.loaded_at.is_none() {
            e.set = Rc::new(set);
        }
        e.loaded_at = Some(now);
    });
}

/// The revocation set for this request: loaded on first use, refreshed in the background when
/// older than `refresh_secs`. Fails closed when the last good copy is older than `max_age_secs`.
pub async fn current(cfg: &crate::core::config::RevocationConfig, kv: Option<&KvStore>, ctx: &Context, now: i64) -> Result<Rc<RevocationSet>, AuthError> {
    if !cfg.enabled {
        return Ok(Rc::new(RevocationSet::default()));
    }
    let Some(kv) = kv else { return Err(AuthError::RevocationsUnavailable) };
    let (loaded_at, attempted_at) = EDGE.with(|e| (e.borrow().loaded_at, e.borrow().attempted_at));
    let stale = loaded_at.is_none_or(|t| now - t >= i64::from(cfg.refresh_secs));
    let may_try = attempted_at.is_none_or(|t| now - t >= 1);
    if stale && may_try {
        EDGE.with(|e| e.borrow_mut().attempted_at = Some(now));
        if loaded_at.is_none() {
            match read_snapshot(kv, now).await {
                Ok(s) => install(s, now),
                Err(err) => console_warn!("{}", serde_json::json!({"event": "revocations_read_failed", "error": err})),
            }
        } else {
            let kv = kv.clone();
            ctx.wait_until(async move {
                let now = now_secs();
                match read_snapshot(&kv, now).await {
                    Ok(s) => install(s, now),
                    Err(err) => console_warn!("{}", serde_json::json!({"event": "revocations_read_failed", "error": err})),
                }
            });
        }
    }
    EDGE.with(|e| {
        let e = e.borrow();
        match e.loaded_at {
            Some(t) if now - t <= i64::from(cfg.max_age_secs) => Ok(e.set.clone()),
            _ => Err(AuthError::RevocationsUnavailable),
        }
    })
}

/// Strict mode for `sensitive` routes: asks the ledger itself. Unreachable ledger → fail closed.
pub async fn check_with_ledger(env: &Env, token: &crate::core::verify::VerifiedToken) -> Result<(), AuthError> {
    let c = token.claims();
    let facts = serde_json::json!({
        "iss": token.issuer().unwrap_or(""),
        "jti": c.get("jti").and_then(|v| v.as_str()),
        "sub": token.subject(),
        "iat": c.get("iat").and_then(|v| v.as_f64()),
        "kid": token.kid(),
    });
    ledger_check(env, facts, AuthError::TokenRevoked).await
}

async fn ledger_check(env: &Env, facts: serde_json::Value, revoked: AuthError) -> Result<(), AuthError> {
    let answer = async {
        let mut resp = ask_ledger(env, serde_json::json!({"op": "check", "body": facts})).await.map_err(|e| e.to_string())?;
        if resp.status_code() != 200 {
            return Err(format!("ledger answered {}", resp.status_code()));
        }
        let text = resp.text().await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(text.as_bytes()).map_err(|e| e.to_string())
    };
    match answer.await {
        Ok(v) if v["revoked"] == serde_json::Value::Bool(false) => Ok(()),
        Ok(v) if v["revoked"] == serde_json::Value::Bool(true) => Err(revoked),
        Ok(_) => Err(AuthError::RevocationsUnavailable),
        Err(e) => {
            console_warn!("{}", serde_json::json!({"event": "revocation_ledger_unreachable", "error": e}));
            Err(AuthError::RevocationsUnavailable)
        }
    }
}

// ---- the ledger's clients (the gate's strict mode, the control plane) ----------------------------

/// One command to the ledger Durable Object.
pub(crate) async fn ask_ledger(env: &Env, cmd: serde_json::Value) -> worker::Result<Response> {
    let stub = env.durable_object(LEDGER_BINDING)?.get_by_name("ledger")?;
    let req = super::post_request("https://ledger/cmd", &cmd.to_string()).map_err(worker::Error::RustError)?;
    stub.fetch_with_request(req).await
}

/// Strict mode for an API key on a `sensitive` route: asks the ledger itself.
pub async fn check_key_with_ledger(env: &Env, key_id: &str) -> Result<(), AuthError> {
    ledger_check(env, serde_json::json!({"iss": "", "api_key": key_id}), AuthError::ApiKeyInvalid(crate::core::error::ApiKeyFailure::Revoked)).await
}
