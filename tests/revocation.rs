//! Revocation checks on fixed `now`: jti scoped to its issuer, subject watermarks, key ids,
//! expiry pruning, stable ids (idempotence) and input validation; the compact snapshot the edge
//! reads (round trip, pruning, malformed input refused).

mod common;

use common::*;
use edgeward::core::alg::Algorithm;
use edgeward::core::revocation::{Revocation, RevocationSet, RevocationSnapshot, Target, TokenFacts};
use serde_json::json;

fn token(extra: serde_json::Value) -> edgeward::core::verify::VerifiedToken {
    let k = key_seeded(Algorithm::EdDSA, 3);
    let p = single_key_policy(k, "k1");
    let t = key_seeded(Algorithm::EdDSA, 3).sign(Some("k1"), &with(claims(), extra));
    verify(&p, &t).expect("valid")
}

fn rev(target: Target, expires_at: i64) -> Revocation {
    Revocation { target, reason: "test".into(), created_at: NOW, expires_at }
}

fn set(entries: Vec<Revocation>) -> RevocationSet {
    RevocationSet::from_snapshot(&RevocationSnapshot { version: 7, entries }, NOW)
}

#[test]
fn jti_is_scoped_to_its_issuer() {
    let t = token(json!({"jti": "abc"}));
    let s = set(vec![rev(Target::Jti { iss: ISS.into(), jti: "abc".into() }, NOW + 100)]);
    assert_eq!(s.check(&t, NOW).unwrap_err().code(), "token_revoked");
    let other_iss = set(vec![rev(Target::Jti { iss: "https://other".into(), jti: "abc".into() }, NOW + 100)]);
    assert!(other_iss.check(&t, NOW).is_ok());
    assert!(s.check(&token(json!({"jti": "abd"})), NOW).is_ok());
    assert_eq!(s.version(), 7);
}

#[test]
fn subject_watermark_revokes_older_tokens_only() {
    let sub = claims()["sub"].as_str().unwrap().to_string();
    let s = set(vec![rev(Target::SubjectBefore { iss: ISS.into(), sub: sub.clone(), before: NOW - 10 }, NOW + 100)]);
    assert!(s.check(&token(json!({"iat": NOW - 11})), NOW).is_err(), "issued before the watermark");
    assert!(s.check(&token(json!({"iat": NOW - 10})), NOW).is_ok(), "issued at the watermark");
    let mut no_iat = claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    let k = key_seeded(Algorithm::EdDSA, 3);
    let p = single_key_policy(k, "k1");
    let t = verify(&p, &key_seeded(Algorithm::EdDSA, 3).sign(Some("k1"), &no_iat)).unwrap();
    assert!(s.check(&t, NOW).is_err(), "no iat cannot prove it is newer");
    // Two watermarks for one subject: the later wins.
    let s2 = set(vec![
        rev(Target::SubjectBefore { iss: ISS.into(), sub: sub.clone(), before: NOW - 100 }, NOW + 100),
        rev(Target::SubjectBefore { iss: ISS.into(), sub, before: NOW - 5 }, NOW + 100),
    ]);
    assert!(s2.check(&token(json!({"iat": NOW - 50})), NOW).is_err());
}

#[test]
fn kid_revocation_and_expiry_pruning() {
    let t = token(json!({}));
    let s = set(vec![rev(Target::Kid { kid: "k1".into() }, NOW + 5)]);
    assert!(s.check(&t, NOW).is_err());
    assert!(s.check(&t, NOW + 5).is_ok(), "expired revocations stop applying");
    let pruned = set(vec![rev(Target::Kid { kid: "k1".into() }, NOW)]);
    assert!(pruned.is_empty(), "already expired entries are not loaded");
    let api = set(vec![rev(Target::ApiKey { key_id: "key_1".into() }, NOW + 5)]);
    assert!(api.api_key_revoked("key_1", NOW) && !api.api_key_revoked("key_2", NOW));
}

#[test]
fn ids_are_stable_and_watermark_updates_are_idempotent() {
    let a = Target::Jti { iss: ISS.into(), jti: "x".into() };
    assert_eq!(a.id(), Target::Jti { iss: ISS.into(), jti: "x".into() }.id());
    assert_ne!(a.id(), Target::Jti { iss: ISS.into(), jti: "y".into() }.id());
    let w1 = Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: 1 };
    let w2 = Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: 2 };
    assert_eq!(w1.id(), w2.id(), "one entry per subject");
    assert_ne!(Target::Kid { kid: "x".into() }.id(), Target::ApiKey { key_id: "x".into() }.id());
}

#[test]
fn validation_rejects_bad_input() {
    let ok = rev(Target::Jti { iss: ISS.into(), jti: "x".into() }, NOW + 10);
    assert!(ok.validate(NOW).is_ok());
    let cases = [
        (rev(Target::Jti { iss: "".into(), jti: "x".into() }, NOW + 10), "target.iss"),
        (rev(Target::Kid { kid: "a\nb".into() }, NOW + 10), "target.kid"),
        (rev(Target::Jti { iss: ISS.into(), jti: "x".into() }, NOW), "expires_at"),
        (rev(Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: NOW + 100_000 }, NOW + 10), "target.before"),
    ];
    for (r, field) in cases {
        assert_eq!(r.validate(NOW).unwrap_err().field, field);
    }
    let mut long = ok.clone();
    long.reason = "x".repeat(201);
    assert_eq!(long.validate(NOW).unwrap_err().field, "reason");
    let parsed: Result<Revocation, _> =
        serde_json::from_value(json!({"target": {"kind": "jti", "iss": "i", "jti": "j", "extra": 1}, "reason": "", "created_at": 1, "expires_at": 2}));
    assert!(parsed.is_err(), "unknown fields refused");
}

#[test]
fn ids_are_the_sha256_prefix_of_the_canonical_target() {
    // The admin API's ids predate the compact snapshot: they must not change.
    let t = Target::Jti { iss: ISS.into(), jti: "x".into() };
    let want = edgeward::core::log::fingerprint(format!("jti\n{ISS}\nx").as_bytes());
    assert_eq!(format!("sha256:{}", t.id()), want);
    assert_eq!(t.id(), format!("{:016x}", t.id_u64()));
    let s = Target::SubjectBefore { iss: ISS.into(), sub: "u".into(), before: 5 };
    assert_eq!(format!("sha256:{}", s.id()), edgeward::core::log::fingerprint(format!("sub\n{ISS}\nu").as_bytes()));
}

fn mixed() -> Vec<Revocation> {
    let sub = claims()["sub"].as_str().unwrap().to_string();
    vec![
        rev(Target::Jti { iss: ISS.into(), jti: "abc".into() }, NOW + 100),
        rev(Target::Jti { iss: ISS.into(), jti: "gone".into() }, NOW),
        rev(Target::SubjectBefore { iss: ISS.into(), sub: sub.clone(), before: NOW - 100 }, NOW + 100),
        rev(Target::SubjectBefore { iss: ISS.into(), sub, before: NOW - 10 }, NOW + 50),
        rev(Target::SubjectBefore { iss: ISS.into(), sub: "other".into(), before: NOW - 10 }, NOW + 100),
        rev(Target::Kid { kid: "k-old".into() }, NOW + 5),
        rev(Target::ApiKey { key_id: "key_1".into() }, NOW + 30),
    ]
}

#[test]
fn compact_round_trip_gives_the_same_verdicts() {
    let full = set(mixed());
    let bytes = full.to_compact();
    let back = RevocationSet::from_compact(&bytes, NOW).expect("decodes");
    assert_eq!(back.version(), 7);
    assert_eq!(back.len(), full.len());
    assert_eq!(back.kinds(), full.kinds());
    assert_eq!(back.to_compact(), bytes, "deterministic encoding");
    assert_eq!(bytes.len(), 17 + 5 * 17 + 2 * 8, "header + 5 records of 17 bytes, two subjects 8 more");
    let tokens = [
        token(json!({"jti": "abc"})),
        token(json!({"jti": "abd"})),
        token(json!({"jti": "gone"})),
        token(json!({"iat": NOW - 50})),
        token(json!({"iat": NOW - 5})),
    ];
    for when in [NOW, NOW + 5, NOW + 40, NOW + 60, NOW + 200] {
        for t in &tokens {
            assert_eq!(full.check(t, when).is_ok(), back.check(t, when).is_ok(), "same verdict at {when}");
        }
        for (iss, sub, iat, kid, api_key) in [
            (ISS, Some("other"), Some((NOW - 11) as f64), None, None),
            (ISS, Some("other"), None, None, None),
            ("https://elsewhere", Some("other"), None, None, None),
            (ISS, None, None, Some("k-old"), None),
            ("", None, None, None, Some("key_1")),
            ("", None, None, None, Some("key_2")),
        ] {
            let f = TokenFacts { iss, jti: None, sub, iat, kid, api_key };
            assert_eq!(full.check_parts(&f, when).map_err(|e| e.code()), back.check_parts(&f, when).map_err(|e| e.code()));
        }
        assert_eq!(full.api_key_revoked("key_1", when), back.api_key_revoked("key_1", when));
    }
    assert!(back.check(&tokens[0], NOW).is_err() && back.check(&tokens[3], NOW).is_err(), "the verdicts are not all ok");
    assert!(back.check(&tokens[4], NOW).is_ok(), "the later watermark (NOW - 10) applies, not the earlier one");
}

#[test]
fn compact_decode_prunes_expired_entries() {
    let bytes = set(mixed()).to_compact();
    let later = RevocationSet::from_compact(&bytes, NOW + 40).unwrap();
    // At NOW + 40: kid (NOW + 5) and api key (NOW + 30) have expired.
    assert_eq!(later.len(), 3);
    assert!(!later.kinds().contains("kid") && !later.kinds().contains("api_key"));
    assert!(RevocationSet::from_compact(&bytes, NOW + 1000).unwrap().is_empty());
    assert!(RevocationSet::from_compact(&RevocationSet::default().to_compact(), NOW).unwrap().is_empty());
}

#[test]
fn malformed_compact_snapshots_are_refused() {
    let good = set(mixed()).to_compact();
    let mut cases: Vec<Vec<u8>> =
        vec![vec![], b"EWRV".to_vec(), b"{\"version\":1,\"entries\":[]}".to_vec(), good[..good.len() - 1].to_vec(), [good.clone(), vec![0]].concat()];
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut bad_format = good.clone();
    bad_format[4] = 1;
    let mut bad_kind = good.clone();
    bad_kind[17] = 9;
    let mut big_count = good.clone();
    big_count[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut small_count = good.clone();
    small_count[13..17].copy_from_slice(&1u32.to_be_bytes());
    cases.extend([bad_magic, bad_format, bad_kind, big_count, small_count]);
    for (i, c) in cases.iter().enumerate() {
        assert!(RevocationSet::from_compact(c, NOW).is_err(), "case {i} refused");
    }
    // Every truncation and every single-byte corruption: an error or a set, never a panic.
    for n in 0..good.len() {
        let _ = RevocationSet::from_compact(&good[..n], NOW);
        for v in [0u8, 0xff, 0x02] {
            let mut c = good.clone();
            c[n] = v;
            let _ = RevocationSet::from_compact(&c, NOW);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sharded snapshot (format 3)
// ---------------------------------------------------------------------------------------------

use edgeward::core::revocation::{
    decode_shard, encode_shard, shard_bits_for, shard_of, shard_range, sharded_snapshot, Manifest, Record, ShardRef, KIND_JTI, MAX_SHARD_BITS, SHARD_TARGET,
};

#[test]
fn shards_partition_the_id_space() {
    for bits in 0..=MAX_SHARD_BITS {
        let n = 1usize << bits;
        let mut next = 0u64;
        for i in 0..n {
            let (lo, hi) = shard_range(bits, i);
            assert_eq!(lo, next, "bits {bits}: shard {i} starts where the last ended");
            assert_eq!((shard_of(lo, bits), shard_of(hi, bits)), (i, i));
            next = hi.wrapping_add(1);
        }
        assert_eq!(next, 0, "bits {bits}: the last shard ends at u64::MAX");
    }
}

#[test]
fn shard_count_follows_the_list_with_hysteresis() {
    assert_eq!(shard_bits_for(0, 0), 0);
    assert_eq!(shard_bits_for(SHARD_TARGET, 0), 0);
    assert_eq!(shard_bits_for(SHARD_TARGET + 1, 0), 1);
    assert_eq!(shard_bits_for(1_000_000, 0), 4, "a million entries: 16 shards of about 62,500");
    assert_eq!(shard_bits_for(usize::MAX, 0), MAX_SHARD_BITS);
    // Shrinks only below a quarter of the target per shard.
    assert_eq!(shard_bits_for(SHARD_TARGET / 2, 1), 1);
    assert_eq!(shard_bits_for(SHARD_TARGET / 4 - 1, 1), 0);
    assert_eq!(shard_bits_for(1_000_000, 4), 4);
    assert_eq!(shard_bits_for(200_000, 4), 4);
    assert_eq!(shard_bits_for(100_000, 4), 3);
}

#[test]
fn manifest_round_trip_and_refusals() {
    let m = Manifest {
        version: 9,
        bits: 2,
        shards: vec![ShardRef { version: 9, count: 3 }, ShardRef::default(), ShardRef { version: 4, count: 1 }, ShardRef { version: 9, count: 0 }],
    };
    let b = m.encode();
    assert_eq!(b.len(), 14 + 4 * 12);
    assert_eq!(Manifest::decode(&b).unwrap(), m);
    assert_eq!((m.len(), m.shard_key(2).as_str()), (4, "revocations:v3:2:2:4"));
    let mut bad_bits = b.clone();
    bad_bits[13] = MAX_SHARD_BITS + 1;
    let mut other_bits = b.clone();
    other_bits[13] = 3;
    let mut format = b.clone();
    format[4] = 2;
    for (i, c) in [vec![], b[..13].to_vec(), b[..b.len() - 1].to_vec(), [b.clone(), vec![0]].concat(), bad_bits, other_bits, format].iter().enumerate() {
        assert!(Manifest::decode(c).is_err(), "case {i} refused");
    }
    for n in 0..b.len() {
        let _ = Manifest::decode(&b[..n]);
    }
}

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| rev(Target::Jti { iss: ISS.into(), jti: format!("j{i}") }, NOW + 100 + i as i64).record()).collect()
}

#[test]
fn shard_round_trip_and_refusals() {
    let bits = 2;
    let all = records(40);
    let i = shard_of(all[0].id, bits);
    let mut mine: Vec<Record> = all.iter().copied().filter(|r| shard_of(r.id, bits) == i).collect();
    let b = encode_shard(7, bits, i, &mut mine);
    let s = decode_shard(&b, bits, i, 7, NOW).unwrap();
    assert_eq!(s.len(), mine.len());
    assert!(s.heap_bytes() >= 12 * mine.len());
    // Expired entries are dropped when read.
    let later = decode_shard(&b, bits, i, 7, mine.iter().map(|r| r.expires_at).min().unwrap()).unwrap();
    assert_eq!(later.len(), mine.len() - 1);
    // Another version, place or layout than the manifest names: refused.
    assert!(decode_shard(&b, bits, i, 8, NOW).is_err());
    assert!(decode_shard(&b, bits, (i + 1) % 4, 7, NOW).is_err());
    assert!(decode_shard(&b, 3, i, 7, NOW).is_err());
    // A record outside the shard's range: refused.
    let foreign = all.iter().copied().find(|r| shard_of(r.id, bits) != i).unwrap();
    let mut with_foreign = [mine.clone(), vec![foreign]].concat();
    assert!(decode_shard(&encode_shard(7, bits, i, &mut with_foreign), bits, i, 7, NOW).is_err());
    // Every truncation and single-byte corruption: an error or a shard, never a panic.
    for n in 0..b.len() {
        assert!(decode_shard(&b[..n], bits, i, 7, NOW).is_err());
        for v in [0u8, 0xff, 0x02] {
            let mut c = b.clone();
            c[n] = v;
            let _ = decode_shard(&c, bits, i, 7, NOW);
        }
    }
}

/// The sharded publication, read shard by shard, gives the verdicts of the full list.
#[test]
fn sharded_snapshot_gives_the_same_verdicts() {
    let entries = mixed();
    let full = set(entries.clone());
    for bits in [0u8, 1, 3] {
        let recs: Vec<Record> = entries.iter().map(Revocation::record).collect();
        // Lay the records out in 2^bits shards by hand (sharded_snapshot picks bits from the length).
        let mut shards = Vec::new();
        let mut m = Manifest { version: 7, bits, shards: vec![] };
        for i in 0..1usize << bits {
            let mut mine: Vec<Record> = recs.iter().copied().filter(|r| shard_of(r.id, bits) == i).collect();
            m.shards.push(ShardRef { version: 7, count: mine.len() as u32 });
            shards.push(encode_shard(7, bits, i, &mut mine));
        }
        let mut s = RevocationSet::for_manifest(&m);
        assert_eq!(s.stale_shards(&m).unwrap().len(), 1 << bits, "nothing read yet");
        for (i, b) in shards.iter().enumerate() {
            assert!(!s.install(bits + 1, i, 7, Default::default()), "another layout's shard is refused");
            assert!(s.install(bits, i, 7, decode_shard(b, bits, i, 7, NOW).unwrap()));
        }
        s.set_version(7);
        assert_eq!(s.stale_shards(&m).unwrap(), Vec::<usize>::new());
        assert_eq!((s.len(), s.kinds(), s.version(), s.shards()), (full.len(), full.kinds(), 7, 1 << bits));
        assert_eq!(s.to_compact(), full.to_compact(), "bits {bits}: the same list");
        assert!(!s.install(bits, 1 << bits, 7, Default::default()), "no such shard");
        // An older shard does not replace a newer one.
        s.install(bits, 0, 6, Default::default());
        assert_eq!(s.len(), full.len());
        // The same verdicts as the full list, through lookups.
        for when in [NOW, NOW + 5, NOW + 40, NOW + 200] {
            for f in facts_to_check() {
                assert_eq!(s.check_parts(&f, when).map_err(|e| e.code()), full.check_parts(&f, when).map_err(|e| e.code()), "bits {bits} at {when}: {f:?}");
            }
        }
        assert_eq!(RevocationSet::default().stale_shards(&m).is_none(), bits != 0, "another layout is rebuilt");
    }
    let (m, values) =
        sharded_snapshot(3, records(10).into_iter().chain(std::iter::once(Record { kind: KIND_JTI, id: 1, expires_at: NOW, before: 0 })).collect(), NOW);
    assert_eq!((m.bits, m.len(), values.len()), (0, 10, 1), "ten live entries: one shard (the expired one left out)");
    assert_eq!(values[0].0, m.shard_key(0));
}

#[test]
fn natural_expiry_is_when_no_matching_token_can_verify() {
    let jti = Target::Jti { iss: ISS.into(), jti: "a".into() };
    let sub = Target::SubjectBefore { iss: ISS.into(), sub: "s".into(), before: NOW - 100 };
    assert_eq!(jti.natural_expiry(Some(NOW + 600), NOW, 60, Some(86_400)), Some(NOW + 660), "the token's exp plus leeway");
    assert_eq!(jti.natural_expiry(None, NOW, 60, Some(86_400)), Some(NOW + 86_400 + 120));
    assert_eq!(jti.natural_expiry(None, NOW, 60, None), None, "unlimited lifetimes: no bound");
    assert_eq!(sub.natural_expiry(None, NOW, 60, Some(3_600)), Some(NOW + 3_600 + 120), "from now: before is past");
    let ahead = Target::SubjectBefore { iss: ISS.into(), sub: "s".into(), before: NOW + 500 };
    assert_eq!(ahead.natural_expiry(None, NOW, 60, Some(3_600)), Some(NOW + 500 + 3_600 + 120), "from before: it is ahead");
    assert_eq!(sub.natural_expiry(Some(NOW), NOW, 60, None), None);
    assert_eq!(Target::Kid { kid: "k".into() }.natural_expiry(Some(NOW + 5), NOW, 60, Some(60)), None);
    assert_eq!(Target::ApiKey { key_id: "k".into() }.natural_expiry(None, NOW, 60, Some(60)), None);
}

#[test]
fn ledger_lookups_are_the_ids_a_check_reads() {
    let f = TokenFacts { iss: ISS, jti: Some("j"), sub: Some("s"), iat: None, kid: Some("k"), api_key: None };
    let ids: Vec<u64> = f.lookups().into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids,
        [
            Target::Jti { iss: ISS.into(), jti: "j".into() }.id_u64(),
            Target::SubjectBefore { iss: ISS.into(), sub: "s".into(), before: 0 }.id_u64(),
            Target::Kid { kid: "k".into() }.id_u64()
        ]
    );
    let key = TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: Some("key_1") };
    assert_eq!(key.lookups(), [(4, Target::ApiKey { key_id: "key_1".into() }.id_u64())]);
    // The ledger's check: the rows of those ids, as a one-shard set, gives the full set's verdict.
    let full = set(mixed());
    for facts in [f, key, TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: Some("key_2") }] {
        let ids: Vec<u64> = facts.lookups().into_iter().map(|(_, id)| id).collect();
        let rows: Vec<Record> = mixed().iter().map(Revocation::record).filter(|r| ids.contains(&r.id)).collect();
        let small = RevocationSet::from_records(7, rows, NOW);
        assert_eq!(small.check_parts(&facts, NOW).is_err(), full.check_parts(&facts, NOW).is_err());
    }
}

/// Facts that hit and miss every kind of `mixed()`.
fn facts_to_check() -> Vec<TokenFacts<'static>> {
    let sub: &'static str = Box::leak(claims()["sub"].as_str().unwrap().to_string().into_boxed_str());
    vec![
        TokenFacts { iss: ISS, jti: Some("abc"), sub: None, iat: None, kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: Some("abd"), sub: None, iat: None, kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: Some("gone"), sub: None, iat: None, kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: None, sub: Some(sub), iat: Some((NOW - 50) as f64), kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: None, sub: Some(sub), iat: Some((NOW - 5) as f64), kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: None, sub: Some("other"), iat: None, kid: None, api_key: None },
        TokenFacts { iss: ISS, jti: None, sub: None, iat: None, kid: Some("k-old"), api_key: None },
        TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: Some("key_1") },
        TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: Some("key_2") },
    ]
}

/// Any input order gives the same tables and the same bytes: the records are sorted (by kind,
/// then id) and duplicates merged whatever order they arrive in.
#[test]
fn record_order_does_not_matter() {
    let mut recs: Vec<Record> = records(500);
    recs.extend(mixed().iter().map(Revocation::record));
    let sorted = RevocationSet::from_records(1, recs.clone(), NOW).to_compact();
    // A deterministic shuffle (xorshift), then reversed, then with every record twice.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..recs.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        recs.swap(i, (x % (i as u64 + 1)) as usize);
    }
    assert_eq!(RevocationSet::from_records(1, recs.clone(), NOW).to_compact(), sorted);
    recs.reverse();
    assert_eq!(RevocationSet::from_records(1, recs.clone(), NOW).to_compact(), sorted);
    let twice = [recs.clone(), recs.clone()].concat();
    assert_eq!(RevocationSet::from_records(1, twice, NOW).to_compact(), sorted);
    // Every entry is found by lookup (a table out of order would miss some: binary search).
    let shuffled = RevocationSet::from_records(1, recs, NOW);
    for i in 0..500 {
        let jti = format!("j{i}");
        let f = TokenFacts { iss: ISS, jti: Some(&jti), sub: None, iat: None, kid: None, api_key: None };
        assert!(shuffled.check_parts(&f, NOW).is_err(), "{jti} is found");
    }
    // And the bytes are in (kind, id) order.
    let back = RevocationSet::from_compact(&sorted, NOW).unwrap();
    assert_eq!(back.len(), 500 + 5, "the expired one and the earlier watermark of the same subject merged away");
    let mut ids = Vec::new();
    let mut i = 17;
    while i < sorted.len() {
        ids.push((sorted[i], u64::from_be_bytes(sorted[i + 1..i + 9].try_into().unwrap())));
        i += if sorted[i] == 2 { 25 } else { 17 };
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
