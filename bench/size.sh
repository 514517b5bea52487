#!/usr/bin/env bash
# Measures the Worker upload bundle exactly as `wrangler deploy` would build it (offline, dry run),
# raw and gzip -9, against the 250 KB gzip budget. Usage: bench/size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/build-worker
out=$(mktemp -d)
wrangler deploy --dry-run --outdir "$out" >/dev/null 2>&1
printf '%-28s %10s %10s\n' file raw gzip-9
total_raw=0; total_gz=0
for f in "$out"/*.wasm "$out"/*.js; do  # what is uploaded (no README, no source map)
  raw=$(stat -c %s "$f"); gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
  name=$(basename "$f"); name=${name#*-index_bg}; [ "$name" = .wasm ] && name=index_bg.wasm
  printf '%-28s %10d %10d\n' "$name" "$raw" "$gz"
done
printf '%-28s %10d %10d\n' total "$total_raw" "$total_gz"
printf 'budget 250000 B gzip: ratio %.2f\n' "$(echo "$total_gz / 250000" | bc -l)"
rm -rf "$out"
