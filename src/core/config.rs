//! Configuration: `EdgewardConfig` is the raw JSON document (the `EDGEWARD_CONFIG` var);
//! [`Policy`] is the validated form every request uses. Parsing is pure; reading the var is the
//! adapter's job.
//!
//! This module composes. Each section's type and its validation live with the module that uses
//! it (`issuers`: [`super::verify`]; `cookie_name`, `query_param`, `forward_claims`,
//! `request_id_header`: [`super::request`]; `cookies`, `csrf`: [`super::cookie`]; `request`:
//! [`super::canonical`]; `routes`: [`super::route`]; `rate_limits`: [`super::ratelimit`];
//! `logging`: [`super::logging`]; `observability`: [`super::usage`]; `alerts`: [`super::alerts`];
//! `token_cache`, `jwks_cache`: their caches). Here are the checks that span sections (upstream
//! credentials against the headers the gate sets, routes against upstream credentials), the
//! sections only the adapters use (`admin`, `revocations`, `api_keys`, `upstream_credentials`),
//! and the conversions of a [`Policy`] into what each check takes ([`TokenRules`],
//! [`CredentialPlaces`], [`ForwardRules`]): no check module imports this one.

use super::access::Accepts;
use super::alerts::{AlertsConfig, AlertsPolicy};
use super::apikey::KeyEnv;
use super::canonical::{is_tchar, PathRules, RequestPolicy};
use super::cookie::{CookiePolicy, CsrfPolicy};
use super::cors::{CorsConfig, CorsPolicy};
use super::dpop::{DpopConfig, DpopPolicy};
use super::ipblock::IpBlocksConfig;
use super::jwks_cache::JwksCacheConfig;
use super::jwt::{JwtPolicy, JwtRules};
use super::logging::{LoggingConfig, LoggingPolicy};
use super::ratelimit::{RateLimitConfig, RateLimitPolicy};
use super::request::validate_origin;
use super::request::{validate_forward_claims, validate_request_id_header, validate_token_places, CredentialPlaces, ForwardRules, RESERVED_HEADER_PREFIX};
use super::route::{Route, RouteTable};
use super::route::{MAX_TIMEOUT_MS, MIN_TIMEOUT_MS};
use super::token_cache::TokenCacheConfig;
use super::usage::{ObservabilityConfig, ObservabilityPolicy};
use super::verify::{IssuerConfig, IssuerPolicy, TokenRules};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The raw configuration document. Field names are a documented contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgewardConfig {
    /// Accepted token issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerance for `exp`, `nbf`, `iat` (default 60).
    #[serde(default = "d_leeway")]
    pub leeway_secs: u32,
    /// Longest accepted `exp - (iat or now)`; `null` = unlimited (default 86400).
    #[serde(default = "d_max_lifetime")]
    pub max_lifetime_secs: Option<u64>,
    /// Reject tokens without `exp` (default true).
    #[serde(default = "d_true")]
    pub require_exp: bool,
    /// Largest token accepted, in bytes (default 16384).
    #[serde(default = "d_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Where approved requests go (absolute `http(s)` URL, its path a prefix; or `service:NAME`);
    /// per route `routes[].origin`.
    pub origin: String,
    /// Past this many milliseconds without the origin's response headers: `504 origin_timeout`
    /// (default 30000; per route `routes[].timeout_ms`).
    #[serde(default = "d_origin_timeout")]
    pub origin_timeout_ms: u32,
    /// Route rules, first match wins; unmatched paths need a valid token.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Realm for `WWW-Authenticate` (default "edgeward").
    #[serde(default = "d_realm")]
    pub realm: String,
    /// Cookie that may carry the token (optional).
    #[serde(default)]
    pub cookie_name: Option<String>,
    /// Query parameter that may carry the token (optional; RFC 6750 §2.3 discourages it).
    #[serde(default)]
    pub query_param: Option<String>,
    /// Claims forwarded to the origin: header name -> claim name.
    #[serde(default = "d_forward_claims")]
    pub forward_claims: BTreeMap<String, String>,
    /// Header carrying the request id to the origin and back (default "x-request-id").
    #[serde(default = "d_request_id_header")]
    pub request_id_header: String,
    /// JWKS cache tuning.
    #[serde(default)]
    pub jwks_cache: JwksCacheConfig,
    /// `Set-Cookie` policy for origin responses.
    #[serde(default)]
    pub cookies: CookiePolicy,
    /// CSRF protection for cookie-authenticated requests.
    #[serde(default)]
    pub csrf: CsrfPolicy,
    /// CORS answered at the edge; absent = no CORS headers.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// DPoP proofs (RFC 9449).
    #[serde(default)]
    pub dpop: DpopConfig,
    /// What decision records say about the client, and which accepted requests are logged.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Client addresses refused before anything else is read.
    #[serde(default)]
    pub ip_blocks: IpBlocksConfig,
    /// Usage counters: how often the gate flushes them, how long they are kept.
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// Alert rules and webhooks (evaluated by the control Worker).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Verified-token cache.
    #[serde(default)]
    pub token_cache: TokenCacheConfig,
    /// Rate limits.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// The replicated revocation list.
    #[serde(default)]
    pub revocations: RevocationConfig,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// API keys (routes with `auth: api_key` or `either`).
    #[serde(default)]
    pub api_keys: ApiKeyConfig,
    /// Origin credentials a route can inject in place of the client's: name -> credential.
    #[serde(default)]
    pub upstream_credentials: BTreeMap<String, UpstreamCredentialConfig>,
    /// How requests are canonicalized (path, method, headers) before anything is decided.
    #[serde(default)]
    pub request: RequestPolicy,
}

/// The members of a token-checks-only document ([`EdgewardConfig::tokens_only`]), with the
/// defaults of a whole one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    issuers: Vec<IssuerConfig>,
    #[serde(default = "d_leeway")]
    leeway_secs: u32,
    #[serde(default = "d_max_lifetime")]
    max_lifetime_secs: Option<u64>,
    #[serde(default = "d_true")]
    require_exp: bool,
}

/// Largest `leeway_secs`: clock skew is seconds to minutes; an hour already lets a token live an
/// hour past its `exp`, and more would switch expiry off.
pub const MAX_LEEWAY_SECS: u32 = 3600;

/// `leeway_secs` (at most [`MAX_LEEWAY_SECS`]) and `max_lifetime_secs` as the policy holds them.
fn lifetimes(leeway_secs: u32, max_lifetime_secs: Option<u64>) -> Result<(i64, Option<i64>), ConfigError> {
    if leeway_secs > MAX_LEEWAY_SECS {
        return Err(ConfigError::new("leeway_secs", format!("at most {MAX_LEEWAY_SECS} (seconds of clock skew)")));
    }
    Ok((i64::from(leeway_secs), max_lifetime_secs.map(|v| v.min(i64::MAX as u64) as i64)))
}

/// One section of a configuration document on its own (the JS package's cookie policy is the
/// `cookies` section): its schema and defaults; a deserialization error names the section.
pub fn section<T: serde::de::DeserializeOwned>(name: &str, v: &Value) -> Result<T, ConfigError> {
    serde_json::from_value(v.clone()).map_err(|e| ConfigError::new(name, clean(&e)))
}

/// The `api_keys` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    /// Header carrying the key (default `x-api-key`); `Authorization: ApiKey <key>` also works.
    pub header: String,
    /// The environment this deployment serves: keys of the other one are refused before any
    /// lookup, and created keys get its prefix (`live`, the default, or `test`).
    pub environment: KeyEnv,
    /// How long an isolate trusts a looked-up key record (default 30).
    pub cache_ttl_secs: u32,
    /// How long an isolate remembers that a well-formed key is unknown (default 30).
    pub negative_cache_ttl_secs: u32,
    /// Most key records cached per isolate (default 10000).
    pub cache_capacity: usize,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig { header: "x-api-key".into(), environment: KeyEnv::Live, cache_ttl_secs: 30, negative_cache_ttl_secs: 30, cache_capacity: 10_000 }
    }
}

/// One origin credential (an `upstream_credentials` entry).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredentialConfig {
    /// Header set on the forwarded request (client copies are always removed first).
    pub header: String,
    /// Its value, with `{secret}` where the secret goes (default `{secret}`), e.g. `Bearer {secret}`.
    #[serde(default = "d_secret_template")]
    pub value: String,
    /// Name of the Worker secret holding the credential.
    pub secret: String,
}

fn d_secret_template() -> String {
    "{secret}".into()
}

/// The `revocations` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Check revocations (default true; needs the `EDGEWARD_KV` binding).
    pub enabled: bool,
    /// Each isolate re-reads the snapshot from KV this often, in the background (default 10).
    pub refresh_secs: u32,
    /// With no fresh snapshot for this long (KV unreachable), protected routes fail closed with
    /// 503 (default 300).
    pub max_age_secs: u32,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig { enabled: true, refresh_secs: 10, max_age_secs: 300 }
    }
}

/// The `admin` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Path prefix of the admin API (default `/__edgeward/admin`). A caller presents the
    /// `EDGEWARD_ADMIN_TOKEN` secret (at least 16 characters) or, when `jwt_scope` is set, a JWT
    /// of a configured issuer holding that scope; anyone else gets 401.
    pub path_prefix: String,
    /// Scope an admin JWT must hold (for example `edgeward:admin`); unset = no JWT admins.
    pub jwt_scope: Option<String>,
    /// Days the control Worker keeps an audit trail entry (default 365, 1 to 36500); `null`
    /// keeps every entry.
    pub audit_retention_days: Option<u32>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { path_prefix: "/__edgeward/admin".into(), jwt_scope: None, audit_retention_days: Some(365) }
    }
}

fn d_leeway() -> u32 {
    60
}
fn d_max_lifetime() -> Option<u64> {
    Some(86_400)
}
fn d_origin_timeout() -> u32 {
    30_000
}

fn d_true() -> bool {
    true
}
fn d_max_token_bytes() -> usize {
    16_384
}
fn d_realm() -> String {
    "edgeward".into()
}
fn d_request_id_header() -> String {
    "x-request-id".into()
}
fn d_forward_claims() -> BTreeMap<String, String> {
    [("x-edgeward-sub", "sub"), ("x-edgeward-iss", "iss"), ("x-edgeward-scope", "scope")].into_iter().map(|(h, c)| (h.to_string(), c.to_string())).collect()
}

/// A configuration error, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EDGEWARD_CONFIG at `{field}`: {message}")]
pub struct ConfigError {
    /// Path of the field, such as `issuers[0].jwks_uri`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { field: field.into(), message: message.into() }
    }
}

/// A section's validation error, (field, message), as the sections report it.
impl From<(String, String)> for ConfigError {
    fn from((field, message): (String, String)) -> Self {
        ConfigError { field, message }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Issuers.
    pub issuers: Vec<IssuerPolicy>,
    /// Leeway in seconds.
    pub leeway_secs: i64,
    /// Maximum lifetime, if any.
    pub max_lifetime_secs: Option<i64>,
    /// Require `exp`.
    pub require_exp: bool,
    /// Origin timeout (ms) for routes that do not set one.
    pub origin_timeout_ms: u32,
    /// Token size limit.
    pub max_token_bytes: usize,
    /// Origin URL without a trailing slash.
    pub origin: String,
    /// Routes.
    pub routes: RouteTable,
    /// Realm.
    pub realm: String,
    /// Token cookie name.
    pub cookie_name: Option<String>,
    /// Token query parameter.
    pub query_param: Option<String>,
    /// Forwarded claims as (lower-case header, claim).
    pub forward_claims: Vec<(String, String)>,
    /// The claims a verified token keeps: the ones the decisions after verification read
    /// (forwarded claims, rate-limit keys and tiers, revocations, logs), sorted
    /// ([`super::claims::claims_read`]).
    pub token_claims: Vec<String>,
    /// Request id header (lower case).
    pub request_id_header: String,
    /// JWKS cache tuning.
    pub jwks_cache: JwksCacheConfig,
    /// `Set-Cookie` policy.
    pub cookies: CookiePolicy,
    /// CSRF policy.
    pub csrf: CsrfPolicy,
    /// CORS, if configured.
    pub cors: Option<CorsPolicy>,
    /// DPoP.
    pub dpop: DpopPolicy,
    /// Decision records.
    pub logging: LoggingPolicy,
    /// The block list.
    pub ip_blocks: IpBlocksConfig,
    /// Usage counters.
    pub observability: ObservabilityPolicy,
    /// Alerts.
    pub alerts: AlertsPolicy,
    /// Verified-token cache.
    pub token_cache: TokenCacheConfig,
    /// Rate limits.
    pub rate_limits: RateLimitPolicy,
    /// Revocations.
    pub revocations: RevocationConfig,
    /// Admin API.
    pub admin: AdminConfig,
    /// API keys (the header name lower case).
    pub api_keys: ApiKeyConfig,
    /// Origin credentials by name (header names lower case).
    pub upstream_credentials: BTreeMap<String, UpstreamCredentialConfig>,
    /// Request canonicalization.
    pub request: RequestPolicy,
    /// How paths are canonicalized (from `request`, and whether any route folds case).
    pub path_rules: PathRules,
    /// The header names the gate sets or keeps for itself, folded (lower case, `_` as `-`): the
    /// API key header, the request id, every `forward_claims` target and upstream credential
    /// header. A client header that folds to one of them is never forwarded.
    pub protected_headers: Vec<String>,
    /// Non-fatal findings to log once at start-up.
    pub warnings: Vec<String>,
}

/// Headers an upstream credential may not use.
const HOP_BY_HOP_OR_FRAMING: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "cookie",
    "content-length",
    "content-type",
];

/// serde's message without its position suffix.
fn clean(e: &serde_json::Error) -> String {
    let m = e.to_string();
    m.split(" at line ").next().unwrap_or(&m).to_string()
}

fn probe<T: serde::de::DeserializeOwned>(v: &Value) -> Option<String> {
    serde_json::from_value::<T>(v.clone()).err().map(|e| clean(&e))
}

type Probe = fn(&Value) -> Option<String>;

/// The top-level members of a whole configuration document, each with its probe ([`locate`]).
const TOP_LEVEL: &[(&str, Probe)] = &[
    ("leeway_secs", probe::<u32>),
    ("max_lifetime_secs", probe::<Option<u64>>),
    ("require_exp", probe::<bool>),
    ("max_token_bytes", probe::<usize>),
    ("origin", probe::<String>),
    ("origin_timeout_ms", probe::<u32>),
    ("routes", probe::<Vec<Route>>),
    ("realm", probe::<String>),
    ("cookie_name", probe::<Option<String>>),
    ("query_param", probe::<Option<String>>),
    ("forward_claims", probe::<BTreeMap<String, String>>),
    ("request_id_header", probe::<String>),
    ("jwks_cache", probe::<JwksCacheConfig>),
    ("cookies", probe::<CookiePolicy>),
    ("csrf", probe::<CsrfPolicy>),
    ("cors", probe::<Option<CorsConfig>>),
    ("dpop", probe::<DpopConfig>),
    ("logging", probe::<LoggingConfig>),
    ("ip_blocks", probe::<IpBlocksConfig>),
    ("observability", probe::<ObservabilityConfig>),
    ("alerts", probe::<AlertsConfig>),
    ("token_cache", probe::<TokenCacheConfig>),
    ("rate_limits", probe::<RateLimitConfig>),
    ("revocations", probe::<RevocationConfig>),
    ("admin", probe::<AdminConfig>),
    ("api_keys", probe::<ApiKeyConfig>),
    ("upstream_credentials", probe::<BTreeMap<String, UpstreamCredentialConfig>>),
    ("request", probe::<RequestPolicy>),
];

/// The top-level members of a token-checks-only document ([`EdgewardConfig::tokens_only`]).
const TOKEN_LEVEL: &[(&str, Probe)] = &[("leeway_secs", probe::<u32>), ("max_lifetime_secs", probe::<Option<u64>>), ("require_exp", probe::<bool>)];

/// Finds which member of the document made deserialization fail, so the error names the field:
/// `top` lists the members other than `issuers` a document may have, `required` those it must.
/// (Done by probing members one by one rather than with a path-tracking deserializer, which
/// would add tens of KB to the Worker.)
fn locate(doc: &Value, err: &serde_json::Error, top: &[(&str, Probe)], required: &[&str]) -> ConfigError {
    let Some(map) = doc.as_object() else {
        return ConfigError::new("EDGEWARD_CONFIG", "must be a JSON object");
    };
    let issuer_fields: &[(&str, Probe)] = &[
        ("issuer", probe::<Option<String>>),
        ("audiences", probe::<Vec<String>>),
        ("jwks_uri", probe::<Option<String>>),
        ("algorithms", probe::<Vec<String>>),
        ("allow_insecure_jwks_uri", probe::<bool>),
        ("discovery", probe::<bool>),
        ("introspection", probe::<Option<super::verify::IntrospectionConfig>>),
        ("token_prefix", probe::<Option<String>>),
    ];
    for required in required.iter().copied() {
        if !map.contains_key(required) {
            return ConfigError::new(required, "missing (required)");
        }
    }
    for (name, value) in map {
        if name == "issuers" {
            let Some(items) = value.as_array() else {
                return ConfigError::new("issuers", "must be an array");
            };
            for (i, item) in items.iter().enumerate() {
                let Some(fields) = item.as_object() else {
                    return ConfigError::new(format!("issuers[{i}]"), "must be an object");
                };
                for (f, v) in fields {
                    if let Some((_, p)) = issuer_fields.iter().find(|(n, _)| n == f) {
                        if let Some(m) = p(v) {
                            return ConfigError::new(format!("issuers[{i}].{f}"), m);
                        }
                    }
                }
                if let Some(m) = probe::<IssuerConfig>(item) {
                    return ConfigError::new(format!("issuers[{i}]"), m);
                }
            }
        } else if let Some((_, p)) = top.iter().find(|(n, _)| n == name) {
            if let Some(m) = p(value) {
                return ConfigError::new(name.clone(), m);
            }
        } else {
            return ConfigError::new(name.clone(), "unknown field");
        }
    }
    ConfigError::new("EDGEWARD_CONFIG", clean(err))
}

impl EdgewardConfig {
    /// Parses the JSON document; errors name the field (`issuers[0].audiences`, `leeway_secs`, ...).
    pub fn from_json(s: &str) -> Result<EdgewardConfig, ConfigError> {
        let doc: Value = serde_json::from_slice(s.as_bytes()).map_err(|e| ConfigError::new("EDGEWARD_CONFIG", clean(&e)))?;
        serde_json::from_value::<EdgewardConfig>(doc.clone()).map_err(|e| locate(&doc, &e, TOP_LEVEL, &["issuers", "origin"]))
    }

    /// The token checks' part of a configuration alone, from a document with `issuers` and
    /// optionally `leeway_secs`, `max_lifetime_secs` and `require_exp`: the same schema, defaults,
    /// validation and errors as in a whole document, every other member at its default. What the
    /// JS package's verifier is built from: it decides as the Worker does without carrying the
    /// other sections' parsers.
    pub fn tokens_only(doc: &Value) -> Result<JwtPolicy, ConfigError> {
        let t = serde_json::from_value::<TokenSection>(doc.clone()).map_err(|e| locate(doc, &e, TOKEN_LEVEL, &["issuers"]))?;
        let (issuers, warnings) = IssuerPolicy::validate_all(t.issuers)?;
        let forward_claims = validate_forward_claims(d_forward_claims())?;
        let (leeway_secs, max_lifetime_secs) = lifetimes(t.leeway_secs, t.max_lifetime_secs)?;
        Ok(JwtPolicy {
            issuers,
            leeway_secs,
            max_lifetime_secs,
            require_exp: t.require_exp,
            token_claims: super::claims::claims_read(&forward_claims, super::usage::CLAIMS_READ.map(String::from)),
            max_token_bytes: d_max_token_bytes(),
            jwks_cache: JwksCacheConfig::default(),
            token_cache: TokenCacheConfig::default(),
            warnings,
        })
    }

    /// Validates into a [`Policy`].
    pub fn validate(self) -> Result<Policy, ConfigError> {
        let (issuers, insecure) = IssuerPolicy::validate_all(self.issuers)?;
        if self.max_token_bytes < 64 || self.max_token_bytes > 1 << 20 {
            return Err(ConfigError::new("max_token_bytes", "must be between 64 and 1048576"));
        }
        let origin = validate_origin(&self.origin).map_err(|m| ConfigError::new("origin", m))?;
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&self.origin_timeout_ms) {
            return Err(ConfigError::new("origin_timeout_ms", format!("between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS}")));
        }
        let routes = RouteTable::new(self.routes).map_err(|(i, m)| ConfigError::new(format!("routes[{i}]"), m))?;
        if self.realm.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(ConfigError::new("realm", "must be printable ASCII"));
        }
        let mut warnings = insecure;
        let request = self.request.validate()?;
        let routes = routes.with_case_insensitive(request.case_insensitive);
        let path_rules = PathRules {
            escaped_slashes: request.escaped_slashes,
            path_params: request.path_params,
            refuse_ascii_lookalikes: routes.any_case_insensitive(),
            windows_aliases: request.windows_aliases,
            max_path_bytes: request.max_path_bytes,
        };
        warnings.extend(validate_token_places(self.cookie_name.as_deref(), self.query_param.as_deref())?);
        let forward_claims = validate_forward_claims(self.forward_claims)?;
        let request_id_header = validate_request_id_header(&self.request_id_header)?;
        self.cookies.validate()?;
        self.csrf.validate()?;
        let dpop = self.dpop.validate().map_err(|(f, m)| ConfigError::new(&f, m))?;
        let logging = self.logging.validate().map_err(|(f, m)| ConfigError::new(&f, m))?;
        let ip_blocks = self.ip_blocks.validate().map_err(|(f, m)| ConfigError::new(&f, m))?;
        let observability = self.observability.validate().map_err(|(f, m)| ConfigError::new(&f, m))?;
        let alerts = self.alerts.validate().map_err(|(f, m)| ConfigError::new(&f, m))?;
        let cors = match self.cors {
            Some(c) => Some(c.validate(&self.csrf.header, &request_id_header)?),
            None => None,
        };
        if let Some(c) = &cors {
            for o in c.not_csrf_allowed(&self.csrf.allowed_origins) {
                warnings.push(format!(
                    "cors allows credentials from {o}, which csrf.allowed_origins does not list: cookie-authenticated unsafe requests from it are refused (csrf_rejected)"
                ));
            }
        }
        self.token_cache.validate()?;
        if !self.admin.path_prefix.starts_with('/') || self.admin.path_prefix.len() < 2 || self.admin.path_prefix.ends_with('/') {
            return Err(ConfigError::new("admin.path_prefix", "a path like /__edgeward/admin"));
        }
        if self.revocations.refresh_secs == 0 || self.revocations.max_age_secs < self.revocations.refresh_secs {
            return Err(ConfigError::new("revocations", "refresh_secs must be positive and at most max_age_secs"));
        }
        if let Some(s) = &self.admin.jwt_scope {
            if s.is_empty() || s.contains(' ') {
                return Err(ConfigError::new("admin.jwt_scope", "one scope, non-empty, no spaces"));
            }
        }
        if self.admin.audit_retention_days.is_some_and(|d| d == 0 || d > 36_500) {
            return Err(ConfigError::new("admin.audit_retention_days", "1 to 36500 days, or null to keep every entry"));
        }
        let mut api_keys = self.api_keys;
        api_keys.header = api_keys.header.to_ascii_lowercase();
        if api_keys.header.is_empty() || !api_keys.header.bytes().all(is_tchar) || matches!(api_keys.header.as_str(), "cookie" | "host" | "authorization") {
            return Err(ConfigError::new("api_keys.header", "a header name other than authorization, cookie or host"));
        }
        if api_keys.cache_capacity == 0 || api_keys.cache_capacity > 1_000_000 || api_keys.cache_ttl_secs > 3600 || api_keys.negative_cache_ttl_secs > 3600 {
            return Err(ConfigError::new("api_keys", "cache_capacity 1-1000000, TTLs at most 3600"));
        }
        let mut upstream_credentials = BTreeMap::new();
        for (name, mut u) in self.upstream_credentials {
            let f = |x: &str| format!("upstream_credentials.{name}.{x}");
            u.header = u.header.to_ascii_lowercase();
            if u.header.is_empty()
                || !u.header.bytes().all(is_tchar)
                || HOP_BY_HOP_OR_FRAMING.contains(&u.header.as_str())
                || u.header.starts_with(RESERVED_HEADER_PREFIX)
                || u.header == api_keys.header
                || u.header == request_id_header
                || forward_claims.iter().any(|(h, _)| *h == u.header)
            {
                return Err(ConfigError::new(f("header"), "a header name that is not hop-by-hop, framing, cookie, host, the API key header, or one Edgeward sets (x-edgeward-*, request id, forward_claims)"));
            }
            if u.value.matches("{secret}").count() != 1 || u.value.chars().any(|c| !(' '..='~').contains(&c)) {
                return Err(ConfigError::new(f("value"), "printable ASCII with {secret} exactly once"));
            }
            if u.secret.is_empty() || !u.secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(f("secret"), "the name of a Worker secret (letters, digits, _)"));
            }
            upstream_credentials.insert(name, u);
        }
        for (i, r) in routes.rules().iter().enumerate() {
            if let Some(u) = &r.upstream_credential {
                if !upstream_credentials.contains_key(u) {
                    return Err(ConfigError::new(format!("routes[{i}].upstream_credential"), format!("no upstream_credentials entry named {u:?}")));
                }
            }
            if r.auth != Accepts::Jwt && r.public {
                warnings.push(format!("routes[{i}] is public: its auth setting has no effect"));
            }
            if r.sensitive && !self.revocations.enabled {
                warnings.push(format!("routes[{i}] is sensitive but revocations.enabled is false: the ledger is not asked"));
            }
        }
        let protected_headers: Vec<String> = [&api_keys.header, &request_id_header]
            .into_iter()
            .chain(forward_claims.iter().map(|(h, _)| h))
            .chain(upstream_credentials.values().map(|u| &u.header))
            .map(|h| super::canonical::folded_header_name(h))
            .collect();
        let rate_limits = self.rate_limits.validate()?.with_case_insensitive(request.case_insensitive || routes.any_case_insensitive());
        if rate_limits.ip_pre_auth.is_none() && routes.rules().iter().any(|r| r.auth != Accepts::Jwt && !r.public) {
            warnings.push(
                "routes take API keys but rate_limits.ip_pre_auth is not set: anyone can make well-formed keys (the checksum is public), and each costs a KV read".into(),
            );
        }
        self.jwks_cache.validate()?;
        let token_claims =
            super::claims::claims_read(&forward_claims, rate_limits.claims_read().into_iter().chain(super::usage::CLAIMS_READ.map(String::from)));
        let (leeway_secs, max_lifetime_secs) = lifetimes(self.leeway_secs, self.max_lifetime_secs)?;
        Ok(Policy {
            issuers,
            leeway_secs,
            max_lifetime_secs,
            require_exp: self.require_exp,
            max_token_bytes: self.max_token_bytes,
            origin,
            origin_timeout_ms: self.origin_timeout_ms,
            routes,
            realm: self.realm,
            cookie_name: self.cookie_name,
            query_param: self.query_param,
            forward_claims,
            token_claims,
            request_id_header,
            jwks_cache: self.jwks_cache,
            cookies: self.cookies,
            csrf: self.csrf,
            cors,
            dpop,
            logging,
            ip_blocks,
            observability,
            alerts,
            token_cache: self.token_cache,
            rate_limits,
            revocations: self.revocations,
            admin: self.admin,
            api_keys,
            upstream_credentials,
            protected_headers,
            request,
            path_rules,
            warnings,
        })
    }
}

impl<'p> From<&'p Policy> for TokenRules<'p> {
    fn from(p: &'p Policy) -> TokenRules<'p> {
        TokenRules {
            issuers: &p.issuers,
            leeway_secs: p.leeway_secs,
            max_lifetime_secs: p.max_lifetime_secs,
            require_exp: p.require_exp,
            claims: &p.token_claims,
        }
    }
}

impl<'p> From<&'p Policy> for JwtRules<'p> {
    fn from(p: &'p Policy) -> JwtRules<'p> {
        JwtRules { tokens: p.into(), max_token_bytes: p.max_token_bytes, jwks_cache: &p.jwks_cache }
    }
}

impl<'p> From<&'p Policy> for CredentialPlaces<'p> {
    fn from(p: &'p Policy) -> CredentialPlaces<'p> {
        CredentialPlaces {
            api_key_header: &p.api_keys.header,
            cookie_name: p.cookie_name.as_deref(),
            query_param: p.query_param.as_deref(),
            websocket_protocol: false,
        }
    }
}

impl<'p> From<&'p Policy> for ForwardRules<'p> {
    fn from(p: &'p Policy) -> ForwardRules<'p> {
        ForwardRules {
            origin: &p.origin,
            request: &p.request,
            credentials: p.into(),
            forward_claims: &p.forward_claims,
            request_id_header: &p.request_id_header,
            protected_headers: &p.protected_headers,
        }
    }
}

impl Policy {
    /// The canonical request every later step decides on (see [`super::canonical`]), refused if
    /// it is ambiguous, including when its route rule depends on letter case
    /// (`request.case_ambiguity: reject`). What every adapter calls first.
    pub fn canonical_request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
    ) -> Result<super::canonical::CanonicalRequest, super::error::AuthError> {
        let c = super::canonical::canonicalize(method, path, query, headers, &self.request, &self.path_rules)?;
        if self.request.case_ambiguity == super::canonical::CaseAmbiguity::Reject {
            self.routes.check_case(&c.method, &c.path)?;
        }
        Ok(c)
    }

    /// Parses and validates a JSON configuration document.
    pub fn from_json(s: &str) -> Result<Policy, ConfigError> {
        EdgewardConfig::from_json(s)?.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "issuers": [{"issuer": "https://id.example", "jwks_uri": "https://id.example/jwks", "algorithms": ["RS256"]}],
            "origin": "https://origin.example/"
        })
    }

    #[test]
    fn defaults() {
        let p = Policy::from_json(&base().to_string()).unwrap();
        assert_eq!(p.leeway_secs, 60);
        assert_eq!(p.max_lifetime_secs, Some(86_400));
        assert!(p.require_exp);
        assert_eq!(p.max_token_bytes, 16_384);
        assert_eq!(p.origin, "https://origin.example");
        assert_eq!(p.jwks_cache.unknown_kid_cooldown_secs, 30);
        assert_eq!(p.jwks_cache.min_ttl_secs, 300);
        assert_eq!(p.realm, "edgeward");
        assert!(p.forward_claims.iter().any(|(h, c)| h == "x-edgeward-sub" && c == "sub"));
    }

    /// A token-checks-only document gives the JWT step the rules the same members give in a
    /// whole document (every other member at its default), and the same errors, naming the same
    /// fields.
    #[test]
    fn tokens_only_is_a_whole_document_with_defaults() {
        let issuer = serde_json::json!({"issuer": "https://id.example", "jwks_uri": "http://keys.example/jwks", "allow_insecure_jwks_uri": true, "algorithms": ["RS256", "ES256"], "audiences": ["api"]});
        for extra in [serde_json::json!({}), serde_json::json!({"leeway_secs": 5, "max_lifetime_secs": null, "require_exp": false})] {
            let mut doc = extra.clone();
            doc["issuers"] = serde_json::json!([issuer]);
            let alone = EdgewardConfig::tokens_only(&doc).unwrap();
            doc["origin"] = "https://origin.example".into();
            let whole = Policy::from_json(&doc.to_string()).unwrap();
            assert_eq!(format!("{:?}", JwtRules::from(&alone)), format!("{:?}", JwtRules::from(&whole)));
            assert_eq!(format!("{:?}", alone.token_cache), format!("{:?}", whole.token_cache));
            assert_eq!(alone.warnings, whole.warnings);
            assert_eq!(alone.warnings.len(), 1, "the insecure key URL: {:?}", alone.warnings);
        }
        let bad = |doc: serde_json::Value| EdgewardConfig::tokens_only(&doc).unwrap_err().field;
        assert_eq!(bad(serde_json::json!({"issuers": [issuer], "leeway_secs": -1})), "leeway_secs");
        // An hour of leeway at most, alone and in a whole document (4294967295 let `exp: 1` through).
        assert_eq!(bad(serde_json::json!({"issuers": [issuer], "leeway_secs": 3601})), "leeway_secs");
        assert_eq!(bad(serde_json::json!({"issuers": [issuer], "leeway_secs": 4_294_967_295u32})), "leeway_secs");
        assert_eq!(EdgewardConfig::tokens_only(&serde_json::json!({"issuers": [issuer], "leeway_secs": 3600})).unwrap().leeway_secs, 3600);
        let mut whole = serde_json::json!({"issuers": [issuer], "origin": "https://origin.example", "leeway_secs": 3601});
        assert_eq!(err_field(whole.clone()), "leeway_secs");
        whole["leeway_secs"] = 3600.into();
        assert!(Policy::from_json(&whole.to_string()).is_ok());
        assert_eq!(bad(serde_json::json!({"issuers": [issuer], "require_exp": "yes"})), "require_exp");
        assert_eq!(bad(serde_json::json!({"issuers": [issuer], "origin": "https://o.example"})), "origin", "a member of a whole document is unknown here");
        assert_eq!(bad(serde_json::json!({"leeway_secs": 5})), "issuers");
        assert_eq!(bad(serde_json::json!({"issuers": []})), "issuers");
        assert_eq!(
            bad(serde_json::json!({"issuers": [{"issuer": null, "jwks_uri": "https://id.example/jwks", "algorithms": ["XS256"]}]})),
            "issuers[0].algorithms[0]"
        );
        assert_eq!(bad(serde_json::json!({"issuers": [{"issuer": null, "jwks_uri": "https://id.example/jwks", "algorithms": 3}]})), "issuers[0].algorithms");
        assert_eq!(
            bad(serde_json::json!({"issuers": [{"issuer": null, "jwks_uri": "http://id.example/jwks", "algorithms": ["ES256"]}]})),
            "issuers[0].jwks_uri"
        );
        assert_eq!(bad(serde_json::json!([])), "EDGEWARD_CONFIG");
    }

    fn err_field(v: serde_json::Value) -> String {
        Policy::from_json(&v.to_string()).unwrap_err().field
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["issuers"] = serde_json::json!([]);
        assert_eq!(err_field(v), "issuers");
        let mut v = base();
        v["issuers"][0]["algorithms"] = serde_json::json!(["RS256", "none"]);
        assert_eq!(err_field(v), "issuers[0].algorithms[1]");
        let mut v = base();
        v["leeway_secs"] = serde_json::json!("soon");
        assert_eq!(err_field(v), "leeway_secs");
        let mut v = base();
        v["isuers"] = serde_json::json!([]);
        assert_eq!(err_field(v), "isuers", "an unknown field is named");
        let mut v = base();
        v["issuers"][0]["jwks_uri"] = serde_json::json!("ftp://x");
        assert_eq!(err_field(v), "issuers[0].jwks_uri");
        let mut v = base();
        v["issuers"][0]["algorithms"] = serde_json::json!(["RS256", "HS256"]);
        assert_eq!(err_field(v), "issuers[0].algorithms");
        let mut v = base();
        v["origin"] = serde_json::json!("/relative");
        assert_eq!(err_field(v), "origin");
        assert_eq!(Policy::from_json("not json").unwrap_err().field, "EDGEWARD_CONFIG");
        let mut v = base();
        v.as_object_mut().unwrap().remove("origin");
        assert_eq!(err_field(v), "origin");
        let mut v = base();
        v["issuers"][0]["audiences"] = serde_json::json!("api");
        assert_eq!(err_field(v), "issuers[0].audiences");
        let mut v = base();
        v["rate_limits"] = serde_json::json!({"mode": "exactly"});
        assert_eq!(err_field(v), "rate_limits");
    }

    #[test]
    fn null_issuer_only_alone() {
        let mut v = base();
        v["issuers"][0]["issuer"] = serde_json::Value::Null;
        assert!(Policy::from_json(&v.to_string()).is_ok());
        let second = v["issuers"][0].clone();
        v["issuers"].as_array_mut().unwrap().push(second);
        assert_eq!(err_field(v), "issuers[0].issuer");
    }

    #[test]
    fn hmac_never_fetched() {
        let mut v = base();
        v["issuers"][0]["algorithms"] = serde_json::json!(["HS256"]);
        assert_eq!(err_field(v), "issuers[0].jwks_uri");
    }

    #[test]
    fn forward_claims_cannot_use_the_headers_edgeward_sets() {
        for h in ["x-edgeward-auth", "X-Edgeward-Key-Id", "authorization"] {
            let mut v = base();
            v["forward_claims"] = serde_json::json!({h: "typ"});
            assert_eq!(err_field(v), format!("forward_claims.{h}"));
        }
    }

    #[test]
    fn api_key_routes_without_a_pre_auth_limit_warn() {
        let mut v = base();
        v["routes"] = serde_json::json!([{"path": "/svc/*", "auth": "api_key"}]);
        let p = Policy::from_json(&v.to_string()).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("ip_pre_auth")), "{:?}", p.warnings);
        v["rate_limits"] = serde_json::json!({"ip_pre_auth": {"rate": 100, "period_secs": 60, "burst": 100}});
        let p = Policy::from_json(&v.to_string()).unwrap();
        assert!(!p.warnings.iter().any(|w| w.contains("ip_pre_auth")));
    }

    #[test]
    fn plain_http_jwks_uri_only_on_loopback_or_by_choice() {
        for ok in ["http://127.0.0.1:9/jwks", "http://localhost/jwks", "http://[::1]:80/k", "http://127.8.0.1/k"] {
            let mut v = base();
            v["issuers"][0]["jwks_uri"] = serde_json::json!(ok);
            assert!(Policy::from_json(&v.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example/jwks",
            "http://127.0.0.1.evil.example/k",
            "http://localhost.evil/k",
            "http://127.0.0.1@id.example/k",
            // fetch reads `\` as `/` (the host is id.example) and drops tabs and newlines.
            "http://id.example\\@localhost/k",
            "http://id.example:80\\@127.0.0.1/k",
            "http://local\thost/k",
            "http://id.example\n@localhost/k",
        ] {
            let mut v = base();
            v["issuers"][0]["jwks_uri"] = serde_json::json!(bad);
            assert_eq!(err_field(v.clone()), "issuers[0].jwks_uri", "{bad}");
            v["issuers"][0]["allow_insecure_jwks_uri"] = serde_json::json!(true);
            let p = Policy::from_json(&v.to_string()).unwrap();
            assert!(p.warnings.iter().any(|w| w.contains("plain http")), "{bad}");
        }
    }

    #[test]
    fn request_section_is_validated_and_named() {
        let mut v = base();
        v["request"] = serde_json::json!({"escaped_slashes": "decode"});
        assert_eq!(err_field(v), "request");
        let mut v = base();
        v["request"] = serde_json::json!({"max_path_bytes": 3});
        assert_eq!(err_field(v), "request.max_path_bytes");
        let mut v = base();
        v["request"] = serde_json::json!({"case_insensitive": true});
        let p = Policy::from_json(&v.to_string()).unwrap();
        assert!(!p.path_rules.refuse_ascii_lookalikes, "no route: nothing is matched case-insensitively");
        v["routes"] = serde_json::json!([{"path": "/admin/*", "scopes": ["admin"]}]);
        let p = Policy::from_json(&v.to_string()).unwrap();
        assert!(p.path_rules.refuse_ascii_lookalikes);
    }

    #[test]
    fn cookie_without_host_prefix_warns() {
        let mut v = base();
        v["cookie_name"] = serde_json::json!("session");
        let p = Policy::from_json(&v.to_string()).unwrap();
        assert!(p.warnings[0].contains("__Host-"));
    }
}
