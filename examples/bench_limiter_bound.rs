//! The local limiter under a rotating-IP flood: 1,000,000 distinct client IPs, one request each,
//! through `ip_pre_auth` at the default `rate_limits.local_capacity` (100,000 keys per rule). It
//! prints the limiter's live heap (a counting allocator: bytes allocated and not freed) at 10%,
//! 50% and 100% of the stream, which must be flat once the cap is reached, and the time per
//! check below the cap against the time at the cap, in the same run.
//!
//! The buckets (the real `pre_auth_bucket`: SHA-256 fingerprint of the IP) are built once,
//! untimed, before the limiter; only `LocalLimiter::check` is timed, in chunks of 10,000, over
//! several passes (a fresh limiter each), best pass per phase. The clock is fake: 1 ms per 100 requests, so the
//! stream spans 10 s and every evicted key still holds state (`evicted_live`). Native 64-bit:
//! pointers are twice their wasm32 size, so the Worker's bytes per entry are at most these.
//! Run by `bench/limiter-bound.sh` (`cargo run --release --example bench_limiter_bound`).

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use edgeward::core::ratelimit::{Bucket, LocalLimiter, RateLimitConfig, RateLimitPolicy, DEFAULT_LOCAL_CAPACITY};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Instant;

#[path = "support/counting.rs"]
mod counting;
use counting::{mib, LIVE};

const CLIENTS: usize = 1_000_000;
const CHUNK: usize = 10_000;
const RUNS: usize = 7;

/// One pass of the stream through a fresh limiter.
struct Pass {
    /// Live heap of the limiter after 10%, 50% and 100% of the stream.
    marks: Vec<(usize, isize)>,
    /// Smallest and largest live heap at chunk boundaries once the cap was reached.
    at_cap_range: (isize, isize),
    below_ns: f64,
    at_cap_ns: f64,
    len: usize,
    evicted_live: u64,
}

fn pass(policy: &RateLimitPolicy, buckets: &[Bucket]) -> Pass {
    let capacity = policy.local_capacity.get();
    let before = LIVE.load(Ordering::Relaxed);
    let mut limiter = LocalLimiter::new(policy.local_capacity);
    let (mut below, mut at_cap) = (0f64, 0f64);
    let mut marks = Vec::new();
    let mut range = (isize::MAX, isize::MIN);
    for (n, chunk) in buckets.chunks(CHUNK).enumerate() {
        let start = n * CHUNK;
        let t = Instant::now();
        for (i, b) in chunk.iter().enumerate() {
            black_box(limiter.check(b, ((start + i) / 100) as i64));
        }
        let elapsed = t.elapsed().as_secs_f64();
        let done = start + CHUNK;
        if done <= capacity {
            below += elapsed;
        } else {
            at_cap += elapsed;
        }
        let live = LIVE.load(Ordering::Relaxed) - before;
        if done >= capacity {
            range = (range.0.min(live), range.1.max(live));
        }
        if [CLIENTS / 10, CLIENTS / 2, CLIENTS].contains(&done) {
            marks.push((done, live));
        }
    }
    Pass {
        marks,
        at_cap_range: range,
        below_ns: below * 1e9 / capacity as f64,
        at_cap_ns: at_cap * 1e9 / (CLIENTS - capacity) as f64,
        len: limiter.len(),
        evicted_live: limiter.evicted_live(),
    }
}

fn main() {
    let config: RateLimitConfig =
        serde_json::from_value(serde_json::json!({"ip_pre_auth": {"rate": 1000, "period_secs": 3600, "burst": 100}})).expect("a valid section");
    let policy = config.validate().expect("a valid policy");
    assert_eq!(policy.local_capacity, DEFAULT_LOCAL_CAPACITY);
    let capacity = policy.local_capacity.get();
    let buckets: Vec<Bucket> =
        (0..CLIENTS).map(|i| policy.pre_auth_bucket(Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)))).expect("ip_pre_auth is set")).collect();
    let passes: Vec<Pass> = (0..RUNS).map(|_| pass(&policy, &buckets)).collect();
    assert!(passes.iter().all(|p| p.marks == passes[0].marks), "every pass holds the same heap");
    let p = &passes[0];
    println!("local limiter, one rule (ip_pre_auth), capacity {capacity}; {CLIENTS} distinct IPs, one request each");
    println!("{:<26} {:>10} {:>12} {:>16}", "after", "keys kept", "live heap", "bytes per key");
    for &(done, live) in &p.marks {
        let kept = done.min(capacity);
        println!("{:<26} {:>10} {:>8.2} MiB {:>16.1}", format!("{done} IPs ({}%)", done * 100 / CLIENTS), kept, mib(live), live as f64 / kept as f64);
    }
    println!(
        "live heap at every chunk of {CHUNK} after the cap: {:.3}..{:.3} MiB; keys kept at the end: {}; evictions of live state: {}",
        mib(p.at_cap_range.0),
        mib(p.at_cap_range.1),
        p.len,
        p.evicted_live
    );
    let best = |f: fn(&Pass) -> f64| passes.iter().map(f).fold(f64::INFINITY, f64::min);
    let (below, at_cap) = (best(|p| p.below_ns), best(|p| p.at_cap_ns));
    println!("ns per check (best of {RUNS} passes)");
    println!("{:<46} {:>8.1}", format!("below the cap (first {capacity} IPs, map growing)"), below);
    println!("{:<46} {:>8.1}", format!("at the cap (next {} IPs, one eviction each)", CLIENTS - capacity), at_cap);
    println!("{:<46} {:>8.2}", "ratio at / below", at_cap / below);
}
