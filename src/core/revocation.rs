//! The revocation list, as the edge holds it: a compact, versioned, sharded snapshot of every
//! active revocation, checked in memory on every request (cached tokens included). Pure: `now`
//! is a parameter; replication (ledger Durable Object → KV → isolates) is the adapters' job.
//!
//! # The compact records
//!
//! The ledger keeps every [`Revocation`] in full (target, reason, times) for the admin API; the
//! edge needs only membership and expiry. So what is replicated holds per entry ([`Record`])
//! only the kind, the target's 64-bit id ([`Target::id_u64`], the first 8 bytes of SHA-256 of
//! the canonical target), the expiry and, for a subject watermark, `before`. Binary, big-endian:
//!
//! ```text
//! record  kind u8 (1 jti, 2 subject_before, 3 kid, 4 api_key) | id u64 | expires_at i64
//!         [| before i64, subject_before only]
//! ```
//!
//! 17 bytes per entry (25 for a subject watermark) instead of ~157 bytes of JSON, sorted by
//! (kind, id), so the same list always encodes to the same bytes.
//!
//! # The sharded snapshot (format 3, what the ledger publishes)
//!
//! The id space is cut into `2^bits` shards by the ids' top bits ([`shard_of`], bits 0..=8,
//! chosen from the list's length by [`shard_bits_for`]: at most [`SHARD_TARGET`] entries per
//! shard on average). Each shard is one KV value under [`shard_key`]`(bits, index, version)`; a
//! manifest under [`MANIFEST_KEY`] names each shard's version and length:
//!
//! ```text
//! manifest  "EWRM" | 3 | version u64 | bits u8 | (version u64 | count u32) × 2^bits
//! shard     "EWRS" | 3 | version u64 | bits u8 | index u16 | count u32 | records
//! ```
//!
//! A change republishes only its shard (under a new key, so a manifest never names a value it
//! did not see written) and the manifest; an isolate re-reads the manifest and fetches only the
//! shards whose version changed ([`RevocationSet::stale_shards`], [`RevocationSet::install`]),
//! one at a time, one read in flight per isolate: never more than one shard beside its live set,
//! except when the ledger re-shards (the list crossing a size threshold), when the new layout is
//! built beside the live one. An empty shard is not written or read. A
//! shard whose header names another place or version, or holding an id outside its range, is
//! refused.
//!
//! # The single-value snapshot (format 2, what earlier ledgers published)
//!
//! ```text
//! header  "EWRV" | format u8 = 2 | version u64 | count u32, then the records
//! ```
//!
//! Read when there is no manifest ([`RevocationSet::from_compact`]), and still written by the
//! ledger while the list is short ([`LEGACY_MAX_ENTRIES`]) for gates not yet upgraded.
//!
//! In either format anything malformed — wrong magic or format, unknown kind, truncated or
//! trailing bytes, a count that disagrees — is refused with a [`SnapshotError`], never a panic;
//! the edge then keeps its last good copy.
//!
//! # In memory
//!
//! Per shard and kind, the ids sorted in one vector and their expiries (32-bit seconds) in
//! another: 12 bytes per entry, 20 for a watermark; a lookup is one binary search.
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
use std::collections::HashSet;

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

impl Target {
    /// The expiry a revocation of this target gets when the operator gives none: the last
    /// moment a token it matches can still verify. A `jti` entry outlives its token's `exp`
    /// (`token_exp`, when known) by the leeway; otherwise, like a subject watermark, it outlives
    /// the longest token lifetime (`max_lifetime`) counted from when the token was issued at
    /// the latest (`now` for a `jti`; `before`, or now if later, for a watermark), plus the
    /// leeway twice (a token's `iat` may be ahead by it, its `exp` is honoured for it after).
    /// `None` when no bound follows (a key id or API key, or no lifetime bound without
    /// `token_exp`; the ledger passes none when tokens without `exp` are accepted): then the
    /// operator must give one. A token without `iat` has its lifetime counted from each
    /// verification: the bound holds for one that verifies when it is revoked; one that does
    /// not verify yet (its `exp` beyond the lifetime) is bounded only by `token_exp`.
    pub fn natural_expiry(&self, token_exp: Option<i64>, now: i64, leeway: i64, max_lifetime: Option<i64>) -> Option<i64> {
        match self {
            Target::Jti { .. } => {
                token_exp.map(|e| e.saturating_add(leeway)).or_else(|| max_lifetime.map(|l| now.saturating_add(l).saturating_add(2 * leeway)))
            }
            // From `before`, or from now if that is later: a token without `iat` that verifies
            // now has its `exp` within the lifetime of now.
            Target::SubjectBefore { before, .. } => max_lifetime.map(|l| (*before).max(now).saturating_add(l).saturating_add(2 * leeway)),
            Target::Kid { .. } | Target::ApiKey { .. } => None,
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

impl TokenFacts<'_> {
    /// The (kind, id) pairs a check of these facts looks up: what the ledger's strict check
    /// reads from its storage (at most four rows).
    pub fn lookups(&self) -> Vec<(u8, u64)> {
        let mut out = Vec::with_capacity(4);
        if let Some(jti) = self.jti {
            out.push((KIND_JTI, id_of("jti", &[self.iss, jti])));
        }
        if let Some(sub) = self.sub {
            out.push((KIND_SUBJECT, id_of("sub", &[self.iss, sub])));
        }
        if let Some(kid) = self.kid {
            out.push((KIND_KID, id_of("kid", &[kid])));
        }
        if let Some(key) = self.api_key {
            out.push((KIND_API_KEY, id_of("api_key", &[key])));
        }
        out
    }
}

/// Why a compact snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed revocation snapshot: {0}")]
pub struct SnapshotError(pub &'static str);

/// KV key of the sharded snapshot's manifest (format 3, see the module docs).
pub const MANIFEST_KEY: &str = "revocations:v3";
/// KV key of the single-value compact snapshot (format 2): read when no manifest exists (a
/// ledger not yet upgraded), and still written by the ledger while the list is at most
/// [`LEGACY_MAX_ENTRIES`] long, for gates of earlier versions during an upgrade.
pub const SNAPSHOT_KEY: &str = "revocations:v2";
/// KV key of the JSON snapshot the first versions published: read only when neither compact
/// form exists.
pub const LEGACY_SNAPSHOT_KEY: &str = "revocations:v1";
/// Largest revocation value read: Workers KV's value limit (25 MiB).
pub const MAX_SNAPSHOT_BYTES: usize = 25 << 20;
/// Largest manifest: 2^[`MAX_SHARD_BITS`] shards of 12 bytes after a 14-byte header.
pub const MAX_MANIFEST_BYTES: usize = 14 + (12 << MAX_SHARD_BITS);
/// The ledger publishes the format-2 snapshot too while the list has at most this many entries.
pub const LEGACY_MAX_ENTRIES: usize = 100_000;
/// A shard holds about this many entries at most (1.1 MB): the ledger picks the number of
/// shards from the list's length ([`shard_bits_for`]).
pub const SHARD_TARGET: usize = 65_536;
/// At most 2^8 = 256 shards (16.7 million entries at [`SHARD_TARGET`], 280 MB).
pub const MAX_SHARD_BITS: u8 = 8;

/// Record kinds of the compact formats.
pub const KIND_JTI: u8 = 1;
/// A subject watermark (its record carries `before`).
pub const KIND_SUBJECT: u8 = 2;
/// A key id.
pub const KIND_KID: u8 = 3;
/// An API key id.
pub const KIND_API_KEY: u8 = 4;

const MAGIC: &[u8; 4] = b"EWRV";
const MANIFEST_MAGIC: &[u8; 4] = b"EWRM";
const SHARD_MAGIC: &[u8; 4] = b"EWRS";
/// Format of the single-value compact snapshot.
pub const COMPACT_FORMAT: u8 = 2;
/// Format of the sharded snapshot (manifest and shards).
pub const SHARDED_FORMAT: u8 = 3;
const HEADER_LEN: usize = 4 + 1 + 8 + 4;
const SHARD_HEADER_LEN: usize = 4 + 1 + 8 + 1 + 2 + 4;

/// One revocation as the edge holds it: kind, target id, expiry and (subjects only) `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// [`KIND_JTI`], [`KIND_SUBJECT`], [`KIND_KID`] or [`KIND_API_KEY`].
    pub kind: u8,
    /// [`Target::id_u64`].
    pub id: u64,
    /// Unix seconds.
    pub expires_at: i64,
    /// `before` of a subject watermark (0 for the other kinds).
    pub before: i64,
}

impl Revocation {
    /// This revocation's compact record.
    pub fn record(&self) -> Record {
        let (kind, before) = match &self.target {
            Target::Jti { .. } => (KIND_JTI, 0),
            Target::SubjectBefore { before, .. } => (KIND_SUBJECT, *before),
            Target::Kid { .. } => (KIND_KID, 0),
            Target::ApiKey { .. } => (KIND_API_KEY, 0),
        };
        Record { kind, id: self.target.id_u64(), expires_at: self.expires_at, before }
    }
}

/// The shard (of `2^bits`) holding `id`: its top `bits` bits.
pub fn shard_of(id: u64, bits: u8) -> usize {
    if bits == 0 {
        0
    } else {
        (id >> (64 - u32::from(bits.min(MAX_SHARD_BITS)))) as usize
    }
}

/// The ids shard `index` of `2^bits` holds: `lo..=hi`.
pub fn shard_range(bits: u8, index: usize) -> (u64, u64) {
    if bits == 0 {
        return (0, u64::MAX);
    }
    let shift = 64 - u32::from(bits.min(MAX_SHARD_BITS));
    let lo = (index as u64) << shift;
    (lo, lo | (u64::MAX >> (64 - shift)))
}

/// How many shards (as bits) a list of `count` entries is published in, given the current
/// `bits`: grows when a shard would average more than [`SHARD_TARGET`] entries, shrinks only
/// below a quarter of that (so a list near a boundary is not re-sharded back and forth).
pub fn shard_bits_for(count: usize, current: u8) -> u8 {
    let mut bits = current.min(MAX_SHARD_BITS);
    while bits < MAX_SHARD_BITS && count > SHARD_TARGET << bits {
        bits += 1;
    }
    while bits > 0 && count < (SHARD_TARGET << (bits - 1)) / 4 {
        bits -= 1;
    }
    bits
}

/// KV key of shard `index` (of `2^bits`) as published at ledger version `version`. Each
/// published shard is a new key, so an isolate never reads a shard newer or older than the
/// manifest that named it; the ledger deletes a replaced key some minutes later.
pub fn shard_key(bits: u8, index: usize, version: u64) -> String {
    format!("{MANIFEST_KEY}:{bits}:{index}:{version}")
}

/// One shard as the manifest names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardRef {
    /// Ledger version at which the shard was last published (0: never; then it is empty).
    pub version: u64,
    /// Entries in it.
    pub count: u32,
}

/// The sharded snapshot's manifest: which version of each shard is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Ledger version.
    pub version: u64,
    /// `2^bits` shards.
    pub bits: u8,
    /// One per shard, by index.
    pub shards: Vec<ShardRef>,
}

impl Manifest {
    /// Binary, big-endian: `"EWRM" | 3 | version u64 | bits u8 | (version u64 | count u32) per shard`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + 12 * self.shards.len());
        out.extend_from_slice(MANIFEST_MAGIC);
        out.push(SHARDED_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.bits);
        for s in &self.shards {
            out.extend_from_slice(&s.version.to_be_bytes());
            out.extend_from_slice(&s.count.to_be_bytes());
        }
        out
    }

    /// Reads a manifest; anything malformed is an error.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, SnapshotError> {
        if bytes.len() < 14 || &bytes[..4] != MANIFEST_MAGIC {
            return Err(SnapshotError("not an Edgeward revocation manifest"));
        }
        if bytes[4] != SHARDED_FORMAT {
            return Err(SnapshotError("unsupported manifest format"));
        }
        let bits = bytes[13];
        if bits > MAX_SHARD_BITS {
            return Err(SnapshotError("too many shards"));
        }
        let n = 1usize << bits;
        if bytes.len() != 14 + 12 * n {
            return Err(SnapshotError("manifest length disagrees with its shard count"));
        }
        let shards = bytes[14..].chunks_exact(12).map(|c| ShardRef { version: be_u64(&c[..8]), count: be_u32(&c[8..]) }).collect();
        Ok(Manifest { version: be_u64(&bytes[5..13]), bits, shards })
    }

    /// KV key of shard `index`.
    pub fn shard_key(&self, index: usize) -> String {
        shard_key(self.bits, index, self.shards.get(index).map_or(0, |s| s.version))
    }

    /// Total entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.count as usize).sum()
    }

    /// True if no shard holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    out.push(r.kind);
    out.extend_from_slice(&r.id.to_be_bytes());
    out.extend_from_slice(&r.expires_at.to_be_bytes());
    if r.kind == KIND_SUBJECT {
        out.extend_from_slice(&r.before.to_be_bytes());
    }
}

/// Shard `index` (of `2^bits`) at `version`, its records sorted by (kind, id): binary,
/// `"EWRS" | 3 | version u64 | bits u8 | index u16 | count u32 | records` (records as in format 2).
/// Every record's id must lie in the shard's range (the ledger selects them so).
pub fn encode_shard(version: u64, bits: u8, index: usize, records: &mut [Record]) -> Vec<u8> {
    heap_sort(records, |a, b| a < b);
    let mut out = Vec::with_capacity(SHARD_HEADER_LEN + records.len() * 25);
    out.extend_from_slice(SHARD_MAGIC);
    out.push(SHARDED_FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.push(bits);
    out.extend_from_slice(&u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_be_bytes());
    for r in records.iter() {
        put_record(&mut out, r);
    }
    out
}

/// Reads `count` records from `bytes` (which must hold exactly them), keeping those live at
/// `now`; every id must lie in `range`.
fn read_records(bytes: &[u8], count: usize, range: (u64, u64), now: i64) -> Result<Vec<Record>, SnapshotError> {
    // Every record is at least 17 bytes: refuse a count the bytes cannot hold before allocating.
    if count > bytes.len() / 17 {
        return Err(SnapshotError("count exceeds the data"));
    }
    let mut out = Vec::with_capacity(count);
    let mut i = 0;
    for _ in 0..count {
        let rec = bytes.get(i..i + 17).ok_or(SnapshotError("truncated record"))?;
        let (kind, id, expires_at) = (rec[0], be_u64(&rec[1..9]), be_u64(&rec[9..17]) as i64);
        i += 17;
        let before = match kind {
            KIND_SUBJECT => {
                let b = bytes.get(i..i + 8).ok_or(SnapshotError("truncated record"))?;
                i += 8;
                be_u64(b) as i64
            }
            KIND_JTI | KIND_KID | KIND_API_KEY => 0,
            _ => return Err(SnapshotError("unknown record kind")),
        };
        if id < range.0 || id > range.1 {
            return Err(SnapshotError("record outside its shard"));
        }
        if expires_at > now {
            out.push(Record { kind, id, expires_at, before });
        }
    }
    if i != bytes.len() {
        return Err(SnapshotError("trailing bytes"));
    }
    Ok(out)
}

/// Reads shard `index` of `2^bits` published at `version` (what the manifest names), keeping
/// the entries live at `now`. A shard whose header names another place or version is refused.
pub fn decode_shard(bytes: &[u8], bits: u8, index: usize, version: u64, now: i64) -> Result<Shard, SnapshotError> {
    if bytes.len() < SHARD_HEADER_LEN || &bytes[..4] != SHARD_MAGIC {
        return Err(SnapshotError("not an Edgeward revocation shard"));
    }
    if bytes[4] != SHARDED_FORMAT {
        return Err(SnapshotError("unsupported shard format"));
    }
    if be_u64(&bytes[5..13]) != version || bytes[13] != bits || usize::from(u16::from_be_bytes([bytes[14], bytes[15]])) != index {
        return Err(SnapshotError("shard is not the one the manifest names"));
    }
    let count = be_u32(&bytes[16..20]) as usize;
    let records = read_records(&bytes[SHARD_HEADER_LEN..], count, shard_range(bits, index), now)?;
    Ok(Shard::from_records(records, now))
}

/// Heapsort by `less`: O(n log n), in place, in a few dozen instructions, where the standard
/// library's sort instantiated for one more element type cost 1.6 KB of the gate's gzip bundle
/// (measured with bench/size.sh), which the Worker's size budget counts.
/// Revocation lists are sorted once per read or publish, never per request.
fn heap_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let sift = |v: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[root], &v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

/// Expiry as the edge stores it: Unix seconds in 32 bits (saturating: until 2106).
fn exp32(e: i64) -> u32 {
    e.clamp(0, i64::from(u32::MAX)) as u32
}

/// One kind's entries of one shard: ids sorted, with their expiries beside them (12 bytes per
/// entry; looked up by binary search).
#[derive(Debug, Clone, Default)]
struct Table {
    ids: Vec<u64>,
    expires: Vec<u32>,
}

impl Table {
    fn with_capacity(n: usize) -> Table {
        Table { ids: Vec::with_capacity(n), expires: Vec::with_capacity(n) }
    }

    fn find(&self, id: u64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    fn live(&self, id: u64, now: i64) -> bool {
        self.find(id).is_some_and(|i| i64::from(self.expires[i]) > now)
    }

    fn heap_bytes(&self) -> usize {
        self.ids.capacity() * 8 + self.expires.capacity() * 4
    }
}

/// The entries of one shard, per kind (see [`RevocationSet`]).
#[derive(Debug, Clone, Default)]
pub struct Shard {
    jti: Table,
    subject: Table,
    /// `before` of each subject watermark, beside `subject`.
    before: Vec<i64>,
    kid: Table,
    api_key: Table,
}

impl Shard {
    /// Builds a shard from records in any order, dropping those expired at `now` and merging
    /// duplicates (the later watermark wins with its expiry; otherwise the later expiry).
    pub fn from_records(mut records: Vec<Record>, now: i64) -> Shard {
        records.retain(|r| r.expires_at > now);
        // Sorted by kind, id, then the winner first: the latest `before`, then the latest expiry.
        heap_sort(&mut records, |a, b| (a.kind, a.id).cmp(&(b.kind, b.id)).then((b.before, b.expires_at).cmp(&(a.before, a.expires_at))).is_lt());
        records.dedup_by_key(|r| (r.kind, r.id));
        let count = |k: u8| records.iter().filter(|r| r.kind == k).count();
        let mut s = Shard {
            jti: Table::with_capacity(count(KIND_JTI)),
            subject: Table::with_capacity(count(KIND_SUBJECT)),
            before: Vec::with_capacity(count(KIND_SUBJECT)),
            kid: Table::with_capacity(count(KIND_KID)),
            api_key: Table::with_capacity(count(KIND_API_KEY)),
        };
        for r in &records {
            let t = match r.kind {
                KIND_JTI => &mut s.jti,
                KIND_SUBJECT => {
                    s.before.push(r.before);
                    &mut s.subject
                }
                KIND_KID => &mut s.kid,
                KIND_API_KEY => &mut s.api_key,
                // (Not from a snapshot, whose reader refuses unknown kinds: a record of no kind
                // revokes nothing.)
                _ => continue,
            };
            t.ids.push(r.id);
            t.expires.push(exp32(r.expires_at));
        }
        s
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.jti.ids.len() + self.subject.ids.len() + self.kid.ids.len() + self.api_key.ids.len()
    }

    /// True if it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes it holds.
    pub fn heap_bytes(&self) -> usize {
        self.jti.heap_bytes() + self.subject.heap_bytes() + self.before.capacity() * 8 + self.kid.heap_bytes() + self.api_key.heap_bytes()
    }

    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        fn table(kind: u8, t: &Table) -> impl Iterator<Item = Record> + '_ {
            t.ids.iter().zip(&t.expires).map(move |(id, e)| Record { kind, id: *id, expires_at: i64::from(*e), before: 0 })
        }
        let subjects = self.subject.ids.iter().zip(&self.subject.expires).zip(&self.before);
        table(KIND_JTI, &self.jti)
            .chain(subjects.map(|((id, e), b)| Record { kind: KIND_SUBJECT, id: *id, expires_at: i64::from(*e), before: *b }))
            .chain(table(KIND_KID, &self.kid))
            .chain(table(KIND_API_KEY, &self.api_key))
    }

    /// Which kinds it holds: jti, subject, kid, API key.
    fn present(&self) -> [bool; 4] {
        [!self.jti.ids.is_empty(), !self.subject.ids.is_empty(), !self.kid.ids.is_empty(), !self.api_key.ids.is_empty()]
    }
}

/// One shard of the set and the version it was published at (0: not read).
#[derive(Debug, Clone, Default)]
struct Slot {
    version: u64,
    shard: Shard,
}

/// The in-memory set the hot path checks: `2^bits` shards (by the top bits of the target id),
/// each holding per kind a sorted table of ids with their expiries (and `before` for subjects),
/// 12 bytes per entry (20 for a subject); a lookup is a binary search in one shard's table. Built
/// from the sharded snapshot one shard at a time ([`RevocationSet::install`]), or as one shard
/// from the format-2 snapshot ([`RevocationSet::from_compact`]) or full entries
/// ([`RevocationSet::from_snapshot`]); all give the same verdicts.
#[derive(Debug, Clone)]
pub struct RevocationSet {
    version: u64,
    bits: u8,
    slots: Vec<Slot>,
    /// Whether any shard holds a jti, a subject, a kid, an API key: a kind nobody revoked is
    /// not looked up (no id computed for it).
    present: [bool; 4],
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet { version: 0, bits: 0, slots: vec![Slot::default()], present: [false; 4] }
    }
}

impl RevocationSet {
    /// One shard holding `records` (expired ones at `now` dropped), at `version`.
    pub fn from_records(version: u64, records: Vec<Record>, now: i64) -> RevocationSet {
        let shard = Shard::from_records(records, now);
        RevocationSet { version, bits: 0, present: shard.present(), slots: vec![Slot { version, shard }] }
    }

    /// Builds the set from a snapshot, dropping entries already expired at `now`.
    pub fn from_snapshot(snap: &RevocationSnapshot, now: i64) -> RevocationSet {
        RevocationSet::from_records(snap.version, snap.entries.iter().map(Revocation::record).collect(), now)
    }

    /// An empty set laid out for `m`'s shards, none read yet (see [`RevocationSet::install`]).
    pub fn for_manifest(m: &Manifest) -> RevocationSet {
        RevocationSet { version: 0, bits: m.bits, slots: vec![Slot::default(); m.shards.len()], present: [false; 4] }
    }

    /// The shards of `m` this set does not hold at the version `m` names (`None`: laid out
    /// differently, so it must be rebuilt with [`RevocationSet::for_manifest`]).
    pub fn stale_shards(&self, m: &Manifest) -> Option<Vec<usize>> {
        (self.bits == m.bits && self.slots.len() == m.shards.len())
            .then(|| m.shards.iter().zip(&self.slots).enumerate().filter(|(_, (r, s))| r.version != s.version).map(|(i, _)| i).collect())
    }

    /// Puts `shard` (of a `2^bits` layout), published at `version`, in place `index`; a shard
    /// older than the one held is ignored. False — nothing installed — if the set is laid out
    /// differently or `index` is out of range.
    pub fn install(&mut self, bits: u8, index: usize, version: u64, shard: Shard) -> bool {
        match self.slots.get_mut(index).filter(|_| bits == self.bits) {
            Some(s) => {
                if version >= s.version {
                    *s = Slot { version, shard };
                }
                self.present = [0, 1, 2, 3].map(|k| self.slots.iter().any(|s| s.shard.present()[k]));
                true
            }
            None => false,
        }
    }

    /// Marks the set complete at manifest version `version` (every shard installed).
    pub fn set_version(&mut self, version: u64) {
        self.version = self.version.max(version);
    }

    /// The single-value compact snapshot (format 2) of this set: see the module docs.
    pub fn to_compact(&self) -> Vec<u8> {
        let mut records: Vec<Record> = self.slots.iter().flat_map(|s| s.shard.records()).collect();
        encode_compact(self.version, &mut records)
    }

    /// Reads a format-2 compact snapshot, dropping entries already expired at `now`. Anything
    /// malformed is an error (never a panic); the caller keeps its previous set.
    pub fn from_compact(bytes: &[u8], now: i64) -> Result<RevocationSet, SnapshotError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(SnapshotError("not an Edgeward revocation snapshot"));
        }
        if bytes[4] != COMPACT_FORMAT {
            return Err(SnapshotError("unsupported snapshot format"));
        }
        let version = be_u64(&bytes[5..13]);
        let count = be_u32(&bytes[13..17]) as usize;
        let records = read_records(&bytes[HEADER_LEN..], count, (0, u64::MAX), now)?;
        Ok(RevocationSet::from_records(version, records, now))
    }

    /// The snapshot version this set came from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.slots.len()
    }

    /// Number of entries held (some may have expired since they were read).
    pub fn len(&self) -> usize {
        self.slots.iter().map(|s| s.shard.len()).sum()
    }

    /// True if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the set holds.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>() + self.slots.iter().map(|s| s.shard.heap_bytes()).sum::<usize>()
    }

    fn shard(&self, id: u64) -> Option<&Shard> {
        self.slots.get(shard_of(id, self.bits)).map(|s| &s.shard)
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
        let [jti, sub, kid, key] = self.present;
        if let Some(j) = t.jti.filter(|_| jti) {
            let id = id_of("jti", &[t.iss, j]);
            if self.shard(id).is_some_and(|s| s.jti.live(id, now)) {
                return Err(AuthError::TokenRevoked);
            }
        }
        if let Some(s) = t.sub.filter(|_| sub) {
            let id = id_of("sub", &[t.iss, s]);
            if let Some(sh) = self.shard(id) {
                if let Some(i) = sh.subject.find(id) {
                    let (exp, before) = (i64::from(sh.subject.expires[i]), sh.before[i]);
                    // A token without iat cannot prove it was issued after the watermark.
                    if exp > now && t.iat.is_none_or(|iat| iat < before as f64) {
                        return Err(AuthError::TokenRevoked);
                    }
                }
            }
        }
        if let Some(k) = t.kid.filter(|_| kid) {
            let id = id_of("kid", &[k]);
            if self.shard(id).is_some_and(|s| s.kid.live(id, now)) {
                return Err(AuthError::TokenRevoked);
            }
        }
        if let Some(k) = t.api_key.filter(|_| key) {
            if self.api_key_revoked(k, now) {
                return Err(AuthError::ApiKeyInvalid(super::error::ApiKeyFailure::Revoked));
            }
        }
        Ok(())
    }

    /// True if the API key id is revoked at `now`.
    pub fn api_key_revoked(&self, key_id: &str, now: i64) -> bool {
        if !self.present[3] {
            return false;
        }
        let id = id_of("api_key", &[key_id]);
        self.shard(id).is_some_and(|s| s.api_key.live(id, now))
    }

    /// Distinct kinds present (for logs).
    pub fn kinds(&self) -> HashSet<&'static str> {
        let mut k = HashSet::new();
        for s in &self.slots {
            for (name, t) in [("jti", &s.shard.jti), ("subject_before", &s.shard.subject), ("kid", &s.shard.kid), ("api_key", &s.shard.api_key)] {
                if !t.ids.is_empty() {
                    k.insert(name);
                }
            }
        }
        k
    }
}

/// The format-2 compact snapshot of `records` at `version` (sorted here): see the module docs.
pub fn encode_compact(version: u64, records: &mut [Record]) -> Vec<u8> {
    heap_sort(records, |a, b| a < b);
    let mut out = Vec::with_capacity(HEADER_LEN + records.len() * 25);
    out.extend_from_slice(MAGIC);
    out.push(COMPACT_FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_be_bytes());
    for r in records.iter() {
        put_record(&mut out, r);
    }
    out
}

/// The whole sharded publication of `records` at `version` (expired ones at `now` left out):
/// the manifest and each non-empty shard's KV key and value, laid out as the ledger lays out a
/// list of that length. Tests, benchmarks and tools use it to publish a list at once.
pub fn sharded_snapshot(version: u64, records: Vec<Record>, now: i64) -> (Manifest, Vec<(String, Vec<u8>)>) {
    let live: Vec<Record> = records.into_iter().filter(|r| r.expires_at > now).collect();
    let bits = shard_bits_for(live.len(), 0);
    let mut per_shard: Vec<Vec<Record>> = vec![Vec::new(); 1 << bits];
    for r in live {
        per_shard[shard_of(r.id, bits)].push(r);
    }
    let mut shards = Vec::with_capacity(per_shard.len());
    let mut values = Vec::new();
    for (i, mut recs) in per_shard.into_iter().enumerate() {
        shards.push(ShardRef { version, count: u32::try_from(recs.len()).unwrap_or(u32::MAX) });
        if !recs.is_empty() {
            values.push((shard_key(bits, i, version), encode_shard(version, bits, i, &mut recs)));
        }
    }
    (Manifest { version, bits, shards }, values)
}
