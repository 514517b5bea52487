//! Rate limiting with GCRA (the generic cell rate algorithm): the state per key is one number, the
//! theoretical arrival time (TAT), and the decision is a pure function of (old TAT, `now`, quota)
//! that also says when to retry. No clock, no storage: adapters keep the TATs (in the isolate for
//! `local` mode, in a Durable Object for `exact` mode).
//!
//! With emission interval `T = period / rate` and tolerance `τ = T × burst`, a request at `now` is
//! allowed when `max(TAT, now) + T − now ≤ τ`, and then `TAT' = max(TAT, now) + T`. So `burst`
//! requests may arrive at once, and over any window of length `t` at most `burst + rate × t / period`
//! pass (property-tested).

use super::access::Requirement;
use super::identity::Identity;
use super::log::{hex64, sha256_64};
use super::route::RouteTable;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;

/// A quota: `rate` requests per `period_secs`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per period.
    pub rate: u32,
    /// The period in seconds.
    pub period_secs: u32,
    /// Requests that may arrive at once.
    pub burst: u32,
}

impl Quota {
    /// Emission interval in milliseconds (rounded up: never more permissive than configured).
    pub fn interval_ms(&self) -> i64 {
        let period = i64::from(self.period_secs) * 1000;
        let rate = i64::from(self.rate.max(1));
        (period + rate - 1) / rate
    }
    /// Burst tolerance in milliseconds.
    pub fn tolerance_ms(&self) -> i64 {
        self.interval_ms() * i64::from(self.burst.max(1))
    }
    fn validate(&self) -> Result<(), &'static str> {
        if self.rate == 0 || self.period_secs == 0 || self.burst == 0 {
            return Err("rate, period_secs and burst must be positive");
        }
        if self.period_secs > 31_536_000 || self.burst > 1_000_000 {
            return Err("period_secs at most a year, burst at most 1000000");
        }
        Ok(())
    }
}

/// The outcome of one GCRA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The TAT to store (unchanged when denied).
    pub tat_ms: i64,
    /// Requests still allowed right now (after this one, if allowed).
    pub remaining: u32,
    /// When denied: milliseconds until a request would be allowed.
    pub retry_after_ms: i64,
    /// Milliseconds until the full burst is available again.
    pub reset_ms: i64,
}

/// One GCRA step: the state is `tat_ms` (None for a fresh key).
pub fn gcra(tat_ms: Option<i64>, now_ms: i64, q: &Quota) -> Decision {
    let t = q.interval_ms();
    let tau = q.tolerance_ms();
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat.saturating_add(t);
    if new_tat - now_ms <= tau {
        let remaining = ((tau - (new_tat - now_ms)) / t).max(0) as u32;
        Decision { allowed: true, tat_ms: new_tat, remaining, retry_after_ms: 0, reset_ms: new_tat - now_ms }
    } else {
        Decision { allowed: false, tat_ms: tat, remaining: 0, retry_after_ms: new_tat - now_ms - tau, reset_ms: tat - now_ms }
    }
}

/// What a limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The token's `sub`.
    Subject,
    /// `azp` or `client_id`.
    Client,
    /// The client IP (`CF-Connecting-IP`).
    Ip,
    /// Any claim (`claim:plan`).
    Claim(String),
    /// The API key id (the rule applies to API-key requests only).
    ApiKey,
}

/// Where limits are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// In the isolate: cheap, approximate (each isolate and location counts on its own).
    #[default]
    Local,
    /// One Durable Object owns each key's state: the limit holds globally.
    Exact,
    /// Cloudflare's rate-limiting binding (per location; its quota is set on the binding).
    Binding,
}

/// What to do when the Durable Object cannot be reached in `exact` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Limit in the isolate instead, and log it (default).
    #[default]
    Local,
    /// Refuse with 503.
    FailClosed,
}

/// One rule as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name (in `RateLimit-Policy` and logs).
    pub name: String,
    /// `sub`, `client_id`, `ip`, `api_key`, or `claim:NAME` (for API keys: `sub` is the owner,
    /// `client_id` the key id).
    pub key: String,
    /// Limit only paths matching this pattern (`/api/*`); default all.
    #[serde(default)]
    pub path: Option<String>,
    /// The default quota.
    #[serde(flatten)]
    pub quota: Quota,
    /// Claim that picks a tier (`plan`); for an API key, the key's own `tier` picks it.
    #[serde(default)]
    pub tier_claim: Option<String>,
    /// Quota per tier value.
    #[serde(default)]
    pub tiers: BTreeMap<String, Quota>,
    /// `binding` mode: the rate-limiting binding to ask (its own limit applies; `rate`/`burst`
    /// are used for headers and `Retry-After` only).
    #[serde(default)]
    pub binding: Option<String>,
}

/// The `rate_limits` section of the configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `local` or `exact`.
    pub mode: LimitMode,
    /// In `exact` mode, when the Durable Object is unreachable.
    pub on_unavailable: OnUnavailable,
    /// Per-IP quota checked before any token is parsed (garbage floods are cheap to refuse).
    pub ip_pre_auth: Option<Quota>,
    /// Rules checked after verification.
    pub rules: Vec<RuleConfig>,
    /// Send `RateLimit` headers on successful responses too (default true).
    pub headers_on_success: Option<bool>,
    /// IPv6 clients are limited per network of this prefix length (default 64: one client
    /// usually holds a whole /64 and could rotate through it); IPv4 per address.
    pub ipv6_prefix_len: Option<u8>,
    /// Keys the isolate's limiter (and each limiter Durable Object) keeps per rule, default
    /// [`DEFAULT_LOCAL_CAPACITY`]; see [`LocalLimiter`] for what eviction means for a limit.
    pub local_capacity: Option<usize>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name.
    pub name: String,
    /// Key kind.
    pub key: LimitKey,
    paths: Option<RouteTable>,
    quota: Quota,
    tier_claim: Option<String>,
    tiers: BTreeMap<String, Quota>,
    binding: Option<String>,
}

/// The validated rate-limit policy.
#[derive(Debug, Clone)]
pub struct RateLimitPolicy {
    /// Mode.
    pub mode: LimitMode,
    /// Fallback.
    pub on_unavailable: OnUnavailable,
    /// Pre-auth IP quota.
    pub ip_pre_auth: Option<Quota>,
    /// Rules.
    pub rules: Vec<Rule>,
    /// Headers on success.
    pub headers_on_success: bool,
    /// IPv6 bucket prefix length.
    pub ipv6_prefix_len: u8,
    /// Keys kept per rule by a [`LocalLimiter`].
    pub local_capacity: NonZeroUsize,
}

impl RateLimitConfig {
    /// Validates; the error is (field, message).
    pub fn validate(self) -> Result<RateLimitPolicy, (String, String)> {
        if let Some(q) = &self.ip_pre_auth {
            q.validate().map_err(|m| ("rate_limits.ip_pre_auth".to_string(), m.to_string()))?;
        }
        let ipv6_prefix_len = self.ipv6_prefix_len.unwrap_or(64);
        if !(32..=128).contains(&ipv6_prefix_len) {
            return Err(("rate_limits.ipv6_prefix_len".into(), "must be between 32 and 128".into()));
        }
        let local_capacity = match self.local_capacity.map_or(Some(DEFAULT_LOCAL_CAPACITY), NonZeroUsize::new) {
            Some(c) if c.get() <= MAX_LOCAL_CAPACITY => c,
            _ => return Err(("rate_limits.local_capacity".into(), format!("must be between 1 and {MAX_LOCAL_CAPACITY} (keys kept per rule)"))),
        };
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let f = |n: &str| format!("rate_limits.rules[{i}].{n}");
            if r.name.is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err((f("name"), "letters, digits, - and _ only".into()));
            }
            let key = match r.key.as_str() {
                "sub" => LimitKey::Subject,
                "client_id" => LimitKey::Client,
                "ip" => LimitKey::Ip,
                "api_key" => LimitKey::ApiKey,
                other => match other.strip_prefix("claim:") {
                    Some(c) if !c.is_empty() => LimitKey::Claim(c.to_string()),
                    _ => return Err((f("key"), "sub, client_id, ip, api_key or claim:NAME".into())),
                },
            };
            r.quota.validate().map_err(|m| (f("rate"), m.to_string()))?;
            for (t, q) in &r.tiers {
                q.validate().map_err(|m| (f(&format!("tiers.{t}")), m.to_string()))?;
            }
            if self.mode == LimitMode::Binding && r.binding.is_none() {
                return Err((f("binding"), "binding mode needs the name of a rate-limiting binding for every rule".into()));
            }
            if !r.tiers.is_empty() && r.tier_claim.is_none() {
                return Err((f("tier_claim"), "tiers need a tier_claim".into()));
            }
            let paths = match r.path {
                None => None,
                Some(p) => Some(
                    RouteTable::new(vec![super::route::Route {
                        path: p,
                        methods: None,
                        public: true,
                        scopes: vec![],
                        sensitive: false,
                        auth: Default::default(),
                        upstream_credential: None,
                        case_insensitive: None,
                        cors: true,
                        origin: None,
                        timeout_ms: None,
                        websocket: false,
                        dpop: Default::default(),
                    }])
                    .map_err(|(_, m)| (f("path"), m))?,
                ),
            };
            rules.push(Rule { name: r.name, key, paths, quota: r.quota, tier_claim: r.tier_claim, tiers: r.tiers, binding: r.binding });
        }
        Ok(RateLimitPolicy {
            mode: self.mode,
            on_unavailable: self.on_unavailable,
            ip_pre_auth: self.ip_pre_auth,
            rules,
            headers_on_success: self.headers_on_success.unwrap_or(true),
            ipv6_prefix_len,
            local_capacity,
        })
    }
}

/// One limit to apply to a request: its bucket key and quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Rule name (or `ip_pre_auth`).
    pub rule: String,
    /// Storage key: `rule:kind:value` (values are hashed so no raw identifier is stored).
    pub key: String,
    /// Quota.
    pub quota: Quota,
    /// Rate-limiting binding (`binding` mode).
    pub binding: Option<String>,
}

/// What the identifier in a bucket key is (the middle part of `rule:kind:fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Sub,
    /// An API key's owner (its record's `sub`): apart from tokens' `sub`.
    Owner,
    Client,
    Ip,
    Claim,
    ApiKey,
}

impl KeyKind {
    const ALL: [KeyKind; 6] = [KeyKind::Sub, KeyKind::Owner, KeyKind::Client, KeyKind::Ip, KeyKind::Claim, KeyKind::ApiKey];

    fn as_str(self) -> &'static str {
        match self {
            KeyKind::Sub => "sub",
            KeyKind::Owner => "owner",
            KeyKind::Client => "client",
            KeyKind::Ip => "ip",
            KeyKind::Claim => "claim",
            KeyKind::ApiKey => "api_key",
        }
    }
}

fn bucket_key(rule: &str, kind: KeyKind, value: &str) -> String {
    format!("{rule}:{}:{}", kind.as_str(), super::log::fingerprint(value.as_bytes()).trim_start_matches("sha256:"))
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        RateLimitPolicy {
            mode: LimitMode::default(),
            on_unavailable: OnUnavailable::default(),
            ip_pre_auth: None,
            rules: Vec::new(),
            headers_on_success: true,
            ipv6_prefix_len: 64,
            local_capacity: DEFAULT_LOCAL_CAPACITY,
        }
    }
}

impl RateLimitPolicy {
    /// The token claims the rules read after verification: `azp` and `client_id` for a
    /// `client_id`-keyed limit, each `claim:NAME` key, each `tier_claim` (what a verified token
    /// must keep for them; see `claims::claims_read`).
    pub fn claims_read(&self) -> Vec<String> {
        let mut names = Vec::new();
        for r in &self.rules {
            match &r.key {
                LimitKey::Client => names.extend(["azp".to_string(), "client_id".to_string()]),
                LimitKey::Claim(c) => names.push(c.clone()),
                LimitKey::Subject | LimitKey::Ip | LimitKey::ApiKey => {}
            }
            names.extend(r.tier_claim.clone());
        }
        names
    }

    /// Path rules follow the route table's case rule (`request.case_insensitive`).
    pub fn with_case_insensitive(mut self, default: bool) -> RateLimitPolicy {
        for r in &mut self.rules {
            r.paths = r.paths.take().map(|t| t.with_case_insensitive(default));
        }
        self
    }

    /// The pre-auth IP bucket, if configured and the IP is known (IPv6 by network).
    pub fn pre_auth_bucket(&self, ip: Option<IpAddr>) -> Option<Bucket> {
        let q = self.ip_pre_auth?;
        let ip = super::canonical::ip_bucket_text(ip?, self.ipv6_prefix_len);
        Some(Bucket { rule: "ip_pre_auth".into(), key: bucket_key("ip_pre_auth", KeyKind::Ip, &ip), quota: q, binding: None })
    }

    /// The buckets a verified request falls into. A rule whose key the request lacks (no `sub`,
    /// say) does not apply to it.
    pub fn buckets(&self, path: &str, who: Identity<'_>, ip: Option<IpAddr>) -> Vec<Bucket> {
        let mut out = Vec::new();
        for r in &self.rules {
            if let Some(t) = &r.paths {
                if t.requirement("GET", path) != Requirement::Public {
                    continue;
                }
            }
            let (kind, value) = match &r.key {
                // A key's owner and a token's subject live in separate buckets: a JWT with
                // `sub: "acme"` must not spend the quota of the keys owned by "acme".
                LimitKey::Subject if who.api_key_id().is_some() => (KeyKind::Owner, who.claim_text("sub")),
                LimitKey::Subject => (KeyKind::Sub, who.claim_text("sub")),
                LimitKey::Client => (KeyKind::Client, who.claim_text("azp").or_else(|| who.claim_text("client_id"))),
                LimitKey::Ip => (KeyKind::Ip, ip.map(|a| super::canonical::ip_bucket_text(a, self.ipv6_prefix_len))),
                LimitKey::Claim(c) => (KeyKind::Claim, who.claim_text(c)),
                LimitKey::ApiKey => (KeyKind::ApiKey, who.api_key_id().map(str::to_owned)),
            };
            let Some(value) = value else { continue };
            let quota = r.tier_claim.as_ref().and_then(|c| who.tier(c)).and_then(|tier| r.tiers.get(&tier).copied()).unwrap_or(r.quota);
            out.push(Bucket { rule: r.name.clone(), key: bucket_key(&r.name, kind, &value), quota, binding: r.binding.clone() });
        }
        out
    }
}

/// `RateLimit-Policy` and `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers) for
/// the most restrictive decision of a request.
pub fn headers(rule: &str, q: &Quota, d: &Decision) -> [(&'static str, String); 2] {
    let reset_secs = (d.reset_ms.max(0) + 999) / 1000;
    [("ratelimit-policy", format!("\"{rule}\";q={};w={}", q.rate, q.period_secs)), ("ratelimit", format!("\"{rule}\";r={};t={reset_secs}", d.remaining))]
}

/// `Retry-After` in whole seconds (rounded up, at least 1).
pub fn retry_after_secs(d: &Decision) -> i64 {
    ((d.retry_after_ms + 999) / 1000).max(1)
}

/// Default of `rate_limits.local_capacity`: keys a [`LocalLimiter`] keeps per rule.
pub const DEFAULT_LOCAL_CAPACITY: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

/// Largest accepted `rate_limits.local_capacity` (at the bytes per entry measured in
/// BENCHMARKS.md, a full rule of this size holds tens of MiB: more than an isolate should spend).
pub const MAX_LOCAL_CAPACITY: usize = 1_000_000;

/// The TATs of `local` mode (and the `RateLimiter` Durable Object's in-memory copy), bounded: one
/// LRU map per rule, each holding at most `capacity` keys, with O(1) work per request at the
/// bound (a map lookup, and at most one eviction: never a scan; the hash table's own upkeep,
/// rehashing its tombstones in place now and then, is amortized O(1)). A rule's memory grows with
/// its keys and stays flat from the moment it fills (measured in BENCHMARKS.md, "Bounded state").
///
/// # Eviction
/// - **Per rule.** Each rule (and `ip_pre_auth`) has its own map, so a client rotating source
///   addresses through an `ip` rule evicts only other keys of that rule, never the `sub` keys of
///   another rule.
/// - **Least recently used.** Every request marks its key used, allowed or not, so a key is
///   evicted only after `capacity` other distinct keys of the same rule arrived after its last
///   request; a key that keeps sending is never evicted.
/// - **What it costs a limit.** An evicted key restarts with a full bucket: it can exceed its
///   quota by at most its `burst` per eviction (its TAT was at most `burst` emission intervals
///   ahead of `now`). An entry whose TAT has passed carries no state (a hit on it is a full
///   bucket anyway), so evicting it costs nothing; evictions of entries that still held state are
///   counted in [`evicted_live`](Self::evicted_live).
/// - **Why eviction is not made free.** Remembering something of evicted keys (a per-rule floor
///   on new keys' TATs, or a sketch of evicted TATs) would start new keys with a spent bucket
///   exactly when a client floods the rule with fresh keys: a rotation flood would become a denial
///   of service for innocent new clients. And it would buy little: to evict one of its own keys a
///   client must send `capacity` other fresh keys through the rule, each of which already came
///   with a full bucket, so the eviction adds one `burst` to those `capacity` bursts. A key that
///   cannot rotate (a `sub`) is evicted only when it sat idle while `capacity` others arrived.
///
/// Keys are the strings of [`Bucket::key`] (`rule:kind:fingerprint`); an entry holds the kind and
/// the 64-bit fingerprint, not the string.
#[derive(Debug)]
pub struct LocalLimiter {
    capacity: NonZeroUsize,
    /// One map per rule name, found by a linear search: a policy has a handful of rules, and a
    /// vector costs less code in the Worker than another hash map.
    rules: Vec<(Box<str>, RuleMap)>,
    evicted_live: u64,
}

/// One rule's keys, most recently used first. The hash table grows with them, and when the rule
/// fills it is moved once into a table sized for twice the capacity: an eviction may leave a
/// tombstone in the table, which it clears by rehashing in place only while at most half full, so
/// a table sized for the capacity alone would double once more some time after the cap. This way
/// a rule's memory reaches its bound when the rule fills and stays there.
#[derive(Debug)]
struct RuleMap {
    lru: LruCache<Slot, i64>,
    /// Whether the table was moved to its final size.
    settled: bool,
}

/// A key's place in its rule's map: the kind of identifier and the fingerprint that
/// [`bucket_key`] wrote. Two identifiers share a place exactly when they share a bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot {
    /// [`KeyKind`] index + 1; 0 for a key not written by [`bucket_key`].
    kind: u8,
    fingerprint: u64,
}

/// Splits a bucket key into its rule and its [`Slot`]. A key of another shape (a test's `"k1"`)
/// gets a slot from the SHA-256 of what follows the rule.
fn split_key(key: &str) -> (&str, Slot) {
    let (rule, rest) = key.split_once(':').unwrap_or(("", key));
    let written = rest.split_once(':').and_then(|(kind, hex)| {
        let kind = KeyKind::ALL.iter().position(|k| k.as_str() == kind)?;
        Some(Slot { kind: kind as u8 + 1, fingerprint: hex64(hex)? })
    });
    let slot = written.unwrap_or_else(|| Slot { kind: 0, fingerprint: sha256_64(rest.as_bytes()) });
    (rule, slot)
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter::new(DEFAULT_LOCAL_CAPACITY)
    }
}

impl LocalLimiter {
    /// An empty limiter keeping at most `capacity` keys per rule (maps grow as keys arrive).
    pub fn new(capacity: NonZeroUsize) -> LocalLimiter {
        LocalLimiter { capacity, rules: Vec::new(), evicted_live: 0 }
    }

    /// Applies one request to `bucket` at `now_ms`.
    pub fn check(&mut self, bucket: &Bucket, now_ms: i64) -> Decision {
        let (rule, slot) = split_key(&bucket.key);
        if let Some(tat) = self.rule_map(rule).lru.get_mut(&slot) {
            let d = gcra(Some(*tat), now_ms, &bucket.quota);
            // Unchanged when denied; an entry whose TAT had passed restarts from `now`.
            *tat = d.tat_ms;
            return d;
        }
        let d = gcra(None, now_ms, &bucket.quota);
        if d.allowed {
            self.insert(rule, slot, d.tat_ms, now_ms);
        }
        d
    }

    /// The TAT kept for `key` (it may have passed), marking the key used; `None` if not kept. For
    /// a caller with a store behind this one (the Durable Object reads its storage on `None`).
    pub fn tat(&mut self, key: &str) -> Option<i64> {
        let (rule, slot) = split_key(key);
        self.rules.iter_mut().find(|(r, _)| &**r == rule)?.1.lru.get(&slot).copied()
    }

    /// Keeps `tat_ms` for `key` at `now_ms`, evicting its rule's least recently used key when the
    /// rule is full.
    pub fn record(&mut self, key: &str, tat_ms: i64, now_ms: i64) {
        let (rule, slot) = split_key(key);
        match self.rule_map(rule).lru.get_mut(&slot) {
            Some(tat) => *tat = tat_ms,
            None => self.insert(rule, slot, tat_ms, now_ms),
        }
    }

    /// Adds a key not in `rule`'s map; at the bound the least recently used one makes room.
    fn insert(&mut self, rule: &str, slot: Slot, tat_ms: i64, now_ms: i64) {
        let capacity = self.capacity;
        let map = self.rule_map(rule);
        let evicted = if map.lru.len() >= capacity.get() { map.lru.pop_lru() } else { None };
        map.lru.put(slot, tat_ms);
        if !map.settled && map.lru.len() >= capacity.get() {
            // Once per rule, as it fills: the table's last growth (see `RuleMap`).
            const TWICE: NonZeroUsize = NonZeroUsize::new(2).unwrap();
            let mut settled = LruCache::new(capacity.saturating_mul(TWICE));
            while let Some((k, v)) = map.lru.pop_lru() {
                settled.put(k, v);
            }
            *map = RuleMap { lru: settled, settled: true };
        }
        if evicted.is_some_and(|(_, tat)| tat > now_ms) {
            self.evicted_live += 1;
        }
    }

    fn rule_map(&mut self, rule: &str) -> &mut RuleMap {
        let i = match self.rules.iter().position(|(r, _)| &**r == rule) {
            Some(i) => i,
            None => {
                self.rules.push((rule.into(), RuleMap { lru: LruCache::unbounded(), settled: false }));
                self.rules.len() - 1
            }
        };
        &mut self.rules[i].1
    }

    /// Keys kept per rule, at most.
    pub fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// Keys kept for `rule` (at most [`capacity`](Self::capacity)).
    pub fn rule_len(&self, rule: &str) -> usize {
        self.rules.iter().find(|(r, _)| &**r == rule).map_or(0, |(_, m)| m.lru.len())
    }

    /// Keys kept over all rules.
    pub fn len(&self) -> usize {
        self.rules.iter().map(|(_, m)| m.lru.len()).sum()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evictions so far of keys whose TAT had not passed: each let that key start over with a
    /// full bucket (at most `burst` requests beyond its quota).
    pub fn evicted_live(&self) -> u64 {
        self.evicted_live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_the_rules_read() {
        let rl = RateLimitConfig {
            rules: serde_json::from_value(serde_json::json!([
                {"name": "c", "key": "client_id", "rate": 1, "period_secs": 1, "burst": 1},
                {"name": "p", "key": "claim:plan", "rate": 1, "period_secs": 1, "burst": 1, "tier_claim": "tier", "tiers": {"gold": {"rate": 2, "period_secs": 1, "burst": 1}}},
                {"name": "s", "key": "sub", "rate": 1, "period_secs": 1, "burst": 1},
            ]))
            .unwrap(),
            ..Default::default()
        };
        assert_eq!(rl.validate().unwrap().claims_read(), ["azp", "client_id", "plan", "tier"]);
        assert!(RateLimitConfig::default().validate().unwrap().claims_read().is_empty());
    }

    #[test]
    fn burst_then_steady_rate() {
        let q = Quota { rate: 10, period_secs: 1, burst: 3 };
        let mut tat = None;
        let mut allowed = 0;
        for _ in 0..10 {
            let d = gcra(tat, 0, &q);
            if d.allowed {
                allowed += 1;
                tat = Some(d.tat_ms);
            } else {
                assert_eq!(d.retry_after_ms, 100, "one emission interval");
            }
        }
        assert_eq!(allowed, 3);
        assert!(!gcra(tat, 99, &q).allowed);
        assert!(gcra(tat, 100, &q).allowed);
    }

    #[test]
    fn remaining_counts_down() {
        let q = Quota { rate: 60, period_secs: 60, burst: 5 };
        let mut tat = None;
        let mut seen = vec![];
        for _ in 0..5 {
            let d = gcra(tat, 1_000, &q);
            seen.push(d.remaining);
            tat = Some(d.tat_ms);
        }
        assert_eq!(seen, vec![4, 3, 2, 1, 0]);
        let h = headers("api", &q, &gcra(tat, 1_000, &q));
        assert_eq!(h[0].1, "\"api\";q=60;w=60");
        assert!(h[1].1.starts_with("\"api\";r=0;t="));
    }

    /// One request an hour, bursts of `burst`: a spent key stays spent through a test.
    fn slow(burst: u32) -> Quota {
        Quota { rate: 1, period_secs: 3600, burst }
    }

    fn ip(rule: &str, i: u32, quota: Quota) -> Bucket {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        Bucket { rule: rule.into(), key: bucket_key(rule, KeyKind::Ip, &addr), quota, binding: None }
    }

    fn cap(n: usize) -> LocalLimiter {
        LocalLimiter::new(NonZeroUsize::new(n).unwrap())
    }

    /// Spends `b`'s whole burst at `now`; true if the next request is then denied.
    fn spend(l: &mut LocalLimiter, b: &Bucket, now: i64) -> bool {
        for _ in 0..b.quota.burst {
            assert!(l.check(b, now).allowed);
        }
        !l.check(b, now).allowed
    }

    #[test]
    fn the_cap_holds_per_rule_after_ten_times_capacity() {
        let mut l = cap(1_000);
        for i in 0..10_000 {
            l.check(&ip("ip_pre_auth", i, slow(5)), i64::from(i));
            assert!(l.rule_len("ip_pre_auth") <= 1_000, "after {} keys: {}", i + 1, l.rule_len("ip_pre_auth"));
        }
        assert_eq!(l.rule_len("ip_pre_auth"), 1_000);
        assert_eq!(l.len(), 1_000);
        // Every key was still spent when evicted (TAT an hour ahead).
        assert_eq!(l.evicted_live(), 9_000);
    }

    #[test]
    fn the_least_recently_used_key_goes_first() {
        let mut l = cap(3);
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| ip("r", i, slow(1)));
        for k in [&a, &b, &c] {
            assert!(spend(&mut l, k, 0));
        }
        // A denied request marks `a` used too: `b` is now the oldest.
        assert!(!l.check(&a, 10).allowed);
        assert!(l.check(&d, 10).allowed);
        assert_eq!(l.evicted_live(), 1);
        assert!(l.check(&b, 20).allowed, "b was evicted: a full bucket again");
        assert!(!l.check(&a, 20).allowed, "a survived");
        assert!(!l.check(&d, 20).allowed, "d survived");
        // Admitting b again evicted c (the oldest then).
        assert!(l.check(&c, 20).allowed, "c was evicted by b's return");
        assert_eq!(l.evicted_live(), 3);
    }

    #[test]
    fn flooding_one_rule_does_not_evict_another() {
        let mut l = cap(10);
        let users: Vec<Bucket> = (0..10)
            .map(|i| Bucket { rule: "per-sub".into(), key: bucket_key("per-sub", KeyKind::Sub, &format!("user-{i}")), quota: slow(2), binding: None })
            .collect();
        for u in &users {
            assert!(spend(&mut l, u, 0));
        }
        for i in 0..1_000 {
            l.check(&ip("ip_pre_auth", i, slow(2)), 1);
        }
        assert_eq!(l.rule_len("per-sub"), 10);
        assert!(users.iter().all(|u| !l.check(u, 2).allowed), "every user still spent");
        assert_eq!(l.evicted_live(), 990, "only the flood's own keys were evicted");
    }

    #[test]
    fn an_expired_entry_is_dropped_without_counting() {
        let q = Quota { rate: 1, period_secs: 1, burst: 1 }; // TAT = admission + 1,000 ms
        let mut l = cap(2);
        let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| ip("r", i, q));
        assert!(l.check(&a, 0).allowed && l.check(&b, 0).allowed);
        // At 1,000 ms a's and b's TATs have passed: evicting them drops no state.
        assert!(l.check(&c, 1_000).allowed && l.check(&d, 1_000).allowed);
        assert_eq!(l.evicted_live(), 0);
        assert_eq!(l.rule_len("r"), 2);
        // c's TAT (2,000) is still ahead at 1,999: that one counts.
        assert!(l.check(&e, 1_999).allowed);
        assert_eq!(l.evicted_live(), 1);
    }

    #[test]
    fn a_hit_on_a_passed_tat_is_a_full_bucket() {
        let q = Quota { rate: 10, period_secs: 1, burst: 4 };
        let mut l = cap(10);
        let k = ip("r", 0, q);
        assert!(spend(&mut l, &k, 0));
        let fresh = gcra(None, 5_000, &q);
        assert_eq!(l.check(&k, 5_000), fresh);
        assert_eq!(fresh.remaining, 3);
    }

    #[test]
    fn an_evicted_key_gets_at_most_its_burst_per_eviction() {
        let burst = 5;
        let mut l = cap(4);
        let k = ip("r", 0, slow(burst));
        let mut allowed = 0;
        for eviction in 0..3 {
            // Everything at one instant: without evictions the key would get `burst` in total.
            allowed += (0..20).filter(|_| l.check(&k, 0).allowed).count();
            assert_eq!(allowed, (eviction + 1) * burst as usize);
            for i in 1..=4 {
                l.check(&ip("r", 100 * eviction as u32 + i, slow(burst)), 0);
            }
        }
        allowed += (0..20).filter(|_| l.check(&k, 0).allowed).count();
        assert_eq!(allowed, 4 * burst as usize, "3 evictions: 3 bursts beyond the quota, no more");
    }

    #[test]
    fn below_the_bound_it_decides_like_an_unbounded_map() {
        // Below the bound the limiter is exact: an unbounded map decides the same.
        let mut l = cap(3);
        let keys = [0, 1, 2].map(|i| ip("r", i, Quota { rate: 3, period_secs: 1, burst: 2 }));
        let mut tats: [Option<i64>; 3] = [None; 3];
        for step in 0..300i64 {
            let i = (step * 7 % 3) as usize;
            let now = step * 37;
            let want = gcra(tats[i], now, &keys[i].quota);
            if want.allowed {
                tats[i] = Some(want.tat_ms);
            }
            assert_eq!(l.check(&keys[i], now), want);
        }
        assert_eq!(l.evicted_live(), 0);
    }

    #[test]
    fn sub_and_owner_of_one_name_keep_apart() {
        let mut l = cap(10);
        let sub = Bucket { rule: "r".into(), key: bucket_key("r", KeyKind::Sub, "acme"), quota: slow(1), binding: None };
        let owner = Bucket { key: bucket_key("r", KeyKind::Owner, "acme"), ..sub.clone() };
        assert!(spend(&mut l, &sub, 0));
        assert!(l.check(&owner, 0).allowed);
        assert_eq!(l.rule_len("r"), 2);
        // A key of another shape still gets a place of its own.
        let odd = Bucket { key: "r:k1".into(), ..sub.clone() };
        assert!(spend(&mut l, &odd, 0));
        assert_eq!(l.rule_len("r"), 3);
    }

    #[test]
    fn a_store_behind_reads_and_records() {
        // The Durable Object's use: `tat` on a miss says "read storage"; `record` keeps the result.
        let mut l = cap(2);
        let [a, b, c] = [0, 1, 2].map(|i| ip("r", i, slow(1)).key);
        assert_eq!(l.tat(&a), None);
        l.record(&a, 500, 0);
        l.record(&b, 600, 0);
        assert_eq!(l.tat(&a), Some(500), "and a is now the most recent");
        l.record(&a, 700, 0);
        assert_eq!(l.rule_len("r"), 2, "an update is not an insert");
        l.record(&c, 800, 0);
        assert_eq!((l.tat(&a), l.tat(&b), l.tat(&c)), (Some(700), None, Some(800)));
        assert_eq!(l.evicted_live(), 1);
    }

    fn limits(v: serde_json::Value) -> Result<RateLimitPolicy, (String, String)> {
        serde_json::from_value::<RateLimitConfig>(v).unwrap().validate()
    }

    #[test]
    fn local_capacity_is_validated() {
        assert_eq!(limits(serde_json::json!({})).unwrap().local_capacity.get(), 100_000);
        assert_eq!(limits(serde_json::json!({"local_capacity": 1})).unwrap().local_capacity.get(), 1);
        assert_eq!(limits(serde_json::json!({"local_capacity": MAX_LOCAL_CAPACITY})).unwrap().local_capacity.get(), MAX_LOCAL_CAPACITY);
        for bad in [0, MAX_LOCAL_CAPACITY + 1] {
            let (field, message) = limits(serde_json::json!({"local_capacity": bad})).unwrap_err();
            assert_eq!(field, "rate_limits.local_capacity");
            assert!(message.contains("between 1 and 1000000"), "{message}");
        }
    }
}
