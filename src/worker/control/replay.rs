//! The `ReplayGuard` Durable Object (`dpop.replay: "exact"`): the keys of the DPoP proofs accepted
//! anywhere, each until its proof could no longer be accepted anyway, so a proof is used once in
//! every isolate and location. The gate spreads keys over 32 objects by the key's low
//! bits; each object answers one claim at a time (a SQLite read and write with no await between
//! them), and the answer is sent only once the write is durable. An alarm deletes the expired
//! keys: the table holds at most the proofs of the last `dpop.iat_window_secs`.
//!
//! The message (a contract between the two Workers; its client side is
//! `WorkerIo::claim_once`): `{"key": "<16 hex digits>", "until": UNIX}` in, `{"first": bool}` out.

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use crate::worker::runtime::js::DoStorage;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue as V, State};

/// How often expired keys are swept (ms).
const SWEEP_MS: u64 = 60_000;

/// One claim.
#[derive(Serialize, Deserialize)]
struct ClaimAsk {
    key: String,
    until: i64,
}

/// Its answer.
#[derive(Serialize, Deserialize)]
struct ClaimAnswer {
    first: bool,
}

#[durable_object]
pub struct ReplayGuard {
    sql: SqlStorage,
    storage: Option<DoStorage>,
    ready: Cell<bool>,
    sweep_set: Cell<bool>,
}

impl ReplayGuard {
    fn ensure(&self) -> worker::Result<()> {
        if !self.ready.get() {
            self.sql.exec("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID", vec![])?;
            self.sql.exec("CREATE INDEX IF NOT EXISTS seen_by_until ON seen (until)", vec![])?;
            self.ready.set(true);
        }
        Ok(())
    }
}

fn now_secs() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}

impl DurableObject for ReplayGuard {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        ReplayGuard { sql, storage: DoStorage::of(state), ready: Cell::new(false), sweep_set: Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Some(ask) = req.text().await.ok().and_then(|t| crate::core::json::from_text::<ClaimAsk>(&t).ok()) else {
            return Response::error("bad request", 400);
        };
        if crate::core::log::hex64(&ask.key).is_none() {
            return Response::error("bad key", 400);
        }
        self.ensure()?;
        let now = now_secs();
        let seen: Vec<Vec<V>> = self.sql.exec("SELECT until FROM seen WHERE key = ?", vec![ask.key.clone().into()])?.raw().collect::<worker::Result<_>>()?;
        let live = seen.first().and_then(|r| r.first()).is_some_and(|v| match v {
            V::Integer(u) => *u >= now,
            V::Float(u) => *u as i64 >= now,
            _ => false,
        });
        let first = !live;
        if first {
            self.sql.exec("INSERT OR REPLACE INTO seen (key, until) VALUES (?, ?)", vec![ask.key.into(), ask.until.into()])?;
            if !self.sweep_set.get() {
                if let Some(s) = &self.storage {
                    if s.set_alarm_in(SWEEP_MS).await.is_ok() {
                        self.sweep_set.set(true);
                    }
                }
            }
        }
        Response::ok(serde_json::to_string(&ClaimAnswer { first })?)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.ensure()?;
        self.sweep_set.set(false);
        self.sql.exec("DELETE FROM seen WHERE until < ?", vec![now_secs().into()])?;
        let left: Vec<Vec<V>> = self.sql.exec("SELECT 1 FROM seen LIMIT 1", vec![])?.raw().collect::<worker::Result<_>>()?;
        if !left.is_empty() {
            if let Some(s) = &self.storage {
                if s.set_alarm_in(SWEEP_MS).await.is_ok() {
                    self.sweep_set.set(true);
                }
            }
        }
        Response::ok("swept")
    }
}
