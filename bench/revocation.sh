#!/usr/bin/env bash
# Revocation list: check cost per request with 100,000 active revocations (native, vs an empty
# list in the same run), snapshot size raw and gzip -9, and the in-memory build time.
# Usage: bench/revocation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
f=$(mktemp)
cargo run --release --locked --example bench_revocation -- "$f" 2>/dev/null
echo "snapshot gzip -9 bytes: $(gzip -9 -c "$f" | wc -c)"
rm -f "$f"
