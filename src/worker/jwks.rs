//! JWKS fetching and persistence for the Worker. The policy (when to fetch, what to keep) is the
//! core's [`IssuerKeyCache`]; this file only does the I/O it asks for: HTTP with a timeout, KV
//! snapshots, and background refreshes through `ctx.wait_until`. No promise is ever shared across
//! requests: each fetch belongs to the request (or background task) that started it.

use super::js::{read_capped, Capped, KvStore};
use crate::core::config::Policy;
use crate::core::jwk::KeySet;
use crate::core::jwks_cache::{FetchOutcome, FetchPlan, IssuerKeyCache, JwksSnapshot, Trigger, MAX_JWKS_BYTES};
use crate::core::log::fingerprint;
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::time::Duration;
use worker::{console_log, console_warn, Context};

struct Slot {
    cache: IssuerKeyCache,
    snapshot_checked: bool,
}

thread_local! {
    static SLOTS: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// Builds empty caches for a (new) policy.
pub fn reset(policy: &Policy) {
    let slots = policy
        .issuers
        .iter()
        .map(|i| i.jwks_uri.as_ref().map(|u| Slot { cache: IssuerKeyCache::new(u.clone(), policy.jwks_cache.clone()), snapshot_checked: false }))
        .collect();
    SLOTS.with(|s| *s.borrow_mut() = slots);
}

fn with_slot<T>(i: usize, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
    SLOTS.with(|s| s.borrow_mut().get_mut(i).and_then(Option::as_mut).map(f))
}

fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

fn snapshot_key(uri: &str) -> String {
    format!("jwks:v1:{}", fingerprint(uri.as_bytes()).trim_start_matches("sha256:"))
}

/// What an unknown-`kid` refetch found.
pub enum Refetch {
    /// New keys (the `kid` may or may not be among them).
    Fetched(KeySet),
    /// The issuer failed (now or on the last attempt within the cooldown).
    IssuerDown,
    /// Within the cooldown after a good fetch: the `kid` is simply unknown.
    CoolingDown,
}

/// The issuer's usable fetched keys for this request, fetching or restoring as the cache plans.
pub async fn keys_for_request(policy: &Policy, i: usize, kv: Option<&KvStore>, ctx: &Context, now: i64, fetches: &mut u32) -> Option<KeySet> {
    let uri = policy.issuers[i].jwks_uri.clone()?;
    let check_snapshot = with_slot(i, |s| !std::mem::replace(&mut s.snapshot_checked, true)).unwrap_or(false);
    if check_snapshot && with_slot(i, |s| s.cache.keys(now).is_none()).unwrap_or(false) {
        if let Some(kv) = kv {
            restore_snapshot(kv, &uri, i, now).await;
        }
    }
    match with_slot(i, |s| s.cache.plan(now, Trigger::Request))? {
        FetchPlan::Now => {
            *fetches += 1;
            fetch_and_apply(policy, i, &uri, kv.cloned(), Some(ctx)).await;
        }
        FetchPlan::Background => {
            with_slot(i, |s| s.cache.begin(now));
            let (timeout, kv) = (policy.jwks_cache.fetch_timeout_ms, kv.cloned());
            let inline = inline_fingerprints(policy, i);
            ctx.wait_until(async move {
                let outcome = http_fetch(&uri, timeout).await;
                if let Some(snap) = apply(i, &uri, outcome, &inline) {
                    if let Some(kv) = kv {
                        persist(&kv, &uri, &snap).await;
                    }
                }
            });
        }
        FetchPlan::None => {}
    }
    with_slot(i, |s| s.cache.keys(now_secs()).cloned()).flatten()
}

/// Called when the token's `kid` is not among the keys: refetch if the cooldown allows.
pub async fn refetch_for_unknown_kid(policy: &Policy, i: usize, kv: Option<&KvStore>, ctx: &Context, now: i64, fetches: &mut u32) -> Refetch {
    let Some(uri) = policy.issuers[i].jwks_uri.clone() else { return Refetch::CoolingDown };
    match with_slot(i, |s| s.cache.plan(now, Trigger::UnknownKid)) {
        Some(FetchPlan::Now) => {
            *fetches += 1;
            if fetch_and_apply(policy, i, &uri, kv.cloned(), Some(ctx)).await {
                match with_slot(i, |s| s.cache.keys(now_secs()).cloned()).flatten() {
                    Some(k) => Refetch::Fetched(k),
                    None => Refetch::IssuerDown,
                }
            } else {
                Refetch::IssuerDown
            }
        }
        _ => {
            if with_slot(i, |s| s.cache.last_attempt_failed()).unwrap_or(true) {
                Refetch::IssuerDown
            } else {
                Refetch::CoolingDown
            }
        }
    }
}

/// Fetches now, applies the outcome; persists a good set in the background. True if it was good.
async fn fetch_and_apply(policy: &Policy, i: usize, uri: &str, kv: Option<KvStore>, ctx: Option<&Context>) -> bool {
    with_slot(i, |s| s.cache.begin(now_secs()));
    let outcome = http_fetch(uri, policy.jwks_cache.fetch_timeout_ms).await;
    match apply(i, uri, outcome, &inline_fingerprints(policy, i)) {
        Some(snap) => {
            if let (Some(kv), Some(ctx)) = (kv, ctx) {
                let uri = uri.to_string();
                ctx.wait_until(async move { persist(&kv, &uri, &snap).await });
            }
            true
        }
        None => false,
    }
}

fn inline_fingerprints(policy: &Policy, i: usize) -> Vec<String> {
    policy.issuers[i].inline_keys.keys.iter().map(|k| k.fingerprint.clone()).collect()
}

/// Applies an outcome to the cache and logs it; returns the snapshot to persist if it was good.
/// New keys also drop cached tokens verified by keys that are no longer published.
fn apply(i: usize, uri: &str, outcome: FetchOutcome, inline: &[String]) -> Option<JwksSnapshot> {
    let now = now_secs();
    let (report, snap, live) = with_slot(i, |s| {
        let r = s.cache.complete(now, outcome);
        let snap = if r.ok { s.cache.snapshot() } else { None };
        let live: Vec<String> = s.cache.keys(now).map(|k| k.keys.iter().map(|k| k.fingerprint.clone()).collect()).unwrap_or_default();
        (r, snap, live)
    })?;
    let mut purged = 0;
    if report.ok {
        let fps: Vec<&str> = live.iter().chain(inline).map(String::as_str).collect();
        purged = super::purge_tokens(i, &fps);
    }
    let line = serde_json::json!({"event": "jwks_fetch", "jwks_uri": uri, "report": report, "purged_tokens": purged});
    if report.ok {
        console_log!("{line}");
    } else {
        console_warn!("{line}");
    }
    snap
}

async fn restore_snapshot(kv: &KvStore, uri: &str, i: usize, now: i64) {
    let key = snapshot_key(uri);
    // A snapshot holds one JWKS document and its metadata: capped like a fetched document.
    let got = match kv
        .bytes_capped(&key, 2 * MAX_JWKS_BYTES)
        .await
        .and_then(|b| b.map(String::from_utf8).transpose().map_err(|_| "snapshot is not UTF-8".to_string()))
    {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            console_warn!("{}", serde_json::json!({"event": "jwks_snapshot_read_failed", "error": e.to_string()}));
            return;
        }
    };
    let taken = crate::core::json::from_text::<JwksSnapshot>(&got).ok().and_then(|snap| with_slot(i, |s| s.cache.restore(&snap, now)));
    console_log!("{}", serde_json::json!({"event": "jwks_snapshot_restore", "jwks_uri": uri, "taken": taken.unwrap_or(false)}));
}

async fn persist(kv: &KvStore, uri: &str, snap: &JwksSnapshot) {
    let Ok(text) = serde_json::to_string(snap) else { return };
    if let Err(e) = kv.put_bytes(&snapshot_key(uri), text.as_bytes()).await {
        console_warn!("{}", serde_json::json!({"event": "jwks_snapshot_write_failed", "error": e.to_string()}));
    }
}

/// GET the JWKS with a timeout.
async fn http_fetch(uri: &str, timeout_ms: u32) -> FetchOutcome {
    let req = match worker::Request::new(uri, worker::Method::Get) {
        Ok(r) => r,
        Err(e) => return FetchOutcome::Failed(format!("bad jwks_uri: {e}")),
    };
    let fetch = async {
        let resp = worker::Fetch::Request(req).send().await.map_err(|e| e.to_string())?;
        let status = resp.status_code();
        let cache_control = resp.headers().get("cache-control").ok().flatten();
        let raw: worker::web_sys::Response = resp.into();
        // Only a 200 is read, as a stream, and never past the cap (counted after decompression).
        let body = match raw.body() {
            Some(stream) if status == 200 => match read_capped(&stream, MAX_JWKS_BYTES).await? {
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
