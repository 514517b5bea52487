// The default entry point carries the package's WebAssembly module as hex text (written by
// scripts/pack-web.mjs) and instantiates it synchronously at import: no fetch, no top-level
// await, no asset for a bundler to find. Hex, not base64: each byte is two characters wherever it
// stands, so gzip and brotli still find the module's repeats (base64 text gzips 34 % larger than
// the module, hex 12 %; BENCHMARKS.md, "JS package: entry points").

let digits;

/** The bytes of lowercase hex text: natively where the engine has `Uint8Array.fromHex`. */
export function fromHex(text) {
  if (typeof Uint8Array.fromHex === 'function') return Uint8Array.fromHex(text);
  if (!digits) {
    digits = new Uint8Array(128);
    for (let i = 0; i < 16; i++) digits['0123456789abcdef'.charCodeAt(i)] = i;
  }
  const bytes = new Uint8Array(text.length >> 1);
  for (let i = 0, j = 0; i < bytes.length; i++, j += 2) bytes[i] = (digits[text.charCodeAt(j)] << 4) | digits[text.charCodeAt(j + 1)];
  return bytes;
}
