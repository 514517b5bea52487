//! The key admin API (create, list, inspect, rotate, disable, delete). The edge check is the
//! core pipeline's (`Gate::decide`: format and checksum offline, one KV read by the key's
//! peppered hash, cached in the isolate).
//!
//! KV layout (namespace `EDGEWARD_KV`): `apikey:v1:id:<id>` holds a key id's record and
//! `apikey:v1:h:<hmac>` holds the same record under each of its secrets' hashes. No plain key
//! is stored anywhere; the pepper is the Worker secret `EDGEWARD_API_KEY_PEPPER`.

use super::answer::{query_param, AdminAnswer};
use crate::core::apikey::{
    generate, hash_storage_key, id_storage_key, is_key_id, key_hash, key_id, KeyHash, KeyRecord, KeyStatus, NewKey, PresentedKey, ID_PREFIX, MAX_SECRETS,
    RANDOM_BYTES,
};
use crate::core::config::Policy;
use crate::core::io::IoError;
use crate::worker::runtime::js::KvStore;
use crate::worker::runtime::{kv_binding, post_request};
use serde::{Deserialize, Serialize};
use worker::{console_error, Env};

fn answer(status: u16, op: &'static str, id: Option<&str>, body: serde_json::Value) -> AdminAnswer {
    AdminAnswer { status, op, id: id.map(str::to_owned), body }
}

fn bad(op: &'static str, field: &str, message: &str) -> AdminAnswer {
    answer(400, op, None, serde_json::json!({"code": "bad_request", "field": field, "message": message}))
}

fn random<const N: usize>() -> Option<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).ok()?;
    Some(b)
}

/// A new key text and its hash.
fn new_secret(policy: &Policy, pepper: &[u8]) -> Option<(String, KeyHash)> {
    for _ in 0..4 {
        if let Some(key) = generate(policy.api_keys.environment, &random::<RANDOM_BYTES>()?) {
            let hash = key_hash(pepper, &PresentedKey::parse(&key, None).ok()?)?;
            return Some((key, hash));
        }
    }
    None
}

async fn read(kv: &KvStore, id: &str) -> Result<Option<KeyRecord>, IoError> {
    match kv.text(&id_storage_key(id)).await? {
        None => Ok(None),
        Some(t) => crate::core::json::from_text(&t).map(Some).map_err(|e| IoError::BadAnswer(format!("stored record is invalid: {e}"))),
    }
}

/// Writes the record under each secret's hash, newest secret first, with the id record right
/// after the newest one. So a rotation cut short by a KV error never ends the old key before the
/// successor can be looked up and listed (the old secrets' end times are written last).
async fn write(kv: &KvStore, rec: &KeyRecord) -> Result<(), IoError> {
    let text = serde_json::to_string(rec).map_err(|e| IoError::Failed(e.to_string()))?;
    let put = |key: String| {
        let text = text.clone();
        async move { kv.put_bytes(&key, text.as_bytes()).await }
    };
    let mut newest_first = rec.secrets.iter().rev();
    if let Some(s) = newest_first.next() {
        put(hash_storage_key(&s.hash)).await?;
    }
    put(id_storage_key(&rec.id)).await?;
    for s in newest_first {
        put(hash_storage_key(&s.hash)).await?;
    }
    Ok(())
}

/// Puts a key id on the revocation list (disable, delete) so every edge refuses it within the
/// snapshot interval, whatever its isolates cached. `Err` if the list is on and the ledger
/// could not record it: then nothing else is changed.
async fn revoke_first(policy: &Policy, env: &Env, id: &str, now: i64) -> Result<bool, ()> {
    if !policy.revocations.enabled {
        return Ok(false);
    }
    let until = now + i64::from(policy.api_keys.cache_ttl_secs) + 86_400;
    if super::ledger::revoke_api_key(env, id, until).await {
        Ok(true)
    } else {
        Err(())
    }
}

fn unavailable(op: &'static str, e: impl std::fmt::Display) -> AdminAnswer {
    console_error!("{}", serde_json::json!({"event": "api_key_admin_error", "op": op, "error": e.to_string()}));
    answer(503, op, None, serde_json::json!({"code": "api_keys_unavailable", "message": "key store unavailable; retry later"}))
}

/// Handles `{prefix}/keys[...]`; `rest` is the path below the prefix.
pub async fn admin_op(body: Option<serde_json::Value>, method: &str, rest: &str, query: &str, policy: &Policy, env: &Env, now: i64) -> AdminAnswer {
    let Some(kv) = kv_binding(env) else { return unavailable("keys", "no EDGEWARD_KV binding") };
    let pepper = env.secret(crate::core::apikey::PEPPER_SECRET).ok().map(|s| s.to_string().into_bytes()).filter(|p| p.len() >= 32);
    let Some(pepper) = pepper else { return unavailable("keys", "the EDGEWARD_API_KEY_PEPPER secret is missing or shorter than 32 characters") };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').skip(2).collect();
    match (method, parts.as_slice()) {
        ("POST", []) => {
            let op = "key_create";
            let Some(body) = body else { return bad(op, "body", "a JSON object") };
            let new: NewKey = match serde_json::from_value(body) {
                Ok(n) => n,
                Err(e) => return bad(op, "body", &e.to_string()),
            };
            let (Some(rid), Some((key, hash))) = (random::<12>(), new_secret(policy, &pepper)) else { return unavailable(op, "no randomness") };
            let id = key_id(&rid);
            let rec = match new.into_record(id.clone(), &hash, policy.api_keys.environment, now) {
                Ok(r) => r,
                Err(e) => return bad(op, &e.field, &e.message),
            };
            if let Err(e) = write(&kv, &rec).await {
                return unavailable(op, e);
            }
            let mut view = rec.public_view(now);
            view["key"] = key.into();
            answer(201, op, Some(&id), view)
        }
        ("GET", []) => {
            let limit = query_param(query, "limit").and_then(|v| v.parse::<u32>().ok()).unwrap_or(50).clamp(1, 100);
            let cursor = query_param(query, "cursor").filter(|c| !c.is_empty());
            let page = match kv.list(ID_PREFIX, limit, cursor).await {
                Ok(p) => p,
                Err(e) => return unavailable("key_list", e),
            };
            let mut items = Vec::with_capacity(page.names.len());
            for name in &page.names {
                let Some(id) = name.strip_prefix(ID_PREFIX) else { continue };
                match read(&kv, id).await {
                    Ok(Some(r)) => items.push(r.public_view(now)),
                    Ok(None) => {}
                    Err(e) => return unavailable("key_list", e),
                }
            }
            let next = page.cursor;
            answer(200, "key_list", None, serde_json::json!({"items": items, "next_cursor": next}))
        }
        (_, [id, ..]) if !is_key_id(id) => answer(404, "key", None, serde_json::json!({"code": "not_found", "message": "no such key"})),
        ("GET", [id, tail @ ..]) => key_op(body, "GET", id, tail, policy, env, &kv, &pepper, now).await,
        (m, [id, tail @ ..]) => match ask_writer(env, m, id, &tail.join("/"), body.as_ref(), now).await {
            Some(a) => a,
            // No EDGEWARD_KEYS binding (a deployment configured before it existed): written here,
            // as before, without serialization per key.
            None => key_op(body, m, id, tail, policy, env, &kv, &pepper, now).await,
        },
        _ => answer(404, "unknown", None, serde_json::json!({"code": "not_found", "message": "no such admin route"})),
    }
}

/// [`key_op`] in the key's writer: the configuration, KV and pepper of its own isolate.
pub(super) async fn in_writer(body: Option<serde_json::Value>, m: &str, id: &str, tail: &[&str], env: &Env, now: i64) -> AdminAnswer {
    let iso = crate::worker::runtime::isolate(env);
    let Ok(gate) = &iso.gate else { return unavailable("keys", "invalid configuration") };
    let Some(kv) = kv_binding(env) else { return unavailable("keys", "no EDGEWARD_KV binding") };
    let pepper = env.secret(crate::core::apikey::PEPPER_SECRET).ok().map(|s| s.to_string().into_bytes()).filter(|p| p.len() >= 32);
    let Some(pepper) = pepper else { return unavailable("keys", "the EDGEWARD_API_KEY_PEPPER secret is missing or shorter than 32 characters") };
    key_op(body, m, id, tail, gate.policy(), env, &kv, &pepper, now).await
}

/// One operation on key `id` (`GET`, `DELETE`, `POST rotate`, `POST disable`). The writes run
/// in that key's `KeyWriter` Durable Object (see `keywriter`), one at a time.
#[allow(clippy::too_many_arguments)]
pub(super) async fn key_op(
    body: Option<serde_json::Value>,
    m: &str,
    id: &str,
    tail: &[&str],
    policy: &Policy,
    env: &Env,
    kv: &KvStore,
    pepper: &[u8],
    now: i64,
) -> AdminAnswer {
    let kv = kv.clone();
    let pepper = pepper.to_vec();
    let op: &'static str = match (m, tail) {
        ("GET", []) => "key_get",
        ("DELETE", []) => "key_delete",
        ("POST", ["rotate"]) => "key_rotate",
        ("POST", ["disable"]) => "key_disable",
        _ => return answer(404, "unknown", None, serde_json::json!({"code": "not_found", "message": "no such admin route"})),
    };
    let mut rec = match read(&kv, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return answer(404, op, Some(id), serde_json::json!({"code": "not_found", "message": "no such key"})),
        Err(e) => return unavailable(op, e),
    };
    match op {
        "key_get" => answer(200, op, Some(id), rec.public_view(now)),
        "key_delete" => {
            let Ok(revoked) = revoke_first(policy, env, id, now).await else {
                return unavailable(op, "the revocation ledger could not record the key id; nothing deleted");
            };
            for s in &rec.secrets {
                if let Err(e) = kv.delete(&hash_storage_key(&s.hash)).await {
                    return unavailable(op, e);
                }
            }
            if let Err(e) = kv.delete(&id_storage_key(id)).await {
                return unavailable(op, e);
            }
            answer(200, op, Some(id), serde_json::json!({"id": id, "deleted": true, "revoked": revoked}))
        }
        "key_disable" => {
            // Revoked first: if the ledger cannot record it, nothing changes (503); if KV
            // then fails, the key is already refused everywhere (the safe side).
            let Ok(revoked) = revoke_first(policy, env, id, now).await else {
                return unavailable(op, "the revocation ledger could not record the key id; nothing changed");
            };
            let was = rec.status;
            rec.status = KeyStatus::Disabled;
            if let Err(e) = write(&kv, &rec).await {
                return unavailable(op, e);
            }
            let mut view = rec.public_view(now);
            view["changed"] = (was != KeyStatus::Disabled).into();
            view["revoked"] = revoked.into();
            answer(200, op, Some(id), view)
        }
        _ => {
            // Rotation: {"overlap_secs": N} (default 86400) or {"old_until": T}.
            let body = body.unwrap_or_else(|| serde_json::json!({}));
            let Some(obj) = body.as_object() else { return bad(op, "body", "a JSON object") };
            if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "overlap_secs" | "old_until")) {
                return bad(op, k, "unknown field (overlap_secs or old_until)");
            }
            let old_until = match (obj.get("overlap_secs"), obj.get("old_until")) {
                (Some(_), Some(_)) => return bad(op, "overlap_secs", "give overlap_secs or old_until, not both"),
                (Some(v), None) => match v.as_i64().filter(|s| (0..=30 * 86_400).contains(s)) {
                    Some(s) => now + s,
                    None => return bad(op, "overlap_secs", "0 to 2592000 seconds"),
                },
                (None, Some(v)) => match v.as_i64().filter(|t| *t >= now && *t <= now + 30 * 86_400) {
                    Some(t) => t,
                    None => return bad(op, "old_until", "a Unix time from now to 30 days ahead"),
                },
                (None, None) => now + 86_400,
            };
            if rec.status == KeyStatus::Disabled {
                return answer(409, op, Some(id), serde_json::json!({"code": "conflict", "message": "a disabled key cannot be rotated"}));
            }
            if rec.secrets.iter().filter(|s| s.not_after.is_none_or(|t| t > now)).count() >= MAX_SECRETS {
                return answer(
                    409,
                    op,
                    Some(id),
                    serde_json::json!({"code": "conflict", "message": "too many rotations in flight; wait for an overlap to end"}),
                );
            }
            let Some((key, hash)) = new_secret(policy, &pepper) else { return unavailable(op, "no randomness") };
            let dropped = rec.rotate(&hash, old_until, now);
            if let Err(e) = write(&kv, &rec).await {
                return unavailable(op, e);
            }
            for h in dropped {
                let _ = kv.delete(&hash_storage_key(&h)).await;
            }
            let mut view = rec.public_view(now);
            view["key"] = key.into();
            answer(200, op, Some(id), view)
        }
    }
}

// ---- the client side of the key writer (`keywriter`, which calls `in_writer` back) ----

/// Name of the Durable Object binding (control Worker).
pub const KEYS_BINDING: &str = "EDGEWARD_KEYS";

#[derive(Serialize, Deserialize)]
pub(super) struct WriterAsk {
    pub(super) method: String,
    pub(super) id: String,
    pub(super) tail: String,
    #[serde(default)]
    pub(super) body: Option<serde_json::Value>,
    pub(super) now: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WriterAnswer {
    pub(super) status: u16,
    pub(super) op: String,
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) body: serde_json::Value,
}

/// The audit log's name of an operation (the writer's answer carries it as text).
fn op_name(op: &str) -> &'static str {
    match op {
        "key_get" => "key_get",
        "key_delete" => "key_delete",
        "key_rotate" => "key_rotate",
        "key_disable" => "key_disable",
        "keys" => "keys",
        _ => "unknown",
    }
}

/// Runs a write on key `id` in its writer (the `KeyWriter` Durable Object named `id`). `None`
/// when the binding is not configured.
pub async fn ask_writer(env: &Env, method: &str, id: &str, tail: &str, body: Option<&serde_json::Value>, now: i64) -> Option<AdminAnswer> {
    let ns = env.durable_object(KEYS_BINDING).ok()?;
    let ask = WriterAsk { method: method.into(), id: id.into(), tail: tail.into(), body: body.cloned(), now };
    let answered = async {
        let stub = ns.get_by_name(id)?;
        let text = serde_json::to_string(&ask)?;
        let req = post_request("https://keys/op", &text).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut resp = stub.fetch_with_request(req).await?;
        let text = resp.text().await?;
        worker::Result::Ok(serde_json::from_str::<WriterAnswer>(&text)?)
    };
    Some(match answered.await {
        Ok(a) => AdminAnswer { status: a.status, op: op_name(&a.op), id: a.id, body: a.body },
        Err(e) => {
            let e: worker::Error = e;
            worker::console_error!("{}", serde_json::json!({"event": "api_key_admin_error", "op": "key_writer", "error": e.to_string()}));
            AdminAnswer {
                status: 503,
                op: "keys",
                id: Some(id.to_string()),
                body: serde_json::json!({"code": "api_keys_unavailable", "message": "key store unavailable; retry later"}),
            }
        }
    })
}
