//! What a route asks of a request: the kinds of credential it takes ([`Accepts`]) and what the
//! credential must hold ([`Requirement`]). Plain data, shared by the route table, the verifiers
//! and the error mapping; it imports nothing from the rest of the crate.

use serde::Deserialize;

/// The kinds of credential a route takes.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Accepts {
    /// Bearer JWTs (header, cookie or query), the default.
    #[default]
    Jwt,
    /// API keys only.
    ApiKey,
    /// Either.
    Either,
}

impl std::fmt::Display for Accepts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accepts::Jwt => "jwt",
            Accepts::ApiKey => "api_key",
            Accepts::Either => "either",
        })
    }
}

/// What a request needs, as decided by the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Forward without a credential.
    Public,
    /// A valid token holding all these scopes.
    Token {
        /// Required scopes (may be empty).
        scopes: Vec<String>,
    },
}
