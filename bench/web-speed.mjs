#!/usr/bin/env node
// The `edgeward` package's speed in headless Chromium against jose 6 (the dev dependency), issue
// 16's targets, measured in one page and one run:
//   verify   per algorithm (RS256, PS256, ES256, EdDSA, HS256): `createVerifier(policy, {jwks})`
//            then `await v.verify(token)`, against jose's `await jwtVerify(token,
//            createLocalJWKSet(jwks), options)` (key set made once; HS256: the secret imported once
//            by `importJWK`, as jose's key sets take no symmetric key); rounds of both interleaved,
//            the median per call over the rounds (target: edgeward / jose ≤ 1.2)
//   decode   `decodeUnverified` of `edgeward/decode` and of `edgeward` (the same plain JS, bundled
//            into each)
//            against jose's `decodeJwt` (target ≤ 2)
//   first    a fresh page: from before `import('edgeward')` or `import('edgeward/verify')` (the page
//            already loaded) to the first verification resolved (module fetched from 127.0.0.1 and compiled, policy parsed, key
//            imported, token verified); median of 7 pages (target ≤ 20 ms); jose's (its bundle
//            imported, a local key set, `jwtVerify`) in the same run as the baseline. Split into
//            the import, making the verifier (jose: the key set), the first verification, and a
//            second one of another token (what is left once the code the first call ran is
//            compiled)
// EDGEWARD_JS_FLAGS=... passes V8 flags to Chromium, for a diagnosis only (for instance
// --no-wasm-lazy-compilation: every WebAssembly function compiled at import, not at its first call).
// Tokens and keys are made by jose in Node before the pages open. Prints a Markdown section for
// BENCHMARKS.md. Usage: bash scripts/build-web && node bench/web-speed.mjs
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { generateKeyPair, generateSecret, exportJWK, SignJWT } from 'jose';
import { launchChromium } from '../tests/www/packed.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = path.join(ROOT, 'pkg');
if (!fs.existsSync(path.join(PKG, 'package.json'))) {
  console.error('pkg/ is missing: run scripts/build-web');
  process.exit(1);
}
const ISSUER = 'https://id.example';
const ALGS = { RS256: { modulusLength: 2048 }, PS256: { modulusLength: 2048 }, ES256: {}, EdDSA: { crv: 'Ed25519' }, HS256: {} };

const fixtures = {};
let otherES256;
for (const [alg, options] of Object.entries(ALGS)) {
  let signKey, jwk;
  if (alg === 'HS256') {
    signKey = await generateSecret(alg, { extractable: true });
    jwk = await exportJWK(signKey);
  } else {
    const pair = await generateKeyPair(alg, { extractable: true, ...options });
    signKey = pair.privateKey;
    jwk = await exportJWK(pair.publicKey);
  }
  jwk = { ...jwk, kid: `k-${alg}`, alg };
  const token = await new SignJWT({ scope: 'read write', tenant: 't-1', roles: ['a', 'b'] }).setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT' })
    .setIssuer(ISSUER).setAudience('api://demo').setSubject('user-42').setIssuedAt().setExpirationTime('1h').sign(signKey);
  fixtures[alg] = { token, jwks: { keys: [jwk] } };
  // A second token of the same key (another subject): the second verification in a fresh page.
  if (alg === 'ES256') {
    otherES256 = await new SignJWT({ scope: 'read' }).setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT' })
      .setIssuer(ISSUER).setAudience('api://demo').setSubject('user-43').setIssuedAt().setExpirationTime('1h').sign(signKey);
  }
}

// jose for the page, one ES module; the package's files are served from pkg/ as published.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-web-speed-'));
fs.writeFileSync(path.join(work, 'jose-entry.js'), "export { jwtVerify, createLocalJWKSet, decodeJwt, importJWK } from 'jose';\n");
await esbuild.build({
  entryPoints: [path.join(work, 'jose-entry.js')], outfile: path.join(work, 'jose.js'), bundle: true, minify: true, format: 'esm',
  platform: 'browser', target: 'es2022', logLevel: 'silent', nodePaths: [path.join(ROOT, 'node_modules')],
});
const FILES = {
  '/jose.js': path.join(work, 'jose.js'), '/edgeward.js': path.join(PKG, 'edgeward.js'), '/verify.js': path.join(PKG, 'verify.js'), '/decode.js': path.join(PKG, 'decode.js'),
};
const server = http.createServer((req, res) => {
  const file = FILES[new URL(req.url, 'http://x').pathname];
  if (file) return res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' }).end(fs.readFileSync(file));
  res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>bench</title>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium(process.env.EDGEWARD_JS_FLAGS ? [`--js-flags=${process.env.EDGEWARD_JS_FLAGS}`] : []);

// --- first verification after load ----------------------------------------------------------
/**
 * Fresh pages: import `entry` (the page already loaded), make a verifier (jose: a local key set),
 * verify one ES256 token.
 */
async function firstVerification(entry) {
  const total = [];
  const parts = { imported: [], made: [], verified: [], again: [] };
  for (let i = 0; i < 7; i++) {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    const t = await page.evaluate(async ({ entry, token, other, jwks }) => {
      const t0 = performance.now();
      const lib = await import(entry);
      const t1 = performance.now();
      const options = { issuer: 'https://id.example', algorithms: ['ES256'] };
      const v = lib.jwtVerify ? lib.createLocalJWKSet(jwks) : lib.createVerifier(options, { jwks });
      const t2 = performance.now();
      const check = (t) => (lib.jwtVerify ? lib.jwtVerify(t, v, options) : v.verify(t));
      await check(token);
      const t3 = performance.now();
      await check(other);
      return [t1 - t0, t2 - t1, t3 - t2, performance.now() - t3];
    }, { entry, ...fixtures.ES256, other: otherES256 });
    total.push(t[0] + t[1] + t[2]);
    for (const [k, part] of ['imported', 'made', 'verified', 'again'].entries()) parts[part].push(t[k]);
    await page.close();
  }
  return { total, parts };
}
const firsts = {
  edgeward: await firstVerification('/edgeward.js'),
  'edgeward/verify': await firstVerification('/verify.js'),
  'jose 6': await firstVerification('/jose.js'),
};

// --- steady state -----------------------------------------------------------------------------
const page = await browser.newPage();
await page.goto(`${origin}/`);
const results = await page.evaluate(async (fixtures) => {
  const ew = await import('/edgeward.js');
  const plain = await import('/decode.js');
  const jose = await import('/jose.js');
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  /** µs per call of each of `fns` (async), rounds interleaved; the median over rounds. */
  async function race(fns, calls, rounds = 15) {
    const per = fns.map(() => []);
    for (const f of fns) for (let i = 0; i < 50; i++) await f();
    for (let r = 0; r < rounds; r++) {
      for (const [k, f] of fns.entries()) {
        const t0 = performance.now();
        for (let i = 0; i < calls; i++) await f();
        per[k].push(((performance.now() - t0) * 1000) / calls);
      }
    }
    return per.map(median);
  }
  function raceSync(fns, calls, rounds = 15) {
    const per = fns.map(() => []);
    for (const f of fns) for (let i = 0; i < 1000; i++) f();
    for (let r = 0; r < rounds; r++) {
      for (const [k, f] of fns.entries()) {
        const t0 = performance.now();
        for (let i = 0; i < calls; i++) f();
        per[k].push(((performance.now() - t0) * 1000) / calls);
      }
    }
    return per.map(median);
  }
  const out = { verify: {}, decode: {} };
  // Steady state: both libraries' code warmed on every algorithm first (V8 tiers WebAssembly and
  // JS up in the background while they run), so the first algorithm measured pays for no compile.
  for (const [alg, { token, jwks }] of Object.entries(fixtures)) {
    const v = ew.createVerifier({ issuer: 'https://id.example', algorithms: [alg] }, { jwks });
    const keys = alg === 'HS256' ? await jose.importJWK(jwks.keys[0], alg) : jose.createLocalJWKSet(jwks);
    for (let i = 0; i < 300; i++) {
      await v.verify(token);
      await jose.jwtVerify(token, keys, { algorithms: [alg] });
    }
  }
  for (const [alg, { token, jwks }] of Object.entries(fixtures)) {
    const policy = { issuer: 'https://id.example', audiences: ['api://demo'], algorithms: [alg] };
    const v = ew.createVerifier(policy, { jwks });
    // jose's key sets take no symmetric keys: HS256 gets the secret imported once.
    const keys = alg === 'HS256' ? await jose.importJWK(jwks.keys[0], alg) : jose.createLocalJWKSet(jwks);
    const options = { issuer: 'https://id.example', audience: 'api://demo', algorithms: [alg] };
    if ((await v.verify(token)).sub !== 'user-42' || (await jose.jwtVerify(token, keys, options)).payload.sub !== 'user-42') throw new Error(alg);
    const [e, j] = await race([() => v.verify(token), () => jose.jwtVerify(token, keys, options)], 200);
    out.verify[alg] = { edgeward: e, jose: j };
  }
  const { token } = fixtures.ES256;
  const [p, w, j] = raceSync([() => plain.decodeUnverified(token), () => ew.decodeUnverified(token), () => jose.decodeJwt(token)], 2000);
  out.decode = { plain: p, whole: w, jose: j };
  out.userAgent = navigator.userAgent;
  return out;
}, fixtures);
await browser.close();
server.close();
fs.rmSync(work, { recursive: true, force: true });

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const f = (us) => (us < 10 ? us.toFixed(2) : us.toFixed(1));
const verdict = (ratio, target) => (ratio <= target ? 'met' : '**not met**');
const rows = Object.entries(results.verify).map(([alg, { edgeward, jose }]) => {
  const ratio = edgeward / jose;
  return `| verify ${alg} | ${f(edgeward)} | ${f(jose)} | ${ratio.toFixed(2)}× | ≤ 1.2× | ${verdict(ratio, 1.2)} |`;
});
const d = results.decode;
rows.push(`| decodeUnverified, \`edgeward/decode\` (plain JS) | ${f(d.plain)} | ${f(d.jose)} | ${(d.plain / d.jose).toFixed(2)}× | ≤ 2× | ${verdict(d.plain / d.jose, 2)} |`);
rows.push(`| decodeUnverified, \`edgeward\` (the same plain JS) | ${f(d.whole)} | ${f(d.jose)} | ${(d.whole / d.jose).toFixed(2)}× | ≤ 2× | ${verdict(d.whole / d.jose, 2)} |`);
const version = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
const chromium = /Chrome\/([\d.]+)/.exec(results.userAgent)?.[1];
console.log(`Measured ${new Date().toISOString().slice(0, 10)}, edgeward ${version} (pkg/), headless Chromium ${chromium}, load average ${os.loadavg()[0].toFixed(2)}.

| operation | edgeward µs/call | jose 6 µs/call | ratio | target | |
|---|---:|---:|---:|---:|---|
${rows.join('\n')}

First verification after load (the module imported from 127.0.0.1, \`createVerifier\` — jose: \`createLocalJWKSet\` — and the first ES256 verification resolved), median of 7 fresh pages each; target ≤ 20 ms, jose's in the same run as the baseline:\n\n${Object.entries(firsts).map(([entry, { total, parts }]) => {
  const base = median(firsts['jose 6'].total);
  const judged = entry === 'jose 6' ? 'the baseline' : `${(median(total) / base).toFixed(2)}× jose's, ${verdict(median(total), 20)}`;
  const m = (k) => median(parts[k]).toFixed(1);
  return `- \`${entry}\`: ${median(total).toFixed(1)} ms (range ${Math.min(...total).toFixed(1)}–${Math.max(...total).toFixed(1)}): ${judged}; the import (fetch and compile) ${m('imported')} ms, making the verifier ${m('made')} ms, the first verification ${m('verified')} ms (medians; a second token then ${m('again')} ms)`;
}).join('\n')}`);
