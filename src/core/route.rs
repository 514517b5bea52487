//! Route rules: which paths and methods are public and which scopes a token needs.
//! First match wins; a path no rule matches needs a valid token and no particular scope.

use serde::Deserialize;

/// One route rule as written in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `/exact`, or `/prefix/*` (matches `/prefix` and everything below it), or `*` for all.
    pub path: String,
    /// Methods this rule applies to (upper case); absent = all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// No credential needed.
    #[serde(default)]
    pub public: bool,
    /// Scopes the token must all hold (from its `scope` string or `scp` array).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Strict revocation: also ask the revocation ledger itself on every request (no propagation
    /// delay, one Durable Object round trip).
    #[serde(default)]
    pub sensitive: bool,
    /// Which credentials the route takes: `jwt` (default), `api_key` or `either`.
    #[serde(default)]
    pub auth: Accepts,
    /// Name of an `upstream_credentials` entry: the origin credential set on forwarded requests
    /// in place of the client's.
    #[serde(default)]
    pub upstream_credential: Option<String>,
}

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

/// The validated route table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Validates the rules. The error is (index, message).
    pub fn new(routes: Vec<Route>) -> Result<RouteTable, (usize, String)> {
        let mut out = Vec::with_capacity(routes.len());
        for (i, mut r) in routes.into_iter().enumerate() {
            if !(r.path == "*" || r.path.starts_with('/')) {
                return Err((i, "path must start with / (or be *)".into()));
            }
            if r.path.contains('*') && !(r.path == "*" || (r.path.ends_with("/*") && r.path.matches('*').count() == 1)) {
                return Err((i, "* is only allowed as the last segment (/prefix/*)".into()));
            }
            if r.public && (!r.scopes.is_empty() || r.sensitive) {
                return Err((i, "a public route cannot require scopes".into()));
            }
            if r.public && r.upstream_credential.is_some() {
                return Err((i, "a public route cannot inject an upstream credential (anyone could use it)".into()));
            }
            if let Some(m) = &mut r.methods {
                for x in m.iter_mut() {
                    if x.is_empty() || !x.chars().all(|c| c.is_ascii_alphabetic()) {
                        return Err((i, format!("bad method {x:?}")));
                    }
                    *x = x.to_ascii_uppercase();
                }
            }
            if r.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                return Err((i, "scopes must be non-empty and contain no spaces".into()));
            }
            out.push(r);
        }
        Ok(RouteTable { routes: out })
    }

    /// The first rule matching the request, if any.
    pub fn rule(&self, method: &str, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| path_matches(&r.path, path) && r.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method))))
    }

    /// Every rule, in order.
    pub fn rules(&self) -> &[Route] {
        &self.routes
    }

    /// True if the first rule matching the request is marked `sensitive`.
    pub fn is_sensitive(&self, method: &str, path: &str) -> bool {
        self.rule(method, path).is_some_and(|r| r.sensitive)
    }

    /// Which credentials the request's route takes (unmatched paths: JWTs).
    pub fn accepts(&self, method: &str, path: &str) -> Accepts {
        self.rule(method, path).map_or(Accepts::Jwt, |r| r.auth)
    }

    /// What a request for `method` and `path` needs.
    pub fn requirement(&self, method: &str, path: &str) -> Requirement {
        match self.rule(method, path) {
            // Never grant public access to a path an origin might decode into another one.
            Some(r) if r.public && is_ambiguous_path(path) => Requirement::Token { scopes: Vec::new() },
            Some(r) if r.public => Requirement::Public,
            Some(r) => Requirement::Token { scopes: r.scopes.clone() },
            None => Requirement::Token { scopes: Vec::new() },
        }
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => {
            path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/')) || prefix.is_empty()
        }
        None => path == pattern,
    }
}

/// Encoded slashes or backslashes, or dot segments: an origin could read such a path differently.
fn is_ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') || lower.contains("%2e")
        || path.split('/').any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: serde_json::Value) -> RouteTable {
        RouteTable::new(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn first_match_wins_and_default_needs_token() {
        let t = table(serde_json::json!([
            {"path": "/public/*", "public": true},
            {"path": "/admin/*", "scopes": ["admin"]},
            {"path": "/health", "methods": ["get"], "public": true}
        ]));
        assert_eq!(t.requirement("GET", "/public"), Requirement::Public);
        assert_eq!(t.requirement("POST", "/public/a/b"), Requirement::Public);
        assert_eq!(t.requirement("GET", "/publicity"), Requirement::Token { scopes: vec![] });
        assert_eq!(t.requirement("GET", "/admin/x"), Requirement::Token { scopes: vec!["admin".into()] });
        assert_eq!(t.requirement("GET", "/health"), Requirement::Public);
        assert_eq!(t.requirement("POST", "/health"), Requirement::Token { scopes: vec![] });
        assert_eq!(t.requirement("GET", "/other"), Requirement::Token { scopes: vec![] });
    }

    #[test]
    fn ambiguous_paths_never_public() {
        let t = table(serde_json::json!([{"path": "/public/*", "public": true}]));
        for p in ["/public/..%2Fadmin", "/public/%2e%2e/admin", "/public/../admin", "/public\\x"] {
            assert_eq!(t.requirement("GET", p), Requirement::Token { scopes: vec![] }, "{p}");
        }
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let bad = |v: serde_json::Value| RouteTable::new(serde_json::from_value(v).unwrap()).unwrap_err().0;
        assert_eq!(bad(serde_json::json!([{"path": "/ok"}, {"path": "nope"}])), 1);
        assert_eq!(bad(serde_json::json!([{"path": "/a*"}])), 0);
        assert_eq!(bad(serde_json::json!([{"path": "/a/*", "public": true, "scopes": ["x"]}])), 0);
    }
}
