// Which crates the Worker's code comes from: reads a wasm module that still has its `name`
// section (cargo's output before wasm-bindgen and wasm-opt, which strip it), attributes each
// function body's size to the crate its (mangled) name starts with, and prints the largest.
// Proportions, not final bytes: wasm-opt shrinks everything afterwards. Generic code counts for
// the crate that defines the generic (`core::iter::…::try_fold<edgeward::…>` is `core`), as in
// twiggy. Run by bench/size.sh. With EDGEWARD_TOP_FUNCTIONS=N, also the N largest functions
// (mangled names, legacy mangling demangled roughly): where to look for size.
//   node bench/wasm-crates.mjs target/wasm32-unknown-unknown/release/edgeward.wasm [top]

import fs from 'node:fs';

const buf = fs.readFileSync(process.argv[2]);
const top = Number(process.argv[3] ?? 14);
let p = 8;
const leb = () => {
  let r = 0;
  let s = 0;
  let b;
  do {
    b = buf[p++];
    r += (b & 0x7f) * 2 ** s;
    s += 7;
  } while (b & 0x80);
  return r;
};
const limits = () => {
  const flags = leb();
  leb();
  if (flags & 1) leb();
};

let importedFunctions = 0;
let code;
let names;
let data = 0;
while (p < buf.length) {
  const id = buf[p++];
  const size = leb();
  const start = p;
  if (id === 0) {
    const n = leb();
    if (buf.slice(p, p + n).toString() === 'name') names = [p + n, start + size];
  } else if (id === 2) {
    const count = leb();
    for (let i = 0; i < count; i++) {
      p += leb(); // module
      p += leb(); // field
      const kind = buf[p++];
      if (kind === 0) {
        leb();
        importedFunctions++;
      } else if (kind === 1) {
        p++;
        limits();
      } else if (kind === 2) limits();
      else if (kind === 3) p += 2;
      else if (kind === 4) {
        p++;
        leb();
      }
    }
  } else if (id === 10) code = start;
  else if (id === 11) data = size;
  p = start + size;
}
if (!names || code === undefined) {
  console.error('no name or code section (was the module stripped?)');
  process.exit(1);
}

const fnNames = new Map();
for (p = names[0]; p < names[1]; ) {
  const sub = buf[p++];
  const size = leb();
  const start = p;
  if (sub === 1) {
    const count = leb();
    for (let i = 0; i < count; i++) {
      const idx = leb();
      const len = leb();
      fnNames.set(idx, buf.slice(p, p + len).toString());
      p += len;
    }
  }
  p = start + size;
}

/** Crate of a symbol: legacy `_ZN<len><crate>…`, v0 `_R…C<hash>_<len><crate>…`, or `<T as …>`. */
function crateOf(name) {
  if (!name) return '(unnamed)';
  let m = /^_ZN(\d+)(.*)/.exec(name);
  if (m) {
    const c = m[2].slice(0, Number(m[1]));
    if (!c.startsWith('_$LT$')) return c;
    m = /_\$LT\$(?:\$RF\$|mut\$u20\$|\$u5b\$|dyn\$u20\$)*([A-Za-z_][A-Za-z0-9_]*)/.exec(c);
    return m ? m[1] : c;
  }
  if (name.startsWith('_R')) {
    m = /C(?:s[0-9a-zA-Z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)/.exec(name);
    return m ? m[2].slice(0, Number(m[1])) : '(v0)';
  }
  if (name.startsWith('__wbindgen') || name.startsWith('__wbg')) return 'wasm-bindgen glue';
  m = /^<(?:&|mut |\[|dyn )*([A-Za-z_][A-Za-z0-9_]*)/.exec(name);
  if (m) return m[1];
  return name.split(/[:(<]/)[0].slice(0, 40);
}

p = code;
const count = leb();
const byCrate = new Map();
const fns = [];
let total = 0;
let described = 0;
for (let i = 0; i < count; i++) {
  const size = leb();
  p += size;
  const name = fnNames.get(importedFunctions + i) ?? '';
  // Type descriptions that wasm-bindgen interprets and then removes: not in the bundle.
  if (/__wbindgen_describe|WasmDescribe/.test(name)) {
    described += size;
    continue;
  }
  total += size;
  fns.push([size, name]);
  let c = crateOf(name);
  if (/^[A-Z]$/.test(c)) c = '(blanket impls on T)';
  byCrate.set(c, (byCrate.get(c) ?? 0) + size);
}
console.log(`code ${total} bytes (without ${described} bytes of wasm-bindgen type descriptions, removed later); data ${data} bytes`);
for (const [c, size] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`crate ${c} ${size} ${((100 * size) / total).toFixed(1)}`);
}
const topFns = Number(process.env.EDGEWARD_TOP_FUNCTIONS ?? 0);
const demangle = (n) => n.replace(/^_ZN/, '').replace(/17h[0-9a-f]{16}E$/, '').replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>').replace(/\$u20\$/g, ' ')
  .replace(/\$RF\$/g, '&').replace(/\$C\$/g, ',').replace(/\.\./g, '::').replace(/(\d+)(?=[A-Za-z_<{])/g, '::');
for (const [size, name] of fns.sort((a, b) => b[0] - a[0]).slice(0, topFns)) console.log(`fn ${size} ${demangle(name).slice(0, 160)}`);
