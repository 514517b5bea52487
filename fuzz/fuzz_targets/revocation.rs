//! The revocation snapshot decoders: the compact binary snapshot the edge reads from KV
//! (`RevocationSet::from_compact`) and the full JSON snapshot of the ledger
//! (`RevocationSnapshot` through `json::from_text`, then `RevocationSet::from_snapshot`).
//!
//! Input, first byte = mode: even, the rest is a compact snapshot; odd, the rest is JSON.
//!
//! Checks: no panic; the compact decoder agrees with a reference decoder written here from the
//! format in the module docs (magic, format 2, version, count, records of kind 1–4, nothing
//! trailing; expired entries dropped; a later subject watermark wins, a later duplicate id
//! replaces an earlier one) on whether the bytes are accepted and on the set they give; a decoded
//! set re-encodes to a canonical snapshot that decodes to the same set (a fixed point); a JSON
//! snapshot's set survives the compact round trip with the same verdicts, and every live entry
//! revokes the token facts it names (a `jti`, a subject's token issued before the watermark or
//! without `iat`, a `kid`, an API key id); `Revocation::validate` never panics.
#![no_main]

mod common;

use common::{flags, text, NOW};
use edgeward::core::json::from_text;
use edgeward::core::revocation::{RevocationSet, RevocationSnapshot, Target, TokenFacts, COMPACT_FORMAT};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

/// The reference decoder: canonical bytes of the live set, or `None` if the input is malformed.
fn reference(bytes: &[u8], now: i64) -> Option<Vec<u8>> {
    let rd8 = |i: usize| -> Option<u64> { bytes.get(i..i + 8).map(|b| u64::from_be_bytes(b.try_into().unwrap())) };
    if bytes.get(..4)? != b"EWRV" || *bytes.get(4)? != COMPACT_FORMAT {
        return None;
    }
    let version = rd8(5)?;
    let count = u32::from_be_bytes(bytes.get(13..17)?.try_into().unwrap());
    let mut maps: [BTreeMap<u64, (i64, i64)>; 4] = Default::default();
    let mut i = 17;
    for _ in 0..count {
        let kind = *bytes.get(i)?;
        let id = rd8(i + 1)?;
        let exp = rd8(i + 9)? as i64;
        i += 17;
        let before = if kind == 2 {
            let b = rd8(i)? as i64;
            i += 8;
            b
        } else {
            0
        };
        if !(1..=4).contains(&kind) {
            return None;
        }
        if exp <= now {
            continue;
        }
        let m = &mut maps[usize::from(kind - 1)];
        if kind == 2 {
            match m.get(&id) {
                Some(&(b0, _)) if before <= b0 => {}
                _ => {
                    m.insert(id, (before, exp));
                }
            }
        } else {
            m.insert(id, (0, exp));
        }
    }
    if i != bytes.len() {
        return None;
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"EWRV");
    out.push(COMPACT_FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(maps.iter().map(BTreeMap::len).sum::<usize>() as u32).to_be_bytes());
    for (k, m) in maps.iter().enumerate() {
        for (id, (before, exp)) in m {
            out.push(k as u8 + 1);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&exp.to_be_bytes());
            if k == 1 {
                out.extend_from_slice(&before.to_be_bytes());
            }
        }
    }
    Some(out)
}

fn round_trip(s: &RevocationSet) -> RevocationSet {
    let enc = s.to_compact();
    let back = RevocationSet::from_compact(&enc, NOW).unwrap_or_else(|e| panic!("own snapshot refused: {e}"));
    assert_eq!(back.to_compact(), enc, "re-encoding is not a fixed point");
    assert_eq!((back.len(), back.version()), (s.len(), s.version()));
    back
}

fn facts(t: &Target) -> TokenFacts<'_> {
    let none = TokenFacts { iss: "", jti: None, sub: None, iat: None, kid: None, api_key: None };
    match t {
        Target::Jti { iss, jti } => TokenFacts { iss, jti: Some(jti.as_str()), ..none },
        // An `iat` just before the watermark (where an f64 can still tell them apart).
        Target::SubjectBefore { iss, sub, before } => {
            let iat = (before.unsigned_abs() < 1 << 52).then(|| *before as f64 - 1.0);
            TokenFacts { iss, sub: Some(sub.as_str()), iat, ..none }
        }
        Target::Kid { kid } => TokenFacts { kid: Some(kid.as_str()), ..none },
        Target::ApiKey { key_id } => TokenFacts { api_key: Some(key_id.as_str()), ..none },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = flags(data) else { return };
    if mode & 1 == 0 {
        let got = RevocationSet::from_compact(rest, NOW);
        let want = reference(rest, NOW);
        match (&got, &want) {
            (Ok(s), Some(w)) => {
                assert_eq!(&s.to_compact(), w, "decoded set differs from the reference");
                round_trip(s);
            }
            (Err(_), None) => {}
            _ => panic!("decoder {:?} but reference {:?} on {rest:02x?}", got.as_ref().map(|s| s.len()), want.as_ref().map(|w| w.len())),
        }
        return;
    }
    let Ok(snap) = from_text::<RevocationSnapshot>(&text(rest)) else { return };
    for r in &snap.entries {
        let _ = r.validate(NOW);
    }
    let set = RevocationSet::from_snapshot(&snap, NOW);
    let back = round_trip(&set);
    for r in &snap.entries {
        let f = facts(&r.target);
        let a = set.check_parts(&f, NOW);
        assert_eq!(a, back.check_parts(&f, NOW), "verdicts differ after the compact round trip for {r:?}");
        if let Target::SubjectBefore { .. } = r.target {
            let no_iat = TokenFacts { iat: None, ..f };
            assert_eq!(set.check_parts(&no_iat, NOW), back.check_parts(&no_iat, NOW));
            if r.expires_at > NOW {
                assert!(set.check_parts(&no_iat, NOW).is_err(), "live watermark does not revoke a token without iat: {r:?}");
            }
        }
        if r.expires_at > NOW {
            assert!(a.is_err(), "live revocation does not revoke what it names: {r:?}");
        }
    }
});
