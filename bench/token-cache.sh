#!/usr/bin/env bash
# The verified-token cache's cost (issue 21): 10,000 distinct 13-claim, 602-byte tokens through
# the real verify path; live heap per entry (and the cache's own count of it) and ns per hit,
# with the default configuration and with every claim forwarded. Native 64-bit: an upper bound
# for wasm32. See examples/bench_token_cache.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo run --quiet --locked --release --example bench_token_cache
