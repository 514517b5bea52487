#!/usr/bin/env node
// Assembles the `edgeward` npm package from wasm-pack's `--target web` output (scripts/build-web
// runs it): two WebAssembly modules, each a wasm-bindgen glue and a .wasm, bundled by esbuild into
// an entry point per runtime, so that the package works unchanged in Node (import and require) and
// in every bundler, with no loader or plugin for the .wasm. The modules: the whole package
// (feature `web`: edgeward_bg.wasm) and verification alone (feature `web-verifier`:
// verify_bg.wasm, for apps that only verify). src/web/README.md, "Entry points", is the user's
// side of this.
//
//   edgeward.js       browsers and bundlers (`browser`, `default`): re-exports, from files of
//                     their own, the module's functions (edgeward.module.js: the .wasm inlined as
//                     hex and instantiated synchronously at import: no fetch, no top-level await,
//                     no asset), decode.js's, dpop.js's and error.js's (the one error class). A
//                     bundler drops what an app does not import (`sideEffects: false`): an app
//                     that only decodes ships no WebAssembly
//   edgeward.node.cjs Node `require`: reads edgeward_bg.wasm next to it, synchronously
//   edgeward.node.mjs Node `import`: the CommonJS build re-exported (one instance for both)
//   web.js            `edgeward/web`: `await init()` fetches edgeward_bg.wasm (streaming
//                     compilation, served and cached as a file); www/pkg/ is this
//   web.node.{mjs,cjs} `edgeward/web` in Node: ready at import, `init()` resolves at once
//   verify.js, verify.node.{cjs,mjs}  `edgeward/verify`: createVerifier, verify, explain (and the
//                     error class and guard) from their own module, verify_bg.wasm, loaded as
//                     `edgeward`'s is (inlined as hex for browsers and bundlers, read beside it in Node)
//   decode.js, decode.cjs  `edgeward/decode`: decodeUnverified, refreshAt, pkcePair, randomToken,
//                     nonce in plain JS (src/web/js/decode.js): no WebAssembly
//   error.js          the error class and guard the ES module builds above share (`edgeward`'s
//                     browser build, decode.js, dpop.js); the CommonJS and other builds carry
//                     their own copy
//   dpop.js, dpop.cjs `edgeward/dpop`: createDpopKey, dpopProof (WebCrypto): no WebAssembly
//   *.d.ts, *.d.cts   types (`.d.cts` for `require`); the plain-JS entry points' are the matching
//                     declarations of the WebAssembly build's, picked by name
// Besides wasm-bindgen's exports, each entry point re-exports src/web/js/error.js (the error class)
// and, but for `edgeward/verify`, src/web/js/dpop.js (createDpopKey, dpopProof: WebCrypto, no
// WebAssembly) and src/web/js/decode.js: the whole package's decodeUnverified, refreshAt, pkcePair,
// randomToken and nonce are the plain-JS ones of `edgeward/decode` (4x faster than a call into
// WebAssembly, and one implementation whichever entry point an app imports). The module's Rust
// functions of those names stay in wasm-bindgen's output as the reference the package's tests
// compare the JS ones with (tests/www/package.test.mjs); no entry point exports them.
//
// Usage: node scripts/pack-web.mjs BINDGEN_DIR VERIFY_BINDGEN_DIR PKG_DIR WWW_PKG_DIR
//        (wasm-pack's output for feature `web`, out-name edgeward; for `web-verifier`, out-name verify)
//        node scripts/pack-web.mjs --sizes PKG_DIR   (only print the sizes)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The package's metadata (the Worker's crate has its own description in Cargo.toml).
const METADATA = {
  description:
    'Verify JWTs in the browser and Node exactly as the Edgeward edge gate does (the same Rust core, as WebAssembly), ' +
    'and decode tokens for display, time refreshes, make PKCE pairs and DPoP proofs, lint Set-Cookie headers and check API keys.',
  keywords: ['jwt', 'jwks', 'jws', 'json-web-token', 'oauth', 'oidc', 'pkce', 'dpop', 'set-cookie', 'api-key', 'rate-limit', 'webassembly', 'wasm'],
  // The project's public repository; the package's sources are src/web/ there.
  repository: { type: 'git', url: 'git+https://github.com/edgeward/edgeward.git', directory: 'src/web' },
  homepage: 'https://github.com/edgeward/edgeward/tree/main/src/web#readme',
  bugs: { url: 'https://github.com/edgeward/edgeward/issues' },
};

// Every file of the package: npm publishes exactly these (tests/www checks `npm pack`).
const FILES = [
  'LICENSE', 'README.md', 'package.json', 'edgeward_bg.wasm',
  'edgeward.js', 'edgeward.module.js', 'error.js', 'edgeward.d.ts', 'edgeward.node.cjs', 'edgeward.node.mjs', 'edgeward.d.cts',
  'web.js', 'web.d.ts', 'web.node.mjs', 'web.node.cjs', 'web.d.cts',
  'verify_bg.wasm', 'verify.js', 'verify.d.ts', 'verify.node.cjs', 'verify.node.mjs', 'verify.d.cts',
  'decode.js', 'decode.cjs', 'decode.d.ts', 'decode.d.cts', 'dpop.js', 'dpop.cjs', 'dpop.d.ts', 'dpop.d.cts',
];

// The entry points without WebAssembly: plain JS modules of src/web/js/, and the declarations
// (by name) their types take from the WebAssembly build's.
// `edgeward/decode`'s functions: the whole package exports these same plain-JS ones.
const DECODE_API = ['decodeUnverified', 'refreshAt', 'pkcePair', 'randomToken', 'nonce'];
const PLAIN = {
  decode: {
    source: 'decode.js',
    exports: DECODE_API,
    types: ['Claims', 'UnverifiedParts', 'RefreshOptions', 'PkcePair', 'EdgewardErrorCode', 'EdgewardError', 'isEdgewardError', ...DECODE_API],
  },
  dpop: {
    source: 'dpop.js',
    exports: ['createDpopKey', 'dpopProof'],
    types: ['DpopProofOptions', 'EdgewardErrorCode', 'EdgewardError', 'isEdgewardError', 'createDpopKey', 'dpopProof'],
  },
};
const plainExports = (name) => ({
  types: { import: `./${name}.d.ts`, require: `./${name}.d.cts` },
  import: `./${name}.js`,
  require: `./${name}.cjs`,
  default: `./${name}.js`,
});

// The WebAssembly entry points: one build for browsers and bundlers, and Node's for `import` and
// `require`.
const wasmExports = (name) => ({
  types: { import: `./${name}.d.ts`, require: `./${name}.d.cts` },
  node: { import: `./${name}.node.mjs`, require: `./${name}.node.cjs` },
  browser: `./${name}.js`,
  default: `./${name}.js`,
});

const EXPORTS = {
  '.': wasmExports('edgeward'),
  './web': wasmExports('web'),
  './verify': wasmExports('verify'),
  './decode': plainExports('decode'),
  './dpop': plainExports('dpop'),
  './package.json': './package.json',
};

const fail = (why) => {
  console.error(`pack-web: ${why}`);
  process.exit(1);
};

function gzipSize(file) {
  return execFileSync('gzip', ['-9', '-c', file], { maxBuffer: 1 << 28 }).length;
}

/** What a browser or bundled app loads per entry point, raw and `gzip -9`. */
function printSizes(pkg) {
  const rows = [
    ['edgeward', ['edgeward.js', 'edgeward.module.js', 'decode.js', 'dpop.js', 'error.js']], ['edgeward/web', ['web.js', 'edgeward_bg.wasm']],
    ['edgeward/verify', ['verify.js']], ['edgeward/decode', ['decode.js', 'error.js']], ['edgeward/dpop', ['dpop.js', 'error.js']],
  ];
  for (const [entry, files] of rows) {
    let raw = 0;
    let gz = 0;
    for (const f of files) {
      raw += fs.statSync(path.join(pkg, f)).size;
      gz += gzipSize(path.join(pkg, f));
    }
    console.log(`${entry}: ${files.join(' + ')}: ${raw} bytes raw, ${gz} bytes gzip -9`);
  }
}

if (process.argv[2] === '--sizes') {
  printSizes(process.argv[3]);
  process.exit(0);
}

const [bindgen, verifyBindgen, pkg, wwwPkg] = process.argv.slice(2).map((p) => path.resolve(p));
if (!wwwPkg) fail('usage: pack-web.mjs BINDGEN_DIR VERIFY_BINDGEN_DIR PKG_DIR WWW_PKG_DIR');

// --- what wasm-bindgen made ----------------------------------------------------------------
/**
 * One wasm-pack output (`outName`.js, its .d.ts and _bg.wasm, the error.js snippet). Everything
 * bundled from it sits under its directory, esbuild's working directory, so the path comments it
 * writes in the output are relative to it and name no build machine directory.
 */
function bindgenOutput(dir, outName) {
  const glue = path.join(dir, `${outName}.js`);
  const glueText = fs.readFileSync(glue, 'utf8');
  const api = [...glueText.matchAll(/^export function (\w+)\(/gm)].map((m) => m[1]).sort();
  if (!glueText.includes('export { initSync, __wbg_init as default };')) fail(`unexpected wasm-bindgen output in ${glue}`);
  const snippets = fs.globSync('snippets/*/src/web/js/error.js', { cwd: dir });
  if (snippets.length !== 1) fail(`expected one error.js snippet in ${dir}, found ${snippets.length}`);
  const dts = fs.readFileSync(path.join(dir, `${outName}.d.ts`), 'utf8');
  const initAt = dts.indexOf('\nexport type InitInput');
  if (initAt < 0 || !dts.includes('export class EdgewardError') || !dts.includes('export function verify<')) fail(`unexpected ${outName}.d.ts from wasm-bindgen`);
  const entries = path.join(dir, 'entries');
  fs.mkdirSync(entries, { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'src/web/js/hex.js'), path.join(entries, 'hex.js'));
  return {
    dir, entries, glue, api, dts, initAt,
    errorModule: path.join(dir, snippets[0]),
    wasmFile: `${outName}_bg.wasm`,
    wasm: fs.readFileSync(path.join(dir, `${outName}_bg.wasm`)),
    version: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version,
    /** `file` as an import specifier in a module of `entries`. */
    imp: (file) => JSON.stringify(path.relative(entries, file).replace(/^(?!\.)/, './')),
  };
}
// The whole package (feature `web`), and verification alone (feature `web-verifier`).
const full = bindgenOutput(bindgen, 'edgeward');
const verifying = bindgenOutput(verifyBindgen, 'verify');
if (full.api.length < 10) fail(`unexpected wasm-bindgen output in ${bindgen} (exports: ${full.api.join(', ')})`);
const VERIFY_API = ['createVerifier', 'explain', 'verify'];
if (verifying.api.join() !== VERIFY_API.join()) fail(`the web-verifier module exports ${verifying.api.join(', ')}; expected ${VERIFY_API.join(', ')}`);
if (verifying.version !== full.version) fail(`two versions: ${full.version} and ${verifying.version}`);
const { version } = full;
// The plain-JS modules (DPoP on WebCrypto; decoding, refresh timing, PKCE and random values) go
// beside error.js, whose class they throw: one module, so one EdgewardError, in each entry point.
const jsModule = (source) => {
  const file = path.join(path.dirname(full.errorModule), source);
  fs.copyFileSync(path.join(ROOT, 'src/web/js', source), file);
  return file;
};
const dpopModule = jsModule('dpop.js');
const decodeModule = jsModule('decode.js');
const jsApi = ['createDpopKey', 'dpopProof'];
if (![...jsApi, ...DECODE_API].every((f) => full.dts.includes(`export function ${f}(`))) fail('unexpected edgeward.d.ts from wasm-bindgen');
if (!DECODE_API.every((f) => full.api.includes(f))) fail(`the web module does not export ${DECODE_API.join(', ')} (the reference of the plain-JS ones)`);
/** wasm-bindgen's exports that an entry point takes from the module (the rest are plain JS). */
const fromModule = (m) => m.api.filter((f) => m !== full || !DECODE_API.includes(f));
/** What each entry point exports, at run time. */
const names = (m) => [...m.api, 'EdgewardError', 'isEdgewardError', ...(m === full ? jsApi : [])];

// --- the entry points ------------------------------------------------------------------------
fs.rmSync(pkg, { recursive: true, force: true });
fs.mkdirSync(pkg, { recursive: true });

const reexports = (m, extra = '') =>
  `export { ${fromModule(m).join(', ')}${extra} } from ${m.imp(m.glue)};\nexport { EdgewardError, isEdgewardError } from ${m.imp(m.errorModule)};\n` +
  (m === full ? `export { ${jsApi.join(', ')} } from ${m.imp(dpopModule)};\nexport { ${DECODE_API.join(', ')} } from ${m.imp(decodeModule)};\n` : '');
const header = (what) => `// edgeward ${version} (Apache-2.0): ${what}\n// Generated by scripts/pack-web.mjs from the Rust crate's src/web/.`;
/** esbuild: error.js (the class and guard) stays a file of its own, `./error.js`, that the ES module builds share. */
const sharedError = {
  name: 'shared-error',
  setup(build) {
    build.onResolve({ filter: /(^|\/)error\.js$/ }, () => ({ path: './error.js', external: true }));
  },
};
// CommonJS in Node: the .wasm read from beside the bundle, synchronously, at load.
const readBeside = (m) =>
  `import { initSync } from ${m.imp(m.glue)};\nimport { readFileSync } from 'node:fs';\nimport { join } from 'node:path';\n` +
  `initSync({ module: readFileSync(join(__dirname, '${m.wasmFile}')) });\n`;
/**
 * An entry point whose module is ready at import: inlined (hex) for browsers and bundlers, read
 * from beside it in Node. The whole package's browser build is edgeward.module.js, the module's
 * functions alone (the rest are plain JS files of their own, see `edgeward.js` below), sharing
 * error.js; `edgeward/verify`'s is verify.js, everything in one file.
 */
const readyAtImport = (m, name, what) => [
  {
    m,
    out: m === full ? `${name}.module.js` : `${name}.js`,
    what: `${what}browsers and bundlers. The WebAssembly module is inlined (hex) and instantiated at import.`,
    banner: m === full ? '' : `/* @ts-self-types="./${name}.d.ts" */`,
    options: { format: 'esm', platform: 'neutral' },
    plugins: m === full ? [sharedError] : [],
    source:
      `import { initSync } from ${m.imp(m.glue)};\nimport { fromHex } from './hex.js';\n` +
      `initSync({ module: fromHex(${JSON.stringify(m.wasm.toString('hex'))}) });\n` +
      (m === full ? `export { ${fromModule(m).join(', ')} } from ${m.imp(m.glue)};\n` : reexports(m)),
  },
  { m, out: `${name}.node.cjs`, what: `${what}Node, require(). Reads ${m.wasmFile} next to this file.`, options: { format: 'cjs', platform: 'node' }, source: readBeside(m) + reexports(m) },
];
const VERIFY_WHAT = '`edgeward/verify` (createVerifier, verify, explain), ';

const builds = [
  ...readyAtImport(full, 'edgeward', ''),
  {
    m: full,
    out: 'web.js',
    what: '`edgeward/web`: call `await init()` (it fetches edgeward_bg.wasm) or `initSync({ module })` first.',
    banner: '/* @ts-self-types="./web.d.ts" */',
    options: { format: 'esm', platform: 'browser' },
    source: reexports(full, ', default, initSync'),
  },
  {
    m: full,
    out: 'web.node.mjs',
    what: '`edgeward/web` in Node: ready at import; `init()` and `initSync()` return at once.',
    options: { format: 'esm', platform: 'node' },
    source:
      `import { initSync } from ${full.imp(full.glue)};\nimport { readFileSync } from 'node:fs';\n` +
      `initSync({ module: readFileSync(new URL('./edgeward_bg.wasm', import.meta.url)) });\n` + reexports(full, ', default, initSync'),
  },
  {
    m: full,
    out: 'web.node.cjs',
    what: '`edgeward/web` in Node, require(): ready at load; `init()` and `initSync()` return at once.',
    options: { format: 'cjs', platform: 'node' },
    source: readBeside(full) + reexports(full, ', default, initSync'),
  },
  ...readyAtImport(verifying, 'verify', VERIFY_WHAT),
];
for (const b of builds) {
  const entry = path.join(b.m.entries, `${b.out}.entry.js`);
  fs.writeFileSync(entry, b.source);
  await esbuild.build({
    entryPoints: [entry],
    outfile: path.join(pkg, b.out),
    bundle: true,
    target: 'es2022',
    legalComments: 'none',
    banner: { js: [b.banner, header(b.what)].filter(Boolean).join('\n') },
    absWorkingDir: b.m.dir,
    logLevel: 'warning',
    // CommonJS builds: the glue's `init()` finds the .wasm by import.meta.url, but there it is never
    // reached (initialised at load, `init()` returns early), so CommonJS's empty import.meta is harmless.
    logOverride: b.options.format === 'cjs' ? { 'empty-import-meta': 'silent' } : {},
    plugins: b.plugins ?? [],
    ...b.options,
  });
}
// The whole package for browsers and bundlers: each part from its own file, so that a bundler
// drops the parts an app does not import (the package is `sideEffects: false`), the module too.
fs.writeFileSync(
  path.join(pkg, 'edgeward.js'),
  `/* @ts-self-types="./edgeward.d.ts" */\n${header('browsers and bundlers: the WebAssembly module (edgeward.module.js, inlined, instantiated at import) and the plain-JS parts, each a file a bundler can drop.')}\n` +
    `export { ${fromModule(full).join(', ')} } from './edgeward.module.js';\n` +
    `export { ${DECODE_API.join(', ')} } from './decode.js';\n` +
    `export { ${jsApi.join(', ')} } from './dpop.js';\n` +
    `export { EdgewardError, isEdgewardError } from './error.js';\n`,
);
await esbuild.build({
  entryPoints: [full.errorModule], outfile: path.join(pkg, 'error.js'), bundle: false, target: 'es2022', legalComments: 'none', format: 'esm', platform: 'neutral',
  banner: { js: header('the error class and guard of the ES module builds (edgeward.js, decode.js, dpop.js).') }, logLevel: 'warning',
});
// Node's `import`: the CommonJS build itself, so that `import` and `require` in one process share
// one instance (and one EdgewardError class).
for (const [m, name, what] of [[full, 'edgeward', ''], [verifying, 'verify', VERIFY_WHAT]]) {
  fs.writeFileSync(
    path.join(pkg, `${name}.node.mjs`),
    `${header(`${what}Node, import. The CommonJS build (${name}.node.cjs), re-exported.`)}\n` +
      `import edgeward from './${name}.node.cjs';\n\nexport const { ${names(m).join(', ')} } = edgeward;\n`,
  );
}

// The plain-JS entry points: ES modules sharing error.js, and CommonJS, each with its own copy.
for (const [name, p] of Object.entries(PLAIN)) {
  const module = path.join(path.dirname(full.errorModule), p.source);
  const entry = path.join(full.entries, `${name}.entry.js`);
  fs.writeFileSync(entry, `export { ${p.exports.join(', ')} } from ${full.imp(module)};\nexport { EdgewardError, isEdgewardError } from ${full.imp(full.errorModule)};\n`);
  for (const [out, format] of [[`${name}.js`, 'esm'], [`${name}.cjs`, 'cjs']]) {
    await esbuild.build({
      entryPoints: [entry], outfile: path.join(pkg, out), bundle: true, target: 'es2022', legalComments: 'none', format, platform: 'neutral',
      banner: { js: [format === 'esm' ? `/* @ts-self-types="./${name}.d.ts" */` : '', header(`\`edgeward/${name}\`: plain JS, no WebAssembly.`)].filter(Boolean).join('\n') },
      absWorkingDir: full.dir, logLevel: 'warning', plugins: format === 'esm' ? [sharedError] : [],
    });
  }
}

// The inlined builds must not reference the .wasm file: a bundler would then emit it as an asset.
for (const [m, name] of [[full, 'edgeward.module'], [verifying, 'verify']]) {
  const inlined = fs.readFileSync(path.join(pkg, `${name}.js`), 'utf8');
  if (inlined.includes('import.meta') || inlined.includes(m.wasmFile)) fail(`${name}.js refers to the .wasm file`);
}

// --- types, package.json, README, LICENSE, the .wasm files -----------------------------------
const typesHeader = (of) => `// edgeward ${version}: types${of}. Generated by scripts/pack-web.mjs from src/web/ (wasm-bindgen).\n`;
const lintless = (text) => text.replace(/^\/\* tslint:disable \*\/\n\/\* eslint-disable \*\/\n/, '');
const apiTypes = typesHeader('') + lintless(full.dts.slice(0, full.initAt)) + '\n';
const webTypes = typesHeader('') + lintless(full.dts);
// The web-verifier module's own declarations (TS_TYPES without feature `web`'s part): exactly its exports.
const verifyTypes = typesHeader(' of `edgeward/verify`') + lintless(verifying.dts.slice(0, verifying.initAt)) + '\n';
const declaredValues = [...verifyTypes.matchAll(/^export (?:declare )?(?:function|class) (\w+)/gm)].map((m) => m[1]).sort();
if (declaredValues.join() !== names(verifying).sort().join()) fail(`verify.d.ts declares ${declaredValues.join(', ')}; the module exports ${names(verifying).join(', ')}`);
for (const [file, text] of [
  ['edgeward.d.ts', apiTypes], ['edgeward.d.cts', apiTypes], ['web.d.ts', webTypes], ['web.d.cts', webTypes], ['verify.d.ts', verifyTypes], ['verify.d.cts', verifyTypes],
]) {
  fs.writeFileSync(path.join(pkg, file), text);
}
// The plain entry points' declarations: those of the full API's, by name. A top-level
// declaration runs from its doc comment (or `export`) to the next one.
const declarations = new Map();
{
  const lines = apiTypes.split('\n');
  const starts = [];
  let doc = null;
  lines.forEach((line, i) => {
    if (line.startsWith('/**')) doc ??= i;
    else if (line.startsWith('export ')) {
      starts.push(doc ?? i);
      doc = null;
    } else if (line.trim() !== '' && !/^[ *}]/.test(line)) doc = null;
  });
  starts.forEach((start, k) => {
    const text = lines.slice(start, starts[k + 1] ?? lines.length).join('\n').trim();
    const name = /^export (?:declare )?(?:function|class|interface|type|const) (\w+)/m.exec(text)?.[1];
    if (name && !declarations.has(name)) declarations.set(name, text);
  });
}
for (const [name, p] of Object.entries(PLAIN)) {
  const missing = p.types.filter((t) => !declarations.has(t));
  if (missing.length) fail(`no declaration of ${missing.join(', ')} for edgeward/${name}`);
  const text = `// edgeward ${version}: types of \`edgeward/${name}\`. Generated by scripts/pack-web.mjs from src/web/.\n` + p.types.map((t) => declarations.get(t)).join('\n\n') + '\n';
  for (const file of [`${name}.d.ts`, `${name}.d.cts`]) fs.writeFileSync(path.join(pkg, file), text);
}
for (const m of [full, verifying]) fs.writeFileSync(path.join(pkg, m.wasmFile), m.wasm);
fs.copyFileSync(path.join(ROOT, 'src/web/README.md'), path.join(pkg, 'README.md'));
fs.copyFileSync(path.join(ROOT, 'LICENSE'), path.join(pkg, 'LICENSE'));
const manifest = {
  name: 'edgeward',
  version,
  ...METADATA,
  license: 'Apache-2.0',
  type: 'module',
  engines: { node: '>=20' },
  // No module of the package does anything at import that an app could observe, so a bundler
  // may drop what the app does not use.
  sideEffects: false,
  exports: EXPORTS,
  // For tools that predate `exports`.
  main: './edgeward.node.cjs',
  module: './edgeward.js',
  types: './edgeward.d.ts',
  files: FILES.filter((f) => !['package.json', 'README.md', 'LICENSE'].includes(f)),
};
fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
const made = fs.readdirSync(pkg).sort();
if (made.join() !== [...FILES].sort().join()) fail(`pkg/ holds ${made.join(', ')}; expected ${FILES.join(', ')}`);

// --- www/pkg: the page loads `edgeward/web` (as ./pkg/edgeward.js) --------------------------
fs.rmSync(wwwPkg, { recursive: true, force: true });
fs.mkdirSync(wwwPkg, { recursive: true });
fs.copyFileSync(path.join(pkg, 'web.js'), path.join(wwwPkg, 'edgeward.js'));
fs.copyFileSync(path.join(pkg, 'web.d.ts'), path.join(wwwPkg, 'web.d.ts'));
fs.copyFileSync(path.join(pkg, 'edgeward_bg.wasm'), path.join(wwwPkg, 'edgeward_bg.wasm'));

printSizes(pkg);
