//! The JWKS cache policy for one issuer, as a state machine with no I/O: the adapter asks
//! [`IssuerKeyCache::plan`] whether to fetch, performs the fetch itself, and reports the outcome
//! with [`IssuerKeyCache::complete`]. Time is always a parameter.
//!
//! - Freshness comes from the response's `Cache-Control: max-age`, clamped to
//!   `[min_ttl_secs, max_ttl_secs]`; a refresh starts in the background at 90 % of the TTL.
//! - An unknown `kid` refetches only when the last attempt is older than the cooldown, so garbage
//!   `kid`s cannot hammer the issuer.
//! - A failed, non-200 or malformed fetch keeps the last good keys for up to `max_stale_secs`
//!   past their TTL.
//! - One refresh at a time: while one is in flight (bounded by the fetch timeout) other requests
//!   keep using the last good keys and start no fetch of their own, unless they have no keys at all.
//! - The last good set is exported as a [`JwksSnapshot`] the adapter persists (KV), so a fresh
//!   isolate verifies without fetching.

use super::json::parse_strict;
use super::jwk::{KeySet, KeySource};
use serde::{Deserialize, Serialize};

/// The `jwks_cache` section of the configuration: cache tuning; every field has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksCacheConfig {
    /// Lower clamp for the response's `max-age` (default 300).
    pub min_ttl_secs: u32,
    /// Upper clamp for `max-age` (default 86400).
    pub max_ttl_secs: u32,
    /// Unknown `kid` refetches at most this often (default 30).
    pub unknown_kid_cooldown_secs: u32,
    /// Last good keys stay usable this long past their TTL while the issuer fails (default 86400).
    pub max_stale_secs: u32,
    /// Fetch timeout (default 5000).
    pub fetch_timeout_ms: u32,
}

impl Default for JwksCacheConfig {
    fn default() -> Self {
        JwksCacheConfig { min_ttl_secs: 300, max_ttl_secs: 86_400, unknown_kid_cooldown_secs: 30, max_stale_secs: 86_400, fetch_timeout_ms: 5_000 }
    }
}

impl JwksCacheConfig {
    /// Checks the section; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_ttl_secs > self.max_ttl_secs {
            return Err(("jwks_cache.min_ttl_secs".into(), "must not exceed max_ttl_secs".into()));
        }
        if self.fetch_timeout_ms == 0 || self.fetch_timeout_ms > 60_000 {
            return Err(("jwks_cache.fetch_timeout_ms".into(), "must be between 1 and 60000".into()));
        }
        Ok(())
    }
}

/// Last good keys and when they were fetched.
#[derive(Debug, Clone)]
struct Fetched {
    /// Shared: a request borrows the set for its key lookup without copying the keys.
    keys: std::sync::Arc<KeySet>,
    doc: String,
    fetched_at: i64,
    ttl_secs: i64,
}

/// How usable the cached keys are at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within the TTL.
    Fresh,
    /// Past the TTL but within `max_stale_secs`: usable, refresh wanted.
    Stale,
    /// Nothing usable (never fetched, or older than TTL + `max_stale_secs`).
    Missing,
}

/// Why the gate is consulting the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An ordinary request that needs the issuer's keys.
    Request,
    /// The token's `kid` is not among the cached keys.
    UnknownKid,
}

/// What the adapter should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPlan {
    /// Nothing; use what is cached.
    None,
    /// Fetch now and wait for it (no usable keys, or an unknown `kid` past the cooldown).
    Now,
    /// Serve from cache and refresh in the background (`ctx.wait_until`).
    Background,
}

/// The result of one fetch, as the adapter saw it.
#[derive(Debug, Clone)]
pub enum FetchOutcome {
    /// The issuer answered.
    Response {
        /// HTTP status.
        status: u16,
        /// `Cache-Control` header, if any.
        cache_control: Option<String>,
        /// Body text.
        body: String,
    },
    /// Network error or timeout (the message is for logs).
    Failed(String),
}

/// What a completed fetch did, for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchReport {
    /// True if the new keys replaced the old ones.
    pub ok: bool,
    /// Number of usable keys now cached.
    pub keys: usize,
    /// TTL given to the new keys.
    pub ttl_secs: Option<i64>,
    /// Why the fetch was not used, if it was not.
    pub error: Option<String>,
    /// Keys in the document that were skipped, with reasons.
    pub skipped: Vec<String>,
}

/// The persisted form of the last good key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksSnapshot {
    /// Format version (1).
    pub v: u32,
    /// The JWKS URL the keys came from.
    pub jwks_uri: String,
    /// When they were fetched (Unix seconds).
    pub fetched_at: i64,
    /// Their TTL.
    pub ttl_secs: i64,
    /// The JWK Set document as fetched.
    pub jwks: String,
}

/// Cache state for one issuer's `jwks_uri`.
#[derive(Debug, Clone)]
pub struct IssuerKeyCache {
    jwks_uri: String,
    cfg: JwksCacheConfig,
    fetched: Option<Fetched>,
    last_attempt_at: Option<i64>,
    last_attempt_ok: bool,
    in_flight_since: Option<i64>,
}

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

impl IssuerKeyCache {
    /// An empty cache for `jwks_uri`.
    pub fn new(jwks_uri: impl Into<String>, cfg: JwksCacheConfig) -> Self {
        IssuerKeyCache { jwks_uri: jwks_uri.into(), cfg, fetched: None, last_attempt_at: None, last_attempt_ok: true, in_flight_since: None }
    }

    /// The URL this cache fetches.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// Freshness at `now`. Keys fetched well after `now` (a clock that went back, or a caller of
    /// the JS package that passed a later `nowSecs` to one call: see `ahead`) are stale: usable,
    /// and due for a refresh, so that no clock given once keeps a key set fresh past its TTL.
    pub fn freshness(&self, now: i64) -> Freshness {
        match &self.fetched {
            None => Freshness::Missing,
            Some(f) => {
                let age = now - f.fetched_at;
                if self.ahead(f.fetched_at, now) {
                    Freshness::Stale
                } else if age < f.ttl_secs {
                    Freshness::Fresh
                } else if age < f.ttl_secs + i64::from(self.cfg.max_stale_secs) {
                    Freshness::Stale
                } else {
                    Freshness::Missing
                }
            }
        }
    }

    /// The keys usable at `now` (fresh or stale), if any.
    pub fn keys(&self, now: i64) -> Option<&KeySet> {
        self.shared_keys(now).map(|k| &**k)
    }

    /// [`Self::keys`] as a shared handle, for a request to hold across its awaits.
    pub fn shared_keys(&self, now: i64) -> Option<&std::sync::Arc<KeySet>> {
        match self.freshness(now) {
            Freshness::Missing => None,
            _ => self.fetched.as_ref().map(|f| &f.keys),
        }
    }

    /// True if the last fetch attempt failed.
    pub fn last_attempt_failed(&self) -> bool {
        !self.last_attempt_ok
    }

    /// Twice the fetch timeout in seconds (at least 1): how long a fetch can take.
    fn fetch_bound(&self) -> i64 {
        ((i64::from(self.cfg.fetch_timeout_ms) + 999) / 1000 * 2).max(1)
    }

    /// Whether `t` lies further after `now` than concurrent calls' clocks differ (a fetch's
    /// duration): a clock that went back, or one call's later `nowSecs` in the JS package. Such
    /// a time holds nothing back (see `freshness`).
    fn ahead(&self, t: i64, now: i64) -> bool {
        t > now.saturating_add(self.fetch_bound())
    }

    fn in_flight(&self, now: i64) -> bool {
        // A refresh whose completion was never reported (isolate evicted mid-fetch) stops
        // counting after twice the fetch timeout.
        self.in_flight_since.is_some_and(|t| !self.ahead(t, now) && now - t < self.fetch_bound())
    }

    fn cooled_down(&self, now: i64) -> bool {
        self.last_attempt_at.is_none_or(|t| self.ahead(t, now) || now - t >= i64::from(self.cfg.unknown_kid_cooldown_secs))
    }

    /// Decides whether to fetch.
    pub fn plan(&self, now: i64, trigger: Trigger) -> FetchPlan {
        let fresh = self.freshness(now);
        match trigger {
            Trigger::UnknownKid => {
                if self.cooled_down(now) && !self.in_flight(now) {
                    FetchPlan::Now
                } else {
                    FetchPlan::None
                }
            }
            Trigger::Request => match fresh {
                // No keys: this request must fetch for itself (in-flight work of other
                // requests cannot be awaited in a Worker). After a failure, wait out the
                // cooldown rather than hammering a failing issuer.
                Freshness::Missing => {
                    if self.last_attempt_ok || self.cooled_down(now) {
                        FetchPlan::Now
                    } else {
                        FetchPlan::None
                    }
                }
                Freshness::Stale | Freshness::Fresh => {
                    let due = self.fetched.as_ref().is_some_and(|f| self.ahead(f.fetched_at, now) || now - f.fetched_at >= f.ttl_secs * 9 / 10);
                    let may = !self.in_flight(now) && (self.last_attempt_ok || self.cooled_down(now));
                    if due && may {
                        FetchPlan::Background
                    } else {
                        FetchPlan::None
                    }
                }
            },
        }
    }

    /// Records that a fetch starts at `now`.
    pub fn begin(&mut self, now: i64) {
        self.last_attempt_at = Some(now);
        self.in_flight_since = Some(now);
    }

    /// Applies a fetch outcome. Bad outcomes keep the last good keys.
    pub fn complete(&mut self, now: i64, outcome: FetchOutcome) -> FetchReport {
        self.in_flight_since = None;
        // A concurrent call's later start stands; a time far ahead (see `ahead`) does not.
        self.last_attempt_at = Some(self.last_attempt_at.filter(|&t| !self.ahead(t, now)).map_or(now, |t| t.max(now)));
        let result = match outcome {
            FetchOutcome::Failed(e) => Err((e, Vec::new())),
            FetchOutcome::Response { status, .. } if status != 200 => Err((format!("HTTP status {status}"), Vec::new())),
            FetchOutcome::Response { body, .. } if body.len() > MAX_JWKS_BYTES => Err((format!("JWKS larger than {MAX_JWKS_BYTES} bytes"), Vec::new())),
            FetchOutcome::Response { cache_control, body, .. } => match parse_strict(body.as_bytes()) {
                Err(_) => Err(("JWKS is not valid JSON".to_string(), Vec::new())),
                Ok(doc) => match KeySet::parse(&doc, KeySource::Fetched) {
                    Err(e) => Err((e.to_string(), Vec::new())),
                    Ok(keys) if keys.keys.is_empty() => Err(("JWKS has no usable signature key".to_string(), keys.skipped)),
                    Ok(keys) => {
                        let ttl = self.ttl_from(cache_control.as_deref());
                        Ok((keys, body, ttl))
                    }
                },
            },
        };
        match result {
            Ok((keys, doc, ttl_secs)) => {
                let report = FetchReport { ok: true, keys: keys.keys.len(), ttl_secs: Some(ttl_secs), error: None, skipped: keys.skipped.clone() };
                self.fetched = Some(Fetched { keys: keys.into(), doc, fetched_at: now, ttl_secs });
                self.last_attempt_ok = true;
                report
            }
            Err((error, skipped)) => {
                self.last_attempt_ok = false;
                FetchReport { ok: false, keys: self.keys(now).map_or(0, |k| k.keys.len()), ttl_secs: None, error: Some(error), skipped }
            }
        }
    }

    /// TTL from `Cache-Control`, clamped to the configured bounds.
    pub fn ttl_from(&self, cache_control: Option<&str>) -> i64 {
        ttl_from(&self.cfg, cache_control)
    }

    /// Takes keys obtained elsewhere (already parsed) as if fetched at `now`, fresh for the
    /// configured maximum TTL: for callers that hold an issuer's keys in memory (tests, tools).
    /// Such keys are not persisted ([`Self::snapshot`] has no document for them).
    pub fn install(&mut self, keys: KeySet, now: i64) {
        self.fetched = Some(Fetched { keys: keys.into(), doc: String::new(), fetched_at: now, ttl_secs: i64::from(self.cfg.max_ttl_secs) });
        self.last_attempt_at = Some(now);
        self.last_attempt_ok = true;
        self.in_flight_since = None;
    }

    /// The last good keys in persistable form.
    pub fn snapshot(&self) -> Option<JwksSnapshot> {
        self.fetched.as_ref().filter(|f| !f.doc.is_empty()).map(|f| JwksSnapshot {
            v: 1,
            jwks_uri: self.jwks_uri.clone(),
            fetched_at: f.fetched_at,
            ttl_secs: f.ttl_secs,
            jwks: f.doc.clone(),
        })
    }

    /// Loads a persisted snapshot if it is for this URL, still usable at `now`, and newer than
    /// what is cached. Returns whether it was taken.
    pub fn restore(&mut self, snap: &JwksSnapshot, now: i64) -> bool {
        // A stored time before 1970 or in the future is no time this cache wrote (and would make
        // the age below overflow).
        if snap.v != 1 || snap.jwks_uri != self.jwks_uri || snap.ttl_secs <= 0 || snap.fetched_at < 0 || snap.fetched_at > now.saturating_add(300) {
            return false;
        }
        // The TTL is clamped to today's configuration before deciding whether the keys are usable.
        let ttl = snap.ttl_secs.clamp(i64::from(self.cfg.min_ttl_secs), i64::from(self.cfg.max_ttl_secs));
        if now.saturating_sub(snap.fetched_at) >= ttl + i64::from(self.cfg.max_stale_secs) {
            return false;
        }
        if self.fetched.as_ref().is_some_and(|f| f.fetched_at >= snap.fetched_at) {
            return false;
        }
        let Ok(doc) = parse_strict(snap.jwks.as_bytes()) else { return false };
        match KeySet::parse(&doc, KeySource::Fetched) {
            Ok(keys) if !keys.keys.is_empty() => {
                self.fetched = Some(Fetched { keys: keys.into(), doc: snap.jwks.clone(), fetched_at: snap.fetched_at, ttl_secs: ttl });
                true
            }
            _ => false,
        }
    }
}

/// TTL from a response's `Cache-Control` (`max-age`; `no-store`/`no-cache`: the minimum),
/// clamped to `cfg`'s bounds: for JWKS documents and issuer metadata alike.
pub fn ttl_from(cfg: &JwksCacheConfig, cache_control: Option<&str>) -> i64 {
    let min = i64::from(cfg.min_ttl_secs);
    let max = i64::from(cfg.max_ttl_secs);
    let mut max_age: Option<i64> = None;
    for d in cache_control.unwrap_or("").split(',') {
        let d = d.trim();
        let (name, value) = d.split_once('=').unwrap_or((d, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return min,
            "max-age" => {
                let v = value.trim().trim_matches('"');
                // RFC 9111 §1.2.2: a delta-seconds too large to represent means "very large".
                max_age = match v.parse::<u64>() {
                    Ok(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
                    Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some(i64::MAX),
                    Err(_) => None,
                };
            }
            _ => {}
        }
    }
    max_age.unwrap_or(min).clamp(min, max)
}
