//! Alerts: the `alerts` section (rules and webhooks), the rule engine, the alert a rule fires,
//! and the webhook's body and signature. Pure: the `UsageStore` Durable Object feeds the engine
//! each usage row it stores ([`super::usage::UsageRow`]) with its clock, keeps each subject's
//! [`SubjectState`] in its storage, and queues the deliveries.
//!
//! ## Rules (`alerts.rules[]`, each `{"rule": NAME, ...}`)
//! - `auth_failures`: at least `threshold` refused credentials within `window_secs` from one IP,
//!   against one key id, or for one `sub` (`subjects`, default all three).
//! - `usage_spike`: a key's or sub's requests within `window_secs` at least `min_requests` and
//!   above `factor` × what its own rate over the `baseline_secs` before the window would give.
//!   A subject needs one window of history before it has a baseline (until then: no alert).
//! - `new_country`: a key or sub seen from a country it was not seen from in the last `days`
//!   (never for its first country).
//! - `revoked_use`: a revoked token or key presented at least `threshold` times within
//!   `window_secs` (for the key id or the sub).
//! - `rate_limited`: at least `threshold` `429 rate_limited` for one key within `window_secs`.
//!
//! Each fires at most once per (rule, subject) per `cooldown_secs`. A rule may carry an
//! `action`: `{"block_ip_secs": N}` (an `ip` subject only) or `{"suspend_key_secs": N}` (a
//! `key_id` subject only), emitted with the alert for the control Worker to carry out.
//!
//! ## Bounds
//! Per subject and rule, at most [`MAX_EVENTS`] counted moments (older ones, and ones past the
//! rule's horizon, are dropped; when full, a new count joins the last one) and
//! [`MAX_SAMPLES`] request ids; per subject at most [`MAX_COUNTRIES`] countries (the least
//! recently seen goes). The store keeps one state per subject and deletes it once unchanged for
//! longer than every rule's horizon.
//!
//! ## Webhooks
//! Each alert is POSTed to every `alerts.webhooks[]` entry: the alert as JSON (`format: "json"`)
//! or a Slack message (`"slack"`: `{"text"}`), with `Edgeward-Signature: t=UNIX,v1=HEX`, the
//! HMAC-SHA-256 under the Worker secret `secret` names of `t` + `.` + the body ([`signature`]).
//! An alert never holds a token, key or secret: subjects are key ids, subjects' `sub`, client
//! ids and client addresses as `logging.client_ip` renders them.

use super::audit::{AuditRecord, Detail, Outcome as AuditOutcome};
use super::usage::{SubjectKind, UsageRow};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

/// Most counted moments kept per subject and rule.
pub const MAX_EVENTS: usize = 128;
/// Most request ids an alert carries.
pub const MAX_SAMPLES: usize = 5;
/// Most countries remembered per subject.
pub const MAX_COUNTRIES: usize = 32;
/// Most rules.
pub const MAX_RULES: usize = 32;
/// Most webhooks.
pub const MAX_WEBHOOKS: usize = 8;

/// What a rule does when it fires, besides alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Refuse the alert's IP for this many seconds (`403 ip_blocked`).
    BlockIpSecs(u32),
    /// Revoke the alert's API key id for this many seconds.
    SuspendKeySecs(u32),
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `auth_failures`, `usage_spike`, `new_country`, `revoked_use` or `rate_limited`.
    pub rule: String,
    /// Which subjects it watches (defaults per rule: see the module docs).
    #[serde(default)]
    pub subjects: Option<Vec<SubjectKind>>,
    /// Count threshold (`auth_failures`, `revoked_use`, `rate_limited`).
    #[serde(default)]
    pub threshold: Option<u64>,
    /// The window counted (seconds; default 60, `revoked_use` 3600).
    #[serde(default)]
    pub window_secs: Option<u32>,
    /// `usage_spike`: how many times the baseline (default 5).
    #[serde(default)]
    pub factor: Option<f64>,
    /// `usage_spike`: the fewest requests in the window that can be a spike (default 100).
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// `usage_spike`: the baseline's span before the window (seconds, default 3600).
    #[serde(default)]
    pub baseline_secs: Option<u32>,
    /// `new_country`: how long a country stays known (days, default 30).
    #[serde(default)]
    pub days: Option<u32>,
    /// No second alert for the same (rule, subject) for this long (seconds, default 600).
    #[serde(default)]
    pub cooldown_secs: Option<u32>,
    /// An automatic response.
    #[serde(default)]
    pub action: Option<Action>,
}

/// A webhook's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The alert as JSON.
    #[default]
    Json,
    /// `{"text"}` for a Slack incoming webhook.
    Slack,
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where to POST (https; http only to loopback, for tests).
    pub url: String,
    /// The name of the Worker secret that keys the signature.
    pub secret: String,
    /// The body's format.
    #[serde(default)]
    pub format: Format,
}

/// The `alerts` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The rules.
    pub rules: Vec<RuleConfig>,
    /// Where alerts go.
    pub webhooks: Vec<Webhook>,
}

/// What a validated rule checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Refused credentials.
    AuthFailures {
        /// At least this many.
        threshold: u64,
    },
    /// Requests above the subject's baseline.
    UsageSpike {
        /// Times the baseline.
        factor: f64,
        /// Fewest requests.
        min_requests: u64,
        /// Baseline span (seconds).
        baseline_secs: i64,
    },
    /// A country not seen in `days`.
    NewCountry {
        /// Days a country stays known.
        days: i64,
    },
    /// Revoked credentials presented.
    RevokedUse {
        /// At least this many.
        threshold: u64,
    },
    /// `429`s.
    RateLimited {
        /// At least this many.
        threshold: u64,
    },
}

impl Check {
    /// The rule's name (the alert's `rule`).
    pub fn name(&self) -> &'static str {
        match self {
            Check::AuthFailures { .. } => "auth_failures",
            Check::UsageSpike { .. } => "usage_spike",
            Check::NewCountry { .. } => "new_country",
            Check::RevokedUse { .. } => "revoked_use",
            Check::RateLimited { .. } => "rate_limited",
        }
    }

    /// What a row adds to this rule's count.
    fn count(&self, row: &UsageRow) -> u64 {
        match self {
            Check::AuthFailures { .. } => row.auth_failures,
            Check::UsageSpike { .. } => row.accepted + row.rejected.values().sum::<u64>(),
            Check::NewCountry { .. } => 0,
            Check::RevokedUse { .. } => row.revoked,
            Check::RateLimited { .. } => row.rejected.get("rate_limited").copied().unwrap_or(0),
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What it checks.
    pub check: Check,
    /// The subjects it watches.
    pub subjects: Vec<SubjectKind>,
    /// The window (seconds).
    pub window_secs: i64,
    /// Cooldown per subject (seconds).
    pub cooldown_secs: i64,
    /// The automatic response.
    pub action: Option<Action>,
}

impl Rule {
    /// How far back its state matters (seconds).
    pub fn horizon_secs(&self) -> i64 {
        match self.check {
            Check::UsageSpike { baseline_secs, .. } => self.window_secs + baseline_secs,
            Check::NewCountry { days } => days * 86_400,
            _ => self.window_secs,
        }
        .max(self.cooldown_secs)
    }
}

/// The validated section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertsPolicy {
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// The webhooks.
    pub webhooks: Vec<Webhook>,
}

impl AlertsConfig {
    /// Validates the section. The error is (field, message).
    pub fn validate(self) -> Result<AlertsPolicy, (String, String)> {
        if self.rules.len() > MAX_RULES || self.webhooks.len() > MAX_WEBHOOKS {
            return Err(("alerts".into(), format!("at most {MAX_RULES} rules and {MAX_WEBHOOKS} webhooks")));
        }
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let f = |x: &str| format!("alerts.rules[{i}].{x}");
            let threshold = |d: u64| r.threshold.unwrap_or(d);
            let check = match r.rule.as_str() {
                "auth_failures" => Check::AuthFailures { threshold: threshold(20) },
                "usage_spike" => Check::UsageSpike {
                    factor: r.factor.unwrap_or(5.0),
                    min_requests: r.min_requests.unwrap_or(100),
                    baseline_secs: i64::from(r.baseline_secs.unwrap_or(3_600)),
                },
                "new_country" => Check::NewCountry { days: i64::from(r.days.unwrap_or(30)) },
                "revoked_use" => Check::RevokedUse { threshold: threshold(5) },
                "rate_limited" => Check::RateLimited { threshold: threshold(50) },
                _ => return Err((f("rule"), "auth_failures, usage_spike, new_country, revoked_use or rate_limited".into())),
            };
            let allowed: &[SubjectKind] = match check {
                Check::AuthFailures { .. } => &[SubjectKind::Ip, SubjectKind::KeyId, SubjectKind::Sub],
                Check::RateLimited { .. } => &[SubjectKind::KeyId, SubjectKind::Sub],
                _ => &[SubjectKind::KeyId, SubjectKind::Sub],
            };
            let subjects = match r.subjects {
                None if matches!(check, Check::RateLimited { .. }) => vec![SubjectKind::KeyId],
                None => allowed.to_vec(),
                Some(s) if !s.is_empty() && s.iter().all(|k| allowed.contains(k)) => s,
                Some(_) => return Err((f("subjects"), format!("some of {}", allowed.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")))),
            };
            match check {
                Check::AuthFailures { threshold } | Check::RevokedUse { threshold } | Check::RateLimited { threshold } if threshold == 0 => {
                    return Err((f("threshold"), "at least 1".into()))
                }
                Check::UsageSpike { factor, baseline_secs, .. } if !(factor > 1.0 && factor <= 1e6) || baseline_secs <= 0 => {
                    return Err((f("factor"), "factor above 1, baseline_secs positive".into()))
                }
                Check::NewCountry { days } if !(1..=3650).contains(&days) => return Err((f("days"), "1 to 3650".into())),
                _ => {}
            }
            let default_window = if matches!(check, Check::RevokedUse { .. }) { 3_600 } else { 60 };
            let window_secs = i64::from(r.window_secs.unwrap_or(default_window));
            if !(1..=86_400).contains(&window_secs) {
                return Err((f("window_secs"), "1 to 86400".into()));
            }
            let cooldown_secs = i64::from(r.cooldown_secs.unwrap_or(600));
            if cooldown_secs > 30 * 86_400 {
                return Err((f("cooldown_secs"), "at most 2592000".into()));
            }
            match r.action {
                Some(Action::BlockIpSecs(n)) if n == 0 || i64::from(n) > super::ipblock::MAX_BLOCK_SECS || subjects != [SubjectKind::Ip] => {
                    return Err((f("action"), "block_ip_secs: 1 to 2592000 (a block's longest), on a rule whose subjects are [\"ip\"]".into()))
                }
                Some(Action::SuspendKeySecs(n)) if n == 0 || subjects != [SubjectKind::KeyId] => {
                    return Err((f("action"), "suspend_key_secs: positive, on a rule whose subjects are [\"key_id\"]".into()))
                }
                _ => {}
            }
            rules.push(Rule { check, subjects, window_secs, cooldown_secs, action: r.action });
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let loopback =
                ["http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/", "http://[::1]:"].iter().any(|p| w.url.starts_with(p));
            if !(w.url.starts_with("https://") || loopback) || w.url.len() > 2048 || w.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err((format!("alerts.webhooks[{i}].url"), "an https URL (http only to 127.0.0.1 or localhost)".into()));
            }
            if w.secret.is_empty() || !w.secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((format!("alerts.webhooks[{i}].secret"), "the name of a Worker secret (letters, digits, _)".into()));
            }
        }
        Ok(AlertsPolicy { rules, webhooks: self.webhooks })
    }
}

impl AlertsPolicy {
    /// The longest any rule looks back (seconds): a subject's state unchanged for longer is of
    /// no use.
    pub fn horizon_secs(&self) -> i64 {
        self.rules.iter().map(Rule::horizon_secs).max().unwrap_or(0)
    }
}

/// One rule's state for one subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// The rule's index and name (a state of another rule, after a configuration change, is
    /// dropped).
    pub rule: (usize, String),
    /// (when, how many), oldest first.
    pub events: Vec<(i64, u64)>,
    /// Request ids of recent counts.
    pub samples: Vec<String>,
    /// The first count ever seen (for the baseline's span).
    pub first_seen: i64,
    /// No alert before this.
    pub cooldown_until: i64,
}

/// Everything the engine remembers about one subject (stored as JSON by the `UsageStore`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubjectState {
    /// Per rule.
    pub tracks: Vec<Track>,
    /// Countries seen, with when last.
    pub countries: Vec<(String, i64)>,
    /// The last row observed (seconds).
    pub updated: i64,
}

/// An alert's subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSubject {
    /// `ip`, `key_id`, `sub` or `client_id`.
    pub kind: SubjectKind,
    /// The id (an IP as `logging.client_ip` renders it).
    pub id: String,
    /// The issuer, for a `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// A fired alert (the webhook's JSON body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// Who.
    pub subject: AlertSubject,
    /// How many (refusals, requests, presentations; for `new_country`, 1).
    pub count: u64,
    /// The window counted (for `new_country`, `days` in seconds).
    pub window_secs: i64,
    /// The first counted moment in the window (Unix seconds).
    pub first_seen: i64,
    /// The last.
    pub last_seen: i64,
    /// A few request ids.
    pub sample_request_ids: Vec<String>,
    /// Unique per alert (32 hex digits).
    pub alert_id: String,
    /// The new country (`new_country`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The automatic response, if the rule has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

fn alert_id(rule: usize, name: &str, s: &AlertSubject, now: i64) -> String {
    let text = format!("{rule}\n{name}\n{}\n{}\n{}\n{now}", s.kind.name(), s.iss.as_deref().unwrap_or(""), s.id);
    let d = <Sha256 as sha2::Digest>::digest(text.as_bytes());
    hex::encode(&d[..16])
}

/// Feeds one stored row (a subject's counts in one minute, as a flush delivered them) to every
/// rule watching its subject, at `now`: the alerts that fire. `state` is the subject's.
pub fn observe(policy: &AlertsPolicy, state: &mut SubjectState, row: &UsageRow, now: i64) -> Vec<Alert> {
    let mut fired = Vec::new();
    state.tracks.retain(|t| policy.rules.get(t.rule.0).is_some_and(|r| r.check.name() == t.rule.1));
    state.updated = state.updated.max(now);
    let subject = AlertSubject { kind: row.kind, id: row.id.clone(), iss: row.iss.clone() };
    let at = row.last_seen.min(now);
    for (i, rule) in policy.rules.iter().enumerate() {
        if !rule.subjects.contains(&row.kind) {
            continue;
        }
        if let Check::NewCountry { days } = rule.check {
            if let Some(a) = new_country(i, rule, days, state, row, &subject, now) {
                fired.push(a);
            }
            continue;
        }
        let n = rule.check.count(row);
        if n == 0 {
            continue;
        }
        let pos = match state.tracks.iter().position(|t| t.rule.0 == i) {
            Some(p) => p,
            None => {
                state.tracks.push(Track { rule: (i, rule.check.name().to_string()), first_seen: row.first_seen.min(at), ..Default::default() });
                state.tracks.len() - 1
            }
        };
        let track = &mut state.tracks[pos];
        let horizon = rule.horizon_secs();
        track.events.retain(|(t, _)| *t > now - horizon);
        let full = track.events.len() >= MAX_EVENTS;
        match track.events.iter_mut().rev().find(|e| e.0 == at) {
            Some(e) => e.1 += n,
            None if full => {
                if let Some(last) = track.events.last_mut() {
                    last.1 += n;
                }
            }
            None => track.events.push((at, n)),
        }
        track.events.sort_by_key(|(t, _)| *t);
        for s in &row.samples {
            if !track.samples.contains(s) {
                track.samples.push(s.clone());
            }
        }
        let excess = track.samples.len().saturating_sub(MAX_SAMPLES);
        track.samples.drain(..excess);
        let in_window: Vec<(i64, u64)> = track.events.iter().copied().filter(|(t, _)| *t > now - rule.window_secs).collect();
        let count: u64 = in_window.iter().map(|(_, n)| n).sum();
        let fires = match rule.check {
            Check::AuthFailures { threshold } | Check::RevokedUse { threshold } | Check::RateLimited { threshold } => count >= threshold,
            Check::UsageSpike { factor, min_requests, baseline_secs } => {
                let window_start = now - rule.window_secs;
                let span = baseline_secs.min(window_start - track.first_seen);
                if count < min_requests || span < rule.window_secs {
                    false
                } else {
                    let before: u64 = track.events.iter().filter(|(t, _)| *t <= window_start && *t > window_start - baseline_secs).map(|(_, n)| n).sum();
                    let expected = before as f64 / span as f64 * rule.window_secs as f64;
                    count as f64 > factor * expected
                }
            }
            Check::NewCountry { .. } => false,
        };
        if fires && now >= track.cooldown_until {
            track.cooldown_until = now + rule.cooldown_secs;
            fired.push(Alert {
                rule: rule.check.name().into(),
                subject: subject.clone(),
                count,
                window_secs: rule.window_secs,
                first_seen: in_window.first().map_or(at, |e| e.0),
                last_seen: in_window.last().map_or(at, |e| e.0),
                sample_request_ids: track.samples.clone(),
                alert_id: alert_id(i, rule.check.name(), &subject, now),
                country: None,
                action: rule.action,
            });
        }
    }
    fired
}

fn new_country(i: usize, rule: &Rule, days: i64, state: &mut SubjectState, row: &UsageRow, subject: &AlertSubject, now: i64) -> Option<Alert> {
    let mut alert = None;
    let known_since = now - days * 86_400;
    for c in &row.countries {
        let had_any = !state.countries.is_empty();
        match state.countries.iter_mut().find(|(k, _)| k == c) {
            Some(entry) if entry.1 > known_since => entry.1 = now.max(entry.1),
            found => {
                let pos = state.tracks.iter().position(|t| t.rule.0 == i);
                let cooling = pos.is_some_and(|p| now < state.tracks[p].cooldown_until);
                if had_any && !cooling && alert.is_none() {
                    let p = pos.unwrap_or_else(|| {
                        state.tracks.push(Track { rule: (i, rule.check.name().to_string()), first_seen: now, ..Default::default() });
                        state.tracks.len() - 1
                    });
                    state.tracks[p].cooldown_until = now + rule.cooldown_secs;
                    alert = Some(Alert {
                        rule: rule.check.name().into(),
                        subject: subject.clone(),
                        count: 1,
                        window_secs: days * 86_400,
                        first_seen: row.first_seen,
                        last_seen: row.last_seen,
                        sample_request_ids: row.samples.iter().take(MAX_SAMPLES).cloned().collect(),
                        alert_id: alert_id(i, rule.check.name(), subject, now),
                        country: Some(c.clone()),
                        action: rule.action,
                    });
                }
                match found {
                    Some(entry) => entry.1 = now,
                    None => state.countries.push((c.clone(), now)),
                }
            }
        }
    }
    if state.countries.len() > MAX_COUNTRIES {
        state.countries.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        state.countries.truncate(MAX_COUNTRIES);
    }
    alert
}

/// The principal of the audit trail entries the alert engine writes.
pub const AUTOMATIC_PRINCIPAL: &str = "edgeward:alerts";

fn subject_target(s: &AlertSubject) -> String {
    super::audit::bounded(&format!("{}:{}", s.kind.name(), s.id))
}

/// The audit trail entry of a fired alert (`alert_fired`; its request id is the alert id).
pub fn audit_of_alert(a: &Alert) -> AuditRecord {
    let mut detail = BTreeMap::from([
        ("rule".to_string(), Detail::Text(a.rule.clone())),
        ("count".to_string(), Detail::Int(a.count.min(i64::MAX as u64) as i64)),
        ("window_secs".to_string(), Detail::Int(a.window_secs)),
        ("first_seen".to_string(), Detail::Int(a.first_seen)),
        ("last_seen".to_string(), Detail::Int(a.last_seen)),
    ]);
    if let Some(iss) = &a.subject.iss {
        detail.insert("iss".into(), Detail::Text(super::audit::bounded(iss)));
    }
    if let Some(c) = &a.country {
        detail.insert("country".into(), Detail::Text(super::audit::bounded(c)));
    }
    AuditRecord {
        actor: None,
        principal: Some(AUTOMATIC_PRINCIPAL.into()),
        action: "alert_fired".into(),
        target: Some(subject_target(&a.subject)),
        outcome: AuditOutcome::Ok,
        status: 200,
        reason: None,
        request_id: a.alert_id.clone(),
        detail,
    }
}

/// The audit trail entry of an alert's automatic action (`key_suspend` or `ip_block`), carried
/// out until `expires_at` or failed with `error`.
pub fn audit_of_action(a: &Alert, action: Action, expires_at: i64, result: &Result<(), String>) -> AuditRecord {
    let name = match action {
        Action::BlockIpSecs(_) => "ip_block",
        Action::SuspendKeySecs(_) => "key_suspend",
    };
    let detail = BTreeMap::from([
        ("alert_id".to_string(), Detail::Text(a.alert_id.clone())),
        ("rule".to_string(), Detail::Text(a.rule.clone())),
        ("expires_at".to_string(), Detail::Int(expires_at)),
        ("automatic".to_string(), Detail::Bool(true)),
    ]);
    AuditRecord {
        actor: None,
        principal: Some(AUTOMATIC_PRINCIPAL.into()),
        action: name.into(),
        target: Some(super::audit::bounded(&a.subject.id)),
        outcome: if result.is_ok() { AuditOutcome::Ok } else { AuditOutcome::Failed },
        status: if result.is_ok() { 200 } else { 503 },
        reason: result.as_ref().err().map(|e| super::audit::bounded(e)),
        request_id: a.alert_id.clone(),
        detail,
    }
}

/// The `Edgeward-Signature` header's value for `body` sent at `t`: `t=T,v1=HEX`, HEX the
/// HMAC-SHA-256 under `secret` of `T.body` (the receiver recomputes it, and refuses an old `t`).
pub fn signature(secret: &[u8], t: i64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new_from_slice(&[0]).expect("HMAC takes any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body a webhook of `format` gets for `alert`.
pub fn body(alert: &Alert, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string(alert).unwrap_or_default(),
        Format::Slack => {
            let who = match &alert.subject.iss {
                Some(iss) => format!("{} {} (issuer {iss})", alert.subject.kind.name(), alert.subject.id),
                None => format!("{} {}", alert.subject.kind.name(), alert.subject.id),
            };
            let what = match &alert.country {
                Some(c) => format!("seen from a new country, {c}"),
                None => format!("{} in {} s", alert.count, alert.window_secs),
            };
            let action = match alert.action {
                Some(Action::BlockIpSecs(n)) => format!("; blocking the IP for {n} s"),
                Some(Action::SuspendKeySecs(n)) => format!("; suspending the key for {n} s"),
                None => String::new(),
            };
            serde_json::json!({"text": format!("Edgeward alert {}: {who}: {what}{action} (alert {})", alert.rule, alert.alert_id)}).to_string()
        }
    }
}

/// The delay before delivery attempt `attempt` (1 = the first retry): 2, 4, 8 … seconds, at
/// most 300.
pub fn backoff_secs(attempt: u32) -> i64 {
    (1i64 << attempt.clamp(1, 9)).min(300)
}

/// Most delivery attempts per alert and webhook.
pub const MAX_ATTEMPTS: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn policy(rules: serde_json::Value) -> AlertsPolicy {
        serde_json::from_value::<AlertsConfig>(serde_json::json!({"rules": rules})).unwrap().validate().unwrap()
    }

    fn row(kind: SubjectKind, id: &str, at: i64) -> UsageRow {
        UsageRow {
            kind,
            id: id.into(),
            iss: None,
            minute: at - at.rem_euclid(60),
            accepted: 0,
            rejected: BTreeMap::new(),
            auth_failures: 0,
            revoked: 0,
            countries: vec![],
            samples: vec![format!("rid-{at}")],
            first_seen: at,
            last_seen: at,
        }
    }

    fn failures(id: &str, at: i64, n: u64) -> UsageRow {
        UsageRow { auth_failures: n, rejected: BTreeMap::from([("bad_signature".to_string(), n)]), ..row(SubjectKind::Ip, id, at) }
    }

    fn requests(id: &str, at: i64, n: u64) -> UsageRow {
        UsageRow { accepted: n, ..row(SubjectKind::KeyId, id, at) }
    }

    #[test]
    fn auth_failures_fire_once_at_the_threshold_and_cool_down() {
        let p = policy(serde_json::json!([{"rule": "auth_failures", "threshold": 50, "window_secs": 60, "cooldown_secs": 300}]));
        let mut s = SubjectState::default();
        // 49 in the window: nothing.
        assert!(observe(&p, &mut s, &failures("203.0.113.0/24", T0, 30), T0).is_empty());
        assert!(observe(&p, &mut s, &failures("203.0.113.0/24", T0 + 10, 19), T0 + 10).is_empty());
        let a = observe(&p, &mut s, &failures("203.0.113.0/24", T0 + 20, 1), T0 + 20);
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(
            (a.rule.as_str(), a.subject.kind, a.subject.id.as_str(), a.count, a.window_secs, a.first_seen, a.last_seen),
            ("auth_failures", SubjectKind::Ip, "203.0.113.0/24", 50, 60, T0, T0 + 20)
        );
        assert_eq!(a.sample_request_ids, [format!("rid-{T0}"), format!("rid-{}", T0 + 10), format!("rid-{}", T0 + 20)]);
        assert_eq!(a.alert_id.len(), 32);
        // More within the cooldown: no second alert; after it, with the threshold met again: one.
        assert!(observe(&p, &mut s, &failures("203.0.113.0/24", T0 + 30, 100), T0 + 30).is_empty());
        assert!(observe(&p, &mut s, &failures("203.0.113.0/24", T0 + 319, 100), T0 + 319).is_empty());
        let again = observe(&p, &mut s, &failures("203.0.113.0/24", T0 + 320, 1), T0 + 320);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].alert_id, a.alert_id);
    }

    #[test]
    fn auth_failures_spread_beyond_the_window_do_not_fire() {
        let p = policy(serde_json::json!([{"rule": "auth_failures", "threshold": 10, "window_secs": 60}]));
        let mut s = SubjectState::default();
        for i in 0..100 {
            // 9 per 61 s: never 10 within a minute.
            assert!(observe(&p, &mut s, &failures("x", T0 + i * 61, 9), T0 + i * 61).is_empty(), "{i}");
        }
        // Kept for the rule's horizon (its cooldown, 600 s, is longer than its window): 10 at most.
        assert!(s.tracks[0].events.len() <= 10, "old counts are dropped: {:?}", s.tracks[0].events);
        // Accepted traffic is no failure; other subjects are not watched by an ip-only rule.
        let ip_only = policy(serde_json::json!([{"rule": "auth_failures", "subjects": ["ip"], "threshold": 1}]));
        assert!(observe(&ip_only, &mut SubjectState::default(), &requests("k", T0, 1000), T0).is_empty());
        let key_fail = UsageRow { auth_failures: 5, ..requests("k", T0, 0) };
        assert!(observe(&ip_only, &mut SubjectState::default(), &key_fail, T0).is_empty());
        let any = policy(serde_json::json!([{"rule": "auth_failures", "threshold": 5}]));
        assert_eq!(observe(&any, &mut SubjectState::default(), &key_fail, T0)[0].subject.kind, SubjectKind::KeyId);
    }

    #[test]
    fn usage_spike_against_the_subjects_own_baseline() {
        let p = policy(serde_json::json!([{"rule": "usage_spike", "factor": 5, "window_secs": 60, "baseline_secs": 600, "min_requests": 50}]));
        let mut s = SubjectState::default();
        // Ten minutes of 20 per minute: steady, no alert (and none before there is a baseline).
        for m in 0..10 {
            assert!(observe(&p, &mut s, &requests("k1", T0 + m * 60, 20), T0 + m * 60).is_empty(), "{m}");
        }
        // 90 in the next minute: above min_requests but under 5 × 20.
        assert!(observe(&p, &mut s, &requests("k1", T0 + 600, 90), T0 + 600).is_empty());
        // 200 a minute later: over 5 × the baseline (which the 90 raised to 27 a minute).
        let a = observe(&p, &mut s, &requests("k1", T0 + 660, 200), T0 + 660);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].rule.as_str(), a[0].count, a[0].subject.id.as_str()), ("usage_spike", 200, "k1"));
        // A new subject's first burst has no baseline: no alert.
        let mut fresh = SubjectState::default();
        assert!(observe(&p, &mut fresh, &requests("k2", T0, 10_000), T0).is_empty());
        // Low volume never spikes, whatever the ratio.
        let mut quiet = SubjectState::default();
        observe(&p, &mut quiet, &requests("k3", T0, 1), T0);
        assert!(observe(&p, &mut quiet, &requests("k3", T0 + 300, 40), T0 + 300).is_empty());
    }

    #[test]
    fn new_country_after_the_first_and_not_within_days() {
        let p = policy(serde_json::json!([{"rule": "new_country", "days": 30, "cooldown_secs": 0}]));
        let mut s = SubjectState::default();
        let from = |c: &[&str], at: i64| UsageRow { accepted: 1, countries: c.iter().map(|c| c.to_string()).collect(), ..row(SubjectKind::KeyId, "k", at) };
        assert!(observe(&p, &mut s, &from(&["DE"], T0), T0).is_empty(), "the first country is learnt");
        assert!(observe(&p, &mut s, &from(&["DE"], T0 + 60), T0 + 60).is_empty());
        let a = observe(&p, &mut s, &from(&["BR"], T0 + 120), T0 + 120);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].country.as_deref(), a[0].count, a[0].window_secs), (Some("BR"), 1, 30 * 86_400));
        assert!(observe(&p, &mut s, &from(&["BR", "DE"], T0 + 180), T0 + 180).is_empty(), "known now");
        // DE not seen for 31 days: new again.
        let later = T0 + 180 + 31 * 86_400;
        assert_eq!(observe(&p, &mut s, &from(&["DE"], later), later).len(), 1);
    }

    #[test]
    fn revoked_use_and_rate_limited() {
        let p = policy(serde_json::json!([{"rule": "revoked_use", "threshold": 5}, {"rule": "rate_limited", "threshold": 3, "window_secs": 10}]));
        let mut s = SubjectState::default();
        let revoked = |n: u64, at: i64| UsageRow {
            revoked: n,
            auth_failures: n,
            rejected: BTreeMap::from([("token_revoked".to_string(), n)]),
            ..row(SubjectKind::Sub, "alice", at)
        };
        assert!(observe(&p, &mut s, &revoked(4, T0), T0).is_empty());
        let a = observe(&p, &mut s, &revoked(1, T0 + 1000), T0 + 1000);
        assert_eq!((a.len(), a[0].rule.as_str(), a[0].count, a[0].window_secs), (1, "revoked_use", 5, 3600));
        assert!(observe(&p, &mut s, &revoked(50, T0 + 1001), T0 + 1001).is_empty(), "cooldown");
        let mut k = SubjectState::default();
        let limited = |n: u64, at: i64| UsageRow { rejected: BTreeMap::from([("rate_limited".to_string(), n)]), ..row(SubjectKind::KeyId, "k", at) };
        assert!(observe(&p, &mut k, &limited(2, T0), T0).is_empty());
        assert!(observe(&p, &mut k, &limited(2, T0 + 20), T0 + 20).is_empty(), "out of the 10 s window");
        let a = observe(&p, &mut k, &limited(1, T0 + 25), T0 + 25);
        assert_eq!((a.len(), a[0].rule.as_str(), a[0].count), (1, "rate_limited", 3));
    }

    #[test]
    fn actions_are_emitted_and_checked_against_subjects() {
        let p = policy(serde_json::json!([{"rule": "auth_failures", "subjects": ["ip"], "threshold": 2, "action": {"block_ip_secs": 600}},
            {"rule": "revoked_use", "subjects": ["key_id"], "threshold": 1, "action": {"suspend_key_secs": 3600}}]));
        let a = observe(&p, &mut SubjectState::default(), &failures("198.51.100.0/24", T0, 2), T0);
        assert_eq!(a[0].action, Some(Action::BlockIpSecs(600)));
        let body: serde_json::Value = serde_json::from_str(&super::body(&a[0], Format::Json)).unwrap();
        assert_eq!(body["action"], serde_json::json!({"block_ip_secs": 600}));
        let k = UsageRow { revoked: 1, ..requests("key-1", T0, 0) };
        assert_eq!(observe(&p, &mut SubjectState::default(), &k, T0)[0].action, Some(Action::SuspendKeySecs(3600)));
        for bad in [
            serde_json::json!([{"rule": "auth_failures", "action": {"block_ip_secs": 60}}]),
            serde_json::json!([{"rule": "auth_failures", "subjects": ["ip"], "action": {"suspend_key_secs": 60}}]),
            serde_json::json!([{"rule": "auth_failures", "subjects": ["ip"], "action": {"block_ip_secs": 0}}]),
            serde_json::json!([{"rule": "auth_failures", "subjects": ["ip"], "action": {"block_ip_secs": 2_592_001}}]),
            serde_json::json!([{"rule": "usage_spike", "subjects": ["ip"]}]),
            serde_json::json!([{"rule": "usage_spike", "factor": 1}]),
            serde_json::json!([{"rule": "brute_force"}]),
            serde_json::json!([{"rule": "auth_failures", "threshold": 0}]),
            serde_json::json!([{"rule": "auth_failures", "window_secs": 0}]),
        ] {
            let parsed = serde_json::from_value::<AlertsConfig>(serde_json::json!({"rules": bad.clone()}));
            assert!(parsed.map_err(|e| e.to_string()).and_then(|c| c.validate().map_err(|e| e.1)).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<AlertsConfig>(serde_json::json!({"rules": [{"rule": "auth_failures", "action": {"block_ip_secs": 1, "x": 2}}]})).is_err()
        );
    }

    #[test]
    fn webhooks_are_checked() {
        let ok = serde_json::json!({"webhooks": [{"url": "https://hooks.example/a", "secret": "HOOK_SECRET"}, {"url": "http://127.0.0.1:9/x", "secret": "S", "format": "slack"}]});
        let p = serde_json::from_value::<AlertsConfig>(ok).unwrap().validate().unwrap();
        assert_eq!(p.webhooks[1].format, Format::Slack);
        for bad in [
            serde_json::json!({"webhooks": [{"url": "http://hooks.example/a", "secret": "S"}]}),
            serde_json::json!({"webhooks": [{"url": "https://hooks.example/a", "secret": "not a name"}]}),
        ] {
            assert!(serde_json::from_value::<AlertsConfig>(bad).unwrap().validate().is_err());
        }
    }

    #[test]
    fn audit_entries_of_alerts_and_actions() {
        let p = policy(serde_json::json!([{"rule": "revoked_use", "subjects": ["key_id"], "threshold": 1, "action": {"suspend_key_secs": 60}}]));
        let a = observe(&p, &mut SubjectState::default(), &UsageRow { revoked: 2, ..requests("key-9", T0, 0) }, T0).remove(0);
        let r = audit_of_alert(&a);
        assert_eq!(
            (r.action.as_str(), r.target.as_deref(), r.principal.as_deref(), r.request_id.as_str()),
            ("alert_fired", Some("key_id:key-9"), Some(AUTOMATIC_PRINCIPAL), a.alert_id.as_str())
        );
        assert_eq!(r.detail["count"], Detail::Int(2));
        let ok = audit_of_action(&a, Action::SuspendKeySecs(60), T0 + 60, &Ok(()));
        assert_eq!(
            (ok.action.as_str(), ok.target.as_deref(), ok.outcome, ok.detail["expires_at"].clone()),
            ("key_suspend", Some("key-9"), AuditOutcome::Ok, Detail::Int(T0 + 60))
        );
        let failed = audit_of_action(&a, Action::BlockIpSecs(60), T0 + 60, &Err("not built".into()));
        assert_eq!(
            (failed.action.as_str(), failed.outcome, failed.status, failed.reason.as_deref()),
            ("ip_block", AuditOutcome::Failed, 503, Some("not built"))
        );
    }

    #[test]
    fn signature_is_the_hmac_of_t_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let s = signature(b"whsec_test", 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(s, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    }

    #[test]
    fn alert_bodies_hold_no_credential_and_slack_is_text() {
        let p = policy(serde_json::json!([{"rule": "auth_failures", "threshold": 1}]));
        let a = observe(&p, &mut SubjectState::default(), &failures("203.0.113.0/24", T0, 1), T0).remove(0);
        let json: serde_json::Value = serde_json::from_str(&body(&a, Format::Json)).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["alert_id", "count", "first_seen", "last_seen", "rule", "sample_request_ids", "subject", "window_secs"]);
        assert_eq!(json["subject"], serde_json::json!({"kind": "ip", "id": "203.0.113.0/24"}));
        let slack: serde_json::Value = serde_json::from_str(&body(&a, Format::Slack)).unwrap();
        assert!(slack["text"].as_str().unwrap().contains("auth_failures: ip 203.0.113.0/24: 1 in 60 s"));
        assert_eq!((backoff_secs(1), backoff_secs(3), backoff_secs(20)), (2, 8, 300));
    }
}
