//! Shared helpers for the host integration tests: fixed time, deterministic keys for every
//! algorithm, token builders (standard and hand-made headers/claims) and policy builders.
//!
//! Keys are deterministic (fixed seeds/scalars) except RSA, which is generated once per test
//! binary and cached in a `OnceLock`.
#![allow(dead_code)]

use edgeward::core::alg::Algorithm;
use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::crypto::SignatureBackend;
use edgeward::core::error::AuthError;
use edgeward::core::json::{b64url_decode, b64url_encode};
use edgeward::core::jwk::KeySet;
use edgeward::core::pipeline::Gate;
use edgeward::core::verify::VerifiedToken;
use jwt_simple::prelude::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ECDSAP384KeyPairLike, ECDSAP384PublicKeyLike, ES256KeyPair, ES384KeyPair, HS256Key, HS384Key, HS512Key,
    JWTClaims, MACLike, PS256KeyPair, PS384KeyPair, PS512KeyPair, RS256KeyPair, RS384KeyPair, RS512KeyPair, RSAKeyPairLike,
};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The fixed "now" of every test (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;
/// The issuer of the standard policy.
pub const ISS: &str = "https://issuer.example";
/// The audience of the standard policy.
pub const AUD: &str = "api://edgeward";
/// Origin of the standard policy.
pub const ORIGIN: &str = "https://origin.example";

pub fn b64(bytes: &[u8]) -> String {
    b64url_encode(bytes)
}

/// Base64url of a JSON value's compact serialization.
pub fn b64j(v: &Value) -> String {
    b64url_encode(v.to_string().as_bytes())
}

/// Good claims at `NOW` for the standard issuer and audience.
pub fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "user-1",
        "aud": AUD,
        "iat": NOW - 10,
        "exp": NOW + 600,
        "scope": "read write"
    })
}

/// `base` with the members of `patch` set; a `null` in `patch` removes the member.
pub fn with(base: Value, patch: Value) -> Value {
    let mut o = base.as_object().expect("base is an object").clone();
    for (k, v) in patch.as_object().expect("patch is an object") {
        if v.is_null() {
            o.remove(k);
        } else {
            o.insert(k.clone(), v.clone());
        }
    }
    Value::Object(o)
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

struct RsaKeys {
    rs256: RS256KeyPair,
    rs384: RS384KeyPair,
    rs512: RS512KeyPair,
    ps256: PS256KeyPair,
    ps384: PS384KeyPair,
    ps512: PS512KeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// One 2048-bit RSA key per test binary, shared by all six RSA algorithms.
fn rsa() -> &'static RsaKeys {
    static KEYS: OnceLock<RsaKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rs256 = RS256KeyPair::generate(2048).expect("RSA key generation");
        let der = rs256.to_der().expect("RSA DER");
        let c = rs256.public_key().to_components();
        RsaKeys {
            rs384: RS384KeyPair::from_der(&der).unwrap(),
            rs512: RS512KeyPair::from_der(&der).unwrap(),
            ps256: PS256KeyPair::from_der(&der).unwrap(),
            ps384: PS384KeyPair::from_der(&der).unwrap(),
            ps512: PS512KeyPair::from_der(&der).unwrap(),
            rs256,
            n: c.n,
            e: c.e,
        }
    })
}

/// RSA public modulus and exponent of the shared test key.
pub fn rsa_components() -> (Vec<u8>, Vec<u8>) {
    (rsa().n.clone(), rsa().e.clone())
}

fn es256_scalar(seed: u8) -> [u8; 32] {
    [0x11u8.wrapping_add(seed); 32]
}
fn es384_scalar(seed: u8) -> [u8; 48] {
    [0x22u8.wrapping_add(seed); 48]
}
/// A valid P-521 scalar: 66 bytes, first byte 0x01 (below the group order).
fn es512_scalar(seed: u8) -> [u8; 66] {
    let mut s = [0x03u8.wrapping_add(seed); 66];
    s[0] = 0x01;
    s
}
fn ed25519_pair(seed: u8) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x33u8.wrapping_add(seed); 32]))
}
fn es512_key(seed: u8) -> p521::ecdsa::SigningKey {
    p521::ecdsa::SigningKey::from_slice(&es512_scalar(seed)).expect("valid P-521 scalar")
}
/// A deterministic "random" source for ECDSA P-521 nonces, seeded from the message, so ES512
/// tokens are reproducible (p521 0.13 signs with a random nonce; its `Signer` needs `getrandom`).
/// Test keys only: never reuse this idea for real keys.
struct DetRng {
    seed: [u8; 64],
    counter: u64,
    buf: Vec<u8>,
}

impl DetRng {
    fn new(msg: &[u8]) -> Self {
        use sha2::{Digest, Sha512};
        DetRng { seed: Sha512::digest(msg).into(), counter: 0, buf: Vec::new() }
    }
}

impl p521::ecdsa::signature::rand_core::RngCore for DetRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use sha2::{Digest, Sha512};
        for d in dest.iter_mut() {
            if self.buf.is_empty() {
                let mut h = Sha512::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.counter += 1;
                self.buf = h.finalize().to_vec();
            }
            *d = self.buf.pop().unwrap();
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), p521::ecdsa::signature::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl p521::ecdsa::signature::rand_core::CryptoRng for DetRng {}

/// HMAC secret, exactly as long as the hash output.
pub fn hmac_secret(alg: Algorithm, seed: u8) -> Vec<u8> {
    vec![0x44u8.wrapping_add(seed); alg.hash_len()]
}

/// Every algorithm under test, with the `alg` header value it is signed with.
pub const ALL_ALGS: [Algorithm; 14] = Algorithm::ALL;

/// A signing key for one algorithm. `seed` selects another key of the same kind (RSA: only 0).
#[derive(Clone, Copy, Debug)]
pub struct TestKey {
    pub alg: Algorithm,
    pub seed: u8,
}

pub fn key(alg: Algorithm) -> TestKey {
    TestKey { alg, seed: 0 }
}

pub fn key_seeded(alg: Algorithm, seed: u8) -> TestKey {
    assert!(seed == 0 || !matches!(alg.key_family(), edgeward::core::alg::KeyFamily::Rsa), "only one RSA test key exists");
    TestKey { alg, seed }
}

fn ec_point_to_jwk(crv: &str, point: &[u8], coord: usize) -> Value {
    assert_eq!(point.len(), 1 + 2 * coord, "uncompressed SEC1 point");
    assert_eq!(point[0], 0x04);
    json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + coord]), "y": b64(&point[1 + coord..])})
}

impl TestKey {
    /// The public JWK (no `kid`, `alg` or `use`).
    pub fn public_jwk(&self) -> Value {
        use Algorithm::*;
        match self.alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                let r = rsa();
                json!({"kty": "RSA", "n": b64(&r.n), "e": b64(&r.e)})
            }
            ES256 => {
                ec_point_to_jwk("P-256", &ES256KeyPair::from_bytes(&es256_scalar(self.seed)).unwrap().public_key().public_key().to_bytes_uncompressed(), 32)
            }
            ES384 => {
                ec_point_to_jwk("P-384", &ES384KeyPair::from_bytes(&es384_scalar(self.seed)).unwrap().public_key().public_key().to_bytes_uncompressed(), 48)
            }
            ES512 => {
                let point = p521::ecdsa::VerifyingKey::from(&es512_key(self.seed)).to_encoded_point(false);
                ec_point_to_jwk("P-521", point.as_bytes(), 66)
            }
            EdDSA | Ed25519 => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&ed25519_pair(self.seed).pk[..])}),
            HS256 | HS384 | HS512 => json!({"kty": "oct", "k": b64(&hmac_secret(self.alg, self.seed))}),
            other => panic!("no test key for {other}"),
        }
    }

    /// The public JWK with `kid` and any further members of `extra` (e.g. `{"use":"sig"}`).
    pub fn jwk(&self, kid: &str, extra: Value) -> Value {
        let mut v = with(self.public_jwk(), extra);
        v["kid"] = json!(kid);
        v
    }

    /// True if `sign_raw` can sign arbitrary header and claims bytes with this key.
    pub fn raw_capable(&self) -> bool {
        use Algorithm::*;
        matches!(self.alg, ES512 | EdDSA | Ed25519 | HS256 | HS384 | HS512)
    }

    /// Signs arbitrary bytes (only for raw-capable algorithms).
    pub fn signature(&self, signing_input: &[u8]) -> Vec<u8> {
        use Algorithm::*;
        match self.alg {
            HS256 => HS256Key::from_bytes(&hmac_secret(HS256, self.seed)).authentication_tag(signing_input),
            HS384 => HS384Key::from_bytes(&hmac_secret(HS384, self.seed)).authentication_tag(signing_input),
            HS512 => HS512Key::from_bytes(&hmac_secret(HS512, self.seed)).authentication_tag(signing_input),
            EdDSA | Ed25519 => ed25519_pair(self.seed).sk.sign(signing_input, None).to_vec(),
            ES512 => {
                use p521::ecdsa::signature::RandomizedSigner;
                let mut rng = DetRng::new(signing_input);
                let sig: p521::ecdsa::Signature = es512_key(self.seed).sign_with_rng(&mut rng, signing_input);
                sig.to_bytes().to_vec()
            }
            other => panic!("raw signing is not available for {other}; use TestKey::sign"),
        }
    }

    /// A compact token with exactly this header and claims text (raw-capable algorithms only).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = self.signature(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// A token with a standard header (`alg` = this algorithm's name, `typ: JWT`, optional `kid`)
    /// and exactly the given claims. RSA, ES256 and ES384 are signed by jwt-simple (whose header
    /// is `{"alg","typ":"JWT","kid"}`); the rest are signed here.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        use Algorithm::*;
        if self.raw_capable() {
            let mut h = json!({"alg": self.alg.name(), "typ": "JWT"});
            if let Some(k) = kid {
                h["kid"] = json!(k);
            }
            return self.sign_raw(&h.to_string(), &claims.to_string());
        }
        let c = js_claims(claims);
        let r = match self.alg {
            RS256 => with_kid(rsa().rs256.clone(), kid, RS256KeyPair::with_key_id).sign(c),
            RS384 => with_kid(rsa().rs384.clone(), kid, RS384KeyPair::with_key_id).sign(c),
            RS512 => with_kid(rsa().rs512.clone(), kid, RS512KeyPair::with_key_id).sign(c),
            PS256 => with_kid(rsa().ps256.clone(), kid, PS256KeyPair::with_key_id).sign(c),
            PS384 => with_kid(rsa().ps384.clone(), kid, PS384KeyPair::with_key_id).sign(c),
            PS512 => with_kid(rsa().ps512.clone(), kid, PS512KeyPair::with_key_id).sign(c),
            ES256 => with_kid(ES256KeyPair::from_bytes(&es256_scalar(self.seed)).unwrap(), kid, ES256KeyPair::with_key_id).sign(c),
            ES384 => with_kid(ES384KeyPair::from_bytes(&es384_scalar(self.seed)).unwrap(), kid, ES384KeyPair::with_key_id).sign(c),
            other => panic!("unexpected {other}"),
        };
        r.expect("jwt-simple signs")
    }
}

fn with_kid<K>(k: K, kid: Option<&str>, f: impl Fn(K, &str) -> K) -> K {
    match kid {
        Some(id) => f(k, id),
        None => k,
    }
}

/// jwt-simple claims carrying exactly `claims` (its own time fields cleared: no hidden clock).
fn js_claims(claims: &Value) -> JWTClaims<Map<String, Value>> {
    let mut c = jwt_simple::prelude::Claims::with_custom_claims(
        claims.as_object().expect("claims must be an object").clone(),
        jwt_simple::prelude::Duration::from_secs(0),
    );
    c.issued_at = None;
    c.expires_at = None;
    c.invalid_before = None;
    c
}

// ---------------------------------------------------------------------------------------------
// Token surgery
// ---------------------------------------------------------------------------------------------

/// The three segments of a compact token.
pub fn segments(token: &str) -> (String, String, String) {
    let v: Vec<&str> = token.split('.').collect();
    assert_eq!(v.len(), 3, "compact token");
    (v[0].to_string(), v[1].to_string(), v[2].to_string())
}

/// The token with byte `index` of its decoded signature XOR-ed with `mask`.
pub fn flip_signature_byte(token: &str, index: usize, mask: u8) -> String {
    let (h, p, s) = segments(token);
    let mut sig = b64url_decode(&s).expect("signature segment");
    let i = index.min(sig.len() - 1);
    sig[i] ^= mask;
    format!("{h}.{p}.{}", b64(&sig))
}

/// The token with its signature replaced by `sig`.
pub fn replace_signature(token: &str, sig: &[u8]) -> String {
    let (h, p, _) = segments(token);
    format!("{h}.{p}.{}", b64(sig))
}

/// The token with its payload replaced by `claims` (the signature is kept).
pub fn replace_payload(token: &str, claims: &Value) -> String {
    let (h, _, s) = segments(token);
    format!("{h}.{}.{s}", b64j(claims))
}

/// The decoded signature.
pub fn signature_bytes(token: &str) -> Vec<u8> {
    b64url_decode(&segments(token).2).expect("signature segment")
}

// ---------------------------------------------------------------------------------------------
// Policies and verification
// ---------------------------------------------------------------------------------------------

/// An issuer entry with inline keys.
pub fn issuer_entry(iss: Option<&str>, algs: &[&str], keys: Vec<Value>) -> Value {
    json!({"issuer": iss, "audiences": [AUD], "algorithms": algs, "jwks": {"keys": keys}})
}

/// A configuration document with these issuers and the standard origin.
pub fn config(issuers: Vec<Value>) -> Value {
    json!({"issuers": issuers, "origin": ORIGIN})
}

/// Parses and validates a configuration document; panics with the error if invalid.
pub fn policy(doc: &Value) -> Policy {
    match Policy::from_json(&doc.to_string()) {
        Ok(p) => p,
        Err(e) => panic!("test policy is invalid: {e}\n{doc:#}"),
    }
}

/// The standard single-issuer policy for one key: algorithms `[alg]`, the key inline as `kid`.
pub fn single_key_policy(k: TestKey, kid: &str) -> Policy {
    policy(&config(vec![issuer_entry(Some(ISS), &[k.alg.name()], vec![k.jwk(kid, json!({}))])]))
}

pub fn verify_at(p: &Policy, token: &str, now: i64) -> Result<VerifiedToken, AuthError> {
    verify_with(p, token, &[], NativeBackend, now)
}

/// The pipeline's JWT step on a fresh gate for `p`, with `fetched[i]` installed as issuer `i`'s
/// fetched keys (as the adapter's JWKS cache would hold them; `None`: nothing could be fetched)
/// and no network.
pub fn verify_with<B: SignatureBackend>(p: &Policy, token: &str, fetched: &[Option<KeySet>], backend: B, now: i64) -> Result<VerifiedToken, AuthError> {
    let gate = Gate::new(p.clone());
    for (i, k) in fetched.iter().enumerate() {
        if let Some(k) = k {
            gate.state().install_jwks(i, k.clone(), now);
        }
    }
    gate.verify_inline(token, backend, now, false).0
}

pub fn verify(p: &Policy, token: &str) -> Result<VerifiedToken, AuthError> {
    verify_at(p, token, NOW)
}

/// "ok" or the reason code.
pub fn outcome(r: &Result<VerifiedToken, AuthError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// Every reason code the core defines (for "is a known code" assertions).
pub const ALL_CODES: &[&str] = &[
    "missing_token",
    "token_too_large",
    "malformed_token",
    "malformed_header",
    "duplicate_member",
    "alg_missing",
    "alg_none",
    "alg_not_allowed",
    "unsupported_header",
    "malformed_claims",
    "issuer_mismatch",
    "unknown_kid",
    "no_matching_key",
    "bad_signature",
    "missing_exp",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "lifetime_too_long",
    "audience_mismatch",
    "insufficient_scope",
    "jwks_unavailable",
    "origin_unreachable",
    "config_invalid",
    "internal_error",
];

/// Proptest configuration for these tests: a fixed seed (reproducible runs) and no regression
/// files written into the source tree.
pub fn prop_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xED6E_3A2D),
        ..proptest::test_runner::Config::default()
    }
}
