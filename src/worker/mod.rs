//! The Cloudflare Worker adapter: reads the configuration, the clock, KV and the network, and
//! drives the core. All policy lives in [`crate::core`].

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "control")]
pub mod control;
mod executor;
mod js;
mod jwks;
mod keys;
mod limiter;
mod promise;
mod revocations;
mod webcrypto;

#[cfg(feature = "control")]
pub use control::{RateLimiter, RevocationLedger};

use crate::core::access::{Accepts, Requirement};
use crate::core::apikey::VerifiedApiKey;
use crate::core::canonical::client_ip;
use crate::core::config::{ConfigError, Policy};
use crate::core::cookie::{check_csrf, clearing_cookie, csrf_cookie, enforce, request_cookie, CookieAction};
use crate::core::error::ApiKeyFailure;
use crate::core::error::AuthError;
use crate::core::gate::issuer_keys;
use crate::core::identity::Identity;
use crate::core::jwk::KeySet;
use crate::core::log::{fingerprint, fingerprint_of_digest, CredentialSource, DecisionLog};
use crate::core::request::{extract_credential, plan_forward, split_url, Credential, RequestView};
use crate::core::token::UnverifiedToken;
use crate::core::token_cache::{token_hash, TokenCache, TokenHash};
use crate::core::verify::{PendingToken, VerifiedToken};
use std::cell::RefCell;
use std::rc::Rc;
use worker::{console_error, console_log, console_warn, Context, Env, Request, Response};

/// Name of the var holding the configuration JSON.
pub const CONFIG_VAR: &str = "EDGEWARD_CONFIG";
/// Name of the KV binding for JWKS snapshots (optional).
pub const KV_BINDING: &str = "EDGEWARD_KV";

/// Per-isolate state: the validated policy (or the error that fails every request closed).
struct Isolate {
    /// The configuration text the policy was built from (compared, not hashed, per request).
    config_text: Option<String>,
    policy: Result<Rc<Policy>, ConfigError>,
}

thread_local! {
    static ISOLATE: RefCell<Option<Rc<Isolate>>> = const { RefCell::new(None) };
    static TOKENS: RefCell<Option<TokenCache>> = const { RefCell::new(None) };
}

fn cached_token(hash: &TokenHash, now: i64) -> Option<VerifiedToken> {
    TOKENS.with(|t| t.borrow_mut().as_mut().and_then(|c| c.get(hash, now)))
}

fn cache_token(hash: TokenHash, token: VerifiedToken, key_fingerprint: String, now: i64) {
    TOKENS.with(|t| {
        if let Some(c) = t.borrow_mut().as_mut() {
            c.insert(hash, token, key_fingerprint, now);
        }
    });
}

/// Drops cached tokens of issuer `i` verified by keys that are no longer published.
pub(crate) fn purge_tokens(i: usize, live_fingerprints: &[&str]) -> usize {
    TOKENS.with(|t| t.borrow_mut().as_mut().map_or(0, |c| c.retain_keys(i, live_fingerprints)))
}

fn isolate(env: &Env) -> Rc<Isolate> {
    let text = env.var(CONFIG_VAR).map(|v| v.to_string()).ok();
    if let Some(i) = ISOLATE.with(|s| s.borrow().clone()).filter(|i| i.config_text == text) {
        return i;
    }
    let policy = match &text {
        None => Err(ConfigError { field: CONFIG_VAR.into(), message: "the var is not set".into() }),
        Some(t) => Policy::from_json(t),
    };
    match &policy {
        Ok(p) => {
            for w in &p.warnings {
                console_warn!("{}", serde_json::json!({"event": "config_warning", "message": w}));
            }
            jwks::reset(p);
            keys::reset(p);
            TOKENS.with(|t| *t.borrow_mut() = Some(TokenCache::new(&p.token_cache)));
        }
        Err(e) => console_error!("{}", serde_json::json!({"event": "config_invalid", "field": e.field, "message": e.to_string()})),
    }
    let i = Rc::new(Isolate { config_text: text, policy: policy.map(Rc::new) });
    ISOLATE.with(|s| *s.borrow_mut() = Some(i.clone()));
    i
}

fn kv_binding(env: &Env) -> Option<js::KvStore> {
    js::KvStore::from_env(env, KV_BINDING)
}

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: still unique enough per isolate for correlation, never for security.
        b[..8].copy_from_slice(&now_ms().to_be_bytes());
    }
    hex::encode(b)
}

/// Who a request was authenticated as (owned; [`Identity`] borrows it).
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
}

/// Outcome of the gate for one request, before the origin is called.
enum Verdict {
    Public,
    /// Authenticated, with the rate-limit headers to send on success (if any).
    Accept(Principal, Vec<(String, String)>),
}

/// Post-verification rate limits; the headers of the tightest bucket for the response.
async fn limits_for(policy: &Policy, env: &Env, view: &RequestView<'_>, who: Identity<'_>) -> Result<Vec<(String, String)>, AuthError> {
    let buckets = policy.rate_limits.buckets(view.path, who, view.client_ip);
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let tightest = limiter::check(&policy.rate_limits, env, &buckets, now_ms()).await?;
    Ok(match tightest {
        // The rate-limiting binding reports no remaining count, so nothing to tell on success.
        Some((b, d)) if policy.rate_limits.headers_on_success && policy.rate_limits.mode != crate::core::ratelimit::LimitMode::Binding => {
            crate::core::ratelimit::headers(&b.rule, &b.quota, &d).map(|(k, v)| (k.to_string(), v)).to_vec()
        }
        _ => Vec::new(),
    })
}

/// The Worker's `fetch` export (what `#[event(fetch)]` would generate), with the request's
/// future driven by [`executor`], which resumes it as soon as an awaited promise settles.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = fetch)]
pub fn fetch_export(req: worker::worker_sys::web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> worker::js_sys::Promise {
    let mut resolver = None;
    let promise = worker::js_sys::Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
    let Some(resolve) = resolver else { return promise };
    executor::spawn(async move {
        let raw = match fetch(Request::from(req), env, Context::new(ctx)).await {
            Ok(r) => worker::web_sys::Response::from(r),
            Err(e) => {
                console_error!("{}", serde_json::json!({"event": "internal_error", "message": e.to_string()}));
                panic_free_error()
            }
        };
        let _ = resolve.call1(&worker::wasm_bindgen::JsValue::UNDEFINED, &raw);
    });
    promise
}

/// A bare 500 for the one case where no response could be built at all.
fn panic_free_error() -> worker::web_sys::Response {
    let init = worker::web_sys::ResponseInit::new();
    init.set_status(500);
    worker::web_sys::Response::new_with_opt_str_and_init(Some("internal error"), &init).unwrap_or_else(|_| panic_free_default())
}

async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let start = now_ms();
    let rid = request_id();
    let iso = isolate(&env);
    // The raw method: workers-rs's `Method` turns extension methods (PROPFIND, ...) into GET.
    let raw_method = req.inner().method();
    let raw_url = req.inner().url();
    let Some((request_origin, raw_path, query)) = split_url(&raw_url).map(|(o, p, q)| (o.to_string(), p.to_string(), q.to_string())) else {
        return Ok(reject(&AuthError::Internal, None, &rid, &mut DecisionLog { event: "decision", ts_ms: start, request_id: &rid, ..Default::default() }));
    };
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    // Until the request is canonical, the log shows (a bounded prefix of) what was received.
    let (logged_method, logged_path) = (log_prefix(&raw_method, 32), log_prefix(&raw_path, 256));
    let mut log = DecisionLog { event: "decision", ts_ms: start, request_id: &rid, method: logged_method, path: logged_path, ..Default::default() };

    let policy = match &iso.policy {
        Ok(p) => p.clone(),
        Err(e) => {
            log.detail = Some(e.to_string());
            return Ok(reject(&AuthError::ConfigInvalid, None, &rid, &mut log));
        }
    };
    // One canonical request: what every rule below decides on and what the origin receives.
    let canon = match policy.canonical_request(&raw_method, &raw_path, &query, &headers) {
        Ok(c) => c,
        Err(e) => return Ok(reject(&e, Some(&*policy), &rid, &mut log)),
    };
    let (method, path) = (canon.method.as_str(), canon.path.as_str());
    log.method = method;
    log.path = path;
    let client = client_ip(headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("cf-connecting-ip")).map(|(_, v)| v.as_str()));
    let view = RequestView { method, path, query: &query, headers: &headers, client_ip: client, origin: &request_origin };
    if path == policy.admin.path_prefix || path.starts_with(&format!("{}/", policy.admin.path_prefix)) {
        #[cfg(feature = "control")]
        {
            // Guessing the admin credential is throttled like any unauthenticated traffic.
            if let Err(e) = pre_auth_limit(&policy, &env, client).await {
                return Ok(reject(&e, Some(&*policy), &rid, &mut log));
            }
            return control::admin::handle(req, &env, &ctx, &policy, path, &query, &headers, &rid, now_secs(start)).await;
        }
        #[cfg(not(feature = "control"))]
        return Ok(to_control_plane(req, &env, &policy, &rid, &mut log).await);
    }
    #[cfg(feature = "bench")]
    if path.starts_with(bench::PATH_PREFIX) {
        return bench::handle(&view, &policy, &env, &ctx, now_secs(start)).await;
    }
    let verdict = gate(&view, &policy, &env, &ctx, now_secs(start), &mut log).await;
    match verdict {
        Err(e) => {
            let mut resp = reject(&e, Some(&*policy), &rid, &mut log);
            // A dead token in a cookie is cleared, so the browser is not stuck with it.
            if let (Some(CredentialSource::Cookie), Some(name), Some("invalid_token")) =
                (log.credential, &policy.cookie_name, e.rejection(&policy.realm).rfc_error)
            {
                let _ = resp.headers_mut().append("set-cookie", &clearing_cookie(name));
            }
            Ok(resp)
        }
        Ok(v) => {
            let (verified, limit_headers) = match &v {
                Verdict::Accept(p, h) => (Some(p.identity()), h.as_slice()),
                Verdict::Public => (None, &[][..]),
            };
            let upstream = match upstream_credential(&policy, &env, method, path, verified.is_some()) {
                Ok(u) => u,
                Err(detail) => {
                    log.detail = Some(detail);
                    return Ok(reject(&AuthError::ConfigInvalid, Some(&*policy), &rid, &mut log));
                }
            };
            let plan = match plan_forward(&view, verified, upstream.as_ref().map(|(h, v)| (h.as_str(), v.as_str())), &*policy, &rid) {
                Ok(p) => p,
                Err(e) => return Ok(reject(&e, Some(&*policy), &rid, &mut log)),
            };
            let mint_csrf = log.credential == Some(CredentialSource::Cookie) && policy.csrf.enabled && request_cookie(&view, &policy.csrf.cookie).is_none();
            match forward(req, method, plan, &policy, &rid, now_secs(start), mint_csrf).await {
                Ok(mut resp) => {
                    for (k, val) in limit_headers {
                        let _ = resp.headers_mut().set(k, val);
                    }
                    log.decision = if verified.is_some() { "accept" } else { "public" };
                    log.status = resp.status_code();
                    emit(&log);
                    Ok(resp)
                }
                Err(detail) => {
                    log.detail = Some(detail);
                    Ok(reject(&AuthError::OriginUnreachable, Some(&*policy), &rid, &mut log))
                }
            }
        }
    }
}

/// Name of the service binding through which a gate built without the control plane reaches it.
pub const CONTROL_BINDING: &str = "EDGEWARD_CONTROL";

/// The admin API, in a gate built without it: the request goes as it came to the control Worker
/// (which throttles, authorizes and audits it), and its answer comes back as it is.
#[cfg(not(feature = "control"))]
async fn to_control_plane(req: Request, env: &Env, policy: &Policy, rid: &str, log: &mut DecisionLog<'_>) -> Response {
    let answer = match env.service(CONTROL_BINDING) {
        Err(_) => Err(format!("no {CONTROL_BINDING} service binding to the control Worker (this gate is built without the admin API)")),
        Ok(control) => control.fetch_request(req).await.map_err(|e| format!("the control Worker did not answer: {e}")),
    };
    match answer {
        Ok(resp) => {
            log.decision = "control";
            log.status = resp.status_code();
            emit(log);
            resp
        }
        Err(detail) => {
            log.detail = Some(detail);
            reject(&AuthError::AdminUnavailable, Some(policy), rid, log)
        }
    }
}

/// A `POST` with a text body for a Durable Object stub, built on `web_sys` directly
/// (`worker::Request::new_with_init` links ~10 KB of conversions this does not need).
pub(crate) fn post_request(url: &str, body: &str) -> Result<Request, String> {
    use worker::web_sys;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&worker::wasm_bindgen::JsValue::from_str(body));
    web_sys::Request::new_with_str_and_init(url, &init).map(Request::from).map_err(|e| format!("bad request: {e:?}"))
}

fn now_secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// The per-IP limit checked before any credential is read (`rate_limits.ip_pre_auth`), for the
/// gate and the admin API alike. Returns the client IP (`CF-Connecting-IP`) for later limits.
async fn pre_auth_limit(policy: &Policy, env: &Env, ip: Option<std::net::IpAddr>) -> Result<(), AuthError> {
    if let Some(b) = policy.rate_limits.pre_auth_bucket(ip) {
        limiter::check(&policy.rate_limits, env, std::slice::from_ref(&b), now_ms()).await?;
    }
    Ok(())
}

/// At most `max` bytes of `s`, cut at a character boundary (for log fields a client controls).
fn log_prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn gate(view: &RequestView<'_>, policy: &Policy, env: &Env, ctx: &Context, now: i64, log: &mut DecisionLog<'_>) -> Result<Verdict, AuthError> {
    let requirement = policy.routes.requirement(view.method, view.path);
    if requirement == Requirement::Public {
        return Ok(Verdict::Public);
    }
    pre_auth_limit(policy, env, view.client_ip).await?;
    let accepts = policy.routes.accepts(view.method, view.path);
    let Some(Credential { token, source }) = extract_credential(view, policy)? else {
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
    let kv = kv_binding(env);
    let principal = if source.is_api_key() {
        if accepts == Accepts::Jwt {
            return Err(AuthError::CredentialNotAccepted(accepts));
        }
        let key = keys::authenticate(&token, policy, env, kv.as_ref(), view.client_ip, now_ms(), log).await?;
        Principal::Key(key)
    } else {
        if accepts == Accepts::ApiKey {
            return Err(AuthError::CredentialNotAccepted(accepts));
        }
        if source == CredentialSource::Cookie {
            check_csrf(view, &policy.csrf)?;
        }
        let hash = hash.unwrap_or_else(|| token_hash(&token));
        Principal::Token(Box::new(verify_jwt(&token, &hash, policy, kv.as_ref(), ctx, now, log).await?))
    };
    // One tail for both kinds: revocations (snapshot, and the ledger on sensitive routes),
    // route scopes, rate limits.
    let who = principal.identity();
    let revoked = revocations::current(&policy.revocations, kv.as_ref(), ctx, now).await?;
    match who {
        Identity::Token(t) => revoked.check(t, now)?,
        Identity::ApiKey(k) if revoked.api_key_revoked(k.id(), now) => return Err(AuthError::ApiKeyInvalid(ApiKeyFailure::Revoked)),
        Identity::ApiKey(_) => {}
    }
    if policy.revocations.enabled && policy.routes.is_sensitive(view.method, view.path) {
        match who {
            Identity::Token(t) => revocations::check_with_ledger(env, t).await?,
            Identity::ApiKey(k) => revocations::check_key_with_ledger(env, k.id()).await?,
        }
    }
    who.authorize(&requirement)?;
    let limits = limits_for(policy, env, view, who).await?;
    Ok(Verdict::Accept(principal, limits))
}

/// Verifies a JWT (through the verified-token cache): what every JWT goes through, on the request
/// path and for admin JWTs alike. Revocations are the caller's to check.
/// `hash` is [`token_hash`] of `token`.
pub(crate) async fn verify_jwt(
    token: &str,
    hash: &TokenHash,
    policy: &Policy,
    kv: Option<&js::KvStore>,
    ctx: &Context,
    now: i64,
    log: &mut DecisionLog<'_>,
) -> Result<VerifiedToken, AuthError> {
    if let Some(verified) = cached_token(hash, now) {
        log.token_cache = Some("hit");
        log.iss = verified.issuer().map(str::to_owned);
        log.sub = verified.subject().map(str::to_owned);
        log.kid = verified.kid().map(|k| k.chars().take(64).collect());
        log.alg = Some(verified.alg().name());
        return Ok(verified);
    }
    log.token_cache = Some("miss");
    let unverified = UnverifiedToken::parse(token, policy.max_token_bytes)?;
    let pending = PendingToken::new(unverified, policy)?;
    log.alg = Some(pending.alg().name());
    log.kid = pending.kid().map(|k| k.chars().take(64).collect());
    let i = pending.issuer_index();
    let fetched: Option<KeySet> = if policy.issuers[i].jwks_uri.is_some() {
        let k = jwks::keys_for_request(policy, i, kv, ctx, now, &mut log.jwks_fetches).await;
        if k.is_none() && policy.issuers[i].inline_keys.keys.is_empty() {
            return Err(AuthError::JwksUnavailable);
        }
        k
    } else {
        None
    };
    let key = match pending.select_key(issuer_keys(policy, fetched.as_ref(), i)) {
        Ok(k) => k.clone(),
        Err(AuthError::UnknownKid) if policy.issuers[i].jwks_uri.is_some() => {
            match jwks::refetch_for_unknown_kid(policy, i, kv, ctx, now, &mut log.jwks_fetches).await {
                // Second and last look: still unknown is the client's problem.
                jwks::Refetch::Fetched(k) => pending.select_key(issuer_keys(policy, Some(&k), i))?.clone(),
                jwks::Refetch::IssuerDown => return Err(AuthError::JwksUnavailable),
                jwks::Refetch::CoolingDown => return Err(AuthError::UnknownKid),
            }
        }
        Err(e) => return Err(e),
    };
    let job = pending.job(&key)?;
    let proof = webcrypto::verify(&job).await?;
    let verified = pending.finish(proof, &key, policy, now)?;
    cache_token(*hash, verified.clone(), key.fingerprint.clone(), now);
    log.iss = verified.issuer().map(str::to_owned);
    log.sub = verified.subject().map(str::to_owned);
    Ok(verified)
}

/// The route's origin credential as (header, value), for an authenticated request on a route
/// that names one. A configured secret that is missing fails the request closed.
fn upstream_credential(policy: &Policy, env: &Env, method: &str, path: &str, authenticated: bool) -> Result<Option<(String, String)>, String> {
    let Some(name) = policy.routes.rule(method, path).and_then(|r| r.upstream_credential.as_ref()).filter(|_| authenticated) else {
        return Ok(None);
    };
    let Some(u) = policy.upstream_credentials.get(name) else { return Err(format!("upstream credential {name:?} is not configured")) };
    let secret =
        env.secret(&u.secret).map(|s| s.to_string()).map_err(|_| format!("the Worker secret {} (upstream credential {name:?}) is not set", u.secret))?;
    if secret.is_empty() || secret.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(format!("the Worker secret {} is empty or not printable ASCII", u.secret));
    }
    Ok(Some((u.header.clone(), u.value.replacen("{secret}", &secret, 1))))
}

/// Sends the planned request to the origin and relays its response with the request id.
async fn forward(
    req: Request,
    method: &str,
    plan: crate::core::request::ForwardPlan,
    policy: &Policy,
    rid: &str,
    now: i64,
    mint_csrf: bool,
) -> Result<Response, String> {
    use worker::web_sys;
    let headers = web_sys::Headers::new().map_err(|_| "headers".to_string())?;
    for (k, v) in &plan.headers {
        // A header value the runtime refuses is dropped rather than failing the request.
        let _ = headers.append(k, v);
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if !matches!(method, "GET" | "HEAD") {
        if let Some(body) = req.inner().body() {
            init.set_body(&body);
        }
    }
    let out = web_sys::Request::new_with_str_and_init(&plan.url, &init).map_err(|e| format!("bad origin request: {e:?}"))?;
    let resp = worker::Fetch::Request(Request::from(out)).send().await.map_err(|e| format!("origin fetch failed: {e}"))?;
    let inner: web_sys::Response = resp.into();
    let h = web_sys::Headers::new_with_headers(&inner.headers()).map_err(|_| "headers".to_string())?;
    let _ = h.set(&policy.request_id_header, rid);
    enforce_set_cookies(&inner.headers(), &h, policy, rid, now);
    if mint_csrf {
        let mut b = [0u8; 32];
        if getrandom::fill(&mut b).is_ok() {
            let _ = h.append("set-cookie", &csrf_cookie(&policy.csrf, &crate::core::json::b64url_encode(&b)));
        }
    }
    let rinit = web_sys::ResponseInit::new();
    rinit.set_status(inner.status());
    rinit.set_status_text(&inner.status_text());
    rinit.set_headers(&h);
    let relayed = web_sys::Response::new_with_opt_readable_stream_and_init(inner.body().as_ref(), &rinit).map_err(|e| format!("relay failed: {e:?}"))?;
    Ok(Response::from(relayed))
}

/// Brings every `Set-Cookie` of the origin's response to policy, one header at a time (they are
/// never joined: `Expires` contains commas), and logs each change by cookie name, never value.
fn enforce_set_cookies(from: &worker::web_sys::Headers, to: &worker::web_sys::Headers, policy: &Policy, rid: &str, now: i64) {
    use worker::js_sys::{Array, Function, Reflect};
    use worker::wasm_bindgen::{JsCast, JsValue};
    let cookies: Option<Vec<String>> = Reflect::get(from, &JsValue::from_str("getSetCookie"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .and_then(|f| f.call0(from).ok())
        .and_then(|a| a.dyn_into::<Array>().ok())
        .map(|a| a.iter().filter_map(|v| v.as_string()).collect());
    let Some(cookies) = cookies else {
        // Without getSetCookie the cookies cannot be read one by one: none is relayed unchecked.
        if from.has("set-cookie").unwrap_or(true) {
            let _ = to.delete("set-cookie");
            console_error!("{}", serde_json::json!({"event": "cookie_policy_unavailable", "request_id": rid, "action": "dropped"}));
        }
        return;
    };
    if cookies.is_empty() {
        return;
    }
    let _ = to.delete("set-cookie");
    for header in &cookies {
        let report = enforce(header, &policy.cookies, now);
        let out = match &report.action {
            CookieAction::Keep => Some(header.as_str()),
            CookieAction::Fixed(s) => Some(s.as_str()),
            CookieAction::Drop => None,
        };
        if let Some(v) = out {
            let _ = to.append("set-cookie", v);
        }
        if !report.findings.is_empty() {
            let action = match report.action {
                CookieAction::Keep => "kept",
                CookieAction::Fixed(_) => "fixed",
                CookieAction::Drop => "dropped",
            };
            console_warn!(
                "{}",
                serde_json::json!({"event": "cookie_policy", "request_id": rid, "cookie": report.name, "findings": report.findings, "action": action})
            );
        }
    }
}

/// The one place a rejection becomes an HTTP response.
/// The realm and the request id header come from the policy (the defaults when there is none:
/// an invalid configuration).
fn reject(e: &AuthError, policy: Option<&Policy>, rid: &str, log: &mut DecisionLog<'_>) -> Response {
    let r = e.rejection(policy.map_or("edgeward", |p| p.realm.as_str()));
    log.decision = "reject";
    log.status = r.status;
    log.reason = Some(r.code);
    if log.detail.is_none() {
        log.detail = Some(e.to_string());
    }
    emit(log);
    let mut body = serde_json::json!({"code": r.code, "message": r.message, "request_id": rid});
    if let Some(err) = r.rfc_error {
        body["error"] = serde_json::Value::from(err);
    }
    let mut resp =
        Response::ok(body.to_string()).map(|x| x.with_status(r.status)).unwrap_or_else(|_| Response::empty().unwrap_or_else(|_| unreachable_response()));
    let h = resp.headers_mut();
    let _ = h.set("content-type", "application/json");
    let _ = h.set("cache-control", "no-store");
    let _ = h.set(policy.map_or("x-request-id", |p| p.request_id_header.as_str()), rid);
    if let Some(w) = &r.www_authenticate {
        let _ = h.set("www-authenticate", w);
    }
    if r.status == 503 {
        let _ = h.set("retry-after", "5");
    }
    if let AuthError::RateLimited { retry_after_secs, headers, .. } = e {
        let _ = h.set("retry-after", &retry_after_secs.to_string());
        for (k, v) in headers {
            let _ = h.set(k, v);
        }
    }
    resp
}

fn unreachable_response() -> Response {
    Response::from(worker::web_sys::Response::new().unwrap_or_else(|_| panic_free_default()))
}

fn panic_free_default() -> worker::web_sys::Response {
    // `new Response()` cannot fail in a Worker; this keeps the request path free of panics anyway.
    worker::web_sys::Response::error()
}

fn emit(log: &DecisionLog<'_>) {
    match serde_json::to_string(log) {
        Ok(s) if log.status >= 500 => console_error!("{s}"),
        Ok(s) => console_log!("{s}"),
        Err(_) => console_error!("{{\"event\":\"log_error\"}}"),
    }
}
