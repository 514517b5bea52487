//! The `UsageStore` Durable Object (binding `EDGEWARD_USAGE`, [`crate::core::usage::SHARDS`]
//! instances `usage-N`, a subject's rows in the shard [`crate::core::usage::shard_of`] names) and
//! the usage admin API (`GET {prefix}/usage`).
//!
//! It stores the gate's batches (`POST /ingest`, [`crate::core::usage::UsageBatch`]) as one
//! SQLite row per (subject, resolution, interval), evaluates the alert rules on each row
//! ([`crate::core::alerts::observe`], one stored state per subject) and queues what a fired
//! alert needs done: its audit trail entry, its automatic action (with that action's entry) and
//! one delivery per webhook. The alarm runs the queue (each job retried with backoff, at most
//! [`alerts::MAX_ATTEMPTS`] times, then dropped with an error line) and, hourly, rolls minute
//! rows older than a day into hour rows and deletes rows older than
//! `observability.retention_days` and subject states older than every rule's horizon.
//!
//! Tables: `usage` (kind, iss (empty when none), id, res (60 or 3600), t, accepted, rejected
//! as JSON), `subjects` (kind, iss, id, the engine's state as JSON, updated), `jobs` (kind,
//! payload, attempts, next_at), `meta` (name, value: `maintained`).

#![allow(missing_docs)] // the durable_object macro generates undocumented glue

use super::answer::{int, json_response, text, AdminAnswer};
use crate::core::alerts::{self, Action, Alert, Format, SubjectState, Webhook};
use crate::core::usage::{self, Granularity, SubjectKind, UsageBatch, UsageQuery, UsageRow};
use crate::worker::runtime::js::DoStorage;
use crate::worker::runtime::{now_secs, post_request};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use worker::{console_error, console_log, console_warn, durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue as V, State};

/// Name of the Durable Object binding (both Workers).
pub const USAGE_BINDING: &str = crate::worker::runtime::USAGE_BINDING;
/// Maintenance (roll-up, retention) runs at most this often.
const MAINTENANCE_SECS: i64 = 3_600;
/// Most queued jobs one alarm runs.
const JOBS_PER_ALARM: i64 = 50;
/// Most minute rows one maintenance rolls up.
const ROLLUP_BATCH: i64 = 10_000;
/// A webhook that has not answered within this is a failed attempt.
const WEBHOOK_TIMEOUT_MS: u64 = 10_000;

/// A queued job.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Job {
    /// Append this entry to the audit trail.
    Audit { record: crate::core::audit::AuditRecord },
    /// Carry out the alert's action.
    Act { alert: Alert },
    /// Deliver the alert to one webhook.
    Deliver { webhook: Webhook, alert: Alert },
}

impl Job {
    fn name(&self) -> &'static str {
        match self {
            Job::Audit { .. } => "audit",
            Job::Act { .. } => "action",
            Job::Deliver { .. } => "delivery",
        }
    }
}

#[durable_object]
pub struct UsageStore {
    sql: SqlStorage,
    storage: Option<DoStorage>,
    env: Env,
    ready: Cell<bool>,
    /// The alarm this instance set, and has not run yet (ms; 0: none).
    alarm_at: Cell<f64>,
}

/// Accepted, and refusals by reason.
type Counts = (u64, BTreeMap<String, u64>);

fn err(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

fn rejected_of(v: Option<&V>) -> BTreeMap<String, u64> {
    serde_json::from_str(text(v)).unwrap_or_default()
}

impl UsageStore {
    fn rows(&self, query: &str, args: Vec<V>) -> worker::Result<Vec<Vec<V>>> {
        self.sql.exec(query, args)?.raw().collect()
    }

    fn ready(&self) -> worker::Result<()> {
        if !self.ready.get() {
            for ddl in [
                "CREATE TABLE IF NOT EXISTS usage (kind TEXT NOT NULL, iss TEXT NOT NULL, id TEXT NOT NULL, res INTEGER NOT NULL, t INTEGER NOT NULL, accepted INTEGER NOT NULL, rejected TEXT NOT NULL, PRIMARY KEY (kind, iss, id, res, t)) WITHOUT ROWID",
                "CREATE INDEX IF NOT EXISTS usage_by_time ON usage (res, t)",
                "CREATE TABLE IF NOT EXISTS subjects (kind TEXT NOT NULL, iss TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (kind, iss, id)) WITHOUT ROWID",
                "CREATE INDEX IF NOT EXISTS subjects_by_time ON subjects (updated)",
                "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL)",
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
            ] {
                self.rows(ddl, vec![])?;
            }
            self.ready.set(true);
        }
        Ok(())
    }

    fn policy(&self) -> Option<std::rc::Rc<crate::core::pipeline::Gate>> {
        crate::worker::runtime::isolate(&self.env).gate.as_ref().ok().cloned()
    }

    /// Adds `accepted` and `rejected` to the row (kind, iss, id, res, t).
    fn add(&self, key: (&str, &str, &str), res: i64, t: i64, accepted: u64, rejected: &BTreeMap<String, u64>) -> worker::Result<()> {
        let (kind, iss, id) = key;
        let found = self.rows(
            "SELECT accepted, rejected FROM usage WHERE kind = ? AND iss = ? AND id = ? AND res = ? AND t = ?",
            vec![kind.into(), iss.into(), id.into(), res.into(), t.into()],
        )?;
        let (mut total, mut reasons) = found.first().map_or((0, BTreeMap::new()), |r| (int(r.first()).max(0) as u64, rejected_of(r.get(1))));
        total += accepted;
        for (code, n) in rejected {
            *reasons.entry(code.clone()).or_default() += n;
        }
        self.rows(
            "INSERT OR REPLACE INTO usage (kind, iss, id, res, t, accepted, rejected) VALUES (?, ?, ?, ?, ?, ?, ?)",
            vec![kind.into(), iss.into(), id.into(), res.into(), t.into(), (total.min(i64::MAX as u64) as i64).into(), serde_json::to_string(&reasons)?.into()],
        )
        .map(|_| ())
    }

    fn queue(&self, job: &Job, at: i64) -> worker::Result<()> {
        self.rows("INSERT INTO jobs (job, attempts, next_at) VALUES (?, 0, ?)", vec![serde_json::to_string(job)?.into(), at.into()]).map(|_| ())
    }

    /// Stores a batch, runs the rules on its rows, queues what fired alerts need.
    async fn ingest(&self, batch: UsageBatch) -> worker::Result<Response> {
        let now = now_secs();
        let gate = self.policy();
        let alerts = gate.as_ref().map(|g| g.policy().alerts.clone()).unwrap_or_default();
        if batch.overflow > 0 {
            console_warn!("{}", serde_json::json!({"event": "usage_overflow", "uncounted": batch.overflow, "sent_at": batch.sent_at}));
        }
        let mut fired = 0;
        for row in &batch.rows {
            let iss = row.iss.as_deref().unwrap_or("");
            let key = (row.kind.name(), iss, row.id.as_str());
            self.add(key, 60, row.minute, row.accepted, &row.rejected)?;
            if alerts.rules.is_empty() {
                continue;
            }
            for alert in self.evaluate(&alerts, key, row, now)? {
                fired += 1;
                console_log!("{}", serde_json::json!({"event": "alert", "alert": alert}));
                self.queue(&Job::Audit { record: alerts::audit_of_alert(&alert) }, now)?;
                if alert.action.is_some() {
                    self.queue(&Job::Act { alert: alert.clone() }, now)?;
                }
                for w in &alerts.webhooks {
                    self.queue(&Job::Deliver { webhook: w.clone(), alert: alert.clone() }, now)?;
                }
            }
        }
        self.schedule(if fired > 0 { 0 } else { MAINTENANCE_SECS * 1000 }).await;
        json_response(200, &serde_json::json!({"stored": batch.rows.len(), "alerts": fired}))
    }

    fn evaluate(&self, alerts: &alerts::AlertsPolicy, key: (&str, &str, &str), row: &UsageRow, now: i64) -> worker::Result<Vec<Alert>> {
        let (kind, iss, id) = key;
        let found = self.rows("SELECT state FROM subjects WHERE kind = ? AND iss = ? AND id = ?", vec![kind.into(), iss.into(), id.into()])?;
        let mut state: SubjectState = found.first().and_then(|r| serde_json::from_str(text(r.first())).ok()).unwrap_or_default();
        let fired = alerts::observe(alerts, &mut state, row, now);
        self.rows(
            "INSERT OR REPLACE INTO subjects (kind, iss, id, state, updated) VALUES (?, ?, ?, ?, ?)",
            vec![kind.into(), iss.into(), id.into(), serde_json::to_string(&state)?.into(), now.into()],
        )?;
        Ok(fired)
    }

    /// Sets the alarm `in_ms` from now unless one this instance set is due sooner.
    async fn schedule(&self, in_ms: i64) {
        let at = worker::js_sys::Date::now() + in_ms as f64;
        let current = self.alarm_at.get();
        if current > 0.0 && current <= at {
            return;
        }
        if let Some(s) = &self.storage {
            match s.set_alarm_in(in_ms.max(0) as u64).await {
                Ok(()) => self.alarm_at.set(at),
                Err(e) => console_error!("{}", serde_json::json!({"event": "usage_alarm_failed", "error": e.to_string()})),
            }
        }
    }

    /// Runs up to [`JOBS_PER_ALARM`] due jobs.
    async fn run_jobs(&self, now: i64) -> worker::Result<()> {
        let due = self.rows("SELECT id, job, attempts FROM jobs WHERE next_at <= ? ORDER BY next_at, id LIMIT ?", vec![now.into(), JOBS_PER_ALARM.into()])?;
        for r in due {
            let (id, attempts) = (int(r.first()), int(r.get(2)) as u32 + 1);
            let Ok(job) = serde_json::from_str::<Job>(text(r.get(1))) else {
                console_error!("{}", serde_json::json!({"event": "usage_job_unreadable", "id": id}));
                self.rows("DELETE FROM jobs WHERE id = ?", vec![id.into()])?;
                continue;
            };
            let outcome = match &job {
                Job::Audit { record } => super::audit::append_record(&self.env, record).await.map(|_| ()),
                Job::Act { alert } => self.act(alert, now).await,
                Job::Deliver { webhook, alert } => deliver(&self.env, webhook, alert, now).await,
            };
            match outcome {
                Ok(()) => {
                    self.rows("DELETE FROM jobs WHERE id = ?", vec![id.into()])?;
                }
                Err(e) if attempts >= alerts::MAX_ATTEMPTS => {
                    console_error!("{}", serde_json::json!({"event": "usage_job_dropped", "job": job.name(), "attempts": attempts, "error": e}));
                    self.rows("DELETE FROM jobs WHERE id = ?", vec![id.into()])?;
                    if let Job::Act { alert } = &job {
                        // The action's last failure is its entry in the trail.
                        if let Some(action) = alert.action {
                            let secs = match action {
                                Action::BlockIpSecs(n) | Action::SuspendKeySecs(n) => i64::from(n),
                            };
                            self.queue(&Job::Audit { record: alerts::audit_of_action(alert, action, now + secs, &Err(e)) }, now)?;
                        }
                    }
                }
                Err(e) => {
                    let next = now + alerts::backoff_secs(attempts);
                    console_warn!(
                        "{}",
                        serde_json::json!({"event": "usage_job_failed", "job": job.name(), "attempts": attempts, "retry_at": next, "error": e})
                    );
                    self.rows("UPDATE jobs SET attempts = ?, next_at = ? WHERE id = ?", vec![i64::from(attempts).into(), next.into(), id.into()])?;
                }
            }
        }
        Ok(())
    }

    /// Carries out an alert's action, then queues its audit entry (whatever the outcome: a
    /// failed action is retried, and each attempt's failure is in the log; the entry records
    /// the outcome once, when it succeeds or on the last attempt).
    async fn act(&self, alert: &Alert, now: i64) -> Result<(), String> {
        let Some(action) = alert.action else { return Ok(()) };
        let (result, expires_at) = match action {
            Action::SuspendKeySecs(n) => {
                let until = now + i64::from(n);
                let reason = format!("suspended by alert {} ({})", alert.alert_id, alert.rule);
                let r = if alert.subject.kind == SubjectKind::KeyId {
                    super::ledger::add_api_key_revocation(&self.env, &alert.subject.id, until, &reason).await
                } else {
                    Err(format!("suspend_key_secs on a {} subject", alert.subject.kind.name()))
                };
                (r, until)
            }
            Action::BlockIpSecs(n) => {
                let until = now + i64::from(n);
                (block_ip(&self.env, &alert.subject.id, until, &alert.alert_id).await, until)
            }
        };
        let record = alerts::audit_of_action(alert, action, expires_at, &result);
        if result.is_ok() {
            self.queue(&Job::Audit { record }, now).map_err(|e| e.to_string())?;
        }
        result
    }

    /// Rolls minute rows older than a day into hour rows; deletes what is past the retention.
    fn maintain(&self, now: i64, retention_days: u32, horizon_secs: i64) -> worker::Result<()> {
        let cutoff = now - 86_400;
        let old =
            self.rows("SELECT kind, iss, id, t, accepted, rejected FROM usage WHERE res = 60 AND t < ? LIMIT ?", vec![cutoff.into(), ROLLUP_BATCH.into()])?;
        let mut hours: BTreeMap<(String, String, String, i64), Counts> = BTreeMap::new();
        for r in &old {
            let t = int(r.get(3));
            let h = hours.entry((text(r.first()).into(), text(r.get(1)).into(), text(r.get(2)).into(), t - t.rem_euclid(3_600))).or_default();
            h.0 += int(r.get(4)).max(0) as u64;
            for (code, n) in rejected_of(r.get(5)) {
                *h.1.entry(code).or_default() += n;
            }
        }
        for ((kind, iss, id, t), (accepted, rejected)) in &hours {
            self.add((kind, iss, id), 3_600, *t, *accepted, rejected)?;
        }
        for r in &old {
            self.rows(
                "DELETE FROM usage WHERE kind = ? AND iss = ? AND id = ? AND res = 60 AND t = ?",
                vec![text(r.first()).into(), text(r.get(1)).into(), text(r.get(2)).into(), int(r.get(3)).into()],
            )?;
        }
        self.rows("DELETE FROM usage WHERE t < ?", vec![(now - i64::from(retention_days) * 86_400).into()])?;
        self.rows("DELETE FROM subjects WHERE updated < ?", vec![(now - horizon_secs.max(86_400)).into()])?;
        self.rows("INSERT OR REPLACE INTO meta (name, value) VALUES ('maintained', ?)", vec![now.into()])?;
        Ok(())
    }

    fn query(&self, q: &UsageQuery) -> worker::Result<serde_json::Value> {
        let rows = self.rows(
            "SELECT res, t, accepted, rejected FROM usage WHERE kind = ? AND iss = ? AND id = ? AND t > ? AND t <= ? ORDER BY t",
            vec![q.kind.name().into(), q.iss.clone().unwrap_or_default().into(), q.id.clone().into(), (q.from - 3_600).into(), q.to.into()],
        )?;
        // An hour row overlapping `from` counts; a minute row only from `from` on.
        let kept: Vec<(i64, u64, BTreeMap<String, u64>)> = rows
            .iter()
            .filter(|r| int(r.get(1)) + int(r.first()) > q.from)
            .map(|r| (int(r.get(1)), int(r.get(2)).max(0) as u64, rejected_of(r.get(3))))
            .collect();
        let points = usage::series(kept.iter().map(|(t, a, r)| (*t, *a, r)), q.granularity);
        Ok(serde_json::json!({"series": points}))
    }
}

/// `block_ip_secs`: blocks `ip` (as `logging.client_ip` renders it: an address, a /24 or /48, or
/// a hashed form) until `expires_at` on the ledger's block list ([`super::blocks`]), with the
/// alert's id as the reason. An error (the ledger unreachable or refusing) is retried like any
/// action.
pub async fn block_ip(env: &Env, ip: &str, expires_at: i64, alert_id: &str) -> Result<(), String> {
    match super::blocks::block_address(env, ip, expires_at, &format!("alert {alert_id}")).await {
        Ok((200 | 201, _)) => Ok(()),
        Ok((status, answer)) => Err(format!("the ledger answered {status}: {}", answer["code"].as_str().unwrap_or("-"))),
        Err(e) => Err(format!("the ledger could not be reached: {e}")),
    }
}

/// POSTs the alert to one webhook, signed; a 2xx within the timeout is delivered.
async fn deliver(env: &Env, w: &Webhook, alert: &Alert, now: i64) -> Result<(), String> {
    use futures_util::future::{select, Either};
    use worker::web_sys;
    let secret = env.secret(&w.secret).map(|s| s.to_string()).map_err(|_| format!("no Worker secret {}", w.secret))?;
    let body = alerts::body(alert, w.format);
    let headers = web_sys::Headers::new().map_err(|_| "headers".to_string())?;
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("edgeward-signature", &alerts::signature(secret.as_bytes(), now, &body));
    let _ = headers.set("edgeward-alert-id", &alert.alert_id);
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&worker::wasm_bindgen::JsValue::from_str(&body));
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let req = web_sys::Request::new_with_str_and_init(&w.url, &init).map_err(|e| format!("bad webhook request: {e:?}"))?;
    let send = async { worker::Fetch::Request(Request::from(req)).send().await.map(|r| r.status_code()).map_err(|e| e.to_string()) };
    let timer = worker::Delay::from(std::time::Duration::from_millis(WEBHOOK_TIMEOUT_MS));
    let status = match select(Box::pin(send), timer).await {
        Either::Left((r, _)) => r?,
        Either::Right(_) => return Err(format!("no answer within {WEBHOOK_TIMEOUT_MS} ms")),
    };
    let format = match w.format {
        Format::Json => "json",
        Format::Slack => "slack",
    };
    if (200..300).contains(&status) {
        console_log!("{}", serde_json::json!({"event": "alert_delivered", "alert_id": alert.alert_id, "url": w.url, "format": format, "status": status}));
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

#[derive(Deserialize)]
struct QueryCommand {
    kind: SubjectKind,
    id: String,
    #[serde(default)]
    iss: Option<String>,
    from: i64,
    to: i64,
    granularity: String,
}

impl DurableObject for UsageStore {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        UsageStore { sql, storage: DoStorage::of(state), env, ready: Cell::new(false), alarm_at: Cell::new(0.0) }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.alarm_at.set(0.0);
        self.ready()?;
        let now = now_secs();
        if let Err(e) = self.run_jobs(now).await {
            console_error!("{}", serde_json::json!({"event": "usage_jobs_failed", "error": e.to_string()}));
        }
        let maintained = self.rows("SELECT value FROM meta WHERE name = 'maintained'", vec![])?.first().map_or(0, |r| int(r.first()));
        if now - maintained >= MAINTENANCE_SECS {
            let (days, horizon) = self.policy().map_or((30, 0), |g| (g.policy().observability.retention_days, g.policy().alerts.horizon_secs()));
            if let Err(e) = self.maintain(now, days, horizon) {
                console_error!("{}", serde_json::json!({"event": "usage_maintenance_failed", "error": e.to_string()}));
            }
        }
        let next_job = self.rows("SELECT min(next_at) FROM jobs", vec![])?.first().and_then(|r| match r.first() {
            Some(V::Null) | None => None,
            v => Some(int(v)),
        });
        let any_rows = !self.rows("SELECT 1 FROM usage LIMIT 1", vec![])?.is_empty();
        let next = match (next_job, any_rows) {
            (Some(t), _) => Some(((t - now).max(0) * 1000).min(MAINTENANCE_SECS * 1000)),
            (None, true) => Some(MAINTENANCE_SECS * 1000),
            (None, false) => None,
        };
        if let Some(ms) = next {
            self.schedule(ms).await;
        }
        Response::ok("ok")
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let body = req.text().await.unwrap_or_default();
        self.ready()?;
        match path.as_str() {
            "/ingest" => match UsageBatch::parse(&body) {
                Ok(b) => self.ingest(b).await,
                Err(e) => json_response(400, &serde_json::json!({"code": "bad_usage_batch", "message": e})),
            },
            "/query" => {
                let Ok(c) = crate::core::json::from_text::<QueryCommand>(&body) else {
                    return json_response(400, &serde_json::json!({"code": "bad_request", "message": "malformed usage query"}));
                };
                let granularity = match c.granularity.as_str() {
                    "hour" => Granularity::Hour,
                    "day" => Granularity::Day,
                    _ => Granularity::Minute,
                };
                let q = UsageQuery { kind: c.kind, id: c.id, iss: c.iss, from: c.from, to: c.to, granularity };
                json_response(200, &self.query(&q)?)
            }
            _ => json_response(404, &serde_json::json!({"code": "not_found", "message": "unknown usage store path"})),
        }
    }
}

// ---- the client side (the admin API) ----

fn granularity_name(g: Granularity) -> &'static str {
    match g {
        Granularity::Minute => "minute",
        Granularity::Hour => "hour",
        Granularity::Day => "day",
    }
}

/// Handles `GET {prefix}/usage` (authorization is the caller's).
pub async fn admin_op(method: &str, query: &str, env: &Env, now: i64) -> AdminAnswer {
    if method != "GET" {
        return AdminAnswer { status: 404, op: "unknown", id: None, body: serde_json::json!({"code": "not_found", "message": "no such admin route"}) };
    }
    let q = match UsageQuery::parse(query, now) {
        Ok(q) => q,
        Err(e) => {
            return AdminAnswer {
                status: 400,
                op: "usage",
                id: None,
                body: serde_json::json!({"code": "bad_usage_query", "field": e.field, "message": e.message}),
            }
        }
    };
    let shard = usage::shard_of(q.kind, q.iss.as_deref(), &q.id);
    let cmd = serde_json::json!({"kind": q.kind, "id": q.id, "iss": q.iss, "from": q.from, "to": q.to, "granularity": granularity_name(q.granularity)});
    let answered = async {
        let stub = env.durable_object(USAGE_BINDING)?.get_by_name(&format!("usage-{shard}"))?;
        let mut resp = stub.fetch_with_request(post_request("https://usage/query", &cmd.to_string()).map_err(err)?).await?;
        let status = resp.status_code();
        let text = resp.text().await?;
        worker::Result::Ok((status, serde_json::from_str::<serde_json::Value>(&text)?))
    };
    match answered.await {
        Ok((200, body)) => AdminAnswer { status: 200, op: "usage", id: None, body },
        other => {
            let error = match other {
                Ok((s, v)) => format!("usage store answered {s}: {v}"),
                Err(e) => {
                    let e: worker::Error = e;
                    e.to_string()
                }
            };
            console_error!("{}", serde_json::json!({"event": "usage_store_unreachable", "error": error}));
            AdminAnswer {
                status: 503,
                op: "usage",
                id: None,
                body: serde_json::json!({"code": "usage_unavailable", "message": "usage store unreachable; retry later"}),
            }
        }
    }
}
