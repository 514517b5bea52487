//! The `RevocationLedger` Durable Object and the revocation admin API.
//!
//! The ledger (one instance, strongly consistent, ordered, idempotent) records every change in
//! its storage and publishes a compact, versioned snapshot of all active revocations to KV
//! (`core::revocation::SNAPSHOT_KEY`, binary); every gate isolate keeps that snapshot in memory
//! and re-reads it in the background every `revocations.refresh_secs` (the core pipeline), so
//! the hot path makes no KV read per request. `sensitive` routes and admin JWTs ask the ledger
//! itself (`{"op": "check", "body": facts}`).
//!
//! Publishing is batched: a write returns once it is durably stored, and the first unpublished
//! change sets an alarm [`PUBLISH_DELAY_MS`] later, which publishes whatever the ledger holds
//! then. A failed publish fails the alarm, which the runtime retries.

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::answer::{query_param, AdminAnswer};
use crate::core::revocation::SNAPSHOT_KEY;
use crate::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target};
use crate::worker::runtime::js::DoStorage;
use crate::worker::runtime::{ask_ledger, kv_binding, now_secs};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use worker::{console_error, console_log, console_warn, durable_object, DurableObject, Env, Request, Response, State};

/// How long after the first unpublished change the ledger publishes: one KV write per burst of
/// changes, at most one per interval.
pub const PUBLISH_DELAY_MS: u64 = 500;
/// Retry interval of a failed publish.
const PUBLISH_RETRY_MS: u64 = 5_000;

#[derive(Serialize, Deserialize)]
struct NewRevocation {
    target: Target,
    #[serde(default)]
    reason: String,
    expires_at: i64,
}

#[derive(Deserialize)]
struct Command {
    op: String,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// The single writer of revocations. Each command runs to completion before the next event is
/// delivered (storage awaits hold the input gate), so writes are ordered and idempotent.
#[durable_object]
pub struct RevocationLedger {
    storage: Option<DoStorage>,
    env: Env,
    entries: RefCell<Option<BTreeMap<String, Revocation>>>,
    version: RefCell<u64>,
    /// A publish alarm is set and has not started yet.
    publish_pending: RefCell<bool>,
}

fn json_response(status: u16, v: &serde_json::Value) -> worker::Result<Response> {
    Ok(Response::ok(v.to_string())?.with_status(status))
}

impl RevocationLedger {
    fn storage(&self) -> worker::Result<&DoStorage> {
        self.storage.as_ref().ok_or_else(|| worker::Error::RustError("no Durable Object storage".into()))
    }

    /// Loads the ledger from storage on first use: one storage key per entry (`e:ID`, the entry's
    /// JSON) plus `version`, so no single value grows with the list.
    async fn load(&self) -> worker::Result<()> {
        if self.entries.borrow().is_some() {
            return Ok(());
        }
        let storage = self.storage()?;
        let version = storage.number("version").await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        let listed = storage.list_strings("e:").await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut entries = BTreeMap::new();
        for (k, v) in listed {
            if let Ok(r) = crate::core::json::from_text::<Revocation>(&v) {
                entries.insert(k.trim_start_matches("e:").to_string(), r);
            }
        }
        *self.version.borrow_mut() = version.map_or(0, |v| v as u64);
        *self.entries.borrow_mut() = Some(entries);
        Ok(())
    }

    fn snapshot(&self, now: i64) -> RevocationSnapshot {
        let entries = self.entries.borrow().as_ref().map(|m| m.values().filter(|r| r.expires_at > now).cloned().collect()).unwrap_or_default();
        RevocationSnapshot { version: *self.version.borrow(), entries }
    }

    /// Persists the changed entry (`Some`: written, `None`: removed) and every pruned one in one
    /// atomic storage write, bumps the version, and schedules a publish (see the module docs).
    async fn commit(&self, now: i64, changed: (&str, Option<&Revocation>)) -> worker::Result<()> {
        let mut gone: Vec<String> = Vec::new();
        if let Some(m) = self.entries.borrow_mut().as_mut() {
            // Prune expired entries on every write, so the list maintains itself.
            m.retain(|id, r| {
                let keep = r.expires_at > now;
                if !keep {
                    gone.push(format!("e:{id}"));
                }
                keep
            });
        }
        *self.version.borrow_mut() += 1;
        let storage = self.storage()?;
        // A plain object (serde would make a JS Map, which the storage API reads as empty).
        let put = worker::js_sys::Object::new();
        let set = |k: &str, v: worker::wasm_bindgen::JsValue| worker::js_sys::Reflect::set(&put, &k.into(), &v).map(|_| ());
        set("version", worker::wasm_bindgen::JsValue::from_f64(*self.version.borrow() as f64))?;
        match changed {
            (id, Some(r)) => set(&format!("e:{id}"), serde_json::to_string(r)?.into())?,
            (id, None) => gone.push(format!("e:{id}")),
        }
        if !gone.is_empty() {
            storage.delete_all_of(&gone).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        }
        storage.put_all(&put).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        if !*self.publish_pending.borrow() {
            // Stored durably with the alarm: a restart of the object still publishes.
            storage.set_alarm_in(PUBLISH_DELAY_MS).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
            *self.publish_pending.borrow_mut() = true;
        }
        Ok(())
    }

    /// Publishes the compact snapshot of what the ledger holds now.
    async fn publish(&self) -> worker::Result<()> {
        self.load().await?;
        // Cleared before the snapshot is taken: a change made while the KV write is in flight
        // sets a new alarm, so it is never left unpublished.
        *self.publish_pending.borrow_mut() = false;
        let now = now_secs();
        let set = RevocationSet::from_snapshot(&self.snapshot(now), now);
        let bytes = set.to_compact();
        let kv = kv_binding(&self.env).ok_or_else(|| worker::Error::RustError("no EDGEWARD_KV binding".into()))?;
        kv.put_bytes(SNAPSHOT_KEY, &bytes).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
        console_log!("{}", serde_json::json!({"event": "revocations_published", "version": set.version(), "entries": set.len(), "bytes": bytes.len()}));
        Ok(())
    }
}

impl DurableObject for RevocationLedger {
    fn new(state: State, env: Env) -> Self {
        RevocationLedger { storage: DoStorage::of(state), env, entries: RefCell::new(None), version: RefCell::new(0), publish_pending: RefCell::new(false) }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // A failed publish sets its own next alarm (every 5 s, for as long as KV fails) instead of
        // relying on the runtime's bounded alarm retries: a recorded revocation must reach KV.
        if let Err(e) = self.publish().await {
            console_error!("{}", serde_json::json!({"event": "revocations_publish_failed", "error": e.to_string(), "retry_in_ms": PUBLISH_RETRY_MS}));
            *self.publish_pending.borrow_mut() = true;
            self.storage()?.set_alarm_in(PUBLISH_RETRY_MS).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
            return Response::ok("publish failed; retrying");
        }
        Response::ok("published")
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(cmd) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<Command>(&t).ok()) else {
            return json_response(400, &serde_json::json!({"code": "bad_request", "message": "malformed ledger command"}));
        };
        self.load().await?;
        let now = now_secs();
        match cmd.op.as_str() {
            "add" => {
                let Some(body) = cmd.body else {
                    return json_response(400, &serde_json::json!({"code": "bad_request", "message": "body required"}));
                };
                let new: NewRevocation = match serde_json::from_value(body) {
                    Ok(n) => n,
                    Err(e) => return json_response(400, &serde_json::json!({"code": "bad_request", "message": e.to_string()})),
                };
                let r = Revocation { target: new.target, reason: new.reason, created_at: now, expires_at: new.expires_at };
                if let Err(e) = r.validate(now) {
                    return json_response(400, &serde_json::json!({"code": "bad_request", "field": e.field, "message": e.message}));
                }
                let id = r.target.id();
                let existing = self.entries.borrow().as_ref().and_then(|m| m.get(&id).cloned());
                let changed = match &existing {
                    None => true,
                    // The same revocation again is one entry; a later watermark or expiry extends it.
                    Some(old) => old.target != r.target && matches!(r.target, Target::SubjectBefore { .. }) || r.expires_at > old.expires_at,
                };
                if changed {
                    let mut merged = r.clone();
                    if let Some(old) = &existing {
                        merged.created_at = old.created_at;
                        merged.expires_at = merged.expires_at.max(old.expires_at);
                        if let (Target::SubjectBefore { before: b_old, .. }, Target::SubjectBefore { before: b_new, .. }) = (&old.target, &r.target) {
                            if b_old > b_new {
                                merged.target = old.target.clone();
                            }
                        }
                    }
                    if let Some(m) = self.entries.borrow_mut().as_mut() {
                        m.insert(id.clone(), merged.clone());
                    }
                    self.commit(now, (&id, Some(&merged))).await?;
                }
                let entry = self.entries.borrow().as_ref().and_then(|m| m.get(&id).cloned());
                json_response(
                    if existing.is_none() { 201 } else { 200 },
                    &serde_json::json!({"id": id, "created": existing.is_none(), "version": *self.version.borrow(), "revocation": entry}),
                )
            }
            "check" => {
                // Strict mode: the ledger's own view, with no propagation delay.
                let facts = cmd.body.as_ref().and_then(|b| crate::core::revocation::TokenFacts::deserialize(b).ok());
                let Some(facts) = facts else {
                    return json_response(400, &serde_json::json!({"code": "bad_request", "message": "token facts required"}));
                };
                let set = RevocationSet::from_snapshot(&self.snapshot(now), now);
                json_response(200, &serde_json::json!({"revoked": set.check_parts(&facts, now).is_err(), "version": *self.version.borrow()}))
            }
            "list" => {
                let limit = cmd.limit.unwrap_or(100).clamp(1, 1000);
                let page: Vec<serde_json::Value> = self
                    .entries
                    .borrow()
                    .as_ref()
                    .map(|m| {
                        m.iter()
                            .filter(|(id, r)| cmd.cursor.as_ref().is_none_or(|c| id.as_str() > c.as_str()) && r.expires_at > now)
                            .take(limit)
                            .map(|(id, r)| serde_json::json!({"id": id, "revocation": r}))
                            .collect()
                    })
                    .unwrap_or_default();
                let next = if page.len() == limit { page.last().and_then(|v| v["id"].as_str().map(str::to_owned)) } else { None };
                let total = self.entries.borrow().as_ref().map_or(0, |m| m.values().filter(|r| r.expires_at > now).count());
                json_response(200, &serde_json::json!({"items": page, "next_cursor": next, "total": total, "version": *self.version.borrow()}))
            }
            "get" | "remove" => {
                let id = cmd.id.unwrap_or_default();
                let found = self.entries.borrow().as_ref().and_then(|m| m.get(&id).cloned()).filter(|r| r.expires_at > now);
                let Some(r) = found else {
                    return json_response(404, &serde_json::json!({"code": "not_found", "message": "no such revocation"}));
                };
                if cmd.op == "remove" {
                    if let Some(m) = self.entries.borrow_mut().as_mut() {
                        m.remove(&id);
                    }
                    self.commit(now, (&id, None)).await?;
                }
                json_response(200, &serde_json::json!({"id": id, "revocation": r, "removed": cmd.op == "remove", "version": *self.version.borrow()}))
            }
            _ => json_response(400, &serde_json::json!({"code": "bad_request", "message": "unknown op"})),
        }
    }
}

/// Puts an API key id on the revocation list until `until` (a disabled key). False if the
/// ledger could not be reached (logged).
pub async fn revoke_api_key(env: &Env, key_id: &str, until: i64) -> bool {
    let body = serde_json::json!({"target": {"kind": "api_key", "key_id": key_id}, "reason": "key disabled", "expires_at": until});
    match ask_ledger(env, serde_json::json!({"op": "add", "body": body})).await {
        Ok(r) if matches!(r.status_code(), 200 | 201) => true,
        other => {
            console_warn!("{}", serde_json::json!({"event": "api_key_revoke_failed", "key_id": key_id, "status": other.ok().map(|r| r.status_code())}));
            false
        }
    }
}

/// Handles `{prefix}/revocations[...]` (authorization and audit are the caller's).
pub async fn admin_op(body: Option<serde_json::Value>, method: &str, rest: &str, query: &str, env: &Env) -> AdminAnswer {
    let cmd = match (method, rest.trim_end_matches('/')) {
        ("POST", "/revocations") => match body {
            Some(body) if body.is_object() => serde_json::json!({"op": "add", "body": body}),
            _ => {
                return AdminAnswer {
                    status: 400,
                    op: "add",
                    id: None,
                    body: serde_json::json!({"code": "bad_request", "message": "body must be a JSON object"}),
                }
            }
        },
        ("GET", "/revocations") => {
            let cursor = query_param(query, "cursor");
            let limit = query_param(query, "limit").and_then(|v| v.parse::<usize>().ok());
            serde_json::json!({"op": "list", "cursor": cursor, "limit": limit})
        }
        ("GET", r) if r.starts_with("/revocations/") => serde_json::json!({"op": "get", "id": &r["/revocations/".len()..]}),
        ("DELETE", r) if r.starts_with("/revocations/") => serde_json::json!({"op": "remove", "id": &r["/revocations/".len()..]}),
        _ => return AdminAnswer { status: 404, op: "unknown", id: None, body: serde_json::json!({"code": "not_found", "message": "no such admin route"}) },
    };
    let op = match cmd["op"].as_str() {
        Some("add") => "add",
        Some("list") => "list",
        Some("get") => "get",
        _ => "remove",
    };
    let answered = async {
        let mut resp = ask_ledger(env, cmd).await?;
        let status = resp.status_code();
        let text = resp.text().await?;
        let v = serde_json::from_slice::<serde_json::Value>(text.as_bytes())?;
        worker::Result::Ok((status, v))
    };
    match answered.await {
        Ok((status, v)) => {
            let id = v["id"].as_str().map(str::to_owned);
            AdminAnswer { status, op, id, body: v }
        }
        Err(e) => {
            let e: worker::Error = e;
            console_warn!("{}", serde_json::json!({"event": "revocation_ledger_unreachable", "error": e.to_string()}));
            AdminAnswer {
                status: 503,
                op,
                id: None,
                body: serde_json::json!({"code": "revocations_unavailable", "message": "revocation ledger unreachable; retry later"}),
            }
        }
    }
}
