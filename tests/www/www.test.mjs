// Browser test of www/: the page loads the `edgeward` package (WebAssembly) in headless Chromium
// and shows the gate's verdicts. Serves www/ and a JWKS (with CORS, as real issuers do) on
// 127.0.0.1; keys are generated here. Screenshots go to tests/artifacts/www/.
// Needs www/pkg (scripts/build-web) and /usr/bin/chromium (or EDGEWARD_CHROMIUM).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { generateKeyPair, exportJWK, SignJWT, base64url } from 'jose';
import { serveWww } from '../../demo/serve-www.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'www');
const CHROMIUM = process.env.EDGEWARD_CHROMIUM ?? '/usr/bin/chromium';
// Headless Chromium as root, with nothing reaching outside hosts (see TOOLCHAIN.md).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const AUDIENCE = 'api://demo';

const now = () => Math.floor(Date.now() / 1000);
const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));

let browser, www, issuerServer, issuer, jwks, keys;
const pageErrors = [];

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'www', 'pkg', 'edgeward_bg.wasm')), 'www/pkg is missing: run scripts/build-web');
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  keys = await generateKeyPair('ES256', { extractable: true });
  jwks = { keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'www-test', alg: 'ES256', use: 'sig' }] };
  issuerServer = await listen(http.createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
      res.end(JSON.stringify(jwks));
    } else {
      res.writeHead(404).end();
    }
  }));
  issuer = `http://127.0.0.1:${issuerServer.address().port}`;
  www = await serveWww({ port: 0 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  www?.close();
  issuerServer?.close();
});

function mint(claims = {}, { iat = now() - 60, exp = now() + 3600 } = {}) {
  return new SignJWT({ scope: 'read', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'www-test', typ: 'JWT' })
    .setIssuer(issuer).setAudience(AUDIENCE).setSubject('user-42')
    .setIssuedAt(iat).setExpirationTime(exp)
    .sign(keys.privateKey);
}

/** Opens the page (optionally pre-filled from the query string) and waits for the module. */
async function openPage(query = {}) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  const url = `http://127.0.0.1:${www.address().port}/?${new URLSearchParams(query)}`;
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
  return page;
}

/** Pastes a token (and the policy), clicks Verify and returns {verdict, code, message}. */
async function verifyOnPage(page, token, { jwksText } = {}) {
  await page.fill('#token', token);
  await page.fill('#issuer', issuer);
  await page.fill('#audiences', AUDIENCE);
  await page.fill('#algorithms', 'ES256');
  if (jwksText !== undefined) {
    await page.fill('#jwks-url', '');
    await page.fill('#jwks', jwksText);
  }
  await page.evaluate(() => { document.getElementById('verdict').removeAttribute('data-verdict'); });
  await page.click('#verify-button');
  await page.waitForSelector('#verdict[data-verdict]', { timeout: 10_000 });
  return page.evaluate(() => ({
    verdict: document.getElementById('verdict').dataset.verdict,
    code: document.getElementById('verdict-code').textContent,
    message: document.getElementById('verdict-message').textContent,
    trust: document.getElementById('claims-trust').dataset.trust,
    claims: Object.fromEntries([...document.querySelectorAll('#claims tbody tr')]
      .map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').firstChild?.textContent ?? ''])),
    steps: [...document.querySelectorAll('#steps li')].map((li) => li.dataset.result),
    countdown: document.getElementById('countdown').textContent,
  }));
}

describe('www/ in headless Chromium', () => {
  test('a known-good token (keys from the JWKS URL) is accepted, with claims and a live countdown', async () => {
    const page = await openPage({ jwks_uri: `${issuer}/.well-known/jwks.json`, issuer, audience: AUDIENCE });
    const r = await verifyOnPage(page, await mint());
    assert.equal(r.verdict, 'accept', JSON.stringify(r));
    assert.equal(r.code, '');
    assert.equal(r.trust, 'verified');
    assert.equal(r.claims.sub, 'user-42');
    assert.equal(r.claims.iss, issuer);
    assert.deepEqual(r.steps, ['pass', 'pass', 'pass', 'pass', 'pass', 'pass']);
    assert.match(r.countdown, /^Expires in (1 h 0 min|59 min) \d+ s · a client should refresh at /);
    // The countdown is live: it changes within two seconds.
    await page.waitForFunction((before) => document.getElementById('countdown').textContent !== before, r.countdown, { timeout: 3000 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'accepted.png'), fullPage: true });
    await page.close();
  });

  test('a tampered token is rejected with bad_signature', async () => {
    const page = await openPage();
    const [h, , s] = (await mint()).split('.');
    const forgedClaims = base64url.encode(JSON.stringify({ iss: issuer, aud: AUDIENCE, sub: 'admin', scope: 'read admin', iat: now(), exp: now() + 3600 }));
    const r = await verifyOnPage(page, `${h}.${forgedClaims}.${s}`, { jwksText: JSON.stringify(jwks) });
    assert.equal(r.verdict, 'reject', JSON.stringify(r));
    assert.equal(r.code, 'bad_signature');
    assert.equal(r.trust, 'unverified', 'the tampered claims are shown as untrusted');
    assert.equal(r.claims.sub, 'admin');
    assert.deepEqual(r.steps, ['pass', 'pass', 'pass', 'pass', 'fail', 'skipped']);
    await page.screenshot({ path: path.join(ARTIFACTS, 'rejected-bad-signature.png'), fullPage: true });
    await page.close();
  });

  test('an expired token is rejected with expired', async () => {
    const page = await openPage();
    const r = await verifyOnPage(page, await mint({}, { iat: now() - 7200, exp: now() - 3600 }), { jwksText: JSON.stringify(jwks) });
    assert.equal(r.verdict, 'reject', JSON.stringify(r));
    assert.equal(r.code, 'expired');
    assert.deepEqual(r.steps, ['pass', 'pass', 'pass', 'pass', 'pass', 'fail']);
    assert.match(r.countdown, /^Unverified exp: expired 1 h 0 min \d+ s ago$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'rejected-expired.png'), fullPage: true });
    await page.close();
  });

  test('a signature by another key under the same kid is rejected', async () => {
    const page = await openPage();
    const rogue = await generateKeyPair('ES256');
    const forged = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'www-test' })
      .setIssuer(issuer).setAudience(AUDIENCE).setSubject('user-42').setIssuedAt().setExpirationTime('1h')
      .sign(rogue.privateKey);
    const r = await verifyOnPage(page, forged, { jwksText: JSON.stringify(jwks) });
    assert.deepEqual([r.verdict, r.code], ['reject', 'bad_signature']);
    await page.close();
  });

  test('the cookie linter shows the edge findings and the corrected header', async () => {
    const page = await openPage();
    await page.fill('#set-cookie', 'session=abc; Path=/; Max-Age=99999999');
    await page.click('#cookie-button');
    await page.waitForSelector('#cookie-result:not([hidden])');
    const findings = await page.$$eval('#cookie-findings code', (els) => els.map((e) => e.textContent));
    assert.deepEqual(findings, ['missing_secure', 'missing_httponly', 'missing_samesite', 'lifetime_too_long']);
    const fixed = await page.textContent('#cookie-fixed');
    assert.match(fixed, /^Set-Cookie: session=abc;/);
    for (const attr of ['Secure', 'HttpOnly', 'SameSite=Lax', 'Max-Age=34560000']) assert.ok(fixed.includes(attr), `${attr} in ${fixed}`);
    await page.locator('#cookie').screenshot({ path: path.join(ARTIFACTS, 'cookie-lint.png') });
    await page.close();
  });

  test('the API key check flags a one-character typo as you type', async () => {
    const page = await openPage();
    const key = edgewardKey('live');
    await page.fill('#apikey-input', key);
    await page.waitForSelector('#apikey-result[data-valid="true"]');
    assert.match(await page.textContent('#apikey-result'), /live key/);
    const typo = key.slice(0, 20) + (key[20] === 'a' ? 'b' : 'a') + key.slice(21);
    await page.fill('#apikey-input', typo);
    await page.waitForSelector('#apikey-result[data-valid="false"]');
    assert.match(await page.textContent('#apikey-result'), /checksum/);
    await page.fill('#apikey-input', 'sk_live_123');
    assert.match(await page.textContent('#apikey-result'), /not an Edgeward key/);
    await page.locator('#apikey').screenshot({ path: path.join(ARTIFACTS, 'apikey-check.png') });
    await page.close();
  });

  test('the PKCE generator gives an RFC 7636 S256 pair (checked with node:crypto)', async () => {
    const page = await openPage();
    await page.click('#pkce-button');
    await page.waitForSelector('#pkce-out:not([hidden])');
    const verifier = await page.textContent('#pkce-verifier');
    const challenge = await page.textContent('#pkce-challenge');
    assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(challenge, crypto.createHash('sha256').update(verifier).digest('base64url'));
    assert.equal(await page.textContent('#pkce-method'), 'S256');
    await page.click('#pkce-button');
    assert.notEqual(await page.textContent('#pkce-verifier'), verifier, 'a fresh verifier each time');
    await page.locator('#pkce').screenshot({ path: path.join(ARTIFACTS, 'pkce.png') });
    await page.close();
  });

  test('no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});

/** A well-formed Edgeward key made here independently (CRC-32 over the prefix and body, base62). */
function edgewardKey(env) {
  const A = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const signed = `ew_${env}_${Array.from({ length: 32 }, () => A[crypto.randomInt(62)]).join('')}`;
  let c = 0xffffffff;
  for (const b of Buffer.from(signed)) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  let v = (c ^ 0xffffffff) >>> 0;
  let sum = '';
  for (let i = 0; i < 6; i++) {
    sum = A[v % 62] + sum;
    v = Math.floor(v / 62);
  }
  return signed + sum;
}
