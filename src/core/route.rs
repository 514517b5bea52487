//! Route rules: which paths and methods are public and which scopes a token needs.
//! First match wins; a path no rule matches needs a valid token and no particular scope.
//!
//! Rules are matched against the canonical path ([`super::canonical`]), and patterns must
//! themselves be canonical (checked at config time), so one spelling decides. An exact rule
//! `/billing` also covers `/billing/`; `/billing/*` covers `/billing` and everything below it.
//! A rule for `GET` also covers `HEAD` (which origins serve as a `GET` without the body).

use super::access::{Accepts, Requirement};
use super::error::{AuthError, PathProblem};
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
    /// Match this rule's path ignoring ASCII case, for origins that route case-insensitively
    /// (Express's default, ASP.NET, IIS); absent = `request.case_insensitive`.
    #[serde(default)]
    pub case_insensitive: Option<bool>,
    /// Answer CORS for this rule's paths when the `cors` section is set (default true); `false`
    /// leaves preflights to the rule like any request and adds no CORS headers.
    #[serde(default = "yes")]
    pub cors: bool,
    /// Where this rule's requests go: an absolute `http(s)` URL or `service:NAME` (a service
    /// binding to another Worker); absent = the top-level `origin`.
    #[serde(default)]
    pub origin: Option<String>,
    /// Past this many milliseconds without the origin's response headers: `504
    /// origin_timeout`; absent = `origin_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Take WebSocket upgrades ([`super::websocket`]); without it an upgrade is refused
    /// (`websocket_not_allowed`), never forwarded.
    #[serde(default)]
    pub websocket: bool,
    /// DPoP on this rule ([`super::dpop`]): `required`, `allowed` (default) or `disabled`.
    #[serde(default)]
    pub dpop: super::dpop::DpopMode,
}

/// Shortest accepted origin timeout (ms).
pub const MIN_TIMEOUT_MS: u32 = 100;
/// Longest accepted origin timeout (ms): ten minutes.
pub const MAX_TIMEOUT_MS: u32 = 600_000;

fn yes() -> bool {
    true
}

/// The validated route table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Per rule: whether an exact rule also covers its path with a trailing slash (not when a
    /// `path/*` rule exists: then that rule decides the subtree, `path/` included).
    slash_cover: Vec<bool>,
    /// The default for rules that do not say (`request.case_insensitive`).
    case_insensitive: bool,
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
            if r.path != "*" {
                let literal = r.path.strip_suffix("/*").map_or(r.path.as_str(), |p| if p.is_empty() { "/" } else { p });
                let lenient = super::canonical::PathRules {
                    escaped_slashes: super::canonical::EscapedSlashes::Keep,
                    path_params: super::canonical::PathParams::Keep,
                    refuse_ascii_lookalikes: false,
                    windows_aliases: super::canonical::WindowsAliases::Keep,
                    max_path_bytes: 65_536,
                };
                match super::canonical::canonical_path(literal, &lenient) {
                    Ok(c) if c == literal => {}
                    Ok(c) => return Err((i, format!("path is not canonical: requests are matched as {c:?} (decoded unreserved characters, upper-case escapes, no dot segments or repeated slashes)"))),
                    Err(e) => return Err((i, format!("path is not canonical: {e}"))),
                }
            }
            if r.public && (!r.scopes.is_empty() || r.sensitive) {
                return Err((i, "a public route cannot require scopes".into()));
            }
            if let Some(o) = &r.origin {
                r.origin = Some(super::request::validate_origin(o).map_err(|m| (i, format!("origin {m}")))?);
            }
            if r.timeout_ms.is_some_and(|t| !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&t)) {
                return Err((i, format!("timeout_ms must be between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS}")));
            }
            if r.websocket && r.methods.as_ref().is_some_and(|m| !m.iter().any(|x| x.eq_ignore_ascii_case("GET"))) {
                return Err((i, "websocket needs GET among the rule's methods (an upgrade is a GET)".into()));
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
        let slash_cover = out.iter().map(|r| !r.path.ends_with('*') && !out.iter().any(|o| o.path.strip_suffix("/*") == Some(r.path.as_str()))).collect();
        Ok(RouteTable { routes: out, slash_cover, case_insensitive: false })
    }

    /// Sets the default for rules that do not say whether they match case-insensitively.
    pub fn with_case_insensitive(mut self, default: bool) -> RouteTable {
        self.case_insensitive = default;
        self
    }

    /// True if any rule matches case-insensitively (then ASCII look-alikes are refused).
    pub fn any_case_insensitive(&self) -> bool {
        self.routes.iter().any(|r| r.case_insensitive.unwrap_or(self.case_insensitive))
    }

    /// The first rule matching the request, if any. `HEAD` matches rules for `GET`; an extension
    /// method (`PROPFIND`, `REPORT`, ...) matches rules for `POST` (it may change state), besides
    /// rules that name it.
    pub fn rule(&self, method: &str, path: &str) -> Option<&Route> {
        self.first(method, path, |r| r.case_insensitive.unwrap_or(self.case_insensitive))
    }

    fn first(&self, method: &str, path: &str, fold: impl Fn(&Route) -> bool) -> Option<&Route> {
        let extension = !matches!(method, "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS");
        self.routes.iter().zip(&self.slash_cover).find_map(|(r, &cover)| {
            let method_fits = r
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method) || (m == "GET" && method == "HEAD") || (extension && m == "POST")));
            (method_fits && path_matches(&r.path, path, fold(r), cover)).then_some(r)
        })
    }

    /// `Err` if the request's rule depends on letter case: the first rule matching as configured
    /// and the first matching with ASCII case folded differ in what they require (`public`,
    /// `scopes`, `auth`, `sensitive`, `upstream_credential`). An origin that routes
    /// case-insensitively (Express's default, ASP.NET, IIS) would serve `/ADMIN/x` as
    /// `/admin/x`; the gate cannot know which kind it fronts, so it refuses
    /// (`request.case_ambiguity: reject`, the default).
    pub fn check_case(&self, method: &str, path: &str) -> Result<(), AuthError> {
        fn effect(r: Option<&Route>) -> (bool, &[String], Accepts, bool, Option<&str>) {
            r.map_or((false, &[], Accepts::Jwt, false, None), |r| (r.public, &r.scopes[..], r.auth, r.sensitive, r.upstream_credential.as_deref()))
        }
        let as_configured = effect(self.rule(method, path));
        let folded = effect(self.first(method, path, |_| true));
        if as_configured == folded {
            Ok(())
        } else {
            Err(AuthError::AmbiguousPath(PathProblem::CaseDependent))
        }
    }

    /// Every rule, in order.
    pub fn rules(&self) -> &[Route] {
        &self.routes
    }

    /// True if the first rule matching the request is marked `sensitive`.
    pub fn is_sensitive(&self, method: &str, path: &str) -> bool {
        self.rule(method, path).is_some_and(|r| r.sensitive)
    }

    /// The request's rule's `dpop` (unmatched paths: `allowed`).
    pub fn dpop(&self, method: &str, path: &str) -> super::dpop::DpopMode {
        self.rule(method, path).map_or_else(Default::default, |r| r.dpop)
    }

    /// Which credentials the request's route takes (unmatched paths: JWTs).
    pub fn accepts(&self, method: &str, path: &str) -> Accepts {
        self.rule(method, path).map_or(Accepts::Jwt, |r| r.auth)
    }

    /// What a request for `method` and `path` needs.
    pub fn requirement(&self, method: &str, path: &str) -> Requirement {
        match self.rule(method, path) {
            // With `escaped_slashes`/`path_params: keep`, never grant public access to a path an
            // origin might decode into another one.
            Some(r) if r.public && kept_ambiguity(path) => Requirement::Token { scopes: Vec::new() },
            Some(r) if r.public => Requirement::Public,
            Some(r) => Requirement::Token { scopes: r.scopes.clone() },
            None => Requirement::Token { scopes: Vec::new() },
        }
    }
}

fn eq(a: &str, b: &str, fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// What the `keep` switches let through: an encoded `/` or `\`, or a `;` parameter.
fn kept_ambiguity(path: &str) -> bool {
    path.contains("%2F") || path.contains("%5C") || path.contains(';') || path.contains("%3B")
}

/// Matches a (canonical) path against a pattern. Works on bytes: never panics on any input.
fn path_matches(pattern: &str, path: &str, fold: bool, slash_cover: bool) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some("") => true,
        Some(prefix) => {
            let (p, pre) = (path.as_bytes(), prefix.as_bytes());
            p.len() >= pre.len() && eq_bytes(&p[..pre.len()], pre, fold) && (p.len() == pre.len() || p[pre.len()] == b'/')
        }
        // An exact rule also covers the same path with a trailing slash.
        None => eq(path, pattern, fold) || (slash_cover && path.strip_suffix('/').is_some_and(|p| !p.is_empty() && eq(p, pattern, fold))),
    }
}

fn eq_bytes(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
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
    fn head_is_get_and_exact_covers_trailing_slash() {
        let t = table(serde_json::json!([
            {"path": "/billing", "methods": ["GET"], "public": true},
            {"path": "/Admin/*", "scopes": ["admin"], "case_insensitive": true}
        ]));
        assert_eq!(t.requirement("HEAD", "/billing"), Requirement::Public);
        assert_eq!(t.requirement("GET", "/billing/"), Requirement::Public);
        assert_eq!(t.requirement("GET", "/billing//"), Requirement::Token { scopes: vec![] });
        assert_eq!(t.requirement("POST", "/billing"), Requirement::Token { scopes: vec![] });
        assert_eq!(t.requirement("GET", "/ADMIN/x"), Requirement::Token { scopes: vec!["admin".into()] });
        assert_eq!(t.requirement("GET", "/admin"), Requirement::Token { scopes: vec!["admin".into()] });
        assert!(t.any_case_insensitive());
    }

    #[test]
    fn an_exact_rule_leaves_its_trailing_slash_to_its_subtree_rule() {
        let t = table(serde_json::json!([
            {"path": "/admin", "public": true},
            {"path": "/admin/*", "scopes": ["admin"]},
            {"path": "/login", "public": true}
        ]));
        assert_eq!(t.requirement("GET", "/admin"), Requirement::Public);
        assert_eq!(t.requirement("GET", "/admin/"), Requirement::Token { scopes: vec!["admin".into()] });
        assert_eq!(t.requirement("GET", "/login/"), Requirement::Public);
    }

    #[test]
    fn extension_methods_match_post_rules() {
        let t = table(serde_json::json!([
            {"path": "/admin/*", "methods": ["GET", "POST"], "scopes": ["admin"]},
            {"path": "/dav/*", "methods": ["PROPFIND"], "public": true}
        ]));
        assert_eq!(t.requirement("PROPFIND", "/admin/x"), Requirement::Token { scopes: vec!["admin".into()] });
        assert_eq!(t.requirement("PROPFIND", "/dav/x"), Requirement::Public);
        assert_eq!(t.requirement("PUT", "/admin/x"), Requirement::Token { scopes: vec![] });
    }

    #[test]
    fn case_dependent_decisions_are_refused() {
        let t = table(serde_json::json!([
            {"path": "/admin/*", "scopes": ["admin"]},
            {"path": "/api/*", "scopes": ["read"]},
            {"path": "/*", "scopes": ["read"]}
        ]));
        assert!(t.check_case("GET", "/ADMIN/x").is_err());
        assert!(t.check_case("GET", "/admin/x").is_ok());
        assert!(t.check_case("GET", "/API/x").is_ok(), "same requirement either way");
        assert!(t.check_case("GET", "/Other").is_ok());
        let folded = table(serde_json::json!([{"path": "/admin/*", "scopes": ["admin"], "case_insensitive": true}]));
        assert!(folded.check_case("GET", "/ADMIN/x").is_ok(), "the rule folds case itself");
    }

    #[test]
    fn keep_switches_never_make_an_ambiguous_path_public() {
        let t = table(serde_json::json!([{"path": "/public/*", "public": true}]));
        for p in ["/public/..%2Fadmin", "/public/a%5Cb", "/public/..;/admin", "/public/a%3Bb"] {
            assert_eq!(t.requirement("GET", p), Requirement::Token { scopes: vec![] }, "{p}");
        }
    }

    #[test]
    fn patterns_must_be_canonical() {
        for p in ["/a//b", "/a/../b", "/a/./b", "/%61", "/a%2fb/*", "/a/%2e%2e/*", "/a%zz"] {
            assert!(RouteTable::new(serde_json::from_value(serde_json::json!([{"path": p}])).unwrap()).is_err(), "{p}");
        }
        for p in ["/", "/*", "/a/b", "/a/b/*", "/caf%C3%A9", "/a:b@c"] {
            assert!(RouteTable::new(serde_json::from_value(serde_json::json!([{"path": p}])).unwrap()).is_ok(), "{p}");
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
