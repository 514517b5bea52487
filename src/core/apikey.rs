//! API keys, with no I/O: the key format (prefix, random body, checksum), the keyed hash that is
//! the only thing ever stored, the stored record (owner, scopes, tier, client IP ranges, validity,
//! status, the secrets of one key id across rotations), and the check a presented key must pass.
//!
//! # Format
//! `ew_<env>_<body><checksum>`: `env` is `live` or `test`; `body` is 32 base62 characters from
//! the CSPRNG (190 bits); `checksum` is the CRC32 of everything before it, as 6 base62 digits.
//! Secret scanners can match it with [`KEY_PATTERN`]:
//!
//! ```text
//! \bew_(?:live|test)_[0-9A-Za-z]{38}\b
//! ```
//!
//! The checksum lets the edge refuse a mistyped or made-up key with no lookup at all (every
//! single-character change is caught: CRC32 detects every burst error of up to 32 bits).
//!
//! # Storage
//! Only `HMAC-SHA-256(pepper, key)` is stored ([`key_hash`]); the pepper is a Worker secret, so a
//! leaked KV namespace gives nothing to try offline. The plain key is shown once, at creation.

use super::access::Requirement;
use super::error::{ApiKeyFailure, AuthError, FormatError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// The regular expression a secret scanner can use to find Edgeward keys.
pub const KEY_PATTERN: &str = r"\bew_(?:live|test)_[0-9A-Za-z]{38}\b";
/// Base62 characters of random body.
pub const BODY_LEN: usize = 32;
/// Base62 digits of checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Random bytes [`generate`] needs (more than the body: bytes ≥ 248 are skipped so every
/// character is uniform).
pub const RANDOM_BYTES: usize = 64;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key belongs to; a deployment accepts only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEnv {
    /// `ew_live_`.
    Live,
    /// `ew_test_`.
    Test,
}

impl KeyEnv {
    /// The key prefix, `ew_live_` or `ew_test_`.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyEnv::Live => "ew_live_",
            KeyEnv::Test => "ew_test_",
        }
    }
}

/// A presented key whose format and checksum are right. Nothing is known about whether it exists.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    text: &'a str,
    env: KeyEnv,
}

impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresentedKey({:?}, {})", self.env, super::log::fingerprint(self.text.as_bytes()))
    }
}

impl<'a> PresentedKey<'a> {
    /// Checks prefix, shape and checksum (and, when given, the environment), offline.
    pub fn parse(text: &'a str, expected: Option<KeyEnv>) -> Result<PresentedKey<'a>, FormatError> {
        let env = if text.starts_with(KeyEnv::Live.prefix()) {
            KeyEnv::Live
        } else if text.starts_with(KeyEnv::Test.prefix()) {
            KeyEnv::Test
        } else {
            return Err(FormatError::Prefix);
        };
        let rest = &text[env.prefix().len()..];
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormatError::Shape);
        }
        let (signed, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum(signed).as_bytes().ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
            return Err(FormatError::Checksum);
        }
        if expected.is_some_and(|e| e != env) {
            return Err(FormatError::Environment);
        }
        Ok(PresentedKey { text, env })
    }

    /// The key's environment.
    pub fn env(&self) -> KeyEnv {
        self.env
    }

    /// The key text (never log it; log [`super::log::fingerprint`] of it).
    pub fn as_str(&self) -> &'a str {
        self.text
    }
}

/// CRC-32 (ISO-HDLC, as zlib and GitHub's tokens) with a 1 KB table: the default 16 KB
/// slice-by-16 table would cost the Worker bundle more than the key check gains.
const CRC32: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

/// CRC32 of `signed` as 6 base62 digits (62^6 > 2^32), most significant first.
fn checksum(signed: &str) -> String {
    let mut v = u64::from(CRC32.checksum(signed.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Makes a new key of `env` from `random` (from the CSPRNG). `None` in the astronomically
/// unlikely case that too many bytes were skipped; call again with fresh bytes.
pub fn generate(env: KeyEnv, random: &[u8; RANDOM_BYTES]) -> Option<String> {
    let mut body = String::with_capacity(BODY_LEN);
    // 248 = 4 × 62: bytes below it map uniformly onto the alphabet.
    for &b in random.iter().filter(|&&b| b < 248).take(BODY_LEN) {
        body.push(ALPHABET[usize::from(b % 62)] as char);
    }
    if body.len() < BODY_LEN {
        return None;
    }
    let signed = format!("{}{body}", env.prefix());
    let sum = checksum(&signed);
    Some(signed + &sum)
}

/// A key id: `key_` and 24 hex digits from `random`. Safe to log and to show.
pub fn key_id(random: &[u8; 12]) -> String {
    format!("key_{}", hex::encode(random))
}

/// The keyed hash stored for a key: HMAC-SHA-256 under the pepper.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lower-case hex (the storage key).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let v = hex::decode(s).ok()?;
        Some(KeyHash(v.try_into().ok()?))
    }
    /// Constant-time equality (the stored hash against the presented key's).
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({}…)", &self.hex()[..12])
    }
}

/// `HMAC-SHA-256(pepper, key)`. (`None` cannot happen — HMAC takes keys of any length — but
/// if it did, callers fail closed rather than hash every key to one value.)
pub fn key_hash(pepper: &[u8], key: &PresentedKey<'_>) -> Option<KeyHash> {
    use hmac::{Mac, SimpleHmac};
    // SimpleHmac over the same SHA-256 the rest of the crate links (no second implementation).
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(pepper).ok()?;
    mac.update(key.as_str().as_bytes());
    Some(KeyHash(mac.finalize().into_bytes().into()))
}

/// An allowed client range: `203.0.113.0/24`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Parses a CIDR or a bare address (a host route). Host bits must be zero
    /// (`10.0.0.1/8` is refused as ambiguous).
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let addr = s.split('/').next().unwrap_or(s);
        // `010.0.0.0/8` means 8.0.0.0/8 to some tools (octal): refuse leading zeros outright.
        if !addr.contains(':') && addr.split('.').any(|o| o.len() > 1 && o.starts_with('0')) {
            return None;
        }
        let net = match s.parse::<ipnet::IpNet>() {
            Ok(net) if net.trunc() == net => net,
            Ok(_) => return None,
            Err(_) => ipnet::IpNet::from(s.parse::<IpAddr>().ok()?),
        };
        // Clients are compared in canonical form (a mapped address as IPv4), so a mapped range
        // is stored as the IPv4 range it stands for; a mapped prefix shorter than /96 spans
        // non-mapped addresses and is refused as ambiguous.
        if let ipnet::IpNet::V6(v6) = net {
            if let Some(v4) = v6.addr().to_ipv4_mapped() {
                let len = v6.prefix_len().checked_sub(96)?;
                return ipnet::Ipv4Net::new(v4, len).ok().map(|n| Cidr(ipnet::IpNet::V4(n)));
            }
        }
        Some(Cidr(net))
    }

    /// True if `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Status of a key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Refused everywhere (kept for audit until deleted).
    Disabled,
}

/// One secret of a key id. Rotation adds one and gives the previous ones an end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySecret {
    /// `HMAC-SHA-256(pepper, key)`, hex.
    pub hash: String,
    /// When it was issued (Unix seconds).
    pub created_at: i64,
    /// After this (Unix seconds) it no longer works: set on the old secret by a rotation.
    #[serde(default)]
    pub not_after: Option<i64>,
}

/// Everything stored about one key id (its lineage across rotations). Stored once under the id
/// and once under each secret's hash, so the edge needs one read per lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Key id (`key_…`), stable across rotations.
    pub id: String,
    /// Who holds it (forwarded as the subject).
    pub owner: String,
    /// Free-text label for operators.
    #[serde(default)]
    pub description: String,
    /// Scopes it grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rate-limit tier (a key of a rule's `tiers`).
    #[serde(default)]
    pub tier: Option<String>,
    /// Client ranges allowed (`CF-Connecting-IP`); empty = any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Not usable before (Unix seconds).
    #[serde(default)]
    pub not_before: Option<i64>,
    /// Not usable from (Unix seconds).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Active or disabled.
    pub status: KeyStatus,
    /// Its environment.
    pub env: KeyEnv,
    /// When the id was created.
    pub created_at: i64,
    /// Its secrets, oldest first.
    pub secrets: Vec<KeySecret>,
}

/// An API key that passed every check: only [`KeyRecord::check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedApiKey {
    id: String,
    owner: String,
    scopes: Vec<String>,
    tier: Option<String>,
}

impl VerifiedApiKey {
    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }
    /// Granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// Rate-limit tier.
    pub fn tier(&self) -> Option<&str> {
        self.tier.as_deref()
    }
    /// Checks a route requirement against the key's scopes.
    pub fn authorize(&self, requirement: &Requirement) -> Result<(), AuthError> {
        super::scope::require_scopes(&self.scopes, requirement)
    }
}

impl KeyRecord {
    /// The check a presented key goes through once its record is found under `hash`: the stored
    /// hash must equal it (constant time), then status, validity window of the id and of this
    /// secret, and the client IP. Every failure but the IP one is the same `api_key_invalid`
    /// to the client, so nobody learns whether a key exists.
    pub fn check(&self, hash: &KeyHash, env: KeyEnv, now: i64, ip: Option<IpAddr>) -> Result<VerifiedApiKey, AuthError> {
        let fail = |f| Err(AuthError::ApiKeyInvalid(f));
        let mut found = None;
        for s in &self.secrets {
            // Every stored secret is compared, in constant time, whatever matched before.
            if KeyHash::from_hex(&s.hash).is_some_and(|h| h.ct_eq(hash)) {
                found = Some(s);
            }
        }
        let Some(secret) = found else { return fail(ApiKeyFailure::Unknown) };
        if self.env != env {
            return fail(ApiKeyFailure::Unknown);
        }
        if self.status == KeyStatus::Disabled {
            return fail(ApiKeyFailure::Disabled);
        }
        if self.not_before.is_some_and(|t| now < t) {
            return fail(ApiKeyFailure::NotYetValid);
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return fail(ApiKeyFailure::Expired);
        }
        if secret.not_after.is_some_and(|t| now >= t) {
            return fail(ApiKeyFailure::RotatedOut);
        }
        if !self.allowed_ips.is_empty() {
            let allowed = ip.is_some_and(|ip| self.allowed_ips.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip)));
            if !allowed {
                return Err(AuthError::IpNotAllowed);
            }
        }
        Ok(VerifiedApiKey { id: self.id.clone(), owner: self.owner.clone(), scopes: self.scopes.clone(), tier: self.tier.clone() })
    }

    /// The admin view: everything but the hashes (each secret shows a short fingerprint of its
    /// hash instead, so two listings can be compared).
    pub fn public_view(&self, now: i64) -> serde_json::Value {
        let secrets: Vec<serde_json::Value> = self
            .secrets
            .iter()
            .map(|s| {
                serde_json::json!({
                    "fingerprint": super::log::fingerprint(s.hash.as_bytes()),
                    "created_at": s.created_at,
                    "not_after": s.not_after,
                    "active": s.not_after.is_none_or(|t| now < t),
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id, "owner": self.owner, "description": self.description, "scopes": self.scopes,
            "tier": self.tier, "allowed_ips": self.allowed_ips, "not_before": self.not_before,
            "expires_at": self.expires_at, "status": self.status, "env": self.env,
            "created_at": self.created_at, "secrets": secrets,
        })
    }

    /// Rotation: a successor secret; every current secret keeps working until `old_until`
    /// (at most now, at the earliest), then stops. Secrets already past their end are dropped.
    /// Returns the hashes dropped (their storage entries go).
    pub fn rotate(&mut self, new_hash: &KeyHash, old_until: i64, now: i64) -> Vec<String> {
        let old_until = old_until.max(now);
        let mut dropped = Vec::new();
        self.secrets.retain(|s| {
            let keep = s.not_after.is_none_or(|t| t > now);
            if !keep {
                dropped.push(s.hash.clone());
            }
            keep
        });
        for s in &mut self.secrets {
            s.not_after = Some(s.not_after.map_or(old_until, |t| t.min(old_until)));
        }
        self.secrets.push(KeySecret { hash: new_hash.hex(), created_at: now, not_after: None });
        dropped
    }
}

/// Most secrets alive at once for one key id (rotations in flight).
pub const MAX_SECRETS: usize = 4;

/// An operator's request to create a key (the admin API body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Who holds it.
    pub owner: String,
    /// Label.
    #[serde(default)]
    pub description: String,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rate-limit tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Allowed client ranges.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Not usable before (Unix seconds).
    #[serde(default)]
    pub not_before: Option<i64>,
    /// Not usable from (Unix seconds).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Why an admin request is refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidKeyRequest {
    /// The offending field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, InvalidKeyRequest> {
    Err(InvalidKeyRequest { field: field.into(), message: message.into() })
}

fn printable(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(char::is_control)
}

impl NewKey {
    /// Validates and builds the record of a new key id with its first secret.
    pub fn into_record(self, id: String, hash: &KeyHash, env: KeyEnv, now: i64) -> Result<KeyRecord, InvalidKeyRequest> {
        if self.owner.is_empty() || !printable(&self.owner, 256) {
            return invalid("owner", "1-256 printable characters");
        }
        if !printable(&self.description, 256) {
            return invalid("description", "at most 256 printable characters");
        }
        if self.scopes.len() > 64 {
            return invalid("scopes", "at most 64 scopes");
        }
        for (i, s) in self.scopes.iter().enumerate() {
            if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
                return invalid(format!("scopes[{i}]"), "1-128 visible ASCII characters, no spaces");
            }
        }
        if let Some(t) = &self.tier {
            if t.is_empty() || !printable(t, 64) {
                return invalid("tier", "1-64 printable characters");
            }
        }
        if self.allowed_ips.len() > 64 {
            return invalid("allowed_ips", "at most 64 ranges");
        }
        let mut allowed_ips = Vec::with_capacity(self.allowed_ips.len());
        for (i, c) in self.allowed_ips.iter().enumerate() {
            match Cidr::parse(c) {
                Some(c) => allowed_ips.push(c.to_string()),
                None => return invalid(format!("allowed_ips[{i}]"), "an IPv4/IPv6 address or CIDR with zero host bits"),
            }
        }
        if let Some(e) = self.expires_at {
            if e <= now {
                return invalid("expires_at", "must be in the future");
            }
            if self.not_before.is_some_and(|nb| nb >= e) {
                return invalid("not_before", "must be before expires_at");
            }
        }
        if self.not_before.is_some_and(|nb| nb < 0) {
            return invalid("not_before", "a Unix time");
        }
        Ok(KeyRecord {
            id,
            owner: self.owner,
            description: self.description,
            scopes: self.scopes,
            tier: self.tier,
            allowed_ips,
            not_before: self.not_before,
            expires_at: self.expires_at,
            status: KeyStatus::Active,
            env,
            created_at: now,
            secrets: vec![KeySecret { hash: hash.hex(), created_at: now, not_after: None }],
        })
    }
}

/// Storage key of a key id's record.
pub fn id_storage_key(id: &str) -> String {
    format!("{ID_PREFIX}{id}")
}

/// Storage key of the record found by a secret's hash.
pub fn hash_storage_key(hash_hex: &str) -> String {
    format!("apikey:v1:h:{hash_hex}")
}

/// Worker secret holding the pepper (at least 32 characters).
pub const PEPPER_SECRET: &str = "EDGEWARD_API_KEY_PEPPER";

/// Prefix of the id records (listing).
pub const ID_PREFIX: &str = "apikey:v1:id:";

/// True if `id` has the shape of a key id (`key_` and 24 hex digits).
pub fn is_key_id(id: &str) -> bool {
    id.strip_prefix("key_").is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_the_pattern_shape() {
        let k = generate(KeyEnv::Test, &[7u8; RANDOM_BYTES]).unwrap();
        assert!(k.starts_with("ew_test_"));
        assert_eq!(k.len(), 8 + BODY_LEN + CHECKSUM_LEN);
        assert_eq!(PresentedKey::parse(&k, Some(KeyEnv::Test)).unwrap().env(), KeyEnv::Test);
        assert_eq!(PresentedKey::parse(&k, Some(KeyEnv::Live)), Err(FormatError::Environment));
    }

    #[test]
    fn too_many_skipped_bytes_yield_none() {
        assert_eq!(generate(KeyEnv::Live, &[250u8; RANDOM_BYTES]), None);
    }
}
