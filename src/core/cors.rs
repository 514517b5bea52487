//! CORS, answered at the edge (config section `cors`; absent = no CORS headers at all, as before).
//!
//! A browser app on another origin sends a *preflight* (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) before any call with a credential; by the Fetch standard the
//! preflight never carries one. The gate answers it itself ([`CorsPolicy::preflight`]): `204`
//! with the allow headers for an allowed origin, method and headers; otherwise a `403
//! cors_rejected` without them (the browser then blocks the call). It is never forwarded.
//!
//! Every other response to a request whose `Origin` is allowed — the gate's own refusals as much
//! as the origin's answers — carries `Access-Control-Allow-Origin` (that origin),
//! `Access-Control-Expose-Headers` and, when configured, `Access-Control-Allow-Credentials`, so
//! an app can read a `401` and its `WWW-Authenticate` and refresh its token
//! ([`CorsPolicy::response_headers`]). The origin's own `Access-Control-*` headers are replaced
//! by the gate's: one source of truth. `Vary: Origin` is set on every response of a CORS route.
//!
//! CORS does not widen CSRF: a cookie-authenticated unsafe request from another origin passes
//! the CSRF check only if that origin is in `csrf.allowed_origins` (the configuration warns
//! about an origin allowed for CORS with credentials but not there).
//!
//! Pure: the pipeline calls it with the request's headers and the route.

use serde::Deserialize;

/// The `cors` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example`), or `"*"` (only without credentials).
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for (default GET, HEAD, POST, PUT, PATCH, DELETE).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (default `authorization`, `content-type`, the
    /// CSRF header, `dpop`).
    pub allowed_headers: Option<Vec<String>>,
    /// Response headers the app may read (default `www-authenticate`, `retry-after`,
    /// `ratelimit`, `ratelimit-policy`, `dpop-nonce`, the request id header).
    pub expose_headers: Option<Vec<String>>,
    /// Send `Access-Control-Allow-Credentials: true` (default false).
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer (default 600).
    pub max_age_secs: u32,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec(),
            allowed_headers: None,
            expose_headers: None,
            allow_credentials: false,
            max_age_secs: 600,
        }
    }
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
    any_origin: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    allow_methods: String,
    allow_headers: String,
    expose: String,
    credentials: bool,
    max_age: String,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `scheme://host[:port]`, nothing else: what a browser sends as `Origin`.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    matches!(scheme, "https" | "http") && !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ']) && o.bytes().all(|b| b.is_ascii_graphic())
}

impl CorsConfig {
    /// Checks the section (the CSRF header and request id header complete the defaults); the
    /// error is (field, message).
    pub fn validate(self, csrf_header: &str, request_id_header: &str) -> Result<CorsPolicy, (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("cors.{f}"), m.to_string()));
        let mut origins = Vec::new();
        let mut any_origin = false;
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if o == "*" {
                any_origin = true;
            } else if is_origin(o) {
                origins.push(o.to_ascii_lowercase());
            } else {
                return bad(&format!("allowed_origins[{i}]"), "an origin like https://app.example (scheme, host, optional port), or \"*\"");
            }
        }
        if any_origin && self.allow_credentials {
            return bad("allowed_origins", "\"*\" cannot be used with allow_credentials (browsers refuse it): list the origins");
        }
        if self.allowed_origins.is_empty() {
            return bad("allowed_origins", "at least one origin (or remove the cors section)");
        }
        let mut methods = Vec::new();
        for (i, m) in self.allowed_methods.iter().enumerate() {
            if !is_token(m) {
                return bad(&format!("allowed_methods[{i}]"), "an HTTP method");
            }
            methods.push(m.to_ascii_uppercase());
        }
        let list = |v: Option<Vec<String>>, dflt: Vec<String>, field: &str| -> Result<Vec<String>, (String, String)> {
            let v = v.unwrap_or(dflt);
            for (i, h) in v.iter().enumerate() {
                if !is_token(h) {
                    return Err((format!("cors.{field}[{i}]"), "a header name".into()));
                }
            }
            Ok(v.iter().map(|h| h.to_ascii_lowercase()).collect())
        };
        let headers = list(self.allowed_headers, ["authorization", "content-type", csrf_header, "dpop"].map(String::from).to_vec(), "allowed_headers")?;
        let expose = list(
            self.expose_headers,
            ["www-authenticate", "retry-after", "ratelimit", "ratelimit-policy", "dpop-nonce", request_id_header].map(String::from).to_vec(),
            "expose_headers",
        )?;
        if self.max_age_secs > 86_400 {
            return bad("max_age_secs", "at most 86400 (browsers cap it lower anyway)");
        }
        Ok(CorsPolicy {
            allow_methods: methods.join(", "),
            allow_headers: headers.join(", "),
            expose: expose.join(", "),
            origins,
            any_origin,
            methods,
            headers,
            credentials: self.allow_credentials,
            max_age: self.max_age_secs.to_string(),
        })
    }
}

/// What the gate does with a preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// `204` with these headers.
    Allowed(Vec<(String, String)>),
    /// Refused (`403 cors_rejected`), with this detail for the log.
    Refused(&'static str),
}

/// The value of header `name` (first), if present.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// True if the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, headers: &[(String, String)]) -> bool {
    method == "OPTIONS" && header(headers, "origin").is_some() && header(headers, "access-control-request-method").is_some()
}

/// The method a preflight asks for (what route rules are matched with).
pub fn requested_method(headers: &[(String, String)]) -> Option<&str> {
    header(headers, "access-control-request-method")
}

impl CorsPolicy {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allow_origin<'o>(&self, origin: &'o str) -> Option<&'o str> {
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            Some(origin)
        } else if self.any_origin {
            Some("*")
        } else {
            None
        }
    }

    /// The answer to a preflight (see [`is_preflight`]).
    pub fn preflight(&self, headers: &[(String, String)]) -> Preflight {
        let Some(allow) = header(headers, "origin").and_then(|o| self.allow_origin(o)) else {
            return Preflight::Refused("origin not in cors.allowed_origins");
        };
        let method = header(headers, "access-control-request-method").unwrap_or("");
        if !self.methods.iter().any(|m| m == method) {
            return Preflight::Refused("method not in cors.allowed_methods");
        }
        let asked = header(headers, "access-control-request-headers").unwrap_or("");
        if asked.split(',').map(str::trim).filter(|h| !h.is_empty()).any(|h| !self.headers.iter().any(|a| a.eq_ignore_ascii_case(h))) {
            return Preflight::Refused("a header not in cors.allowed_headers");
        }
        let mut out = vec![
            ("access-control-allow-origin".to_string(), allow.to_string()),
            ("access-control-allow-methods".to_string(), self.allow_methods.clone()),
            ("access-control-allow-headers".to_string(), self.allow_headers.clone()),
            ("access-control-max-age".to_string(), self.max_age.clone()),
            ("vary".to_string(), "Origin".to_string()),
        ];
        if self.credentials {
            out.push(("access-control-allow-credentials".into(), "true".into()));
        }
        Preflight::Allowed(out)
    }

    /// The CORS headers of any other response to a request with these headers: the allow
    /// headers when its `Origin` is allowed, and always `Vary: Origin` (the answer depends on
    /// it: a cache must not give the answer to a request without `Origin` to a CORS call).
    pub fn response_headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let mut out = vec![("vary".to_string(), "Origin".to_string())];
        let Some(origin) = header(headers, "origin") else { return out };
        if let Some(allow) = self.allow_origin(origin) {
            out.push(("access-control-allow-origin".into(), allow.to_string()));
            out.push(("access-control-expose-headers".into(), self.expose.clone()));
            if self.credentials {
                out.push(("access-control-allow-credentials".into(), "true".into()));
            }
        }
        out
    }

    /// Origins allowed with credentials that `csrf_origins` does not list (for a warning: CORS
    /// does not widen CSRF, so cookie-authenticated unsafe requests from them are refused).
    pub fn not_csrf_allowed<'a>(&'a self, csrf_origins: &[String]) -> Vec<&'a str> {
        if !self.credentials {
            return Vec::new();
        }
        // Exact, as the CSRF check compares (an origin listed in another case there never matches).
        self.origins.iter().filter(|o| !csrf_origins.iter().any(|c| c == *o)).map(String::as_str).collect()
    }
}
