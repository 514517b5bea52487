//! The browser / JS adapter (feature `web`), built with wasm-pack into the `edgeward` npm package.
//!
//! A thin layer over the same core the Worker runs: it converts JS values to and from JSON,
//! reads the clock and the browser's random source (`crypto.getRandomValues`, through
//! `getrandom`), and turns errors into JS `Error` objects with a stable `code`. Every operation
//! is plain Rust over `serde_json` values, host-tested, in the module of its concern:
//! [`verify`](mod@verify) (`verify`, `explain`), [`cookies`] (`lintSetCookie`), [`tokens`]
//! (`decodeUnverified`, `refreshAt`, `pkcePair`, `randomToken`, `nonce`, `checkApiKey`,
//! `jwkThumbprint`) and [`ratelimit_headers`] (`parseRateLimit`), with the shared
//! [`error::WebError`]. Policy decisions are the core's.
//!
//! `createDpopKey` and `dpopProof` are plain JS (`src/web/js/dpop.js`, WebCrypto: the key is a
//! non-extractable `CryptoKey` that never enters the WebAssembly memory); scripts/pack-web.mjs
//! bundles them into every entry point. The thumbprint that binds a token to that key is the
//! Rust core's (`jwkThumbprint`). The entry points also take `decodeUnverified`, `refreshAt`,
//! `pkcePair`, `randomToken` and `nonce` from plain JS (`src/web/js/decode.js`, a call into
//! WebAssembly costs more than the decoding): the Rust functions of [`tokens`] stay in the module
//! as the reference the package's tests compare them with.
//!
//! Names are camelCase in JS. Errors are instances of the package's `EdgewardError` class
//! (`src/web/js/error.js`, a subclass of `Error`) with `code` (a Worker reason code such as
//! `expired` or `bad_signature` for token problems, else `config_invalid`, `invalid_argument`,
//! `random_unavailable`, or `crypto_unavailable` from the DPoP functions of dpop.js), and
//! `status` (token problems: the HTTP status the Worker would answer) or `field`
//! (`config_invalid`: the policy field).
//!
//! The TypeScript declarations are `TS_TYPES` (the verifying API's) and `TS_TYPES_WEB` (the rest,
//! feature `web`) plus what wasm-bindgen derives from each function; `verify` and `explain` are
//! declared in `TS_TYPES` (generic over the claims type), and so are the JS modules' exports
//! (`EdgewardError`, `isEdgewardError`; `createDpopKey`, `dpopProof` in `TS_TYPES_WEB`).
//! scripts/pack-web.mjs turns wasm-pack's output into the npm package's entry points.

#[cfg(feature = "web")]
pub mod cookies;
pub mod error;
#[cfg(feature = "web")]
pub mod ratelimit_headers;
#[cfg(feature = "web")]
pub mod tokens;
pub mod verifier;
pub mod verify;

use error::WebError;
#[cfg(feature = "web")]
use js_sys::Function;
use js_sys::{Object, Reflect, JSON};
use serde_json::Value;
#[cfg(feature = "web")]
use tokens::RefreshOptions;
use wasm_bindgen::prelude::*;
#[cfg(feature = "web")]
use wasm_bindgen::JsCast;

// The declarations of the verifying API (`createVerifier`, `verify`, `explain`, the error class and
// guard), in every build; those of the rest of the package only in feature `web`'s, so that the
// `web-verifier` module (the `edgeward/verify` entry point) declares exactly what it exports.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A JSON Web Key Set (public keys; `oct` secrets only for HS*), as an object or JSON text. */
export type Jwks = { keys: Array<Record<string, unknown>> } | string;

/** JWS algorithms Edgeward verifies. */
export type Algorithm =
  | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
  | "ES256" | "ES384" | "ES512" | "EdDSA" | "Ed25519" | "HS256" | "HS384" | "HS512";

/**
 * The policy for one issuer: the Worker configuration's fields in camelCase, with the same
 * defaults and the same validation. Unknown fields are errors.
 */
export interface VerifyPolicy {
  /** Exact `iss` required; `null` leaves `iss` unchecked. */
  issuer: string | null;
  /** Accepted `aud` values; empty or absent = `aud` not checked. */
  audiences?: string[];
  /** Allowed `alg`s (HS* and asymmetric cannot be mixed). */
  algorithms: Algorithm[];
  /** Clock skew for `exp`, `nbf`, `iat`, in seconds: at most 3600. Default 60. */
  leewaySecs?: number;
  /** Longest `exp − (iat or now)`; `null` = unlimited. Default 86400. */
  maxLifetimeSecs?: number | null;
  /** Reject tokens without `exp`. Default true. */
  requireExp?: boolean;
}

/** JWT claims. Registered claims are typed; any other member is allowed. */
export interface Claims {
  iss?: string; sub?: string; aud?: string | string[];
  exp?: number; nbf?: number; iat?: number; jti?: string; scope?: string;
  [name: string]: unknown;
}

/** One step of `explain`, in the order the gate runs them. */
export interface ExplainStep {
  step: "policy" | "parse" | "issuer" | "key" | "signature" | "claims";
  result: "pass" | "fail" | "skipped";
  detail: string;
}

/** Every check and its result. `verdict` and `code` are exactly what `verify` gives. */
export interface Explanation<C extends object = Claims> {
  verdict: "accept" | "reject";
  code: EdgewardErrorCode | null;
  message: string | null;
  steps: ExplainStep[];
  /** The verified claims, on accept. */
  claims: (Claims & C) | null;
  nowSecs: number;
}

/** Stable error codes: the Worker's reason codes, and the package's own. */
export type EdgewardErrorCode =
  | "token_too_large" | "malformed_token" | "malformed_header" | "duplicate_member"
  | "alg_missing" | "alg_none" | "alg_not_allowed" | "unsupported_header" | "malformed_claims"
  | "issuer_mismatch" | "unknown_kid" | "no_matching_key" | "bad_signature" | "missing_exp"
  | "expired" | "not_yet_valid" | "issued_in_future" | "lifetime_too_long" | "audience_mismatch"
  | "jwks_unavailable" | "internal_error"
  | "config_invalid" | "invalid_argument" | "random_unavailable" | "crypto_unavailable";

/** What every function of this package throws. */
export class EdgewardError extends Error {
  /** `details` as the package sets them: `status` for token errors, `field` for `config_invalid`. */
  constructor(code: EdgewardErrorCode, message?: string, details?: { status?: number; field?: string });
  readonly name: "EdgewardError";
  code: EdgewardErrorCode;
  /** For token errors: the HTTP status the Worker answers with (401, 503). */
  status?: number;
  /** For `config_invalid`: the policy field at fault (`algorithms[1]`, `jwks`, ...). */
  field?: string;
}

/**
 * Whether `e` is an `EdgewardError`, for `catch (e)`: also true for one thrown by another copy of
 * the package (`edgeward/web` next to `edgeward`, a second bundle, another realm), which
 * `instanceof` misses.
 */
export function isEdgewardError(e: unknown): e is EdgewardError;

/** Options of one verification. */
export interface VerifyOptions {
  /** The time to verify at, in Unix seconds (default: the platform's clock). */
  nowSecs?: number;
}

/** Where a verifier's keys come from: a JWK Set, or its URL (fetched, cached by the edge's rules). */
export type KeySource =
  | { jwks: Jwks; jwksUri?: never; fetch?: never }
  | {
      jwks?: never;
      /** https (or http on loopback), as the gate's `jwks_uri`. */
      jwksUri: string;
      /** The `fetch` to get it with (default: the global `fetch`). */
      fetch?: (input: string, init?: RequestInit) => Promise<Response>;
    };

/**
 * A reusable verifier (`createVerifier`): the policy parsed once, each key imported into
 * WebCrypto once, a remote JWK Set cached with the gate's rules (`max-age` clamped to 300 s –
 * 1 day, an unknown `kid` refetches at most every 30 s, the last good keys kept for a day while
 * the issuer fails).
 */
export interface Verifier {
  /** As the function `verify`, with this verifier's policy and keys. */
  verify<C extends object = Claims>(token: string, options?: VerifyOptions): Promise<Claims & C>;
  /** As the function `explain`, with this verifier's policy and keys. */
  explain<C extends object = Claims>(token: string, options?: VerifyOptions): Promise<Explanation<C>>;
  /** Releases the verifier's WebAssembly memory now (otherwise when it is garbage-collected). */
  free(): void;
}

/**
 * A verifier for `policy` and one issuer's keys. Throws `config_invalid` (with `field`) for a
 * policy or key source the gate would refuse.
 */
export function createVerifier(policy: VerifyPolicy, keys: KeySource): Verifier;

/**
 * Verifies a compact JWT with the keys of `jwks` under `policy`, exactly as the Edgeward Worker
 * does: the signature on WebCrypto, everything else by the gate's own code. Resolves to the
 * claims; rejects with an `EdgewardError` whose `code` is the Worker's reason code (`expired`,
 * `bad_signature`, ...), `config_invalid` naming the `field`, or `crypto_unavailable`.
 * For many tokens, `createVerifier` parses the policy and imports each key once.
 *
 * `C` describes the claims your issuer puts in its tokens (`verify<{ roles: string[] }>(...)`).
 * It is a type only: the signature proves who issued the claims, not their shape.
 */
export function verify<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, options?: VerifyOptions): Promise<Claims & C>;

/**
 * Runs the same checks as `verify`, one by one, and reports each: for debugging. Resolves for a
 * bad token or policy (the failing step says why); rejects only for arguments of the wrong type.
 */
export function explain<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, options?: VerifyOptions): Promise<Explanation<C>>;
"#;

#[cfg(feature = "web")]
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES_WEB: &'static str = r#"
/** Header and claims of a token that has NOT been verified: display and scheduling only. */
export interface UnverifiedParts {
  header: Record<string, unknown>;
  claims: Claims;
}

export interface RefreshOptions {
  /** Refresh at least this long before `exp`. Default 60. */
  skewSecs?: number;
  /** Fraction (0–1) of the token's usable lifetime by which the refresh may randomly move earlier. Default 0.1. */
  jitter?: number;
}

/** An RFC 7636 PKCE pair: send `challenge` (with `method`) first, `verifier` when redeeming. */
export interface PkcePair { verifier: string; challenge: string; method: "S256" }

/** Quota from rate-limit response headers; `null` where absent or invalid. */
export interface RateLimitInfo {
  remaining: number | null;
  resetSecs: number | null;
  limit: number | null;
  windowSecs: number | null;
  retryAfterSecs: number | null;
}

/** A `Headers` object, or a plain object of header names (any case) to values. */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

/** The edge's `Set-Cookie` policy (the Worker configuration's `cookies` section, camelCase). */
export interface CookiePolicy {
  /** What happens to a cookie that breaks policy. Default "fix". */
  mode?: "fix" | "drop" | "report";
  /** SameSite given to cookies without one. Default "Lax". */
  sameSite?: "Lax" | "Strict" | "None";
  /** Cookie names exempt from HttpOnly. */
  scriptReadable?: string[];
  /** Longest lifetime (Max-Age / Expires). Default 34560000 (400 days). */
  maxAgeSecs?: number;
}

/** Stable finding codes of `lintSetCookie`. */
export type CookieFinding =
  | "unparseable" | "missing_secure" | "missing_httponly" | "missing_samesite"
  | "samesite_none_insecure" | "lifetime_too_long" | "host_prefix" | "secure_prefix";

/** The offline check of an Edgeward API key's text (format and checksum; no lookup). */
export interface ApiKeyCheck {
  valid: boolean;
  /** The key's environment, when valid. */
  env: "live" | "test" | null;
  /** Why not: a wrong prefix, length/characters, or checksum (a typo); null when valid. */
  reason: "prefix" | "shape" | "checksum" | null;
}

/** What the edge does with one Set-Cookie header. */
export interface CookieLint {
  /** The cookie's name (never its value); null if it did not parse. */
  name: string | null;
  findings: CookieFinding[];
  /** keep: sent unchanged; fix: sent as `header`; drop: not sent. */
  action: "keep" | "fix" | "drop";
  /** The header the edge sends on; null when dropped. */
  header: string | null;
}

/** What `dpopProof` signs for: one request, and the access token it carries. */
export interface DpopProofOptions {
  /** The request's method (`htm`), upper-cased. */
  method: string;
  /** The request's URL (`htu` is it without query and fragment); relative to the page's in browsers. */
  url: string | URL;
  /** The access token sent with the request (`ath` is its SHA-256); omit for a token request. */
  accessToken?: string;
  /** The server's nonce, from its `DPoP-Nonce` header. */
  nonce?: string;
}

/**
 * A new DPoP key pair: WebCrypto ECDSA P-256 (ES256). The private key is not extractable: its
 * bytes never reach script, yet the pair can be stored in IndexedDB (it is structured-cloneable)
 * and used after a reload. Rejects with `crypto_unavailable` without WebCrypto (an insecure
 * context: plain `http:` other than localhost).
 */
export function createDpopKey(): Promise<CryptoKeyPair>;

/**
 * A DPoP proof (RFC 9449) for one request, signed with `keyPair` (from `createDpopKey`): send it
 * as the `DPoP` header, with `Authorization: DPoP <accessToken>`. Header `typ` `dpop+jwt`, `alg`
 * `ES256`, `jwk` the public key; claims `htm`, `htu`, `iat`, `jti` (random), `ath` (with
 * `accessToken`), `nonce` (when given). Rejects with `invalid_argument` for a key pair or options
 * it cannot use, `crypto_unavailable` without WebCrypto.
 */
export function dpopProof(keyPair: CryptoKeyPair, options: DpopProofOptions): Promise<string>;
"#;

// The package's error class (src/web/js/error.js), which wasm-bindgen bundles with the glue.
#[wasm_bindgen(module = "/src/web/js/error.js")]
extern "C" {
    type EdgewardError;
    #[wasm_bindgen(constructor)]
    fn new(code: &str, message: &str, details: &Object) -> EdgewardError;
}

/// The `EdgewardError` for a [`WebError`].
fn js_error(e: WebError) -> JsValue {
    let details = Object::new();
    // Setting a property on a fresh object cannot fail; nothing to do if it ever did.
    if let Some(status) = e.status {
        let _ = Reflect::set(&details, &"status".into(), &f64::from(status).into());
    }
    if let Some(field) = e.field {
        let _ = Reflect::set(&details, &"field".into(), &field.into());
    }
    EdgewardError::new(e.code, &e.message, &details).into()
}

fn string_arg(v: &JsValue, name: &str) -> Result<String, WebError> {
    v.as_string().ok_or_else(|| WebError::invalid_argument(format!("{name} must be a string")))
}

/// A JSON argument: JSON text, or any JSON-serializable value.
fn json_arg(v: &JsValue, name: &str) -> Result<Value, WebError> {
    let bad = |why: &str| WebError { code: "config_invalid", message: format!("{name}: {why}"), status: None, field: Some(name.into()) };
    if v.is_undefined() || v.is_null() {
        return Err(bad("missing"));
    }
    let text = match v.as_string() {
        Some(s) => s,
        None => JSON::stringify(v).ok().and_then(|s| s.as_string()).ok_or_else(|| bad("not JSON-serializable"))?,
    };
    serde_json::from_str(&text).map_err(|_| bad("not valid JSON"))
}

fn json_out(v: &Value) -> Result<JsValue, JsValue> {
    JSON::parse(&v.to_string()).map_err(|_| js_error(WebError { code: "internal_error", message: "internal error".into(), status: None, field: None }))
}

/// `nowSecs` if given (a finite number of Unix seconds), else the browser's clock.
fn now_arg(v: &JsValue) -> Result<i64, WebError> {
    if v.is_undefined() || v.is_null() {
        return Ok((js_sys::Date::now() / 1000.0).floor() as i64);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n.abs() < 1e15 => Ok(n.floor() as i64),
        _ => Err(WebError::invalid_argument("nowSecs must be a finite number of Unix seconds")),
    }
}

#[cfg(feature = "web")]
fn fill_random(buf: &mut [u8]) -> Result<(), WebError> {
    getrandom::fill(buf).map_err(|_| WebError {
        code: "random_unavailable",
        message: "the platform's random source is unavailable".into(),
        status: None,
        field: None,
    })
}

#[cfg(feature = "web")]
/// Decodes a token's header and claims WITHOUT verifying anything. Never trust what it returns:
/// use it to display a token or to schedule a refresh, and `verify` to decide.
/// Throws `malformed_token`, `malformed_header`, `malformed_claims`, `duplicate_member`.
#[wasm_bindgen(js_name = decodeUnverified, unchecked_return_type = "UnverifiedParts")]
pub fn decode_unverified(#[wasm_bindgen(unchecked_param_type = "string")] token: JsValue) -> Result<JsValue, JsValue> {
    let token = string_arg(&token, "token").map_err(js_error)?;
    json_out(&tokens::decode_unverified(&token).map_err(js_error)?)
}

#[cfg(feature = "web")]
/// When a client should refresh this token (Unix seconds): `skewSecs` (default 60) before `exp`,
/// moved earlier by a random part (`jitter`, default 0.1, of the token's usable lifetime) so many
/// clients do not refresh at once. `null` if the token has no `exp`. Reads the claims unverified.
#[wasm_bindgen(js_name = refreshAt, unchecked_return_type = "number | null")]
pub fn refresh_at(
    #[wasm_bindgen(unchecked_param_type = "string")] token: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "RefreshOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let run = || {
        let token = string_arg(&token, "token")?;
        let mut opts = RefreshOptions::default();
        if !(options.is_undefined() || options.is_null()) {
            let field = |name: &str| Reflect::get(&options, &name.into()).map_err(|_| WebError::invalid_argument("options must be an object"));
            let skew = field("skewSecs")?;
            if !skew.is_undefined() {
                opts.skew_secs = skew
                    .as_f64()
                    .filter(|n| n.fract() == 0.0 && n.is_finite())
                    .map(|n| n as i64)
                    .ok_or_else(|| WebError::invalid_argument("skewSecs must be a non-negative integer"))?;
            }
            let jitter = field("jitter")?;
            if !jitter.is_undefined() {
                opts.jitter = jitter.as_f64().ok_or_else(|| WebError::invalid_argument("jitter must be a number from 0 to 1"))?;
            }
        }
        let mut r = [0u8; 4];
        fill_random(&mut r)?;
        tokens::refresh_at(&token, opts, f64::from(u32::from_le_bytes(r)) / 4_294_967_296.0)
    };
    Ok(match run().map_err(js_error)? {
        Some(at) => JsValue::from_f64(at as f64),
        None => JsValue::NULL,
    })
}

#[cfg(feature = "web")]
/// A fresh RFC 7636 PKCE pair: a 43-character verifier (256 random bits) and its S256 challenge.
#[wasm_bindgen(js_name = pkcePair, unchecked_return_type = "PkcePair")]
pub fn pkce_pair() -> Result<JsValue, JsValue> {
    let verifier = tokens::random_token(tokens::PKCE_VERIFIER_BYTES, fill_random).map_err(js_error)?;
    let challenge = tokens::pkce_challenge(&verifier);
    json_out(&serde_json::json!({"verifier": verifier, "challenge": challenge, "method": "S256"}))
}

#[cfg(feature = "web")]
/// `bytes` (1–1024, default 32) random bytes from the platform's CSPRNG, as unpadded base64url:
/// for `state` parameters, CSRF tokens and the like.
#[wasm_bindgen(js_name = randomToken)]
pub fn random_token(#[wasm_bindgen(unchecked_optional_param_type = "number")] bytes: JsValue) -> Result<String, JsValue> {
    let n = if bytes.is_undefined() || bytes.is_null() {
        32
    } else {
        match bytes.as_f64() {
            Some(n) if n.fract() == 0.0 && (1.0..=tokens::MAX_RANDOM_BYTES as f64).contains(&n) => n as usize,
            _ => return Err(js_error(WebError::invalid_argument(format!("bytes must be an integer from 1 to {}", tokens::MAX_RANDOM_BYTES)))),
        }
    };
    tokens::random_token(n, fill_random).map_err(js_error)
}

#[cfg(feature = "web")]
/// A fresh OpenID Connect `nonce`: 128 random bits as 22 base64url characters.
#[wasm_bindgen]
pub fn nonce() -> Result<String, JsValue> {
    tokens::random_token(16, fill_random).map_err(js_error)
}

#[cfg(feature = "web")]
/// Lints one `Set-Cookie` header value with the edge's own rules (the Worker applies exactly
/// these to every cookie from the origin): the findings, and what the edge would send on.
/// `policy` defaults to the Worker's defaults; `nowSecs` (default now) dates an `Expires`.
#[wasm_bindgen(js_name = lintSetCookie, unchecked_return_type = "CookieLint")]
pub fn lint_set_cookie(
    #[wasm_bindgen(unchecked_param_type = "string")] header: JsValue,
    #[wasm_bindgen(unchecked_optional_param_type = "CookiePolicy")] policy: JsValue,
    #[wasm_bindgen(js_name = nowSecs, unchecked_optional_param_type = "number")] now_secs: JsValue,
) -> Result<JsValue, JsValue> {
    let run = || {
        let header = string_arg(&header, "header")?;
        let policy = if policy.is_undefined() || policy.is_null() { Value::Null } else { json_arg(&policy, "policy")? };
        let policy = cookies::cookie_policy_from_js(&policy)?;
        Ok::<_, WebError>(cookies::lint_set_cookie(&header, &policy, now_arg(&now_secs)?))
    };
    json_out(&run().map_err(js_error)?)
}

#[cfg(feature = "web")]
/// Checks an Edgeward API key's text offline — prefix, shape and CRC32 checksum, exactly as the
/// edge does before any lookup — so a form can flag a mistyped key at once. It says nothing
/// about whether the key exists or is valid at the edge.
#[wasm_bindgen(js_name = checkApiKey, unchecked_return_type = "ApiKeyCheck")]
pub fn check_api_key(#[wasm_bindgen(unchecked_param_type = "string")] key: JsValue) -> Result<JsValue, JsValue> {
    let key = string_arg(&key, "key").map_err(js_error)?;
    json_out(&tokens::check_api_key(&key))
}

#[cfg(feature = "web")]
/// The RFC 7638 SHA-256 thumbprint (base64url) of a public JWK — a token's `cnf.jkt` for a DPoP
/// key — computed by the gate's own code, so it is exactly what the gate compares `cnf.jkt` with.
/// `jwk` is a JWK object (such as `crypto.subtle.exportKey("jwk", keyPair.publicKey)` gives) or
/// its JSON text. Throws `invalid_argument` for a key the gate would refuse in a proof (private
/// members, `oct`, an RSA modulus under 2048 bits, a curve it does not verify).
#[wasm_bindgen(js_name = jwkThumbprint)]
pub fn jwk_thumbprint(#[wasm_bindgen(unchecked_param_type = "JsonWebKey | string")] jwk: JsValue) -> Result<String, JsValue> {
    let run = || {
        let jwk = json_arg(&jwk, "jwk").map_err(|e| WebError::invalid_argument(e.message))?;
        tokens::jwk_thumbprint(&jwk)
    };
    run().map_err(js_error)
}

#[cfg(feature = "web")]
/// Reads rate-limit response headers for client back-off: the IETF `RateLimit` and
/// `RateLimit-Policy` fields, the older `RateLimit-Limit`/`-Remaining`/`-Reset`, and
/// `Retry-After` (seconds or an HTTP date, relative to `nowSecs`, default now). Invalid headers
/// are ignored (their numbers are `null`), never guessed.
#[wasm_bindgen(js_name = parseRateLimit, unchecked_return_type = "RateLimitInfo")]
pub fn parse_rate_limit(
    #[wasm_bindgen(unchecked_param_type = "HeadersLike")] headers: JsValue,
    #[wasm_bindgen(js_name = nowSecs, unchecked_optional_param_type = "number")] now_secs: JsValue,
) -> Result<JsValue, JsValue> {
    let now = now_arg(&now_secs).map_err(js_error)?;
    if !headers.is_object() {
        return Err(js_error(WebError::invalid_argument("headers must be a Headers object or a plain object")));
    }
    let get = Reflect::get(&headers, &"get".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
    let info = match get {
        // A Headers object: its `get` is case-insensitive and joins repeated fields with ", ".
        Some(get) => ratelimit_headers::parse_rate_limit(|name| get.call1(&headers, &name.into()).ok().and_then(|v| v.as_string()), now),
        None => {
            let mut fields: Vec<(String, String)> = Vec::new();
            for entry in Object::entries(headers.unchecked_ref::<Object>()).iter() {
                let name = Reflect::get_u32(&entry, 0).ok().and_then(|v| v.as_string());
                let value = Reflect::get_u32(&entry, 1).ok();
                let (Some(name), Some(value)) = (name, value) else { continue };
                let value = match value.as_string() {
                    Some(s) => Some(s),
                    None if js_sys::Array::is_array(&value) => {
                        let parts: Option<Vec<String>> = js_sys::Array::from(&value).iter().map(|v| v.as_string()).collect();
                        parts.map(|p| p.join(", "))
                    }
                    None => None,
                };
                if let Some(value) = value {
                    fields.push((name.to_ascii_lowercase(), value));
                }
            }
            ratelimit_headers::parse_rate_limit(
                |name| {
                    let values: Vec<&str> = fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
                    (!values.is_empty()).then(|| values.join(", "))
                },
                now,
            )
        }
    };
    json_out(&serde_json::to_value(info).unwrap_or(Value::Null))
}

#[cfg(test)]
mod testkit;
#[cfg(all(test, target_arch = "wasm32"))]
mod wasm_tests;
