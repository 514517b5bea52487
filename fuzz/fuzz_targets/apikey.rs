//! The API-key format check, `apikey::PresentedKey::parse` (prefix, shape, CRC-32 checksum,
//! environment), with `generate`, `is_key_id` and `KeyHash::from_hex` alongside.
//!
//! Input, first byte = mode:
//! - even: the rest is the presented key text;
//! - odd: the rest (at least 64 bytes) is the CSPRNG output given to `generate`; the generated key
//!   is then altered in one character at a position and to a character chosen from the input.
//!
//! Checks: no panic; an accepted key matches `ew_(live|test)_[0-9A-Za-z]{38}` and is accepted for
//! its own environment only; every generated key parses, for its environment; a key with any
//! one character changed (to anything) is refused; the other small parsers round-trip.
#![no_main]

mod common;

use common::{flags, text, Rng};
use edgeward::core::apikey::{generate, is_key_id, key_id, KeyEnv, KeyHash, PresentedKey, BODY_LEN, CHECKSUM_LEN, RANDOM_BYTES};
use edgeward::core::error::FormatError;
use libfuzzer_sys::fuzz_target;

fn shape_ok(s: &str) -> bool {
    let rest = s.strip_prefix("ew_live_").or_else(|| s.strip_prefix("ew_test_"));
    rest.is_some_and(|r| r.len() == BODY_LEN + CHECKSUM_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn check_presented(s: &str) {
    match PresentedKey::parse(s, None) {
        Ok(k) => {
            assert!(shape_ok(s), "accepted a key of the wrong shape: {s:?}");
            assert_eq!(k.as_str(), s);
            let env = k.env();
            assert_eq!(s.starts_with("ew_live_"), env == KeyEnv::Live);
            assert!(PresentedKey::parse(s, Some(env)).is_ok());
            let other = if env == KeyEnv::Live { KeyEnv::Test } else { KeyEnv::Live };
            assert_eq!(PresentedKey::parse(s, Some(other)), Err(FormatError::Environment), "{s:?}");
        }
        Err(FormatError::Prefix) => assert!(!s.starts_with("ew_live_") && !s.starts_with("ew_test_")),
        Err(FormatError::Shape) => assert!(!shape_ok(s)),
        Err(FormatError::Checksum) => assert!(shape_ok(s)),
        Err(FormatError::Environment) => panic!("environment error without an expected environment"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = flags(data) else { return };
    if mode & 1 == 0 {
        let s = text(rest);
        check_presented(&s);
        // The small parsers beside it.
        if let Some(h) = KeyHash::from_hex(&s) {
            assert_eq!(h.hex(), s.to_ascii_lowercase());
        }
        if is_key_id(&s) {
            let raw: [u8; 12] = hex_decode(&s[4..]).try_into().unwrap();
            assert_eq!(key_id(&raw), s.as_ref());
        }
        return;
    }
    if rest.len() < RANDOM_BYTES {
        return;
    }
    let random: [u8; RANDOM_BYTES] = rest[..RANDOM_BYTES].try_into().unwrap();
    let env = if mode & 2 == 0 { KeyEnv::Live } else { KeyEnv::Test };
    let Some(key) = generate(env, &random) else {
        assert!(random.iter().filter(|&&b| b < 248).count() < BODY_LEN, "generate gave up with enough usable bytes");
        return;
    };
    assert!(shape_ok(&key), "generated key of the wrong shape: {key:?}");
    assert_eq!(PresentedKey::parse(&key, Some(env)).map(|k| k.env()), Ok(env), "generated key refused: {key:?}");
    let is_id = key_id(&random[..12].try_into().unwrap());
    assert!(is_key_id(&is_id));
    // One character changed, anywhere, to anything else: refused.
    let mut rng = Rng::from_bytes(data);
    let tail = &rest[RANDOM_BYTES..];
    let pos = tail.first().map_or_else(|| rng.below(key.len()), |&b| usize::from(b) % key.len());
    let orig = key.as_bytes()[pos];
    let mut ch = tail
        .get(1)
        .copied()
        .map_or_else(|| char::from(rng.next() as u8 & 0x7f), |b| if b < 0x80 { char::from(b) } else { char::from_u32(0x80 + u32::from(b)).unwrap() });
    if ch == char::from(orig) {
        ch = if orig == b'a' { 'b' } else { 'a' };
    }
    let mut altered = String::with_capacity(key.len() + 2);
    altered.push_str(&key[..pos]);
    altered.push(ch);
    altered.push_str(&key[pos + 1..]);
    let r = PresentedKey::parse(&altered, None);
    assert!(r.is_err(), "key with one character changed accepted: {key:?} -> {altered:?}");
    check_presented(&altered);
});

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
