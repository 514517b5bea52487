#!/usr/bin/env bash
# The local rate limiter under a rotating-IP flood (issue 21): 1,000,000 distinct client IPs
# through ip_pre_auth at the default rate_limits.local_capacity; live heap at 10/50/100% of the
# stream (flat after the cap) and ns per check below vs at the cap, in one run. Native 64-bit:
# an upper bound for wasm32. See examples/bench_limiter_bound.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo run --quiet --locked --release --example bench_limiter_bound
