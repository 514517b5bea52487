//! Host tests of the JWKS cache state machine (`IssuerKeyCache`): when to fetch, TTLs, the
//! unknown-kid cooldown, failure handling, one refresh at a time, and persistence.
//! All times are explicit; nothing sleeps.

mod common;

use common::*;
use edgeward::core::alg::Algorithm::*;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::jwk::{KeyMaterial, KeySet};
use edgeward::core::jwks_cache::{FetchOutcome, FetchPlan, Freshness, IssuerKeyCache, JwksCacheConfig, JwksSnapshot, Trigger, MAX_JWKS_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};

const URI: &str = "https://issuer.example/.well-known/jwks.json";

fn cfg() -> JwksCacheConfig {
    JwksCacheConfig::default() // min 300, max 86400, cooldown 30, max_stale 86400, timeout 5000 ms
}

fn jwks(keys: Vec<Value>) -> String {
    json!({ "keys": keys }).to_string()
}

/// A JWKS with one Ed25519 key (kid "a").
fn doc_a() -> String {
    jwks(vec![key(EdDSA).jwk("a", json!({"use": "sig"}))])
}

/// A rotated JWKS: key "b" only.
fn doc_b() -> String {
    jwks(vec![key_seeded(EdDSA, 1).jwk("b", json!({}))])
}

fn ok(cache_control: Option<&str>, body: String) -> FetchOutcome {
    FetchOutcome::Response { status: 200, cache_control: cache_control.map(str::to_owned), body }
}

fn kids(set: Option<&KeySet>) -> Vec<String> {
    set.map(|s| s.keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect()).unwrap_or_default()
}

/// A cache that fetched `doc_a` at `at` with `max-age=ttl`.
fn fetched_at(at: i64, ttl: i64) -> IssuerKeyCache {
    let mut c = IssuerKeyCache::new(URI, cfg());
    assert_eq!(c.plan(at, Trigger::Request), FetchPlan::Now);
    c.begin(at);
    let r = c.complete(at, ok(Some(&format!("max-age={ttl}")), doc_a()));
    assert!(r.ok, "{r:?}");
    c
}

#[test]
fn empty_cache_fetches_now() {
    let c = IssuerKeyCache::new(URI, cfg());
    assert_eq!(c.jwks_uri(), URI);
    assert_eq!(c.freshness(NOW), Freshness::Missing);
    assert!(c.keys(NOW).is_none());
    assert!(c.snapshot().is_none());
    assert!(!c.last_attempt_failed());
    assert_eq!(c.plan(NOW, Trigger::Request), FetchPlan::Now);
    assert_eq!(c.plan(NOW, Trigger::UnknownKid), FetchPlan::Now);
}

#[test]
fn good_fetch_then_fresh_then_background_then_stale_then_missing() {
    let mut c = IssuerKeyCache::new(URI, cfg());
    c.begin(NOW);
    let r = c.complete(NOW, ok(Some("public, max-age=600"), doc_a()));
    assert_eq!((r.ok, r.keys, r.ttl_secs, r.error.clone()), (true, 1, Some(600), None));
    assert!(!c.last_attempt_failed());
    assert_eq!(kids(c.keys(NOW)), ["a"]);

    // (offset from NOW, freshness, plan for an ordinary request)
    let table: &[(i64, Freshness, FetchPlan)] = &[
        (0, Freshness::Fresh, FetchPlan::None),
        (1, Freshness::Fresh, FetchPlan::None),
        (539, Freshness::Fresh, FetchPlan::None),       // below 90 % of 600
        (540, Freshness::Fresh, FetchPlan::Background), // 90 % of the TTL
        (599, Freshness::Fresh, FetchPlan::Background),
        (600, Freshness::Stale, FetchPlan::Background),
        (600 + 86_399, Freshness::Stale, FetchPlan::Background),
        (600 + 86_400, Freshness::Missing, FetchPlan::Now),
    ];
    for &(dt, fresh, plan) in table {
        assert_eq!(c.freshness(NOW + dt), fresh, "t+{dt}");
        assert_eq!(c.plan(NOW + dt, Trigger::Request), plan, "t+{dt}");
        assert_eq!(c.keys(NOW + dt).is_some(), fresh != Freshness::Missing, "t+{dt}");
    }
}

/// Times later than `now` (a clock that went back, or one JS call's later `nowSecs`): the keys
/// stay usable but are due for a refresh, and neither the cooldown nor an in-flight mark taken
/// "in the future" holds back a fetch. Otherwise one call dated a year ahead would keep a rotated
/// set (a removed key) fresh for a year and refuse the new key's tokens as unknown kids.
#[test]
fn times_after_now_neither_keep_keys_fresh_nor_hold_back_a_fetch() {
    let year = 365 * 86_400;
    let mut c = fetched_at(NOW + year, 600);
    assert_eq!(c.freshness(NOW), Freshness::Stale);
    assert_eq!(kids(c.keys(NOW)), ["a"], "the keys stay usable");
    assert_eq!(c.plan(NOW, Trigger::Request), FetchPlan::Background);
    assert_eq!(c.plan(NOW, Trigger::UnknownKid), FetchPlan::Now);
    // A refresh begun "in the future" is not in flight now.
    c.begin(NOW + year);
    assert_eq!(c.plan(NOW, Trigger::UnknownKid), FetchPlan::Now);
    // The refresh at NOW puts the cache back on the present clock.
    c.begin(NOW);
    assert_eq!(c.plan(NOW, Trigger::UnknownKid), FetchPlan::None, "in flight");
    let r = c.complete(NOW, ok(Some("max-age=600"), doc_b()));
    assert!(r.ok, "{r:?}");
    assert_eq!(kids(c.keys(NOW)), ["b"]);
    assert_eq!((c.freshness(NOW), c.plan(NOW + 1, Trigger::Request)), (Freshness::Fresh, FetchPlan::None));
    // ... and the cooldown counts from NOW again.
    assert_eq!(c.plan(NOW + 1, Trigger::UnknownKid), FetchPlan::None);
    assert_eq!(c.plan(NOW + 30, Trigger::UnknownKid), FetchPlan::Now);
    // Concurrent calls' clocks a few seconds apart are not "ahead": a fetch completed at NOW + 3
    // is fresh for a call that read its clock at NOW, and holds the cooldown.
    let c = fetched_at(NOW + 3, 600);
    assert_eq!((c.freshness(NOW), c.plan(NOW, Trigger::Request), c.plan(NOW, Trigger::UnknownKid)), (Freshness::Fresh, FetchPlan::None, FetchPlan::None));
}

#[test]
fn ttl_from_cache_control_is_clamped() {
    let c = IssuerKeyCache::new(URI, cfg());
    let table: &[(Option<&str>, i64)] = &[
        (None, 300),
        (Some(""), 300),
        (Some("max-age=600"), 600),
        (Some("max-age=10"), 300), // below min
        (Some("max-age=0"), 300),
        (Some("max-age=999999"), 86_400), // above max
        (Some("max-age=86400"), 86_400),
        (Some("max-age=86401"), 86_400),
        (Some("no-store"), 300),
        (Some("no-store, max-age=3600"), 300),
        (Some("max-age=3600, no-store"), 300),
        (Some("no-cache, max-age=600"), 300),
        (Some("public, max-age=3600, must-revalidate"), 3600),
        (Some("MAX-AGE=1000"), 1000),
        (Some("max-age=\"1200\""), 1200),
        (Some(" max-age = 700 "), 700),
        (Some("max-age=abc"), 300),
        (Some("max-age=-5"), 300),
        (Some("s-maxage=5000"), 300), // not max-age
        (Some("private"), 300),
    ];
    for &(cc, want) in table {
        assert_eq!(c.ttl_from(cc), want, "{cc:?}");
    }
    // Other bounds.
    let narrow = IssuerKeyCache::new(URI, JwksCacheConfig { min_ttl_secs: 60, max_ttl_secs: 120, ..cfg() });
    assert_eq!(narrow.ttl_from(Some("max-age=1")), 60);
    assert_eq!(narrow.ttl_from(Some("max-age=90")), 90);
    assert_eq!(narrow.ttl_from(Some("max-age=3600")), 120);
    assert_eq!(narrow.ttl_from(Some("no-store")), 60);

    // The TTL a fetch gets is the clamped one.
    let mut f = IssuerKeyCache::new(URI, cfg());
    f.begin(NOW);
    assert_eq!(f.complete(NOW, ok(Some("max-age=5"), doc_a())).ttl_secs, Some(300));
    assert_eq!(f.freshness(NOW + 299), Freshness::Fresh);
    assert_eq!(f.freshness(NOW + 300), Freshness::Stale);
}

// Regression (fixed): src/core/jwks_cache.rs ttl_from parses max-age as i64 and falls back to the *minimum* TTL
// when the number does not fit. RFC 9111 §1.2.2: a delta-seconds too large to represent must be
// taken as 2147483648 (or the largest representable value), i.e. here the maximum TTL.
// Input: "max-age=99999999999999999999"; expected 86400; actual 300.
#[test]
fn regression_overflowing_max_age_means_max_ttl() {
    let c = IssuerKeyCache::new(URI, cfg());
    assert_eq!(c.ttl_from(Some("max-age=99999999999999999999")), 86_400);
}

#[test]
fn unknown_kid_refetch_respects_the_cooldown() {
    let mut c = fetched_at(NOW, 3600);
    // Twenty requests with unknown kids within the cooldown start no fetch.
    let plans: Vec<FetchPlan> = (0..20).map(|i| c.plan(NOW + 1 + i, Trigger::UnknownKid)).collect();
    assert!(plans.iter().all(|p| *p == FetchPlan::None), "{plans:?}");
    assert_eq!(c.plan(NOW + 29, Trigger::UnknownKid), FetchPlan::None);
    assert_eq!(c.plan(NOW + 30, Trigger::UnknownKid), FetchPlan::Now);
    // Ordinary requests are unaffected meanwhile.
    assert_eq!(c.plan(NOW + 30, Trigger::Request), FetchPlan::None);

    // The cooldown runs from the last attempt, including its completion time.
    c.begin(NOW + 30);
    assert_eq!(c.plan(NOW + 31, Trigger::UnknownKid), FetchPlan::None, "in flight");
    c.complete(NOW + 33, ok(Some("max-age=3600"), doc_b()));
    assert_eq!(kids(c.keys(NOW + 33)), ["b"], "rotated keys replace the old set");
    assert_eq!(c.plan(NOW + 62, Trigger::UnknownKid), FetchPlan::None, "29 s after completion");
    assert_eq!(c.plan(NOW + 63, Trigger::UnknownKid), FetchPlan::Now, "30 s after completion");

    // A custom cooldown.
    let mut d = IssuerKeyCache::new(URI, JwksCacheConfig { unknown_kid_cooldown_secs: 5, ..cfg() });
    d.begin(NOW);
    d.complete(NOW, ok(None, doc_a()));
    assert_eq!(d.plan(NOW + 4, Trigger::UnknownKid), FetchPlan::None);
    assert_eq!(d.plan(NOW + 5, Trigger::UnknownKid), FetchPlan::Now);
}

#[test]
fn unknown_kid_storm_fetches_at_most_once_per_cooldown() {
    // A client hammers the gate with random kids for ten minutes, one request per second; the
    // adapter follows the plan (begin + complete) whenever it says Now.
    let mut c = fetched_at(NOW, 86_400);
    let mut fetches = Vec::new();
    for t in NOW..NOW + 600 {
        if c.plan(t, Trigger::UnknownKid) == FetchPlan::Now {
            c.begin(t);
            c.complete(t, ok(Some("max-age=86400"), doc_a()));
            fetches.push(t);
        }
    }
    // First allowed 30 s after the initial fetch, then every 30 s: t+30, t+60, ..., t+570.
    assert_eq!(fetches.len(), 19, "{fetches:?}");
    assert!(fetches.windows(2).all(|w| w[1] - w[0] >= 30), "{fetches:?}");
}

#[test]
fn failed_fetches_keep_the_last_good_keys() {
    let too_big = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(MAX_JWKS_BYTES));
    let failures: Vec<(&str, FetchOutcome, &str)> = vec![
        ("HTTP 500", FetchOutcome::Response { status: 500, cache_control: None, body: doc_b() }, "HTTP status 500"),
        ("HTTP 404", FetchOutcome::Response { status: 404, cache_control: None, body: String::new() }, "HTTP status 404"),
        ("HTTP 304", FetchOutcome::Response { status: 304, cache_control: None, body: String::new() }, "HTTP status 304"),
        ("network error", FetchOutcome::Failed("connection reset".into()), "connection reset"),
        ("timeout", FetchOutcome::Failed("timed out after 5000 ms".into()), "timed out"),
        ("bad JSON", ok(None, "{\"keys\": [".into()), "not valid JSON"),
        ("HTML error page", ok(None, "<html>oops</html>".into()), "not valid JSON"),
        ("duplicate member", ok(None, r#"{"keys":[],"keys":[]}"#.into()), "not valid JSON"),
        ("not a key set", ok(None, r#"{"nokeys":[]}"#.into()), "keys"),
        ("no keys", ok(None, jwks(vec![])), "no usable signature key"),
        ("only oct keys", ok(None, jwks(vec![key(HS256).jwk("h", json!({}))])), "no usable signature key"),
        ("only encryption-alg keys", ok(None, jwks(vec![with(key(EdDSA).jwk("x", json!({})), json!({"alg": "ECDH-ES"}))])), "no usable signature key"),
        ("too large", ok(None, too_big), "larger than"),
    ];
    for (name, outcome, err) in failures {
        let mut c = fetched_at(NOW, 300);
        let t = NOW + 300; // stale: a refresh is due
        assert_eq!(c.plan(t, Trigger::Request), FetchPlan::Background, "{name}");
        c.begin(t);
        let r = c.complete(t + 1, outcome);
        assert!(!r.ok, "{name}");
        assert!(r.error.as_deref().unwrap_or("").contains(err), "{name}: {:?}", r.error);
        assert_eq!(r.keys, 1, "{name}: report counts the keys still in use");
        assert_eq!(r.ttl_secs, None, "{name}");
        assert!(c.last_attempt_failed(), "{name}");
        assert_eq!(kids(c.keys(t + 1)), ["a"], "{name}: last good keys kept");
        assert_eq!(c.freshness(t + 1), Freshness::Stale, "{name}");
        // Stale keys stay usable until ttl + max_stale, then nothing is usable.
        assert!(c.keys(NOW + 300 + 86_399).is_some(), "{name}");
        assert!(c.keys(NOW + 300 + 86_400).is_none(), "{name}");
        assert_eq!(c.freshness(NOW + 300 + 86_400), Freshness::Missing, "{name}");
        // A failing issuer is not hammered: the next background refresh waits for the cooldown.
        assert_eq!(c.plan(t + 30, Trigger::Request), FetchPlan::None, "{name}");
        assert_eq!(c.plan(t + 31, Trigger::Request), FetchPlan::Background, "{name}");
        // The snapshot still holds the last good document.
        assert_eq!(c.snapshot().unwrap().jwks, doc_a(), "{name}");
        // A later good fetch recovers.
        c.begin(t + 31);
        assert!(c.complete(t + 31, ok(None, doc_b())).ok, "{name}");
        assert!(!c.last_attempt_failed(), "{name}");
        assert_eq!(kids(c.keys(t + 31)), ["b"], "{name}");
    }
}

#[test]
fn failure_with_nothing_cached() {
    let mut c = IssuerKeyCache::new(URI, cfg());
    c.begin(NOW);
    let r = c.complete(NOW, FetchOutcome::Response { status: 503, cache_control: None, body: String::new() });
    assert!(!r.ok);
    assert_eq!(r.keys, 0);
    assert_eq!(c.freshness(NOW), Freshness::Missing);
    assert!(c.keys(NOW).is_none());
    // Requests do not refetch on every hit while the issuer is failing...
    for dt in 0..30 {
        assert_eq!(c.plan(NOW + dt, Trigger::Request), FetchPlan::None, "t+{dt}");
    }
    // ...but do once the cooldown has passed.
    assert_eq!(c.plan(NOW + 30, Trigger::Request), FetchPlan::Now);
}

#[test]
fn one_refresh_at_a_time() {
    let mut c = fetched_at(NOW, 300);
    let t = NOW + 280; // past 90 % of the TTL
    assert_eq!(c.plan(t, Trigger::Request), FetchPlan::Background);
    c.begin(t);
    // In flight: nobody else starts a background refresh, for up to 2 x the 5 s timeout.
    for dt in 0..10 {
        assert_eq!(c.plan(t + dt, Trigger::Request), FetchPlan::None, "t+{dt}");
    }
    // The in-flight marker of a refresh that never reported back expires.
    assert_eq!(c.plan(t + 10, Trigger::Request), FetchPlan::Background);

    // A completed refresh clears the marker at once.
    let mut d = fetched_at(NOW, 300);
    d.begin(t);
    d.complete(t + 1, ok(Some("max-age=300"), doc_a()));
    assert_eq!(d.plan(t + 1, Trigger::Request), FetchPlan::None, "fresh again");
    assert_eq!(d.plan(t + 1 + 270, Trigger::Request), FetchPlan::Background);

    // The bound follows the configured timeout, rounded up to whole seconds: 1.5 s -> 2 x 2 s.
    let mut e = IssuerKeyCache::new(URI, JwksCacheConfig { fetch_timeout_ms: 1500, ..cfg() });
    e.begin(NOW);
    e.complete(NOW, ok(Some("max-age=300"), doc_a()));
    e.begin(t);
    assert_eq!(e.plan(t + 3, Trigger::Request), FetchPlan::None);
    assert_eq!(e.plan(t + 4, Trigger::Request), FetchPlan::Background);

    // With no usable keys a request must fetch for itself even while another fetch is in flight.
    let mut m = IssuerKeyCache::new(URI, cfg());
    m.begin(NOW);
    assert_eq!(m.plan(NOW + 1, Trigger::Request), FetchPlan::Now);

    // An unknown kid waits for both the cooldown and the in-flight refresh.
    let mut u = IssuerKeyCache::new(URI, JwksCacheConfig { unknown_kid_cooldown_secs: 5, ..cfg() });
    u.begin(NOW);
    u.complete(NOW, ok(Some("max-age=3600"), doc_a()));
    u.begin(NOW + 100);
    assert_eq!(u.plan(NOW + 106, Trigger::UnknownKid), FetchPlan::None, "cooled down but in flight");
    assert_eq!(u.plan(NOW + 110, Trigger::UnknownKid), FetchPlan::Now, "in-flight marker expired");
}

#[test]
fn oct_keys_in_a_fetched_jwks_are_skipped() {
    let mut c = IssuerKeyCache::new(URI, cfg());
    c.begin(NOW);
    let body = jwks(vec![
        key(HS256).jwk("secret", json!({})),
        key(EdDSA).jwk("a", json!({})),
        json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9; 32]), "kid": "x"}),
        json!({"kty": "RSA", "kid": "weak", "n": b64(&[0xc1; 128]), "e": "AQAB"}),
    ]);
    let r = c.complete(NOW, ok(None, body));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.keys, 1);
    assert_eq!(r.skipped.len(), 3, "{:?}", r.skipped);
    assert!(r.skipped.iter().any(|s| s.starts_with("key 0") && s.contains("oct")), "{:?}", r.skipped);
    let keys = c.keys(NOW).unwrap();
    assert_eq!(kids(Some(keys)), ["a"]);
    assert!(keys.keys.iter().all(|k| !matches!(k.material, KeyMaterial::Oct { .. })));
    assert!(!keys.has_symmetric());
}

#[test]
fn snapshot_restores_into_a_fresh_cache() {
    let c = fetched_at(NOW, 600);
    let snap = c.snapshot().expect("snapshot after a good fetch");
    assert_eq!((snap.v, snap.jwks_uri.as_str(), snap.fetched_at, snap.ttl_secs), (1, URI, NOW, 600));
    // It survives the adapter's JSON round trip (KV).
    let stored = serde_json::to_string(&snap).unwrap();
    let loaded: JwksSnapshot = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, snap);

    let mut fresh = IssuerKeyCache::new(URI, cfg());
    assert!(fresh.restore(&loaded, NOW + 10));
    assert_eq!(fresh.keys(NOW + 10), c.keys(NOW + 10));
    assert_eq!(fresh.freshness(NOW + 10), Freshness::Fresh);
    assert_eq!(fresh.plan(NOW + 10, Trigger::Request), FetchPlan::None, "no fetch needed while fresh");
    assert_eq!(fresh.plan(NOW + 540, Trigger::Request), FetchPlan::Background, "same refresh schedule");
    assert_eq!(fresh.snapshot(), Some(snap.clone()));

    // A stale snapshot is still taken (usable while the issuer is down), and wants a refresh.
    let mut stale = IssuerKeyCache::new(URI, cfg());
    assert!(stale.restore(&snap, NOW + 600 + 100));
    assert_eq!(stale.freshness(NOW + 700), Freshness::Stale);
    assert_eq!(stale.plan(NOW + 700, Trigger::Request), FetchPlan::Background);
}

#[test]
fn restore_refuses_unusable_snapshots() {
    let snap = fetched_at(NOW, 600).snapshot().unwrap();
    let refused: Vec<(&str, JwksSnapshot, i64)> = vec![
        ("another jwks_uri", JwksSnapshot { jwks_uri: "https://other.example/jwks".into(), ..snap.clone() }, NOW + 10),
        ("too old: now == fetched + ttl + max_stale", snap.clone(), NOW + 600 + 86_400),
        ("much too old", snap.clone(), NOW + 10_000_000),
        ("unknown version", JwksSnapshot { v: 2, ..snap.clone() }, NOW + 10),
        ("zero ttl", JwksSnapshot { ttl_secs: 0, ..snap.clone() }, NOW + 10),
        ("negative ttl", JwksSnapshot { ttl_secs: -5, ..snap.clone() }, NOW + 10),
        ("from the future", JwksSnapshot { fetched_at: NOW + 1000, ..snap.clone() }, NOW),
        // Found by the jwks fuzz target: `now - fetched_at` overflowed (a panic in debug builds; in
        // release it wrapped, and such a snapshot looked fresh).
        ("fetched before 1970", JwksSnapshot { fetched_at: -1, ..snap.clone() }, NOW + 10),
        ("fetched at i64::MIN", JwksSnapshot { fetched_at: i64::MIN, ..snap.clone() }, NOW + 10),
        ("now at i64::MAX", snap.clone(), i64::MAX),
        ("not JSON", JwksSnapshot { jwks: "{".into(), ..snap.clone() }, NOW + 10),
        ("no usable keys", JwksSnapshot { jwks: jwks(vec![key(HS256).jwk("h", json!({}))]), ..snap.clone() }, NOW + 10),
    ];
    for (name, s, now) in refused {
        let mut c = IssuerKeyCache::new(URI, cfg());
        assert!(!c.restore(&s, now), "{name}");
        assert!(c.keys(now).is_none(), "{name}");
        assert_eq!(c.plan(now, Trigger::Request), FetchPlan::Now, "{name}");
    }
    // The last accepted second before too old.
    let mut c = IssuerKeyCache::new(URI, cfg());
    assert!(c.restore(&snap, NOW + 600 + 86_399));
    // A snapshot no newer than what is cached is ignored; a newer one is taken.
    let mut c = fetched_at(NOW, 600);
    assert!(!c.restore(&snap, NOW + 10), "same age");
    let newer_doc = doc_b();
    let newer = JwksSnapshot { fetched_at: NOW + 5, jwks: newer_doc, ..snap.clone() };
    assert!(c.restore(&newer, NOW + 10));
    assert_eq!(kids(c.keys(NOW + 10)), ["b"]);
    let older = JwksSnapshot { fetched_at: NOW - 5, ..snap };
    assert!(!c.restore(&older, NOW + 10));
    assert_eq!(kids(c.keys(NOW + 10)), ["b"]);
}

// Regression (fixed): src/core/jwks_cache.rs restore() checks "too old" with the snapshot's unclamped ttl_secs
// but stores the TTL clamped to max_ttl_secs. A snapshot written when max_ttl_secs was larger
// (operator lowered it since) can be taken (`restore` returns true and replaces the state) while
// its keys are already unusable. Input: snapshot {fetched_at: NOW - 1_000_000, ttl_secs:
// 10_000_000} restored at NOW with default config; expected: restore returns false (or the keys
// are usable); actual: true, and keys(NOW) is None / freshness Missing.
#[test]
fn regression_restore_true_means_usable_keys() {
    let snap = JwksSnapshot { v: 1, jwks_uri: URI.into(), fetched_at: NOW - 1_000_000, ttl_secs: 10_000_000, jwks: doc_a() };
    let mut c = IssuerKeyCache::new(URI, cfg());
    let taken = c.restore(&snap, NOW);
    assert!(!taken || c.keys(NOW).is_some(), "restore returned {taken} but freshness is {:?}", c.freshness(NOW));
}

#[test]
fn restore_clamps_the_ttl() {
    let snap = JwksSnapshot { v: 1, jwks_uri: URI.into(), fetched_at: NOW, ttl_secs: 5, jwks: doc_a() };
    let mut c = IssuerKeyCache::new(URI, cfg());
    assert!(c.restore(&snap, NOW));
    assert_eq!(c.freshness(NOW + 299), Freshness::Fresh, "ttl raised to min_ttl_secs");
    assert_eq!(c.snapshot().unwrap().ttl_secs, 300);
}

#[test]
fn cached_keys_feed_the_gate() {
    // An issuer with only a jwks_uri: the cache's keys installed in a gate, verified by its pipeline.
    let doc = config(vec![json!({"issuer": ISS, "audiences": [AUD], "algorithms": ["EdDSA"], "jwks_uri": URI})]);
    let p = policy(&doc);
    let mut c = IssuerKeyCache::new(URI, cfg());
    let token_a = key(EdDSA).sign(Some("a"), &claims());
    let token_b = key_seeded(EdDSA, 1).sign(Some("b"), &claims());
    let run = |c: &IssuerKeyCache, token: &str, now: i64| {
        let keys = [c.keys(now).cloned()];
        outcome(&verify_with(&p, token, &keys[..], NativeBackend, now))
    };
    assert_eq!(run(&c, &token_a, NOW), "jwks_unavailable", "nothing fetched yet");
    c.begin(NOW);
    c.complete(NOW, ok(Some("max-age=3600"), doc_a()));
    assert_eq!(run(&c, &token_a, NOW), "ok");
    // The issuer rotates to key b. A token with kid b is unknown until a refetch is allowed.
    assert_eq!(run(&c, &token_b, NOW + 1), "unknown_kid");
    assert_eq!(c.plan(NOW + 1, Trigger::UnknownKid), FetchPlan::None);
    assert_eq!(c.plan(NOW + 30, Trigger::UnknownKid), FetchPlan::Now);
    c.begin(NOW + 30);
    c.complete(NOW + 31, ok(Some("max-age=3600"), doc_b()));
    assert_eq!(run(&c, &token_b, NOW + 31), "ok");
    assert_eq!(run(&c, &token_a, NOW + 31), "unknown_kid", "retired key no longer verifies");
    // Long past TTL + max_stale the keys are gone: the gate says unavailable, not unknown.
    assert_eq!(run(&c, &token_b, NOW + 31 + 3600 + 86_400), "jwks_unavailable");
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Plan(Trigger),
    Begin,
    Fail,
    Succeed(i64),
}

fn op() -> impl Strategy<Value = (i64, Op)> {
    (
        prop_oneof![4 => 0i64..100, 1 => 0i64..200_000],
        prop_oneof![
            Just(Op::Plan(Trigger::Request)),
            Just(Op::Plan(Trigger::UnknownKid)),
            Just(Op::Begin),
            Just(Op::Fail),
            (0i64..200_000).prop_map(Op::Succeed),
        ],
    )
}

proptest! {
    #![proptest_config(prop_config(256))]

    /// Whatever happens (failures, stuck fetches, plans), the last good keys stay usable for
    /// exactly ttl + max_stale after their fetch, and freshness agrees with keys().
    #[test]
    fn last_good_keys_survive_any_failures(ops in proptest::collection::vec(op(), 0..40)) {
        let mut c = IssuerKeyCache::new(URI, cfg());
        let mut now = NOW;
        let mut last_good: Option<(i64, i64)> = None; // (fetched_at, ttl)
        for (dt, o) in ops {
            now += dt;
            match o {
                Op::Plan(t) => {
                    let plan = c.plan(now, t);
                    if c.keys(now).is_none() && t == Trigger::Request && !c.last_attempt_failed() {
                        prop_assert_eq!(plan, FetchPlan::Now);
                    }
                    if plan == FetchPlan::Background {
                        prop_assert!(c.keys(now).is_some(), "background refresh planned without usable keys");
                    }
                }
                Op::Begin => c.begin(now),
                Op::Fail => { let r = c.complete(now, FetchOutcome::Failed("x".into())); prop_assert!(!r.ok); }
                Op::Succeed(ma) => {
                    let r = c.complete(now, ok(Some(&format!("max-age={ma}")), doc_a()));
                    prop_assert!(r.ok);
                    let ttl = r.ttl_secs.unwrap();
                    prop_assert!((300..=86_400).contains(&ttl));
                    last_good = Some((now, ttl));
                }
            }
            let usable = last_good.is_some_and(|(at, ttl)| now - at < ttl + 86_400);
            prop_assert_eq!(c.keys(now).is_some(), usable);
            prop_assert_eq!(c.freshness(now) != Freshness::Missing, usable);
            if let Some((at, ttl)) = last_good {
                prop_assert_eq!(c.freshness(now) == Freshness::Fresh, now - at < ttl);
            }
        }
    }
}
