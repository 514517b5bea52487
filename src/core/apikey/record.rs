//! The stored record of a key id (owner, scopes, tier, client IP ranges, validity, status, its
//! secrets across rotations) and the check a presented key passes at the edge
//! ([`KeyRecord::check`]), which alone makes a [`VerifiedApiKey`].

use super::format::{KeyEnv, KeyHash};
use crate::core::access::Requirement;
use crate::core::error::{ApiKeyFailure, AuthError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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
    expires_at: Option<i64>,
}

impl VerifiedApiKey {
    /// When it stops being usable (Unix seconds): the key's expiry or the end of this secret's
    /// rotation overlap, whichever is first.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
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
        crate::core::scope::require_scopes(|s| self.scopes.iter().any(|h| h == s), requirement)
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
        let expires_at = match (self.expires_at, secret.not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(VerifiedApiKey { id: self.id.clone(), owner: self.owner.clone(), scopes: self.scopes.clone(), tier: self.tier.clone(), expires_at })
    }
}
