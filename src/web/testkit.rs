//! Test keys for the web adapter's tests (host and wasm), generated at run time.

use crate::core::json::b64url_encode as enc;
use serde_json::{json, Value};

/// An Ed25519 issuer key made from a fresh random seed, and its public JWK Set.
pub struct Issuer {
    kp: ed25519_compact::KeyPair,
    /// The key's `kid`.
    pub kid: &'static str,
}

impl Issuer {
    /// A new key with this `kid`.
    pub fn new(kid: &'static str) -> Issuer {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("test randomness");
        Issuer { kp: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)), kid }
    }
    /// The public JWK Set.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": enc(self.kp.pk.as_ref()), "kid": self.kid, "alg": "EdDSA", "use": "sig"}]})
    }
    /// Signs any header and claims.
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", enc(header.to_string().as_bytes()), enc(claims.to_string().as_bytes()));
        let sig = self.kp.sk.sign(input.as_bytes(), None);
        format!("{input}.{}", enc(sig.as_ref()))
    }
    /// An EdDSA token with this key's `kid`.
    pub fn token(&self, claims: Value) -> String {
        self.sign(json!({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"}), claims)
    }
}
