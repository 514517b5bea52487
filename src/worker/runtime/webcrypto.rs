//! Signature checks on the runtime's WebCrypto (`crypto.subtle`), which runs native code and is far
//! faster than pure-Rust crypto compiled to wasm for RSA, ECDSA and EdDSA. HS256 is the exception:
//! it is checked in Rust ([`crate::core::crypto::hmac_matches`]), cheaper than a WebCrypto await. Keys are imported once per isolate and cached as
//! `CryptoKey`s (plain objects, not in-flight I/O, so sharing them across requests is safe).
//! workerd's WebCrypto has every algorithm Edgeward accepts, P-521 included (checked on workerd
//! 1.20261117); for runtimes without P-521, the `es512-fallback` feature links the pure-Rust
//! `p521` check (about 50 KB of wasm) and uses it when the key import fails.

use super::js::{call, object as obj};
use crate::core::alg::{Algorithm, KeyFamily};
#[cfg(feature = "es512-fallback")]
use crate::core::crypto::verify_es512;
use crate::core::error::AuthError;
use crate::core::jwk::KeyMaterial;
use crate::core::verify::{SignatureJob, SignatureProof};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::js_sys::{self, Array, Object, Reflect};
use worker::wasm_bindgen::JsValue;

/// An imported key with everything a verify call needs, built once per key and algorithm.
struct Ready {
    alg: Algorithm,
    key: JsValue,
    verify_alg: Object,
}

thread_local! {
    /// Imported keys by JWK fingerprint (computed once, when the JWK was parsed), then algorithm:
    /// the lookup on every verify borrows the fingerprint, so it allocates nothing.
    static KEYS: RefCell<HashMap<String, Vec<Ready>>> = RefCell::new(HashMap::new());
}

/// Forgets every imported key (a new configuration: the isolate's state is rebuilt as one).
pub(crate) fn reset() {
    KEYS.with(|k| k.borrow_mut().clear());
}

/// Most keys cached per isolate (a JWKS rotation adds a few; garbage cannot add any, since only
/// configured keys are ever imported).
const MAX_CACHED_KEYS: usize = 256;

fn hash_name(alg: Algorithm) -> &'static str {
    match alg.hash_len() {
        32 => "SHA-256",
        48 => "SHA-384",
        _ => "SHA-512",
    }
}

/// (importKey algorithm, verify algorithm) for `alg`.
pub(crate) fn params(alg: Algorithm, material: &KeyMaterial) -> Option<(Object, Object)> {
    let hash = || JsValue::from(obj(&[("name", JsValue::from_str(hash_name(alg)))]));
    let s = JsValue::from_str;
    Some(match (alg, alg.key_family()) {
        (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, _) => {
            (obj(&[("name", s("RSASSA-PKCS1-v1_5")), ("hash", hash())]), obj(&[("name", s("RSASSA-PKCS1-v1_5"))]))
        }
        (Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512, _) => {
            (obj(&[("name", s("RSA-PSS")), ("hash", hash())]), obj(&[("name", s("RSA-PSS")), ("saltLength", JsValue::from(alg.hash_len() as u32))]))
        }
        (_, KeyFamily::Ec(curve)) => {
            let KeyMaterial::Ec { .. } = material else { return None };
            (obj(&[("name", s("ECDSA")), ("namedCurve", s(curve.name()))]), obj(&[("name", s("ECDSA")), ("hash", hash())]))
        }
        (_, KeyFamily::Ed25519) => (obj(&[("name", s("Ed25519"))]), obj(&[("name", s("Ed25519"))])),
        (_, KeyFamily::Oct) => (obj(&[("name", s("HMAC")), ("hash", hash())]), obj(&[("name", s("HMAC"))])),
        _ => return None,
    })
}

pub(crate) fn subtle() -> Result<JsValue, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    Reflect::get(&crypto, &JsValue::from_str("subtle"))
}

/// [`call`] awaited with wasm-bindgen's `JsFuture` (bench comparison only).
#[cfg(feature = "bench")]
pub(crate) async fn call_jsfuture(target: &JsValue, method: &str, args: &Array) -> Result<JsValue, JsValue> {
    worker::wasm_bindgen_futures::JsFuture::from(super::js::invoke(target, method, args)?).await
}

/// Runs `f` on the cached key of `job`, if it was imported already (borrowed, not cloned).
fn with_cached<R>(job: &SignatureJob<'_>, f: impl FnOnce(&Ready) -> R) -> Option<R> {
    KEYS.with(|m| m.borrow().get(job.key.fingerprint.as_str()).and_then(|v| v.iter().find(|r| r.alg == job.alg)).map(f))
}

/// True when `job`'s key is imported (bench breakdown: the per-call key-cache lookup).
#[cfg(feature = "bench")]
pub(crate) fn is_cached(job: &SignatureJob<'_>) -> bool {
    with_cached(job, |_| ()).is_some()
}

/// Imports `job`'s key for its algorithm (once per isolate) and caches it.
pub(crate) async fn import(job: &SignatureJob<'_>, import_alg: &Object) -> Result<JsValue, JsValue> {
    if let Some(key) = with_cached(job, |r| r.key.clone()) {
        return Ok(key);
    }
    let crypto_key = import_key(job, import_alg).await?;
    if let Some((_, verify_alg)) = params(job.alg, &job.key.material) {
        KEYS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX_CACHED_KEYS {
                m.clear();
            }
            let entry = m.entry(job.key.fingerprint.clone()).or_default();
            entry.retain(|r| r.alg != job.alg);
            entry.push(Ready { alg: job.alg, key: crypto_key.clone(), verify_alg });
        });
    }
    Ok(crypto_key)
}

/// `crypto.subtle.importKey("jwk", …)` of `job`'s key, for verification.
async fn import_key(job: &SignatureJob<'_>, import_alg: &Object) -> Result<JsValue, JsValue> {
    let jwk_text = serde_json::to_string(job.key.to_json()).map_err(|_| JsValue::from_str("jwk"))?;
    let jwk = js_sys::JSON::parse(&jwk_text)?;
    let usages = Array::of1(&JsValue::from_str("verify"));
    let args = Array::of5(&JsValue::from_str("jwk"), &jwk, import_alg, &JsValue::FALSE, &usages);
    call(&subtle()?, "importKey", &args).await
}

/// Starts `crypto.subtle.verify` for `job` with its cached key; `None` when the key is not imported.
fn start_verify(job: &SignatureJob<'_>) -> Option<super::promise::Settle> {
    // One call out of wasm: the cached key and algorithm object are borrowed (no handle clones),
    // signature and signing input are views of wasm memory, the answer comes back as a boolean.
    with_cached(job, |r| super::promise::verify(&r.verify_alg, &r.key, job.signature, job.signing_input))
}

/// Verifies `job` with WebCrypto (or pure Rust where WebCrypto cannot, or is slower: HMAC).
pub async fn verify(job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
    if let (KeyMaterial::Oct { k }, Algorithm::HS256) = (&job.key.material, job.alg) {
        // A MAC over a token costs a few µs in wasm; a WebCrypto call costs more in its await.
        // (HS384/512 stay on WebCrypto: SHA-512 in wasm would cost ~12 KB of bundle.)
        return if crate::core::crypto::hmac_matches::<sha2::Sha256>(k, job.signing_input, job.signature) {
            Ok(SignatureProof::for_job(job))
        } else {
            Err(AuthError::BadSignature)
        };
    }
    if job.key.from_message {
        // A DPoP proof's own key: imported for this one check, never cached.
        let Some((import_alg, verify_alg)) = params(job.alg, &job.key.material) else { return Err(AuthError::BadSignature) };
        let key = import_key(job, &import_alg).await.map_err(|_| AuthError::BadSignature)?;
        return match super::promise::verify(&verify_alg, &key, job.signature, job.signing_input).await {
            Ok(_) => Ok(SignatureProof::for_job(job)),
            Err(_) => Err(AuthError::BadSignature),
        };
    }
    let pending = match start_verify(job) {
        Some(p) => p,
        None => {
            let imported = match params(job.alg, &job.key.material) {
                Some((import_alg, _)) => import(job, &import_alg).await.is_ok(),
                None => false,
            };
            match start_verify(job).filter(|_| imported) {
                Some(p) => p,
                None => {
                    // WebCrypto without P-521: pure Rust. Any other import failure is a bad key.
                    #[cfg(feature = "es512-fallback")]
                    if let (Algorithm::ES512, KeyMaterial::Ec { x, y, .. }) = (job.alg, &job.key.material) {
                        return if verify_es512(x, y, job.signing_input, job.signature) {
                            Ok(SignatureProof::for_job(job))
                        } else {
                            Err(AuthError::BadSignature)
                        };
                    }
                    return Err(AuthError::BadSignature);
                }
            }
        }
    };
    match pending.await {
        Ok(_) => Ok(SignatureProof::for_job(job)),
        Err(_) => Err(AuthError::BadSignature),
    }
}
