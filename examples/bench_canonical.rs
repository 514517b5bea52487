//! Native cost of making a request canonical (issue 14: target ≤ 1 µs for a typical path), against
//! a baseline measured in the same run: copying the path and splitting it into segments (the floor
//! of any per-segment work). Run by `bench/native.sh`, or alone:
//! `cargo run --release --locked --example bench_canonical`.

#![allow(clippy::disallowed_methods)] // a benchmark times itself

use edgeward::core::canonical::{canonical_path, canonicalize, PathRules, RequestPolicy};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let typical = [
        "/api/v1/users/12345/orders",
        "/api/v1/items?",
        "/static/app.3f9a1c.js",
        "/billing/invoices/2026-11/INV-000123.pdf",
        "/graphql",
        "/api/v2/accounts/acme/projects/p-42/members/",
    ]
    .map(|p| p.trim_end_matches('?'));
    let awkward = ["/a/./b/../c//d/%7Euser/caf%c3%a9", "/files/%41%42%43/x%20y/%E6%97%A5%E6%9C%AC/", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"];
    let rules = PathRules::default();
    let request = RequestPolicy::default();
    let headers: Vec<(String, String)> = [("accept", "*/*"), ("authorization", "Bearer x"), ("user-agent", "bench/1"), ("cf-connecting-ip", "203.0.113.9")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let rounds = 200_000usize;
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let per_op = |secs: f64, n: usize| secs / (rounds * n) as f64 * 1e9;

    println!("canonical request, native, one core ({rounds} rounds, best of 5)");
    println!("| paths | baseline: copy + split (ns/path) | canonical_path (ns/path) | canonicalize: method + path + override check (ns/request) | ratio to baseline |");
    println!("|---|---|---|---|---|");
    for (name, set) in [("typical (6)", &typical[..]), ("awkward (3)", &awkward[..])] {
        let base = best(&mut || {
            for _ in 0..rounds {
                for p in set {
                    let owned = black_box(*p).to_owned();
                    black_box(owned.split('/').filter(|s| !s.is_empty()).count());
                }
            }
        });
        let path = best(&mut || {
            for _ in 0..rounds {
                for p in set {
                    black_box(canonical_path(black_box(p), &rules).ok());
                }
            }
        });
        let full = best(&mut || {
            for _ in 0..rounds {
                for p in set {
                    black_box(canonicalize("GET", black_box(p), "a=1", &headers, &request, &rules).ok());
                }
            }
        });
        let (b, c, f) = (per_op(base, set.len()), per_op(path, set.len()), per_op(full, set.len()));
        println!("| {name} | {b:.0} | {c:.0} | {f:.0} | {:.1}x |", c / b);
    }
}
