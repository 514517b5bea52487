#!/usr/bin/env bash
# Native per-algorithm verification cost: Edgeward's full pipeline vs jwt-simple alone, same run.
# Usage: bench/native.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked --example bench_verify 2>/dev/null
