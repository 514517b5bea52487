//! The key format: `ew_<env>_<body><checksum>` (see [the module](super)), its offline check
//! ([`PresentedKey::parse`]), key generation, key ids, and the keyed hash that is stored.

use crate::core::error::FormatError;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The regular expression a secret scanner can use to find Edgeward keys.
pub const KEY_PATTERN: &str = r"\bew_(?:live|test)_[0-9A-Za-z]{38}\b";
/// Base62 characters of random body.
pub const BODY_LEN: usize = 32;
/// Base62 digits of checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Random bytes [`generate`] needs (more than the body: bytes ≥ 248 are skipped so every
/// character is uniform).
pub const RANDOM_BYTES: usize = 64;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key belongs to; a deployment accepts only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEnv {
    /// `ew_live_`.
    Live,
    /// `ew_test_`.
    Test,
}

impl KeyEnv {
    /// The key prefix, `ew_live_` or `ew_test_`.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyEnv::Live => "ew_live_",
            KeyEnv::Test => "ew_test_",
        }
    }
}

/// A presented key whose format and checksum are right. Nothing is known about whether it exists.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    text: &'a str,
    env: KeyEnv,
}

impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresentedKey({:?}, {})", self.env, crate::core::log::fingerprint(self.text.as_bytes()))
    }
}

impl<'a> PresentedKey<'a> {
    /// Checks prefix, shape and checksum (and, when given, the environment), offline.
    pub fn parse(text: &'a str, expected: Option<KeyEnv>) -> Result<PresentedKey<'a>, FormatError> {
        let env = if text.starts_with(KeyEnv::Live.prefix()) {
            KeyEnv::Live
        } else if text.starts_with(KeyEnv::Test.prefix()) {
            KeyEnv::Test
        } else {
            return Err(FormatError::Prefix);
        };
        let rest = &text[env.prefix().len()..];
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormatError::Shape);
        }
        let (signed, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum(signed).as_bytes().ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
            return Err(FormatError::Checksum);
        }
        if expected.is_some_and(|e| e != env) {
            return Err(FormatError::Environment);
        }
        Ok(PresentedKey { text, env })
    }

    /// The key's environment.
    pub fn env(&self) -> KeyEnv {
        self.env
    }

    /// The key text (never log it; log [`crate::core::log::fingerprint`] of it).
    pub fn as_str(&self) -> &'a str {
        self.text
    }
}

/// CRC-32 (ISO-HDLC, as zlib and GitHub's tokens) with a 1 KB table: the default 16 KB
/// slice-by-16 table would cost the Worker bundle more than the key check gains.
const CRC32: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

/// CRC32 of `signed` as 6 base62 digits (62^6 > 2^32), most significant first.
fn checksum(signed: &str) -> String {
    let mut v = u64::from(CRC32.checksum(signed.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Makes a new key of `env` from `random` (from the CSPRNG). `None` in the astronomically
/// unlikely case that too many bytes were skipped; call again with fresh bytes.
pub fn generate(env: KeyEnv, random: &[u8; RANDOM_BYTES]) -> Option<String> {
    let mut body = String::with_capacity(BODY_LEN);
    // 248 = 4 × 62: bytes below it map uniformly onto the alphabet.
    for &b in random.iter().filter(|&&b| b < 248).take(BODY_LEN) {
        body.push(ALPHABET[usize::from(b % 62)] as char);
    }
    if body.len() < BODY_LEN {
        return None;
    }
    let signed = format!("{}{body}", env.prefix());
    let sum = checksum(&signed);
    Some(signed + &sum)
}

/// A key id: `key_` and 24 hex digits from `random`. Safe to log and to show.
pub fn key_id(random: &[u8; 12]) -> String {
    format!("key_{}", hex::encode(random))
}

/// The keyed hash stored for a key: HMAC-SHA-256 under the pepper.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lower-case hex (the storage key).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let v = hex::decode(s).ok()?;
        Some(KeyHash(v.try_into().ok()?))
    }
    /// Constant-time equality (the stored hash against the presented key's).
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({}…)", &self.hex()[..12])
    }
}

/// `HMAC-SHA-256(pepper, key)`. (`None` cannot happen — HMAC takes keys of any length — but
/// if it did, callers fail closed rather than hash every key to one value.)
pub fn key_hash(pepper: &[u8], key: &PresentedKey<'_>) -> Option<KeyHash> {
    use hmac::{Mac, SimpleHmac};
    // SimpleHmac over the same SHA-256 the rest of the crate links (no second implementation).
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(pepper).ok()?;
    mac.update(key.as_str().as_bytes());
    Some(KeyHash(mac.finalize().into_bytes().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_the_pattern_shape() {
        let k = generate(KeyEnv::Test, &[7u8; RANDOM_BYTES]).unwrap();
        assert!(k.starts_with("ew_test_"));
        assert_eq!(k.len(), 8 + BODY_LEN + CHECKSUM_LEN);
        assert_eq!(PresentedKey::parse(&k, Some(KeyEnv::Test)).unwrap().env(), KeyEnv::Test);
        assert_eq!(PresentedKey::parse(&k, Some(KeyEnv::Live)), Err(FormatError::Environment));
    }

    #[test]
    fn too_many_skipped_bytes_yield_none() {
        assert_eq!(generate(KeyEnv::Live, &[250u8; RANDOM_BYTES]), None);
    }
}
