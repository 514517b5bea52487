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

    /// True if the first rule matching the request is marked `sensitive`.
    pub fn is_sensitive(&self, method: &str, path: &str) -> bool {
        self.routes
            .iter()
            .find(|r| path_matches(&r.path, path) && r.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method))))
            .is_some_and(|r| r.sensitive)
    }

    /// What a request for `method` and `path` needs.
    pub fn requirement(&self, method: &str, path: &str) -> Requirement {
        for r in &self.routes {
            if !path_matches(&r.path, path) {
                continue;
            }
            if let Some(ms) = &r.methods {
                if !ms.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                    continue;
                }
            }
            if r.public {
                // Never grant public access to a path an origin might decode into another one.
                if is_ambiguous_path(path) {
                    return Requirement::Token { scopes: Vec::new() };
                }
                return Requirement::Public;
            }
            return Requirement::Token { scopes: r.scopes.clone() };
        }
        Requirement::Token { scopes: Vec::new() }
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
