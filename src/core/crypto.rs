//! The signature seam. Backends only answer "does this signature verify under this key"; key
//! selection, lengths and every policy decision happen before, in [`super::verify`].
//!
//! [`NativeBackend`] (host builds, the CLI, tests): jwt-simple's key types and the primitives behind
//! them for RS*, PS*, ES256, ES384, EdDSA and HS*, and the `p521` crate for ES512, which jwt-simple
//! lacks. The Worker uses WebCrypto instead for the asymmetric algorithms (see the worker
//! adapter), falling back to this backend where WebCrypto lacks an algorithm, and
//! [`hmac_matches`] for HS256.

use super::alg::{Algorithm, Curve};
use super::error::AuthError;
use super::jwk::KeyMaterial;
use super::verify::{SignatureJob, SignatureProof};

/// Checks one signature.
pub trait SignatureBackend {
    /// `Ok(proof)` if the signature of `job` verifies; [`AuthError::BadSignature`] otherwise.
    fn verify(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError>;
}

/// A signature backend that may have to wait (the runtime's WebCrypto is a promise). Every
/// [`SignatureBackend`] is one that never does.
#[allow(async_fn_in_trait)] // single-threaded runtimes: the futures need not be `Send`
pub trait AsyncSignatureBackend {
    /// As [`SignatureBackend::verify`].
    async fn verify_async(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError>;
}

impl<B: SignatureBackend> AsyncSignatureBackend for B {
    async fn verify_async(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        self.verify(job)
    }
}

impl<B: SignatureBackend + ?Sized> SignatureBackend for &B {
    fn verify(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
        (**self).verify(job)
    }
}

/// Pure-Rust verification (jwt-simple + p521).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBackend;

impl SignatureBackend for NativeBackend {
    fn verify(&self, job: &SignatureJob<'_>) -> Result<SignatureProof, AuthError> {
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

/// Raw signature checks over `signing_input`, so the verdict depends on the signature alone and
/// never on how a library would parse the claims. Keys are built with jwt-simple's key types
/// (which validate them); the check itself uses the primitive behind each type: superboring for
/// RSA (as jwt-simple does), `p256`/`p384` for ECDSA, `ed25519-compact` for Ed25519, and
/// jwt-simple's own HMAC with a constant-time comparison.
fn verify_native(job: &SignatureJob<'_>) -> bool {
    use jwt_simple::prelude::*;
    let (msg, sig) = (job.signing_input, job.signature);
    match (&job.key.material, job.alg) {
        (KeyMaterial::Rsa { n, e }, alg) => {
            use superboring::hash::MessageDigest;
            use superboring::rsa::Padding;
            let (digest, padding, key) = match alg {
                Algorithm::RS256 => (MessageDigest::sha256(), Padding::PKCS1, RS256PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone())),
                Algorithm::RS384 => (MessageDigest::sha384(), Padding::PKCS1, RS384PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone())),
                Algorithm::RS512 => (MessageDigest::sha512(), Padding::PKCS1, RS512PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone())),
                Algorithm::PS256 => {
                    (MessageDigest::sha256(), Padding::PKCS1_PSS, PS256PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone()))
                }
                Algorithm::PS384 => {
                    (MessageDigest::sha384(), Padding::PKCS1_PSS, PS384PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone()))
                }
                Algorithm::PS512 => {
                    (MessageDigest::sha512(), Padding::PKCS1_PSS, PS512PublicKey::from_components(n, e).map(|k| k.public_key().as_ref().clone()))
                }
                _ => return false,
            };
            let Ok(rsa) = key else { return false };
            let Ok(pkey) = superboring::pkey::PKey::from_rsa(rsa) else { return false };
            let Ok(mut v) = superboring::sign::Verifier::new(digest, &pkey) else { return false };
            v.set_rsa_padding(padding).is_ok() && v.update(msg).is_ok() && v.verify(sig).unwrap_or(false)
        }
        (KeyMaterial::Ec { curve: Curve::P256, x, y }, Algorithm::ES256) => {
            use p256::ecdsa::signature::Verifier;
            let Ok(k) = ES256PublicKey::from_bytes(&sec1(x, y)) else { return false };
            let Ok(s) = p256::ecdsa::Signature::from_slice(sig) else { return false };
            k.public_key().as_ref().verify(msg, &s).is_ok()
        }
        (KeyMaterial::Ec { curve: Curve::P384, x, y }, Algorithm::ES384) => {
            use p384::ecdsa::signature::Verifier;
            let Ok(k) = ES384PublicKey::from_bytes(&sec1(x, y)) else { return false };
            let Ok(s) = p384::ecdsa::Signature::from_slice(sig) else { return false };
            k.public_key().as_ref().verify(msg, &s).is_ok()
        }
        (KeyMaterial::Ec { curve: Curve::P521, x, y }, Algorithm::ES512) => verify_es512(x, y, msg, sig),
        (KeyMaterial::Ed25519 { x }, Algorithm::EdDSA | Algorithm::Ed25519) => {
            let Ok(k) = Ed25519PublicKey::from_bytes(x) else { return false };
            let Ok(s) = ed25519_compact::Signature::from_slice(sig) else { return false };
            k.public_key().as_ref().verify(msg, &s).is_ok()
        }
        (KeyMaterial::Oct { k }, Algorithm::HS256) => ct_eq(&HS256Key::from_bytes(k).authentication_tag(msg), sig),
        (KeyMaterial::Oct { k }, Algorithm::HS384) => ct_eq(&HS384Key::from_bytes(k).authentication_tag(msg), sig),
        (KeyMaterial::Oct { k }, Algorithm::HS512) => ct_eq(&HS512Key::from_bytes(k).authentication_tag(msg), sig),
        _ => false,
    }
}

/// An HMAC tag check with the RustCrypto `hmac` crate over digest `D`, compared in constant time.
/// The Worker and the JS package check HS256 with this (`D` = SHA-256, already linked) instead
/// of WebCrypto: for a MAC over a token, hashing in wasm costs less than one round trip into a
/// WebCrypto promise. HS384/HS512 stay on WebCrypto there, which keeps SHA-512 out of the bundle.
/// (The native backend keeps jwt-simple's HMAC, so the differential test still compares two
/// implementations.)
#[cfg_attr(not(any(feature = "worker", feature = "web")), allow(dead_code))]
pub(crate) fn hmac_matches<D>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool
where
    D: hmac::digest::Digest + hmac::digest::core_api::BlockSizeUser,
{
    use hmac::{Mac, SimpleHmac};
    let Ok(mut m) = SimpleHmac::<D>::new_from_slice(key) else { return false };
    m.update(msg);
    ct_eq(&m.finalize().into_bytes(), sig)
}

/// Constant-time equality of MAC tags.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// ES512 (ECDSA P-521 + SHA-512) with the RustCrypto `p521` crate; the signature is raw R‖S.
pub(crate) fn verify_es512(x: &[u8], y: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier;
    let Ok(key) = p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(x, y)) else { return false };
    let Ok(sig) = p521::ecdsa::Signature::from_slice(sig) else { return false };
    key.verify(msg, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;

    /// The Worker's HMAC (RustCrypto) agrees with the native backend's (jwt-simple) on valid and
    /// tampered tags, every hash size, short and long keys.
    #[test]
    fn hmac_implementations_agree() {
        let msg = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0";
        for key in [vec![7u8; 32], vec![1u8; 200]] {
            type Check = fn(&[u8], &[u8], &[u8]) -> bool;
            let cases: [(Check, Vec<u8>); 3] = [
                (hmac_matches::<sha2::Sha256>, HS256Key::from_bytes(&key).authentication_tag(msg)),
                (hmac_matches::<sha2::Sha384>, HS384Key::from_bytes(&key).authentication_tag(msg)),
                (hmac_matches::<sha2::Sha512>, HS512Key::from_bytes(&key).authentication_tag(msg)),
            ];
            for (check, tag) in cases {
                assert!(check(&key, msg, &tag));
                let mut bad = tag.clone();
                bad[0] ^= 1;
                assert!(!check(&key, msg, &bad));
                assert!(!check(&key, msg, &tag[..tag.len() - 1]), "a truncated tag");
                assert!(!check(&key, b"other", &tag));
            }
        }
    }
}
