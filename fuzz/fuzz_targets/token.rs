//! The token parser and verifier with inline keys: `UnverifiedToken::parse`, `PendingToken`
//! (issuer, `alg` allow-list, key selection) and the native backend, through the pipeline's JWT
//! step as the CLI and the JS package call it (`Gate::verify_inline`, `NativeBackend`), at a
//! fixed `now`, on a gate without a token cache.
//!
//! The policy has two issuers: `https://hs.example` (HS256/384/512, two inline `oct` keys, audience
//! `api`) and `https://ed.example` (EdDSA, one inline Ed25519 key).
//!
//! Input, first byte = mode:
//! - even: the rest is the compact token itself (raw mode);
//! - odd: the harness builds the token. Byte 1 picks the signer (an honest key of the policy, a
//!   key the policy does not hold, or garbage), byte 2 its options (bit 0: header made by the
//!   harness, bit 1: flip one bit of the signature). The rest is `header JSON \0 claims JSON`
//!   (or just the claims when the harness makes the header); both are base64url-encoded and
//!   signed.
//!
//! Checks: no panic; a token not signed by a key of the policy (wrong key, garbage, one flipped
//! bit) never verifies; a verified token agrees with an ordinary (non-strict) JSON reading of its
//! segments — its `alg` and `kid` are the header's, its claims are the payload's, its issuer is the
//! configured one, and every time and audience rule holds at `now`; its signature segment spelled
//! with non-zero padding bits does not verify; verification is deterministic.
#![no_main]

mod common;

use common::{flags, text, NOW};
use ed25519_compact::{KeyPair, Seed};
use edgeward::core::alg::Algorithm;
use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::pipeline::Gate;
use edgeward::core::json::b64url_encode;
use edgeward::core::verify::VerifiedToken;
use hmac::{Mac, SimpleHmac};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const HS_ISS: &str = "https://hs.example";
const ED_ISS: &str = "https://ed.example";
const K1: [u8; 64] = [0x11; 64];
const K2: [u8; 32] = [0x22; 32];
const K_WRONG: [u8; 64] = [0x33; 64];
const LEEWAY: f64 = 60.0;
const MAX_LIFETIME: f64 = 86_400.0;

fn ed_key() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| KeyPair::from_seed(Seed::new([0x44; 32])))
}

fn ed_wrong() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| KeyPair::from_seed(Seed::new([0x55; 32])))
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let doc = json!({
            "issuers": [
                {"issuer": HS_ISS, "algorithms": ["HS256", "HS384", "HS512"], "audiences": ["api"], "jwks": {"keys": [
                    {"kty": "oct", "kid": "h1", "k": b64url_encode(&K1)},
                    {"kty": "oct", "kid": "h2", "alg": "HS256", "k": b64url_encode(&K2)}
                ]}},
                {"issuer": ED_ISS, "algorithms": ["EdDSA"], "jwks": {"keys": [
                    {"kty": "OKP", "crv": "Ed25519", "kid": "e1", "x": b64url_encode(ed_key().pk.as_ref())}
                ]}}
            ],
            "origin": "https://origin.example"
        });
        Policy::from_json(&doc.to_string()).expect("fuzz policy")
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signer {
    Hmac(Algorithm, &'static [u8], &'static str),
    Ed(&'static str),
    WrongHmac(Algorithm),
    WrongEd,
    Garbage,
}

impl Signer {
    fn pick(b: u8) -> Signer {
        match b % 10 {
            0 => Signer::Hmac(Algorithm::HS256, &K1, "h1"),
            1 => Signer::Hmac(Algorithm::HS384, &K1, "h1"),
            2 => Signer::Hmac(Algorithm::HS512, &K1, "h1"),
            3 => Signer::Hmac(Algorithm::HS256, &K2, "h2"),
            4 | 5 => Signer::Ed("e1"),
            6 => Signer::WrongHmac(Algorithm::HS256),
            7 => Signer::WrongHmac(Algorithm::HS512),
            8 => Signer::WrongEd,
            _ => Signer::Garbage,
        }
    }

    fn honest(self) -> bool {
        matches!(self, Signer::Hmac(..) | Signer::Ed(_))
    }

    fn header(self) -> Value {
        match self {
            Signer::Hmac(a, _, kid) => json!({"alg": a.name(), "kid": kid, "typ": "JWT"}),
            Signer::Ed(kid) => json!({"alg": "EdDSA", "kid": kid}),
            Signer::WrongHmac(a) => json!({"alg": a.name(), "kid": "h1"}),
            Signer::WrongEd => json!({"alg": "EdDSA", "kid": "e1"}),
            Signer::Garbage => json!({"alg": "HS256"}),
        }
    }

    fn sign(self, msg: &[u8], garbage: &[u8]) -> Vec<u8> {
        fn mac(a: Algorithm, k: &[u8], msg: &[u8]) -> Vec<u8> {
            match a {
                Algorithm::HS384 => SimpleHmac::<sha2::Sha384>::new_from_slice(k).unwrap().chain_update(msg).finalize().into_bytes().to_vec(),
                Algorithm::HS512 => SimpleHmac::<sha2::Sha512>::new_from_slice(k).unwrap().chain_update(msg).finalize().into_bytes().to_vec(),
                _ => SimpleHmac::<sha2::Sha256>::new_from_slice(k).unwrap().chain_update(msg).finalize().into_bytes().to_vec(),
            }
        }
        match self {
            Signer::Hmac(a, k, _) => mac(a, k, msg),
            Signer::WrongHmac(a) => mac(a, &K_WRONG, msg),
            Signer::Ed(_) => ed_key().sk.sign(msg, None).to_vec(),
            Signer::WrongEd => ed_wrong().sk.sign(msg, None).to_vec(),
            Signer::Garbage => {
                let mut g = garbage.iter().copied().cycle().take(32).collect::<Vec<u8>>();
                g.resize(32, 0);
                g
            }
        }
    }
}

/// Non-strict reading of one segment.
fn lenient(seg: &str) -> Option<Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()
}

fn num(c: &Map<String, Value>, k: &str) -> Option<f64> {
    c.get(k).map(|v| v.as_f64().unwrap_or_else(|| panic!("verified {k} is not a number: {v}")))
}

/// What must hold of every token that verifies.
fn check_verified(token: &str, v: &VerifiedToken) {
    let p = policy();
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    assert!(parts.next().is_none());
    let header = lenient(h).expect("verified header is not JSON");
    let claims = lenient(c).expect("verified claims are not JSON");
    let header = header.as_object().expect("verified header is not an object");
    let claims = claims.as_object().expect("verified claims are not an object");
    // The header as any JSON parser reads it.
    assert_eq!(header.get("alg").and_then(Value::as_str), Some(v.alg().name()), "alg differs from the header's: {token}");
    if let Some(kid) = header.get("kid") {
        assert_eq!(kid.as_str(), v.kid(), "kid differs from the header's: {token}");
    }
    assert!(!header.contains_key("crit") && !header.contains_key("b64") && !header.contains_key("zip"));
    // The claims as any JSON parser reads them.
    assert_eq!(v.claims(), Some(claims), "claims differ from the payload's: {token}");
    let issuer = &p.issuers[v.issuer_index()];
    assert!(issuer.algorithms.contains(&v.alg()), "alg not allowed for the issuer: {token}");
    assert_eq!(claims.get("iss").and_then(Value::as_str), issuer.issuer.as_deref(), "iss: {token}");
    let now = NOW as f64;
    let exp = num(claims, "exp").expect("verified without exp");
    assert!(now < exp + LEEWAY, "expired token verified: {token}");
    if let Some(nbf) = num(claims, "nbf") {
        assert!(nbf <= now + LEEWAY, "nbf in the future: {token}");
    }
    let iat = num(claims, "iat");
    if let Some(iat) = iat {
        assert!(iat <= now + LEEWAY, "iat in the future: {token}");
    }
    assert!(exp - iat.unwrap_or(now) <= MAX_LIFETIME, "lifetime too long: {token}");
    if !issuer.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => issuer.audiences.contains(a),
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str().is_some_and(|x| issuer.audiences.iter().any(|y| y == x))),
            _ => false,
        };
        assert!(ok, "audience not checked: {token}");
    }
    // The signature segment with non-zero padding bits (same bytes to a lax decoder) must fail.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_bits = match s.len() % 4 {
        2 => 4,
        3 => 2,
        _ => 0,
    };
    if unused_bits > 0 {
        let last = s.as_bytes()[s.len() - 1];
        let idx = A.iter().position(|&x| x == last).unwrap();
        let other = A[idx | 1]; // lowest padding bit set
        if other != last {
            let bad = format!("{h}.{c}.{}{}", &s[..s.len() - 1], other as char);
            assert!(uncached(p).verify_inline(&bad, NativeBackend, NOW, false).0.is_err(), "non-canonical signature verified: {bad}");
        }
    }
}

fn verify_and_check(token: &str) -> bool {
    let p = policy();
    let r = uncached(p).verify_inline(token, NativeBackend, NOW, false).0;
    let again = uncached(p).verify_inline(token, NativeBackend, NOW, false).0;
    assert_eq!(r, again, "verification is not deterministic: {token}");
    match r {
        Ok(v) => {
            check_verified(token, &v);
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = flags(data) else { return };
    if mode & 1 == 0 {
        verify_and_check(&text(rest));
        return;
    }
    let (Some(&sb), Some(&opts), body) = (rest.first(), rest.get(1), rest.get(2..).unwrap_or(&[])) else { return };
    let signer = Signer::pick(sb);
    let (header, claims) = if opts & 1 == 1 {
        (signer.header().to_string().into_bytes(), body.to_vec())
    } else {
        match body.iter().position(|&b| b == 0) {
            Some(i) => (body[..i].to_vec(), body[i + 1..].to_vec()),
            None => return,
        }
    };
    let signing_input = format!("{}.{}", b64url_encode(&header), b64url_encode(&claims));
    let mut sig = signer.sign(signing_input.as_bytes(), body);
    let flipped = opts & 2 == 2 && !sig.is_empty();
    if flipped {
        let bit = usize::from(opts >> 2) % (sig.len() * 8);
        sig[bit / 8] ^= 1 << (bit % 8);
    }
    let token = format!("{signing_input}.{}", b64url_encode(&sig));
    let ok = verify_and_check(&token);
    if ok {
        assert!(signer.honest() && !flipped, "a token not signed by a policy key verified ({signer:?}, flipped {flipped}): {token}");
    }
});

/// A gate for `p` whose verified-token cache is off: every call verifies.
fn uncached(p: &Policy) -> Gate {
    let mut p = p.clone();
    p.token_cache.capacity = 0;
    Gate::new(p)
}
