#!/usr/bin/env bash
# Native core benchmarks, each with a baseline measured in the same run:
#  - per-algorithm verification: Edgeward's full pipeline vs jwt-simple alone;
#  - rate limiter: GCRA decisions per second vs a bare HashMap update;
#  - canonical requests: ns per path vs copying and splitting the path.
# Usage: bench/native.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked --example bench_verify 2>/dev/null
echo
cargo run --release --locked --example bench_ratelimit 2>/dev/null
echo
cargo run --release --locked --example bench_canonical 2>/dev/null
