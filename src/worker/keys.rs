//! API keys in the Worker: the edge check (format and checksum offline, then one KV read by the
//! key's peppered hash, cached in the isolate for a short TTL, negative results too). The key
//! admin API (create, list, inspect, rotate, disable, delete) is the control plane's
//! (`control/keys.rs`).
//!
//! KV layout (namespace `EDGEWARD_KV`): `apikey:v1:id:<id>` holds a key id's record and
//! `apikey:v1:h:<hmac>` holds the same record under each of its secrets' hashes. No plain key
//! is stored anywhere; the pepper is the Worker secret `EDGEWARD_API_KEY_PEPPER`.

use super::js::KvStore;
use crate::core::apikey::{hash_storage_key, key_hash, KeyRecord, PresentedKey, VerifiedApiKey};
use crate::core::config::Policy;
use crate::core::error::AuthError;
use crate::core::log::DecisionLog;
use lru::LruCache;
use std::cell::RefCell;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::rc::Rc;
use worker::{console_error, Env};

/// Worker secret holding the pepper (at least 32 characters).
pub const PEPPER_SECRET: &str = "EDGEWARD_API_KEY_PEPPER";

struct Cached {
    record: Option<Rc<KeyRecord>>,
    until_ms: i64,
}

thread_local! {
    static CACHE: RefCell<Option<LruCache<[u8; 32], Cached>>> = const { RefCell::new(None) };
}

/// Empties the isolate's key cache (a new configuration).
pub fn reset(policy: &Policy) {
    let cap = NonZeroUsize::new(policy.api_keys.cache_capacity).unwrap_or(NonZeroUsize::MIN);
    CACHE.with(|c| *c.borrow_mut() = Some(LruCache::new(cap)));
}

pub(crate) fn pepper(env: &Env) -> Option<Vec<u8>> {
    let p = env.secret(PEPPER_SECRET).ok()?.to_string();
    (p.len() >= 32).then(|| p.into_bytes())
}

/// The edge check for a presented API key.
pub async fn authenticate(
    text: &str,
    policy: &Policy,
    env: &Env,
    kv: Option<&KvStore>,
    ip: Option<IpAddr>,
    now_ms: i64,
    log: &mut DecisionLog<'_>,
) -> Result<VerifiedApiKey, AuthError> {
    let presented = PresentedKey::parse(text, Some(policy.api_keys.environment)).map_err(AuthError::ApiKeyMalformed)?;
    let Some(pepper) = pepper(env) else {
        log.detail = Some(format!("the {PEPPER_SECRET} secret is missing or shorter than 32 characters"));
        return Err(AuthError::ApiKeysUnavailable);
    };
    let hash = key_hash(&pepper, &presented).ok_or(AuthError::ApiKeysUnavailable)?;
    let cached = CACHE.with(|c| c.borrow_mut().as_mut().and_then(|c| c.get(&hash.0).filter(|e| e.until_ms > now_ms).map(|e| e.record.clone())));
    let record = match cached {
        Some(r) => {
            log.key_cache = Some("hit");
            r
        }
        None => {
            log.key_cache = Some("miss");
            let kv = kv.ok_or(AuthError::ApiKeysUnavailable)?;
            log.kv_reads += 1;
            let text = kv.text(&hash_storage_key(&hash.hex())).await.map_err(|e| {
                log.detail = Some(format!("KV read failed: {e}"));
                AuthError::ApiKeysUnavailable
            })?;
            let record = match text {
                None => None,
                Some(t) => match crate::core::json::from_text::<KeyRecord>(&t) {
                    Ok(r) => Some(Rc::new(r)),
                    Err(e) => {
                        console_error!("{}", serde_json::json!({"event": "api_key_record_invalid", "error": e.to_string()}));
                        return Err(AuthError::ApiKeysUnavailable);
                    }
                },
            };
            let ttl = if record.is_some() { policy.api_keys.cache_ttl_secs } else { policy.api_keys.negative_cache_ttl_secs };
            let until_ms = now_ms + i64::from(ttl) * 1000;
            CACHE.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut() {
                    c.put(hash.0, Cached { record: record.clone(), until_ms });
                }
            });
            record
        }
    };
    let Some(record) = record else {
        return Err(AuthError::ApiKeyInvalid(crate::core::error::ApiKeyFailure::Unknown));
    };
    log.key_id = Some(record.id.clone());
    record.check(&hash, policy.api_keys.environment, now_ms.div_euclid(1000), ip)
}
