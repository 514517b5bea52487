//! What the admin API does to key records: validate a new key's request and build its record
//! ([`NewKey::into_record`]), rotate its secret ([`KeyRecord::rotate`]), show it without its
//! hashes ([`KeyRecord::public_view`]), and the storage keys and Worker secret it uses.

use super::format::{KeyEnv, KeyHash};
use super::record::{Cidr, KeyRecord, KeySecret, KeyStatus};
use serde::Deserialize;

impl KeyRecord {
    /// The admin view: everything but the hashes (each secret shows a short fingerprint of its
    /// hash instead, so two listings can be compared).
    pub fn public_view(&self, now: i64) -> serde_json::Value {
        let secrets: Vec<serde_json::Value> = self
            .secrets
            .iter()
            .map(|s| {
                serde_json::json!({
                    "fingerprint": crate::core::log::fingerprint(s.hash.as_bytes()),
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
