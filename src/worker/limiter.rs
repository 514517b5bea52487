//! Rate-limit state for the Worker: `local` mode keeps TATs in the isolate; `exact` mode asks the
//! `RateLimiter` Durable Object that owns the key's shard, which runs the same core GCRA step with
//! an atomic read-modify-write. If the object cannot be reached, the Worker limits locally (and logs
//! it) or refuses, per `rate_limits.on_unavailable`.

use super::js;
use crate::core::error::AuthError;
use crate::core::log::fingerprint;
use crate::core::ratelimit::{Bucket, Decision, LimitMode, LocalLimiter, OnUnavailable, Quota, RateLimitPolicy};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{console_warn, Env};

/// Durable Object binding name.
pub const DO_BINDING: &str = "EDGEWARD_LIMITER";
/// Keys are spread over this many objects.
const SHARDS: u64 = 32;

thread_local! {
    static LOCAL: RefCell<LocalLimiter> = RefCell::new(LocalLimiter::default());
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Ask {
    pub(crate) key: String,
    pub(crate) quota: Quota,
}

fn shard(key: &str) -> String {
    let fp = fingerprint(key.as_bytes());
    let n = u64::from_str_radix(&fp["sha256:".len().."sha256:".len() + 8], 16).unwrap_or(0);
    format!("shard-{}", n % SHARDS)
}

async fn ask_object(env: &Env, bucket: &Bucket) -> Result<Decision, String> {
    let ns = env.durable_object(DO_BINDING).map_err(|e| e.to_string())?;
    let stub = ns.get_by_name(&shard(&bucket.key)).map_err(|e| e.to_string())?;
    let body = serde_json::to_string(&Ask { key: bucket.key.clone(), quota: bucket.quota }).map_err(|e| e.to_string())?;
    let req = super::post_request("https://limiter/check", &body)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(|e| e.to_string())?;
    if resp.status_code() != 200 {
        return Err(format!("limiter answered {}", resp.status_code()));
    }
    let text = resp.text().await.map_err(|e| e.to_string())?;
    crate::core::json::from_text::<Decision>(&text).map_err(|e| e.to_string())
}

/// Asks Cloudflare's rate-limiting binding. It says only yes or no: a refusal is told to retry
/// after the rule's emission interval, and no remaining count is reported.
async fn ask_binding(env: &Env, bucket: &Bucket) -> Result<Decision, String> {
    let name = bucket.binding.as_deref().ok_or("no binding")?;
    let success = js::rate_limit(env, name, &bucket.key).await?;
    let t = bucket.quota.interval_ms();
    Ok(if success {
        Decision { allowed: true, tat_ms: 0, remaining: 0, retry_after_ms: 0, reset_ms: 0 }
    } else {
        Decision { allowed: false, tat_ms: 0, remaining: 0, retry_after_ms: t, reset_ms: t }
    })
}

/// Applies one request to every bucket; returns the most restrictive decision (and its bucket),
/// or the refusal.
pub async fn check(policy: &RateLimitPolicy, env: &Env, buckets: &[Bucket], now_ms: i64) -> Result<Option<(Bucket, Decision)>, AuthError> {
    let mut tightest: Option<(Bucket, Decision)> = None;
    for b in buckets {
        let local = || LOCAL.with(|l| l.borrow_mut().check(b, now_ms));
        let remote = match policy.mode {
            LimitMode::Local => None,
            // The pre-auth IP bucket has no binding: it is kept in the isolate.
            LimitMode::Binding if b.binding.is_none() => None,
            LimitMode::Binding => Some(ask_binding(env, b).await),
            LimitMode::Exact => Some(ask_object(env, b).await),
        };
        let d = match remote {
            None => local(),
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                // Never silently unlimited: limit in the isolate, or refuse.
                console_warn!(
                    "{}",
                    serde_json::json!({"event": "rate_limiter_unavailable", "rule": b.rule, "error": e, "fallback": matches!(policy.on_unavailable, OnUnavailable::Local)})
                );
                match policy.on_unavailable {
                    OnUnavailable::Local => local(),
                    OnUnavailable::FailClosed => return Err(AuthError::RateLimiterUnavailable),
                }
            }
        };
        if !d.allowed {
            let headers = crate::core::ratelimit::headers(&b.rule, &b.quota, &d).map(|(k, v)| (k.to_string(), v)).to_vec();
            return Err(AuthError::RateLimited { rule: b.rule.clone(), retry_after_secs: crate::core::ratelimit::retry_after_secs(&d), headers });
        }
        if tightest.as_ref().is_none_or(|(_, t)| d.remaining < t.remaining) {
            tightest = Some((b.clone(), d));
        }
    }
    Ok(tightest)
}
