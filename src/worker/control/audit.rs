//! The `AuditTrail` Durable Object (one instance, `audit`, binding `EDGEWARD_AUDIT`) and the
//! audit admin API (`GET {prefix}/audit`, and the test-only `POST {prefix}/audit/test-hook`).
//!
//! The trail is one SQLite table, one row per entry (`seq`, `time`, the entry's JSON as served),
//! and a `head` row (the last entry's `seq`, `hash` and `time`: where the next one links, kept
//! apart from the rows, so a removed last entry shows as missing). An append reads the head,
//! builds the entry in the core (`core::audit::append`: its place, time and hash) and writes the
//! row and the new head with no await in between: appends are one at a time and each is
//! atomic, and the object answers only once the write is durable. The admin API appends an
//! admin write's entry after the write and before answering it, and answers 2xx only when the
//! append was acknowledged (see `admin`).
//!
//! Entries older than `admin.audit_retention_days` are deleted when later ones are appended, at
//! most [`PRUNE_BATCH`] per append, oldest first; the last one removed is kept as the `pruned`
//! row (its `seq` and `hash`), where the first remaining entry links.
//!
//! The message (a contract between the control Worker's isolates and this object):
//! `{"op": "append", "record"}` → `{"seq", "hash"}`; `{"op": "list", "since"?, "cursor"?,
//! "limit"?}` → `{"items", "next_cursor", "head", "pruned_through"}`; `{"op": "test_hook", "seq",
//! "set"?, "rehash"?, "delete"?}` (only with `EDGEWARD_TEST_HOOKS=1`).

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::answer::{int, json_response, query_param, text, AdminAnswer};
use crate::core::audit::{append, entry_hash, AuditEntry, AuditRecord, ChainHead};
use crate::worker::runtime::{now_secs, post_request};
use serde::Deserialize;
use std::cell::Cell;
use worker::{console_error, durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue as V, State};

/// Name of the Durable Object binding (control Worker).
pub const AUDIT_BINDING: &str = "EDGEWARD_AUDIT";
/// The var that enables the test-only hook (`"1"`); never set it in production.
pub const TEST_HOOKS_VAR: &str = "EDGEWARD_TEST_HOOKS";
/// Most entries one listing page holds.
pub const MAX_PAGE: usize = 1_000;
/// Most expired entries one append deletes.
pub const PRUNE_BATCH: i64 = 1_000;
/// The one object holding the trail.
const TRAIL_NAME: &str = "audit";

#[derive(Deserialize)]
struct Command {
    op: String,
    #[serde(default)]
    record: Option<AuditRecord>,
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    cursor: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    set: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    rehash: bool,
    #[serde(default)]
    delete: bool,
}

/// The trail: the single writer of its entries.
#[durable_object]
pub struct AuditTrail {
    sql: SqlStorage,
    env: Env,
    ready: Cell<bool>,
}

/// Whether the test-only hook is enabled in this Worker (`EDGEWARD_TEST_HOOKS=1`, as a var or a
/// local secret).
fn test_hooks_enabled(env: &Env) -> bool {
    let value = env.var(TEST_HOOKS_VAR).map(|v| v.to_string()).or_else(|_| env.secret(TEST_HOOKS_VAR).map(|s| s.to_string()));
    value.is_ok_and(|v| v == "1")
}

impl AuditTrail {
    fn rows(&self, query: &str, args: Vec<V>) -> worker::Result<Vec<Vec<V>>> {
        self.sql.exec(query, args)?.raw().collect()
    }

    fn ready(&self) -> worker::Result<()> {
        if !self.ready.get() {
            for ddl in [
                "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, entry TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time)",
                "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, time INTEGER NOT NULL) WITHOUT ROWID",
            ] {
                self.rows(ddl, vec![])?;
            }
            self.ready.set(true);
        }
        Ok(())
    }

    /// The `head` or `pruned` row.
    fn mark(&self, name: &str) -> worker::Result<Option<ChainHead>> {
        let rows = self.rows("SELECT seq, hash, time FROM audit_meta WHERE name = ?", vec![name.into()])?;
        Ok(rows.first().map(|r| ChainHead { seq: int(r.first()) as u64, hash: text(r.get(1)).to_string(), time: int(r.get(2)) }))
    }

    fn set_mark(&self, name: &str, h: &ChainHead) -> worker::Result<()> {
        self.rows(
            "INSERT OR REPLACE INTO audit_meta (name, seq, hash, time) VALUES (?, ?, ?, ?)",
            vec![name.into(), (h.seq as i64).into(), h.hash.clone().into(), h.time.into()],
        )
        .map(|_| ())
    }

    /// Appends one entry (synchronous: the row and the head are one write), then prunes.
    fn append(&self, record: AuditRecord, now: i64) -> worker::Result<AuditEntry> {
        let head = self.mark("head")?.unwrap_or_else(ChainHead::genesis);
        let entry = append(&head, record, now);
        self.rows(
            "INSERT INTO audit (seq, time, entry) VALUES (?, ?, ?)",
            vec![(entry.seq as i64).into(), entry.time.into(), serde_json::to_string(&entry)?.into()],
        )?;
        self.set_mark("head", &ChainHead { seq: entry.seq, hash: entry.hash.clone(), time: entry.time })?;
        // The entry is stored whatever the pruning does; a failed prune is tried again next time.
        if let Err(e) = self.prune(now) {
            console_error!("{}", serde_json::json!({"event": "audit_prune_failed", "error": e.to_string()}));
        }
        Ok(entry)
    }

    /// Deletes up to [`PRUNE_BATCH`] of the oldest entries past the retention, keeping the last
    /// one deleted as the `pruned` mark.
    fn prune(&self, now: i64) -> worker::Result<()> {
        let iso = crate::worker::runtime::isolate(&self.env);
        let Some(days) = iso.gate.as_ref().ok().and_then(|g| g.policy().admin.audit_retention_days) else { return Ok(()) };
        let cutoff = now - i64::from(days) * 86_400;
        let rows = self.rows("SELECT min(seq), max(seq) FROM audit WHERE time < ?", vec![cutoff.into()])?;
        let Some(r) = rows.first().filter(|r| !matches!(r.first(), Some(V::Null) | None)) else { return Ok(()) };
        let upto = int(r.get(1)).min(int(r.first()) + PRUNE_BATCH - 1);
        let last = self.rows("SELECT seq, time, entry FROM audit WHERE seq = ?", vec![upto.into()])?;
        let Some(last) = last.first() else { return Ok(()) };
        let hash = serde_json::from_str::<serde_json::Value>(text(last.get(2))).ok().and_then(|v| v["hash"].as_str().map(str::to_owned)).unwrap_or_default();
        self.rows("DELETE FROM audit WHERE seq <= ?", vec![upto.into()])?;
        self.set_mark("pruned", &ChainHead { seq: upto as u64, hash, time: int(last.get(1)) })
    }

    /// One page of entries from the first one at or after `since`, after `cursor`.
    fn list(&self, since: i64, cursor: u64, limit: usize) -> worker::Result<serde_json::Value> {
        let limit = limit.clamp(1, MAX_PAGE);
        // Times never decrease along the trail, so "from `since` on" is a suffix of it.
        let start = self.rows("SELECT min(seq) FROM audit WHERE time >= ?", vec![since.into()])?;
        let start = start.first().and_then(|r| match r.first() {
            Some(V::Null) | None => None,
            v => Some(int(v)),
        });
        let items = match start {
            None => Vec::new(),
            Some(start) => self.rows(
                "SELECT seq, entry FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?",
                vec![start.max(cursor.min(i64::MAX as u64 - 1) as i64 + 1).into(), (limit as i64).into()],
            )?,
        };
        let next = if items.len() == limit { items.last().map(|r| int(r.first()).to_string()) } else { None };
        let entries: Vec<serde_json::Value> =
            items.iter().map(|r| serde_json::from_str(text(r.get(1))).unwrap_or_else(|_| serde_json::Value::String(text(r.get(1)).to_string()))).collect();
        let head = self.mark("head")?.unwrap_or_else(ChainHead::genesis);
        let pruned = self.mark("pruned")?;
        Ok(serde_json::json!({
            "items": entries,
            "next_cursor": next,
            "head": {"seq": head.seq, "hash": head.hash},
            "pruned_through": pruned.map(|p| serde_json::json!({"seq": p.seq, "hash": p.hash})),
        }))
    }

    /// The test-only hook: changes (`set`, and with `rehash` recomputes its hash) or deletes one
    /// stored entry, as an attacker with access to the storage could. Setting `time` also dates
    /// the row (what pruning reads).
    fn test_hook(&self, cmd: &Command) -> worker::Result<Response> {
        let Some(seq) = cmd.seq else { return json_response(400, &serde_json::json!({"code": "bad_request", "field": "seq", "message": "an entry's seq"})) };
        let rows = self.rows("SELECT entry FROM audit WHERE seq = ?", vec![(seq as i64).into()])?;
        let Some(row) = rows.first() else { return json_response(404, &serde_json::json!({"code": "not_found", "message": "no such entry"})) };
        if cmd.delete {
            self.rows("DELETE FROM audit WHERE seq = ?", vec![(seq as i64).into()])?;
            return json_response(200, &serde_json::json!({"seq": seq, "deleted": true}));
        }
        let mut entry: serde_json::Value = serde_json::from_str(text(row.first()))?;
        for (k, v) in cmd.set.iter().flatten() {
            entry[k] = v.clone();
        }
        if cmd.rehash {
            if let Ok(e) = serde_json::from_value::<AuditEntry>(entry.clone()) {
                entry["hash"] = entry_hash(&e).into();
            }
        }
        self.rows("UPDATE audit SET entry = ? WHERE seq = ?", vec![entry.to_string().into(), (seq as i64).into()])?;
        if let Some(time) = cmd.set.as_ref().and_then(|s| s.get("time")).and_then(serde_json::Value::as_i64) {
            // The row's time too: a test can age an entry past the retention.
            self.rows("UPDATE audit SET time = ? WHERE seq = ?", vec![time.into(), (seq as i64).into()])?;
        }
        json_response(200, &serde_json::json!({"seq": seq, "altered": true, "entry": entry}))
    }
}

impl DurableObject for AuditTrail {
    fn new(state: State, env: Env) -> Self {
        AuditTrail { sql: state.storage().sql(), env, ready: Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(cmd) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<Command>(&t).ok()) else {
            return json_response(400, &serde_json::json!({"code": "bad_request", "message": "malformed audit command"}));
        };
        self.ready()?;
        match cmd.op.as_str() {
            "append" => {
                let Some(record) = cmd.record else { return json_response(400, &serde_json::json!({"code": "bad_request", "message": "record required"})) };
                let e = self.append(record, now_secs())?;
                json_response(200, &serde_json::json!({"seq": e.seq, "hash": e.hash}))
            }
            "list" => json_response(200, &self.list(cmd.since.unwrap_or(0), cmd.cursor.unwrap_or(0), cmd.limit.unwrap_or(100))?),
            "test_hook" if test_hooks_enabled(&self.env) => self.test_hook(&cmd),
            "test_hook" => json_response(403, &serde_json::json!({"code": "test_hooks_disabled", "message": "test hooks are off"})),
            _ => json_response(400, &serde_json::json!({"code": "bad_request", "message": "unknown op"})),
        }
    }
}

// ---- the client side (the admin API) ----

/// Whether this Worker has the trail's binding. Without it, admin writes are refused (503) before
/// anything is done: no write is acknowledged without its entry.
pub fn configured(env: &Env) -> bool {
    env.durable_object(AUDIT_BINDING).is_ok()
}

async fn ask(env: &Env, cmd: &serde_json::Value) -> Result<(u16, serde_json::Value), String> {
    let ns = env.durable_object(AUDIT_BINDING).map_err(|_| format!("no {AUDIT_BINDING} binding"))?;
    let answered = async {
        let stub = ns.get_by_name(TRAIL_NAME)?;
        let req = post_request("https://audit/cmd", &cmd.to_string()).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut resp = stub.fetch_with_request(req).await?;
        let status = resp.status_code();
        let text = resp.text().await?;
        worker::Result::Ok((status, serde_json::from_str::<serde_json::Value>(&text)?))
    };
    answered.await.map_err(|e: worker::Error| e.to_string())
}

/// Appends `record`; its `seq` once the trail has stored it durably.
pub async fn append_record(env: &Env, record: &AuditRecord) -> Result<u64, String> {
    match ask(env, &serde_json::json!({"op": "append", "record": record})).await? {
        (200, v) => v["seq"].as_u64().ok_or_else(|| "the audit trail answered without a seq".into()),
        (status, v) => Err(format!("the audit trail answered {status}: {v}")),
    }
}

fn bad(field: &str, message: &str) -> AdminAnswer {
    AdminAnswer { status: 400, op: "audit", id: None, body: serde_json::json!({"code": "bad_request", "field": field, "message": message}) }
}

fn unavailable(op: &'static str, e: &str) -> AdminAnswer {
    console_error!("{}", serde_json::json!({"event": "audit_trail_unreachable", "op": op, "error": e}));
    AdminAnswer { status: 503, op, id: None, body: serde_json::json!({"code": "audit_unavailable", "message": "audit trail unreachable; retry later"}) }
}

/// Handles `{prefix}/audit[...]` (authorization, and the entry of a hook call, are the caller's).
pub async fn admin_op(body: Option<serde_json::Value>, method: &str, rest: &str, query: &str, env: &Env) -> AdminAnswer {
    let cmd = match (method, rest.trim_end_matches('/')) {
        ("GET", "/audit") => {
            let mut cmd = serde_json::json!({"op": "list"});
            for (name, key) in [("since", "since"), ("cursor", "cursor"), ("limit", "limit")] {
                let Some(v) = query_param(query, name).filter(|v| !v.is_empty()) else { continue };
                let parsed = match name {
                    "since" => v.parse::<i64>().ok().map(serde_json::Value::from),
                    "cursor" => v.parse::<u64>().ok().map(serde_json::Value::from),
                    _ => v.parse::<usize>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).map(serde_json::Value::from),
                };
                match parsed {
                    Some(p) => cmd[key] = p,
                    None if name == "limit" => return bad(name, "1 to 1000"),
                    None if name == "since" => return bad(name, "Unix seconds"),
                    None => return bad(name, "the next_cursor of the previous page"),
                }
            }
            cmd
        }
        ("POST", "/audit/test-hook") => {
            if !test_hooks_enabled(env) {
                return AdminAnswer {
                    status: 403,
                    op: "audit_test_hook",
                    id: None,
                    body: serde_json::json!({"code": "test_hooks_disabled", "message": format!("the test hook needs {TEST_HOOKS_VAR}=1 (test deployments only)")}),
                };
            }
            let body = body.unwrap_or_default();
            let mut cmd = serde_json::json!({"op": "test_hook", "seq": body["seq"], "rehash": body["rehash"].as_bool().unwrap_or(false), "delete": body["delete"].as_bool().unwrap_or(false)});
            if body["set"].is_object() {
                cmd["set"] = body["set"].clone();
            }
            cmd
        }
        _ => return AdminAnswer { status: 404, op: "unknown", id: None, body: serde_json::json!({"code": "not_found", "message": "no such admin route"}) },
    };
    let op = if cmd["op"] == "list" { "audit_list" } else { "audit_test_hook" };
    match ask(env, &cmd).await {
        Ok((status, body)) => AdminAnswer { status, op, id: None, body },
        Err(e) => unavailable(op, &e),
    }
}
