#!/usr/bin/env bash
# Sizes, raw and gzip -9:
#  - the Worker upload bundle exactly as `wrangler deploy` would build it (offline dry run) from a
#    production build (scripts/build-worker, feature `worker`) made in build-size/ — build/ is
#    never touched;
#  - the web package (www/pkg: the .wasm and its JS glue), if it has been built (scripts/build-web).
# Usage: bench/size.sh    (prints "<part> <file> <raw> <gzip>" rows, then the budget line)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The production build, exactly as scripts/build-worker makes it (names section stripped), but in
# build-size/ (incremental: skipped when build-size/ is newer than every input).
OUT_DIR=build-size bash scripts/build-worker >"$out/.build.log" 2>&1 || { tail -40 "$out/.build.log" >&2; exit 1; }
# The repo's wrangler.toml (same bindings, Durable Objects, migrations) pointed at build-size/,
# without its [build] command.
awk '/^\[build\]/{skip=1; next} /^\[/{skip=0} !skip' wrangler.toml \
  | sed 's#^main = .*#main = "index.js"#' >build-size/wrangler.size.toml
wrangler deploy --dry-run --config build-size/wrangler.size.toml --outdir "$out" >"$out/.dry-run.log" 2>&1 \
  || { tail -40 "$out/.dry-run.log" >&2; exit 1; }
printf '%-8s %-20s %10s %10s\n' part file raw gzip-9
row() {  # part file name
  local raw gz
  raw=$(stat -c %s "$2"); gz=$(gzip -9 -c "$2" | wc -c)
  printf '%-8s %-20s %10d %10d\n' "$1" "$3" "$raw" "$gz"
  echo "$raw $gz" >>"$out/.sum-$1"
}
for f in "$out"/*.wasm "$out"/*.js; do  # what is uploaded (no README, no source map)
  name=$(basename "$f"); name=${name#*-index_bg}; [ "$name" = .wasm ] && name=index_bg.wasm
  row worker "$f" "$name"
done
if ls www/pkg/*.wasm >/dev/null 2>&1; then
  for f in www/pkg/*.wasm www/pkg/*.js; do row web "$f" "$(basename "$f")"; done
fi
for part in worker web; do
  [ -f "$out/.sum-$part" ] || continue
  awk -v p="$part" '{r+=$1; g+=$2} END {printf "%-8s %-20s %10d %10d\n", p, "total", r, g}' "$out/.sum-$part"
done
# Where the Worker's code comes from, by crate (cargo's module, which still has its name section;
# rebuilt here at once, a no-op unless another build replaced it since worker-build ran).
cargo build --lib --release --target wasm32-unknown-unknown --no-default-features --features worker >/dev/null 2>&1 \
  && node bench/wasm-crates.mjs target/wasm32-unknown-unknown/release/edgeward.wasm 40 || echo "crate breakdown unavailable"
gz=$(awk '{g+=$2} END {print g}' "$out/.sum-worker")
printf 'budget 250000 B gzip (Worker): ratio %.2f\n' "$(echo "$gz / 250000" | bc -l)"
