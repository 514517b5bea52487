//! Native rate-limiter throughput: `LocalLimiter::check` (GCRA step + TAT map update) per second
//! on one core, against a baseline measured in the same run: a bare `HashMap<String, i64>` update
//! of the same keys (the floor cost of keeping per-key state). Run by `bench/native.sh`.

#![allow(clippy::disallowed_methods)] // a benchmark times itself

use edgeward::core::ratelimit::{Bucket, LocalLimiter, Quota};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let keys: Vec<Bucket> = (0..10_000)
        .map(|i| Bucket { rule: "r".into(), key: format!("r:sub:{i:016x}"), quota: Quota { rate: 100, period_secs: 60, burst: 20 }, binding: None })
        .collect();
    let rounds = 200usize;
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };

    let mut limiter = LocalLimiter::default();
    let mut now = 0i64;
    let ours = best(&mut || {
        for _ in 0..rounds {
            now += 7;
            for b in &keys {
                black_box(limiter.check(b, now));
            }
        }
    });
    let mut map: HashMap<String, i64> = HashMap::new();
    let base = best(&mut || {
        for r in 0..rounds {
            for b in &keys {
                let e = map.entry(b.key.clone()).or_insert(0);
                *e = black_box(*e + r as i64);
            }
        }
    });
    let n = (rounds * keys.len()) as f64;
    println!("{:<34} {:>14} {:>8}", "limiter (10,000 keys)", "decisions/s", "ratio");
    println!("{:<34} {:>14.0} {:>8.2}", "LocalLimiter::check (GCRA)", n / ours, ours / base);
    println!("{:<34} {:>14.0} {:>8.2}", "baseline: HashMap update", n / base, 1.0);
}
