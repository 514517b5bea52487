#!/usr/bin/env bash
# Revocation list: check cost per request with 100,000 active revocations (native, vs an empty
# list in the same run), snapshot size raw and gzip -9 (compact `revocations:v2` and the JSON of
# full entries, `revocations:v1`), and the time to build the in-memory set from each.
# Usage: bench/revocation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
f=$(mktemp)
cargo run --release --locked --example bench_revocation -- "$f" 2>/dev/null
echo "snapshot compact gzip -9 bytes: $(gzip -9 -c "$f.bin" | wc -c)"
echo "snapshot compact base64 bytes: $(base64 -w0 "$f.bin" | wc -c)"
echo "snapshot JSON gzip -9 bytes: $(gzip -9 -c "$f.json" | wc -c)"
rm -f "$f" "$f.bin" "$f.json"
