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
use super::route::RouteTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

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

fn bucket_key(rule: &str, kind: &str, value: &str) -> String {
    format!("{rule}:{kind}:{}", super::log::fingerprint(value.as_bytes()).trim_start_matches("sha256:"))
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
        }
    }
}

impl RateLimitPolicy {
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
        Some(Bucket { rule: "ip_pre_auth".into(), key: bucket_key("ip_pre_auth", "ip", &ip), quota: q, binding: None })
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
                LimitKey::Subject if who.api_key_id().is_some() => ("owner", who.claim_text("sub")),
                LimitKey::Subject => ("sub", who.claim_text("sub")),
                LimitKey::Client => ("client", who.claim_text("azp").or_else(|| who.claim_text("client_id"))),
                LimitKey::Ip => ("ip", ip.map(|a| super::canonical::ip_bucket_text(a, self.ipv6_prefix_len))),
                LimitKey::Claim(c) => ("claim", who.claim_text(c)),
                LimitKey::ApiKey => ("api_key", who.api_key_id().map(str::to_owned)),
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

/// An in-memory store of TATs for `local` mode (and the Durable Object), bounded in size.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    tats: std::collections::HashMap<String, i64>,
}

/// Most keys a local limiter keeps before it forgets idle ones.
pub const LOCAL_MAX_KEYS: usize = 100_000;

impl LocalLimiter {
    /// Applies one request to `bucket` at `now_ms`.
    pub fn check(&mut self, bucket: &Bucket, now_ms: i64) -> Decision {
        let d = gcra(self.tats.get(&bucket.key).copied(), now_ms, &bucket.quota);
        if d.allowed {
            if self.tats.len() >= LOCAL_MAX_KEYS && !self.tats.contains_key(&bucket.key) {
                // Keys whose TAT has passed hold no state worth keeping.
                self.tats.retain(|_, tat| *tat > now_ms);
            }
            self.tats.insert(bucket.key.clone(), d.tat_ms);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
