//! The `RevocationLedger` Durable Object and the revocation admin API.
//!
//! The ledger (one instance, strongly consistent, ordered, idempotent) keeps every revocation
//! as a row of its SQLite storage (nothing of the list is held in memory between calls) and
//! publishes the sharded snapshot of the active ones to KV (`core::revocation`, format 3): a
//! manifest (`revocations:v3`) naming each shard's version, and one KV value per shard (a few
//! thousand to 65,536 entries, 17-25 bytes each), so no value nears KV's 25 MiB limit and a
//! change republishes only the shards it touched. Every gate isolate re-reads the manifest in
//! the background every `revocations.refresh_secs` and fetches only the shards that changed;
//! the hot path makes no KV read. `sensitive` routes and admin JWTs ask the ledger itself
//! (`{"op": "check", "body": facts}`: at most four rows read by primary key).
//!
//! Publishing is batched: a write returns once it is durably stored, and the first unpublished
//! change sets an alarm [`PUBLISH_DELAY_MS`] later, which prunes expired rows, publishes every
//! changed ("dirty") shard, then the manifest (and, while the list has at most
//! `LEGACY_MAX_ENTRIES` entries, the format-2 single value earlier gates read). A failed publish
//! sets its own retry; a write that finds a dirty shard (say, one whose publish could not be
//! scheduled) schedules one, and so does the first call after a restart. Expired rows are
//! deleted at each publish; their shard is republished (smaller) only once a quarter of its
//! entries have expired, since the edge ignores expired entries anyway. Replaced shard keys are deleted [`GARBAGE_DELAY_SECS`] later (a gate may
//! still hold the manifest that named them). With nothing to publish, the alarm is set for the
//! next expiry, so expired rows leave storage without any write.
//!
//! Tables: `revocations` (id = the 16-hex-digit target id, kind, expires_at, before,
//! created_at, target JSON, reason; indexed by expiry), `ledger` (version, shard bits,
//! migrated), `shards` (the published manifest), `dirty` (shards changed since their last
//! publish, with the version of the change), `garbage` (replaced shard keys and when to delete
//! them). Entries an earlier version kept in the key-value API (`e:ID`) are moved into the
//! table on first use.

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::answer::{int, json_response, query_param, text, AdminAnswer};
use crate::core::revocation::{
    encode_compact, encode_shard, shard_bits_for, shard_key, shard_of, shard_range, Manifest, Record, Revocation, RevocationSet, ShardRef, Target, TokenFacts,
    LEGACY_MAX_ENTRIES, MANIFEST_KEY, SNAPSHOT_KEY,
};
use crate::worker::runtime::js::DoStorage;
use crate::worker::runtime::{ask_ledger, kv_binding, now_secs};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use worker::{console_error, console_log, console_warn, durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue as V, State};

/// How long after the first unpublished change the ledger publishes: one publish per burst of
/// changes, at most one per interval.
pub const PUBLISH_DELAY_MS: u64 = 500;
/// After a publish that rewrote n shards, the next waits (n − 1) × this: a change to one shard
/// is published 500 ms after it, while a bulk import (each batch touching every shard) is
/// published about every 30 s at 16 shards instead of rewriting all of them every few seconds.
pub const DAMPING_MS_PER_SHARD: u64 = 2_000;
/// Retry interval of a failed publish.
const PUBLISH_RETRY_MS: u64 = 5_000;
/// A replaced shard's KV key is deleted this long after: longer than any gate keeps using a
/// manifest (`refresh_secs`, plus KV's own caching of about a minute).
pub const GARBAGE_DELAY_SECS: i64 = 600;
/// `garbage.after` of a replaced shard key while the manifest that replaces it is not written.
/// (The largest integer a JS number holds exactly: SQL values pass through JS.)
const GARBAGE_PENDING: i64 = (1 << 53) - 1;
/// With nothing to publish, the next prune is at the next expiry, but not sooner than this.
const PRUNE_MIN_SECS: i64 = 60;
/// Most revocations one batch call adds.
pub const MAX_BATCH: usize = 1_000;

/// One revocation as an operator sends it. `expires_at` may be left out for a `jti` or a
/// subject watermark: it is then [`Target::natural_expiry`] (with `token_exp`, the revoked
/// token's `exp`, when given).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRevocation {
    target: Target,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    token_exp: Option<i64>,
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
/// delivered, except across the KV writes of a publish, which is written so that a change made
/// meanwhile stays dirty and is published next.
#[durable_object]
pub struct RevocationLedger {
    sql: SqlStorage,
    storage: Option<DoStorage>,
    env: Env,
    /// Tables created and the earlier key-value entries moved.
    ready: Cell<bool>,
    /// A publish alarm is set and has not started yet.
    publish_pending: Cell<bool>,
    /// No publish before this (ms): a publish that rewrote many shards (a bulk import touches
    /// them all) holds the next one back ([`DAMPING_MS_PER_SHARD`]).
    next_publish_ms: Cell<f64>,
}

fn bad_request(message: impl std::fmt::Display) -> worker::Result<Response> {
    json_response(400, &serde_json::json!({"code": "bad_request", "message": message.to_string()}))
}

fn err(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// 16 hex digits, as the admin API names a revocation (and the table's key).
fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

/// The shard a stored id (16 hex digits) belongs to under `bits`.
fn shard_of_hex(id: &str, bits: u8) -> usize {
    shard_of(u64::from_str_radix(id, 16).unwrap_or(0), bits)
}

impl RevocationLedger {
    fn storage(&self) -> worker::Result<&DoStorage> {
        self.storage.as_ref().ok_or_else(|| err("no Durable Object storage"))
    }

    /// Every row of `query` (read to the end at once: a cursor does not survive an await).
    fn rows(&self, query: &str, args: Vec<V>) -> worker::Result<Vec<Vec<V>>> {
        self.sql.exec(query, args)?.raw().collect()
    }

    fn one_int(&self, query: &str, args: Vec<V>) -> worker::Result<Option<i64>> {
        Ok(self.rows(query, args)?.first().and_then(|r| r.first()).and_then(|v| match v {
            V::Integer(i) => Some(*i),
            V::Float(f) => Some(*f as i64),
            _ => None,
        }))
    }

    fn meta(&self, name: &str) -> worker::Result<i64> {
        Ok(self.one_int("SELECT value FROM ledger WHERE name = ?", vec![name.into()])?.unwrap_or(0))
    }

    fn set_meta(&self, name: &str, value: i64) -> worker::Result<()> {
        self.rows("INSERT INTO ledger (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", vec![name.into(), value.into()])
            .map(|_| ())
    }

    fn version(&self) -> worker::Result<u64> {
        Ok(self.meta("version")?.max(0) as u64)
    }

    fn bits(&self) -> worker::Result<u8> {
        Ok(self.meta("bits")?.clamp(0, 8) as u8)
    }

    /// Records a change to shard `idx`: the ledger version grows, and the shard is dirty at it.
    fn touch(&self, idx: usize) -> worker::Result<u64> {
        let v = self.version()? + 1;
        self.set_meta("version", v as i64)?;
        self.rows(
            "INSERT INTO dirty (idx, version) VALUES (?, ?) ON CONFLICT(idx) DO UPDATE SET version = excluded.version",
            vec![(idx as i64).into(), (v as i64).into()],
        )?;
        Ok(v)
    }

    /// Creates the tables, and on the first call after an upgrade moves the entries an earlier
    /// version kept in the key-value API into them (then deletes those).
    async fn ready(&self) -> worker::Result<()> {
        if self.ready.get() {
            return Ok(());
        }
        for ddl in [
            "CREATE TABLE IF NOT EXISTS revocations (id TEXT PRIMARY KEY, kind INTEGER NOT NULL, expires_at INTEGER NOT NULL, before INTEGER NOT NULL, created_at INTEGER NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS revocations_by_expiry ON revocations (expires_at)",
            "CREATE TABLE IF NOT EXISTS ledger (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS shards (idx INTEGER PRIMARY KEY, version INTEGER NOT NULL, count INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS dirty (idx INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS garbage (key TEXT PRIMARY KEY, after INTEGER NOT NULL) WITHOUT ROWID",
            super::blocks::DDL[0],
            super::blocks::DDL[1],
        ] {
            self.rows(ddl, vec![])?;
        }
        if self.meta("migrated")? == 0 {
            let storage = self.storage()?;
            let old_version = storage.number("version").await.map_err(err)?.map_or(0, |v| v as i64);
            let listed = storage.list_strings("e:").await.map_err(err)?;
            let now = now_secs();
            let mut moved = 0;
            for (_, v) in &listed {
                if let Ok(r) = crate::core::json::from_text::<Revocation>(v) {
                    if r.expires_at > now {
                        self.upsert(&r)?;
                        moved += 1;
                    }
                }
            }
            self.set_meta("version", old_version)?;
            if moved > 0 {
                // Everything is published again, in shards.
                self.touch(0)?;
                self.rows("DELETE FROM shards", vec![])?;
            }
            self.set_meta("migrated", 1)?;
            let mut old: Vec<String> = listed.into_iter().map(|(k, _)| k).collect();
            old.push("version".into());
            for chunk in old.chunks(128) {
                storage.delete_all_of(chunk).await.map_err(err)?;
            }
            if moved > 0 {
                console_log!("{}", serde_json::json!({"event": "revocations_migrated", "entries": moved}));
                self.schedule_publish().await?;
            }
        }
        self.ready.set(true);
        // A change stored before a restart whose publish was never scheduled (or was lost).
        self.schedule_if_dirty().await
    }

    fn upsert(&self, r: &Revocation) -> worker::Result<()> {
        let rec = r.record();
        self.rows(
            "INSERT INTO revocations (id, kind, expires_at, before, created_at, target, reason) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, expires_at = excluded.expires_at, before = excluded.before, \
             created_at = excluded.created_at, target = excluded.target, reason = excluded.reason",
            vec![
                hex_id(rec.id).into(),
                i64::from(rec.kind).into(),
                rec.expires_at.into(),
                rec.before.into(),
                r.created_at.into(),
                serde_json::to_string(&r.target)?.into(),
                r.reason.clone().into(),
            ],
        )
        .map(|_| ())
    }

    /// The stored revocation `id`, if any (expired or not).
    fn get(&self, id: &str) -> worker::Result<Option<Revocation>> {
        let rows = self.rows("SELECT target, reason, created_at, expires_at FROM revocations WHERE id = ?", vec![id.into()])?;
        Ok(rows.first().and_then(|r| {
            let target = crate::core::json::from_text::<Target>(text(r.first())).ok()?;
            Some(Revocation { target, reason: text(r.get(1)).to_string(), created_at: int(r.get(2)), expires_at: int(r.get(3)) })
        }))
    }

    /// Schedules a publish if any shard is dirty.
    async fn schedule_if_dirty(&self) -> worker::Result<()> {
        if self.one_int("SELECT count(*) FROM dirty", vec![])?.unwrap_or(0) > 0 {
            self.schedule_publish().await?;
        }
        Ok(())
    }

    async fn schedule_publish(&self) -> worker::Result<()> {
        if !self.publish_pending.get() {
            let held_back = (self.next_publish_ms.get() - worker::js_sys::Date::now()).max(0.0) as u64;
            // Stored durably with the alarm: a restart of the object still publishes.
            self.storage()?.set_alarm_in(PUBLISH_DELAY_MS.max(held_back)).await.map_err(err)?;
            self.publish_pending.set(true);
        }
        Ok(())
    }

    /// Checks one new revocation and sets its expiry (given, or natural): the revocation, or the
    /// 400 answer.
    fn prepare(new: NewRevocation, now: i64, bounds: Option<(i64, Option<i64>)>) -> Result<Revocation, serde_json::Value> {
        let expires_at = match new.expires_at.or_else(|| bounds.and_then(|(leeway, life)| new.target.natural_expiry(new.token_exp, now, leeway, life))) {
            Some(e) => e,
            None => {
                return Err(
                    serde_json::json!({"code": "bad_request", "field": "expires_at", "message": "required for this target (no bound follows from the configuration)"}),
                )
            }
        };
        let r = Revocation { target: new.target, reason: new.reason, created_at: now, expires_at };
        match r.validate(now) {
            Ok(()) => Ok(r),
            Err(e) => Err(serde_json::json!({"code": "bad_request", "field": e.field, "message": e.message})),
        }
    }

    /// Merges a checked revocation into storage (synchronous: a batch is one write without
    /// awaits). `Ok((id, created, changed))`, or the 500 answer.
    fn store(&self, r: Revocation, now: i64) -> Result<(String, bool, bool), serde_json::Value> {
        let id = r.target.id();
        let internal = |e: worker::Error| serde_json::json!({"code": "internal", "message": e.to_string()});
        let existing = self.get(&id).map_err(internal)?.filter(|o| o.expires_at > now);
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
            self.upsert(&merged).map_err(internal)?;
            let bits = self.bits().map_err(internal)?;
            self.touch(shard_of(merged.target.id_u64(), bits)).map_err(internal)?;
        }
        Ok((id, existing.is_none(), changed))
    }

    /// The configured leeway and longest token lifetime (for [`Target::natural_expiry`]). The
    /// lifetime bounds nothing when tokens without `exp` are accepted (`require_exp: false`:
    /// such a token never expires); without a valid configuration no expiry is implied at all.
    fn bounds(&self) -> Option<(i64, Option<i64>)> {
        match &crate::worker::runtime::isolate(&self.env).gate {
            Ok(g) => Some((g.policy().leeway_secs, g.policy().max_lifetime_secs.filter(|_| g.policy().require_exp))),
            Err(_) => None,
        }
    }

    /// Prunes expired rows, then publishes every dirty shard, the manifest and (for a short
    /// list) the format-2 snapshot; deletes replaced shard keys whose time has come; sets the
    /// next alarm.
    async fn publish(&self) -> worker::Result<()> {
        self.ready().await?;
        // Cleared before anything is read: a change made while a KV write is in flight sets a
        // new alarm, so it is never left unpublished.
        self.publish_pending.set(false);
        let now = now_secs();
        // The block list first, but its failure never holds back the revocations: logged, and
        // retried by an alarm of its own below.
        let blocks_failed = super::blocks::dirty(&self.sql)?
            && match super::blocks::publish(&self.sql, &self.env, now).await {
                Ok(()) => false,
                Err(e) => {
                    console_error!("{}", serde_json::json!({"event": "ip_blocks_publish_failed", "error": e.to_string(), "retry_in_ms": PUBLISH_RETRY_MS}));
                    true
                }
            };
        let kv = kv_binding(&self.env).ok_or_else(|| err("no EDGEWARD_KV binding"))?;
        let old_bits = self.bits()?;
        // Prune: expired rows go. The edge ignores expired entries already, so a shard is
        // republished for them (to shrink it) only once a quarter of what it holds has expired:
        // expiries spread over time do not rewrite every shard at every prune.
        let mut expired_per_shard = std::collections::BTreeMap::<usize, i64>::new();
        for r in self.rows("SELECT substr(id, 1, 2), count(*) FROM revocations WHERE expires_at <= ? GROUP BY 1", vec![now.into()])? {
            let prefix = u64::from_str_radix(text(r.first()), 16).unwrap_or(0);
            *expired_per_shard.entry(shard_of(prefix << 56, old_bits)).or_default() += int(r.get(1));
        }
        for (idx, n) in expired_per_shard {
            let held = self.one_int("SELECT count FROM shards WHERE idx = ?", vec![(idx as i64).into()])?.unwrap_or(0);
            if n * 4 >= held.max(1) {
                self.touch(idx)?;
            }
        }
        let pruned = self.sql.exec("DELETE FROM revocations WHERE expires_at <= ?", vec![now.into()])?;
        let _ = pruned.raw().count();
        let pruned = pruned.rows_written();
        let count = self.one_int("SELECT count(*) FROM revocations", vec![])?.unwrap_or(0).max(0) as usize;
        let bits = shard_bits_for(count, old_bits);
        let published = self.rows("SELECT idx, version, count FROM shards", vec![])?;
        if bits != old_bits || published.is_empty() {
            // Re-sharded (or never published): every shard of the new layout is written, and
            // the old layout's keys are garbage.
            for r in &published {
                if int(r.get(2)) > 0 {
                    let key = shard_key(old_bits, int(r.first()) as usize, int(r.get(1)) as u64);
                    self.rows("INSERT OR REPLACE INTO garbage (key, after) VALUES (?, ?)", vec![key.into(), GARBAGE_PENDING.into()])?;
                }
            }
            self.rows("DELETE FROM shards", vec![])?;
            self.rows("DELETE FROM dirty", vec![])?;
            self.set_meta("bits", i64::from(bits))?;
            for idx in 0..(1usize << bits) {
                self.touch(idx)?;
            }
        }
        let dirty: Vec<usize> = self.rows("SELECT idx FROM dirty ORDER BY idx", vec![])?.iter().map(|r| int(r.first()) as usize).collect();
        let mut written = 0usize;
        for idx in &dirty {
            // Read and encoded in one synchronous step, at the version of that moment.
            let version = self.version()?;
            let (lo, hi) = shard_range(bits, *idx);
            let mut records = self.records("WHERE id >= ? AND id <= ? AND expires_at > ?", vec![hex_id(lo).into(), hex_id(hi).into(), now.into()])?;
            let n = records.len();
            let old = self.rows("SELECT version, count FROM shards WHERE idx = ?", vec![(*idx as i64).into()])?;
            if n > 0 {
                let bytes = encode_shard(version, bits, *idx, &mut records);
                drop(records);
                written += bytes.len();
                kv.put_bytes(&shard_key(bits, *idx, version), &bytes).await.map_err(err)?;
            }
            self.rows(
                "INSERT OR REPLACE INTO shards (idx, version, count) VALUES (?, ?, ?)",
                vec![(*idx as i64).into(), (version as i64).into(), (n as i64).into()],
            )?;
            if let Some(o) = old.first().filter(|o| int(o.get(1)) > 0 && int(o.first()) as u64 != version) {
                let key = shard_key(bits, *idx, int(o.first()) as u64);
                self.rows("INSERT OR REPLACE INTO garbage (key, after) VALUES (?, ?)", vec![key.into(), GARBAGE_PENDING.into()])?;
            }
            // A change made while the shard was being written has a later version: it stays dirty.
            self.rows("DELETE FROM dirty WHERE idx = ? AND version <= ?", vec![(*idx as i64).into(), (version as i64).into()])?;
        }
        let version = self.version()?;
        let mut shards = vec![ShardRef::default(); 1usize << bits];
        for r in self.rows("SELECT idx, version, count FROM shards", vec![])? {
            if let Some(s) = shards.get_mut(int(r.first()) as usize) {
                *s = ShardRef { version: int(r.get(1)) as u64, count: int(r.get(2)) as u32 };
            }
        }
        let manifest = Manifest { version, bits, shards };
        kv.put_bytes(MANIFEST_KEY, &manifest.encode()).await.map_err(err)?;
        // The replaced keys' delay runs from now, when no new manifest names them any more.
        self.rows("UPDATE garbage SET after = ? WHERE after = ?", vec![(now_secs() + GARBAGE_DELAY_SECS).into(), GARBAGE_PENDING.into()])?;
        if count <= LEGACY_MAX_ENTRIES {
            // For gates of earlier versions (during an upgrade): the whole list in one value.
            let mut all = self.records("WHERE expires_at > ?", vec![now.into()])?;
            kv.put_bytes(SNAPSHOT_KEY, &encode_compact(version, &mut all)).await.map_err(err)?;
        }
        let due: Vec<String> = self.rows("SELECT key FROM garbage WHERE after <= ?", vec![now.into()])?.iter().map(|r| text(r.first()).to_string()).collect();
        for key in &due {
            kv.delete(key).await.map_err(err)?;
            self.rows("DELETE FROM garbage WHERE key = ?", vec![key.as_str().into()])?;
        }
        let hold_ms = DAMPING_MS_PER_SHARD * dirty.len().saturating_sub(1) as u64;
        self.next_publish_ms.set(worker::js_sys::Date::now() + hold_ms as f64);
        console_log!(
            "{}",
            serde_json::json!({"event": "revocations_published", "version": version, "entries": count, "shards": 1usize << bits, "shards_written": dirty.len(), "bytes": written, "pruned": pruned, "garbage_deleted": due.len(), "next_publish_held_ms": hold_ms})
        );
        self.next_alarm(now).await?;
        if blocks_failed {
            self.storage()?.set_alarm_in(PUBLISH_RETRY_MS).await.map_err(err)?;
            self.publish_pending.set(true);
        }
        Ok(())
    }

    /// After a publish: soon if something is dirty again, else at the next expiry or garbage
    /// deletion (not sooner than [`PRUNE_MIN_SECS`]), else none.
    async fn next_alarm(&self, now: i64) -> worker::Result<()> {
        if self.one_int("SELECT count(*) FROM dirty", vec![])?.unwrap_or(0) > 0 {
            return self.schedule_publish().await;
        }
        let next_expiry = self.one_int("SELECT min(expires_at) FROM revocations", vec![])?;
        let next_garbage = self.one_int("SELECT min(after) FROM garbage WHERE after < ?", vec![GARBAGE_PENDING.into()])?;
        if let Some(at) = next_expiry.into_iter().chain(next_garbage).min() {
            let in_ms = (at.max(now + PRUNE_MIN_SECS) - now) as u64 * 1000;
            if !self.publish_pending.get() {
                self.storage()?.set_alarm_in(in_ms).await.map_err(err)?;
            }
        }
        Ok(())
    }

    /// The compact records of the rows `filter` selects.
    fn records(&self, filter: &str, args: Vec<V>) -> worker::Result<Vec<Record>> {
        let rows = self.rows(&format!("SELECT kind, id, expires_at, before FROM revocations {filter}"), args)?;
        Ok(rows
            .iter()
            .map(|r| Record {
                kind: int(r.first()) as u8,
                id: u64::from_str_radix(text(r.get(1)), 16).unwrap_or(0),
                expires_at: int(r.get(2)),
                before: int(r.get(3)),
            })
            .collect())
    }
}

impl DurableObject for RevocationLedger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        RevocationLedger {
            sql,
            storage: DoStorage::of(state),
            env,
            ready: Cell::new(false),
            publish_pending: Cell::new(false),
            next_publish_ms: Cell::new(0.0),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // A failed publish sets its own next alarm (every 5 s, for as long as KV fails) instead of
        // relying on the runtime's bounded alarm retries: a recorded revocation must reach KV.
        if let Err(e) = self.publish().await {
            console_error!("{}", serde_json::json!({"event": "revocations_publish_failed", "error": e.to_string(), "retry_in_ms": PUBLISH_RETRY_MS}));
            self.publish_pending.set(true);
            self.storage()?.set_alarm_in(PUBLISH_RETRY_MS).await.map_err(err)?;
            return Response::ok("publish failed; retrying");
        }
        Response::ok("published")
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(cmd) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<Command>(&t).ok()) else {
            return bad_request("malformed ledger command");
        };
        self.ready().await?;
        let now = now_secs();
        match cmd.op.as_str() {
            "add" => {
                let Some(body) = cmd.body else { return bad_request("body required") };
                let new: NewRevocation = match serde_json::from_value(body) {
                    Ok(n) => n,
                    Err(e) => return bad_request(e),
                };
                let (id, created, _changed) = match Self::prepare(new, now, self.bounds()) {
                    Err(answer) => return json_response(400, &answer),
                    Ok(r) => match self.store(r, now) {
                        Ok(stored) => stored,
                        Err(answer) => return json_response(500, &answer),
                    },
                };
                // Also when nothing changed: an earlier change whose publish could not be
                // scheduled is published now.
                self.schedule_if_dirty().await?;
                json_response(
                    if created { 201 } else { 200 },
                    &serde_json::json!({"id": id, "created": created, "version": self.version()?, "revocation": self.get(&id)?}),
                )
            }
            "add_many" => {
                let items = cmd.body.as_ref().and_then(|b| b.get("items")).and_then(|i| i.as_array()).cloned().unwrap_or_default();
                if items.is_empty() || items.len() > MAX_BATCH {
                    return bad_request(format!("body must be {{\"items\": [...]}} with 1 to {MAX_BATCH} revocations"));
                }
                let mut news = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match serde_json::from_value::<NewRevocation>(item) {
                        Ok(n) => news.push(n),
                        Err(e) => return json_response(400, &serde_json::json!({"code": "bad_request", "index": i, "message": e.to_string()})),
                    }
                }
                // Every item checked before anything is written: a bad item writes nothing.
                let bounds = self.bounds();
                let mut checked = Vec::with_capacity(news.len());
                for (i, n) in news.into_iter().enumerate() {
                    match Self::prepare(n, now, bounds) {
                        Ok(r) => checked.push(r),
                        Err(mut answer) => {
                            answer["index"] = i.into();
                            return json_response(400, &answer);
                        }
                    }
                }
                let (mut created, mut updated, mut unchanged) = (0, 0, 0);
                for r in checked {
                    match self.store(r, now) {
                        Ok((_, true, _)) => created += 1,
                        Ok((_, false, true)) => updated += 1,
                        Ok(_) => unchanged += 1,
                        Err(answer) => return json_response(500, &answer),
                    }
                }
                self.schedule_if_dirty().await?;
                json_response(200, &serde_json::json!({"created": created, "updated": updated, "unchanged": unchanged, "version": self.version()?}))
            }
            "check" => {
                // Strict mode: the ledger's own rows, with no propagation delay.
                let facts = cmd.body.as_ref().and_then(|b| TokenFacts::deserialize(b).ok());
                let Some(facts) = facts else { return bad_request("token facts required") };
                let ids: Vec<V> = facts.lookups().into_iter().map(|(_, id)| hex_id(id).into()).collect();
                let records = if ids.is_empty() {
                    Vec::new()
                } else {
                    let marks = vec!["?"; ids.len()].join(", ");
                    self.records(&format!("WHERE id IN ({marks})"), ids)?
                };
                let version = self.version()?;
                let set = RevocationSet::from_records(version, records, now);
                json_response(200, &serde_json::json!({"revoked": set.check_parts(&facts, now).is_err(), "version": version}))
            }
            "list" => {
                let limit = cmd.limit.unwrap_or(100).clamp(1, 1000);
                let rows = self.rows(
                    "SELECT id, target, reason, created_at, expires_at FROM revocations WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?",
                    vec![cmd.cursor.unwrap_or_default().into(), now.into(), (limit as i64).into()],
                )?;
                let page: Vec<serde_json::Value> = rows
                    .iter()
                    .filter_map(|r| {
                        let target = crate::core::json::from_text::<Target>(text(r.get(1))).ok()?;
                        let rev = Revocation { target, reason: text(r.get(2)).to_string(), created_at: int(r.get(3)), expires_at: int(r.get(4)) };
                        Some(serde_json::json!({"id": text(r.first()), "revocation": rev}))
                    })
                    .collect();
                let next = if rows.len() == limit { rows.last().map(|r| text(r.first()).to_string()) } else { None };
                let total = self.one_int("SELECT count(*) FROM revocations WHERE expires_at > ?", vec![now.into()])?.unwrap_or(0);
                json_response(200, &serde_json::json!({"items": page, "next_cursor": next, "total": total, "version": self.version()?}))
            }
            "get" | "remove" => {
                let id = cmd.id.unwrap_or_default();
                let Some(r) = self.get(&id)?.filter(|r| r.expires_at > now) else {
                    return json_response(404, &serde_json::json!({"code": "not_found", "message": "no such revocation"}));
                };
                if cmd.op == "remove" {
                    self.rows("DELETE FROM revocations WHERE id = ?", vec![id.as_str().into()])?;
                    self.touch(shard_of_hex(&id, self.bits()?))?;
                    self.schedule_if_dirty().await?;
                }
                json_response(200, &serde_json::json!({"id": id, "revocation": r, "removed": cmd.op == "remove", "version": self.version()?}))
            }
            op @ ("block" | "blocks" | "unblock") => {
                let (answer, changed) = super::blocks::command(&self.sql, op, cmd.body, cmd.id, now)?;
                // Published by the alarm, batched like revocations (one KV write per burst of
                // changes: KV takes about one write per second per key).
                if changed {
                    self.schedule_publish().await?;
                }
                Ok(answer)
            }
            _ => bad_request("unknown op"),
        }
    }
}

/// Puts an API key id on the revocation list until `until` (a disabled key). False if the
/// ledger could not be reached (logged).
pub async fn revoke_api_key(env: &Env, key_id: &str, until: i64) -> bool {
    match add_api_key_revocation(env, key_id, until, "key disabled").await {
        Ok(()) => true,
        Err(e) => {
            console_warn!("{}", serde_json::json!({"event": "api_key_revoke_failed", "key_id": key_id, "error": e}));
            false
        }
    }
}

/// Adds an `api_key` revocation of `key_id` until `until` with `reason` (the path an admin's
/// `POST /revocations` takes: the ledger's `add`).
pub async fn add_api_key_revocation(env: &Env, key_id: &str, until: i64, reason: &str) -> Result<(), String> {
    let body = serde_json::json!({"target": {"kind": "api_key", "key_id": key_id}, "reason": reason, "expires_at": until});
    match ask_ledger(env, serde_json::json!({"op": "add", "body": body})).await {
        Ok(r) if matches!(r.status_code(), 200 | 201) => Ok(()),
        Ok(r) => Err(format!("the ledger answered {}", r.status_code())),
        Err(e) => Err(format!("the ledger could not be reached: {e}")),
    }
}

/// Handles `{prefix}/revocations[...]` and `{prefix}/blocks[...]` ([`super::blocks`]);
/// authorization and audit are the caller's.
pub async fn admin_op(body: Option<serde_json::Value>, method: &str, rest: &str, query: &str, env: &Env) -> AdminAnswer {
    let cmd = match (method, rest.trim_end_matches('/')) {
        ("POST", r @ ("/revocations" | "/revocations/batch")) => {
            let op = if r == "/revocations" { "add" } else { "add_many" };
            match body {
                Some(body) if body.is_object() => serde_json::json!({"op": op, "body": body}),
                _ => {
                    return AdminAnswer { status: 400, op, id: None, body: serde_json::json!({"code": "bad_request", "message": "body must be a JSON object"}) }
                }
            }
        }
        ("GET", "/revocations") => {
            let cursor = query_param(query, "cursor");
            let limit = query_param(query, "limit").and_then(|v| v.parse::<usize>().ok());
            serde_json::json!({"op": "list", "cursor": cursor, "limit": limit})
        }
        ("GET", r) if r.starts_with("/revocations/") => serde_json::json!({"op": "get", "id": &r["/revocations/".len()..]}),
        ("POST", "/blocks") => match body {
            Some(body) if body.is_object() => serde_json::json!({"op": "block", "body": body}),
            _ => {
                return AdminAnswer {
                    status: 400,
                    op: "block",
                    id: None,
                    body: serde_json::json!({"code": "bad_request", "message": "body must be a JSON object"}),
                }
            }
        },
        ("GET", "/blocks") => serde_json::json!({"op": "blocks"}),
        ("DELETE", r) if r.starts_with("/blocks/") => serde_json::json!({"op": "unblock", "id": &r["/blocks/".len()..]}),
        ("DELETE", r) if r.starts_with("/revocations/") => serde_json::json!({"op": "remove", "id": &r["/revocations/".len()..]}),
        _ => return AdminAnswer { status: 404, op: "unknown", id: None, body: serde_json::json!({"code": "not_found", "message": "no such admin route"}) },
    };
    let op = match cmd["op"].as_str() {
        Some("add") => "add",
        Some("add_many") => "add_many",
        Some("list") => "list",
        Some("get") => "get",
        Some("block") => "block",
        Some("blocks") => "blocks",
        Some("unblock") => "unblock",
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
