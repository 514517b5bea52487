#!/usr/bin/env node
// What a front-end ships per entry point of the `edgeward` package (and the entry points made for
// one use: `edgeward/decode`, plain JS, for the decode app; `edgeward/verify`, the verifying
// module alone, for the verify app), against issue 16's size targets, and what importing it costs
// at page load. Reads pkg/ as scripts/build-web last built it (run that first); prints a Markdown
// section for BENCHMARKS.md ("JS package: entry points").
//
//   sizes  each app bundled by esbuild (--bundle --minify --format=esm, browser), everything it
//          loads (JS, and the .wasm for `edgeward/web`), raw, gzip -9 and brotli (quality 11);
//          the same apps on jose (the dev dependency) for comparison; and the .wasm as a file,
//          as hex text and as base64 text
//   load   headless Chromium, fresh page each time: from the first script to the package being
//          usable (`edgeward` and `edgeward/verify`: import, which compiles the inlined module;
//          `edgeward/web`: `await init()`, fetch from 127.0.0.1 included); median of 7
//
// Usage: node bench/web-size.mjs      (needs node_modules from scripts/setup, and chromium)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { launchChromium } from '../tests/www/packed.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = path.join(ROOT, 'pkg');
if (!fs.existsSync(path.join(PKG, 'package.json'))) {
  console.error('pkg/ is missing: run scripts/build-web');
  process.exit(1);
}
const TARGETS = { decode: 8_000, verify: 40_000, all: 80_000 };

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjo0MTAyNDQ0ODAwfQ.sig';
const APPS = {
  decode: {
    edgeward: `import { decodeUnverified } from 'edgeward';\nwindow.out = decodeUnverified(${JSON.stringify(TOKEN)});`,
    jose: `import { decodeJwt } from 'jose';\nwindow.out = decodeJwt(${JSON.stringify(TOKEN)});`,
    // The entry point made for this app alone: [entry, what it is, the app].
    only: ['edgeward/decode', 'plain JS', `import { decodeUnverified } from 'edgeward/decode';\nwindow.out = decodeUnverified(${JSON.stringify(TOKEN)});`],
  },
  verify: {
    edgeward: `import { createVerifier } from 'edgeward';\nwindow.check = (t, jwks) => createVerifier({ issuer: 'https://id.example', algorithms: ['RS256', 'ES256'] }, { jwks }).verify(t);`,
    jose: `import { jwtVerify, createLocalJWKSet } from 'jose';\nwindow.check = (t, jwks) => jwtVerify(t, createLocalJWKSet(jwks), { issuer: 'https://id.example', algorithms: ['RS256', 'ES256'] });`,
    only: ['edgeward/verify', 'its own module', `import { createVerifier } from 'edgeward/verify';\nwindow.check = (t, jwks) => createVerifier({ issuer: 'https://id.example', algorithms: ['RS256', 'ES256'] }, { jwks }).verify(t);`],
  },
  all: {
    edgeward: `import * as edgeward from 'edgeward';\nwindow.edgeward = edgeward;`,
  },
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-web-size-'));
fs.mkdirSync(path.join(work, 'node_modules'));
fs.symlinkSync(PKG, path.join(work, 'node_modules', 'edgeward'));
fs.symlinkSync(path.join(ROOT, 'node_modules', 'jose'), path.join(work, 'node_modules', 'jose'));

const gzip = (buf) => execFileSync('gzip', ['-9', '-c'], { input: buf, maxBuffer: 1 << 28 }).length;
const brotli = (buf) => zlib.brotliCompressSync(buf, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;

/** Bundles `source` (with `edgeward` imports rewritten to `entry`) and measures everything it loads. */
async function measure(name, source, entry = 'edgeward') {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  // `edgeward/web`: the same app, after `await init()` (which fetches the .wasm counted below).
  const text = entry === 'edgeward/web' ? `import init from 'edgeward/web';\nawait init();\n${source.replace("from 'edgeward';", "from 'edgeward/web';")}` : source;
  fs.writeFileSync(path.join(dir, 'app.js'), text);
  await esbuild.build({
    entryPoints: [path.join(dir, 'app.js')], outfile: path.join(dir, 'out', 'app.js'), bundle: true, minify: true,
    format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'silent',
  });
  const files = [fs.readFileSync(path.join(dir, 'out', 'app.js'))];
  if (entry === 'edgeward/web') files.push(fs.readFileSync(path.join(PKG, 'edgeward_bg.wasm')));
  const sum = (f) => files.reduce((n, b) => n + f(b), 0);
  return { raw: sum((b) => b.length), gzip: sum(gzip), brotli: sum(brotli) };
}

const fmt = (n) => n.toLocaleString('en-US');
const rows = [];
for (const [app, variants] of Object.entries(APPS)) {
  const target = TARGETS[app];
  const e = await measure(`${app}-edgeward`, variants.edgeward);
  const w = await measure(`${app}-web`, variants.edgeward, 'edgeward/web');
  const j = variants.jose ? await measure(`${app}-jose`, variants.jose) : null;
  const only = variants.only ? await measure(`${app}-only`, variants.only[2]) : null;
  if (only) {
    const ratio = only.gzip / target;
    rows.push(`| ${app} | \`${variants.only[0]}\` (${variants.only[1]}) | ${fmt(only.raw)} | ${fmt(only.gzip)} | ${fmt(only.brotli)} | ${fmt(target)} | ${ratio.toFixed(2)}× | ${ratio <= 1 ? 'met' : '**not met**'} |`);
  }
  for (const [label, m] of [['`edgeward`', e], ['`edgeward/web` (+ .wasm)', w]]) {
    const ratio = m.gzip / target;
    rows.push(`| ${app} | ${label} | ${fmt(m.raw)} | ${fmt(m.gzip)} | ${fmt(m.brotli)} | ${fmt(target)} | ${ratio.toFixed(1)}× | ${ratio <= 1 ? 'met' : '**not met**'} |`);
  }
  if (j) rows.push(`| ${app} | jose 6 (for comparison) | ${fmt(j.raw)} | ${fmt(j.gzip)} | ${fmt(j.brotli)} | | | |`);
}

// --- why hex: the .wasm as a file and as the text an entry point could inline ----------------
const wasmFile = fs.readFileSync(path.join(PKG, 'edgeward_bg.wasm'));
const encodings = [['the .wasm file', wasmFile], ['hex text (what `edgeward` inlines)', Buffer.from(wasmFile.toString('hex'))], ['base64 text', Buffer.from(wasmFile.toString('base64'))]]
  .map(([label, b]) => `| ${label} | ${fmt(b.length)} | ${fmt(gzip(b))} (${(gzip(b) / gzip(wasmFile)).toFixed(2)}×) | ${fmt(brotli(b))} (${(brotli(b) / brotli(wasmFile)).toFixed(2)}×) |`);

// --- load: from the first script to the package being usable, in Chromium --------------------
const LOAD_APPS = {
  edgeward: "import { nonce } from 'edgeward';\nnonce();\nwindow.ready = performance.now() - window.t0;",
  'edgeward/verify': "import { createVerifier } from 'edgeward/verify';\ncreateVerifier({ issuer: null, algorithms: ['ES256'] }, { jwks: { keys: [] } }).free();\nwindow.ready = performance.now() - window.t0;",
  'edgeward/web': "import init, { nonce } from 'edgeward/web';\nawait init();\nnonce();\nwindow.ready = performance.now() - window.t0;",
};
const served = {};
for (const [entry, source] of Object.entries(LOAD_APPS)) {
  const dir = path.join(work, `load-${entry.replace('/', '-')}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'app.js'), source);
  await esbuild.build({
    entryPoints: [path.join(dir, 'app.js')], outdir: path.join(dir, 'out'), bundle: true, minify: true, format: 'esm',
    platform: 'browser', target: 'es2022', logLevel: 'silent',
  });
  served[entry] = fs.readFileSync(path.join(dir, 'out', 'app.js'));
}
const server = http.createServer((req, res) => {
  const entry = new URL(req.url, 'http://x').searchParams.get('entry');
  if (req.url.startsWith('/app.js')) return res.writeHead(200, { 'content-type': 'text/javascript' }).end(served[entry]);
  if (req.url.startsWith('/edgeward_bg.wasm')) return res.writeHead(200, { 'content-type': 'application/wasm' }).end(wasmFile);
  res.writeHead(200, { 'content-type': 'text/html' })
    .end(`<script>window.t0 = performance.now()</script><script type="module" src="/app.js?entry=${encodeURIComponent(entry)}"></script>`);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const browser = await launchChromium();
const load = {};
for (const entry of Object.keys(LOAD_APPS)) load[entry] = [];
for (let i = 0; i < 7; i++) {
  for (const entry of Object.keys(LOAD_APPS)) {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/?entry=${encodeURIComponent(entry)}`);
    await page.waitForFunction(() => window.ready !== undefined);
    load[entry].push(await page.evaluate(() => window.ready));
    await page.close();
  }
}
await browser.close();
server.close();
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
fs.rmSync(work, { recursive: true, force: true });

const version = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
console.log(`Measured ${new Date().toISOString().slice(0, 10)}, edgeward ${version} (pkg/), esbuild ${esbuild.version}, load average ${os.loadavg()[0].toFixed(2)}.

| app | entry point | raw B | gzip -9 B | brotli B | target (gzip) B | gzip / target | |
|---|---|---:|---:|---:|---:|---:|---|
${rows.join('\n')}

The module as a file and as inline text:

| form | raw B | gzip -9 B | brotli B |
|---|---:|---:|---:|
${encodings.join('\n')}

Load in headless Chromium, first script to the package usable (median of 7, fresh page each):
${Object.entries(load).map(([entry, ms]) => `\`${entry}\` ${median(ms).toFixed(1)} ms (range ${Math.min(...ms).toFixed(1)}–${Math.max(...ms).toFixed(1)})`).join(', ')}.`);
