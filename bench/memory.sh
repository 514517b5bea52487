#!/usr/bin/env bash
# The gate's isolate state at issue 15's scale (100,000 revocations, 10,000 cached tokens,
# 10,000 cached API key records), filled through Gate::decide and measured as live heap with a
# counting allocator (native 64-bit: an upper bound for wasm32). See examples/bench_memory.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo run --quiet --locked --release --example bench_memory
