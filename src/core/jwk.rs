//! JSON Web Keys (RFC 7517) as Edgeward uses them: public verification keys, parsed strictly,
//! with the rules on which key may verify which algorithm.

use super::alg::{Algorithm, Curve, KeyFamily};
use super::json::b64url_decode;
use serde_json::{Map, Value};
use std::fmt;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds verification cost; the most any backend takes).
pub const MAX_RSA_BITS: usize = 4096;

/// Where a key set came from. Symmetric keys are only ever taken from inline configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The `jwks` member of the configuration.
    Inline,
    /// Fetched from an issuer's `jwks_uri`.
    Fetched,
}

/// Key material of one JWK.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA public key: big-endian modulus and exponent, leading zeros stripped.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// EC public key with coordinates of exactly the curve's length.
    Ec {
        /// The curve.
        curve: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// Ed25519 public key.
    Ed25519 {
        /// The 32-byte public key.
        x: [u8; 32],
    },
    /// A shared secret (HMAC).
    Oct {
        /// The secret.
        k: Vec<u8>,
    },
}

impl fmt::Debug for KeyMaterial {
    // Never print a secret; public parts are summarized too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            KeyMaterial::Ec { curve, .. } => write!(f, "Ec({})", curve.name()),
            KeyMaterial::Ed25519 { .. } => f.write_str("Ed25519"),
            KeyMaterial::Oct { k } => write!(f, "Oct({} bytes, redacted)", k.len()),
        }
    }
}

impl KeyMaterial {
    /// A short description that never shows key bytes (`RSA 2048 bits`, `EC P-256`, ...).
    pub fn describe(&self) -> String {
        match self {
            KeyMaterial::Rsa { n, .. } => format!("RSA {} bits", n.len() * 8),
            KeyMaterial::Ec { curve, .. } => format!("EC {}", curve.name()),
            KeyMaterial::Ed25519 { .. } => "OKP Ed25519".into(),
            KeyMaterial::Oct { k } => format!("oct, {} bytes", k.len()),
        }
    }

    /// The key family.
    pub fn family(&self) -> KeyFamily {
        match self {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::Ec { curve, .. } => KeyFamily::Ec(*curve),
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
            KeyMaterial::Oct { .. } => KeyFamily::Oct,
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// `alg`, if the key declares one (kept as written; checked against the header).
    pub alg: Option<String>,
    /// `use`, if any.
    pub key_use: Option<String>,
    /// `key_ops`, if any.
    pub key_ops: Option<Vec<String>>,
    /// The key itself.
    pub material: KeyMaterial,
    /// The key's original JSON members (public members only), for backends that import JWKs.
    pub(crate) json: Map<String, Value>,
    /// SHA-256 fingerprint of the key material (`sha256:` + 16 hex digits); identifies the key in
    /// caches and logs without revealing it.
    pub fingerprint: String,
    /// Taken from a message (a DPoP proof's `jwk`), not configuration: used once, never cached
    /// (a client choosing keys could otherwise churn the cache of the issuers' keys).
    pub from_message: bool,
}

impl Jwk {
    /// Why this key may not verify `alg`, or `None` if it fits.
    pub fn misfit(&self, alg: Algorithm) -> Option<&'static str> {
        if self.material.family() != alg.key_family() {
            return Some("key type or curve does not fit alg");
        }
        if let Some(declared) = &self.alg {
            if !alg.matches_declared(declared) {
                return Some("key alg differs from header alg");
            }
        }
        if let Some(u) = &self.key_use {
            if u != "sig" {
                return Some("key use is not sig");
            }
        }
        if let Some(ops) = &self.key_ops {
            if !ops.iter().any(|o| o == "verify") {
                return Some("key_ops lacks verify");
            }
        }
        if let KeyMaterial::Oct { k } = &self.material {
            if k.len() < alg.hash_len() {
                return Some("HMAC key shorter than the hash output");
            }
        }
        None
    }

    /// The JWK as JSON (public members; `k` for inline secrets), for WebCrypto `importKey("jwk")`.
    pub fn to_json(&self) -> &Map<String, Value> {
        &self.json
    }
}

/// A parsed JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// Usable keys, in document order.
    pub keys: Vec<Jwk>,
    /// Keys that were skipped (unsupported type, encryption keys, ...), with the reason.
    pub skipped: Vec<String>,
}

/// Why a JWK Set could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("JWK Set is not a JSON object with a \"keys\" array")]
    NotAKeySet,
    /// A key is malformed (inline sets are strict: one bad key rejects the set).
    #[error("key {index}: {reason}")]
    BadKey {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The set mixes symmetric and asymmetric keys.
    #[error("JWK Set mixes symmetric (oct) and asymmetric keys")]
    MixedSymmetric,
}

impl KeySet {
    /// Parses a JWK Set document.
    ///
    /// Fetched sets are lenient per key (unsupported or malformed keys are skipped and listed, so
    /// one odd key at the issuer does not take the others down); `oct` keys in fetched sets are
    /// always skipped. Inline sets are strict: any bad key is an error.
    pub fn parse(doc: &Value, source: KeySource) -> Result<KeySet, JwksError> {
        let keys = doc.as_object().and_then(|o| o.get("keys")).and_then(Value::as_array).ok_or(JwksError::NotAKeySet)?;
        let mut set = KeySet::default();
        for (index, key) in keys.iter().enumerate() {
            match parse_jwk(key, source) {
                Ok(Some(jwk)) => set.keys.push(jwk),
                Ok(None) => set.skipped.push(format!("key {index}: not a signature key type Edgeward uses")),
                Err(reason) => {
                    if source == KeySource::Inline {
                        return Err(JwksError::BadKey { index, reason });
                    }
                    set.skipped.push(format!("key {index}: {reason}"));
                }
            }
        }
        let sym = set.keys.iter().filter(|k| k.material.family() == KeyFamily::Oct).count();
        if sym > 0 && sym < set.keys.len() {
            return Err(JwksError::MixedSymmetric);
        }
        Ok(set)
    }

    /// True if any key is symmetric.
    pub fn has_symmetric(&self) -> bool {
        self.keys.iter().any(|k| k.material.family() == KeyFamily::Oct)
    }
}

fn opt_str(o: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn b64_member(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = o.get(name).and_then(Value::as_str).ok_or_else(|| format!("\"{name}\" missing or not a string"))?;
    b64url_decode(s).ok_or_else(|| format!("\"{name}\" is not canonical base64url"))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let nz = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    v.drain(..nz);
    v
}

/// Parses one JWK. `Ok(None)`: a well-formed key of a type Edgeward does not verify with.
/// A public key taken from a message rather than configuration (a DPoP proof's `jwk` header):
/// an asymmetric signature key with no private member, under the rules of a fetched key (never
/// `oct`). The error says what is wrong.
pub fn parse_public_jwk(v: &Value) -> Result<Jwk, String> {
    if v.as_object().is_some_and(|o| ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| o.contains_key(*m))) {
        return Err("the key has private members".into());
    }
    let mut key = parse_jwk(v, KeySource::Fetched)?.ok_or_else(|| "not a signature key type Edgeward uses".to_string())?;
    key.from_message = true;
    Ok(key)
}

/// The JWK SHA-256 thumbprint (RFC 7638), base64url: the hash of the key's required members,
/// in lexicographic order, without whitespace.
pub fn thumbprint(key: &Jwk) -> String {
    use sha2::{Digest, Sha256};
    let m = &key.json;
    let s = |name: &str| m.get(name).and_then(Value::as_str).unwrap_or("");
    let canonical = match &key.material {
        KeyMaterial::Rsa { .. } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        KeyMaterial::Ec { .. } => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, s("crv"), s("x"), s("y")),
        KeyMaterial::Ed25519 { .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, s("x")),
        KeyMaterial::Oct { .. } => format!(r#"{{"k":"{}","kty":"oct"}}"#, s("k")),
    };
    super::json::b64url_encode(&Sha256::digest(canonical.as_bytes()))
}

fn parse_jwk(v: &Value, source: KeySource) -> Result<Option<Jwk>, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let kty = opt_str(o, "kty")?.ok_or("\"kty\" missing")?;
    let kid = opt_str(o, "kid")?;
    let alg = opt_str(o, "alg")?;
    let key_use = opt_str(o, "use")?;
    let key_ops = match o.get("key_ops") {
        None => None,
        Some(Value::Array(a)) => Some(a.iter().map(|x| x.as_str().map(str::to_owned).ok_or("\"key_ops\" holds a non-string")).collect::<Result<Vec<_>, _>>()?),
        Some(_) => return Err("\"key_ops\" is not an array".into()),
    };
    let has_private = ["d", "p", "q", "dp", "dq", "qi"].iter().any(|m| o.contains_key(*m));
    let material = match kty.as_str() {
        "RSA" => {
            if has_private {
                return Err("RSA key contains private members".into());
            }
            let n = strip_leading_zeros(b64_member(o, "n")?);
            let e = strip_leading_zeros(b64_member(o, "e")?);
            let bits = match n.first() {
                Some(b) => n.len() * 8 - b.leading_zeros() as usize,
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA modulus of {bits} bits is below {MIN_RSA_BITS}"));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!("RSA modulus of {bits} bits is above {MAX_RSA_BITS}"));
            }
            // 65537 is what every issuer uses and the only exponent every backend accepts.
            if e != [0x01, 0x00, 0x01] {
                return Err("RSA exponent must be 65537".into());
            }
            KeyMaterial::Rsa { n, e }
        }
        "EC" => {
            if has_private {
                return Err("EC key contains private members".into());
            }
            let crv = opt_str(o, "crv")?.ok_or("\"crv\" missing")?;
            let Some(curve) = Curve::from_name(&crv) else {
                return Ok(None);
            };
            let x = b64_member(o, "x")?;
            let y = b64_member(o, "y")?;
            if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                return Err(format!("{crv} coordinates must be {} bytes", curve.coordinate_len()));
            }
            KeyMaterial::Ec { curve, x, y }
        }
        "OKP" => {
            if has_private {
                return Err("OKP key contains private members".into());
            }
            let crv = opt_str(o, "crv")?.ok_or("\"crv\" missing")?;
            if crv != "Ed25519" {
                return Ok(None); // X25519, Ed448: not used here
            }
            let x: [u8; 32] = b64_member(o, "x")?.try_into().map_err(|_| "Ed25519 \"x\" must be 32 bytes".to_string())?;
            KeyMaterial::Ed25519 { x }
        }
        "oct" => {
            if source == KeySource::Fetched {
                return Err("symmetric (oct) keys are never taken from a fetched JWKS".into());
            }
            let k = b64_member(o, "k")?;
            if k.is_empty() {
                return Err("empty oct key".into());
            }
            KeyMaterial::Oct { k }
        }
        _ => return Ok(None),
    };
    if let Some(a) = &alg {
        // A declared alg we do not support makes the key unusable (RSA-OAEP for encryption, ...).
        if Algorithm::from_name(a).is_none() {
            return Ok(None);
        }
    }
    let public: Map<String, Value> =
        o.iter().filter(|(k, _)| matches!(k.as_str(), "kty" | "crv" | "n" | "e" | "x" | "y" | "k")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let fingerprint = super::log::fingerprint(serde_json::to_string(&public).unwrap_or_default().as_bytes());
    Ok(Some(Jwk { kid, alg, key_use, key_ops, material, json: public, fingerprint, from_message: false }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::b64url_encode;
    use serde_json::json;

    fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xffu8; bits / 8];
        n[0] = 0xc1;
        b64url_encode(&n)
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = parse_public_jwk(&json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})).unwrap();
        assert_eq!(thumbprint(&key), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        // Members other than the required ones do not count.
        let bare = parse_public_jwk(&json!({"e": "AQAB", "kty": "RSA", "n": n})).unwrap();
        assert_eq!(thumbprint(&bare), thumbprint(&key));
    }

    #[test]
    fn public_jwk_from_a_message() {
        assert!(parse_public_jwk(&json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"})).is_err());
        let mut ec = json!({"kty": "EC", "crv": "P-256", "x": b64url_encode(&[1u8; 32]), "y": b64url_encode(&[2u8; 32])});
        assert!(parse_public_jwk(&ec).is_ok());
        ec["d"] = json!(b64url_encode(&[3u8; 32]));
        assert_eq!(parse_public_jwk(&ec).unwrap_err(), "the key has private members");
        assert!(parse_public_jwk(&json!({"kty": "OKP", "crv": "X25519", "x": b64url_encode(&[1u8; 32])})).is_err());
    }

    #[test]
    fn rsa_below_2048_bits_is_rejected() {
        let doc = json!({"keys":[{"kty":"RSA","n":rsa_n(1024),"e":"AQAB"}]});
        assert!(matches!(KeySet::parse(&doc, KeySource::Inline), Err(JwksError::BadKey { .. })));
        let fetched = KeySet::parse(&doc, KeySource::Fetched).unwrap();
        assert!(fetched.keys.is_empty());
        assert!(fetched.skipped[0].contains("below 2048"));
        let ok = json!({"keys":[{"kty":"RSA","n":rsa_n(2048),"e":"AQAB"}]});
        assert_eq!(KeySet::parse(&ok, KeySource::Inline).unwrap().keys.len(), 1);
    }

    #[test]
    fn oct_only_inline_and_never_mixed() {
        let k = b64url_encode(&[7u8; 32]);
        let doc = json!({"keys":[{"kty":"oct","k":k}]});
        assert_eq!(KeySet::parse(&doc, KeySource::Inline).unwrap().keys.len(), 1);
        let f = KeySet::parse(&doc, KeySource::Fetched).unwrap();
        assert!(f.keys.is_empty() && f.skipped[0].contains("never taken from a fetched"));
        let mixed = json!({"keys":[{"kty":"oct","k":k},{"kty":"RSA","n":rsa_n(2048),"e":"AQAB"}]});
        assert_eq!(KeySet::parse(&mixed, KeySource::Inline), Err(JwksError::MixedSymmetric));
    }

    #[test]
    fn ec_coordinates_must_have_exact_length() {
        let x = b64url_encode(&[1u8; 32]);
        let short = b64url_encode(&[1u8; 31]);
        let good = json!({"keys":[{"kty":"EC","crv":"P-256","x":x,"y":x}]});
        assert_eq!(KeySet::parse(&good, KeySource::Inline).unwrap().keys.len(), 1);
        let bad = json!({"keys":[{"kty":"EC","crv":"P-256","x":x,"y":short}]});
        assert!(KeySet::parse(&bad, KeySource::Inline).is_err());
    }

    #[test]
    fn private_members_and_unknown_types() {
        let x = b64url_encode(&[1u8; 32]);
        let private = json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":x,"d":x}]});
        assert!(KeySet::parse(&private, KeySource::Inline).is_err());
        let other = json!({"keys":[{"kty":"OKP","crv":"X25519","x":x},{"kty":"RSA","alg":"RSA-OAEP","n":rsa_n(2048),"e":"AQAB"}]});
        let s = KeySet::parse(&other, KeySource::Fetched).unwrap();
        assert!(s.keys.is_empty());
        assert_eq!(s.skipped.len(), 2);
        assert_eq!(KeySet::parse(&json!({"nokeys":[]}), KeySource::Fetched), Err(JwksError::NotAKeySet));
    }

    #[test]
    fn misfit_rules() {
        let x = b64url_encode(&[1u8; 32]);
        let doc = json!({"keys":[{"kty":"EC","crv":"P-256","x":x,"y":x,"use":"enc"}]});
        let key = &KeySet::parse(&doc, KeySource::Inline).unwrap().keys[0];
        assert_eq!(key.misfit(Algorithm::ES384), Some("key type or curve does not fit alg"));
        assert_eq!(key.misfit(Algorithm::ES256), Some("key use is not sig"));
        let doc = json!({"keys":[{"kty":"EC","crv":"P-256","x":x,"y":x,"key_ops":["sign"]}]});
        let key = &KeySet::parse(&doc, KeySource::Inline).unwrap().keys[0];
        assert_eq!(key.misfit(Algorithm::ES256), Some("key_ops lacks verify"));
        let doc = json!({"keys":[{"kty":"oct","k":b64url_encode(&[1u8; 32]),"alg":"HS256"}]});
        let key = &KeySet::parse(&doc, KeySource::Inline).unwrap().keys[0];
        assert_eq!(key.misfit(Algorithm::HS256), None);
        assert_eq!(key.misfit(Algorithm::HS512), Some("key alg differs from header alg"));
        assert!(format!("{:?}", key.material).contains("redacted"));
    }
}
