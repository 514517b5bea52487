//! The verified-token cache: hits, expiry at `exp`, the TTL cap, LRU bounds, and invalidation
//! when an issuer's key disappears.

mod common;

use common::*;
use edgeward::core::alg::Algorithm;
use edgeward::core::token_cache::{token_hash, TokenCache, TokenCacheConfig};
use serde_json::json;

fn verified(seed: u8, exp: i64) -> (String, edgeward::core::verify::VerifiedToken, String) {
    let k = key_seeded(Algorithm::EdDSA, seed);
    let p = single_key_policy(k, "k1");
    let jwk_fp = p.issuers[0].inline_keys.keys[0].fingerprint.clone();
    let token = key_seeded(Algorithm::EdDSA, seed).sign(Some("k1"), &with(claims(), json!({"exp": exp})));
    let v = verify(&p, &token).expect("valid token");
    (token, v, jwk_fp)
}

#[test]
fn hit_until_exp_then_gone() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 10, max_ttl_secs: 10_000, ..Default::default() });
    let (t, v, fp) = verified(1, NOW + 100);
    let h = token_hash(&t);
    assert!(c.get(&h, NOW).is_none());
    c.insert(h, &v, &fp, NOW);
    assert_eq!(c.get(&h, NOW + 99).map(|t| t.cached()), Some(v.cached()), "hit before exp");
    assert!(c.get(&h, NOW + 100).is_none(), "never outlives exp (no leeway in the cache)");
    assert_eq!(c.len(), 0, "expired entry removed");
}

#[test]
fn ttl_cap_bounds_long_tokens() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 10, max_ttl_secs: 30, ..Default::default() });
    let (t, v, fp) = verified(1, NOW + 3600);
    let h = token_hash(&t);
    c.insert(h, &v, &fp, NOW);
    assert!(c.get(&h, NOW + 29).is_some());
    assert!(c.get(&h, NOW + 30).is_none());
}

#[test]
fn capacity_is_bounded_lru() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 2, max_ttl_secs: 300, ..Default::default() });
    let entries: Vec<_> = (1..=3u8).map(|s| verified(s, NOW + 100)).collect();
    let hashes: Vec<_> = entries.iter().map(|(t, _, _)| token_hash(t)).collect();
    c.insert(hashes[0], &entries[0].1, &entries[0].2, NOW);
    c.insert(hashes[1], &entries[1].1, &entries[1].2, NOW);
    assert!(c.get(&hashes[0], NOW).is_some(), "touch the first: the second is now least recent");
    c.insert(hashes[2], &entries[2].1, &entries[2].2, NOW);
    assert_eq!(c.len(), 2);
    assert!(c.get(&hashes[1], NOW).is_none(), "least recently used evicted");
    assert!(c.get(&hashes[0], NOW).is_some() && c.get(&hashes[2], NOW).is_some());
}

#[test]
fn removed_key_invalidates_its_entries_only() {
    let mut c = TokenCache::new(&TokenCacheConfig::default());
    let (t1, v1, fp1) = verified(1, NOW + 100);
    let (t2, v2, fp2) = verified(2, NOW + 100);
    assert_ne!(fp1, fp2);
    c.insert(token_hash(&t1), &v1, &fp1, NOW);
    c.insert(token_hash(&t2), &v2, &fp2, NOW);
    assert_eq!(c.retain_keys(1, &[]), 0, "other issuers untouched");
    assert_eq!(c.retain_keys(0, &[fp2.as_str()]), 1);
    assert!(c.get(&token_hash(&t1), NOW).is_none(), "signed by the removed key");
    assert!(c.get(&token_hash(&t2), NOW).is_some());
}

#[test]
fn zero_capacity_disables() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 0, max_ttl_secs: 300, ..Default::default() });
    let (t, v, fp) = verified(1, NOW + 100);
    c.insert(token_hash(&t), &v, &fp, NOW);
    assert!(c.get(&token_hash(&t), NOW).is_none());
    assert!(c.is_empty());
}

#[test]
fn tampered_token_never_hits() {
    let mut c = TokenCache::new(&TokenCacheConfig::default());
    let (t, v, fp) = verified(1, NOW + 100);
    c.insert(token_hash(&t), &v, &fp, NOW);
    let tampered = flip_signature_byte(&t, 0, 1);
    assert!(c.get(&token_hash(&tampered), NOW).is_none());
}

#[test]
fn bytes_are_counted_per_entry_and_given_back() {
    let mut c = TokenCache::new(&TokenCacheConfig::default());
    let entries: Vec<_> = (1..=3u8).map(|s| verified(s, NOW + 100)).collect();
    let mut sizes = Vec::new();
    for (t, v, fp) in &entries {
        let before = c.bytes();
        c.insert(token_hash(t), v, fp, NOW);
        sizes.push(c.bytes() - before);
    }
    assert!(sizes.iter().all(|s| *s > 100 && *s == sizes[0]), "same shape, same size: {sizes:?}");
    // The same token again replaces its entry: counted once.
    c.insert(token_hash(&entries[0].0), &entries[0].1, &entries[0].2, NOW);
    assert_eq!((c.len(), c.bytes()), (3, 3 * sizes[0]));
    assert_eq!(c.retain_keys(0, &[entries[1].2.as_str(), entries[2].2.as_str()]), 1);
    assert_eq!(c.bytes(), 2 * sizes[0], "a dropped entry gives its bytes back");
    assert!(c.get(&token_hash(&entries[1].0), NOW + 100).is_none(), "expired");
    assert_eq!((c.len(), c.bytes()), (1, sizes[0]), "an expired entry gives its bytes back");
}

#[test]
fn max_bytes_evicts_the_least_recently_used_first() {
    let entries: Vec<_> = (1..=4u8).map(|s| verified(s, NOW + 100)).collect();
    let size = {
        let mut probe = TokenCache::new(&TokenCacheConfig::default());
        probe.insert(token_hash(&entries[0].0), &entries[0].1, &entries[0].2, NOW);
        probe.bytes()
    };
    // Room for two and a half entries; the entry bound is far away.
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 100, max_bytes: size * 5 / 2, ..Default::default() });
    let hashes: Vec<_> = entries.iter().map(|(t, _, _)| token_hash(t)).collect();
    c.insert(hashes[0], &entries[0].1, &entries[0].2, NOW);
    c.insert(hashes[1], &entries[1].1, &entries[1].2, NOW);
    assert!(c.get(&hashes[0], NOW).is_some(), "touch the first: the second is now least recent");
    c.insert(hashes[2], &entries[2].1, &entries[2].2, NOW);
    assert_eq!((c.len(), c.bytes()), (2, 2 * size));
    assert!(c.get(&hashes[1], NOW).is_none(), "least recently used evicted");
    assert!(c.get(&hashes[0], NOW).is_some() && c.get(&hashes[2], NOW).is_some());
    c.insert(hashes[3], &entries[3].1, &entries[3].2, NOW);
    assert!(c.bytes() <= size * 5 / 2 && c.len() == 2);
    assert!(c.get(&hashes[0], NOW).is_none(), "then the next least recent");

    // An entry larger than the whole budget is not cached, and evicts nothing.
    let mut tiny = TokenCache::new(&TokenCacheConfig { max_bytes: size - 1, ..Default::default() });
    tiny.insert(hashes[0], &entries[0].1, &entries[0].2, NOW);
    assert_eq!((tiny.len(), tiny.bytes()), (0, 0));
}

#[test]
fn max_bytes_is_validated() {
    for (bytes, ok) in [(0, false), (1023, false), (1024, true), (8 << 20, true), (1 << 30, true), ((1 << 30) + 1, false)] {
        let r = TokenCacheConfig { max_bytes: bytes, ..Default::default() }.validate();
        assert_eq!(r.is_ok(), ok, "{bytes}");
        if let Err((field, message)) = r {
            assert_eq!(field, "token_cache.max_bytes");
            assert!(message.contains("1024"), "{message}");
        }
    }
    let mut doc = config(vec![issuer_entry(Some(ISS), &["EdDSA"], vec![key(Algorithm::EdDSA).jwk("k1", json!({}))])]);
    doc["token_cache"] = json!({"max_bytes": 100});
    let e = edgeward::core::config::Policy::from_json(&doc.to_string()).unwrap_err();
    assert_eq!(e.field, "token_cache.max_bytes");
}

/// A typical IdP's 13-claim token (the one `examples/bench_token_cache.rs` measures) under the
/// default policy: the entry stays within the 400 bytes issue 21 asks for (this estimate; the
/// bench measures the allocator's count).
#[test]
fn a_typical_entry_fits_in_400_bytes() {
    let k = key_seeded(Algorithm::EdDSA, 1);
    let p = single_key_policy(k, "k1");
    let fp = p.issuers[0].inline_keys.keys[0].fingerprint.clone();
    let token = key_seeded(Algorithm::EdDSA, 1).sign(
        Some("k1"),
        &with(
            claims(),
            json!({"sub": "8c6f0a4e-2b1d-4d7a-9f3e-000000000000", "nbf": NOW - 10, "jti": "f2d9c1b0-7a6e-4c3d-8b2a-000000000000",
                "azp": "0oa9f3c7b", "scope": "openid profile email", "email": "jdoe.000000@example.com", "name": "Jane Doe",
                "given_name": "Jane", "family_name": "Doe"}),
        ),
    );
    let v = verify(&p, &token).expect("valid token");
    assert_eq!(v.claims().map(|c| c.len()), Some(13));
    let mut c = TokenCache::new(&TokenCacheConfig::default());
    c.insert(token_hash(&token), &v, &fp, NOW);
    assert!(c.bytes() <= 400, "{} bytes", c.bytes());
}
