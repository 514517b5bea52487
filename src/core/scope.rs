//! The scope check tokens and API keys share.

use super::access::Requirement;
use super::error::AuthError;

/// Checks that the scopes `requirement` lists are all `held` (tokens and API keys alike).
pub(crate) fn require_scopes(held: impl Fn(&str) -> bool, requirement: &Requirement) -> Result<(), AuthError> {
    let Requirement::Token { scopes } = requirement else { return Ok(()) };
    if let Some(missing) = scopes.iter().find(|s| !held(s)) {
        return Err(AuthError::InsufficientScope { required: scopes.join(" "), missing: missing.clone() });
    }
    Ok(())
}
