//! Usage counters: the isolate's aggregator, the batch the gate flushes to the control Worker,
//! the usage query, and the `observability` section. Pure: the pipeline feeds it every decision
//! ([`super::pipeline::Gate::count`]), the adapter sends the batches it makes, the `UsageStore`
//! Durable Object stores their rows and answers the query with [`series`].
//!
//! ## What is counted
//! Per subject and per minute (Unix seconds, a multiple of 60): accepted requests, refusals by
//! reason code, refused credentials (`auth_failures`: a 401 for a credential presented, not a
//! missing one; a 403 `ip_not_allowed`), presentations of a revoked token or key (`revoked`), the
//! countries seen and a few request ids. The subjects of a decision are those its record names:
//! the API key id (`key_id`), the verified `sub` with its issuer (`sub`), the `azp` (else
//! `client_id`) claim (`client_id`), and, for refusals only, the client address as
//! `logging.client_ip` renders it (`ip`; nothing when it renders none).
//!
//! ## Bounds (what a client can grow)
//! Between two flushes, at most [`MAX_ENTRIES`] (subject, minute) entries; per entry at most
//! [`MAX_REASONS`] reason codes, [`MAX_COUNTRIES`] countries and [`MAX_SAMPLES`] request ids;
//! ids at most [`MAX_ID_BYTES`] bytes (cut at a character boundary). What does not fit is not
//! kept but counted: each decision that found no room for one of its subjects (or a reason)
//! adds one to the batch's `overflow`. A failed flush puts its entries back, within the same
//! bound. A decision for an existing entry allocates nothing.
//!
//! ## The batch (a contract between the two Workers, README "Gate ↔ control messages")
//! `{"v": 1, "sent_at": UNIX, "overflow": N, "rows": [{"kind": "key_id"|"sub"|"client_id"|"ip",
//! "id", "iss"?, "minute": UNIX, "accepted", "rejected": {"code": N}, "auth_failures",
//! "revoked", "countries": ["DE"], "samples": ["request id"], "first_seen", "last_seen"}]}`,
//! split by [`shard_of`] over [`SHARDS`] objects (`usage-N`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Most (subject, minute) entries an isolate holds between two flushes.
pub const MAX_ENTRIES: usize = 4_096;
/// Most distinct reason codes per entry.
pub const MAX_REASONS: usize = 8;
/// Most countries per entry.
pub const MAX_COUNTRIES: usize = 4;
/// Most sample request ids per entry.
pub const MAX_SAMPLES: usize = 3;
/// Longest subject id kept (bytes).
pub const MAX_ID_BYTES: usize = 256;
/// The batch format's version.
pub const BATCH_VERSION: u32 = 1;
/// The `UsageStore` objects subjects are spread over (`usage-0` …): a constant, since a
/// subject's rows stay where it was first counted.
pub const SHARDS: u32 = 8;
/// A flush not finished after this long is taken as lost: its entries are counted again.
pub const FLUSH_TIMEOUT_MS: i64 = 30_000;
/// The token claims the counters read (for `client_id`).
pub const CLAIMS_READ: [&str; 2] = ["azp", "client_id"];

/// The `observability` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// The gate flushes its counters at most this often (seconds, 1 to 300; default 10).
    pub flush_secs: u32,
    /// The control Worker keeps usage rows this long (days, 1 to 3650; default 30).
    pub retention_days: u32,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig { flush_secs: 10, retention_days: 30 }
    }
}

/// The validated section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservabilityPolicy {
    /// Seconds between flushes, at least.
    pub flush_secs: u32,
    /// Days kept.
    pub retention_days: u32,
}

impl Default for ObservabilityPolicy {
    fn default() -> Self {
        ObservabilityPolicy { flush_secs: 10, retention_days: 30 }
    }
}

impl ObservabilityConfig {
    /// Validates the section. The error is (field, message).
    pub fn validate(self) -> Result<ObservabilityPolicy, (String, String)> {
        if !(1..=300).contains(&self.flush_secs) {
            return Err(("observability.flush_secs".into(), "1 to 300 seconds".into()));
        }
        if !(1..=3650).contains(&self.retention_days) {
            return Err(("observability.retention_days".into(), "1 to 3650 days".into()));
        }
        Ok(ObservabilityPolicy { flush_secs: self.flush_secs, retention_days: self.retention_days })
    }
}

/// What a subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// An API key, by id.
    KeyId,
    /// A token subject (with its issuer).
    Sub,
    /// An OAuth client (`azp`, else `client_id`).
    ClientId,
    /// A client address as `logging.client_ip` renders it (refusals only).
    Ip,
}

impl SubjectKind {
    /// Its wire name.
    pub fn name(self) -> &'static str {
        match self {
            SubjectKind::KeyId => "key_id",
            SubjectKind::Sub => "sub",
            SubjectKind::ClientId => "client_id",
            SubjectKind::Ip => "ip",
        }
    }
}

/// The `UsageStore` shard a subject's rows live in (0 ≤ n < [`SHARDS`]).
pub fn shard_of(kind: SubjectKind, iss: Option<&str>, id: &str) -> u32 {
    let text = format!("{}\n{}\n{}", kind.name(), iss.unwrap_or(""), id);
    (super::log::sha256_64(text.as_bytes()) % u64::from(SHARDS)) as u32
}

/// One decision, as the counters see it (borrowed from its record).
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation<'a> {
    /// When (ms since the Unix epoch).
    pub now_ms: i64,
    /// The request id.
    pub request_id: &'a str,
    /// Accepted (forwarded as authenticated).
    pub accepted: bool,
    /// The refusal's reason code.
    pub reason: Option<&'static str>,
    /// A presented credential was refused.
    pub auth_failure: bool,
    /// A revoked token or key was presented.
    pub revoked: bool,
    /// API key id.
    pub key_id: Option<&'a str>,
    /// Issuer (with `sub`).
    pub iss: Option<&'a str>,
    /// Subject.
    pub sub: Option<&'a str>,
    /// Client id.
    pub client_id: Option<&'a str>,
    /// The client address as logged.
    pub client_ip: Option<&'a str>,
    /// Country (two letters).
    pub country: Option<&'a str>,
}

/// One (subject, minute) counter set.
#[derive(Debug, Clone)]
struct Entry {
    kind: SubjectKind,
    iss: Option<Box<str>>,
    id: Box<str>,
    minute: i64,
    accepted: u64,
    auth_failures: u64,
    revoked: u64,
    reasons: [(&'static str, u64); MAX_REASONS],
    n_reasons: u8,
    countries: [[u8; 2]; MAX_COUNTRIES],
    n_countries: u8,
    samples: Vec<Box<str>>,
    first_seen: i64,
    last_seen: i64,
}

impl Entry {
    fn is(&self, kind: SubjectKind, iss: Option<&str>, id: &str, minute: i64) -> bool {
        self.kind == kind && self.minute == minute && &*self.id == id && self.iss.as_deref() == iss
    }

    /// Adds a reason's count; false if there was no room for it.
    fn add_reason(&mut self, code: &'static str, n: u64) -> bool {
        let used = &mut self.reasons[..usize::from(self.n_reasons)];
        if let Some(slot) = used.iter_mut().find(|(c, _)| *c == code) {
            slot.1 += n;
            return true;
        }
        if usize::from(self.n_reasons) == MAX_REASONS {
            return false;
        }
        self.reasons[usize::from(self.n_reasons)] = (code, n);
        self.n_reasons += 1;
        true
    }

    fn add_country(&mut self, c: [u8; 2]) {
        let n = usize::from(self.n_countries);
        if !self.countries[..n].contains(&c) && n < MAX_COUNTRIES {
            self.countries[n] = c;
            self.n_countries += 1;
        }
    }

    fn add_sample(&mut self, rid: &str) {
        if self.samples.len() < MAX_SAMPLES && !rid.is_empty() && !self.samples.iter().any(|s| &**s == rid) {
            self.samples.push(cut(rid, 64).into());
        }
    }

    /// Adds `other` (the same subject and minute); the overflow of what did not fit.
    fn merge(&mut self, other: &Entry) -> u64 {
        self.accepted += other.accepted;
        self.auth_failures += other.auth_failures;
        self.revoked += other.revoked;
        let mut lost = 0;
        for (code, n) in &other.reasons[..usize::from(other.n_reasons)] {
            if !self.add_reason(code, *n) {
                lost += n;
            }
        }
        for c in &other.countries[..usize::from(other.n_countries)] {
            self.add_country(*c);
        }
        for s in &other.samples {
            self.add_sample(s);
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        lost
    }

    fn total(&self) -> u64 {
        self.accepted + self.reasons[..usize::from(self.n_reasons)].iter().map(|(_, n)| n).sum::<u64>()
    }

    fn row(&self) -> UsageRow {
        UsageRow {
            kind: self.kind,
            id: self.id.to_string(),
            iss: self.iss.as_deref().map(str::to_owned),
            minute: self.minute,
            accepted: self.accepted,
            rejected: self.reasons[..usize::from(self.n_reasons)].iter().map(|(c, n)| ((*c).to_string(), *n)).collect(),
            auth_failures: self.auth_failures,
            revoked: self.revoked,
            countries: self.countries[..usize::from(self.n_countries)].iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect(),
            samples: self.samples.iter().map(|s| s.to_string()).collect(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One row of a batch: a subject's counts in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The subject's kind.
    pub kind: SubjectKind,
    /// The subject's id.
    pub id: String,
    /// The issuer (for `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The minute (Unix seconds, a multiple of 60).
    pub minute: i64,
    /// Accepted requests.
    #[serde(default)]
    pub accepted: u64,
    /// Refusals by reason code.
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    /// Refused credentials (among `rejected`).
    #[serde(default)]
    pub auth_failures: u64,
    /// Revoked tokens or keys presented (among `rejected`).
    #[serde(default)]
    pub revoked: u64,
    /// Countries seen (two letters).
    #[serde(default)]
    pub countries: Vec<String>,
    /// A few request ids.
    #[serde(default)]
    pub samples: Vec<String>,
    /// First decision counted (Unix seconds).
    pub first_seen: i64,
    /// Last decision counted (Unix seconds).
    pub last_seen: i64,
}

/// The message the gate flushes to one `UsageStore` shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// [`BATCH_VERSION`].
    pub v: u32,
    /// When it was made (Unix seconds).
    pub sent_at: i64,
    /// Decisions (or reasons) the isolate could not count for lack of room since its last
    /// flush (sent to shard 0 only).
    #[serde(default)]
    pub overflow: u64,
    /// The rows.
    pub rows: Vec<UsageRow>,
}

impl UsageBatch {
    /// Parses a batch, refusing other versions.
    pub fn parse(text: &str) -> Result<UsageBatch, String> {
        let b: UsageBatch = super::json::from_text(text).map_err(|e| e.to_string())?;
        if b.v != BATCH_VERSION {
            return Err(format!("batch version {} (this Worker reads {BATCH_VERSION})", b.v));
        }
        Ok(b)
    }
}

/// A flush under way: its entries, kept until it is known to have arrived.
#[derive(Debug)]
struct InFlight {
    started_ms: i64,
    entries: Vec<Entry>,
    overflow: u64,
}

/// The isolate's counters (see the module docs).
#[derive(Debug)]
pub struct UsageAggregator {
    flush_ms: i64,
    entries: Vec<Entry>,
    /// Hash of (kind, minute, iss, id) → index in `entries` (linear probing on collision).
    index: HashMap<u64, u32>,
    overflow: u64,
    last_flush_ms: Option<i64>,
    in_flight: Option<InFlight>,
    /// When a flush was asked for and not yet started.
    requested_ms: Option<i64>,
}

fn probe_hash(kind: SubjectKind, iss: Option<&str>, id: &str, minute: i64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (kind, iss, id, minute).hash(&mut h);
    h.finish()
}

impl UsageAggregator {
    /// Empty counters flushed every `policy.flush_secs`.
    pub fn new(policy: &ObservabilityPolicy) -> UsageAggregator {
        UsageAggregator {
            flush_ms: i64::from(policy.flush_secs) * 1000,
            entries: Vec::new(),
            index: HashMap::new(),
            overflow: 0,
            last_flush_ms: None,
            in_flight: None,
            requested_ms: None,
        }
    }

    /// Entries held (not in flight).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.overflow == 0
    }

    /// Decisions not counted for lack of room, since the last flush.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// The entry of a subject in a minute, made if there is room.
    fn entry(&mut self, kind: SubjectKind, iss: Option<&str>, id: &str, minute: i64, now: i64) -> Option<&mut Entry> {
        let id = cut(id, MAX_ID_BYTES);
        let iss = iss.map(|i| cut(i, MAX_ID_BYTES));
        let mut h = probe_hash(kind, iss, id, minute);
        let slot = loop {
            match self.index.get(&h) {
                Some(&i) if self.entries[i as usize].is(kind, iss, id, minute) => break Some(i as usize),
                Some(_) => h = h.wrapping_add(1),
                None => break None,
            }
        };
        let i = match slot {
            Some(i) => i,
            None if self.entries.len() >= MAX_ENTRIES => return None,
            None => {
                self.entries.push(Entry {
                    kind,
                    iss: iss.map(Into::into),
                    id: id.into(),
                    minute,
                    accepted: 0,
                    auth_failures: 0,
                    revoked: 0,
                    reasons: [("", 0); MAX_REASONS],
                    n_reasons: 0,
                    countries: [[0; 2]; MAX_COUNTRIES],
                    n_countries: 0,
                    samples: Vec::new(),
                    first_seen: now,
                    last_seen: now,
                });
                self.index.insert(h, (self.entries.len() - 1) as u32);
                self.entries.len() - 1
            }
        };
        Some(&mut self.entries[i])
    }

    /// Counts one decision under each of its subjects.
    pub fn record(&mut self, o: &Observation<'_>) {
        let now = o.now_ms.div_euclid(1000);
        let minute = now - now.rem_euclid(60);
        let country = o.country.map(str::as_bytes).filter(|c| c.len() == 2).map(|c| [c[0], c[1]]);
        let subjects = [
            (SubjectKind::KeyId, None, o.key_id),
            (SubjectKind::Sub, o.iss, o.sub),
            (SubjectKind::ClientId, None, o.client_id),
            (SubjectKind::Ip, None, if o.accepted { None } else { o.client_ip }),
        ];
        for (kind, iss, id) in subjects {
            let Some(id) = id.filter(|i| !i.is_empty()) else { continue };
            let Some(e) = self.entry(kind, iss, id, minute, now) else {
                self.overflow += 1;
                continue;
            };
            e.last_seen = e.last_seen.max(now);
            e.first_seen = e.first_seen.min(now);
            let mut fits = true;
            if o.accepted {
                e.accepted += 1;
            } else if let Some(code) = o.reason {
                fits = e.add_reason(code, 1);
                e.auth_failures += u64::from(o.auth_failure);
                e.revoked += u64::from(o.revoked);
            }
            if let Some(c) = country {
                e.add_country(c);
            }
            e.add_sample(o.request_id);
            if !fits {
                self.overflow += 1;
            }
        }
    }

    /// Whether a flush is due at `now_ms` (something to send, the interval past since the last
    /// one, none under way, or the one under way lost).
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let lost = self.in_flight.as_ref().is_some_and(|f| now_ms - f.started_ms >= FLUSH_TIMEOUT_MS);
        (self.in_flight.is_none() || lost) && !self.is_empty() && self.last_flush_ms.is_none_or(|t| now_ms - t >= self.flush_ms)
    }

    /// Whether a flush should be asked for now: there is something to send, and no flush is
    /// asked for (or was, [`FLUSH_TIMEOUT_MS`] ago, and never started) or under way (or lost).
    /// If so, notes that one was asked for. The flush asked for waits [`UsageAggregator::wait_ms`]
    /// before it starts, so counts are sent at most every `flush_secs` but never later than that
    /// after they were counted, traffic or not.
    pub fn should_flush(&mut self, now_ms: i64) -> bool {
        let asked = self.requested_ms.is_some_and(|t| now_ms - t < FLUSH_TIMEOUT_MS);
        let busy = self.in_flight.as_ref().is_some_and(|f| now_ms - f.started_ms < FLUSH_TIMEOUT_MS);
        if asked || busy || self.is_empty() {
            return false;
        }
        self.requested_ms = Some(now_ms);
        true
    }

    /// How long a flush asked for at `now_ms` waits before it starts (ms): until `flush_secs`
    /// after the last one.
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        self.last_flush_ms.map_or(0, |t| (t + self.flush_ms - now_ms).max(0))
    }

    /// Starts a flush: the batches to send, one per shard that has rows (the overflow goes with
    /// shard 0's, which is sent whenever there is overflow). The entries are kept until
    /// [`UsageAggregator::finish_flush`]. A flush under way that was lost is taken back first.
    pub fn start_flush(&mut self, now_ms: i64) -> Vec<(u32, UsageBatch)> {
        if let Some(lost) = self.in_flight.take() {
            self.put_back(lost.entries, lost.overflow);
        }
        let entries = std::mem::take(&mut self.entries);
        self.index.clear();
        let overflow = std::mem::take(&mut self.overflow);
        let sent_at = now_ms.div_euclid(1000);
        let mut by_shard: BTreeMap<u32, UsageBatch> = BTreeMap::new();
        if overflow > 0 {
            by_shard.insert(0, UsageBatch { v: BATCH_VERSION, sent_at, overflow, rows: Vec::new() });
        }
        for e in &entries {
            let shard = shard_of(e.kind, e.iss.as_deref(), &e.id);
            by_shard.entry(shard).or_insert_with(|| UsageBatch { v: BATCH_VERSION, sent_at, overflow: 0, rows: Vec::new() }).rows.push(e.row());
        }
        self.last_flush_ms = Some(now_ms);
        self.requested_ms = None;
        self.in_flight = Some(InFlight { started_ms: now_ms, entries, overflow });
        by_shard.into_iter().collect()
    }

    /// Ends the flush: the rows of the shards in `failed` are counted again (within the bound;
    /// what does not fit adds to the overflow), with the overflow when shard 0 failed.
    pub fn finish_flush(&mut self, failed: &[u32]) {
        let Some(f) = self.in_flight.take() else { return };
        if failed.is_empty() {
            return;
        }
        let back: Vec<Entry> = f.entries.into_iter().filter(|e| failed.contains(&shard_of(e.kind, e.iss.as_deref(), &e.id))).collect();
        self.put_back(back, if failed.contains(&0) { f.overflow } else { 0 });
    }

    fn put_back(&mut self, entries: Vec<Entry>, overflow: u64) {
        self.overflow += overflow;
        for old in entries {
            let now = old.first_seen;
            match self.entry(old.kind, old.iss.as_deref(), &old.id, old.minute, now) {
                Some(e) => {
                    let lost = e.merge(&old);
                    self.overflow += lost;
                }
                None => self.overflow += old.total(),
            }
        }
    }
}

/// Whether a refusal with this code refused a presented credential (an `auth_failures` count):
/// a 401 other than a missing credential, or `ip_not_allowed`.
pub fn is_auth_failure(status: u16, code: &str) -> bool {
    (status == 401 && !matches!(code, "missing_token" | "missing_api_key" | "missing_credential")) || code == "ip_not_allowed"
}

// ---- Workers Analytics Engine ---------------------------------------------------------------

/// One Analytics Engine data point (`writeDataPoint`): what the optional `EDGEWARD_ANALYTICS`
/// binding gets for each counted decision. The schema (a contract with the operator's queries):
///
/// | column | value |
/// |---|---|
/// | `index1` | the subject: `key_id`, else `sub`, else `client_id`, else the client address as logged, else empty (the sampling key) |
/// | `blob1` | `decision` (`accept` or `reject`) |
/// | `blob2` | the reason code (empty when accepted) |
/// | `blob3` | the API key id |
/// | `blob4` | `iss` |
/// | `blob5` | `sub` |
/// | `blob6` | the client id (`azp` or `client_id`) |
/// | `blob7` | the client address as `logging.client_ip` renders it |
/// | `blob8` | the country |
/// | `blob9` | the data center (`colo`) |
/// | `blob10` | the route rule's `path` |
/// | `blob11` | the method |
/// | `double1` | the status |
/// | `double2` | 1 if a presented credential was refused (`auth_failures`), else 0 |
/// | `double3` | 1 if a revoked token or key was presented, else 0 |
///
/// Blobs are cut at 256 bytes (the platform's limit for all blobs together is larger).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyticsPoint {
    /// `index1`.
    pub indexes: [String; 1],
    /// `blob1` … `blob11`.
    pub blobs: Vec<String>,
    /// `double1` … `double3`.
    pub doubles: [f64; 3],
}

/// The data point of a counted decision ([`AnalyticsPoint`]'s schema).
pub fn analytics_point(o: &Observation<'_>, status: u16, colo: Option<&str>, rule: Option<&str>, method: &str) -> AnalyticsPoint {
    let text = |v: Option<&str>| cut(v.unwrap_or(""), MAX_ID_BYTES).to_string();
    let index = o.key_id.or(o.sub).or(o.client_id).or(o.client_ip);
    AnalyticsPoint {
        indexes: [text(index)],
        blobs: vec![
            (if o.accepted { "accept" } else { "reject" }).to_string(),
            text(o.reason),
            text(o.key_id),
            text(o.iss),
            text(o.sub),
            text(o.client_id),
            text(o.client_ip),
            text(o.country),
            text(colo),
            text(rule),
            text(Some(method)),
        ],
        doubles: [f64::from(status), f64::from(u8::from(o.auth_failure)), f64::from(u8::from(o.revoked))],
    }
}

// ---- the query ------------------------------------------------------------------------------

/// A query's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// 60 s.
    Minute,
    /// 3600 s.
    Hour,
    /// 86400 s.
    Day,
}

impl Granularity {
    /// Its length in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }
}

/// Most points a query answers.
pub const MAX_POINTS: i64 = 10_080;

/// `GET {admin}/usage`'s parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// The subject's kind (`key_id`, `sub` or `client_id`).
    pub kind: SubjectKind,
    /// Its id.
    pub id: String,
    /// The issuer (with `sub` only, and required with it).
    pub iss: Option<String>,
    /// From (Unix seconds, included).
    pub from: i64,
    /// To (Unix seconds, included).
    pub to: i64,
    /// Resolution.
    pub granularity: Granularity,
}

/// A refused query: the parameter and why (`400 bad_usage_query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The parameter.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

impl UsageQuery {
    /// Parses the query string (without `?`) at `now` (`to` defaults to `now`, `from` to a day
    /// before `to`, `granularity` to `minute`).
    pub fn parse(query: &str, now: i64) -> Result<UsageQuery, QueryError> {
        let bad = |field: &'static str, message: &str| QueryError { field, message: message.into() };
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let name = match k {
                "key_id" => "key_id",
                "sub" => "sub",
                "iss" => "iss",
                "client_id" => "client_id",
                "from" => "from",
                "to" => "to",
                "granularity" => "granularity",
                _ => return Err(bad("query", "unknown parameter (key_id, sub, iss, client_id, from, to, granularity)")),
            };
            let v = super::canonical::decode_query_component(v).ok_or_else(|| bad(name, "not percent-encoded UTF-8"))?;
            if params.insert(name, v).is_some() {
                return Err(bad(name, "given twice"));
            }
        }
        let mut subjects = [("key_id", SubjectKind::KeyId), ("sub", SubjectKind::Sub), ("client_id", SubjectKind::ClientId)]
            .into_iter()
            .filter_map(|(n, k)| params.get(n).map(|v| (n, k, v.clone())));
        let (name, kind, id) = subjects.next().ok_or_else(|| bad("subject", "one of key_id, sub (with iss) or client_id"))?;
        if subjects.next().is_some() {
            return Err(bad("subject", "only one of key_id, sub or client_id"));
        }
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(bad(name, "1 to 256 bytes"));
        }
        let iss = params.get("iss").cloned();
        match (kind, &iss) {
            (SubjectKind::Sub, None) => return Err(bad("iss", "required with sub")),
            (SubjectKind::KeyId | SubjectKind::ClientId, Some(_)) => return Err(bad("iss", "only with sub")),
            _ => {}
        }
        let int = |name: &'static str| -> Result<Option<i64>, QueryError> {
            params.get(name).map(|v| v.parse::<i64>().ok().filter(|t| (0..=253_402_300_799).contains(t)).ok_or_else(|| bad(name, "Unix seconds"))).transpose()
        };
        let to = int("to")?.unwrap_or(now);
        let from = int("from")?.unwrap_or(to - 86_400);
        if from > to {
            return Err(bad("from", "not after to"));
        }
        let granularity = match params.get("granularity").map(String::as_str) {
            None | Some("minute") => Granularity::Minute,
            Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(_) => return Err(bad("granularity", "minute, hour or day")),
        };
        if (to - from) / granularity.secs() >= MAX_POINTS {
            return Err(bad("granularity", &format!("at most {MAX_POINTS} points: a shorter range or a coarser granularity")));
        }
        Ok(UsageQuery { kind, id, iss, from, to, granularity })
    }
}

/// One point of a series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the interval (Unix seconds).
    pub t: i64,
    /// Accepted requests.
    pub accepted: u64,
    /// Refusals by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// The series of stored rows (start time, accepted, refusals by reason: minute or hour rows
/// alike) at `g`: one point per interval that has any, in time order.
pub fn series<'r>(rows: impl IntoIterator<Item = (i64, u64, &'r BTreeMap<String, u64>)>, g: Granularity) -> Vec<Point> {
    let mut points: BTreeMap<i64, Point> = BTreeMap::new();
    for (t, accepted, rejected) in rows {
        let start = t - t.rem_euclid(g.secs());
        let p = points.entry(start).or_insert_with(|| Point { t: start, ..Default::default() });
        p.accepted += accepted;
        for (code, n) in rejected {
            *p.rejected.entry(code.clone()).or_default() += n;
        }
    }
    points.into_values().collect()
}

/// The storage resolution of a row of age `age_secs`: a minute for the last day, an hour after.
pub fn stored_resolution(age_secs: i64) -> i64 {
    if age_secs < 86_400 {
        60
    } else {
        3_600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ObservabilityPolicy {
        ObservabilityPolicy::default()
    }

    fn obs<'a>(now_ms: i64, rid: &'a str) -> Observation<'a> {
        Observation { now_ms, request_id: rid, ..Default::default() }
    }

    fn rows(batches: &[(u32, UsageBatch)]) -> Vec<UsageRow> {
        let mut all: Vec<UsageRow> = batches.iter().flat_map(|(_, b)| b.rows.clone()).collect();
        all.sort_by(|a, b| (a.kind, &a.id, a.minute).cmp(&(b.kind, &b.id, b.minute)));
        all
    }

    #[test]
    fn config_defaults_and_bounds() {
        let p: ObservabilityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(p.validate().unwrap(), ObservabilityPolicy { flush_secs: 10, retention_days: 30 });
        for bad in [r#"{"flush_secs": 0}"#, r#"{"flush_secs": 301}"#, r#"{"retention_days": 0}"#] {
            assert!(serde_json::from_str::<ObservabilityConfig>(bad).unwrap().validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ObservabilityConfig>(r#"{"flush": 1}"#).is_err());
    }

    #[test]
    fn counts_per_subject_and_minute() {
        let mut a = UsageAggregator::new(&policy());
        let t = 1_700_000_040_000; // 1_700_000_040 is a multiple of 60
        for i in 0..3 {
            a.record(&Observation { accepted: true, key_id: Some("k1"), country: Some("DE"), ..obs(t + i * 1000, "r1") });
        }
        a.record(&Observation {
            reason: Some("api_key_invalid"),
            auth_failure: true,
            revoked: true,
            key_id: Some("k1"),
            client_ip: Some("203.0.113.0/24"),
            country: Some("FR"),
            ..obs(t + 5000, "r2")
        });
        a.record(&Observation {
            accepted: true,
            iss: Some("https://i"),
            sub: Some("alice"),
            client_id: Some("app"),
            client_ip: Some("x"),
            ..obs(t + 61_000, "r3")
        });
        assert_eq!(a.len(), 4, "k1 and the ip; alice and app in the next minute; no ip for an accepted request");
        let batches = a.start_flush(t + 70_000);
        assert!(batches.iter().all(|(s, b)| *s < SHARDS && b.v == BATCH_VERSION && b.sent_at == 1_700_000_110));
        let r = rows(&batches);
        let k1 = r.iter().find(|r| r.kind == SubjectKind::KeyId).unwrap();
        assert_eq!((k1.accepted, k1.auth_failures, k1.revoked, k1.minute), (3, 1, 1, 1_700_000_040));
        assert_eq!(k1.rejected, BTreeMap::from([("api_key_invalid".to_string(), 1)]));
        assert_eq!(k1.countries, ["DE", "FR"]);
        assert_eq!(k1.samples, ["r1", "r2"]);
        assert_eq!((k1.first_seen, k1.last_seen), (1_700_000_040, 1_700_000_045));
        let ip = r.iter().find(|r| r.kind == SubjectKind::Ip).unwrap();
        assert_eq!((ip.id.as_str(), ip.accepted, ip.auth_failures), ("203.0.113.0/24", 0, 1));
        let alice = r.iter().find(|r| r.kind == SubjectKind::Sub).unwrap();
        assert_eq!((alice.iss.as_deref(), alice.minute, alice.accepted), (Some("https://i"), 1_700_000_100, 1));
        let app = r.iter().find(|r| r.kind == SubjectKind::ClientId).unwrap();
        assert_eq!((app.id.as_str(), app.iss.as_deref()), ("app", None), "a client id is counted across issuers");
        // Each row went to its subject's shard.
        for (s, b) in &batches {
            for row in &b.rows {
                assert_eq!(shard_of(row.kind, row.iss.as_deref(), &row.id), *s);
            }
        }
    }

    #[test]
    fn flush_interval_and_failure_keep_counts() {
        let mut a = UsageAggregator::new(&ObservabilityPolicy { flush_secs: 10, retention_days: 30 });
        let t = 1_700_000_040_000;
        assert!(!a.flush_due(t), "nothing to send");
        a.record(&Observation { accepted: true, key_id: Some("k"), ..obs(t, "a") });
        assert!(a.flush_due(t), "first flush at once");
        let b = a.start_flush(t);
        assert_eq!(b.len(), 1);
        a.record(&Observation { accepted: true, key_id: Some("k"), ..obs(t + 1000, "b") });
        assert!(!a.flush_due(t + 1000), "one under way");
        assert!(!a.should_flush(t + 1000), "one under way: none asked for");
        a.finish_flush(&[b[0].0]);
        assert!(a.should_flush(t + 1000), "counts waiting: a flush is asked for…");
        assert_eq!(a.wait_ms(t + 1000), 9_000, "…to start flush_secs after the last one");
        assert!(!a.should_flush(t + 2000), "asked for once");
        assert!(!a.flush_due(t + 9_999), "not before flush_secs");
        assert!(a.flush_due(t + 10_000));
        let again = rows(&a.start_flush(t + 10_000));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].accepted, 2, "the failed flush's count came back and merged");
        a.finish_flush(&[]);
        assert!(a.is_empty());
        // A flush never finished is taken as lost after FLUSH_TIMEOUT_MS.
        a.record(&Observation { accepted: true, key_id: Some("k"), ..obs(t + 20_000, "c") });
        let _lost = a.start_flush(t + 20_000);
        a.record(&Observation { accepted: true, key_id: Some("k"), ..obs(t + 21_000, "d") });
        assert!(!a.flush_due(t + 20_000 + FLUSH_TIMEOUT_MS - 1));
        assert!(a.flush_due(t + 20_000 + FLUSH_TIMEOUT_MS));
        assert_eq!(rows(&a.start_flush(t + 20_000 + FLUSH_TIMEOUT_MS))[0].accepted, 2);
    }

    #[test]
    fn bounds_count_overflow() {
        let mut a = UsageAggregator::new(&policy());
        let t = 1_700_000_040_000;
        for i in 0..MAX_ENTRIES + 10 {
            a.record(&Observation { accepted: true, key_id: Some(&format!("k{i}")), ..obs(t, "r") });
        }
        assert_eq!(a.len(), MAX_ENTRIES);
        assert_eq!(a.overflow(), 10);
        let mut b = UsageAggregator::new(&policy());
        let codes = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        for (i, c) in codes.iter().enumerate() {
            b.record(&Observation {
                reason: Some(c),
                key_id: Some("k"),
                country: Some(["AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ"][i]),
                ..obs(t, &format!("r{i}")[..])
            });
        }
        assert_eq!(b.overflow(), 2, "two reasons past MAX_REASONS");
        let r = rows(&b.start_flush(t));
        assert_eq!(r[0].rejected.len(), MAX_REASONS);
        assert_eq!(r[0].countries.len(), MAX_COUNTRIES);
        assert_eq!(r[0].samples.len(), MAX_SAMPLES);
        let long = "x".repeat(1000);
        let mut c = UsageAggregator::new(&policy());
        c.record(&Observation { accepted: true, key_id: Some(&long), ..obs(t, "r") });
        assert_eq!(rows(&c.start_flush(t))[0].id.len(), MAX_ID_BYTES);
    }

    #[test]
    fn overflow_travels_with_shard_zero() {
        let mut a = UsageAggregator::new(&policy());
        let t = 1_700_000_040_000;
        for i in 0..MAX_ENTRIES + 3 {
            a.record(&Observation { accepted: true, key_id: Some(&format!("k{i}")), ..obs(t, "r") });
        }
        let b = a.start_flush(t);
        assert_eq!(b.iter().map(|(_, b)| b.overflow).sum::<u64>(), 3);
        assert_eq!(b.iter().find(|(_, b)| b.overflow > 0).map(|(s, _)| *s), Some(0));
        a.finish_flush(&[0]);
        assert_eq!(a.overflow(), 3, "shard 0 failed: its overflow is counted again");
    }

    #[test]
    fn batch_wire_format() {
        let mut a = UsageAggregator::new(&policy());
        a.record(&Observation { accepted: true, key_id: Some("k"), ..obs(1_700_000_040_000, "r") });
        let (_, b) = a.start_flush(1_700_000_040_000).remove(0);
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::json!({"v": 1, "sent_at": 1_700_000_040i64, "overflow": 0, "rows": [{"kind": "key_id", "id": "k", "minute": 1_700_000_040i64,
                "accepted": 1, "rejected": {}, "auth_failures": 0, "revoked": 0, "countries": [], "samples": ["r"], "first_seen": 1_700_000_040i64, "last_seen": 1_700_000_040i64}]})
        );
        assert_eq!(UsageBatch::parse(&text).unwrap(), b);
        assert!(UsageBatch::parse(&text.replace("\"v\":1", "\"v\":2")).unwrap_err().contains("version 2"));
    }

    #[test]
    fn analytics_points_follow_the_schema() {
        let o = Observation {
            reason: Some("token_revoked"),
            auth_failure: true,
            revoked: true,
            iss: Some("https://i"),
            sub: Some("alice"),
            client_ip: Some("203.0.113.0/24"),
            country: Some("DE"),
            ..obs(1_700_000_040_000, "r")
        };
        let p = analytics_point(&o, 401, Some("FRA"), Some("/api/*"), "GET");
        assert_eq!(p.indexes, ["alice".to_string()], "no key id: the sub");
        assert_eq!(p.blobs, ["reject", "token_revoked", "", "https://i", "alice", "", "203.0.113.0/24", "DE", "FRA", "/api/*", "GET"]);
        assert_eq!(p.doubles, [401.0, 1.0, 1.0]);
        let k = Observation { accepted: true, key_id: Some("key_1"), client_ip: Some("x"), ..obs(0, "r") };
        let p = analytics_point(&k, 200, None, None, "POST");
        assert_eq!((p.indexes[0].as_str(), p.blobs[0].as_str(), p.blobs[1].as_str(), p.doubles), ("key_1", "accept", "", [200.0, 0.0, 0.0]));
        let long = "y".repeat(1000);
        assert_eq!(analytics_point(&Observation { sub: Some(&long), ..obs(0, "r") }, 401, None, None, "GET").blobs[4].len(), MAX_ID_BYTES);
        // Never a token: the observation holds none, and the point only copies it.
        assert_eq!(serde_json::to_value(&p).unwrap().as_object().unwrap().len(), 3);
    }

    #[test]
    fn auth_failure_classes() {
        assert!(is_auth_failure(401, "bad_signature"));
        assert!(is_auth_failure(401, "token_revoked"));
        assert!(is_auth_failure(403, "ip_not_allowed"));
        assert!(!is_auth_failure(401, "missing_token"));
        assert!(!is_auth_failure(403, "insufficient_scope"));
        assert!(!is_auth_failure(429, "rate_limited"));
    }

    #[test]
    fn query_parameters() {
        let now = 1_700_000_000;
        let q = UsageQuery::parse("key_id=k1&from=100&to=200&granularity=hour", now).unwrap();
        assert_eq!(q, UsageQuery { kind: SubjectKind::KeyId, id: "k1".into(), iss: None, from: 100, to: 200, granularity: Granularity::Hour });
        let q = UsageQuery::parse("sub=a%20b&iss=https%3A%2F%2Fi", now).unwrap();
        assert_eq!((q.id.as_str(), q.iss.as_deref(), q.from, q.to, q.granularity), ("a b", Some("https://i"), now - 86_400, now, Granularity::Minute));
        for (bad, field) in [
            ("", "subject"),
            ("key_id=a&sub=b&iss=c", "subject"),
            ("sub=a", "iss"),
            ("key_id=a&iss=b", "iss"),
            ("client_id=a&iss=b", "iss"),
            ("key_id=a&from=x", "from"),
            ("key_id=a&from=300&to=200", "from"),
            ("key_id=a&granularity=week", "granularity"),
            ("key_id=a&from=0&to=100000000", "granularity"),
            ("key_id=a&key_id=b", "key_id"),
            ("key_id=a&limit=3", "query"),
            ("key_id=%zz", "key_id"),
        ] {
            assert_eq!(UsageQuery::parse(bad, now).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn series_buckets_rows() {
        let m = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        let (r1, r2, r3) = (m(&[("expired", 2)]), m(&[("expired", 1), ("rate_limited", 4)]), m(&[]));
        let rows = vec![(3_600, 5, &r1), (3_660, 1, &r2), (7_200, 7, &r3)];
        let minutes = series(rows.clone(), Granularity::Minute);
        assert_eq!(minutes.len(), 3);
        assert_eq!(minutes[1], Point { t: 3_660, accepted: 1, rejected: r2.clone() });
        let hours = series(rows.clone(), Granularity::Hour);
        assert_eq!(
            hours,
            vec![Point { t: 3_600, accepted: 6, rejected: m(&[("expired", 3), ("rate_limited", 4)]) }, Point { t: 7_200, accepted: 7, rejected: m(&[]) }]
        );
        assert_eq!(series(rows, Granularity::Day).len(), 1);
        assert_eq!((stored_resolution(0), stored_resolution(86_399), stored_resolution(86_400)), (60, 60, 3_600));
    }
}
