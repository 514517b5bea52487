//! The decision pipeline: from a request as received to a decision (refuse with an
//! [`AuthError`], hand an admin call to the control plane, or forward with a plan), with the
//! response policy and the decision record. Written once, here, over injected I/O
//! ([`GateIo`]): the Worker, the CLI, the JS package, the bench and the host tests all run it.
//!
//! The steps, in order (the README's "What is checked, in order" is this list):
//! 0. the client's address against the block list ([`super::ipblock`]): `403 ip_blocked`;
//! 1. the canonical request ([`Policy::canonical_request`]): refused before anything else;
//! 2. the admin prefix: an admin call, not a gate decision;
//! 3. a CORS preflight on a CORS route: answered here, never forwarded;
//! 4. a WebSocket upgrade: only on a `websocket` route, as a `GET`;
//! 5. the route rule: public routes are forwarded without a credential;
//! 6. the per-IP pre-authentication limit;
//! 7. the credential (exactly one; of a kind the route takes);
//! 8. a cookie JWT on an unsafe method: CSRF; on a WebSocket upgrade: its `Origin`;
//! 9. verification: API key (format, checksum, peppered hash lookup, record) or JWT (token cache,
//!    parse, issuer, keys, signature, claims: [`Gate::verify_jwt`]);
//! 10. revocations (the edge copy; the ledger itself on `sensitive` routes);
//! 11. route scopes;
//! 12. rate limits;
//! 13. the forwarding plan (the route's origin credential, verified claims; for a WebSocket, the
//!     upgrade, and the watch that ends the socket with its credential: [`Gate::watch_socket`]).

use super::access::{Accepts, Requirement};
use super::apikey::{hash_storage_key, key_hash, KeyRecord, PresentedKey, VerifiedApiKey, PEPPER_SECRET};
use super::config::Policy;
use super::cookie::{check_csrf, clearing_cookie, csrf_cookie, enforce, request_cookie, CookieAction};
use super::cors::{is_preflight, requested_method, CorsPolicy, Preflight};
use super::dpop::{self, DpopMode};
use super::error::DpopFailure;
use super::error::{ApiKeyFailure, AuthError};
use super::identity::Identity;
use super::io::{Deferred, GateIo, Level};
pub use super::jwt::{discovery_snapshot_key, issuer_keys, jwks_snapshot_key};
use super::jwt::{identify, secs, JwtRules};
use super::log::CredentialSource;
use super::log::{fingerprint, fingerprint_of_digest, DecisionLog};
use super::ratelimit::{Bucket, Decision, LimitMode, OnUnavailable};
use super::request::{extract_credential, plan_forward, split_url, Credential, CredentialPlaces, ForwardPlan, ForwardRules, RequestView};
use super::revocation::{
    decode_shard, Manifest, RevocationSet, RevocationSnapshot, Shard, LEGACY_SNAPSHOT_KEY, MANIFEST_KEY, MAX_MANIFEST_BYTES, MAX_SNAPSHOT_BYTES, SNAPSHOT_KEY,
};
use super::state::{CachedKey, EdgeRevocations, IsolateState};
use super::token_cache::{token_hash, TokenHash};
use super::usage::{analytics_point, is_auth_failure, Observation};
use super::verify::VerifiedToken;
use super::websocket::{self, CloseReason, SocketCheck};
use serde_json::json;
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

/// Largest API key record read from KV.
const MAX_KEY_RECORD_BYTES: usize = 256 * 1024;
/// Longest a deferred usage flush waits for its time, and goes on flushing (ms).
pub const MAX_FLUSH_WAIT_MS: i64 = 25_000;
/// Most flushes one deferred usage flush makes.
const FLUSH_ROUNDS: usize = 3;

/// A policy and the isolate state built for it: what a runtime keeps per configuration.
#[derive(Debug)]
pub struct Gate {
    policy: Policy,
    state: IsolateState,
}

/// A request as the adapter received it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The method, raw (extension methods included).
    pub method: &'a str,
    /// The absolute URL, raw.
    pub url: &'a str,
    /// The headers, in order.
    pub headers: &'a [(String, String)],
    /// This request's id.
    pub request_id: &'a str,
    /// When the request arrived (ms since the Unix epoch).
    pub now_ms: i64,
    /// The SHA-256 fingerprint (hex) of the client certificate the platform verified for this
    /// connection (mutual TLS), if any: what certificate-bound tokens are checked against. Never
    /// taken from a header.
    pub client_cert_sha256: Option<&'a str>,
    /// The client's country and the serving data center, as the platform saw them (for the
    /// record only).
    pub geo: Option<(&'a str, &'a str)>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Answer with this error.
    Refuse(Refusal<'a>),
    /// The gate's own answer that is not an error (an allowed CORS preflight's `204`): sent and
    /// logged like a refusal.
    Answer(Refusal<'a>),
    /// An admin API call (under `admin.path_prefix`): the control plane's to answer.
    Admin(AdminCall<'a>),
    /// Send this to the origin.
    Forward(Box<Forward<'a>>),
}

/// A refusal: the response and the decision record (to be emitted as it is).
#[derive(Debug)]
pub struct Refusal<'a> {
    /// The response to send.
    pub response: ErrorResponse,
    /// The decision record.
    pub log: DecisionLog<'a>,
}

impl<'a> Refusal<'a> {
    /// The refusal of every request while the configuration is invalid (`config_invalid`, with
    /// the configuration error as the operator's detail).
    pub fn unconfigured(req: &Incoming<'a>, detail: String) -> Refusal<'a> {
        let mut log = DecisionLog {
            event: "decision",
            ts_ms: req.now_ms,
            request_id: req.request_id,
            method: log_prefix(req.method, 32).to_string(),
            path: log_prefix(split_url(req.url).map_or("", |(_, p, _)| p), 256).to_string(),
            detail: Some(detail),
            ..Default::default()
        };
        let response = refusal(&AuthError::ConfigInvalid, None, &mut log);
        Refusal { response, log }
    }
}

/// An admin API call, with its canonical path.
#[derive(Debug)]
pub struct AdminCall<'a> {
    /// Canonical path.
    pub path: String,
    /// Query string (without `?`).
    pub query: String,
    /// The client address.
    pub client_ip: Option<IpAddr>,
    /// The decision record so far.
    pub log: DecisionLog<'a>,
}

/// An approved request.
#[derive(Debug)]
pub struct Forward<'a> {
    /// The canonical method.
    pub method: String,
    /// The origin request.
    pub plan: ForwardPlan,
    /// Whether the request was authenticated (or a public route's).
    pub authenticated: bool,
    /// Rate-limit headers for the response (the tightest bucket's), if any.
    pub limit_headers: Vec<(String, String)>,
    /// Whether a CSRF cookie is to be set on the response.
    pub mint_csrf: bool,
    /// How long to wait for the origin's response headers (ms): the route's `timeout_ms`, else
    /// `origin_timeout_ms`. Past it: [`Gate::origin_timed_out`].
    pub timeout_ms: u32,
    /// A WebSocket upgrade: what the adapter needs to end the socket with its credential.
    pub socket: Option<SocketWatch>,
    /// CORS headers for the response (`Some`, possibly empty: the origin's own
    /// `Access-Control-*` headers are replaced by these), or `None` when CORS does not apply.
    pub cors: Option<Vec<(String, String)>>,
    /// The decision record (finished by [`Gate::respond`] or [`Gate::origin_failed`]).
    pub log: DecisionLog<'a>,
}

/// An error response, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Status.
    pub status: u16,
    /// Headers, names lower case (`set-cookie` may repeat).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

/// The origin response's `Set-Cookie` headers, as the adapter could read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCookies {
    /// Each header on its own (never joined: `Expires` holds commas).
    Each(Vec<String>),
    /// The runtime cannot list them one by one; `present` says whether there are any.
    Unreadable {
        /// Any `Set-Cookie` at all.
        present: bool,
    },
}

/// How the origin's response is changed before it is relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEdits {
    /// Headers to set (replacing the origin's).
    pub set: Vec<(String, String)>,
    /// Headers to append to the origin's (`Vary: Origin`).
    pub append: Vec<(String, String)>,
    /// Remove every `Access-Control-*` header of the origin's first (the gate's CORS headers,
    /// in `set`, are the only ones).
    pub replace_cors: bool,
    /// `Some`: every `Set-Cookie` of the origin is replaced by these.
    pub set_cookies: Option<Vec<String>>,
}

/// Who a request was authenticated as (owned; [`Identity`] borrows it).
#[derive(Debug)]
enum Principal {
    Token(Box<VerifiedToken>),
    Key(VerifiedApiKey),
}

impl Principal {
    fn identity(&self) -> Identity<'_> {
        match self {
            Principal::Token(t) => Identity::Token(t),
            Principal::Key(k) => Identity::ApiKey(k),
        }
    }

    /// When it stops being valid (Unix seconds): a token's `exp`, a key's expiry.
    fn expires_at(&self) -> Option<i64> {
        match self {
            Principal::Token(t) => t.expires_at(),
            Principal::Key(k) => k.expires_at(),
        }
    }
}

/// What the request's connection adds to its headers: a WebSocket upgrade (on a route that takes
/// it), and the client certificate the platform verified.
#[derive(Debug, Clone, Copy)]
struct Connection<'r> {
    upgrade: bool,
    client_cert: Option<&'r str>,
}

/// An approved WebSocket: its credential, kept to end the socket when it expires or is revoked
/// ([`Gate::watch_socket`]).
#[derive(Debug)]
pub struct SocketWatch {
    principal: Option<Principal>,
    sensitive: bool,
}

/// A client certificate's SHA-256 thumbprint as `cnf["x5t#S256"]` spells it (base64url), from
/// the platform's hex fingerprint; `None` if that is not 64 hex digits.
fn cert_thumbprint(hex_fp: &str) -> Option<String> {
    let b = hex::decode(hex_fp.trim()).ok().filter(|b| b.len() == 32)?;
    Some(super::json::b64url_encode(&b))
}

/// At most `max` bytes of `s`, cut at a character boundary (for log fields a client controls).
fn log_prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The one place a rejection becomes an HTTP response: status, `WWW-Authenticate`, stable code,
/// `Retry-After`, the request id under the policy's header (the defaults when there is no
/// policy: an invalid configuration). Also finishes the decision record.
pub fn refusal(e: &AuthError, policy: Option<&Policy>, log: &mut DecisionLog<'_>) -> ErrorResponse {
    let r = e.rejection(policy.map_or("edgeward", |p| p.realm.as_str()));
    log.decision = "reject";
    log.status = r.status;
    log.reason = Some(r.code);
    log.revoked = matches!(e, AuthError::TokenRevoked | AuthError::ApiKeyInvalid(ApiKeyFailure::Revoked));
    if log.detail.is_none() {
        log.detail = Some(e.to_string());
    }
    let mut body = json!({"code": r.code, "message": r.message, "request_id": log.request_id});
    if let Some(err) = r.rfc_error {
        body["error"] = serde_json::Value::from(err);
    }
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
        (policy.map_or("x-request-id", |p| p.request_id_header.as_str()).to_string(), log.request_id.to_string()),
    ];
    if let Some(mut w) = r.www_authenticate {
        // A token sent with DPoP is challenged in that scheme (RFC 9449 §7.1), with the
        // algorithms a proof may use.
        if log.credential == Some(CredentialSource::Dpop) {
            if let Some(rest) = w.strip_prefix("Bearer ") {
                w = format!("DPoP {rest}");
            }
        }
        if let (true, Some(p)) = (w.starts_with("DPoP "), policy) {
            w.push_str(&format!(", algs=\"{}\"", p.dpop.algs()));
        }
        headers.push(("www-authenticate".into(), w));
    }
    if let AuthError::DpopNonce(n) = e {
        headers.push(("dpop-nonce".into(), n.clone()));
    }
    match e {
        AuthError::RateLimited { retry_after_secs, headers: h, .. } => {
            headers.push(("retry-after".into(), retry_after_secs.to_string()));
            headers.extend(h.iter().cloned());
        }
        _ if r.status == 503 => headers.push(("retry-after".into(), "5".into())),
        _ => {}
    }
    ErrorResponse { status: r.status, headers, body: body.to_string() }
}

impl Gate {
    /// A gate for `policy`, with empty isolate state.
    pub fn new(policy: Policy) -> Gate {
        let state = IsolateState::new(&policy);
        Gate { policy, state }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The isolate state.
    pub fn state(&self) -> &IsolateState {
        &self.state
    }

    fn refuse<'a>(&self, e: &AuthError, mut log: DecisionLog<'a>) -> Outcome<'a> {
        let response = refusal(e, Some(&self.policy), &mut log);
        Outcome::Refuse(Refusal { response, log })
    }

    /// Decides one request (see the module docs for the steps). With `cors` configured, a
    /// refusal carries the CORS headers for the request's `Origin` (so a browser app can read
    /// it), and so will the origin's response (see [`Gate::respond`]).
    pub async fn decide<'a, I: GateIo>(&self, io: &I, req: &Incoming<'a>) -> Outcome<'a> {
        let mut out = self.decide_request(io, req).await;
        if let Outcome::Refuse(r) | Outcome::Answer(r) = &out {
            self.count(io, &r.log);
        }
        if let Outcome::Refuse(r) = &mut out {
            // (A refused preflight has its own: no allow headers.)
            if let Some(c) = self.cors_for(cors_method(&r.log.method, req.headers), &r.log.path).filter(|_| !is_preflight(&r.log.method, req.headers)) {
                r.response.headers.extend(c.response_headers(req.headers));
            }
        }
        out
    }

    /// The CORS policy for a request to `path` by `method` (for a preflight, the method it asks
    /// for: [`cors_method`]), unless unset or off for its route.
    fn cors_for(&self, method: &str, path: &str) -> Option<&CorsPolicy> {
        self.policy.cors.as_ref().filter(|_| self.policy.routes.rule(method, path).is_none_or(|r| r.cors))
    }

    /// A CORS preflight, answered here: counted by `rate_limits.ip_pre_auth` like any request
    /// without a credential, then `204` with the allow headers or `403 cors_rejected`.
    async fn preflight<'a, I: GateIo>(&self, io: &I, c: &CorsPolicy, req: &Incoming<'a>, client_ip: Option<IpAddr>, mut log: DecisionLog<'a>) -> Outcome<'a> {
        if let Err(e) = self.pre_auth_limit(io, client_ip, req.now_ms).await {
            return self.refuse(&e, log);
        }
        match c.preflight(req.headers) {
            Preflight::Allowed(mut headers) => {
                headers.push((self.policy.request_id_header.clone(), log.request_id.to_string()));
                log.decision = "preflight";
                log.status = 204;
                Outcome::Answer(Refusal { response: ErrorResponse { status: 204, headers, body: String::new() }, log })
            }
            Preflight::Refused(why) => {
                log.detail = Some(why.to_string());
                let mut response = refusal(&AuthError::CorsRejected, Some(&self.policy), &mut log);
                response.headers.push(("vary".into(), "Origin".into()));
                Outcome::Refuse(Refusal { response, log })
            }
        }
    }

    async fn decide_request<'a, I: GateIo>(&self, io: &I, req: &Incoming<'a>) -> Outcome<'a> {
        let policy = &self.policy;
        let now = secs(req.now_ms);
        // Until the request is canonical, the log shows (a bounded prefix of) what was received.
        let mut log = DecisionLog {
            event: "decision",
            ts_ms: req.now_ms,
            request_id: req.request_id,
            method: log_prefix(req.method, 32).to_string(),
            ..Default::default()
        };
        // Who asked, for the record (never for a decision: the client IP's decisions below parse
        // it themselves).
        let lg = &policy.logging;
        log.sampled_out = !lg.logs_accepted(req.request_id);
        let key = (lg.client_ip == super::logging::ClientIpMode::Hashed).then(|| io.secret(&lg.ip_hash_secret)).flatten();
        let ip_header = req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("cf-connecting-ip")).map(|(_, v)| v.as_str());
        let client_ip = super::canonical::client_ip(ip_header);
        log.client_ip = client_ip.and_then(|ip| lg.client_ip(ip, key.as_deref().map(str::as_bytes)));
        log.user_agent = req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("user-agent")).map(|(_, v)| v.chars().take(256).collect());
        if let Some((country, colo)) = req.geo {
            log.country = Some(country.to_string()).filter(|c| !c.is_empty());
            log.colo = Some(colo.to_string()).filter(|c| !c.is_empty());
        }
        let Some((origin, raw_path, query)) = split_url(req.url) else {
            return self.refuse(&AuthError::Internal, log);
        };
        log.path = log_prefix(raw_path, 256).to_string();
        // A blocked address is refused before anything else of its request is read.
        if let Some(ip) = client_ip {
            let hashed = log.client_ip.as_deref().filter(|_| lg.client_ip == super::logging::ClientIpMode::Hashed);
            if self.ip_blocked(io, ip, hashed, now).await {
                return self.refuse(&AuthError::IpBlocked, log);
            }
        }
        // One canonical request: what every rule below decides on and what the origin receives.
        let canon = match policy.canonical_request(req.method, raw_path, query, req.headers) {
            Ok(c) => c,
            Err(e) => return self.refuse(&e, log),
        };
        log.method.clone_from(&canon.method);
        log.path.clone_from(&canon.path);
        log.rule = policy.routes.rule(&canon.method, &canon.path).map(|r| r.path.clone());
        let prefix = policy.admin.path_prefix.as_str();
        if canon.path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Outcome::Admin(AdminCall { path: canon.path, query: query.to_string(), client_ip, log });
        }
        if is_preflight(&canon.method, req.headers) {
            if let Some(c) = requested_method(req.headers).and_then(|m| self.cors_for(m, &canon.path)) {
                return self.preflight(io, c, req, client_ip, log).await;
            }
        }
        let upgrade = match websocket::upgrade(req.headers) {
            websocket::Upgrade::None => false,
            websocket::Upgrade::WebSocket if canon.method == "GET" && policy.routes.rule(&canon.method, &canon.path).is_some_and(|r| r.websocket) => true,
            websocket::Upgrade::WebSocket | websocket::Upgrade::Unusable => return self.refuse(&AuthError::WebSocketNotAllowed, log),
        };
        let view = RequestView { method: &canon.method, path: &canon.path, query, headers: req.headers, client_ip, origin };
        let conn = Connection { upgrade, client_cert: req.client_cert_sha256 };
        let (principal, limit_headers) = match self.gate(io, &view, conn, now, req.now_ms, &mut log).await {
            Ok(v) => v,
            Err(e) => {
                let mut response = refusal(&e, Some(policy), &mut log);
                // A dead token in a cookie is cleared, so the browser is not stuck with it.
                if let (Some(CredentialSource::Cookie), Some(name), Some("invalid_token")) =
                    (log.credential, &policy.cookie_name, e.rejection(&policy.realm).rfc_error)
                {
                    response.headers.push(("set-cookie".into(), clearing_cookie(name)));
                }
                return Outcome::Refuse(Refusal { response, log });
            }
        };
        let who = principal.as_ref().map(Principal::identity);
        let upstream = match self.upstream_credential(io, &view, who.is_some()) {
            Ok(u) => u,
            Err(detail) => {
                log.detail = Some(detail);
                return self.refuse(&AuthError::ConfigInvalid, log);
            }
        };
        let rule = policy.routes.rule(view.method, view.path);
        let mut rules = ForwardRules::from(policy);
        if let Some(o) = rule.and_then(|r| r.origin.as_deref()) {
            rules.origin = o;
        }
        let timeout_ms = rule.and_then(|r| r.timeout_ms).unwrap_or(policy.origin_timeout_ms);
        let mut plan = match plan_forward(&view, who, upstream.as_ref().map(|(h, v)| (h.as_str(), v.as_str())), rules, req.request_id) {
            Ok(p) => p,
            Err(e) => return self.refuse(&e, log),
        };
        let authenticated = who.is_some();
        if let Some(exp) = principal.as_ref().and_then(Principal::expires_at).filter(|e| upgrade && e.saturating_mul(1000) <= req.now_ms) {
            // Within leeway at the check, but a socket would be closed at once: not opened at all.
            return self.refuse(&AuthError::Expired { now, exp }, log);
        }
        let socket = upgrade.then(|| {
            websocket::origin_handshake(&mut plan.headers);
            SocketWatch { principal, sensitive: rule.is_some_and(|r| r.sensitive) }
        });
        let mint_csrf = log.credential == Some(CredentialSource::Cookie) && policy.csrf.enabled && request_cookie(&view, &policy.csrf.cookie).is_none();
        let cors = self.cors_for(cors_method(&canon.method, req.headers), &canon.path).map(|c| c.response_headers(req.headers));
        Outcome::Forward(Box::new(Forward { method: canon.method, plan, authenticated, limit_headers, mint_csrf, timeout_ms, socket, cors, log }))
    }

    /// Steps 5–12: the principal (None on a public route) and the rate-limit headers.
    /// `upgrade`: a WebSocket upgrade (on a route that takes it).
    async fn gate<I: GateIo>(
        &self,
        io: &I,
        view: &RequestView<'_>,
        conn: Connection<'_>,
        now: i64,
        now_ms: i64,
        log: &mut DecisionLog<'_>,
    ) -> Result<(Option<Principal>, Vec<(String, String)>), AuthError> {
        let policy = &self.policy;
        let requirement = policy.routes.requirement(view.method, view.path);
        if requirement == Requirement::Public {
            return Ok((None, Vec::new()));
        }
        self.pre_auth_limit(io, view.client_ip, now_ms).await?;
        let accepts = policy.routes.accepts(view.method, view.path);
        let mut places = CredentialPlaces::from(policy);
        places.websocket_protocol = conn.upgrade;
        let Some(Credential { token, source }) = extract_credential(view, places)? else {
            return Err(match accepts {
                Accepts::Jwt => AuthError::MissingToken,
                Accepts::ApiKey => AuthError::MissingApiKey,
                Accepts::Either => AuthError::MissingCredential,
            });
        };
        log.credential = Some(source);
        // A JWT is hashed once: the token-cache key, and its fingerprint for the log.
        let hash = (!source.is_api_key()).then(|| token_hash(&token));
        log.token_fp = Some(match &hash {
            Some(h) => fingerprint_of_digest(h),
            None => fingerprint(token.as_bytes()),
        });
        let principal = match hash {
            None => {
                if accepts == Accepts::Jwt {
                    return Err(AuthError::CredentialNotAccepted(accepts));
                }
                Principal::Key(self.authenticate_key(io, &token, view.client_ip, now_ms, log).await?)
            }
            Some(hash) => {
                if accepts == Accepts::ApiKey {
                    return Err(AuthError::CredentialNotAccepted(accepts));
                }
                if source == CredentialSource::Cookie {
                    check_csrf(view, &policy.csrf)?;
                    if conn.upgrade {
                        websocket::check_cookie_origin(view.headers, view.origin, &policy.csrf.allowed_origins)?;
                    }
                }
                let opaque = token.bytes().filter(|b| *b == b'.').count() != 2;
                let verified = if opaque && policy.issuers.iter().any(|i| i.introspection.is_some()) {
                    self.introspect(io, &token, &hash, now, log).await?
                } else {
                    self.verify_jwt(io, &token, &hash, now, log).await?
                };
                self.check_binding(io, view, source, &token, &verified, conn.client_cert, now, log).await?;
                Principal::Token(Box::new(verified))
            }
        };
        // One tail for both kinds: revocations (snapshot, and the ledger on sensitive routes),
        // route scopes, rate limits.
        let who = principal.identity();
        self.check_revocations(io, who, policy.routes.is_sensitive(view.method, view.path), now).await?;
        who.authorize(&requirement)?;
        let limits = self.limits(io, view, who, now_ms).await?;
        Ok((Some(principal), limits))
    }

    /// A sender-constrained token's proof of possession: a certificate-bound token
    /// (`cnf["x5t#S256"]`) only over a connection with that client certificate; a DPoP-bound one
    /// (`cnf.jkt`) only as `Authorization: DPoP` with a valid proof ([`super::dpop`]), never as a
    /// bearer token; the route's `dpop` mode. Runs on every request, cache hits included (a
    /// proof is good for one request).
    #[allow(clippy::too_many_arguments)]
    async fn check_binding<I: GateIo>(
        &self,
        io: &I,
        view: &RequestView<'_>,
        source: CredentialSource,
        raw: &str,
        t: &VerifiedToken,
        client_cert: Option<&str>,
        now: i64,
        log: &mut DecisionLog<'_>,
    ) -> Result<(), AuthError> {
        let policy = &self.policy;
        if let Some(x5t) = t.cert_thumbprint() {
            if client_cert.and_then(cert_thumbprint).as_deref() != Some(x5t) {
                return Err(AuthError::CertificateMismatch);
            }
        }
        let mode = policy.routes.dpop(view.method, view.path);
        if source != CredentialSource::Dpop {
            if t.dpop_jkt().is_some() {
                return Err(AuthError::DpopBoundAsBearer);
            }
            return if mode == DpopMode::Required { Err(AuthError::DpopRequired) } else { Ok(()) };
        }
        if mode == DpopMode::Disabled {
            return Err(AuthError::DpopNotAccepted);
        }
        let d = &policy.dpop;
        let pending = dpop::parse_proof(dpop::the_proof(view.headers)?, d)?;
        let job = pending.job().ok_or(AuthError::Dpop(DpopFailure::Signature))?;
        let proof = io.verify_signature(&job).await.map_err(|e| if e == AuthError::BadSignature { AuthError::Dpop(DpopFailure::Signature) } else { e })?;
        let (claims, key) = pending.finish(proof)?;
        let secret = match &d.nonce_secret {
            None => None,
            Some(name) => match io.secret(name).filter(|s| s.len() >= 32) {
                Some(s) => Some(s),
                None => {
                    log.detail = Some(format!("dpop.nonce is on and the Worker secret {name} is missing or shorter than 32 characters"));
                    return Err(AuthError::ConfigInvalid);
                }
            },
        };
        let nonces = secret.as_deref().map(|s| dpop::Nonces::new(s.as_bytes(), d.nonce_slot_secs));
        let nonce_check = nonces.as_ref().map(|n| move |got: Option<&str>| if got.is_some_and(|g| n.accepts(g, now)) { Ok(()) } else { Err(n.current(now)) });
        let ctx = dpop::ProofContext { method: view.method, origin: view.origin, path: view.path, token: raw, now };
        let checked = dpop::check_claims(
            &claims,
            &key,
            &ctx,
            t.dpop_jkt(),
            d,
            |p| super::canonical::canonical_path(p, &policy.path_rules).ok(),
            nonce_check.as_ref().map(|c| c as dpop::NonceCheck<'_>),
        )?;
        if !self.state.dpop_replay.borrow_mut().first_use(&checked, now) {
            return Err(AuthError::Dpop(DpopFailure::Replay));
        }
        if d.replay_exact {
            // Once in every isolate: the replay Durable Object has the last word.
            match io.claim_once(checked.replay_key, checked.remember_until).await {
                Ok(true) => {}
                Ok(false) => return Err(AuthError::Dpop(DpopFailure::Replay)),
                Err(e) => {
                    log.detail = Some(format!("replay check failed: {e}"));
                    return Err(AuthError::DpopReplayUnavailable);
                }
            }
        }
        Ok(())
    }

    /// Step 8 for an authenticated principal: the edge copy of the revocation set, and on
    /// `sensitive` routes the ledger itself (unreachable: fail closed).
    pub async fn check_revocations<I: GateIo>(&self, io: &I, who: Identity<'_>, sensitive: bool, now: i64) -> Result<(), AuthError> {
        if !self.policy.revocations.enabled {
            return Ok(());
        }
        self.revocations_ready(io, now).await?;
        self.check_edge_copy(who, now)?;
        if sensitive {
            self.check_ledger(io, who).await?;
        }
        Ok(())
    }

    /// The isolate's copy of the revocation list, as it is (its readiness is the caller's).
    fn check_edge_copy(&self, who: Identity<'_>, now: i64) -> Result<(), AuthError> {
        let edge = self.state.revocations.borrow();
        match who {
            Identity::Token(t) => edge.set.check(t, now),
            Identity::ApiKey(k) if edge.set.api_key_revoked(k.id(), now) => Err(AuthError::ApiKeyInvalid(ApiKeyFailure::Revoked)),
            Identity::ApiKey(_) => Ok(()),
        }
    }

    /// Asks the revocation ledger itself (strict mode: `sensitive` routes, admin JWTs).
    /// Unreachable ledger: fail closed.
    pub async fn check_ledger<I: GateIo>(&self, io: &I, who: Identity<'_>) -> Result<(), AuthError> {
        let (facts, revoked) = match who {
            Identity::Token(t) => {
                let facts = json!({
                    "iss": t.issuer().unwrap_or(""),
                    "jti": t.jti(),
                    "sub": t.subject(),
                    "iat": t.issued_at(),
                    "kid": t.kid(),
                });
                (facts, AuthError::TokenRevoked)
            }
            Identity::ApiKey(k) => (json!({"iss": "", "api_key": k.id()}), AuthError::ApiKeyInvalid(ApiKeyFailure::Revoked)),
        };
        match io.ask_ledger(&facts).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(revoked),
            Err(e) => {
                io.log(Level::Warn, &json!({"event": "revocation_ledger_unreachable", "error": e.to_string()}));
                Err(AuthError::RevocationsUnavailable)
            }
        }
    }

    /// Whether an open WebSocket may stay open, and when to ask again: closed at its
    /// credential's expiry (`exp` itself, no leeway), or when the credential is revoked, or when
    /// the revocation list cannot be had (fail closed). The list is re-read here when stale (a
    /// socket has no later request to refresh it), and the next check is when it next goes
    /// stale: a revocation ends the socket within `revocations.refresh_secs` (plus a second) of
    /// reaching the edge's KV. One timer per socket, never per message.
    pub async fn watch_socket<I: GateIo>(&self, io: &I, w: &SocketWatch, now_ms: i64) -> SocketCheck {
        // Never later than an hour: a JS timer cannot wait much longer than 24 days, and nothing
        // here should depend on one that long.
        const LONGEST_WAIT_MS: i64 = 3_600_000;
        let Some(p) = &w.principal else { return SocketCheck::Open { recheck_at_ms: None } };
        let key = matches!(p, Principal::Key(_));
        let expires_ms = p.expires_at().map(|s| s.saturating_mul(1000));
        if expires_ms.is_some_and(|e| now_ms >= e) {
            return SocketCheck::Close(if key { CloseReason::ApiKeyExpired } else { CloseReason::TokenExpired });
        }
        let longest = now_ms.saturating_add(LONGEST_WAIT_MS);
        let cfg = &self.policy.revocations;
        if !cfg.enabled {
            return SocketCheck::Open { recheck_at_ms: Some(expires_ms.map_or(longest, |e| e.min(longest))) };
        }
        let now = secs(now_ms);
        let (loaded_at, attempted_at, loading) = {
            let e = self.state.revocations.borrow();
            (e.loaded_at, e.attempted_at, e.loading)
        };
        // A watch never waits on a read another request or socket started (it would be resumed
        // in that one's context, whose timers and sockets are not its own): it reads the list
        // itself, or decides on the copy it has and looks again in a second.
        let stale = loaded_at.is_none_or(|t| now - t >= i64::from(cfg.refresh_secs));
        let mut again_soon = false;
        if stale {
            if loading || attempted_at.is_some_and(|t| now - t < 1) || !io.has_kv() {
                again_soon = true;
            } else {
                self.state.revocations.borrow_mut().attempted_at = Some(now);
                self.load_revocations(io, now).await;
            }
        }
        let loaded_at = self.state.revocations.borrow().loaded_at;
        match loaded_at {
            Some(t) if now - t <= i64::from(cfg.max_age_secs) => {}
            // Nothing usable yet, and a read under way: look again shortly.
            _ if again_soon && self.state.revocations.borrow().loading => {}
            _ => return SocketCheck::Close(CloseReason::RevocationsUnavailable),
        }
        let verdict = match self.check_edge_copy(p.identity(), now) {
            Ok(()) if w.sensitive => self.check_ledger(io, p.identity()).await,
            other => other,
        };
        match verdict {
            Ok(()) => {}
            Err(AuthError::RevocationsUnavailable) => return SocketCheck::Close(CloseReason::RevocationsUnavailable),
            Err(_) => return SocketCheck::Close(if key { CloseReason::ApiKeyRevoked } else { CloseReason::TokenRevoked }),
        }
        let next_s = match self.state.revocations.borrow().loaded_at {
            Some(t) if !again_soon => (t + i64::from(cfg.refresh_secs)).max(now + 1),
            _ => now + 1,
        };
        let next = next_s.saturating_mul(1000).min(longest);
        SocketCheck::Open { recheck_at_ms: Some(expires_ms.map_or(next, |e| e.min(next))) }
    }

    /// The per-IP limit checked before any credential is read (`rate_limits.ip_pre_auth`), for
    /// the gate and the admin API alike.
    pub async fn pre_auth_limit<I: GateIo>(&self, io: &I, ip: Option<IpAddr>, now_ms: i64) -> Result<(), AuthError> {
        if let Some(b) = self.policy.rate_limits.pre_auth_bucket(ip) {
            self.apply_limits(io, std::slice::from_ref(&b), now_ms).await?;
        }
        Ok(())
    }

    /// Post-verification rate limits; the headers of the tightest bucket for the response.
    async fn limits<I: GateIo>(&self, io: &I, view: &RequestView<'_>, who: Identity<'_>, now_ms: i64) -> Result<Vec<(String, String)>, AuthError> {
        let rl = &self.policy.rate_limits;
        let buckets = rl.buckets(view.path, who, view.client_ip);
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self.apply_limits(io, &buckets, now_ms).await? {
            // The rate-limiting binding reports no remaining count, so nothing to tell on success.
            Some((b, d)) if rl.headers_on_success && rl.mode != LimitMode::Binding => {
                super::ratelimit::headers(&b.rule, &b.quota, &d).map(|(k, v)| (k.to_string(), v)).to_vec()
            }
            _ => Vec::new(),
        })
    }

    /// Applies one request to every bucket; the most restrictive decision (and its bucket), or
    /// the refusal. An unreachable limiter limits in the isolate or refuses
    /// (`rate_limits.on_unavailable`): never silently unlimited.
    async fn apply_limits<'b, I: GateIo>(&self, io: &I, buckets: &'b [Bucket], now_ms: i64) -> Result<Option<(&'b Bucket, Decision)>, AuthError> {
        let rl = &self.policy.rate_limits;
        let mut tightest: Option<(&Bucket, Decision)> = None;
        for b in buckets {
            let local = || self.local_limit(io, b, now_ms);
            let remote = match (rl.mode, b.binding.as_deref()) {
                (LimitMode::Local, _) => None,
                // The pre-auth IP bucket has no binding: it is kept in the isolate.
                (LimitMode::Binding, None) => None,
                (LimitMode::Binding, Some(binding)) => Some(io.ask_limit_binding(binding, &b.key).await.map(|allowed| {
                    // The binding says only yes or no: a refusal is told to retry after the
                    // rule's emission interval, and no remaining count is reported.
                    let t = if allowed { 0 } else { b.quota.interval_ms() };
                    Decision { allowed, tat_ms: 0, remaining: 0, retry_after_ms: t, reset_ms: t }
                })),
                (LimitMode::Exact, _) => Some(io.ask_limiter(b).await),
            };
            let d = match remote {
                None => local(),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    let fallback = matches!(rl.on_unavailable, OnUnavailable::Local);
                    io.log(Level::Warn, &json!({"event": "rate_limiter_unavailable", "rule": b.rule, "error": e.to_string(), "fallback": fallback}));
                    if !fallback {
                        return Err(AuthError::RateLimiterUnavailable);
                    }
                    local()
                }
            };
            if !d.allowed {
                let headers = super::ratelimit::headers(&b.rule, &b.quota, &d).map(|(k, v)| (k.to_string(), v)).to_vec();
                return Err(AuthError::RateLimited { rule: b.rule.clone(), retry_after_secs: super::ratelimit::retry_after_secs(&d), headers });
            }
            if tightest.as_ref().is_none_or(|(_, t)| d.remaining < t.remaining) {
                tightest = Some((b, d));
            }
        }
        Ok(tightest)
    }

    /// One request against the isolate's own limiter. When it has had to drop keys whose window
    /// was still open (a rule's key table full: many distinct clients, or a client rotating
    /// addresses), that is logged — `rate_limiter_evicting_live`, with the count so far over all
    /// rules — at most
    /// once a minute, so an operator sees that `rate_limits.local_capacity` is reached.
    fn local_limit<I: GateIo>(&self, io: &I, b: &Bucket, now_ms: i64) -> Decision {
        let (d, evicted) = {
            let mut l = self.state.limiter.borrow_mut();
            (l.check(b, now_ms), l.evicted_live())
        };
        let (reported, at) = self.state.evictions_reported.get();
        if evicted > reported && now_ms - at >= 60_000 {
            self.state.evictions_reported.set((evicted, now_ms));
            io.log(
                Level::Warn,
                &json!({"event": "rate_limiter_evicting_live", "evicted_live": evicted, "since_last": evicted - reported, "capacity_per_rule": self.policy.rate_limits.local_capacity}),
            );
        }
        d
    }

    /// The route's origin credential as (header, value), for an authenticated request on a route
    /// that names one. A configured secret that is missing fails the request closed.
    fn upstream_credential<I: GateIo>(&self, io: &I, view: &RequestView<'_>, authenticated: bool) -> Result<Option<(String, String)>, String> {
        let policy = &self.policy;
        let Some(name) = policy.routes.rule(view.method, view.path).and_then(|r| r.upstream_credential.as_ref()).filter(|_| authenticated) else {
            return Ok(None);
        };
        let Some(u) = policy.upstream_credentials.get(name) else { return Err(format!("upstream credential {name:?} is not configured")) };
        let secret = io.secret(&u.secret).ok_or_else(|| format!("the Worker secret {} (upstream credential {name:?}) is not set", u.secret))?;
        if secret.is_empty() || secret.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(format!("the Worker secret {} is empty or not printable ASCII", u.secret));
        }
        Ok(Some((u.header.clone(), u.value.replacen("{secret}", &secret, 1))))
    }

    // ---- API keys ---------------------------------------------------------------------------

    /// The edge check of a presented API key: format and checksum offline, then one KV read by
    /// the key's peppered hash (cached in the isolate for a short TTL, negative results too),
    /// then the record's own checks.
    async fn authenticate_key<I: GateIo>(
        &self,
        io: &I,
        text: &str,
        ip: Option<IpAddr>,
        now_ms: i64,
        log: &mut DecisionLog<'_>,
    ) -> Result<VerifiedApiKey, AuthError> {
        let cfg = &self.policy.api_keys;
        let presented = PresentedKey::parse(text, Some(cfg.environment)).map_err(AuthError::ApiKeyMalformed)?;
        let Some(pepper) = io.secret(PEPPER_SECRET).filter(|p| p.len() >= 32) else {
            log.detail = Some(format!("the {PEPPER_SECRET} secret is missing or shorter than 32 characters"));
            return Err(AuthError::ApiKeysUnavailable);
        };
        let hash = key_hash(pepper.as_bytes(), &presented).ok_or(AuthError::ApiKeysUnavailable)?;
        let cached = self.state.keys.borrow_mut().get(&hash.0).filter(|e| e.until_ms > now_ms).map(|e| e.record.clone());
        let record = match cached {
            Some(r) => {
                log.key_cache = Some("hit");
                r
            }
            None => {
                log.key_cache = Some("miss");
                if !io.has_kv() {
                    return Err(AuthError::ApiKeysUnavailable);
                }
                log.kv_reads += 1;
                let bytes = io.kv_read(&hash_storage_key(&hash.hex()), MAX_KEY_RECORD_BYTES).await.map_err(|e| {
                    log.detail = Some(format!("KV read failed: {e}"));
                    AuthError::ApiKeysUnavailable
                })?;
                let record = match bytes {
                    None => None,
                    Some(b) => {
                        match std::str::from_utf8(&b).map_err(|e| e.to_string()).and_then(|t| super::json::from_text::<KeyRecord>(t).map_err(|e| e.to_string()))
                        {
                            Ok(r) => Some(Rc::new(r)),
                            Err(e) => {
                                io.log(Level::Error, &json!({"event": "api_key_record_invalid", "error": e}));
                                return Err(AuthError::ApiKeysUnavailable);
                            }
                        }
                    }
                };
                let ttl = if record.is_some() { cfg.cache_ttl_secs } else { cfg.negative_cache_ttl_secs };
                let until_ms = now_ms + i64::from(ttl) * 1000;
                self.state.keys.borrow_mut().put(hash.0, CachedKey { record: record.clone(), until_ms });
                record
            }
        };
        let Some(record) = record else {
            return Err(AuthError::ApiKeyInvalid(ApiKeyFailure::Unknown));
        };
        log.key_id = Some(record.id.clone());
        record.check(&hash, cfg.environment, secs(now_ms), ip)
    }

    // ---- JWTs -------------------------------------------------------------------------------

    /// What the JWT step reads of the policy.
    fn jwt(&self) -> JwtRules<'_> {
        (&self.policy).into()
    }

    /// Verifies a JWT (through the verified-token cache): what every JWT goes through, on the
    /// request path, for admin JWTs, in the CLI and the bench: the JWT step ([`super::jwt::JwtState::verify`])
    /// with this gate's policy and isolate state. Revocations are the caller's to check. `hash` is
    /// [`super::token_cache::token_hash`] of `token`.
    pub async fn verify_jwt<I: GateIo>(&self, io: &I, token: &str, hash: &TokenHash, now: i64, log: &mut DecisionLog<'_>) -> Result<VerifiedToken, AuthError> {
        self.state.jwt.verify(self.jwt(), io, token, hash, now, log).await
    }

    /// An opaque token (not a compact JWS), checked by its issuer's introspection endpoint
    /// (RFC 7662; with several introspecting issuers, the one whose `token_prefix` it has). An
    /// active answer's claims go through the same checks as a signed token's and it is cached by
    /// the token's hash for `cache_ttl_secs` (never past its `exp`); an inactive one is
    /// `token_inactive`, remembered for `negative_cache_ttl_secs`; an endpoint that fails or
    /// times out is `503 introspection_unavailable`, never an accept.
    async fn introspect<I: GateIo>(&self, io: &I, token: &str, hash: &TokenHash, now: i64, log: &mut DecisionLog<'_>) -> Result<VerifiedToken, AuthError> {
        let policy = &self.policy;
        if token.len() > policy.max_token_bytes {
            return Err(AuthError::TokenTooLarge { len: token.len(), max: policy.max_token_bytes });
        }
        let cached = self.state.jwt.tokens.borrow_mut().get(hash, now);
        if let Some(v) = cached {
            log.token_cache = Some("hit");
            identify(log, &v);
            return Ok(v);
        }
        log.token_cache = Some("miss");
        if self.state.inactive.borrow_mut().get(hash).is_some_and(|until| *until > now) {
            return Err(AuthError::TokenInactive);
        }
        let introspecting = || policy.issuers.iter().enumerate().filter(|(_, i)| i.introspection.is_some());
        let by_prefix = introspecting().find(|(_, i)| i.token_prefix.as_deref().is_some_and(|p| token.starts_with(p)));
        let unprefixed: Vec<usize> = introspecting().filter(|(_, i)| i.token_prefix.is_none()).map(|(n, _)| n).collect();
        let i = match (by_prefix, unprefixed.as_slice()) {
            (Some((n, _)), _) => n,
            (None, [n]) => *n,
            _ => return Err(AuthError::IssuerMismatch),
        };
        let Some(cfg) = policy.issuers[i].introspection.as_ref() else { return Err(AuthError::Internal) };
        let Some(secret) = io.secret(&cfg.client_secret).filter(|s| !s.is_empty()) else {
            log.detail = Some(format!("the Worker secret {} (introspection client secret) is not set", cfg.client_secret));
            return Err(AuthError::ConfigInvalid);
        };
        let enc = super::canonical::form_encode;
        let (form, authorization) = match cfg.auth {
            super::verify::ClientAuth::ClientSecretBasic => {
                let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{}:{}", enc(&cfg.client_id), enc(&secret)));
                (format!("token={}&token_type_hint=access_token", enc(token)), Some(format!("Basic {basic}")))
            }
            super::verify::ClientAuth::ClientSecretPost => {
                (format!("token={}&token_type_hint=access_token&client_id={}&client_secret={}", enc(token), enc(&cfg.client_id), enc(&secret)), None)
            }
        };
        log.iss = policy.issuers[i].issuer.clone();
        let unavailable = |log: &mut DecisionLog<'_>, detail: String| {
            log.detail = Some(detail);
            AuthError::IntrospectionUnavailable
        };
        let endpoint = match &cfg.endpoint {
            Some(e) => e.clone(),
            None => {
                self.state.jwt.discover(self.jwt(), io, i, now, &mut log.jwks_fetches).await;
                let d = self.state.jwt.discovery.borrow();
                let found = d.get(i).and_then(|d| d.usable(now, &policy.jwks_cache)).and_then(|m| m.introspection_endpoint.clone());
                drop(d);
                match found {
                    Some(e) => e,
                    None => return Err(unavailable(log, "the issuer's metadata (discovery), which names the introspection endpoint, is not available".into())),
                }
            }
        };
        let (status, body) = match io.introspect(&endpoint, &form, authorization.as_deref(), cfg.timeout_ms).await {
            Ok(a) => a,
            Err(e) => return Err(unavailable(log, format!("introspection failed: {e}"))),
        };
        if status != 200 {
            return Err(unavailable(log, format!("the introspection endpoint answered {status}")));
        }
        let Ok(answer) = super::json::parse_strict_object(body.as_bytes()) else {
            return Err(unavailable(log, "the introspection answer is not a JSON object".into()));
        };
        match answer.get("active") {
            Some(serde_json::Value::Bool(true)) => {}
            Some(serde_json::Value::Bool(false)) => {
                let until = now.saturating_add(i64::from(cfg.negative_cache_ttl_secs));
                self.state.inactive.borrow_mut().put(*hash, until);
                return Err(AuthError::TokenInactive);
            }
            _ => return Err(unavailable(log, "the introspection answer has no boolean active".into())),
        }
        let verified = VerifiedToken::from_introspection(answer, i, policy, now)?;
        identify(log, &verified);
        self.state.jwt.tokens.borrow_mut().insert_for(*hash, &verified, &format!("introspection:{i}"), now, i64::from(cfg.cache_ttl_secs));
        Ok(verified)
    }

    /// A DPoP proof checked offline (the CLI's `verify --dpop-proof`), as the request path checks
    /// it ([`super::dpop`]) for `method` and the absolute `url`, with a synchronous `backend`; no
    /// server nonce and no replay cache (there is no other request to compare with).
    #[allow(clippy::too_many_arguments)]
    pub fn check_dpop_inline<B: super::crypto::SignatureBackend>(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        token: &str,
        verified: &VerifiedToken,
        backend: B,
        now: i64,
    ) -> Result<dpop::CheckedProof, AuthError> {
        let policy = &self.policy;
        let (origin, raw_path, query) = split_url(url).ok_or(AuthError::Internal)?;
        let canon = policy.canonical_request(method, raw_path, query, &[])?;
        let pending = dpop::parse_proof(proof, &policy.dpop)?;
        let job = pending.job().ok_or(AuthError::Dpop(DpopFailure::Signature))?;
        let signed = backend.verify(&job).map_err(|e| if e == AuthError::BadSignature { AuthError::Dpop(DpopFailure::Signature) } else { e })?;
        let (claims, key) = pending.finish(signed)?;
        let ctx = dpop::ProofContext { method: &canon.method, origin, path: &canon.path, token, now };
        dpop::check_claims(&claims, &key, &ctx, verified.dpop_jkt(), &policy.dpop, |p| super::canonical::canonical_path(p, &policy.path_rules).ok(), None)
    }

    /// Verifies `token` at `now` with the policy's inline keys and `backend`: the JWT step of
    /// the pipeline, for callers without a network (the CLI's `verify`, the JS package's
    /// `verify`/`explain`). With `trace`, the record's [`DecisionLog::trace`] lists the steps taken.
    pub fn verify_inline<B: super::crypto::SignatureBackend>(
        &self,
        token: &str,
        backend: B,
        now: i64,
        trace: bool,
    ) -> (Result<VerifiedToken, AuthError>, DecisionLog<'static>) {
        let mut log = DecisionLog { event: "verify", ..Default::default() };
        let io = super::io::InlineIo { backend, now_ms: now.saturating_mul(1000), trace };
        let hash = token_hash(token);
        let result = super::io::run_ready(self.verify_jwt(&io, token, &hash, now, &mut log)).unwrap_or(Err(AuthError::Internal));
        (result, log)
    }

    // ---- the block list ---------------------------------------------------------------------

    /// Whether `ip` is on the isolate's copy of the block list ([`super::ipblock`]): read on the
    /// isolate's first request (each request that finds no copy yet reads it itself, never waiting
    /// on another's read) and again in the background every `ip_blocks.refresh_secs`. Fails open:
    /// a list that cannot be read blocks nothing it did not hold already (and while none was ever
    /// read, it is tried again at most once a second).
    async fn ip_blocked<I: GateIo>(&self, io: &I, ip: std::net::IpAddr, hashed: Option<&str>, now: i64) -> bool {
        let cfg = &self.policy.ip_blocks;
        if !cfg.enabled || !io.has_kv() {
            return false;
        }
        let (loaded_at, attempted_at, failed_at) = {
            let b = self.state.blocks.borrow();
            (b.loaded_at, b.attempted_at, b.failed_at)
        };
        match loaded_at {
            // No copy yet: this request reads it (unless a read failed within the last second).
            None if failed_at.is_none_or(|t| now - t >= 1) => self.load_blocks(io, now).await,
            Some(t) if now - t >= i64::from(cfg.refresh_secs) && attempted_at.is_none_or(|a| now - a >= 1) => {
                self.state.blocks.borrow_mut().attempted_at = Some(now);
                io.defer(Deferred::RefreshBlocks);
            }
            _ => {}
        }
        self.state.blocks.borrow().set.blocks(ip, hashed, now)
    }

    /// Reads the published block list; installs it unless the isolate holds a newer one.
    async fn load_blocks<I: GateIo>(&self, io: &I, now: i64) {
        self.state.blocks.borrow_mut().attempted_at = Some(now);
        let read = match io.kv_read(super::ipblock::BLOCKS_KEY, super::ipblock::MAX_BLOCKS_BYTES).await {
            Ok(Some(b)) => std::str::from_utf8(&b)
                .map_err(|e| e.to_string())
                .and_then(|t| super::json::from_text::<super::ipblock::BlockList>(t).map_err(|e| format!("bad block list: {e}")))
                .map(|l| super::ipblock::BlockSet::from_list(&l, now)),
            Ok(None) => Ok((super::ipblock::BlockSet::default(), 0)),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok((set, skipped)) => {
                if skipped > 0 {
                    io.log(Level::Warn, &json!({"event": "ip_blocks_skipped", "entries": skipped}));
                }
                let mut b = self.state.blocks.borrow_mut();
                if b.loaded_at.is_none() || set.version() >= b.set.version() {
                    b.set = set;
                }
                b.loaded_at = Some(now);
                b.failed_at = None;
            }
            Err(error) => {
                self.state.blocks.borrow_mut().failed_at = Some(now);
                io.log(Level::Warn, &json!({"event": "ip_blocks_read_failed", "error": error}));
            }
        }
    }

    // ---- revocations ------------------------------------------------------------------------

    /// Makes sure the edge copy of the revocation set may be used for this request: loaded on
    /// first use (and when the copy is older than `max_age_secs`), refreshed in the background
    /// when older than `refresh_secs`. Fails closed when no copy at most `max_age_secs` old can be
    /// had. The caller then reads `state.revocations` (never across an await).
    async fn revocations_ready<I: GateIo>(&self, io: &I, now: i64) -> Result<(), AuthError> {
        let cfg = &self.policy.revocations;
        if !io.has_kv() {
            return Err(AuthError::RevocationsUnavailable);
        }
        let (loaded_at, attempted_at) = {
            let e = self.state.revocations.borrow();
            (e.loaded_at, e.attempted_at)
        };
        let stale = loaded_at.is_none_or(|t| now - t >= i64::from(cfg.refresh_secs));
        // A copy too old to be used (or none yet) is needed now; a merely stale one is refreshed
        // in the background.
        let needed_now = loaded_at.is_none_or(|t| now - t > i64::from(cfg.max_age_secs));
        if stale && attempted_at.is_none_or(|t| now - t >= 1) {
            self.state.revocations.borrow_mut().attempted_at = Some(now);
            if needed_now {
                self.load_revocations(io, now).await;
            } else {
                io.defer(Deferred::RefreshRevocations);
            }
        }
        if needed_now && self.state.revocations.borrow().loading {
            // Another request's read is in flight: its result is this request's too.
            LoadFinished(&self.state.revocations).await;
        }
        match self.state.revocations.borrow().loaded_at {
            Some(t) if now - t <= i64::from(cfg.max_age_secs) => Ok(()),
            _ => Err(AuthError::RevocationsUnavailable),
        }
    }

    /// Reads the published revocation list: the sharded snapshot's manifest, then only the
    /// shards whose version changed, one at a time, each installed as soon as it is read (so a
    /// refresh holds at most one shard beside the live set, and requests interleave with it).
    /// Without a manifest (a ledger of an earlier version), the format-2 snapshot, else the JSON
    /// one. A failed read keeps what the isolate has, and it is not marked fresh.
    async fn load_revocations<I: GateIo>(&self, io: &I, now: i64) {
        // One read at a time; the guard ends it (and wakes the waiting requests) however this
        // future ends, completed or dropped.
        let Some(_guard) = LoadGuard::start(&self.state.revocations) else { return };
        // Read capped (the values are written by the control Worker, never by a client).
        let read = match io.kv_read(MANIFEST_KEY, MAX_MANIFEST_BYTES).await {
            Ok(Some(b)) => match Manifest::decode(&b) {
                Ok(m) => self.load_shards(io, &m, now).await,
                Err(e) => Err(e.to_string()),
            },
            Ok(None) => self.load_single(io, now).await,
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(()) => self.state.revocations.borrow_mut().loaded_at = Some(now),
            Err(err) => io.log(Level::Warn, &json!({"event": "revocations_read_failed", "error": err})),
        }
    }

    async fn load_shards<I: GateIo>(&self, io: &I, m: &Manifest, now: i64) -> Result<(), String> {
        let stale = {
            let e = self.state.revocations.borrow();
            if e.loaded_at.is_some() && m.version < e.set.version() {
                // An older manifest than the one already read (a KV cache behind another): the
                // copy held is newer.
                return Ok(());
            }
            e.set.stale_shards(m)
        };
        // Laid out differently (the first read, or the ledger re-sharded): built beside the live
        // set, which serves requests until the new one is complete.
        let mut fresh = stale.is_none().then(|| RevocationSet::for_manifest(m));
        let wanted = stale.unwrap_or_else(|| (0..m.shards.len()).collect());
        for i in wanted {
            let r = m.shards[i];
            let shard = if r.count == 0 {
                Shard::default()
            } else {
                let key = m.shard_key(i);
                match io.kv_read(&key, MAX_SNAPSHOT_BYTES).await {
                    Ok(Some(b)) => decode_shard(&b, m.bits, i, r.version, now).map_err(|e| format!("{key}: {e}"))?,
                    // Named by the manifest but not readable here yet (KV replicates each key on
                    // its own): the next refresh tries again.
                    Ok(None) => return Err(format!("{key}: not found")),
                    Err(e) => return Err(format!("{key}: {e}")),
                }
            };
            let installed = match fresh.as_mut() {
                Some(f) => f.install(m.bits, i, r.version, shard),
                None => self.state.revocations.borrow_mut().set.install(m.bits, i, r.version, shard),
            };
            if !installed {
                return Err("the list's layout changed during the read".into());
            }
        }
        let mut e = self.state.revocations.borrow_mut();
        if let Some(mut f) = fresh {
            f.set_version(m.version);
            if f.version() >= e.set.version() || e.loaded_at.is_none() {
                e.set = f;
            }
        } else {
            e.set.set_version(m.version);
        }
        Ok(())
    }

    async fn load_single<I: GateIo>(&self, io: &I, now: i64) -> Result<(), String> {
        let set = match io.kv_read(SNAPSHOT_KEY, MAX_SNAPSHOT_BYTES).await {
            Ok(Some(b)) => RevocationSet::from_compact(&b, now).map_err(|e| e.to_string())?,
            Ok(None) => match io.kv_read(LEGACY_SNAPSHOT_KEY, MAX_SNAPSHOT_BYTES).await {
                Ok(Some(b)) => std::str::from_utf8(&b)
                    .map_err(|e| e.to_string())
                    .and_then(|t| super::json::from_text::<RevocationSnapshot>(t).map_err(|e| format!("bad snapshot: {e}")))
                    .map(|s| RevocationSet::from_snapshot(&s, now))?,
                Ok(None) => RevocationSet::default(),
                Err(e) => return Err(e.to_string()),
            },
            Err(e) => return Err(e.to_string()),
        };
        let mut e = self.state.revocations.borrow_mut();
        if set.version() >= e.set.version() || e.loaded_at.is_none() {
            e.set = set;
        }
        Ok(())
    }

    // ---- after the decision -------------------------------------------------------------------

    /// Runs work left for after a response ([`GateIo::defer`]).
    pub async fn run_deferred<I: GateIo>(&self, io: &I, task: Deferred) {
        match task {
            task @ (Deferred::RefreshJwks { .. } | Deferred::PersistJwks { .. } | Deferred::PersistDiscovery { .. }) => {
                self.state.jwt.run_deferred(self.jwt(), io, task).await
            }
            Deferred::RefreshRevocations => self.load_revocations(io, secs(io.now_ms())).await,
            Deferred::RefreshBlocks => self.load_blocks(io, secs(io.now_ms())).await,
            Deferred::FlushUsage => self.flush_usage(io).await,
        }
    }

    /// Counts a finished decision in the usage counters ([`super::usage`]): accepted requests and
    /// refusals under each subject the record names (preflights, public routes and admin calls
    /// have none); when a flush is due, leaves it to [`Gate::run_deferred`].
    pub fn count<I: GateIo>(&self, io: &I, log: &DecisionLog<'_>) {
        if !io.counts_usage() {
            return;
        }
        if let Some(o) = self.tally(log) {
            if io.has_analytics() {
                io.write_data_point(&analytics_point(&o, log.status, log.colo.as_deref(), log.rule.as_deref(), &log.method));
            }
        }
        if self.state.usage.borrow_mut().should_flush(log.ts_ms) {
            io.defer(Deferred::FlushUsage);
        }
    }

    /// [`Gate::count`] without the flush: what was counted, if anything.
    pub(crate) fn tally<'l>(&self, log: &'l DecisionLog<'_>) -> Option<Observation<'l>> {
        let accepted = log.decision == "accept";
        let reason = if log.decision == "reject" { log.reason } else { None };
        if !accepted && reason.is_none() {
            return None;
        }
        let o = Observation {
            now_ms: log.ts_ms,
            request_id: log.request_id,
            accepted,
            reason,
            auth_failure: reason.is_some_and(|c| is_auth_failure(log.status, c)),
            revoked: log.revoked,
            key_id: log.key_id.as_deref(),
            iss: log.iss.as_deref(),
            sub: log.sub.as_deref(),
            client_id: log.client_id.as_deref(),
            client_ip: log.client_ip.as_deref(),
            country: log.country.as_deref(),
        };
        self.state.usage.borrow_mut().record(&o);
        Some(o)
    }

    /// Sends the usage counters, one batch per `UsageStore` shard; the shards that could not
    /// be reached keep their counts for the next flush.
    /// Waits until the flush is due, flushes, and goes on while counts came in meanwhile (at most
    /// [`FLUSH_ROUNDS`] times, and never past [`MAX_FLUSH_WAIT_MS`] after it started: the
    /// platform ends background work some 30 s after the answer; then the next decision asks
    /// again).
    async fn flush_usage<I: GateIo>(&self, io: &I) {
        let started = io.now_ms();
        for round in 0..FLUSH_ROUNDS {
            // (The first round was asked for by the decision that deferred this task.)
            if round > 0 {
                let next = io.now_ms() + self.state.usage.borrow().wait_ms(io.now_ms());
                if next - started > MAX_FLUSH_WAIT_MS || !self.state.usage.borrow_mut().should_flush(io.now_ms()) {
                    return;
                }
            }
            let wait = self.state.usage.borrow().wait_ms(io.now_ms()).min(MAX_FLUSH_WAIT_MS);
            if wait > 0 {
                io.sleep_ms(wait as u32).await;
            }
            self.flush_usage_once(io).await;
        }
    }

    async fn flush_usage_once<I: GateIo>(&self, io: &I) {
        let now_ms = io.now_ms();
        let batches = self.state.usage.borrow_mut().start_flush(now_ms);
        let mut failed = Vec::new();
        for (shard, batch) in &batches {
            let sent = match serde_json::to_string(batch) {
                Ok(text) => io.send_usage(*shard, &text).await,
                Err(e) => Err(super::io::IoError::Failed(e.to_string())),
            };
            if let Err(e) = sent {
                io.log(Level::Warn, &json!({"event": "usage_flush_failed", "shard": shard, "rows": batch.rows.len(), "error": e.to_string()}));
                failed.push(*shard);
            }
        }
        self.state.usage.borrow_mut().finish_flush(&failed);
    }

    /// The origin answered with `status`: the edits to its response (request id, rate-limit
    /// headers, every `Set-Cookie` brought to policy, a CSRF cookie minted from `csrf_random`
    /// when one is due), and the finished decision record.
    pub fn respond<I: GateIo>(
        &self,
        io: &I,
        fwd: &mut Forward<'_>,
        status: u16,
        cookies: OriginCookies,
        csrf_random: Option<[u8; 32]>,
        now: i64,
    ) -> ResponseEdits {
        let policy = &self.policy;
        let rid = fwd.log.request_id;
        let mut set = vec![(policy.request_id_header.clone(), rid.to_string())];
        set.extend(fwd.limit_headers.iter().cloned());
        let mut set_cookies = match cookies {
            OriginCookies::Unreadable { present: false } => None,
            // Without a list the cookies cannot be checked one by one: none is relayed unchecked.
            OriginCookies::Unreadable { present: true } => {
                io.log(Level::Error, &json!({"event": "cookie_policy_unavailable", "request_id": rid, "action": "dropped"}));
                Some(Vec::new())
            }
            OriginCookies::Each(list) if list.is_empty() => None,
            OriginCookies::Each(list) => Some(self.enforce_cookies(io, &list, rid, now)),
        };
        if let (true, Some(b)) = (fwd.mint_csrf, csrf_random) {
            set_cookies.get_or_insert_with(Vec::new).push(csrf_cookie(&policy.csrf, &super::json::b64url_encode(&b)));
        }
        fwd.log.decision = if fwd.authenticated { "accept" } else { "public" };
        fwd.log.status = status;
        self.count(io, &fwd.log);
        let replace_cors = fwd.cors.is_some();
        let (append, cors): (Vec<_>, Vec<_>) = fwd.cors.take().unwrap_or_default().into_iter().partition(|(k, _)| k == "vary");
        set.extend(cors);
        ResponseEdits { set, append, replace_cors, set_cookies }
    }

    fn enforce_cookies<I: GateIo>(&self, io: &I, list: &[String], rid: &str, now: i64) -> Vec<String> {
        let mut out = Vec::with_capacity(list.len());
        for header in list {
            let report = enforce(header, &self.policy.cookies, now);
            let action = match &report.action {
                CookieAction::Keep => {
                    out.push(header.clone());
                    "kept"
                }
                CookieAction::Fixed(s) => {
                    out.push(s.clone());
                    "fixed"
                }
                CookieAction::Drop => "dropped",
            };
            if !report.findings.is_empty() {
                io.log(
                    Level::Warn,
                    &json!({"event": "cookie_policy", "request_id": rid, "cookie": report.name, "findings": report.findings, "action": action}),
                );
            }
        }
        out
    }

    /// The origin could not be reached: the 502 and the finished record.
    pub fn origin_failed<'a>(&self, fwd: Forward<'a>, detail: String) -> Refusal<'a> {
        self.origin_error(fwd, &AuthError::OriginUnreachable, detail)
    }

    /// The origin sent no response headers within `fwd.timeout_ms` (the adapter has cancelled
    /// its request): `504 origin_timeout`, the wait in the log.
    pub fn origin_timed_out<'a>(&self, fwd: Forward<'a>, waited_ms: i64) -> Refusal<'a> {
        let detail = format!("no response headers after {waited_ms} ms (timeout {} ms)", fwd.timeout_ms);
        self.origin_error(fwd, &AuthError::OriginTimeout, detail)
    }

    fn origin_error<'a>(&self, fwd: Forward<'a>, e: &AuthError, detail: String) -> Refusal<'a> {
        let cors = fwd.cors;
        let mut log = fwd.log;
        log.detail = Some(detail);
        // Counted already when `respond` ran (a relay that failed after it).
        let counted = !log.decision.is_empty();
        let mut response = refusal(e, Some(&self.policy), &mut log);
        if !counted {
            // (The next decision starts the flush, if one is due.)
            self.tally(&log);
        }
        // Readable by a browser app like any other refusal.
        response.headers.extend(cors.unwrap_or_default());
        Refusal { response, log }
    }
}

/// The method whose route rule decides CORS for a request: for a preflight, the method it asks
/// for (a preflight left to a `cors: false` rule is then left alone all the way to the origin).
fn cors_method<'m>(method: &'m str, headers: &'m [(String, String)]) -> &'m str {
    if is_preflight(method, headers) {
        requested_method(headers).unwrap_or(method)
    } else {
        method
    }
}

/// Ends the revocation read in flight when dropped: clears `loading` and wakes the requests
/// waiting for it.
struct LoadGuard<'s>(&'s RefCell<EdgeRevocations>);

impl<'s> LoadGuard<'s> {
    /// `None` if a read is already in flight.
    fn start(state: &'s RefCell<EdgeRevocations>) -> Option<LoadGuard<'s>> {
        let mut e = state.borrow_mut();
        if e.loading {
            return None;
        }
        e.loading = true;
        Some(LoadGuard(state))
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut e = self.0.borrow_mut();
            e.loading = false;
            std::mem::take(&mut e.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

/// Ready when no revocation read is in flight.
struct LoadFinished<'s>(&'s RefCell<EdgeRevocations>);

impl std::future::Future for LoadFinished<'_> {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut e = self.0.borrow_mut();
        if e.loading {
            e.waiters.push(cx.waker().clone());
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    }
}
