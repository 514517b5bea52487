//! Who a request was authenticated as: a verified JWT or a verified API key. Only the verifying
//! code can make either ([`VerifiedToken`] comes from `PendingToken::finish`, [`VerifiedApiKey`]
//! from `KeyRecord::check`), so a request cannot be forwarded as authenticated without one.

use super::access::Requirement;
use super::apikey::VerifiedApiKey;
use super::canonical::ClaimValue;
use super::claims::Claim;
use super::error::AuthError;
use super::verify::VerifiedToken;
use std::borrow::Cow;

/// A verified principal, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// A verified JWT.
    Token(&'a VerifiedToken),
    /// A verified API key.
    ApiKey(&'a VerifiedApiKey),
}

impl Identity<'_> {
    /// A claim as a header value. For an API key: `sub` is its owner, `client_id` / `azp` /
    /// `key_id` its id, `scope` its scopes (space-separated), `tier` its tier.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self {
            Identity::Token(t) => t.claim_text(name),
            Identity::ApiKey(k) => match name {
                "sub" => Some(k.owner().to_string()),
                "client_id" | "azp" | "key_id" => Some(k.id().to_string()),
                "scope" => (!k.scopes().is_empty()).then(|| k.scopes().join(" ")),
                "tier" => k.tier().map(str::to_owned),
                _ => None,
            },
        }
    }

    /// A claim as it is forwarded in a header (see [`super::canonical::claim_header_value`]):
    /// arrays of strings stay lists. `None` if absent, empty (`[]`) or of another shape (objects,
    /// mixed arrays).
    pub fn claim_value(&self, name: &str) -> Option<ClaimValue<'_>> {
        match self {
            Identity::Token(t) => match t.claim(name)? {
                Claim::Text(s) => Some(ClaimValue::Text(Cow::Borrowed(s))),
                c @ (Claim::Number(_) | Claim::Bool(_)) => Some(ClaimValue::Text(Cow::Owned(c.text()))),
                // An empty array is no value: no header is sent for it.
                Claim::List(items) if items.is_empty() => None,
                Claim::List(items) => Some(ClaimValue::List(items)),
            },
            Identity::ApiKey(_) => self.claim_text(name).map(|t| ClaimValue::Text(Cow::Owned(t))),
        }
    }

    /// The rate-limit tier: a token's `tier_claim`, or an API key's own tier.
    pub fn tier(&self, tier_claim: &str) -> Option<String> {
        match self {
            Identity::Token(t) => t.claim_text(tier_claim),
            Identity::ApiKey(k) => k.tier().map(str::to_owned),
        }
    }

    /// The API key id, for an API key.
    pub fn api_key_id(&self) -> Option<&str> {
        match self {
            Identity::Token(_) => None,
            Identity::ApiKey(k) => Some(k.id()),
        }
    }

    /// Checks the route's scopes.
    pub fn authorize(&self, requirement: &Requirement) -> Result<(), AuthError> {
        match self {
            Identity::Token(t) => t.authorize(requirement),
            Identity::ApiKey(k) => k.authorize(requirement),
        }
    }

    /// `jwt` or `api_key` (the `x-edgeward-auth` header and the logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Token(_) => "jwt",
            Identity::ApiKey(_) => "api_key",
        }
    }
}
