//! `createVerifier` and the asynchronous `verify` / `explain`: the core pipeline's JWT step
//! ([`super::verify`]) with the I/O of a browser or Node, as the gate's Worker runs it with its
//! own (`src/worker/runtime/`):
//!
//! - signatures on the platform's WebCrypto (`src/web/js/subtle.js`), each key imported once per
//!   verifier and kept as a `CryptoKey`; HS256 by the core's HMAC ([`hmac_matches`]), as the gate
//!   checks it. The package links no signature crate: no RSA, bignum or curve code;
//! - a remote JWK Set (`jwksUri`) fetched with the given `fetch` and cached by the core's JWKS
//!   cache ([`crate::core::jwks_cache`]: `max-age` clamp, unknown-`kid` cooldown, last good keys),
//!   driven by the page's clock; a background refresh runs after the call that planned it.
//!
//! A [`Verifier`] holds one [`JwtVerifier`] (the policy parsed and validated once, and its JWKS
//! cache) and its imported keys.

use super::error::WebError;
use super::verify::{self as checks, Keys};
use super::{js_error, json_arg, json_out, string_arg};
use crate::core::alg::Algorithm;
use crate::core::crypto::hmac_matches;
use crate::core::error::AuthError;
use crate::core::io::{Deferred, GateIo, IoError, Level};
use crate::core::json::b64url_decode;
use crate::core::jwk::KeyMaterial;
use crate::core::jwks_cache::{FetchOutcome, MAX_JWKS_BYTES};
use crate::core::jwt::JwtVerifier;
use crate::core::verify::{SignatureJob, SignatureProof};
use js_sys::{Function, Map, Object, Promise, Reflect};
use serde_json::Value;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

#[wasm_bindgen(module = "/src/web/js/subtle.js")]
extern "C" {
    #[wasm_bindgen(js_name = subtleAvailable)]
    fn subtle_available() -> bool;
    #[wasm_bindgen(js_name = subtleVerify)]
    fn subtle_verify(keys: &Map, id: &str, alg: &str, jwk: Option<String>, signature: &[u8], input: &[u8]) -> Promise;
    #[wasm_bindgen(js_name = fetchJwks)]
    fn fetch_jwks(inflight: &Map, fetch: &JsValue, uri: &str, timeout_ms: u32, max_bytes: u32) -> Promise;
}

/// What a verifier keeps between calls.
struct Shared {
    verifier: JwtVerifier,
    /// Imported `CryptoKey`s by key fingerprint and algorithm (subtle.js fills it).
    keys: Map,
    /// The `fetch` for `jwksUri` (undefined with inline keys).
    fetch: JsValue,
    /// JWKS fetches under way by URL (subtle.js shares one among the calls that need it).
    inflight: Map,
}

impl Shared {
    /// A verifier's state before its first call: nothing imported, no fetch under way.
    fn new(verifier: JwtVerifier, fetch: JsValue) -> Shared {
        Shared { verifier, keys: Map::new(), fetch, inflight: Map::new() }
    }
}

/// The I/O of one call.
#[derive(Clone)]
struct WebIo {
    shared: Rc<Shared>,
    /// `nowSecs` given by the caller, in ms: the clock of the whole call.
    fixed_now_ms: Option<i64>,
    trace: bool,
}

impl GateIo for WebIo {
    fn now_ms(&self) -> i64 {
        self.fixed_now_ms.unwrap_or_else(|| js_sys::Date::now() as i64)
    }
    fn secret(&self, _: &str) -> Option<String> {
        None
    }
    fn log(&self, _: Level, _: &Value) {}
    fn defer(&self, task: Deferred) {
        // A background JWKS refresh: after this call, on the page's event loop.
        let io = self.clone();
        wasm_bindgen_futures::spawn_local(async move { io.shared.verifier.run_deferred(&io, task).await });
    }
    fn has_kv(&self) -> bool {
        false
    }
    fn tracing(&self) -> bool {
        self.trace
    }
    async fn fetch_jwks(&self, uri: &str, timeout_ms: u32) -> FetchOutcome {
        let Ok(got) = JsFuture::from(fetch_jwks(&self.shared.inflight, &self.shared.fetch, uri, timeout_ms, MAX_JWKS_BYTES as u32)).await else {
            return FetchOutcome::Failed("fetch failed".into());
        };
        let field = |name: &str| Reflect::get(&got, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
        if let Some(error) = field("error") {
            return FetchOutcome::Failed(error.as_string().unwrap_or_else(|| "fetch failed".into()));
        }
        let status = field("status").and_then(|s| s.as_f64()).filter(|s| (0.0..=999.0).contains(s)).map_or(0, |s| s as u16);
        FetchOutcome::Response {
            status,
            cache_control: field("cacheControl").and_then(|v| v.as_string()),
            body: field("body").and_then(|v| v.as_string()).unwrap_or_default(),
        }
    }
    async fn kv_read(&self, _: &str, _: usize) -> Result<Option<Vec<u8>>, IoError> {
        Err(IoError::NotBound("KV"))
    }
    async fn kv_write(&self, _: &str, _: &[u8]) -> Result<(), IoError> {
        Err(IoError::NotBound("KV"))
    }
    async fn verify_signature(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        let ok = match (&job.key.material, job.alg) {
            // As the gate: a MAC over a token costs less in wasm than a WebCrypto round trip.
            (KeyMaterial::Oct { k }, Algorithm::HS256) => hmac_matches::<sha2::Sha256>(k, job.signing_input, job.signature),
            _ => {
                let id = format!("{} {}", job.key.fingerprint, job.alg.name());
                let jwk = if self.shared.keys.has(&JsValue::from_str(&id)) { None } else { serde_json::to_string(job.key.to_json()).ok() };
                let verdict = JsFuture::from(subtle_verify(&self.shared.keys, &id, job.alg.name(), jwk, job.signature, job.signing_input)).await;
                verdict.is_ok_and(|v| v.as_bool() == Some(true))
            }
        };
        if ok {
            Ok(SignatureProof::for_job(job))
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

fn crypto_unavailable() -> WebError {
    WebError { code: "crypto_unavailable", message: "WebCrypto (crypto.subtle) is unavailable: an insecure context?".into(), status: None, field: None }
}

/// The clock of one call from `options`: `{nowSecs}` (Unix seconds), a bare number (the
/// package's earlier `nowSecs` argument), or nothing (the platform's clock).
fn now_option(options: &JsValue) -> Result<Option<i64>, WebError> {
    let now = if options.is_object() {
        Reflect::get(options, &"nowSecs".into()).map_err(|_| WebError::invalid_argument("options must be an object"))?
    } else {
        options.clone()
    };
    if now.is_undefined() || now.is_null() {
        return Ok(None);
    }
    super::now_arg(&now).map(Some)
}

/// The JWT step for the JS policy and key source.
fn jwt_verifier(policy: &JsValue, keys: Keys) -> Result<JwtVerifier, WebError> {
    checks::policy_from_js(&json_arg(policy, "policy")?, keys).map(JwtVerifier::new)
}

/// The key source of `createVerifier`: `{ jwks }`, or `{ jwksUri, fetch? }`.
fn source(keys: &JsValue) -> Result<(Keys, JsValue), WebError> {
    let bad = |field: &str, why: &str| WebError::config(field, why);
    if !keys.is_object() {
        return Err(bad("keys", "must be { jwks } or { jwksUri, fetch? }"));
    }
    for name in Object::keys(keys.unchecked_ref::<Object>()).iter().filter_map(|k| k.as_string()) {
        if !["jwks", "jwksUri", "fetch"].contains(&name.as_str()) {
            return Err(bad(&name, "unknown field"));
        }
    }
    let get = |name: &str| Reflect::get(keys, &name.into()).ok().filter(|v| !v.is_undefined());
    match (get("jwks"), get("jwksUri")) {
        (Some(jwks), None) => Ok((Keys::Jwks(json_arg(&jwks, "jwks")?), JsValue::UNDEFINED)),
        (None, Some(uri)) => {
            let uri = uri.as_string().ok_or_else(|| bad("jwksUri", "must be a string"))?;
            let fetch = match get("fetch") {
                Some(f) => f,
                None => Reflect::get(&js_sys::global(), &"fetch".into()).unwrap_or(JsValue::UNDEFINED),
            };
            let fetch = fetch.dyn_into::<Function>().map_err(|_| bad("fetch", "must be a function (no global fetch here)"))?;
            // The platform's fetch must be called with the global object as `this`.
            let bound = fetch.bind0(&js_sys::global());
            Ok((Keys::Uri(uri), bound.into()))
        }
        _ => Err(bad("keys", "give exactly one of jwks and jwksUri")),
    }
}

/// A reusable verifier: one policy, one issuer's keys (inline or fetched and cached), each key
/// imported into WebCrypto once. Made by `createVerifier`.
#[wasm_bindgen(skip_typescript)]
pub struct Verifier {
    shared: Rc<Shared>,
}

impl Verifier {
    fn io(&self, options: &JsValue, trace: bool) -> Result<WebIo, WebError> {
        if !subtle_available() {
            return Err(crypto_unavailable());
        }
        let fixed_now_ms = now_option(options)?.map(|s| s.saturating_mul(1000));
        Ok(WebIo { shared: self.shared.clone(), fixed_now_ms, trace })
    }
}

fn now_secs(io: &WebIo) -> i64 {
    io.now_ms().div_euclid(1000)
}

#[wasm_bindgen]
impl Verifier {
    /// Verifies a compact JWT (see `verify`): a promise of its claims, or a rejection with the
    /// gate's reason code.
    #[wasm_bindgen(skip_typescript)]
    pub fn verify(&self, token: JsValue, options: JsValue) -> Promise {
        let io = self.io(&options, false);
        future_to_promise(async move {
            let io = io.map_err(js_error)?;
            let token = string_arg(&token, "token").map_err(js_error)?;
            checks::check(&io.shared.verifier, &io, &token, now_secs(&io)).await.map_err(js_error)?;
            // The claims: the verified payload's own JSON text (see `checks::check`).
            let text = token.split('.').nth(1).and_then(b64url_decode).and_then(|b| String::from_utf8(b).ok());
            let internal = || js_error(AuthError::Internal.into());
            js_sys::JSON::parse(&text.ok_or_else(internal)?).map_err(|_| internal())
        })
    }

    /// Runs the checks of `verify` one by one and reports each (see `explain`).
    #[wasm_bindgen(skip_typescript)]
    pub fn explain(&self, token: JsValue, options: JsValue) -> Promise {
        let io = self.io(&options, true);
        future_to_promise(async move {
            let io = io.map_err(js_error)?;
            let token = string_arg(&token, "token").map_err(js_error)?;
            json_out(&checks::explain(&io.shared.verifier, &io, &token, now_secs(&io)).await)
        })
    }
}

/// `createVerifier(policy, { jwks } | { jwksUri, fetch? })`: parses and validates the policy
/// once (throws `config_invalid` naming the field), for any number of `verify` calls.
#[wasm_bindgen(js_name = createVerifier, skip_typescript)]
pub fn create_verifier(policy: JsValue, keys: JsValue) -> Result<Verifier, JsValue> {
    let run = || {
        let (keys, fetch) = source(&keys)?;
        Ok::<_, WebError>(Verifier { shared: Rc::new(Shared::new(jwt_verifier(&policy, keys)?, fetch)) })
    };
    run().map_err(js_error)
}

/// Verifies a compact JWT with the keys of `jwks` under `policy`, exactly as the Edgeward
/// Worker does: a promise of its claims, or a rejection with an `EdgewardError` carrying the
/// Worker's reason code (`expired`, `bad_signature`, ...) or `config_invalid` naming the field.
/// One-shot: `createVerifier` parses the policy and imports each key once, for many tokens.
#[wasm_bindgen(skip_typescript)]
pub fn verify(token: JsValue, jwks: JsValue, policy: JsValue, options: JsValue) -> Promise {
    match one_shot(&jwks, &policy) {
        Ok(v) => v.verify(token, options),
        Err(e) => Promise::reject(&js_error(e)),
    }
}

/// Runs the same checks as `verify`, one by one, and reports each: for debugging. Resolves for
/// every token and policy (the failing step says why); rejects only for arguments of the wrong
/// type.
#[wasm_bindgen(skip_typescript)]
pub fn explain(token: JsValue, jwks: JsValue, policy: JsValue, options: JsValue) -> Promise {
    match one_shot(&jwks, &policy) {
        Ok(v) => v.explain(token, options),
        // A policy or key set refused (or not JSON at all) fails the policy step.
        Err(e) if e.code == "config_invalid" => future_to_promise(async move {
            string_arg(&token, "token").map_err(js_error)?;
            let now = now_option(&options).map_err(js_error)?.unwrap_or_else(|| (js_sys::Date::now() / 1000.0).floor() as i64);
            json_out(&checks::explain_refused(e, now))
        }),
        Err(e) => Promise::reject(&js_error(e)),
    }
}

fn one_shot(jwks: &JsValue, policy: &JsValue) -> Result<Verifier, WebError> {
    let verifier = jwt_verifier(policy, Keys::Jwks(json_arg(jwks, "jwks")?))?;
    Ok(Verifier { shared: Rc::new(Shared::new(verifier, JsValue::UNDEFINED)) })
}
