//! GCRA properties: for any arrival pattern, no window lets through more than
//! burst + rate × window / period; a denied request is told exactly when to come back. And the
//! bounded local limiter: each key that lost its state to an eviction gets at most one burst more.

use edgeward::core::ratelimit::{gcra, Bucket, LocalLimiter, Quota};
use proptest::prelude::*;
use std::num::NonZeroUsize;

fn run(q: &Quota, arrivals: &[i64]) -> Vec<(i64, bool, i64)> {
    let mut tat = None;
    arrivals
        .iter()
        .map(|&t| {
            let d = gcra(tat, t, q);
            if d.allowed {
                tat = Some(d.tat_ms);
            }
            (t, d.allowed, d.retry_after_ms)
        })
        .collect()
}

fn quota() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u32..5, 1u32..20).prop_map(|(rate, period_secs, burst)| Quota { rate, period_secs, burst })
}

fn arrivals() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(0i64..400, 1..300).prop_map(|gaps| {
        let mut t = 0;
        gaps.into_iter()
            .map(|g| {
                t += g;
                t
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_window_exceeds_burst_plus_rate(q in quota(), arr in arrivals()) {
        let out = run(&q, &arr);
        let allowed: Vec<i64> = out.iter().filter(|(_, a, _)| *a).map(|(t, _, _)| *t).collect();
        let period_ms = f64::from(q.period_secs) * 1000.0;
        for (i, &start) in allowed.iter().enumerate() {
            for (j, &end) in allowed.iter().enumerate().skip(i) {
                let window = (end - start) as f64;
                let bound = f64::from(q.burst) + f64::from(q.rate) * window / period_ms;
                prop_assert!(((j - i + 1) as f64) <= bound + 1e-9,
                    "{} passed in {} ms, bound {}", j - i + 1, window, bound);
            }
        }
    }

    #[test]
    fn an_eviction_gives_at_most_one_burst_more(
        q in quota(),
        capacity in 1usize..4,
        reqs in prop::collection::vec((0usize..6, 0i64..400), 1..300),
    ) {
        const KEYS: usize = 6;
        let mut l = LocalLimiter::new(NonZeroUsize::new(capacity).unwrap());
        let keys: Vec<Bucket> =
            (0..KEYS).map(|i| Bucket { rule: "r".into(), key: format!("r:ip:{:016x}", i * 7919), quota: q, binding: None }).collect();
        let mut last_tat = [None::<i64>; KEYS];
        let mut allowed: [Vec<i64>; KEYS] = Default::default();
        // Per key: how many of its requests had passed when it came back without its live state.
        let mut resets: [Vec<usize>; KEYS] = Default::default();
        let mut t = 0;
        for (k, gap) in reqs {
            t += gap;
            // `tat` marks the key used, as the check itself does next.
            if l.tat(&keys[k].key).is_none() && last_tat[k].is_some_and(|tat| tat > t) {
                resets[k].push(allowed[k].len());
            }
            let d = l.check(&keys[k], t);
            if d.allowed {
                last_tat[k] = Some(d.tat_ms);
                allowed[k].push(t);
            }
            prop_assert!(l.rule_len("r") <= capacity);
        }
        prop_assert!(resets.iter().map(Vec::len).sum::<usize>() as u64 <= l.evicted_live());
        let period_ms = f64::from(q.period_secs) * 1000.0;
        for (times, resets) in allowed.iter().zip(&resets) {
            for (i, &start) in times.iter().enumerate() {
                for (j, &end) in times.iter().enumerate().skip(i) {
                    let evictions = resets.iter().filter(|&&r| i < r && r <= j).count();
                    let bound = f64::from(q.burst) * (1 + evictions) as f64 + f64::from(q.rate) * (end - start) as f64 / period_ms;
                    prop_assert!(((j - i + 1) as f64) <= bound + 1e-9,
                        "{} passed in {} ms after {} evictions, bound {}", j - i + 1, end - start, evictions, bound);
                }
            }
        }
    }

    #[test]
    fn retry_after_is_exact(q in quota(), arr in arrivals()) {
        let mut tat = None;
        for &t in &arr {
            let d = gcra(tat, t, &q);
            if d.allowed {
                tat = Some(d.tat_ms);
            } else {
                prop_assert!(d.retry_after_ms > 0);
                prop_assert!(!gcra(tat, t + d.retry_after_ms - 1, &q).allowed, "not a millisecond earlier");
                prop_assert!(gcra(tat, t + d.retry_after_ms, &q).allowed, "allowed exactly then");
            }
        }
    }
}

#[test]
fn a_fresh_key_gets_exactly_the_burst() {
    for burst in [1u32, 2, 10, 50] {
        let q = Quota { rate: 100, period_secs: 60, burst };
        let out = run(&q, &vec![1_000; 200]);
        assert_eq!(out.iter().filter(|(_, a, _)| *a).count(), burst as usize);
    }
}
