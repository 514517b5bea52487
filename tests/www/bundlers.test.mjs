// The packed `edgeward` package (tests/www/packed.mjs) in the bundlers a front-end uses, each with
// its defaults — no loader, no plugin, no configuration for the .wasm — and the result run in
// headless Chromium under a strict Content-Security-Policy (the one src/web/README.md states):
//   esbuild  `esbuild app.js --bundle --outfile=...` (its default format for browsers: an IIFE)
//   Vite     `vite build` of an index.html
//   webpack  `webpack --mode production`
//   Rollup   with @rollup/plugin-node-resolve at its defaults, which any npm import needs in
//            Rollup (it finds node_modules; it does nothing for .wasm); `--format es`
//   Parcel   `parcel build index.html` (the CLI; no source maps, its cache under the app's
//            directory, no automatic installs)
// The apps (tests/www/apps/) import the default entry point; webpack and esbuild also build one
// that `require()`s it, and Vite and webpack one on `edgeward/web`, whose .wasm they emit as an
// asset. Every bundler also builds app-verify.js (`edgeward/verify` alone: it must ship the
// verifying module, not the whole package's) and app-plain.js (`edgeward/decode` and
// `edgeward/dpop`, plain JS), run under a CSP without 'wasm-unsafe-eval'; esbuild and webpack
// build the `require()` twin of each.
// Builds go to tests/artifacts/pkg/<bundler>-<app>/dist.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { build as viteBuild } from 'vite';
import webpack from 'webpack';
import { rollup } from 'rollup';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import crypto from 'node:crypto';
import { generateKeyPair, exportJWK, SignJWT, base64url, jwtVerify, EmbeddedJWK, calculateJwkThumbprint } from 'jose';
import { serveWww } from '../../demo/serve-www.mjs';
import { launchChromium, packed } from './packed.mjs';

const APPS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'apps');
const PARCEL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'node_modules', '.bin', 'parcel');
// What the package needs from a page's CSP, and nothing more: its script, WebAssembly
// compilation, and (the test's fixture; for `edgeward/web`, the .wasm) fetches to the origin.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'";
const CSP_WITHOUT_WASM = "default-src 'none'; script-src 'self'; connect-src 'self'";

/** Each bundler: builds `entry` (in `src`) into `out`; returns the <script> tag to load it (null: it wrote index.html). */
const BUNDLERS = {
  async esbuild(src, entry, out) {
    await esbuild.build({ entryPoints: [path.join(src, entry)], bundle: true, outfile: path.join(out, 'app.js'), logLevel: 'silent' });
    return '<script src="app.js"></script>';
  },
  async vite(src, entry, out) {
    fs.writeFileSync(path.join(src, 'index.html'), `<!doctype html><html><body><script type="module" src="./${entry}"></script></body></html>\n`);
    await viteBuild({ root: src, configFile: false, logLevel: 'silent', build: { outDir: out, emptyOutDir: true } });
    return null;
  },
  async webpack(src, entry, out) {
    const compiler = webpack({ mode: 'production', context: src, entry: `./${entry}`, output: { path: out, filename: 'app.js' } });
    const stats = await new Promise((resolve, reject) => compiler.run((err, s) => (err ? reject(err) : resolve(s))));
    await new Promise((resolve) => compiler.close(resolve));
    if (stats.hasErrors()) throw new Error(stats.toString('errors-only'));
    return '<script src="app.js"></script>';
  },
  async parcel(src, entry, out) {
    fs.writeFileSync(path.join(src, 'index.html'), `<!doctype html><html><body><script type="module" src="./${entry}"></script></body></html>\n`);
    execFileSync(PARCEL, ['build', path.join(src, 'index.html'), '--dist-dir', out, '--cache-dir', path.join(src, '..', '.parcel-cache'), '--no-source-maps', '--no-autoinstall', '--log-level', 'error'], { cwd: path.dirname(src), encoding: 'utf8' });
    return null;
  },
  async rollup(src, entry, out) {
    const bundle = await rollup({ input: path.join(src, entry), plugins: [nodeResolve()], onwarn: () => {} });
    await bundle.write({ dir: out, format: 'es' });
    await bundle.close();
    return `<script type="module" src="${entry}"></script>`;
  },
};

const CASES = [
  ['esbuild', 'app.js'], ['vite', 'app.js'], ['webpack', 'app.js'], ['rollup', 'app.js'], ['parcel', 'app.js'],
  ['esbuild', 'app-require.cjs'], ['webpack', 'app-require.cjs'],
  ['vite', 'app-web.js'], ['webpack', 'app-web.js'],
];

let browser, fixture;
const servers = [];

before(async () => {
  packed();
  const keys = await generateKeyPair('ES256', { extractable: true });
  const jwks = { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] };
  const token = await new SignJWT({ scope: 'read' }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer('https://id.example').setSubject('user-42').setIssuedAt().setExpirationTime('10m').sign(keys.privateKey);
  const [h, , s] = token.split('.');
  const tampered = `${h}.${base64url.encode(JSON.stringify({ iss: 'https://id.example', sub: 'admin', exp: 4102444800 }))}.${s}`;
  fixture = JSON.stringify({ token, tampered, jwks, policy: { issuer: 'https://id.example', algorithms: ['ES256'] } });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
});

/** Builds one app with one bundler into tests/artifacts/pkg/<bundler>-<app>/dist; returns dist. */
async function buildApp(bundler, entry) {
  const dir = path.join(packed(), `${bundler}-${entry.replace(/\.\w+$/, '')}`);
  const src = path.join(dir, 'src');
  const out = path.join(dir, 'dist');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(src, { recursive: true });
  for (const f of [entry, 'check.js']) fs.copyFileSync(path.join(APPS, f), path.join(src, f));
  const script = await BUNDLERS[bundler](src, entry, out);
  if (script) fs.writeFileSync(path.join(out, 'index.html'), `<!doctype html><html><body>${script}</body></html>\n`);
  fs.writeFileSync(path.join(out, 'fixture.json'), fixture);
  return out;
}

/** Serves `dist` under `csp`, opens it, and returns {result, error, pageErrors, origin}. */
async function runApp(dist, csp) {
  const server = await serveWww({ root: dist, port: 0, headers: { 'content-security-policy': csp, 'cache-control': 'no-store' } });
  servers.push(server);
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => document.body?.dataset.result || document.body?.dataset.error, null, { timeout: 15_000 }).catch(() => {});
    const { result, error } = await page.evaluate(() => ({ ...document.body.dataset }));
    return { result: result && JSON.parse(result), error, pageErrors, origin: `http://127.0.0.1:${server.address().port}` };
  } finally {
    await page.close();
  }
}

/** Every file an app loads, and their sizes (for the test log). */
function sizes(dist) {
  let raw = 0;
  let gzip = 0;
  for (const f of fs.readdirSync(dist, { recursive: true })) {
    const file = path.join(dist, f);
    if (!fs.statSync(file).isFile() || /\.(html|json)$/.test(f)) continue;
    raw += fs.statSync(file).size;
    gzip += execFileSync('gzip', ['-9', '-c', file], { maxBuffer: 1 << 28 }).length;
  }
  return `${raw} B raw, ${gzip} B gzip -9`;
}

const EXPECTED = { sub: 'user-42', viaVerifier: 'user-42', alg: 'ES256', pkce: 'S256', tampered: 'bad_signature' };

describe('the package in bundlers (their defaults), run in headless Chromium under a strict CSP', () => {
  for (const [bundler, entry] of CASES) {
    test(`${bundler}: ${entry}`, async (t) => {
      const dist = await buildApp(bundler, entry);
      t.diagnostic(`${bundler} ${entry}: ${sizes(dist)}`);
      const { origin, ...r } = await runApp(dist, CSP);
      // The DPoP proof Chromium made: checked here with jose, as a server would.
      const { dpop, ...rest } = r.result ?? {};
      assert.deepEqual({ ...r, result: rest }, { result: EXPECTED, error: undefined, pageErrors: [] });
      const { payload, protectedHeader } = await jwtVerify(dpop.proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
      assert.deepEqual([payload.htm, payload.htu, payload.ath], ['GET', `${origin}/api/orders`, crypto.createHash('sha256').update(JSON.parse(fixture).token).digest('base64url')]);
      assert.equal(dpop.jkt, await calculateJwkThumbprint(protectedHeader.jwk, 'sha256'), 'jwkThumbprint in the browser = jose\'s');
      assert.equal(dpop.extractable, false);
    });
  }

  // The module each WebAssembly entry point inlines, as the hex text a bundle carries.
  const inlinedHex = (file) => /fromHex\("([0-9a-f]+)"\)/.exec(fs.readFileSync(path.join(packed(), 'node_modules', 'edgeward', file), 'utf8'))[1];
  const VERIFY_CASES = [
    ['esbuild', 'app-verify.js'], ['vite', 'app-verify.js'], ['webpack', 'app-verify.js'], ['rollup', 'app-verify.js'], ['parcel', 'app-verify.js'],
    ['esbuild', 'app-verify-require.cjs'], ['webpack', 'app-verify-require.cjs'],
  ];
  for (const [bundler, entry] of VERIFY_CASES) {
    test(`${bundler}: ${entry} (edgeward/verify: its own module only)`, async (t) => {
      const dist = await buildApp(bundler, entry);
      t.diagnostic(`${bundler} ${entry}: ${sizes(dist)}`);
      const scripts = fs.readdirSync(dist, { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => fs.readFileSync(path.join(dist, f), 'utf8')).join('\n');
      assert.ok(!fs.readdirSync(dist, { recursive: true }).some((f) => f.endsWith('.wasm')), 'no .wasm emitted: the module is inlined');
      assert.ok(scripts.includes(inlinedHex('verify.js')), 'the bundle carries verify_bg.wasm');
      assert.ok(!scripts.includes(inlinedHex('edgeward.module.js')), 'and not the whole package\'s module');
      const { origin, ...r } = await runApp(dist, CSP);
      assert.deepEqual(r, {
        result: {
          exports: ['EdgewardError', 'createVerifier', 'explain', 'isEdgewardError', 'verify'],
          sub: 'user-42', viaVerifier: 'user-42', explained: 'accept', tampered: ['bad_signature', 401], expired: ['expired', 401],
        },
        error: undefined,
        pageErrors: [],
      });
    });
  }

  // app-plain-whole.js imports the same functions from `edgeward` itself: every bundler drops the
  // module it does not use (the package is side-effect free), so it too runs without WebAssembly.
  const PLAIN_CASES = ['esbuild', 'vite', 'webpack', 'rollup', 'parcel'].flatMap((b) => [[b, 'app-plain.js'], [b, 'app-plain-whole.js']]);
  for (const [bundler, entry] of [...PLAIN_CASES, ['esbuild', 'app-plain-require.cjs'], ['webpack', 'app-plain-require.cjs']]) {
    test(`${bundler}: ${entry} (no WebAssembly: a CSP without 'wasm-unsafe-eval')`, async (t) => {
      const dist = await buildApp(bundler, entry);
      t.diagnostic(`${bundler} ${entry}: ${sizes(dist)}`);
      assert.ok(!fs.readdirSync(dist, { recursive: true }).some((f) => f.endsWith('.wasm')), 'no .wasm emitted');
      const scripts = fs.readdirSync(dist, { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => fs.readFileSync(path.join(dist, f), 'utf8')).join('\n');
      assert.ok(!scripts.includes('0061736d'), 'no WebAssembly module in the bundle');
      const { origin, ...r } = await runApp(dist, CSP_WITHOUT_WASM);
      const { proof, ...rest } = r.result ?? {};
      assert.deepEqual({ ...r, result: rest }, { result: { sub: 'user-42', alg: 'ES256', malformed: 'malformed_token', pkce: 'S256', refresh: true, random: 33 }, error: undefined, pageErrors: [] });
      const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
      assert.deepEqual([payload.htm, payload.htu], ['GET', `${origin}/api/orders`]);
    });
  }

  test("without 'wasm-unsafe-eval' the page cannot compile the module (the CSP line is needed)", async () => {
    for (const [bundler, entry] of [['esbuild', 'app.js'], ['vite', 'app-web.js'], ['esbuild', 'app-verify.js']]) {
      const dist = path.join(packed(), `${bundler}-${entry.replace(/\.\w+$/, '')}`, 'dist');
      const { origin, ...r } = await runApp(dist, CSP_WITHOUT_WASM);
      assert.equal(r.result, undefined, entry);
      assert.match([...r.pageErrors, r.error].join('\n'), /WebAssembly.*(unsafe-eval|Content Security Policy)/s, entry);
    }
  });
});
