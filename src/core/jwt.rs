//! The JWT step of the pipeline, on its own: the verified-token cache, parse, issuer, keys (inline,
//! fetched and cached by [`super::jwks_cache`]'s rules, snapshotted to KV, discovered by
//! [`super::discovery`]), signature (through [`GateIo::verify_signature`]) and claims. The gate
//! runs it for every JWT ([`super::pipeline::Gate::verify_jwt`]); the JS package runs it alone,
//! from the token-checks part of a configuration ([`JwtPolicy`]), so it decides as the gate does
//! without carrying the rest of the pipeline.
//!
//! [`JwtRules`] is what the step reads of a policy (the gate's whole [`super::config::Policy`]
//! or a [`JwtPolicy`] convert into it); [`JwtState`] is what it keeps between tokens.

use super::discovery::Discovered;
use super::error::AuthError;
use super::io::{Deferred, GateIo, Level};
use super::jwk::{Jwk, KeySet};
use super::jwks_cache::{FetchOutcome, FetchPlan, IssuerKeyCache, JwksCacheConfig, JwksSnapshot, Trigger, MAX_JWKS_BYTES};
use super::log::{fingerprint, url_for_display, DecisionLog};
use super::token::UnverifiedToken;
use super::token_cache::{TokenCache, TokenCacheConfig, TokenHash};
use super::verify::{IssuerPolicy, PendingToken, TokenRules, VerifiedToken};
use serde_json::json;
use std::cell::RefCell;
use std::sync::Arc;

/// What the JWT step reads of a policy: the token rules verification reads, and the token size
/// limit and JWKS cache rules around them.
#[derive(Debug, Clone, Copy)]
pub struct JwtRules<'p> {
    /// The issuers and claim rules ([`PendingToken`] reads them).
    pub tokens: TokenRules<'p>,
    /// Largest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// The JWKS cache's rules (and the discovery cache's).
    pub jwks_cache: &'p JwksCacheConfig,
}

impl<'p> From<JwtRules<'p>> for TokenRules<'p> {
    fn from(r: JwtRules<'p>) -> TokenRules<'p> {
        r.tokens
    }
}

/// The token-checks part of a configuration, validated and owned: what the JS package's
/// verifier keeps (the gate keeps the whole policy). Built by
/// [`super::config::EdgewardConfig::tokens_only`]'s validation.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    /// The accepted issuers.
    pub issuers: Vec<IssuerPolicy>,
    /// Clock skew tolerance in seconds.
    pub leeway_secs: i64,
    /// Longest accepted lifetime, if any.
    pub max_lifetime_secs: Option<i64>,
    /// Reject tokens without `exp`.
    pub require_exp: bool,
    /// The claims a verified token keeps.
    pub token_claims: Vec<String>,
    /// Largest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// JWKS cache tuning.
    pub jwks_cache: JwksCacheConfig,
    /// The verified-token cache.
    pub token_cache: TokenCacheConfig,
    /// Non-fatal findings (an issuer's insecure key URL).
    pub warnings: Vec<String>,
}

impl<'p> From<&'p JwtPolicy> for JwtRules<'p> {
    fn from(p: &'p JwtPolicy) -> JwtRules<'p> {
        let tokens = TokenRules {
            issuers: &p.issuers,
            leeway_secs: p.leeway_secs,
            max_lifetime_secs: p.max_lifetime_secs,
            require_exp: p.require_exp,
            claims: &p.token_claims,
        };
        JwtRules { tokens, max_token_bytes: p.max_token_bytes, jwks_cache: &p.jwks_cache }
    }
}

/// One issuer's fetched-key cache.
#[derive(Debug)]
pub(crate) struct JwksSlot {
    pub(crate) cache: IssuerKeyCache,
    /// Whether the KV snapshot was looked at (once per isolate, on first use).
    pub(crate) snapshot_checked: bool,
}

/// What the JWT step keeps between tokens (per isolate in the Worker). Each part sits in its own
/// `RefCell`, borrowed only inside a synchronous call, never across an `.await`.
#[derive(Debug)]
pub struct JwtState {
    pub(crate) tokens: RefCell<TokenCache>,
    /// Index = issuer index; `None` for issuers without a `jwks_uri` (until one is discovered).
    pub(crate) jwks: RefCell<Vec<Option<JwksSlot>>>,
    /// Per issuer: its discovered metadata (issuers with `discovery` only).
    pub(crate) discovery: RefCell<Vec<Discovered>>,
}

/// What an unknown-`kid` refetch found.
enum Refetch {
    Fetched(Arc<KeySet>),
    IssuerDown,
    CoolingDown,
}

/// Every key the issuer may verify with: inline keys first, then fetched ones.
pub fn issuer_keys<'k>(issuers: &'k [IssuerPolicy], fetched: Option<&'k KeySet>, issuer: usize) -> impl Iterator<Item = &'k Jwk> + Clone {
    issuers[issuer].inline_keys.keys.iter().chain(fetched.into_iter().flat_map(|s| s.keys.iter()))
}

/// Who a verified token names, for the record (and the usage counters): its issuer (when it
/// has one), `sub`, and the client (`azp`, else `client_id`).
pub(crate) fn identify(log: &mut DecisionLog<'_>, v: &VerifiedToken) {
    if let Some(iss) = v.issuer() {
        log.iss = Some(iss.to_owned());
    }
    log.sub = v.subject().map(str::to_owned);
    log.client_id = v.claim_text("azp").or_else(|| v.claim_text("client_id")).map(|c| c.chars().take(256).collect());
}

/// Whole seconds of a time in milliseconds.
pub(crate) fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// The KV key of issuer `issuer`'s discovered metadata.
pub fn discovery_snapshot_key(issuer: &str) -> String {
    format!("discovery:v1:{}", &fingerprint(issuer.as_bytes())["sha256:".len()..])
}

/// The KV key of the JWKS snapshot of `uri`.
pub fn jwks_snapshot_key(uri: &str) -> String {
    format!("jwks:v1:{}", fingerprint(uri.as_bytes()).trim_start_matches("sha256:"))
}

impl JwtState {
    /// Empty state for `issuers`.
    pub fn new(issuers: &[IssuerPolicy], jwks_cache: &JwksCacheConfig, token_cache: &TokenCacheConfig) -> JwtState {
        let jwks = issuers
            .iter()
            .map(|i| i.jwks_uri.as_ref().map(|u| JwksSlot { cache: IssuerKeyCache::new(u.clone(), jwks_cache.clone()), snapshot_checked: false }))
            .collect();
        JwtState {
            tokens: RefCell::new(TokenCache::new(token_cache)),
            jwks: RefCell::new(jwks),
            discovery: RefCell::new(vec![Discovered::default(); issuers.len()]),
        }
    }

    /// Points issuer `i`'s key cache at `uri` (a discovered `jwks_uri`): a new, empty cache when
    /// it had none or another URL.
    pub(crate) fn set_jwks_uri(&self, i: usize, uri: &str, cfg: &JwksCacheConfig) {
        let mut slots = self.jwks.borrow_mut();
        if let Some(slot) = slots.get_mut(i) {
            if slot.as_ref().is_none_or(|s| s.cache.jwks_uri() != uri) {
                *slot = Some(JwksSlot { cache: IssuerKeyCache::new(uri.to_string(), cfg.clone()), snapshot_checked: false });
            }
        }
    }

    /// Runs `f` on issuer `i`'s JWKS slot, if it has one.
    pub(crate) fn with_jwks<T>(&self, i: usize, f: impl FnOnce(&mut JwksSlot) -> T) -> Option<T> {
        self.jwks.borrow_mut().get_mut(i).and_then(Option::as_mut).map(f)
    }

    /// Installs issuer `i`'s keys as if just fetched ([`IssuerKeyCache::install`]); false if the
    /// issuer has no `jwks_uri`.
    pub fn install_jwks(&self, i: usize, keys: KeySet, now: i64) -> bool {
        self.with_jwks(i, |s| {
            s.cache.install(keys, now);
            s.snapshot_checked = true;
        })
        .is_some()
    }

    /// Runs the JWT step's work left for after a response ([`GateIo::defer`]): a background JWKS
    /// refresh, a JWKS or discovery snapshot to persist. Other work is not the JWT step's.
    pub async fn run_deferred<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, task: Deferred) {
        match task {
            Deferred::RefreshJwks { issuer } => {
                let Some(uri) = self.jwks_uri(rules, issuer, secs(io.now_ms())) else { return };
                let uri = uri.as_str();
                let outcome = io.fetch_jwks(uri, rules.jwks_cache.fetch_timeout_ms).await;
                if let Some(snap) = self.apply(rules, io, issuer, uri, outcome) {
                    if io.has_kv() {
                        self.persist(io, uri, &snap).await;
                    }
                }
            }
            Deferred::PersistJwks { issuer, snapshot } => {
                if let Some(uri) = self.jwks_uri(rules, issuer, secs(io.now_ms())) {
                    self.persist(io, &uri, &snapshot).await;
                }
            }
            Deferred::PersistDiscovery { issuer } => {
                let (Some(iss), Some(d)) = (rules.tokens.issuers.get(issuer).and_then(|i| i.issuer.as_deref()), self.discovery.borrow().get(issuer).cloned())
                else {
                    return;
                };
                let Ok(text) = serde_json::to_string(&d) else { return };
                if let Err(e) = io.kv_write(&discovery_snapshot_key(iss), text.as_bytes()).await {
                    io.log(Level::Warn, &json!({"event": "discovery_snapshot_write_failed", "error": e.to_string()}));
                }
            }
            Deferred::RefreshRevocations | Deferred::RefreshBlocks | Deferred::FlushUsage => {}
        }
    }

    /// Verifies a JWT (through the verified-token cache): what every JWT goes through, on the
    /// request path, for admin JWTs, in the CLI, the JS package and the bench. Revocations are
    /// the caller's to check. `hash` is [`super::token_cache::token_hash`] of `token`.
    ///
    /// Keys: the issuer's inline keys, and for an issuer with a `jwks_uri` its fetched keys (from
    /// the cache, the KV snapshot on an isolate's first use, or a fetch the cache plans). No
    /// usable key, or an unknown `kid` / no fitting key while the issuer's keys cannot be had
    /// → `jwks_unavailable`; an unknown `kid` refetches once (cooldown permitting).
    pub async fn verify<I: GateIo>(
        &self,
        rules: JwtRules<'_>,
        io: &I,
        token: &str,
        hash: &TokenHash,
        now: i64,
        log: &mut DecisionLog<'_>,
    ) -> Result<VerifiedToken, AuthError> {
        let policy = rules;
        let cached = self.tokens.borrow_mut().get(hash, now);
        if let Some(verified) = cached {
            log.token_cache = Some("hit");
            identify(log, &verified);
            log.kid = verified.kid().map(|k| k.chars().take(64).collect());
            log.alg = verified.alg().map(|a| a.name());
            let _ = log.step(io.tracing(), "cache", Ok(()), |_| "verified-token cache hit".into());
            return Ok(verified);
        }
        log.token_cache = Some("miss");
        let unverified = log.step(io.tracing(), "parse", UnverifiedToken::parse(token, policy.max_token_bytes), |t| {
            let h = t.header();
            format!(
                "3 canonical segments, strict JSON; alg {}, kid {}",
                h.alg.name(),
                h.kid.as_deref().map_or("none".into(), |k| format!("{:?}", super::token::echo(k)))
            )
        })?;
        let pending = log.step(io.tracing(), "issuer", PendingToken::new(unverified, policy), |p| format!("iss accepted; alg {} allowed", p.alg().name()))?;
        log.alg = Some(pending.alg().name());
        log.kid = pending.kid().map(|k| k.chars().take(64).collect());
        let i = pending.issuer_index();
        let has_uri = policy.tokens.issuers[i].jwks_uri.is_some() || policy.tokens.issuers[i].discovery;
        if policy.tokens.issuers[i].discovery {
            self.discover(rules, io, i, now, &mut log.jwks_fetches).await;
        }
        let fetched = if has_uri { self.keys_for_request(rules, io, i, now, &mut log.jwks_fetches).await } else { None };
        // The key is borrowed from the policy's inline keys or a shared fetched set, never copied.
        let refetched;
        let key = match pending.select_key(issuer_keys(policy.tokens.issuers, fetched.as_deref(), i)) {
            Ok(k) => Ok(k),
            // With no fetched keys to look in, "unknown" or "no fitting key" would be a guess.
            Err(AuthError::UnknownKid | AuthError::NoMatchingKey(_)) if has_uri && fetched.is_none() => Err(AuthError::JwksUnavailable),
            Err(AuthError::UnknownKid) if has_uri => match self.refetch_for_unknown_kid(rules, io, i, now, &mut log.jwks_fetches).await {
                // Second and last look: still unknown is the client's problem.
                Refetch::Fetched(k) => {
                    refetched = k;
                    pending.select_key(issuer_keys(policy.tokens.issuers, Some(&refetched), i))
                }
                Refetch::IssuerDown => Err(AuthError::JwksUnavailable),
                Refetch::CoolingDown => Err(AuthError::UnknownKid),
            },
            Err(e) => Err(e),
        };
        let key = log.step(io.tracing(), "key", key, |k| {
            format!("key {} ({})", k.kid.as_deref().map_or("without kid".into(), |s| format!("{s:?}")), k.material.describe())
        })?;
        let job = pending.job(key)?;
        let proof = io.verify_signature(&job).await;
        let alg = pending.alg().name();
        let proof = log.step(io.tracing(), "signature", proof, |_| format!("{alg} signature verifies"))?;
        let verified = log.step(io.tracing(), "claims", pending.finish(proof, key, policy, now), |v| {
            let exp = v.expires_at().map_or("no exp".into(), |e| format!("exp in {} s", e - now));
            format!("exp, nbf, iat, lifetime, iss and aud pass at now={now}; {exp}")
        })?;
        self.tokens.borrow_mut().insert(*hash, &verified, &key.fingerprint, now);
        identify(log, &verified);
        Ok(verified)
    }

    /// The issuer's usable fetched keys for this request, fetching or restoring as the cache plans.
    async fn keys_for_request<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, i: usize, now: i64, fetches: &mut u32) -> Option<Arc<KeySet>> {
        let uri = self.jwks_uri(rules, i, now)?;
        let uri = uri.as_str();
        let first_use = self.with_jwks(i, |s| !std::mem::replace(&mut s.snapshot_checked, true) && s.cache.keys(now).is_none()).unwrap_or(false);
        if first_use && io.has_kv() {
            self.restore_snapshot(io, i, uri, now).await;
        }
        match self.with_jwks(i, |s| s.cache.plan(now, Trigger::Request))? {
            FetchPlan::Now => {
                *fetches += 1;
                self.fetch_and_apply(rules, io, i, uri, true).await;
            }
            FetchPlan::Background => {
                self.with_jwks(i, |s| s.cache.begin(now));
                io.defer(Deferred::RefreshJwks { issuer: i });
            }
            FetchPlan::None => {}
        }
        let now = secs(io.now_ms());
        self.with_jwks(i, |s| s.cache.shared_keys(now).cloned()).flatten()
    }

    /// Called when the token's `kid` is not among the keys: refetch if the cooldown allows.
    async fn refetch_for_unknown_kid<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, i: usize, now: i64, fetches: &mut u32) -> Refetch {
        let Some(uri) = self.jwks_uri(rules, i, now) else { return Refetch::IssuerDown };
        let uri = uri.as_str();
        match self.with_jwks(i, |s| s.cache.plan(now, Trigger::UnknownKid)) {
            Some(FetchPlan::Now) => {
                *fetches += 1;
                if self.fetch_and_apply(rules, io, i, uri, true).await {
                    let now = secs(io.now_ms());
                    match self.with_jwks(i, |s| s.cache.shared_keys(now).cloned()).flatten() {
                        Some(k) => Refetch::Fetched(k),
                        None => Refetch::IssuerDown,
                    }
                } else {
                    Refetch::IssuerDown
                }
            }
            _ if self.with_jwks(i, |s| s.cache.last_attempt_failed()).unwrap_or(true) => Refetch::IssuerDown,
            _ => Refetch::CoolingDown,
        }
    }

    /// Fetches now and applies the outcome; a good set is persisted (deferred, or right away
    /// when `defer` is false: already in the background). True if it was good.
    async fn fetch_and_apply<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, i: usize, uri: &str, defer: bool) -> bool {
        self.with_jwks(i, |s| s.cache.begin(secs(io.now_ms())));
        let outcome = io.fetch_jwks(uri, rules.jwks_cache.fetch_timeout_ms).await;
        match self.apply(rules, io, i, uri, outcome) {
            Some(snapshot) if io.has_kv() => {
                if defer {
                    io.defer(Deferred::PersistJwks { issuer: i, snapshot });
                } else {
                    self.persist(io, uri, &snapshot).await;
                }
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Applies an outcome to the cache and logs it; returns the snapshot to persist if it was
    /// good. New keys also drop cached tokens verified by keys that are no longer published.
    fn apply<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, i: usize, uri: &str, outcome: FetchOutcome) -> Option<JwksSnapshot> {
        let now = secs(io.now_ms());
        let (report, snap, live) = self.with_jwks(i, |s| {
            let r = s.cache.complete(now, outcome);
            let snap = if r.ok { s.cache.snapshot() } else { None };
            let live: Vec<String> = s.cache.keys(now).map(|k| k.keys.iter().map(|k| k.fingerprint.clone()).collect()).unwrap_or_default();
            (r, snap, live)
        })?;
        let mut purged = 0;
        if report.ok {
            let fps: Vec<&str> =
                live.iter().map(String::as_str).chain(rules.tokens.issuers[i].inline_keys.keys.iter().map(|k| k.fingerprint.as_str())).collect();
            purged = self.tokens.borrow_mut().retain_keys(i, &fps);
        }
        let level = if report.ok { Level::Info } else { Level::Warn };
        io.log(level, &json!({"event": "jwks_fetch", "jwks_uri": url_for_display(uri), "report": report, "purged_tokens": purged}));
        snap
    }

    /// Issuer `i`'s JWKS URL: configured, or discovered and still usable.
    fn jwks_uri(&self, rules: JwtRules<'_>, i: usize, now: i64) -> Option<String> {
        let iss = rules.tokens.issuers.get(i)?;
        if let Some(u) = &iss.jwks_uri {
            return Some(u.clone());
        }
        let d = self.discovery.borrow();
        d.get(i)?.usable(now, rules.jwks_cache).filter(|_| iss.discovery).map(|m| m.jwks_uri.clone())
    }

    /// For an issuer with `discovery`: its metadata made fresh — from the KV snapshot on the
    /// isolate's first use, else fetched (at most once per cooldown) — or the last good one kept
    /// while refetches fail. A fetched document is snapshotted to KV (deferred).
    pub(crate) async fn discover<I: GateIo>(&self, rules: JwtRules<'_>, io: &I, i: usize, now: i64, fetches: &mut u32) {
        let iss = &rules.tokens.issuers[i];
        let Some(issuer) = iss.issuer.as_deref().filter(|_| iss.discovery) else { return };
        let cfg = rules.jwks_cache;
        let want_introspection = iss.introspection.as_ref().is_some_and(|c| c.endpoint.is_none());
        let (fresh, first, may) = {
            let all = self.discovery.borrow();
            let Some(d) = all.get(i) else { return };
            (d.fresh(now), d.metadata.is_none() && d.attempted_at.is_none(), d.may_fetch(now, cfg))
        };
        if fresh {
            return;
        }
        if first && io.has_kv() {
            if let Ok(Some(b)) = io.kv_read(&discovery_snapshot_key(issuer), 64 * 1024).await {
                // Held to the rules a fetched document meets (a snapshot another configuration
                // wrote, say with allow_insecure_jwks_uri, is not taken on trust), its TTL clamped.
                let restored = std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| super::json::from_text::<super::discovery::Discovered>(t).ok())
                    .filter(|d| d.metadata.as_ref().is_some_and(|m| super::discovery::still_valid(m, iss.allow_insecure)))
                    .map(|mut d| {
                        d.ttl_secs = d.ttl_secs.clamp(0, i64::from(cfg.max_ttl_secs));
                        d
                    });
                if let Some(m) = restored.as_ref().and_then(|d| d.metadata.as_ref()) {
                    self.set_jwks_uri(i, &m.jwks_uri, cfg);
                }
                if let Some(mut d) = restored {
                    // A snapshot without the introspection endpoint this issuer needs (an earlier
                    // gate's) serves its keys but is stale from now: refetched.
                    if want_introspection && d.metadata.as_ref().is_some_and(|m| m.introspection_endpoint.is_none()) {
                        d.ttl_secs = d.ttl_secs.min(now.saturating_sub(d.fetched_at));
                    }
                    let fresh = d.fresh(now);
                    self.discovery.borrow_mut()[i] = d;
                    io.log(Level::Info, &json!({"event": "discovery_snapshot_restore", "issuer": issuer, "fresh": fresh}));
                    if fresh {
                        return;
                    }
                }
            }
        }
        if !may {
            return;
        }
        self.discovery.borrow_mut()[i].attempted_at = Some(now);
        *fetches += 1;
        let mut result = Err(String::new());
        for url in super::discovery::metadata_urls(issuer) {
            result = match io.fetch_jwks(&url, cfg.fetch_timeout_ms).await {
                FetchOutcome::Response { status: 200, cache_control, body } => {
                    super::discovery::parse_metadata(&body, issuer, iss.allow_insecure, want_introspection)
                        .map(|m| (m, super::jwks_cache::ttl_from(cfg, cache_control.as_deref())))
                        .map_err(|e| format!("{url}: {e}"))
                }
                FetchOutcome::Response { status, .. } => Err(format!("{url}: HTTP {status}")),
                FetchOutcome::Failed(e) => Err(format!("{url}: {e}")),
            };
            // Only a missing document sends the gate to the other well-known name.
            if !matches!(&result, Err(e) if e.ends_with("HTTP 404")) {
                break;
            }
        }
        match result {
            Ok((metadata, ttl)) => {
                self.set_jwks_uri(i, &metadata.jwks_uri, cfg);
                io.log(
                    Level::Info,
                    &json!({"event": "discovery", "issuer": issuer, "jwks_uri": metadata.jwks_uri, "introspection_endpoint": metadata.introspection_endpoint, "ttl_secs": ttl}),
                );
                {
                    let mut all = self.discovery.borrow_mut();
                    all[i] = super::discovery::Discovered { metadata: Some(metadata), fetched_at: now, ttl_secs: ttl, attempted_at: Some(now) };
                }
                if io.has_kv() {
                    io.defer(Deferred::PersistDiscovery { issuer: i });
                }
            }
            Err(error) => io.log(Level::Warn, &json!({"event": "discovery_failed", "issuer": issuer, "error": error})),
        }
    }

    async fn restore_snapshot<I: GateIo>(&self, io: &I, i: usize, uri: &str, now: i64) {
        // A snapshot holds one JWKS document and its metadata: capped like a fetched document.
        let got = match io.kv_read(&jwks_snapshot_key(uri), 2 * MAX_JWKS_BYTES).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                io.log(Level::Warn, &json!({"event": "jwks_snapshot_read_failed", "error": e.to_string()}));
                return;
            }
        };
        let taken = std::str::from_utf8(&got)
            .ok()
            .and_then(|t| super::json::from_text::<JwksSnapshot>(t).ok())
            .and_then(|snap| self.with_jwks(i, |s| s.cache.restore(&snap, now)));
        io.log(Level::Info, &json!({"event": "jwks_snapshot_restore", "jwks_uri": url_for_display(uri), "taken": taken.unwrap_or(false)}));
    }

    async fn persist<I: GateIo>(&self, io: &I, uri: &str, snap: &JwksSnapshot) {
        let Ok(text) = serde_json::to_string(snap) else { return };
        if let Err(e) = io.kv_write(&jwks_snapshot_key(uri), text.as_bytes()).await {
            io.log(Level::Warn, &json!({"event": "jwks_snapshot_write_failed", "error": e.to_string()}));
        }
    }
}

/// The JWT step on its own: a token-checks policy and its state. What the JS package's verifier
/// holds (the gate holds the same state in its isolate state, next to everything else).
#[derive(Debug)]
pub struct JwtVerifier {
    policy: JwtPolicy,
    state: JwtState,
}

impl JwtVerifier {
    /// A verifier with empty caches.
    pub fn new(policy: JwtPolicy) -> JwtVerifier {
        let state = JwtState::new(&policy.issuers, &policy.jwks_cache, &policy.token_cache);
        JwtVerifier { policy, state }
    }

    /// Its policy.
    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// Verifies a JWT: the JWT step ([`JwtState::verify`]) with this policy and state.
    pub async fn verify<I: GateIo>(&self, io: &I, token: &str, hash: &TokenHash, now: i64, log: &mut DecisionLog<'_>) -> Result<VerifiedToken, AuthError> {
        self.state.verify((&self.policy).into(), io, token, hash, now, log).await
    }

    /// Runs the JWT step's work left for after a call ([`JwtState::run_deferred`]).
    pub async fn run_deferred<I: GateIo>(&self, io: &I, task: Deferred) {
        self.state.run_deferred((&self.policy).into(), io, task).await
    }
}
