//! The revocation list, as the edge holds it: a compact, versioned snapshot of every active
//! revocation, checked in memory on every request (cached tokens included). Pure: `now` is a
//! parameter; replication (ledger Durable Object → KV → isolates) is the adapter's job.
//!
//! # The compact snapshot
//!
//! The ledger keeps every [`Revocation`] in full (target, reason, times) for the admin API; the
//! edge needs only membership and expiry. So what is replicated ([`RevocationSet::to_compact`],
//! read back by [`RevocationSet::from_compact`]) holds per entry only the kind, the target's
//! 64-bit id ([`Target::id_u64`], the first 8 bytes of SHA-256 of the canonical target), the
//! expiry and, for a subject watermark, `before`. Binary, big-endian:
//!
//! ```text
//! header  "EWRV" | format u8 = 2 | version u64 | count u32
//! record  kind u8 (1 jti, 2 subject_before, 3 kid, 4 api_key) | id u64 | expires_at i64
//!         [| before i64, subject_before only]
//! ```
//!
//! 17 bytes per entry (25 for a subject watermark) instead of ~157 bytes of JSON. Records are
//! sorted by (kind, id), so the same list always encodes to the same bytes. Anything else —
//! wrong magic or format, unknown kind, truncated or trailing bytes, a count that disagrees — is
//! refused with a [`SnapshotError`], never a panic; the edge then keeps its last good copy.
//!
//! A token is checked by computing the same ids from its facts (`iss`+`jti`, `iss`+`sub`, `kid`,
//! API key id) and looking them up in per-kind tables.
//!
//! **Collisions.** Ids are 64-bit prefixes of SHA-256 over distinct canonical strings, so they
//! behave as independent uniform values, and lookups are per kind. A token that is not revoked is
//! refused by mistake only if one of its (at most three) ids equals one of the n active ids of
//! that kind: probability at most 3·n/2^64 per request, about 1.6·10^-14 with n = 100,000 — over
//! 10^12 requests, under 2·10^-2 in total even with every entry counted for every kind. Nobody
//! can aim at it: finding a token fact whose id matches a revoked one is a 64-bit second-preimage
//! search on SHA-256 (about 2^64 hashes per try, and the result would only get one's *own* token
//! refused). Two revocations sharing an id in the ledger would merge into one entry (also its
//! admin id), which by the birthday bound has probability about n²/2^65 ≈ 2.7·10^-10 at
//! n = 100,000.
//!
//! A revocation targets a token id (`jti`, scoped to its issuer — never a hash of the raw token,
//! since ECDSA signatures are malleable), every token of a subject issued before a time ("log out
//! everywhere"), every token signed by a key id, or an API key id. Each carries a reason and an
//! expiry, after which it is pruned: a `jti` entry need only live until that token's `exp` plus
//! leeway.

use super::error::AuthError;
use super::verify::VerifiedToken;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The 64-bit id of a canonical target: the first 8 bytes of SHA-256 of `tag`, then each part
/// preceded by a newline (`"jti\n{iss}\n{jti}"`), big-endian. Hashes the parts in place, so the
/// hot path allocates nothing.
fn id_of(tag: &str, parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    for p in parts {
        h.update(b"\n");
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

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
    /// As 16 hex digits (the admin API's id).
    pub fn id(&self) -> String {
        format!("{:016x}", self.id_u64())
    }

    /// The same identity as a number: the first 8 bytes of SHA-256 of the canonical target
    /// (`before` is not part of it), what the compact snapshot stores.
    pub fn id_u64(&self) -> u64 {
        match self {
            Target::Jti { iss, jti } => id_of("jti", &[iss, jti]),
            Target::SubjectBefore { iss, sub, .. } => id_of("sub", &[iss, sub]),
            Target::Kid { kid } => id_of("kid", &[kid]),
            Target::ApiKey { key_id } => id_of("api_key", &[key_id]),
        }
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

/// Why a compact snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed revocation snapshot: {0}")]
pub struct SnapshotError(pub &'static str);

/// Magic of the compact snapshot.
/// KV key of the published compact snapshot.
pub const SNAPSHOT_KEY: &str = "revocations:v2";
/// KV key of the JSON snapshot earlier versions published: read only while the compact one does
/// not exist yet (a ledger that has not been written to since the upgrade).
pub const LEGACY_SNAPSHOT_KEY: &str = "revocations:v1";
/// Largest revocation snapshot read: Workers KV's value limit (25 MiB).
pub const MAX_SNAPSHOT_BYTES: usize = 25 << 20;

const MAGIC: &[u8; 4] = b"EWRV";
/// Format of the compact snapshot this build reads and writes.
pub const COMPACT_FORMAT: u8 = 2;
const HEADER_LEN: usize = 4 + 1 + 8 + 4;

/// Ids are already uniform (SHA-256 prefixes): hash tables keyed by them need no rehashing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The in-memory set the hot path checks: per kind, target id → expiry (and `before` for
/// subjects). Built from the full entries ([`RevocationSet::from_snapshot`]) or from the compact
/// snapshot ([`RevocationSet::from_compact`]); both give the same verdicts.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    version: u64,
    jti: IdMap<i64>,
    subject_before: IdMap<(i64, i64)>,
    kid: IdMap<i64>,
    api_key: IdMap<i64>,
}

impl RevocationSet {
    /// Builds the set from a snapshot, dropping entries already expired at `now`.
    pub fn from_snapshot(snap: &RevocationSnapshot, now: i64) -> RevocationSet {
        let mut s = RevocationSet { version: snap.version, ..Default::default() };
        for r in snap.entries.iter().filter(|r| r.expires_at > now) {
            let id = r.target.id_u64();
            match &r.target {
                Target::Jti { .. } => s.jti.insert(id, r.expires_at),
                Target::SubjectBefore { before, .. } => {
                    s.add_watermark(id, *before, r.expires_at);
                    None
                }
                Target::Kid { .. } => s.kid.insert(id, r.expires_at),
                Target::ApiKey { .. } => s.api_key.insert(id, r.expires_at),
            };
        }
        s
    }

    /// Two watermarks for one subject: the later wins (with its expiry).
    fn add_watermark(&mut self, id: u64, before: i64, expires_at: i64) {
        let e = self.subject_before.entry(id).or_insert((before, expires_at));
        if before > e.0 {
            *e = (before, expires_at);
        }
    }

    /// The compact snapshot of this set (see the module docs), records sorted by (kind, id).
    pub fn to_compact(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.len() * 17 + self.subject_before.len() * 8);
        out.extend_from_slice(MAGIC);
        out.push(COMPACT_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.len()).unwrap_or(u32::MAX).to_be_bytes());
        fn put<V: Copy + Ord>(out: &mut Vec<u8>, kind: u8, map: &IdMap<V>, tail: impl Fn(V) -> (i64, Option<i64>)) {
            let mut ids: Vec<(u64, V)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            ids.sort_unstable();
            for (id, v) in ids {
                let (exp, before) = tail(v);
                out.push(kind);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&exp.to_be_bytes());
                if let Some(b) = before {
                    out.extend_from_slice(&b.to_be_bytes());
                }
            }
        }
        put(&mut out, 1, &self.jti, |e| (e, None));
        put(&mut out, 2, &self.subject_before, |(before, e)| (e, Some(before)));
        put(&mut out, 3, &self.kid, |e| (e, None));
        put(&mut out, 4, &self.api_key, |e| (e, None));
        out
    }

    /// Reads a compact snapshot, dropping entries already expired at `now`. Anything malformed is
    /// an error (never a panic); the caller keeps its previous set.
    pub fn from_compact(bytes: &[u8], now: i64) -> Result<RevocationSet, SnapshotError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(SnapshotError("not an Edgeward revocation snapshot"));
        }
        if bytes[4] != COMPACT_FORMAT {
            return Err(SnapshotError("unsupported snapshot format"));
        }
        let u64_at = |i: usize| -> Result<u64, SnapshotError> {
            bytes.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or(SnapshotError("truncated record"))
        };
        let version = u64_at(5)?;
        let count = bytes.get(13..17).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or(SnapshotError("truncated header"))? as usize;
        // Every record is at least 17 bytes: refuse a count the bytes cannot hold before allocating.
        if count > (bytes.len() - HEADER_LEN) / 17 {
            return Err(SnapshotError("count exceeds the data"));
        }
        let mut s = RevocationSet { version, ..Default::default() };
        let mut i = HEADER_LEN;
        for _ in 0..count {
            let kind = *bytes.get(i).ok_or(SnapshotError("truncated record"))?;
            let id = u64_at(i + 1)?;
            let expires_at = u64_at(i + 9)? as i64;
            i += 17;
            let live = expires_at > now;
            match kind {
                1 if live => {
                    s.jti.insert(id, expires_at);
                }
                2 => {
                    let before = u64_at(i)? as i64;
                    i += 8;
                    if live {
                        s.add_watermark(id, before, expires_at);
                    }
                }
                3 if live => {
                    s.kid.insert(id, expires_at);
                }
                4 if live => {
                    s.api_key.insert(id, expires_at);
                }
                1 | 3 | 4 => {}
                _ => return Err(SnapshotError("unknown record kind")),
            }
        }
        if i != bytes.len() {
            return Err(SnapshotError("trailing bytes"));
        }
        Ok(s)
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
        self.check_parts(
            &TokenFacts { iss: token.issuer().unwrap_or(""), jti: token.jti(), sub: token.subject(), iat: token.issued_at(), kid: token.kid(), api_key: None },
            now,
        )
    }

    /// The same check on the facts of a token (what the ledger's strict mode receives).
    pub fn check_parts(&self, t: &TokenFacts<'_>, now: i64) -> Result<(), AuthError> {
        // An empty table is not consulted (no id computed for it).
        let live = |exp: &i64| *exp > now;
        if let Some(jti) = t.jti.filter(|_| !self.jti.is_empty()) {
            if self.jti.get(&id_of("jti", &[t.iss, jti])).is_some_and(live) {
                return Err(AuthError::TokenRevoked);
            }
        }
        if let Some(sub) = t.sub.filter(|_| !self.subject_before.is_empty()) {
            if let Some((before, exp)) = self.subject_before.get(&id_of("sub", &[t.iss, sub])) {
                // A token without iat cannot prove it was issued after the watermark.
                if *exp > now && t.iat.is_none_or(|iat| iat < *before as f64) {
                    return Err(AuthError::TokenRevoked);
                }
            }
        }
        if let Some(kid) = t.kid.filter(|_| !self.kid.is_empty()) {
            if self.kid.get(&id_of("kid", &[kid])).is_some_and(live) {
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
        !self.api_key.is_empty() && self.api_key.get(&id_of("api_key", &[key_id])).is_some_and(|e| *e > now)
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
