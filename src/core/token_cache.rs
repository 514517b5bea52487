//! The verified-token cache: a bounded LRU keyed by the SHA-256 of the token, holding verified
//! claims so a repeated token skips parsing and signature checking. Pure state: `now` is a
//! parameter. Scope, revocation and rate checks still run on every hit (they are not cached).
//!
//! - An entry never outlives its token: it expires at `exp` (not `exp + leeway`), or earlier at
//!   insertion + `max_ttl_secs`.
//! - When an issuer's keys change (rotation, a key removed from the JWKS), entries verified by a
//!   key that is gone are dropped ([`TokenCache::retain_keys`]).

use super::verify::VerifiedToken;
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;

/// The `token_cache` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConfig {
    /// Most entries per isolate; `0` disables the cache (default 10000).
    pub capacity: usize,
    /// Longest an entry is kept, whatever its `exp` (default 300).
    pub max_ttl_secs: i64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig { capacity: 10_000, max_ttl_secs: 300 }
    }
}

impl TokenCacheConfig {
    /// Checks the section; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.capacity > 1_000_000 || self.max_ttl_secs < 0 {
            return Err(("token_cache".into(), "capacity at most 1000000, max_ttl_secs not negative".into()));
        }
        Ok(())
    }
}

/// Cache key: SHA-256 of the whole compact token.
pub type TokenHash = [u8; 32];

/// Hashes a token for the cache.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Clone)]
struct Entry {
    token: VerifiedToken,
    key_fingerprint: String,
    expires_at: i64,
}

/// The cache.
#[derive(Debug)]
pub struct TokenCache {
    lru: Option<LruCache<TokenHash, Entry>>,
    max_ttl_secs: i64,
}

impl TokenCache {
    /// A cache per `cfg` (disabled when `capacity` is 0).
    pub fn new(cfg: &TokenCacheConfig) -> TokenCache {
        TokenCache { lru: NonZeroUsize::new(cfg.capacity).map(LruCache::new), max_ttl_secs: cfg.max_ttl_secs }
    }

    /// The verified token for `hash`, if cached and not expired at `now` (expired entries are
    /// removed).
    pub fn get(&mut self, hash: &TokenHash, now: i64) -> Option<VerifiedToken> {
        let lru = self.lru.as_mut()?;
        match lru.get(hash) {
            Some(e) if now < e.expires_at => Some(e.token.clone()),
            Some(_) => {
                lru.pop(hash);
                None
            }
            None => None,
        }
    }

    /// Caches a token verified at `now` by the key with `key_fingerprint`.
    pub fn insert(&mut self, hash: TokenHash, token: VerifiedToken, key_fingerprint: String, now: i64) {
        let Some(lru) = self.lru.as_mut() else { return };
        let cap = now.saturating_add(self.max_ttl_secs);
        let expires_at = token.expires_at().map_or(cap, |exp| exp.min(cap));
        if expires_at > now {
            lru.put(hash, Entry { token, key_fingerprint, expires_at });
        }
    }

    /// Drops every entry of `issuer_index` whose key is not among `live_fingerprints`.
    pub fn retain_keys(&mut self, issuer_index: usize, live_fingerprints: &[&str]) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let dead: Vec<TokenHash> = lru
            .iter()
            .filter(|(_, e)| e.token.issuer_index() == issuer_index && !live_fingerprints.contains(&e.key_fingerprint.as_str()))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            lru.pop(k);
        }
        dead.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
