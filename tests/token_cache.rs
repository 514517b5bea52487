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
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 10, max_ttl_secs: 10_000 });
    let (t, v, fp) = verified(1, NOW + 100);
    let h = token_hash(&t);
    assert!(c.get(&h, NOW).is_none());
    c.insert(h, v.clone(), fp, NOW);
    assert_eq!(c.get(&h, NOW + 99), Some(v), "hit before exp");
    assert!(c.get(&h, NOW + 100).is_none(), "never outlives exp (no leeway in the cache)");
    assert_eq!(c.len(), 0, "expired entry removed");
}

#[test]
fn ttl_cap_bounds_long_tokens() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 10, max_ttl_secs: 30 });
    let (t, v, fp) = verified(1, NOW + 3600);
    let h = token_hash(&t);
    c.insert(h, v, fp, NOW);
    assert!(c.get(&h, NOW + 29).is_some());
    assert!(c.get(&h, NOW + 30).is_none());
}

#[test]
fn capacity_is_bounded_lru() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 2, max_ttl_secs: 300 });
    let entries: Vec<_> = (1..=3u8).map(|s| verified(s, NOW + 100)).collect();
    let hashes: Vec<_> = entries.iter().map(|(t, _, _)| token_hash(t)).collect();
    c.insert(hashes[0], entries[0].1.clone(), entries[0].2.clone(), NOW);
    c.insert(hashes[1], entries[1].1.clone(), entries[1].2.clone(), NOW);
    assert!(c.get(&hashes[0], NOW).is_some(), "touch the first: the second is now least recent");
    c.insert(hashes[2], entries[2].1.clone(), entries[2].2.clone(), NOW);
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
    c.insert(token_hash(&t1), v1, fp1.clone(), NOW);
    c.insert(token_hash(&t2), v2, fp2.clone(), NOW);
    assert_eq!(c.retain_keys(1, &[]), 0, "other issuers untouched");
    assert_eq!(c.retain_keys(0, &[fp2.as_str()]), 1);
    assert!(c.get(&token_hash(&t1), NOW).is_none(), "signed by the removed key");
    assert!(c.get(&token_hash(&t2), NOW).is_some());
}

#[test]
fn zero_capacity_disables() {
    let mut c = TokenCache::new(&TokenCacheConfig { capacity: 0, max_ttl_secs: 300 });
    let (t, v, fp) = verified(1, NOW + 100);
    c.insert(token_hash(&t), v, fp, NOW);
    assert!(c.get(&token_hash(&t), NOW).is_none());
    assert!(c.is_empty());
}

#[test]
fn tampered_token_never_hits() {
    let mut c = TokenCache::new(&TokenCacheConfig::default());
    let (t, v, fp) = verified(1, NOW + 100);
    c.insert(token_hash(&t), v, fp, NOW);
    let tampered = flip_signature_byte(&t, 0, 1);
    assert!(c.get(&token_hash(&tampered), NOW).is_none());
}
