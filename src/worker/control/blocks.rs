//! The block list ([`crate::core::ipblock`]) in the revocation ledger: the `blocks` table of the
//! `RevocationLedger` Durable Object (one writer, in order, like revocations), published to KV
//! as one JSON value ([`BLOCKS_KEY`]) by the ledger's alarm, batched like revocations (within
//! about half a second of a change), and the admin API under `{prefix}/blocks`:
//!
//! - `POST /blocks` `{"target", "expires_in_secs"` (default 3600) `| "expires_at", "reason"}` →
//!   `201 {"id", "block", "created", "version"}` (`200` when it replaced a block of the same
//!   target: the later expiry wins);
//! - `GET /blocks` → `{"items": [{"id", "block"}], "total", "version"}` (active blocks, by id);
//! - `DELETE /blocks/{id}` → `{"id", "block", "removed": true, "version"}`, or `404`.
//!
//! A block's id is its target's canonical form with `/` as `_` (`203.0.113.0_24`). Writes are
//! refused past [`MAX_BLOCKS`] active blocks (`409 blocks_full`). Alert rules' automatic blocks
//! (`"automatic": true`, set by [`block_address`]) may hold at most [`MAX_AUTOMATIC_BLOCKS`] of
//! them, so an attack that trips alerts from many addresses cannot crowd out an operator's; they
//! block an IPv6 client's whole /64 (an address of its own costs an attacker nothing). A failed KV
//! write leaves the list marked dirty; the ledger's alarm publishes it again (every 5 s until KV
//! answers), and it never holds back the revocations' publish.
//! Table: `blocks` (id, target, expires_at, created_at, reason, automatic; indexed by expiry).

use super::answer::{int, json_response, text};
use crate::core::ipblock::{Block, BlockList, BlockTarget, BLOCKS_KEY, MAX_BLOCKS, MAX_BLOCK_SECS};
use crate::worker::runtime::{ask_ledger, kv_binding};
use serde::Deserialize;
use worker::{console_log, console_warn, Env, Response, SqlStorage, SqlStorageValue as V};

/// The tables (run by the ledger's `ready`).
pub const DDL: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS blocks (id TEXT PRIMARY KEY, target TEXT NOT NULL, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL, reason TEXT NOT NULL, automatic INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS blocks_by_expiry ON blocks (expires_at)",
];

/// Most active blocks made by alert rules (the rest of [`MAX_BLOCKS`] is the operators').
pub const MAX_AUTOMATIC_BLOCKS: usize = 8_000;

/// Default block length when the call gives none.
const DEFAULT_BLOCK_SECS: i64 = 3600;

/// A block as an operator (or an alert's automatic response) sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    target: String,
    #[serde(default)]
    expires_in_secs: Option<i64>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    reason: String,
    /// Made by an alert rule's action.
    #[serde(default)]
    automatic: bool,
}

fn rows(sql: &SqlStorage, query: &str, args: Vec<V>) -> worker::Result<Vec<Vec<V>>> {
    sql.exec(query, args)?.raw().collect()
}

fn meta(sql: &SqlStorage, name: &str) -> worker::Result<i64> {
    Ok(rows(sql, "SELECT value FROM ledger WHERE name = ?", vec![name.into()])?.first().map_or(0, |r| int(r.first())))
}

fn set_meta(sql: &SqlStorage, name: &str, value: i64) -> worker::Result<()> {
    rows(sql, "INSERT OR REPLACE INTO ledger (name, value) VALUES (?, ?)", vec![name.into(), value.into()]).map(drop)
}

fn bad(code: &str, message: impl std::fmt::Display) -> worker::Result<Response> {
    json_response(400, &serde_json::json!({"code": code, "message": message.to_string()}))
}

fn block_json(r: &[V]) -> serde_json::Value {
    serde_json::json!({"target": text(r.get(1)), "expires_at": int(r.get(2)), "created_at": int(r.get(3)), "reason": text(r.get(4))})
}

/// Whether the published list is behind the table (a KV write failed).
pub fn dirty(sql: &SqlStorage) -> worker::Result<bool> {
    Ok(meta(sql, "blocks_dirty")? != 0)
}

/// Writes the active blocks to KV (expired rows deleted first) and clears the dirty mark; on
/// failure the mark stays (the caller schedules a retry).
pub async fn publish(sql: &SqlStorage, env: &Env, now: i64) -> worker::Result<()> {
    set_meta(sql, "blocks_dirty", 1)?;
    rows(sql, "DELETE FROM blocks WHERE expires_at <= ?", vec![now.into()])?;
    let version = meta(sql, "blocks_version")?.max(0) as u64;
    let blocks = rows(sql, "SELECT target, expires_at FROM blocks ORDER BY id LIMIT ?", vec![(MAX_BLOCKS as i64).into()])?
        .iter()
        .map(|r| Block { target: text(r.first()).to_string(), expires_at: int(r.get(1)) })
        .collect::<Vec<_>>();
    let n = blocks.len();
    let body = serde_json::to_string(&BlockList { version, blocks })?;
    let kv = kv_binding(env).ok_or_else(|| worker::Error::RustError("no EDGEWARD_KV binding".into()))?;
    kv.put_bytes(BLOCKS_KEY, body.as_bytes()).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
    // A change made during the write bumped the version: still dirty.
    if meta(sql, "blocks_version")?.max(0) as u64 == version {
        set_meta(sql, "blocks_dirty", 0)?;
    }
    console_log!("{}", serde_json::json!({"event": "ip_blocks_published", "version": version, "entries": n, "bytes": body.len()}));
    Ok(())
}

/// Runs a block command of the ledger (`block`, `blocks`, `unblock`): the answer, and whether
/// the list changed (then the caller publishes it).
pub fn command(sql: &SqlStorage, op: &str, body: Option<serde_json::Value>, id: Option<String>, now: i64) -> worker::Result<(Response, bool)> {
    let version = |sql: &SqlStorage| meta(sql, "blocks_version");
    match op {
        "block" => {
            let new: NewBlock = match body.map(serde_json::from_value).transpose() {
                Ok(Some(n)) => n,
                Ok(None) => return Ok((bad("bad_request", "body required")?, false)),
                Err(e) => return Ok((bad("bad_request", e)?, false)),
            };
            let target = match BlockTarget::parse(&new.target) {
                Ok(t) => t,
                Err(e) => return Ok((bad("bad_target", format!("target: {e}"))?, false)),
            };
            let expires_at = match (new.expires_at, new.expires_in_secs) {
                (Some(_), Some(_)) => return Ok((bad("bad_request", "give expires_at or expires_in_secs, not both")?, false)),
                (Some(at), None) => at,
                (None, secs) => now.saturating_add(secs.unwrap_or(DEFAULT_BLOCK_SECS)),
            };
            if expires_at <= now || expires_at - now > MAX_BLOCK_SECS {
                return Ok((bad("bad_expiry", format!("a block ends in the future, within {} days", MAX_BLOCK_SECS / 86_400))?, false));
            }
            let id = target.id();
            let held = rows(
                sql,
                "SELECT id, target, expires_at, created_at, reason, automatic FROM blocks WHERE id = ? AND expires_at > ?",
                vec![id.as_str().into(), now.into()],
            )?;
            let count = |automatic_only: bool| -> worker::Result<i64> {
                let q = if automatic_only {
                    "SELECT count(*) FROM blocks WHERE expires_at > ? AND automatic = 1"
                } else {
                    "SELECT count(*) FROM blocks WHERE expires_at > ?"
                };
                Ok(rows(sql, q, vec![now.into()])?.first().map_or(0, |r| int(r.first())))
            };
            if held.is_empty() && (count(false)? >= MAX_BLOCKS as i64 || (new.automatic && count(true)? >= MAX_AUTOMATIC_BLOCKS as i64)) {
                let message =
                    format!("{MAX_BLOCKS} blocks (at most {MAX_AUTOMATIC_BLOCKS} of them made by alert rules) may be active: remove some, or block a prefix");
                return Ok((json_response(409, &serde_json::json!({"code": "blocks_full", "message": message}))?, false));
            }
            // An operator's block stays the operator's (an alert's later one only lengthens it).
            let automatic = new.automatic && held.first().is_none_or(|r| int(r.get(5)) == 1);
            // The later expiry wins (an automatic block never shortens an operator's).
            let expires_at = held.first().map_or(expires_at, |r| int(r.get(2)).max(expires_at));
            let reason: String = new.reason.chars().take(256).collect();
            rows(
                sql,
                "INSERT OR REPLACE INTO blocks (id, target, expires_at, created_at, reason, automatic) VALUES (?, ?, ?, ?, ?, ?)",
                vec![id.as_str().into(), target.canonical().into(), expires_at.into(), now.into(), reason.into(), i64::from(automatic).into()],
            )?;
            set_meta(sql, "blocks_version", version(sql)? + 1)?;
            set_meta(sql, "blocks_dirty", 1)?;
            let row = rows(sql, "SELECT id, target, expires_at, created_at, reason FROM blocks WHERE id = ?", vec![id.as_str().into()])?;
            let block = row.first().map(|r| block_json(r)).unwrap_or_default();
            let created = held.is_empty();
            let answer = serde_json::json!({"id": id, "block": block, "created": created, "version": version(sql)?});
            Ok((json_response(if created { 201 } else { 200 }, &answer)?, true))
        }
        "blocks" => {
            let items: Vec<serde_json::Value> = rows(
                sql,
                "SELECT id, target, expires_at, created_at, reason FROM blocks WHERE expires_at > ? ORDER BY id LIMIT ?",
                vec![now.into(), (MAX_BLOCKS as i64).into()],
            )?
            .iter()
            .map(|r| serde_json::json!({"id": text(r.first()), "block": block_json(r)}))
            .collect();
            Ok((json_response(200, &serde_json::json!({"total": items.len(), "items": items, "version": version(sql)?}))?, false))
        }
        "unblock" => {
            let id = id.unwrap_or_default();
            let held = rows(
                sql,
                "SELECT id, target, expires_at, created_at, reason FROM blocks WHERE id = ? AND expires_at > ?",
                vec![id.as_str().into(), now.into()],
            )?;
            let Some(r) = held.first() else {
                return Ok((json_response(404, &serde_json::json!({"code": "not_found", "message": "no such block"}))?, false));
            };
            let block = block_json(r);
            rows(sql, "DELETE FROM blocks WHERE id = ?", vec![id.as_str().into()])?;
            set_meta(sql, "blocks_version", version(sql)? + 1)?;
            set_meta(sql, "blocks_dirty", 1)?;
            Ok((json_response(200, &serde_json::json!({"id": id, "block": block, "removed": true, "version": version(sql)?}))?, true))
        }
        _ => Ok((bad("bad_request", "unknown op")?, false)),
    }
}

/// Blocks `target` (as an alert's subject shows a client) until `expires_at`, through the ledger:
/// the answer's status and body, or why the ledger could not be asked. (An alert rule's
/// `block_ip_secs` action.)
pub async fn block_address(env: &Env, target: &str, expires_at: i64, reason: &str) -> Result<(u16, serde_json::Value), String> {
    // An IPv6 client's whole /64: addresses within it cost an attacker nothing.
    let target = match BlockTarget::parse(target) {
        Ok(BlockTarget::Addr(ip @ std::net::IpAddr::V6(_))) => format!("{ip}/64"),
        _ => target.to_string(),
    };
    let cmd = serde_json::json!({"op": "block", "body": {"target": target, "expires_at": expires_at, "reason": reason, "automatic": true}});
    let mut resp = ask_ledger(env, cmd).await.map_err(|e| e.to_string())?;
    let status = resp.status_code();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    let v = serde_json::from_str(&body).unwrap_or_default();
    if status >= 300 {
        console_warn!("{}", serde_json::json!({"event": "ip_block_failed", "status": status, "answer": v}));
    }
    Ok((status, v))
}
