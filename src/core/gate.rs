//! Synchronous verification for callers that hold every key in memory (the CLI, the JS package,
//! tests): the same steps the Worker runs, in the same order, with one backend.

use super::config::Policy;
use super::crypto::SignatureBackend;
use super::error::AuthError;
use super::jwk::{Jwk, KeySet};
use super::token::UnverifiedToken;
use super::verify::{PendingToken, VerifiedToken};

/// The keys of each issuer that were fetched from its `jwks_uri` (index = issuer index).
/// Inline keys come from the policy itself.
pub trait FetchedKeys {
    /// Fetched keys of issuer `i`, if any are usable.
    fn fetched(&self, i: usize) -> Option<&KeySet>;
}

/// No fetched keys at all: inline `jwks` only.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineOnly;

impl FetchedKeys for InlineOnly {
    fn fetched(&self, _: usize) -> Option<&KeySet> {
        None
    }
}

impl FetchedKeys for [Option<KeySet>] {
    fn fetched(&self, i: usize) -> Option<&KeySet> {
        self.get(i).and_then(Option::as_ref)
    }
}

/// Every key the issuer may verify with: inline keys first, then fetched ones.
pub fn issuer_keys<'k>(policy: &'k Policy, fetched: Option<&'k KeySet>, issuer: usize) -> impl Iterator<Item = &'k Jwk> + Clone {
    policy.issuers[issuer].inline_keys.keys.iter().chain(fetched.into_iter().flat_map(|s| s.keys.iter()))
}

/// Verifies `token` at `now` with the keys at hand.
///
/// An unknown `kid` for an issuer that has a `jwks_uri` but no fetched keys is reported as
/// [`AuthError::JwksUnavailable`]: with no keys to look in, "unknown" would be a guess.
pub fn verify<F, B>(policy: &Policy, token: &str, keys: &F, backend: &B, now: i64) -> Result<VerifiedToken, AuthError>
where
    F: FetchedKeys + ?Sized,
    B: SignatureBackend + ?Sized,
{
    let unverified = UnverifiedToken::parse(token, policy.max_token_bytes)?;
    let pending = PendingToken::new(unverified, policy)?;
    let i = pending.issuer_index();
    let fetched = keys.fetched(i);
    let key = match pending.select_key(issuer_keys(policy, fetched, i)) {
        Err(AuthError::UnknownKid | AuthError::NoMatchingKey(_)) if fetched.is_none() && policy.issuers[i].jwks_uri.is_some() => {
            return Err(AuthError::JwksUnavailable)
        }
        other => other?,
    };
    let job = pending.job(key)?;
    let proof = backend.verify(&job)?;
    pending.finish(proof, key, policy, now)
}
