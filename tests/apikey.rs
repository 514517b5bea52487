//! Host tests of the API-key core (issue 8) on a fixed `now`: the key format and its checksum,
//! client ranges, the record check (validity, rotation overlap, IP allow-list), the peppered
//! hash, admin input validation, the wire rejections, the request side (finding the key,
//! planning the origin request), the configuration, rate-limit buckets and revocation.

#![allow(clippy::type_complexity)] // test tables are tuples

mod common;

use common::*;
use edgeward::core::access::{Accepts, Requirement};
use edgeward::core::alg::Algorithm::EdDSA;
use edgeward::core::apikey::{
    generate, hash_storage_key, id_storage_key, is_key_id, key_hash, key_id, Cidr, KeyEnv, KeyHash, KeyRecord, KeySecret, KeyStatus, NewKey, PresentedKey,
    VerifiedApiKey, BODY_LEN, CHECKSUM_LEN, ID_PREFIX, KEY_PATTERN, RANDOM_BYTES,
};
use edgeward::core::canonical::client_ip;
use edgeward::core::config::Policy;
use edgeward::core::error::{ApiKeyFailure, AuthError, FormatError, Side};
use edgeward::core::identity::Identity;
use edgeward::core::log::{fingerprint, CredentialSource};
use edgeward::core::ratelimit::{Bucket, Quota};
use edgeward::core::request::{extract_credential, plan_forward, RequestView};
use edgeward::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target, TokenFacts};
use edgeward::core::verify::VerifiedToken;
use serde_json::{json, Value};
use std::net::IpAddr;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PEPPER: &[u8] = b"test-pepper-0123456789abcdef";
const KEY_LEN: usize = 8 + BODY_LEN + CHECKSUM_LEN;
const ALL_FAILURES: [ApiKeyFailure; 6] =
    [ApiKeyFailure::Unknown, ApiKeyFailure::Disabled, ApiKeyFailure::Expired, ApiKeyFailure::NotYetValid, ApiKeyFailure::RotatedOut, ApiKeyFailure::Revoked];
const ALL_FORMAT_ERRORS: [FormatError; 4] = [FormatError::Prefix, FormatError::Shape, FormatError::Checksum, FormatError::Environment];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Deterministic "CSPRNG" bytes (splitmix64) for `generate`.
fn random_bytes<const N: usize>(seed: u64) -> [u8; N] {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn gen(env: KeyEnv, seed: u64) -> String {
    generate(env, &random_bytes::<RANDOM_BYTES>(seed)).expect("enough usable random bytes")
}

fn live_key(seed: u64) -> String {
    gen(KeyEnv::Live, seed)
}

fn hash_of(key: &str) -> KeyHash {
    key_hash(PEPPER, &PresentedKey::parse(key, None).expect("a well-formed key")).expect("hmac")
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every match of `KEY_PATTERN` (`\bew_(?:live|test)_[0-9A-Za-z]{38}\b`) in `text`, by hand (no
/// regex crate among the dependencies).
fn pattern_matches(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary_before = i == 0 || !is_word(b[i - 1]);
        let rest = &b[i..];
        if boundary_before && (rest.starts_with(b"ew_live_") || rest.starts_with(b"ew_test_")) {
            let body = &rest[8..];
            let end = i + 8 + 38;
            if body.len() >= 38 && body[..38].iter().all(u8::is_ascii_alphanumeric) && (end == b.len() || !is_word(b[end])) {
                out.push(&text[i..end]);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// A record holding `hashes` as its secrets (oldest first), active, live, no limits.
fn record(hashes: &[&KeyHash]) -> KeyRecord {
    KeyRecord {
        id: key_id(&[0xAB; 12]),
        owner: "acme-billing".into(),
        description: "billing service".into(),
        scopes: vec!["read".into(), "write".into()],
        tier: Some("gold".into()),
        allowed_ips: vec![],
        not_before: None,
        expires_at: None,
        status: KeyStatus::Active,
        env: KeyEnv::Live,
        created_at: NOW - 10_000,
        secrets: hashes.iter().map(|h| KeySecret { hash: h.hex(), created_at: NOW - 10_000, not_after: None }).collect(),
    }
}

fn failure(r: Result<VerifiedApiKey, AuthError>) -> Option<ApiKeyFailure> {
    match r {
        Err(AuthError::ApiKeyInvalid(f)) => Some(f),
        Err(other) => panic!("expected ApiKeyInvalid, got {other:?}"),
        Ok(_) => None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("test address {s:?}"))
}

/// A key that passed `KeyRecord::check` (the only way to make one).
fn verified_key(id_seed: u8, owner: &str, scopes: &[&str], tier: Option<&str>) -> VerifiedApiKey {
    let k = live_key(u64::from(id_seed) + 1000);
    let h = hash_of(&k);
    let mut r = record(&[&h]);
    r.id = key_id(&[id_seed; 12]);
    r.owner = owner.into();
    r.scopes = scopes.iter().map(|s| s.to_string()).collect();
    r.tier = tier.map(str::to_owned);
    r.check(&h, KeyEnv::Live, NOW, None).expect("valid key")
}

fn base_doc() -> Value {
    config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![key(EdDSA).jwk("k", json!({}))])])
}

fn doc_with(patch: Value) -> Value {
    with(base_doc(), patch)
}

fn config_err(doc: &Value) -> (String, String) {
    let e = Policy::from_json(&doc.to_string()).expect_err("config must be refused");
    (e.field, e.message)
}

fn jwt(p: &Policy, extra: Value) -> VerifiedToken {
    let t = key(EdDSA).sign(Some("k"), &with(claims(), extra));
    verify(p, &t).expect("test token verifies")
}

fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn view<'a>(path: &'a str, headers: &'a [(String, String)]) -> RequestView<'a> {
    RequestView { method: "GET", path, query: "", headers, client_ip: None, origin: "https://edge.example" }
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// HMAC-SHA-256 written out from RFC 2104 over `sha2`, to check `key_hash` independently.
fn reference_hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
}

// ---------------------------------------------------------------------------------------------
// 1. Format
// ---------------------------------------------------------------------------------------------

#[test]
fn generated_keys_have_the_documented_shape_for_both_environments() {
    assert_eq!(KEY_PATTERN, r"\bew_(?:live|test)_[0-9A-Za-z]{38}\b");
    assert_eq!(BODY_LEN + CHECKSUM_LEN, 38, "the pattern's {{38}} is body + checksum");
    for env in [KeyEnv::Live, KeyEnv::Test] {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200u64 {
            let k = gen(env, seed);
            assert_eq!(k, gen(env, seed), "deterministic in its random input");
            assert!(k.starts_with(env.prefix()), "{k}");
            assert_eq!(k.len(), KEY_LEN, "{k}");
            assert!(k[8..].bytes().all(|b| ALPHABET.contains(&b)), "{k}");
            assert_eq!(pattern_matches(&k), vec![k.as_str()], "the whole key matches KEY_PATTERN");
            let embedded = format!("config: token=\"{k}\";\n");
            assert_eq!(pattern_matches(&embedded), vec![k.as_str()], "a scanner finds it in text");
            let p = PresentedKey::parse(&k, Some(env)).expect("generated keys parse");
            assert_eq!(p.env(), env);
            assert_eq!(p.as_str(), k);
            assert_eq!(PresentedKey::parse(&k, None).unwrap().env(), env);
            assert!(!format!("{p:?}").contains(&k[8..]), "Debug never shows the key");
            assert!(seen.insert(k), "different random inputs give different keys");
        }
    }
    assert_eq!(KeyEnv::Live.prefix(), "ew_live_");
    assert_eq!(KeyEnv::Test.prefix(), "ew_test_");
}

#[test]
fn key_pattern_matcher_respects_word_boundaries() {
    let k = live_key(1);
    assert!(pattern_matches(&format!("x{k}")).is_empty(), "no boundary before");
    assert!(pattern_matches(&format!("{k}A")).is_empty(), "39 alphanumerics: no boundary after");
    assert!(pattern_matches(&format!("{k}_")).is_empty(), "_ is a word character");
    assert_eq!(pattern_matches(&format!("-{k}-")).len(), 1);
    assert!(pattern_matches(&k[..KEY_LEN - 1]).is_empty(), "37 characters");
    assert!(pattern_matches(&k.replace("ew_live_", "ew_prod_")).is_empty());
}

#[test]
fn generate_maps_bytes_below_248_onto_the_alphabet_and_skips_the_rest() {
    // 248 = 4 × 62: byte v becomes ALPHABET[v % 62]; 248..=255 are skipped.
    for v in 0u8..248 {
        let mut r = [0u8; RANDOM_BYTES];
        r[0] = 255;
        r[1] = 248;
        r[2] = v;
        let k = generate(KeyEnv::Live, &r).unwrap();
        assert_eq!(k.as_bytes()[8], ALPHABET[usize::from(v % 62)], "byte {v}");
        assert_eq!(&k[9..8 + BODY_LEN], "0".repeat(BODY_LEN - 1), "zeros after it");
    }
    // Exactly BODY_LEN usable bytes is enough; one fewer is not.
    let mut r = [250u8; RANDOM_BYTES];
    r[RANDOM_BYTES - BODY_LEN..].fill(1);
    let k = generate(KeyEnv::Test, &r).expect("32 usable bytes");
    assert_eq!(&k[8..8 + BODY_LEN], "1".repeat(BODY_LEN));
    assert!(PresentedKey::parse(&k, Some(KeyEnv::Test)).is_ok());
    r[RANDOM_BYTES - BODY_LEN] = 248;
    assert_eq!(generate(KeyEnv::Test, &r), None, "31 usable bytes");
    assert_eq!(generate(KeyEnv::Live, &[255u8; RANDOM_BYTES]), None);
}

#[test]
fn parse_errors_are_classified() {
    let live = live_key(7);
    let test = gen(KeyEnv::Test, 7);
    let body = &live[8..];
    let mut bad_checksum = live.clone().into_bytes();
    bad_checksum[10] = if bad_checksum[10] == b'A' { b'B' } else { b'A' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    // Two one-byte characters replaced by one two-byte character: same byte length.
    let utf8_same_len = format!("ew_live_é{}", &body[2..]);
    assert_eq!(utf8_same_len.len(), KEY_LEN);
    let table: Vec<(&str, String, Option<KeyEnv>, Result<KeyEnv, FormatError>)> = vec![
        ("live ok", live.clone(), Some(KeyEnv::Live), Ok(KeyEnv::Live)),
        ("test ok", test.clone(), Some(KeyEnv::Test), Ok(KeyEnv::Test)),
        ("any env", test.clone(), None, Ok(KeyEnv::Test)),
        ("empty", String::new(), None, Err(FormatError::Prefix)),
        ("prefix only", "ew_live_".into(), None, Err(FormatError::Shape)),
        ("no env", format!("ew_{body}"), None, Err(FormatError::Prefix)),
        ("upper-case prefix", format!("EW_LIVE_{body}"), None, Err(FormatError::Prefix)),
        ("other env name", format!("ew_prod_{body}"), None, Err(FormatError::Prefix)),
        ("dashes", format!("ew-live-{body}"), None, Err(FormatError::Prefix)),
        ("leading space", format!(" {live}"), None, Err(FormatError::Prefix)),
        ("bearer-looking", "eyJhbGciOiJFZERTQSJ9.e30.sig".into(), None, Err(FormatError::Prefix)),
        ("one short", live[..KEY_LEN - 1].to_string(), None, Err(FormatError::Shape)),
        ("one long", format!("{live}0"), None, Err(FormatError::Shape)),
        ("trailing newline", format!("{live}\n"), None, Err(FormatError::Shape)),
        ("trailing space", format!("{live} "), None, Err(FormatError::Shape)),
        ("dash in body", format!("ew_live_-{}", &body[1..]), None, Err(FormatError::Shape)),
        ("underscore in body", format!("ew_live__{}", &body[1..]), None, Err(FormatError::Shape)),
        ("multi-byte char, same byte length", utf8_same_len, None, Err(FormatError::Shape)),
        ("checksum", bad_checksum.clone(), None, Err(FormatError::Checksum)),
        // The checksum is checked before the environment.
        ("checksum before environment", bad_checksum, Some(KeyEnv::Test), Err(FormatError::Checksum)),
        ("test key at a live edge", test.clone(), Some(KeyEnv::Live), Err(FormatError::Environment)),
        ("live key at a test edge", live.clone(), Some(KeyEnv::Test), Err(FormatError::Environment)),
        // The checksum covers the prefix: the same body and checksum under the other prefix fail.
        ("prefix swapped", format!("ew_test_{body}"), None, Err(FormatError::Checksum)),
    ];
    for (name, text, env, want) in table {
        let got = PresentedKey::parse(&text, env).map(|p| p.env());
        assert_eq!(got, want, "{name}: {text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Checksum
// ---------------------------------------------------------------------------------------------

#[test]
fn every_single_character_substitution_is_rejected() {
    let extra: &[u8] = b"-_.+/= ~!\"#$%&'()*,:;<>?@[\\]^`{|}\0\t\n\x7f\x80\xff";
    let mut checked = 0usize;
    for seed in 0..12u64 {
        let env = if seed % 2 == 0 { KeyEnv::Live } else { KeyEnv::Test };
        let k = gen(env, seed);
        let orig = k.as_bytes();
        for pos in 0..orig.len() {
            for &c in ALPHABET.iter().chain(extra) {
                if c == orig[pos] {
                    continue;
                }
                let mut m = orig.to_vec();
                m[pos] = c;
                // Bytes ≥ 0x80 alone are not UTF-8: such text cannot reach the parser as &str.
                let Ok(text) = String::from_utf8(m) else { continue };
                let got = PresentedKey::parse(&text, None);
                let want = if pos < 8 {
                    FormatError::Prefix
                } else if c.is_ascii_alphanumeric() {
                    FormatError::Checksum
                } else {
                    FormatError::Shape
                };
                assert_eq!(got.map(|p| p.env()), Err(want), "seed {seed}, position {pos}, {:?} -> {:?}", orig[pos] as char, c as char);
                checked += 1;
            }
        }
        // Substitutions by a multi-byte character (changes the byte length).
        for pos in 8..orig.len() {
            let text = format!("{}é{}", &k[..pos], &k[pos + 1..]);
            assert_eq!(PresentedKey::parse(&text, None).map(|p| p.env()), Err(FormatError::Shape));
        }
    }
    assert!(checked > 12 * KEY_LEN * 61, "{checked} substitutions checked");
}

#[test]
fn adjacent_transpositions_in_body_and_checksum_are_rejected() {
    let mut checked = 0usize;
    for seed in 100..140u64 {
        let k = live_key(seed);
        let b = k.as_bytes();
        for i in 8..b.len() - 1 {
            if b[i] == b[i + 1] {
                continue;
            }
            let mut m = b.to_vec();
            m.swap(i, i + 1);
            let text = String::from_utf8(m).unwrap();
            assert_eq!(PresentedKey::parse(&text, None).map(|p| p.env()), Err(FormatError::Checksum), "seed {seed}, swap {i}/{}", i + 1);
            checked += 1;
        }
    }
    assert!(checked > 40 * 30, "{checked}");
}

#[test]
fn made_up_keys_fail_the_checksum() {
    // A body and checksum drawn at random (not computed) pass with probability 62^-6 (or 2^-32).
    for seed in 0..5_000u64 {
        let r = random_bytes::<38>(seed ^ 0x5EED);
        let tail: String = r.iter().map(|b| ALPHABET[usize::from(b % 62)] as char).collect();
        let text = format!("ew_live_{tail}");
        assert_eq!(PresentedKey::parse(&text, None).map(|p| p.env()), Err(FormatError::Checksum), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. CIDR
// ---------------------------------------------------------------------------------------------

#[test]
fn cidr_containment_at_the_edges() {
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "203.0.113.0/24",
            &["203.0.113.0", "203.0.113.255", "::ffff:203.0.113.5"],
            &["203.0.112.255", "203.0.114.0", "::ffff:203.0.114.5", "::203.0.113.5", "2001:db8::1"],
        ),
        ("0.0.0.0/0", &["0.0.0.0", "255.255.255.255", "10.1.2.3", "::ffff:1.2.3.4"], &["2001:db8::1", "::1"]),
        ("198.51.100.7/32", &["198.51.100.7", "::ffff:198.51.100.7"], &["198.51.100.6", "198.51.100.8"]),
        ("128.0.0.0/1", &["128.0.0.0", "255.255.255.255"], &["127.255.255.255", "0.0.0.0"]),
        ("0.0.0.0/1", &["0.0.0.0", "127.255.255.255"], &["128.0.0.0"]),
        ("192.0.2.4/31", &["192.0.2.4", "192.0.2.5"], &["192.0.2.3", "192.0.2.6"]),
        ("2001:db8::/32", &["2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"], &["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "203.0.113.5"]),
        ("::/0", &["::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1"], &["203.0.113.5"]),
        ("2001:db8::1/128", &["2001:db8::1"], &["2001:db8::", "2001:db8::2"]),
        ("2001:db8::2/127", &["2001:db8::2", "2001:db8::3"], &["2001:db8::1", "2001:db8::4"]),
        ("8000::/1", &["8000::", "ffff::1"], &["7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1"]),
        ("::/1", &["::", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], &["8000::"]),
        // Bare addresses are host routes.
        ("203.0.113.5", &["203.0.113.5", "::ffff:203.0.113.5"], &["203.0.113.4", "203.0.113.6"]),
        ("2001:db8::7", &["2001:db8::7"], &["2001:db8::6", "2001:db8::8"]),
        ("  10.0.0.0/8 ", &["10.255.255.255"], &["11.0.0.0"]),
    ];
    for (cidr, inside, outside) in table {
        let c = Cidr::parse(cidr).unwrap_or_else(|| panic!("{cidr:?} parses"));
        for a in *inside {
            assert!(c.contains(ip(a)), "{cidr} should contain {a}");
        }
        for a in *outside {
            assert!(!c.contains(ip(a)), "{cidr} should not contain {a}");
        }
    }
}

#[test]
fn cidr_display_normalizes() {
    for (input, shown) in [
        ("203.0.113.5", "203.0.113.5/32"),
        ("2001:DB8::1", "2001:db8::1/128"),
        ("2001:0db8:0000::/32", "2001:db8::/32"),
        (" 10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ] {
        assert_eq!(Cidr::parse(input).map(|c| c.to_string()).as_deref(), Some(shown), "{input}");
    }
}

#[test]
fn cidr_refuses_invalid_text_and_host_bits() {
    for s in [
        "",
        " ",
        "not-an-ip",
        "203.0.113.0/33",
        "2001:db8::/129",
        "203.0.113.0/",
        "/24",
        "203.0.113.0/24/1",
        "203.0.113.0/-1",
        "203.0.113.0/ 24",
        "256.0.0.1",
        "203.0.113",
        "203.0.113.0/24x",
        "2001:db8:::/32",
        "example.com",
        // Non-zero host bits are ambiguous.
        "10.0.0.1/8",
        "203.0.113.1/24",
        "192.0.2.5/31",
        "128.0.0.1/1",
        "0.0.0.1/0",
        "2001:db8::1/32",
        "2001:db8::3/127",
        "::1/0",
    ] {
        assert_eq!(Cidr::parse(s), None, "{s:?} must be refused");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. KeyRecord::check
// ---------------------------------------------------------------------------------------------

#[test]
fn an_active_key_is_verified_with_its_attributes() {
    let k = live_key(1);
    let h = hash_of(&k);
    let r = record(&[&h]);
    let v = r.check(&h, KeyEnv::Live, NOW, None).expect("active key");
    assert_eq!(v.id(), r.id);
    assert_eq!(v.owner(), "acme-billing");
    assert_eq!(v.scopes(), ["read".to_string(), "write".to_string()]);
    assert_eq!(v.tier(), Some("gold"));
    assert_eq!(v.authorize(&Requirement::Token { scopes: vec!["write".into()] }), Ok(()));
    assert_eq!(v.authorize(&Requirement::Public), Ok(()));
    assert_eq!(v.authorize(&Requirement::Token { scopes: vec![] }), Ok(()));
    let e = v.authorize(&Requirement::Token { scopes: vec!["read".into(), "admin".into()] }).unwrap_err();
    assert_eq!(e, AuthError::InsufficientScope { required: "read admin".into(), missing: "admin".into() });
}

#[test]
fn status_validity_window_and_environment() {
    let k = live_key(2);
    let h = hash_of(&k);
    let check = |r: &KeyRecord, now: i64, env: KeyEnv| failure(r.check(&h, env, now, None));

    let mut r = record(&[&h]);
    r.status = KeyStatus::Disabled;
    assert_eq!(check(&r, NOW, KeyEnv::Live), Some(ApiKeyFailure::Disabled));

    let mut r = record(&[&h]);
    r.expires_at = Some(NOW);
    assert_eq!(check(&r, NOW - 1, KeyEnv::Live), None, "one second before expires_at");
    assert_eq!(check(&r, NOW, KeyEnv::Live), Some(ApiKeyFailure::Expired), "at exactly expires_at");
    assert_eq!(check(&r, NOW + 1, KeyEnv::Live), Some(ApiKeyFailure::Expired));

    let mut r = record(&[&h]);
    r.not_before = Some(NOW);
    assert_eq!(check(&r, NOW - 1, KeyEnv::Live), Some(ApiKeyFailure::NotYetValid));
    assert_eq!(check(&r, NOW, KeyEnv::Live), None, "at exactly not_before");

    let r = record(&[&h]);
    assert_eq!(check(&r, NOW, KeyEnv::Test), Some(ApiKeyFailure::Unknown), "a live record at a test edge");
    let mut r = record(&[&h]);
    r.env = KeyEnv::Test;
    assert_eq!(check(&r, NOW, KeyEnv::Live), Some(ApiKeyFailure::Unknown));
    assert_eq!(check(&r, NOW, KeyEnv::Test), None);
}

#[test]
fn the_stored_hash_is_compared() {
    let h = hash_of(&live_key(3));
    let other = hash_of(&live_key(4));
    assert_eq!(failure(record(&[&other]).check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown));
    // One bit off, in the first and in the last byte.
    for i in [0, 31] {
        let mut near = h;
        near.0[i] ^= 1;
        assert_eq!(failure(record(&[&near]).check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown), "byte {i}");
    }
    // A corrupt stored hash is never a match (and does not panic).
    let mut r = record(&[&h]);
    r.secrets[0].hash = "zz".into();
    assert_eq!(failure(r.check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown));
    r.secrets[0].hash = h.hex()[..62].into();
    assert_eq!(failure(r.check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown));
    // Upper-case hex is the same hash.
    r.secrets[0].hash = h.hex().to_ascii_uppercase();
    assert!(r.check(&h, KeyEnv::Live, NOW, None).is_ok());
    // The hash is checked before anything else: a disabled record under another hash is Unknown.
    let mut r = record(&[&other]);
    r.status = KeyStatus::Disabled;
    assert_eq!(failure(r.check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown));
    // Any of several secrets matches.
    assert!(record(&[&other, &h]).check(&h, KeyEnv::Live, NOW, None).is_ok());
    assert!(record(&[&h, &other]).check(&h, KeyEnv::Live, NOW, None).is_ok());
}

#[test]
fn key_hash_ct_eq_and_hex() {
    let a = hash_of(&live_key(5));
    assert!(a.ct_eq(&a));
    assert!(a.ct_eq(&KeyHash(a.0)));
    for i in 0..32 {
        for bit in [0x01u8, 0x80] {
            let mut b = a;
            b.0[i] ^= bit;
            assert!(!a.ct_eq(&b), "byte {i} bit {bit:#x}");
            assert!(!b.ct_eq(&a));
        }
    }
    assert!(KeyHash([0; 32]).ct_eq(&KeyHash([0; 32])));
    assert!(!KeyHash([0; 32]).ct_eq(&KeyHash([0xff; 32])));
    assert_eq!(a.hex().len(), 64);
    assert!(a.hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(KeyHash::from_hex(&a.hex()), Some(a));
    assert_eq!(KeyHash::from_hex(&a.hex()[..62]), None);
    assert_eq!(KeyHash::from_hex(&format!("{}00", a.hex())), None);
    assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
    assert_eq!(KeyHash::from_hex(""), None);
    let dbg = format!("{a:?}");
    assert!(dbg.contains(&a.hex()[..12]) && !dbg.contains(&a.hex()[..13]), "Debug shows only a prefix: {dbg}");
}

#[test]
fn client_ip_allow_list() {
    let h = hash_of(&live_key(6));
    let mut r = record(&[&h]);
    r.allowed_ips = vec!["203.0.113.0/24".into(), "2001:db8::/32".into()];
    let ok = |r: &KeyRecord, a: Option<&str>| r.check(&h, KeyEnv::Live, NOW, a.map(ip));
    for a in ["203.0.113.1", "203.0.113.255", "::ffff:203.0.113.9", "2001:db8::5"] {
        assert!(ok(&r, Some(a)).is_ok(), "{a} allowed");
    }
    for a in [Some("198.51.100.1"), Some("203.0.114.0"), Some("2001:db9::1"), None] {
        assert_eq!(ok(&r, a).unwrap_err(), AuthError::IpNotAllowed, "{a:?} refused");
    }
    // An empty list allows any address, and no address.
    r.allowed_ips.clear();
    for a in [None, Some("198.51.100.1"), Some("2001:db9::1")] {
        assert!(ok(&r, a).is_ok(), "{a:?}");
    }
    // A stored list holding only unparsable entries fails closed.
    r.allowed_ips = vec!["garbage".into()];
    assert_eq!(ok(&r, Some("198.51.100.1")).unwrap_err(), AuthError::IpNotAllowed);
    // The address is checked last: an invalid key from a refused address is the usual
    // api_key_invalid (the 403 only ever tells a valid key's holder about the address).
    r.allowed_ips = vec!["203.0.113.0/24".into()];
    r.expires_at = Some(NOW);
    assert_eq!(failure(ok(&r, Some("198.51.100.1"))), Some(ApiKeyFailure::Expired));
    r.expires_at = None;
    r.status = KeyStatus::Disabled;
    assert_eq!(failure(ok(&r, None)), Some(ApiKeyFailure::Disabled));
    assert_eq!(failure(record(&[]).check(&h, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Unknown));
}

#[test]
fn client_ip_header_parsing() {
    assert_eq!(client_ip(Some("203.0.113.5")), Some(ip("203.0.113.5")));
    assert_eq!(client_ip(Some("  2001:db8::1 ")), Some(ip("2001:db8::1")));
    // One form per address: a mapped IPv4 address is that IPv4 address.
    assert_eq!(client_ip(Some("::ffff:203.0.113.5")), Some(ip("203.0.113.5")));
    for bad in ["", "garbage", "203.0.113.5, 10.0.0.1", "203.0.113.5:443", "[2001:db8::1]"] {
        assert_eq!(client_ip(Some(bad)), None, "{bad:?}");
    }
    assert_eq!(client_ip(None), None);
}

#[test]
fn rotation_overlap_then_successor_only() {
    let (old_k, new_k) = (live_key(10), live_key(11));
    let (old, new) = (hash_of(&old_k), hash_of(&new_k));
    let mut r = record(&[&old]);
    let until = NOW + 3_600;
    assert!(r.rotate(&new, until, NOW).is_empty(), "nothing dropped");
    assert_eq!(r.secrets.len(), 2);
    assert_eq!(r.secrets[0].not_after, Some(until));
    assert_eq!(r.secrets[1], KeySecret { hash: new.hex(), created_at: NOW, not_after: None });
    for now in [NOW, until - 1] {
        assert!(r.check(&old, KeyEnv::Live, now, None).is_ok(), "old works at {now}");
        assert!(r.check(&new, KeyEnv::Live, now, None).is_ok(), "new works at {now}");
    }
    for now in [until, until + 1, until + 86_400] {
        assert_eq!(failure(r.check(&old, KeyEnv::Live, now, None)), Some(ApiKeyFailure::RotatedOut), "old at {now}");
        assert!(r.check(&new, KeyEnv::Live, now, None).is_ok(), "new at {now}");
    }
    // The id-level state still applies to the successor.
    let mut d = r.clone();
    d.status = KeyStatus::Disabled;
    assert_eq!(failure(d.check(&new, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::Disabled));
}

#[test]
fn a_second_rotation_shortens_never_extends() {
    let [a, b, c, d] = [20u64, 21, 22, 23].map(|s| hash_of(&live_key(s)));
    let mut r = record(&[&a]);
    r.rotate(&b, NOW + 3_600, NOW);
    // Later rotation with a later end: A keeps its end, B gets the new one.
    assert!(r.rotate(&c, NOW + 7_200, NOW + 100).is_empty());
    let ends: Vec<_> = r.secrets.iter().map(|s| s.not_after).collect();
    assert_eq!(ends, vec![Some(NOW + 3_600), Some(NOW + 7_200), None]);
    assert_eq!(failure(r.check(&a, KeyEnv::Live, NOW + 3_600, None)), Some(ApiKeyFailure::RotatedOut));
    assert!(r.check(&b, KeyEnv::Live, NOW + 3_600, None).is_ok());
    // An earlier end shortens both.
    assert!(r.rotate(&d, NOW + 200, NOW + 150).is_empty());
    let ends: Vec<_> = r.secrets.iter().map(|s| s.not_after).collect();
    assert_eq!(ends, vec![Some(NOW + 200), Some(NOW + 200), Some(NOW + 200), None]);
    for h in [&a, &b, &c] {
        assert!(r.check(h, KeyEnv::Live, NOW + 199, None).is_ok());
        assert_eq!(failure(r.check(h, KeyEnv::Live, NOW + 200, None)), Some(ApiKeyFailure::RotatedOut));
    }
    assert!(r.check(&d, KeyEnv::Live, NOW + 200, None).is_ok());
}

#[test]
fn an_end_in_the_past_is_clamped_to_now() {
    let [a, b] = [30u64, 31].map(|s| hash_of(&live_key(s)));
    let mut r = record(&[&a]);
    r.rotate(&b, NOW - 500, NOW);
    assert_eq!(r.secrets[0].not_after, Some(NOW), "at the earliest now");
    assert_eq!(failure(r.check(&a, KeyEnv::Live, NOW, None)), Some(ApiKeyFailure::RotatedOut));
    assert!(r.check(&a, KeyEnv::Live, NOW - 1, None).is_ok());
    assert!(r.check(&b, KeyEnv::Live, NOW, None).is_ok());
}

#[test]
fn secrets_past_their_end_are_dropped_and_returned() {
    let [a, b, c, d] = [40u64, 41, 42, 43].map(|s| hash_of(&live_key(s)));
    let mut r = record(&[&a]);
    r.rotate(&b, NOW + 100, NOW);
    r.rotate(&c, NOW + 300, NOW + 50);
    // At NOW + 100, A ended exactly now: dropped. B (ends NOW + 300) and C stay.
    let dropped = r.rotate(&d, NOW + 1_000, NOW + 100);
    assert_eq!(dropped, vec![a.hex()]);
    let held: Vec<_> = r.secrets.iter().map(|s| s.hash.clone()).collect();
    assert_eq!(held, vec![b.hex(), c.hex(), d.hex()]);
    assert_eq!(r.secrets[0].not_after, Some(NOW + 300), "kept its shorter end");
    assert_eq!(r.secrets[1].not_after, Some(NOW + 1_000));
    // A dropped secret is no longer known at all.
    assert_eq!(failure(r.check(&a, KeyEnv::Live, NOW + 100, None)), Some(ApiKeyFailure::Unknown));
    // One second before an end is not "past" it.
    let dropped = r.rotate(&a, NOW + 2_000, NOW + 299);
    assert!(dropped.is_empty(), "{dropped:?}");
    // At NOW + 1000: B (ended NOW + 300) and C (ends exactly now) go; D (NOW + 2000) stays.
    let e = hash_of(&live_key(44));
    let dropped = r.rotate(&e, NOW + 2_000, NOW + 1_000);
    assert_eq!(dropped, vec![b.hex(), c.hex()], "every ended secret, oldest first");
    let held: Vec<_> = r.secrets.iter().map(|s| (s.hash.clone(), s.not_after)).collect();
    assert_eq!(held, vec![(d.hex(), Some(NOW + 2_000)), (a.hex(), Some(NOW + 2_000)), (e.hex(), None)]);
}

#[test]
fn public_view_hides_the_hashes() {
    let [a, b] = [50u64, 51].map(|s| hash_of(&live_key(s)));
    let mut r = record(&[&a]);
    r.rotate(&b, NOW + 60, NOW);
    let v = r.public_view(NOW + 60);
    let text = v.to_string();
    for h in [&a, &b] {
        assert!(!text.contains(&h.hex()), "no hash in the admin view");
        assert!(!text.contains(&h.hex()[..16]));
    }
    assert_eq!(v["secrets"][0]["active"], json!(false));
    assert_eq!(v["secrets"][1]["active"], json!(true));
    assert_ne!(v["secrets"][0]["fingerprint"], v["secrets"][1]["fingerprint"]);
    assert_eq!(v["id"], json!(r.id));
    assert_eq!(v["status"], json!("active"));
    assert_eq!(v["env"], json!("live"));
    // A record round-trips through its stored JSON and refuses unknown fields.
    let stored = serde_json::to_value(&r).unwrap();
    assert_eq!(serde_json::from_value::<KeyRecord>(stored.clone()).unwrap(), r);
    assert!(serde_json::from_value::<KeyRecord>(with(stored, json!({"admin": true}))).is_err());
}

#[test]
fn key_ids_and_storage_keys() {
    let id = key_id(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0xff, 0x10, 0x20]);
    assert_eq!(id, "key_0123456789abcdef00ff1020");
    assert!(is_key_id(&id));
    for bad in [
        "key_0123456789ABCDEF00ff1020",
        "key_0123456789abcdef00ff102",
        "key_0123456789abcdef00ff10200",
        "kex_0123456789abcdef00ff1020",
        "key_0123456789abcdef00ff102g",
        "",
    ] {
        assert!(!is_key_id(bad), "{bad}");
    }
    assert_eq!(id_storage_key(&id), format!("{ID_PREFIX}{id}"));
    assert!(id_storage_key(&id).starts_with("apikey:v1:id:"));
    let h = hash_of(&live_key(1));
    assert_eq!(hash_storage_key(&h.hex()), format!("apikey:v1:h:{}", h.hex()));
    assert!(!hash_storage_key(&h.hex()).starts_with(ID_PREFIX), "listing by id prefix never lists hash entries");
}

// ---------------------------------------------------------------------------------------------
// 5. key_hash
// ---------------------------------------------------------------------------------------------

#[test]
fn key_hash_is_hmac_sha256_under_the_pepper() {
    let k = live_key(60);
    let p = PresentedKey::parse(&k, None).unwrap();
    let h = key_hash(PEPPER, &p).expect("hmac");
    assert_eq!(h, key_hash(PEPPER, &p).expect("hmac"), "same pepper, same hash");
    assert_eq!(h.0, reference_hmac(PEPPER, k.as_bytes()), "HMAC keyed by the pepper, over the key");
    let long_pepper = [0x5Au8; 100];
    assert_eq!(key_hash(&long_pepper, &p).expect("hmac").0, reference_hmac(&long_pepper, k.as_bytes()), "peppers over 64 bytes");
    assert_ne!(h, key_hash(b"another-pepper", &p).expect("hmac"), "different peppers, different hashes");
    assert_ne!(h, key_hash(b"test-pepper-0123456789abcdeF", &p).expect("hmac"), "one character of pepper");
    assert_ne!(key_hash(b"", &p).expect("hmac"), h);
    // Not a plain (unkeyed) SHA-256 of the key.
    use sha2::{Digest, Sha256};
    assert_ne!(h.0, <[u8; 32]>::from(Sha256::digest(k.as_bytes())));
    // Different keys, different hashes.
    let k2 = live_key(61);
    assert_ne!(h, key_hash(PEPPER, &PresentedKey::parse(&k2, None).unwrap()).expect("hmac"));
    // The hash never contains the key (nor its body) in any form.
    for seed in 0..50u64 {
        let k = live_key(seed);
        let h = hash_of(&k);
        let hex = h.hex();
        assert!(!hex.contains(&k) && !hex.contains(&k[8..]) && !hex.contains(&k[8..20].to_ascii_lowercase()));
        assert!(!h.0.windows(8).any(|w| k.as_bytes().windows(8).any(|kw| kw == w)));
        assert!(!format!("{h:?}").contains(&k[8..]));
    }
}

// ---------------------------------------------------------------------------------------------
// 6. NewKey::into_record
// ---------------------------------------------------------------------------------------------

fn new_key(v: Value) -> NewKey {
    serde_json::from_value(v).expect("a well-formed admin body")
}

fn good_body() -> Value {
    json!({
        "owner": "acme",
        "description": "CI deploys",
        "scopes": ["read", "deploy:write"],
        "tier": "gold",
        "allowed_ips": ["203.0.113.5", "2001:DB8::/32", " 10.0.0.0/8 "],
        "not_before": NOW - 10,
        "expires_at": NOW + 86_400
    })
}

#[test]
fn into_record_builds_an_active_record_with_one_secret() {
    let h = hash_of(&gen(KeyEnv::Test, 70));
    let id = key_id(&[7; 12]);
    let r = new_key(good_body()).into_record(id.clone(), &h, KeyEnv::Test, NOW).unwrap();
    assert_eq!(r.id, id);
    assert_eq!(r.owner, "acme");
    assert_eq!(r.description, "CI deploys");
    assert_eq!(r.scopes, vec!["read", "deploy:write"]);
    assert_eq!(r.tier.as_deref(), Some("gold"));
    assert_eq!(r.allowed_ips, vec!["203.0.113.5/32", "2001:db8::/32", "10.0.0.0/8"], "normalized");
    assert_eq!((r.not_before, r.expires_at), (Some(NOW - 10), Some(NOW + 86_400)));
    assert_eq!(r.status, KeyStatus::Active);
    assert_eq!(r.env, KeyEnv::Test);
    assert_eq!(r.created_at, NOW);
    assert_eq!(r.secrets, vec![KeySecret { hash: h.hex(), created_at: NOW, not_after: None }]);
    let v = r.check(&h, KeyEnv::Test, NOW, Some(ip("203.0.113.5"))).unwrap();
    assert_eq!(v.owner(), "acme");
    assert_eq!(r.check(&h, KeyEnv::Test, NOW, Some(ip("203.0.113.6"))).unwrap_err(), AuthError::IpNotAllowed);
    // The minimum body.
    let r = new_key(json!({"owner": "o"})).into_record(id, &h, KeyEnv::Live, NOW).unwrap();
    assert!(r.scopes.is_empty() && r.allowed_ips.is_empty() && r.tier.is_none() && r.expires_at.is_none());
}

#[test]
fn into_record_names_each_bad_field() {
    let h = hash_of(&live_key(71));
    let many_scopes: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let many_ips: Vec<String> = (0..65).map(|i| format!("10.0.{i}.0/24")).collect();
    let table: Vec<(&str, Value, &str)> = vec![
        ("empty owner", json!({"owner": ""}), "owner"),
        ("control character in owner", json!({"owner": "a\nb"}), "owner"),
        ("owner too long", json!({"owner": "o".repeat(257)}), "owner"),
        ("description with control", json!({"description": "x\u{7}"}), "description"),
        ("description too long", json!({"description": "d".repeat(257)}), "description"),
        ("scope with a space", json!({"scopes": ["read", "has space"]}), "scopes[1]"),
        ("empty scope", json!({"scopes": [""]}), "scopes[0]"),
        ("scope with a tab", json!({"scopes": ["a", "b", "c\td"]}), "scopes[2]"),
        ("non-ASCII scope", json!({"scopes": ["lesen", "schreibé"]}), "scopes[1]"),
        ("scope too long", json!({"scopes": ["s".repeat(129)]}), "scopes[0]"),
        ("too many scopes", json!({"scopes": many_scopes}), "scopes"),
        ("empty tier", json!({"tier": ""}), "tier"),
        ("tier too long", json!({"tier": "t".repeat(65)}), "tier"),
        ("bad CIDR", json!({"allowed_ips": ["203.0.113.0/24", "bogus"]}), "allowed_ips[1]"),
        ("host bits set", json!({"allowed_ips": ["203.0.113.0/24", "2001:db8::/32", "10.0.0.1/8"]}), "allowed_ips[2]"),
        ("prefix too long", json!({"allowed_ips": ["203.0.113.0/33"]}), "allowed_ips[0]"),
        ("too many ranges", json!({"allowed_ips": many_ips}), "allowed_ips"),
        ("expires now", json!({"expires_at": NOW, "not_before": null}), "expires_at"),
        ("expired", json!({"expires_at": NOW - 1, "not_before": null}), "expires_at"),
        ("not_before equals expires_at", json!({"not_before": NOW + 50, "expires_at": NOW + 50}), "not_before"),
        ("not_before after expires_at", json!({"not_before": NOW + 60, "expires_at": NOW + 50}), "not_before"),
        ("negative not_before", json!({"not_before": -1, "expires_at": null}), "not_before"),
    ];
    for (name, patch, field) in table {
        let body = with(good_body(), patch);
        let e = new_key(body).into_record(key_id(&[1; 12]), &h, KeyEnv::Live, NOW).expect_err(name);
        assert_eq!(e.field, field, "{name}: {e}");
        assert!(!e.message.is_empty());
        assert_eq!(e.to_string(), format!("{}: {}", e.field, e.message));
    }
    // Boundaries that are fine.
    for (name, patch) in [
        ("owner of 256", json!({"owner": "o".repeat(256)})),
        ("expires in one second", json!({"expires_at": NOW + 1, "not_before": null})),
        ("not_before one before expires_at", json!({"not_before": NOW + 49, "expires_at": NOW + 50})),
        ("scope of 128", json!({"scopes": ["s".repeat(128)]})),
        ("64 scopes", json!({"scopes": (0..64).map(|i| format!("s{i}")).collect::<Vec<_>>()})),
        ("not_before in the future without expiry", json!({"not_before": NOW + 10, "expires_at": null})),
    ] {
        let body = with(good_body(), patch);
        assert!(new_key(body).into_record(key_id(&[1; 12]), &h, KeyEnv::Live, NOW).is_ok(), "{name}");
    }
}

#[test]
fn the_admin_body_cannot_set_server_fields() {
    for field in ["status", "secrets", "id", "env", "created_at", "hash"] {
        let body = with(good_body(), json!({ field: "x" }));
        assert!(serde_json::from_value::<NewKey>(body).is_err(), "{field} is refused");
    }
    assert!(serde_json::from_value::<NewKey>(json!({"scopes": []})).is_err(), "owner is required");
}

// ---------------------------------------------------------------------------------------------
// 7. Errors on the wire
// ---------------------------------------------------------------------------------------------

#[test]
fn api_key_rejections_exact() {
    const R: &str = "edgeward";
    let table: Vec<(AuthError, u16, &str, Option<&str>, Side)> = vec![
        (AuthError::MissingApiKey, 401, "missing_api_key", Some(r#"ApiKey realm="edgeward""#), Side::Client),
        (AuthError::MissingCredential, 401, "missing_credential", Some(r#"Bearer realm="edgeward", ApiKey realm="edgeward""#), Side::Client),
        (AuthError::CredentialNotAccepted(Accepts::Jwt), 401, "credential_not_accepted", Some(r#"Bearer realm="edgeward""#), Side::Client),
        (AuthError::CredentialNotAccepted(Accepts::ApiKey), 401, "credential_not_accepted", Some(r#"ApiKey realm="edgeward""#), Side::Client),
        (
            AuthError::ApiKeyMalformed(FormatError::Checksum),
            401,
            "api_key_malformed",
            Some(r#"ApiKey realm="edgeward", error="invalid_key", error_description="API key is malformed""#),
            Side::Client,
        ),
        (
            AuthError::ApiKeyInvalid(ApiKeyFailure::Unknown),
            401,
            "api_key_invalid",
            Some(r#"ApiKey realm="edgeward", error="invalid_key", error_description="API key not accepted""#),
            Side::Client,
        ),
        (AuthError::IpNotAllowed, 403, "ip_not_allowed", None, Side::Client),
        (AuthError::ApiKeysUnavailable, 503, "api_keys_unavailable", None, Side::Upstream),
    ];
    for (e, status, code, www, side) in table {
        let r = e.rejection(R);
        assert_eq!(r.status, status, "{e:?}");
        assert_eq!(r.code, code, "{e:?}");
        assert_eq!(e.code(), code);
        assert_eq!(r.www_authenticate.as_deref(), www, "{e:?}");
        assert_eq!(r.side, side, "{e:?}");
        assert_eq!(e.side(), side);
        assert_eq!(r.rfc_error, None, "API-key refusals never use RFC 6750 codes: {e:?}");
        assert!(!r.message.is_empty());
        assert_eq!(r.to_string(), format!("{status} {code}"));
    }
    assert_eq!(AuthError::MissingApiKey.rejection(R).message, "API key required");
    assert_eq!(AuthError::ApiKeysUnavailable.rejection(R).message, "API key store unavailable; retry later");
    assert_eq!(AuthError::IpNotAllowed.rejection(R).message, "client address not allowed for this API key");
}

#[test]
fn every_api_key_failure_looks_the_same_to_the_client() {
    let first = AuthError::ApiKeyInvalid(ApiKeyFailure::Unknown).rejection("edgeward");
    for f in ALL_FAILURES {
        let r = AuthError::ApiKeyInvalid(f).rejection("edgeward");
        assert_eq!(r, first, "{f:?}");
        let public = format!("{} {} {}", r.code, r.message, r.www_authenticate.as_deref().unwrap_or(""));
        for word in ["unknown", "disabled", "expired", "not yet", "rotated", "revoked"] {
            assert!(!public.contains(word), "{f:?} leaks {word:?}: {public}");
        }
        // The log (Display) does say which.
        assert!(AuthError::ApiKeyInvalid(f).to_string().contains(&f.to_string()));
    }
    let first = AuthError::ApiKeyMalformed(FormatError::Prefix).rejection("edgeward");
    for f in ALL_FORMAT_ERRORS {
        assert_eq!(AuthError::ApiKeyMalformed(f).rejection("edgeward"), first, "{f:?}");
    }
}

#[test]
fn api_key_challenges_quote_the_realm() {
    let r = AuthError::ApiKeyInvalid(ApiKeyFailure::Expired).rejection("my \"realm\"");
    assert_eq!(r.www_authenticate.as_deref(), Some(r#"ApiKey realm="my \"realm\"", error="invalid_key", error_description="API key not accepted""#));
    let r = AuthError::MissingCredential.rejection("r\u{e9}");
    assert_eq!(r.www_authenticate.as_deref(), Some(r#"Bearer realm="r?", ApiKey realm="r?""#));
}

// ---------------------------------------------------------------------------------------------
// 8. Request side
// ---------------------------------------------------------------------------------------------

fn gate_doc() -> Value {
    doc_with(json!({
        "cookie_name": "__Host-token",
        "routes": [
            {"path": "/public/*", "public": true},
            {"path": "/keys/*", "auth": "api_key", "upstream_credential": "origin"},
            {"path": "/both/*", "auth": "either"}
        ],
        "upstream_credentials": {
            "origin": {"header": "X-Origin-Key", "value": "Bearer {secret}", "secret": "ORIGIN_KEY"},
            "legacy": {"header": "X-Legacy-Auth", "secret": "LEGACY_SECRET"}
        }
    }))
}

type Want = Result<Option<(String, CredentialSource)>, &'static str>;

#[test]
fn api_key_extraction_table() {
    use CredentialSource::*;
    let p = policy(&gate_doc());
    let mut custom_doc = gate_doc();
    custom_doc["api_keys"] = json!({"header": "X-Edge-Key"});
    let custom = policy(&custom_doc);
    assert_eq!(custom.api_keys.header, "x-edge-key", "lower-cased");
    let k = live_key(80);
    let k2 = live_key(81);
    let some = |t: &str, s| -> Want { Ok(Some((t.to_string(), s))) };
    let table: Vec<(&str, &Policy, Vec<(&str, String)>, Want)> = vec![
        ("X-API-Key", &p, vec![("X-API-Key", k.clone())], some(&k, ApiKey)),
        ("x-api-key lower case, padded", &p, vec![("x-api-key", format!("  {k} "))], some(&k, ApiKey)),
        ("X-API-KEY upper case", &p, vec![("X-API-KEY", k.clone())], some(&k, ApiKey)),
        ("Authorization: ApiKey", &p, vec![("Authorization", format!("ApiKey {k}"))], some(&k, ApiKey)),
        ("Authorization: apikey, spaces", &p, vec![("authorization", format!("  apikey    {k}  "))], some(&k, ApiKey)),
        ("Authorization: APIKEY", &p, vec![("Authorization", format!("APIKEY {k}"))], some(&k, ApiKey)),
        ("ApiKey without key", &p, vec![("Authorization", "ApiKey".into())], Err("api_key_malformed")),
        ("ApiKey with only spaces", &p, vec![("Authorization", "ApiKey    ".into())], Err("api_key_malformed")),
        ("empty X-API-Key ignored", &p, vec![("X-API-Key", "  ".into())], Ok(None)),
        ("header and scheme agree", &p, vec![("X-API-Key", k.clone()), ("Authorization", format!("ApiKey {k}"))], some(&k, ApiKey)),
        ("header and scheme differ", &p, vec![("X-API-Key", k.clone()), ("Authorization", format!("ApiKey {k2}"))], Err("malformed_token")),
        ("two different X-API-Key", &p, vec![("X-API-Key", k.clone()), ("X-API-Key", k2.clone())], Err("malformed_token")),
        ("the same X-API-Key twice", &p, vec![("X-API-Key", k.clone()), ("x-api-key", k.clone())], some(&k, ApiKey)),
        ("JWT and API key", &p, vec![("Authorization", "Bearer a.b.c".into()), ("X-API-Key", k.clone())], Err("malformed_token")),
        ("JWT cookie and API key", &p, vec![("Cookie", "__Host-token=a.b.c".into()), ("X-API-Key", k.clone())], Err("malformed_token")),
        ("same text as bearer and key", &p, vec![("Authorization", format!("Bearer {k}")), ("X-API-Key", k.clone())], Err("malformed_token")),
        ("custom header", &custom, vec![("X-Edge-Key", k.clone())], some(&k, ApiKey)),
        ("custom header, any case", &custom, vec![("x-EDGE-key", k.clone())], some(&k, ApiKey)),
        ("X-API-Key is not the custom header", &custom, vec![("X-API-Key", k.clone())], Ok(None)),
        ("ApiKey scheme with custom header", &custom, vec![("Authorization", format!("ApiKey {k}"))], some(&k, ApiKey)),
        ("bearer still a JWT", &p, vec![("Authorization", "Bearer a.b.c".into())], some("a.b.c", Header)),
    ];
    let mut failures = Vec::new();
    for (name, pol, headers, want) in table {
        let hs: Vec<(String, String)> = headers.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        let got = extract_credential(&view("/keys/x", &hs), pol);
        let got = match &got {
            Ok(None) => Ok(None),
            Ok(Some(c)) => Ok(Some((c.token.clone(), c.source))),
            Err(e) => Err(e.code()),
        };
        if got != want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
        if let Ok(Some((_, src))) = &got {
            assert_eq!(src.is_api_key(), *src == ApiKey);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(serde_json::to_value(CredentialSource::ApiKey).unwrap(), json!("api_key"));
    // Debug never shows the key.
    let hs = hdrs(&[("X-API-Key", &k)]);
    let c = extract_credential(&view("/", &hs), &p).unwrap().unwrap();
    assert!(!format!("{c:?}").contains(&k[8..]));
}

#[test]
fn identity_of_an_api_key() {
    let v = verified_key(1, "acme", &["read", "write"], Some("gold"));
    let who = Identity::ApiKey(&v);
    assert_eq!(who.kind(), "api_key");
    assert_eq!(who.api_key_id(), Some(v.id()));
    assert_eq!(who.claim_text("sub").as_deref(), Some("acme"));
    for c in ["client_id", "azp", "key_id"] {
        assert_eq!(who.claim_text(c).as_deref(), Some(v.id()), "{c}");
    }
    assert_eq!(who.claim_text("scope").as_deref(), Some("read write"));
    assert_eq!(who.claim_text("tier").as_deref(), Some("gold"));
    for c in ["iss", "aud", "email", "exp"] {
        assert_eq!(who.claim_text(c), None, "{c}");
    }
    assert_eq!(who.tier("plan").as_deref(), Some("gold"), "a key's own tier, whatever the claim name");
    assert!(who.authorize(&Requirement::Token { scopes: vec!["read".into()] }).is_ok());
    assert_eq!(who.authorize(&Requirement::Token { scopes: vec!["admin".into()] }).unwrap_err().code(), "insufficient_scope");
    let p = policy(&base_doc());
    let t = jwt(&p, json!({}));
    let who = Identity::Token(&t);
    assert_eq!(who.kind(), "jwt");
    assert_eq!(who.api_key_id(), None);
}

#[test]
fn plan_forward_for_an_api_key() {
    let p = policy(&gate_doc());
    let k = live_key(82);
    let v = verified_key(2, "acme-billing", &["read", "write"], None);
    let headers = hdrs(&[
        ("Host", "edge.example"),
        ("Accept", "application/json"),
        ("X-API-Key", &k),
        ("Authorization", &format!("ApiKey {k}")),
        ("X-Origin-Key", "Bearer forged-by-client"),
        ("x-origin-key", "second forged copy"),
        ("X-Legacy-Auth", "forged too"),
        ("X-Edgeward-Auth", "jwt"),
        ("X-Edgeward-Key-Id", "key_forged"),
        ("X-Edgeward-Sub", "admin"),
        ("Cookie", "theme=dark"),
    ]);
    let req = view("/keys/x", &headers);
    let plan = plan_forward(&req, Some(Identity::ApiKey(&v)), Some(("X-Origin-Key", "Bearer s3cret")), &p, "req-1").unwrap();
    let h = &plan.headers;
    assert_eq!(plan.url, format!("{ORIGIN}/keys/x"));
    assert_eq!(values(h, "x-edgeward-auth"), vec!["api_key"]);
    assert_eq!(values(h, "x-edgeward-key-id"), vec![v.id()]);
    assert_eq!(values(h, "x-edgeward-sub"), vec!["acme-billing"]);
    assert_eq!(values(h, "x-edgeward-scope"), vec!["read write"]);
    assert!(values(h, "x-edgeward-iss").is_empty(), "a key has no issuer");
    assert_eq!(values(h, "x-origin-key"), vec!["Bearer s3cret"], "exactly one copy, the injected one");
    assert!(values(h, "x-legacy-auth").is_empty(), "every configured upstream header is stripped");
    assert!(values(h, "x-api-key").is_empty());
    assert!(values(h, "authorization").is_empty());
    assert!(values(h, "host").is_empty());
    assert_eq!(values(h, "accept"), vec!["application/json"]);
    assert_eq!(values(h, "cookie"), vec!["theme=dark"]);
    assert_eq!(values(h, "x-request-id"), vec!["req-1"]);
    assert!(h.iter().all(|(n, _)| *n == n.to_ascii_lowercase()), "names lower case");
    let everything = format!("{plan:?}");
    assert!(!everything.contains(&k[8..]), "the key never reaches the origin");
    assert!(!everything.contains("forged"));
}

#[test]
fn plan_forward_strips_credentials_on_a_public_route() {
    let p = policy(&gate_doc());
    let k = live_key(83);
    let headers = hdrs(&[
        ("X-API-Key", &k),
        ("X-Origin-Key", "forged"),
        ("x-legacy-auth", "forged"),
        ("X-Edgeward-Auth", "api_key"),
        ("X-Edgeward-Key-Id", "key_forged"),
        ("Accept", "*/*"),
    ]);
    let plan = plan_forward(&view("/public/a", &headers), None, None, &p, "r").unwrap();
    let names: Vec<&str> = plan.headers.iter().map(|(n, _)| n.as_str()).collect();
    // Only what the gate sets itself besides the client's own Accept: the connection headers it
    // knows (request.forwarded_headers: replace) and the request id.
    assert_eq!(names, vec!["accept", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-request-id"], "{:?}", plan.headers);
    // A custom key header is stripped the same way.
    let mut doc = gate_doc();
    doc["api_keys"] = json!({"header": "X-Edge-Key"});
    let custom = policy(&doc);
    let headers = hdrs(&[("X-Edge-Key", &k), ("Accept", "*/*")]);
    let plan = plan_forward(&view("/public/a", &headers), None, None, &custom, "r").unwrap();
    assert!(values(&plan.headers, "x-edge-key").is_empty());
    assert!(!format!("{plan:?}").contains(&k[8..]));
}

#[test]
fn plan_forward_upstream_credential_without_a_client_copy_and_for_a_jwt() {
    let p = policy(&gate_doc());
    let v = verified_key(3, "o", &[], None);
    let headers = hdrs(&[("Accept", "*/*")]);
    let plan = plan_forward(&view("/keys/x", &headers), Some(Identity::ApiKey(&v)), Some(("X-Legacy-Auth", "abc")), &p, "r").unwrap();
    assert_eq!(values(&plan.headers, "x-legacy-auth"), vec!["abc"]);
    assert!(values(&plan.headers, "x-origin-key").is_empty());
    // A JWT identity: no key id, `x-edgeward-auth: jwt`.
    let t = jwt(&p, json!({}));
    let headers = hdrs(&[("Authorization", "Bearer whatever"), ("X-Edgeward-Key-Id", "key_forged")]);
    let plan = plan_forward(&view("/both/x", &headers), Some(Identity::Token(&t)), Some(("x-origin-key", "Bearer s")), &p, "r").unwrap();
    assert_eq!(values(&plan.headers, "x-edgeward-auth"), vec!["jwt"]);
    assert!(values(&plan.headers, "x-edgeward-key-id").is_empty());
    assert_eq!(values(&plan.headers, "x-edgeward-sub"), vec!["user-1"]);
    assert_eq!(values(&plan.headers, "x-origin-key"), vec!["Bearer s"]);
}

// ---------------------------------------------------------------------------------------------
// 9. Configuration
// ---------------------------------------------------------------------------------------------

fn upstream_doc(entry: Value) -> Value {
    doc_with(json!({"upstream_credentials": {"origin": entry}}))
}

#[test]
fn upstream_credentials_are_validated() {
    let p = policy(&upstream_doc(json!({"header": "X-Origin-Key", "value": "Bearer {secret}", "secret": "ORIGIN_KEY"})));
    let u = &p.upstream_credentials["origin"];
    assert_eq!(u.header, "x-origin-key");
    assert_eq!(u.value, "Bearer {secret}");
    assert_eq!(u.secret, "ORIGIN_KEY");
    let p = policy(&upstream_doc(json!({"header": "Authorization", "secret": "S"})));
    assert_eq!(p.upstream_credentials["origin"].value, "{secret}", "default value");

    let table: Vec<(&str, Value, &str)> = vec![
        ("value without {secret}", json!({"header": "x-k", "value": "Bearer", "secret": "S"}), "upstream_credentials.origin.value"),
        ("{secret} twice", json!({"header": "x-k", "value": "{secret}:{secret}", "secret": "S"}), "upstream_credentials.origin.value"),
        ("non-printable value", json!({"header": "x-k", "value": "{secret}\n", "secret": "S"}), "upstream_credentials.origin.value"),
        ("host", json!({"header": "host", "secret": "S"}), "upstream_credentials.origin.header"),
        ("Host any case", json!({"header": "HoSt", "secret": "S"}), "upstream_credentials.origin.header"),
        ("reserved prefix", json!({"header": "x-edgeward-x", "secret": "S"}), "upstream_credentials.origin.header"),
        ("reserved prefix, upper case", json!({"header": "X-Edgeward-Sub", "secret": "S"}), "upstream_credentials.origin.header"),
        ("cookie", json!({"header": "cookie", "secret": "S"}), "upstream_credentials.origin.header"),
        ("hop-by-hop", json!({"header": "connection", "secret": "S"}), "upstream_credentials.origin.header"),
        ("framing", json!({"header": "content-length", "secret": "S"}), "upstream_credentials.origin.header"),
        ("the API key header", json!({"header": "X-API-Key", "secret": "S"}), "upstream_credentials.origin.header"),
        ("the request id header", json!({"header": "x-request-id", "secret": "S"}), "upstream_credentials.origin.header"),
        ("space in header", json!({"header": "x key", "secret": "S"}), "upstream_credentials.origin.header"),
        ("empty header", json!({"header": "", "secret": "S"}), "upstream_credentials.origin.header"),
        ("empty secret name", json!({"header": "x-k", "secret": ""}), "upstream_credentials.origin.secret"),
        ("dash in secret name", json!({"header": "x-k", "secret": "ORIGIN-KEY"}), "upstream_credentials.origin.secret"),
    ];
    for (name, entry, field) in table {
        assert_eq!(config_err(&upstream_doc(entry)).0, field, "{name}");
    }
    // Missing the required `secret`, or an unknown member: the section is named.
    assert_eq!(config_err(&upstream_doc(json!({"header": "x-k"}))).0, "upstream_credentials");
    assert_eq!(config_err(&upstream_doc(json!({"header": "x-k", "secret": "S", "extra": 1}))).0, "upstream_credentials");
}

#[test]
fn routes_naming_upstream_credentials_are_checked() {
    let entry = json!({"origin": {"header": "x-origin-key", "secret": "S"}});
    let doc = doc_with(json!({
        "upstream_credentials": entry,
        "routes": [{"path": "/a/*", "upstream_credential": "origin"}, {"path": "/b/*", "upstream_credential": "nope"}]
    }));
    let (field, message) = config_err(&doc);
    assert_eq!(field, "routes[1].upstream_credential");
    assert!(message.contains("nope"), "{message}");
    let doc = doc_with(json!({"routes": [{"path": "/a/*", "upstream_credential": "origin"}]}));
    assert_eq!(config_err(&doc).0, "routes[0].upstream_credential", "no entries at all");
    let doc = doc_with(json!({
        "upstream_credentials": entry,
        "routes": [{"path": "/x"}, {"path": "/pub/*", "public": true, "upstream_credential": "origin"}]
    }));
    assert_eq!(config_err(&doc).0, "routes[1]", "a public route cannot inject a credential");
    let doc = doc_with(json!({"upstream_credentials": entry, "routes": [{"path": "/a/*", "upstream_credential": "origin"}]}));
    assert_eq!(policy(&doc).routes.rule("GET", "/a/b").unwrap().upstream_credential.as_deref(), Some("origin"));
}

#[test]
fn api_keys_section_is_validated() {
    let p = policy(&base_doc());
    assert_eq!(p.api_keys.header, "x-api-key");
    assert_eq!(p.api_keys.environment, KeyEnv::Live);
    let p = policy(&doc_with(json!({"api_keys": {"header": "X-Custom-Key", "environment": "test"}})));
    assert_eq!(p.api_keys.header, "x-custom-key");
    assert_eq!(p.api_keys.environment, KeyEnv::Test);
    for h in ["authorization", "Authorization", "cookie", "host", "", "x key", "x:key"] {
        assert_eq!(config_err(&doc_with(json!({"api_keys": {"header": h}}))).0, "api_keys.header", "{h:?}");
    }
    for bad in [
        json!({"environment": "prod"}),
        json!({"cache_capacity": 0}),
        json!({"cache_ttl_secs": 3601}),
        json!({"negative_cache_ttl_secs": 3601}),
        json!({"unknown": 1}),
    ] {
        assert_eq!(config_err(&doc_with(json!({ "api_keys": bad }))).0, "api_keys", "{bad}");
    }
}

#[test]
fn admin_jwt_scope_is_one_scope() {
    let p = policy(&doc_with(json!({"admin": {"jwt_scope": "edgeward:admin"}})));
    assert_eq!(p.admin.jwt_scope.as_deref(), Some("edgeward:admin"));
    assert_eq!(policy(&base_doc()).admin.jwt_scope, None);
    for s in ["edgeward admin", "", " admin"] {
        assert_eq!(config_err(&doc_with(json!({"admin": {"jwt_scope": s}}))).0, "admin.jwt_scope", "{s:?}");
    }
}

#[test]
fn admin_audit_retention_is_days_or_null() {
    assert_eq!(policy(&base_doc()).admin.audit_retention_days, Some(365));
    assert_eq!(policy(&doc_with(json!({"admin": {"audit_retention_days": 30}}))).admin.audit_retention_days, Some(30));
    assert_eq!(policy(&doc_with(json!({"admin": {"audit_retention_days": null}}))).admin.audit_retention_days, None, "null keeps every entry");
    for d in [json!(0), json!(36_501), json!(-1), json!("30")] {
        let field = config_err(&doc_with(json!({"admin": {"audit_retention_days": d}}))).0;
        assert!(field.starts_with("admin"), "{d}: {field}");
    }
}

#[test]
fn routes_auth_and_accepts() {
    let p = policy(&doc_with(json!({
        "routes": [
            {"path": "/keys/*", "methods": ["POST"], "auth": "api_key"},
            {"path": "/keys/*", "auth": "either"},
            {"path": "/jwt/*", "auth": "jwt"},
            {"path": "/default/*"},
            {"path": "/open/*", "public": true, "auth": "api_key"}
        ]
    })));
    let t = &p.routes;
    assert_eq!(t.accepts("POST", "/keys/a"), Accepts::ApiKey);
    assert_eq!(t.accepts("post", "/keys/a"), Accepts::ApiKey);
    assert_eq!(t.accepts("GET", "/keys/a"), Accepts::Either, "first match wins, by method");
    assert_eq!(t.accepts("GET", "/jwt/a"), Accepts::Jwt);
    assert_eq!(t.accepts("GET", "/default/a"), Accepts::Jwt, "jwt is the default");
    assert_eq!(t.accepts("GET", "/unmatched"), Accepts::Jwt, "unmatched paths take JWTs");
    assert!(p.warnings.iter().any(|w| w.contains("routes[4]") && w.contains("public")), "{:?}", p.warnings);
    for (a, s) in [(Accepts::Jwt, "jwt"), (Accepts::ApiKey, "api_key"), (Accepts::Either, "either")] {
        assert_eq!(a.to_string(), s);
        assert_eq!(serde_json::from_value::<Accepts>(json!(s)).unwrap(), a);
    }
    assert_eq!(config_err(&doc_with(json!({"routes": [{"path": "/x", "auth": "bearer"}]}))).0, "routes");
    assert_eq!(config_err(&doc_with(json!({"routes": [{"path": "/x", "auth": "ApiKey"}]}))).0, "routes");
}

// ---------------------------------------------------------------------------------------------
// 10. Rate limits
// ---------------------------------------------------------------------------------------------

fn limits_policy() -> Policy {
    policy(&doc_with(json!({
        "rate_limits": {"rules": [
            {"name": "per-key", "key": "api_key", "rate": 10, "period_secs": 60, "burst": 5,
             "tier_claim": "plan", "tiers": {"gold": {"rate": 100, "period_secs": 60, "burst": 50}}},
            {"name": "per-sub", "key": "sub", "rate": 20, "period_secs": 60, "burst": 5},
            {"name": "per-client", "key": "client_id", "rate": 30, "period_secs": 60, "burst": 5},
            {"name": "api-only", "key": "api_key", "path": "/api/*", "rate": 1, "period_secs": 1, "burst": 1}
        ]}
    })))
}

fn bucket<'a>(bs: &'a [Bucket], rule: &str) -> Option<&'a Bucket> {
    bs.iter().find(|b| b.rule == rule)
}

fn expected_key(rule: &str, kind: &str, value: &str) -> String {
    format!("{rule}:{kind}:{}", fingerprint(value.as_bytes()).trim_start_matches("sha256:"))
}

#[test]
fn api_key_rule_is_keyed_by_the_key_id() {
    let p = limits_policy();
    let rl = &p.rate_limits;
    let a = verified_key(1, "acme", &[], None);
    let b = verified_key(2, "acme", &[], None);
    let a_other_owner = verified_key(1, "globex", &[], None);
    let ba = rl.buckets("/x", Identity::ApiKey(&a), Some("203.0.113.5".parse().unwrap()));
    let bb = rl.buckets("/x", Identity::ApiKey(&b), None);
    let ka = bucket(&ba, "per-key").expect("api_key rule applies to an API key");
    assert_eq!(ka.key, expected_key("per-key", "api_key", a.id()));
    assert_ne!(ka.key, expected_key("per-key", "api_key", "acme"), "not keyed by owner");
    assert!(!ka.key.contains(a.id()), "identifiers are hashed");
    assert_eq!(ka.quota, Quota { rate: 10, period_secs: 60, burst: 5 });
    assert_ne!(bucket(&bb, "per-key").unwrap().key, ka.key, "different ids, different buckets");
    let bo = rl.buckets("/x", Identity::ApiKey(&a_other_owner), None);
    assert_eq!(bucket(&bo, "per-key").unwrap().key, ka.key, "same id, same bucket whoever the owner");
    // `sub` is the owner (in its own namespace: a JWT with `sub: "acme"` has another bucket),
    // `client_id` the key id.
    assert_eq!(bucket(&ba, "per-sub").unwrap().key, bucket(&bb, "per-sub").unwrap().key);
    assert_eq!(bucket(&ba, "per-sub").unwrap().key, expected_key("per-sub", "owner", "acme"));
    assert_ne!(bucket(&ba, "per-sub").unwrap().key, expected_key("per-sub", "sub", "acme"));
    assert_eq!(bucket(&ba, "per-client").unwrap().key, expected_key("per-client", "client", a.id()));
    // Path-scoped rule.
    assert!(bucket(&ba, "api-only").is_none());
    assert!(bucket(&rl.buckets("/api/v1", Identity::ApiKey(&a), None), "api-only").is_some());
}

#[test]
fn api_key_rule_does_not_apply_to_a_jwt() {
    let p = limits_policy();
    let t = jwt(&p, json!({"azp": "spa", "plan": "gold"}));
    let bs = p.rate_limits.buckets("/api/x", Identity::Token(&t), Some("203.0.113.5".parse().unwrap()));
    assert!(bucket(&bs, "per-key").is_none(), "{bs:?}");
    assert!(bucket(&bs, "api-only").is_none());
    assert_eq!(bucket(&bs, "per-sub").unwrap().key, expected_key("per-sub", "sub", "user-1"));
    assert_eq!(bucket(&bs, "per-client").unwrap().key, expected_key("per-client", "client", "spa"));
}

#[test]
fn tiers_pick_the_key_s_own_tier() {
    let p = limits_policy();
    let rl = &p.rate_limits;
    let gold = Quota { rate: 100, period_secs: 60, burst: 50 };
    let default = Quota { rate: 10, period_secs: 60, burst: 5 };
    for (tier, want) in [(Some("gold"), gold), (None, default), (Some("platinum"), default), (Some("Gold"), default)] {
        let k = verified_key(9, "acme", &[], tier);
        let bs = rl.buckets("/x", Identity::ApiKey(&k), None);
        assert_eq!(bucket(&bs, "per-key").unwrap().quota, want, "tier {tier:?}");
    }
    // A rule keyed by `sub` with tiers: a JWT's `plan` claim and a key's own tier both pick it.
    let p = policy(&doc_with(json!({
        "rate_limits": {"rules": [{"name": "by-sub", "key": "sub", "rate": 1, "period_secs": 1, "burst": 1,
            "tier_claim": "plan", "tiers": {"gold": {"rate": 9, "period_secs": 1, "burst": 9}}}]}
    })));
    let nine = Quota { rate: 9, period_secs: 1, burst: 9 };
    let k = verified_key(9, "acme", &[], Some("gold"));
    assert_eq!(p.rate_limits.buckets("/x", Identity::ApiKey(&k), None)[0].quota, nine);
    let t = jwt(&p, json!({"plan": "gold"}));
    assert_eq!(p.rate_limits.buckets("/x", Identity::Token(&t), None)[0].quota, nine);
    let t = jwt(&p, json!({}));
    assert_eq!(p.rate_limits.buckets("/x", Identity::Token(&t), None)[0].quota.rate, 1);
}

#[test]
fn rate_limit_key_names_are_validated() {
    let doc = doc_with(json!({"rate_limits": {"rules": [{"name": "x", "key": "apikey", "rate": 1, "period_secs": 1, "burst": 1}]}}));
    assert_eq!(config_err(&doc).0, "rate_limits.rules[0].key");
}

// ---------------------------------------------------------------------------------------------
// 11. Revocation
// ---------------------------------------------------------------------------------------------

fn key_facts(id: &str) -> TokenFacts<'_> {
    TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: Some(id) }
}

fn rev(target: Target, expires_at: i64) -> Revocation {
    Revocation { target, reason: "leaked in a CI log".into(), created_at: NOW, expires_at }
}

#[test]
fn a_revoked_key_id_is_refused_until_the_entry_expires() {
    let id = key_id(&[0x42; 12]);
    let other = key_id(&[0x43; 12]);
    let snap = RevocationSnapshot {
        version: 3,
        entries: vec![rev(Target::ApiKey { key_id: id.clone() }, NOW + 100), rev(Target::Kid { kid: other.clone() }, NOW + 100)],
    };
    let s = RevocationSet::from_snapshot(&snap, NOW);
    assert_eq!(s.version(), 3);
    assert_eq!(s.len(), 2);
    assert!(s.kinds().contains("api_key"));
    for now in [NOW, NOW + 99] {
        let e = s.check_parts(&key_facts(&id), now).unwrap_err();
        assert_eq!(e, AuthError::ApiKeyInvalid(ApiKeyFailure::Revoked), "at {now}");
        assert_eq!(e.rejection("edgeward"), AuthError::ApiKeyInvalid(ApiKeyFailure::Unknown).rejection("edgeward"));
        assert!(s.api_key_revoked(&id, now));
    }
    for now in [NOW + 100, NOW + 10_000] {
        assert_eq!(s.check_parts(&key_facts(&id), now), Ok(()), "after expiry at {now}");
        assert!(!s.api_key_revoked(&id, now));
    }
    // Another id is not revoked, and a JWT `kid` revocation with the same text does not reach
    // an API key (nor the reverse).
    assert_eq!(s.check_parts(&key_facts(&other), NOW), Ok(()));
    assert!(!s.api_key_revoked(&other, NOW));
    let jwt_facts = TokenFacts { iss: ISS, jti: None, sub: Some("user-1"), iat: Some(NOW as f64), kid: Some(&id), api_key: None };
    assert_eq!(s.check_parts(&jwt_facts, NOW), Ok(()));
    // Pruned when the set is rebuilt after expiry.
    let later = RevocationSet::from_snapshot(&snap, NOW + 100);
    assert!(later.is_empty());
    assert_eq!(later.check_parts(&key_facts(&id), NOW + 50), Ok(()));
}

#[test]
fn api_key_revocation_targets() {
    let t = Target::ApiKey { key_id: "key_0123456789abcdef01234567".into() };
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v, json!({"kind": "api_key", "key_id": "key_0123456789abcdef01234567"}));
    assert_eq!(serde_json::from_value::<Target>(v).unwrap(), t);
    assert_eq!(t.kind(), "api_key");
    assert_eq!(t.id(), Target::ApiKey { key_id: "key_0123456789abcdef01234567".into() }.id(), "stable id");
    assert_ne!(t.id(), Target::Kid { kid: "key_0123456789abcdef01234567".into() }.id(), "kinds never collide");
    assert_eq!(rev(t.clone(), NOW + 10).validate(NOW), Ok(()));
    assert_eq!(rev(Target::ApiKey { key_id: String::new() }, NOW + 10).validate(NOW).unwrap_err().field, "target.key_id");
    assert_eq!(rev(t, NOW).validate(NOW).unwrap_err().field, "expires_at");
}

// ---------------------------------------------------------------------------------------------
// Reproducers of fixed bugs
// ---------------------------------------------------------------------------------------------

/// `Cidr::parse` accepts an IPv4-mapped IPv6 range, but `contains` turns a mapped client address
/// into its IPv4 form first, so such an `allowed_ips` entry never matches anyone.
#[test]
fn bug_mapped_ipv6_allowed_ips_entry_never_matches() {
    assert_eq!(Cidr::parse("::ffff:203.0.113.0/120").map(|c| c.to_string()), Some("203.0.113.0/24".into()));
    assert_eq!(Cidr::parse("::ffff:0.0.0.0/95"), None, "a mapped prefix below /96 is ambiguous");
    assert_eq!(Cidr::parse("010.0.0.0/8"), None, "leading zeros (octal to some tools) are refused");
    for entry in ["::ffff:203.0.113.5", "::ffff:203.0.113.0/120"] {
        let c = Cidr::parse(entry).expect(entry);
        assert!(c.contains(ip("::ffff:203.0.113.5")), "{entry} accepted but does not contain the mapped client");
        assert!(c.contains(ip("203.0.113.5")), "{entry} accepted but does not contain the IPv4 client");
    }
}

/// An upstream credential may use the header of a forwarded claim: the origin then gets two
/// copies (the claim and the secret) instead of exactly one.
#[test]
fn bug_upstream_credential_header_may_collide_with_a_forwarded_claim() {
    let doc = doc_with(json!({
        "forward_claims": {"x-origin-auth": "sub"},
        "upstream_credentials": {"o": {"header": "X-Origin-Auth", "secret": "S"}}
    }));
    let refused = Policy::from_json(&doc.to_string()).unwrap_err();
    assert_eq!(refused.field, "upstream_credentials.o.header");
    if let Ok(p) = Policy::from_json(&doc.to_string()) {
        let v = verified_key(4, "acme", &[], None);
        let plan = plan_forward(&view("/x", &[]), Some(Identity::ApiKey(&v)), Some(("x-origin-auth", "s3cret")), &p, "r").unwrap();
        assert_eq!(values(&plan.headers, "x-origin-auth"), vec!["s3cret"], "exactly one copy");
    }
}
