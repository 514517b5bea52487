//! The revocation list, as the edge holds it: a compact, versioned snapshot of every active
//! revocation, checked in memory on every request (cached tokens included). Pure: `now` is a
//! parameter; replication (ledger Durable Object → KV → isolates) is the adapter's job.
//!
//! A revocation targets a token id (`jti`, scoped to its issuer — never a hash of the raw token,
//! since ECDSA signatures are malleable), every token of a subject issued before a time ("log out
//! everywhere"), every token signed by a key id, or an API key id. Each carries a reason and an
//! expiry, after which it is pruned: a `jti` entry need only live until that token's `exp` plus
//! leeway.

use super::error::AuthError;
use super::verify::VerifiedToken;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// One token, by issuer and `jti`.
    Jti {
        /// Issuer (`iss`).
        iss: String,
        /// Token id.
        jti: String,
    },
    /// Every token of `sub` (from `iss`) whose `iat` is before `before`.
    SubjectBefore {
        /// Issuer.
        iss: String,
        /// Subject.
        sub: String,
        /// Unix seconds.
        before: i64,
    },
    /// Every token signed by this key id.
    Kid {
        /// Key id.
        kid: String,
    },
    /// An API key, by its id.
    ApiKey {
        /// Key id.
        key_id: String,
    },
}

impl Target {
    /// Stable identity: the same target revoked twice is one entry (a later subject watermark
    /// replaces an earlier one).
    pub fn id(&self) -> String {
        let canonical = match self {
            Target::Jti { iss, jti } => format!("jti\n{iss}\n{jti}"),
            Target::SubjectBefore { iss, sub, .. } => format!("sub\n{iss}\n{sub}"),
            Target::Kid { kid } => format!("kid\n{kid}"),
            Target::ApiKey { key_id } => format!("api_key\n{key_id}"),
        };
        super::log::fingerprint(canonical.as_bytes()).trim_start_matches("sha256:").to_string()
    }

    /// The reason-free kind name (`jti`, `subject_before`, `kid`, `api_key`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Jti { .. } => "jti",
            Target::SubjectBefore { .. } => "subject_before",
            Target::Kid { .. } => "kid",
            Target::ApiKey { .. } => "api_key",
        }
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// What is revoked.
    pub target: Target,
    /// Why (free text for operators, at most 200 characters).
    pub reason: String,
    /// When it was recorded (Unix seconds).
    pub created_at: i64,
    /// When it stops mattering and is pruned (Unix seconds).
    pub expires_at: i64,
}

/// Why a revocation request is refused (admin input validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRevocation {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub message: &'static str,
}

impl Revocation {
    /// Validates an operator's revocation before it is written.
    pub fn validate(&self, now: i64) -> Result<(), InvalidRevocation> {
        let bad = |field, message| Err(InvalidRevocation { field, message });
        let non_empty = |s: &str| !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control);
        match &self.target {
            Target::Jti { iss, jti } => {
                if !non_empty(iss) {
                    return bad("target.iss", "1-512 printable characters");
                }
                if !non_empty(jti) {
                    return bad("target.jti", "1-512 printable characters");
                }
            }
            Target::SubjectBefore { iss, sub, before } => {
                if !non_empty(iss) {
                    return bad("target.iss", "1-512 printable characters");
                }
                if !non_empty(sub) {
                    return bad("target.sub", "1-512 printable characters");
                }
                if *before <= 0 || *before > now + 86_400 {
                    return bad("target.before", "a Unix time, at most a day ahead");
                }
            }
            Target::Kid { kid } if !non_empty(kid) => return bad("target.kid", "1-512 printable characters"),
            Target::ApiKey { key_id } if !non_empty(key_id) => return bad("target.key_id", "1-512 printable characters"),
            _ => {}
        }
        if self.reason.chars().count() > 200 || self.reason.chars().any(char::is_control) {
            return bad("reason", "at most 200 printable characters");
        }
        if self.expires_at <= now {
            return bad("expires_at", "must be in the future");
        }
        Ok(())
    }
}

/// The persisted, replicated form: every active revocation at one ledger version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationSnapshot {
    /// Ledger version (grows with every change).
    pub version: u64,
    /// Active revocations.
    pub entries: Vec<Revocation>,
}

/// What a revocation check needs to know about a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenFacts<'a> {
    /// `iss` ("" when absent).
    pub iss: &'a str,
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `sub`.
    pub sub: Option<&'a str>,
    /// `iat`.
    pub iat: Option<f64>,
    /// The key id that verified it.
    pub kid: Option<&'a str>,
    /// For an API key: its id (the other fields are then empty).
    #[serde(default)]
    pub api_key: Option<&'a str>,
}

/// The in-memory set the hot path checks: hash lookups only.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    version: u64,
    jti: HashMap<(String, String), i64>,
    subject_before: HashMap<(String, String), (i64, i64)>,
    kid: HashMap<String, i64>,
    api_key: HashMap<String, i64>,
}

impl RevocationSet {
    /// Builds the set from a snapshot, dropping entries already expired at `now`.
    pub fn from_snapshot(snap: &RevocationSnapshot, now: i64) -> RevocationSet {
        let mut s = RevocationSet { version: snap.version, ..Default::default() };
        for r in snap.entries.iter().filter(|r| r.expires_at > now) {
            match &r.target {
                Target::Jti { iss, jti } => {
                    s.jti.insert((iss.clone(), jti.clone()), r.expires_at);
                }
                Target::SubjectBefore { iss, sub, before } => {
                    let e = s.subject_before.entry((iss.clone(), sub.clone())).or_insert((*before, r.expires_at));
                    if *before > e.0 {
                        *e = (*before, r.expires_at);
                    }
                }
                Target::Kid { kid } => {
                    s.kid.insert(kid.clone(), r.expires_at);
                }
                Target::ApiKey { key_id } => {
                    s.api_key.insert(key_id.clone(), r.expires_at);
                }
            }
        }
        s
    }

    /// The snapshot version this set came from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of active entries.
    pub fn len(&self) -> usize {
        self.jti.len() + self.subject_before.len() + self.kid.len() + self.api_key.len()
    }

    /// True if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses a verified token that is revoked at `now`.
    pub fn check(&self, token: &VerifiedToken, now: i64) -> Result<(), AuthError> {
        let c = token.claims();
        self.check_parts(
            &TokenFacts {
                iss: token.issuer().unwrap_or(""),
                jti: c.get("jti").and_then(|v| v.as_str()),
                sub: token.subject(),
                iat: c.get("iat").and_then(|v| v.as_f64()),
                kid: token.kid(),
                api_key: None,
            },
            now,
        )
    }

    /// The same check on the facts of a token (what the ledger's strict mode receives).
    pub fn check_parts(&self, t: &TokenFacts<'_>, now: i64) -> Result<(), AuthError> {
        let live = |exp: &i64| *exp > now;
        if let Some(jti) = t.jti {
            if self.jti.get(&(t.iss.to_string(), jti.to_string())).is_some_and(live) {
                return Err(AuthError::TokenRevoked);
            }
        }
        if let Some(sub) = t.sub {
            if let Some((before, exp)) = self.subject_before.get(&(t.iss.to_string(), sub.to_string())) {
                // A token without iat cannot prove it was issued after the watermark.
                if *exp > now && t.iat.is_none_or(|iat| iat < *before as f64) {
                    return Err(AuthError::TokenRevoked);
                }
            }
        }
        if let Some(kid) = t.kid {
            if self.kid.get(kid).is_some_and(live) {
                return Err(AuthError::TokenRevoked);
            }
        }
        if let Some(id) = t.api_key {
            if self.api_key_revoked(id, now) {
                return Err(AuthError::ApiKeyInvalid(super::error::ApiKeyFailure::Revoked));
            }
        }
        Ok(())
    }

    /// True if the API key id is revoked at `now`.
    pub fn api_key_revoked(&self, key_id: &str, now: i64) -> bool {
        self.api_key.get(key_id).is_some_and(|e| *e > now)
    }

    /// Distinct kinds present (for logs).
    pub fn kinds(&self) -> HashSet<&'static str> {
        let mut k = HashSet::new();
        if !self.jti.is_empty() {
            k.insert("jti");
        }
        if !self.subject_before.is_empty() {
            k.insert("subject_before");
        }
        if !self.kid.is_empty() {
            k.insert("kid");
        }
        if !self.api_key.is_empty() {
            k.insert("api_key");
        }
        k
    }
}
