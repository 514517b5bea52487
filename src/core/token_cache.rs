//! The verified-token cache: a bounded LRU keyed by the SHA-256 of the token, holding verified
//! tokens so a repeated token skips parsing and signature checking. Pure state: `now` is a
//! parameter. Scope, revocation and rate checks still run on every hit (they are not cached).
//!
//! - An entry keeps only what a hit needs, packed ([`CachedToken`]: issuer, key id, algorithm,
//!   `exp`, scopes and the claims the policy reads), never the whole payload.
//! - Two bounds, whichever is reached first evicts the least recently used entries: `capacity`
//!   entries and `max_bytes` bytes ([`TokenCache::bytes`]: an estimate of the heap each entry
//!   holds, its share of the hash table included). An insertion evicts from the least recent
//!   end only until both bounds hold again (the bytes it adds, and no more); nothing scans the
//!   cache on the request path.
//! - An entry never outlives its token: it expires at `exp` (not `exp + leeway`), or earlier at
//!   insertion + `max_ttl_secs`.
//! - When an issuer's keys change (rotation, a key removed from the JWKS), entries verified by a
//!   key that is gone are dropped ([`TokenCache::retain_keys`]).

use super::log::{hex64, sha256_64};
use super::verify::{CachedToken, VerifiedToken};
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::mem::size_of;
use std::num::NonZeroUsize;

/// The `token_cache` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConfig {
    /// Most entries per isolate; `0` disables the cache (default 10000).
    pub capacity: usize,
    /// Most bytes the entries may hold per isolate, as [`TokenCache::bytes`] counts them
    /// (default 8 MiB: 10,000 entries of a typical token take about 3.5 MB, so for ordinary
    /// tokens the entry count binds; tokens with large forwarded claims are bounded by bytes).
    pub max_bytes: usize,
    /// Longest an entry is kept, whatever its `exp` (default 300).
    pub max_ttl_secs: i64,
}

/// The default `token_cache.max_bytes`.
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig { capacity: 10_000, max_bytes: DEFAULT_MAX_BYTES, max_ttl_secs: 300 }
    }
}

impl TokenCacheConfig {
    /// Checks the section; the error is (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.capacity > 1_000_000 || self.max_ttl_secs < 0 {
            return Err(("token_cache".into(), "capacity at most 1000000, max_ttl_secs not negative".into()));
        }
        if !(1 << 10..=1 << 30).contains(&self.max_bytes) {
            return Err(("token_cache.max_bytes".into(), "between 1024 and 1073741824 (1 GiB)".into()));
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

/// What an entry costs besides its token's own allocation: the key, the entry and the LRU's
/// two links, and two slots of the hash table (a key pointer, a node pointer and a control byte
/// each: the table is at most 7/8 full, and about half full just after it doubles).
const ENTRY_OVERHEAD: usize = size_of::<TokenHash>() + size_of::<Entry>() + 2 * size_of::<usize>() + 2 * (2 * size_of::<usize>() + 1);

#[derive(Debug, Clone)]
struct Entry {
    token: CachedToken,
    /// The verifying key's fingerprint ([`key_tag`]).
    key: u64,
    expires_at: i64,
}

impl Entry {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD + self.token.heap_bytes()
    }
}

/// A key fingerprint (`sha256:` + 16 hex digits) as the 64 bits it spells; any other text by the
/// first 64 bits of its SHA-256.
fn key_tag(fingerprint: &str) -> u64 {
    fingerprint.strip_prefix("sha256:").and_then(hex64).unwrap_or_else(|| sha256_64(fingerprint.as_bytes()))
}

/// The cache.
#[derive(Debug)]
pub struct TokenCache {
    lru: Option<LruCache<TokenHash, Entry>>,
    max_ttl_secs: i64,
    max_bytes: usize,
    bytes: usize,
}

impl TokenCache {
    /// A cache per `cfg` (disabled when `capacity` is 0). Its table grows with its entries.
    pub fn new(cfg: &TokenCacheConfig) -> TokenCache {
        TokenCache { lru: NonZeroUsize::new(cfg.capacity).map(LruCache::sparse), max_ttl_secs: cfg.max_ttl_secs, max_bytes: cfg.max_bytes, bytes: 0 }
    }

    /// The verified token for `hash`, if cached and not expired at `now` (expired entries are
    /// removed).
    pub fn get(&mut self, hash: &TokenHash, now: i64) -> Option<VerifiedToken> {
        let lru = self.lru.as_mut()?;
        match lru.get(hash) {
            Some(e) if now < e.expires_at => Some(e.token.token()),
            Some(_) => {
                if let Some(e) = lru.pop(hash) {
                    self.bytes -= e.bytes();
                }
                None
            }
            None => None,
        }
    }

    /// Caches a token verified at `now` by the key with `key_fingerprint`, then evicts the least
    /// recently used entries while either bound is exceeded. A token whose entry alone exceeds
    /// `max_bytes` is not cached.
    pub fn insert(&mut self, hash: TokenHash, token: &VerifiedToken, key_fingerprint: &str, now: i64) {
        self.insert_for(hash, token, key_fingerprint, now, self.max_ttl_secs);
    }

    /// [`Self::insert`] for at most `ttl_secs` (and never past `max_ttl_secs` or the token's
    /// `exp`): an introspection answer's `cache_ttl_secs`.
    pub fn insert_for(&mut self, hash: TokenHash, token: &VerifiedToken, key_fingerprint: &str, now: i64, ttl_secs: i64) {
        let Some(lru) = self.lru.as_mut() else { return };
        let cap = now.saturating_add(self.max_ttl_secs.min(ttl_secs));
        let expires_at = token.expires_at().map_or(cap, |exp| exp.min(cap));
        let entry = Entry { token: token.cached(), key: key_tag(key_fingerprint), expires_at };
        let size = entry.bytes();
        if expires_at <= now || size > self.max_bytes {
            return;
        }
        self.bytes += size;
        // `push` hands back the entry it replaced or the one the entry bound evicted.
        if let Some((_, old)) = lru.push(hash, entry) {
            self.bytes -= old.bytes();
        }
        while self.bytes > self.max_bytes {
            let Some((_, old)) = lru.pop_lru() else { break };
            self.bytes -= old.bytes();
        }
    }

    /// Drops every entry of `issuer_index` whose key is not among `live_fingerprints`.
    pub fn retain_keys(&mut self, issuer_index: usize, live_fingerprints: &[&str]) -> usize {
        let Some(lru) = self.lru.as_mut() else { return 0 };
        let live: Vec<u64> = live_fingerprints.iter().map(|f| key_tag(f)).collect();
        let dead: Vec<TokenHash> = lru.iter().filter(|(_, e)| e.token.issuer_index() == issuer_index && !live.contains(&e.key)).map(|(k, _)| *k).collect();
        for k in &dead {
            if let Some(e) = lru.pop(k) {
                self.bytes -= e.bytes();
            }
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

    /// Bytes the entries hold, as the `max_bytes` bound counts them: per entry, its token's one
    /// allocation (the packed facts), the key, the entry with its LRU links, and two hash table
    /// slots. An estimate of the heap they hold (the allocator's own rounding is not counted).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
