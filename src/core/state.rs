//! Per-isolate state, in one owner: everything the gate remembers between requests (the
//! verified-token cache, each issuer's JWKS cache, the API key lookup cache, the edge copy of the
//! revocation set, the local rate limiter). It is built from a policy and dropped with it, so a
//! configuration change resets all of it at once.
//!
//! Each part sits in its own `RefCell` and is borrowed only inside a synchronous call, never
//! across an `.await`: requests of one isolate interleave at their awaits.

use super::apikey::KeyRecord;
use super::config::Policy;
use super::jwt::JwtState;
use super::ratelimit::LocalLimiter;
use super::revocation::RevocationSet;
use lru::LruCache;
use std::cell::{Cell, RefCell};
use std::num::NonZeroUsize;
use std::rc::Rc;

/// A cached API key lookup (negative results too).
#[derive(Debug, Clone)]
pub(crate) struct CachedKey {
    pub(crate) record: Option<Rc<KeyRecord>>,
    pub(crate) until_ms: i64,
}

/// The isolate's copy of the published revocation set.
#[derive(Debug)]
pub(crate) struct EdgeRevocations {
    pub(crate) set: RevocationSet,
    /// When the snapshot was last read successfully (None: never).
    pub(crate) loaded_at: Option<i64>,
    /// When a read was last started.
    pub(crate) attempted_at: Option<i64>,
    /// A read is in flight: no second one starts (one at a time, so at most one read's
    /// transient memory), and requests that need its result wait for it.
    pub(crate) loading: bool,
    /// Requests waiting for the read in flight.
    pub(crate) waiters: Vec<std::task::Waker>,
}

/// The isolate's copy of the published block list ([`super::ipblock`]).
#[derive(Debug, Default)]
pub(crate) struct EdgeBlocks {
    pub(crate) set: super::ipblock::BlockSet,
    /// When the list was last read successfully (None: never).
    pub(crate) loaded_at: Option<i64>,
    /// When a read was last started.
    pub(crate) attempted_at: Option<i64>,
    /// When a read last failed (None: the last one succeeded, or none ended yet).
    pub(crate) failed_at: Option<i64>,
}

/// Inactive opaque tokens remembered per isolate.
pub const INACTIVE_CAPACITY: usize = 10_000;

/// Everything the gate keeps between requests (see the module docs).
#[derive(Debug)]
pub struct IsolateState {
    /// The JWT step's: the verified-token cache, each issuer's JWKS cache and discovered metadata.
    pub(crate) jwt: JwtState,
    pub(crate) keys: RefCell<LruCache<[u8; 32], CachedKey>>,
    pub(crate) revocations: RefCell<EdgeRevocations>,
    pub(crate) blocks: RefCell<EdgeBlocks>,
    pub(crate) limiter: RefCell<LocalLimiter>,
    /// Live-key evictions of the limiter last logged, and when (ms; see `Gate::local_limit`).
    pub(crate) evictions_reported: Cell<(u64, i64)>,
    /// Opaque tokens their issuer answered inactive for, by hash, until when (seconds).
    pub(crate) inactive: RefCell<LruCache<[u8; 32], i64>>,
    /// The DPoP proofs accepted, until each could no longer be accepted anyway.
    pub(crate) dpop_replay: RefCell<super::dpop::ReplayCache>,
    /// The usage counters, until the next flush.
    pub(crate) usage: RefCell<super::usage::UsageAggregator>,
}

impl IsolateState {
    /// Empty state for `policy`.
    pub fn new(policy: &Policy) -> IsolateState {
        IsolateState {
            jwt: JwtState::new(&policy.issuers, &policy.jwks_cache, &policy.token_cache),
            keys: RefCell::new(LruCache::new(NonZeroUsize::new(policy.api_keys.cache_capacity).unwrap_or(NonZeroUsize::MIN))),
            revocations: RefCell::new(EdgeRevocations {
                set: RevocationSet::default(),
                loaded_at: None,
                attempted_at: None,
                loading: false,
                waiters: Vec::new(),
            }),
            blocks: RefCell::default(),
            limiter: RefCell::new(LocalLimiter::new(policy.rate_limits.local_capacity)),
            dpop_replay: RefCell::new(super::dpop::ReplayCache::new(policy.dpop.replay_capacity)),
            inactive: RefCell::new(LruCache::new(NonZeroUsize::new(INACTIVE_CAPACITY).unwrap_or(NonZeroUsize::MIN))),
            evictions_reported: Cell::new((0, i64::MIN / 2)),
            usage: RefCell::new(super::usage::UsageAggregator::new(&policy.observability)),
        }
    }

    /// Installs issuer `i`'s keys as if just fetched ([`JwtState::install_jwks`]); false if the
    /// issuer has no `jwks_uri`.
    pub fn install_jwks(&self, i: usize, keys: super::jwk::KeySet, now: i64) -> bool {
        self.jwt.install_jwks(i, keys, now)
    }

    /// Number of cached verified tokens.
    pub fn cached_tokens(&self) -> usize {
        self.jwt.tokens.borrow().len()
    }

    /// Bytes the cached verified tokens hold ([`super::token_cache::TokenCache::bytes`]).
    pub fn cached_token_bytes(&self) -> usize {
        self.jwt.tokens.borrow().bytes()
    }

    /// Number of cached API key lookups.
    pub fn cached_keys(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Usage counter entries held until the next flush ([`super::usage`]).
    pub fn usage_entries(&self) -> usize {
        self.usage.borrow().len()
    }

    /// Number of active revocations in the edge copy.
    pub fn revocations(&self) -> usize {
        self.revocations.borrow().set.len()
    }
}
