//! The signature seam. Backends only answer "does this signature verify under this key"; key
//! selection, lengths and every policy decision happen before, in [`super::verify`].
//!
//! [`NativeBackend`] (host builds, the CLI, tests): jwt-simple for RS*, PS*, ES256, ES384, EdDSA and
//! HS*, and the `p521` crate for ES512, which jwt-simple lacks. The Worker uses WebCrypto instead
//! (see the worker adapter), falling back to this backend where WebCrypto lacks an algorithm.

use super::alg::{Algorithm, Curve};
use super::error::AuthError;
use super::jwk::KeyMaterial;
use super::verify::{SignatureJob, SignatureProof};

/// Checks one signature.
pub trait SignatureBackend {
    /// `Ok(proof)` if the signature of `job` verifies; [`AuthError::BadSignature`] otherwise.
    fn verify<'a>(&self, job: &SignatureJob<'a>) -> Result<SignatureProof<'a>, AuthError>;
}

/// Pure-Rust verification (jwt-simple + p521).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBackend;

impl SignatureBackend for NativeBackend {
    fn verify<'a>(&self, job: &SignatureJob<'a>) -> Result<SignatureProof<'a>, AuthError> {
        if verify_native(job) {
            Ok(SignatureProof::for_job(job))
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

fn sec1(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + x.len() + y.len());
    v.push(0x04);
    v.extend_from_slice(x);
    v.extend_from_slice(y);
    v
}

/// jwt-simple verifies the compact token as a whole. Its own claim checks are neutralised (time
/// fixed at 0, future tokens allowed, no limits): Edgeward's checks in `verify.rs` are the policy.
/// Every error from jwt-simple, whatever its cause, counts as a failed signature (fail closed).
fn jwt_simple_options() -> jwt_simple::prelude::VerificationOptions {
    use jwt_simple::prelude::*;
    VerificationOptions {
        accept_future: true,
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(0)),
        max_validity: None,
        max_token_length: None,
        max_header_length: Some(usize::MAX),
        ..Default::default()
    }
}

fn verify_native(job: &SignatureJob<'_>) -> bool {
    use jwt_simple::prelude::*;
    type Claims = JWTClaims<NoCustomClaims>;
    let t = job.compact;
    let o = || Some(jwt_simple_options());
    let ok = |r: Result<Claims, jwt_simple::Error>| r.is_ok();
    match (&job.key.material, job.alg) {
        (KeyMaterial::Rsa { n, e }, alg) => match alg {
            Algorithm::RS256 => RS256PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            Algorithm::RS384 => RS384PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            Algorithm::RS512 => RS512PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            Algorithm::PS256 => PS256PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            Algorithm::PS384 => PS384PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            Algorithm::PS512 => PS512PublicKey::from_components(n, e).is_ok_and(|k| ok(k.verify_token(t, o()))),
            _ => false,
        },
        (KeyMaterial::Ec { curve: Curve::P256, x, y }, Algorithm::ES256) => {
            ES256PublicKey::from_bytes(&sec1(x, y)).is_ok_and(|k| ok(k.verify_token(t, o())))
        }
        (KeyMaterial::Ec { curve: Curve::P384, x, y }, Algorithm::ES384) => {
            ES384PublicKey::from_bytes(&sec1(x, y)).is_ok_and(|k| ok(k.verify_token(t, o())))
        }
        (KeyMaterial::Ec { curve: Curve::P521, x, y }, Algorithm::ES512) => verify_es512(x, y, job.signing_input, job.signature),
        (KeyMaterial::Ed25519 { x }, Algorithm::EdDSA | Algorithm::Ed25519) => {
            Ed25519PublicKey::from_bytes(x).is_ok_and(|k| ok(k.verify_token(t, o())))
        }
        (KeyMaterial::Oct { k }, Algorithm::HS256) => ok(HS256Key::from_bytes(k).verify_token(t, o())),
        (KeyMaterial::Oct { k }, Algorithm::HS384) => ok(HS384Key::from_bytes(k).verify_token(t, o())),
        (KeyMaterial::Oct { k }, Algorithm::HS512) => ok(HS512Key::from_bytes(k).verify_token(t, o())),
        _ => false,
    }
}

/// ES512 (ECDSA P-521 + SHA-512) with the RustCrypto `p521` crate; the signature is raw R‖S.
pub(crate) fn verify_es512(x: &[u8], y: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier;
    let Ok(key) = p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(x, y)) else { return false };
    let Ok(sig) = p521::ecdsa::Signature::from_slice(sig) else { return false };
    key.verify(msg, &sig).is_ok()
}
