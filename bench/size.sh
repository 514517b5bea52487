#!/usr/bin/env bash
# Sizes, raw and gzip -9:
#  - the gate Worker's upload bundle (part `worker`: what runs on every request, and what the
#    250 KB budget is about) exactly as `wrangler deploy` would build it (offline dry run) from a
#    production build (scripts/build-worker, feature `worker`) made in build-size/ — build/ is
#    never touched;
#  - the same for the control Worker (part `control`: admin API and Durable Objects, feature
#    `control`, control/wrangler.toml), built in build-size-control/;
#  - the web package (www/pkg: the .wasm and its JS glue), if it has been built (scripts/build-web).
# Usage: bench/size.sh    (prints "<part> <file> <raw> <gzip>" rows, then the budget line)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The production builds, exactly as scripts/build-worker makes them (names section stripped), but
# in build-size/ and build-size-control/ (incremental: skipped when newer than every input); the
# gate last, so cargo's module below is the gate's.
OUT_DIR=build-size-control bash scripts/build-worker --features control >"$out/.build.log" 2>&1 || { tail -40 "$out/.build.log" >&2; exit 1; }
OUT_DIR=build-size bash scripts/build-worker >>"$out/.build.log" 2>&1 || { tail -40 "$out/.build.log" >&2; exit 1; }
# Each Worker's wrangler config (same bindings, Durable Objects, migrations) pointed at its build,
# without its [build] command; the dry run writes the upload into "$out/<part>".
dry_run() {  # part source-config build-dir
  awk '/^\[build\]/{skip=1; next} /^\[/{skip=0} !skip' "$2" | sed 's#^main = .*#main = "index.js"#' >"$3/wrangler.size.toml"
  mkdir -p "$out/$1"
  wrangler deploy --dry-run --config "$3/wrangler.size.toml" --outdir "$out/$1" >"$out/.dry-run-$1.log" 2>&1 \
    || { tail -40 "$out/.dry-run-$1.log" >&2; exit 1; }
}
dry_run worker wrangler.toml build-size
dry_run control control/wrangler.toml build-size-control
printf '%-8s %-20s %10s %10s\n' part file raw gzip-9
row() {  # part file name
  local raw gz
  raw=$(stat -c %s "$2"); gz=$(gzip -9 -c "$2" | wc -c)
  printf '%-8s %-20s %10d %10d\n' "$1" "$3" "$raw" "$gz"
  echo "$raw $gz" >>"$out/.sum-$1"
}
for part in worker control; do
  for f in "$out/$part"/*.wasm "$out/$part"/*.js; do  # what is uploaded (no README, no source map)
    name=$(basename "$f"); name=${name#*-index_bg}; [ "$name" = .wasm ] && name=index_bg.wasm
    row "$part" "$f" "$name"
  done
done
if ls www/pkg/*.wasm >/dev/null 2>&1; then
  for f in www/pkg/*.wasm www/pkg/*.js; do row web "$f" "$(basename "$f")"; done
fi
for part in worker control web; do
  [ -f "$out/.sum-$part" ] || continue
  awk -v p="$part" '{r+=$1; g+=$2} END {printf "%-8s %-20s %10d %10d\n", p, "total", r, g}' "$out/.sum-$part"
done
# Where the Worker's code comes from, by crate (cargo's module, which still has its name section;
# rebuilt here at once, a no-op unless another build replaced it since worker-build ran).
cargo build --lib --release --target wasm32-unknown-unknown --no-default-features --features worker >/dev/null 2>&1 \
  && node bench/wasm-crates.mjs target/wasm32-unknown-unknown/release/edgeward.wasm 40 || echo "crate breakdown unavailable"
gz=$(awk '{g+=$2} END {print g}' "$out/.sum-worker")
printf 'budget 250000 B gzip (Worker): ratio %.2f\n' "$(echo "$gz / 250000" | bc -l)"
