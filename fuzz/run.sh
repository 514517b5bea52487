#!/bin/sh
# Fuzzes one target, starting from its committed seeds, with a scratch corpus outside the
# repository (only fuzz/seeds/ is committed). Usage: fuzz/run.sh TARGET [RUNS] [extra libFuzzer flags]
# Environment: FUZZ_CORPUS, FUZZ_ARTIFACTS (default $TMPDIR/edgeward-fuzz/corpus and .../artifacts),
# CARGO_TARGET_DIR (default fuzz/target; give canonical_path, which is built with other
# flags, a directory of its own to avoid rebuilding everything), MAX_LEN (default 4096; 1024 for
# canonical_path), EDGEWARD_FUZZ_ALLOW (see README.md).
set -eu
t=$1
runs=${2:-10000000}
[ $# -ge 2 ] && shift 2 || shift 1
cd "$(dirname "$0")"
corpus=${FUZZ_CORPUS:-${TMPDIR:-/tmp}/edgeward-fuzz/corpus}/$t
art=${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/edgeward-fuzz/artifacts}/$t
mkdir -p "$corpus" "$art"
# canonical_path runs some thirty canonicalizations per input, and three quarters of its time
# went to libFuzzer's comparison tracing: it is built without it, and with shorter inputs.
default_len=4096
fuzz_flags=
if [ "$t" = canonical_path ]; then
    default_len=1024
    fuzz_flags=--no-trace-compares
fi
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS=1 CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
exec nice -n 15 cargo fuzz run --sanitizer none $fuzz_flags "$t" "$corpus" "seeds/$t" -- \
    -runs="$runs" -max_len="${MAX_LEN:-$default_len}" -artifact_prefix="$art/" -print_final_stats=1 "$@"
