// Browser test of www/: the page loads the `edgeward` package (WebAssembly) in headless Chromium
// and shows the gate's verdicts. Serves www/ and a JWKS (with CORS, as real issuers do) on
// 127.0.0.1; keys are generated here. Screenshots go to tests/artifacts/www/.
// The "Call an API behind the gate" panel is driven against a stand-in gate: a loopback server on
// its own port (another origin), answering preflights and refusals with the headers the gate's
// `cors` section sends (Access-Control-Allow-Origin, -Expose-Headers with WWW-Authenticate and
// Retry-After). The browser's fetch and its CORS checks are real; the gate is not (no wrangler
// here): tests/e2e/cors-browser.test.mjs checks the real gate sends those headers.
// Needs www/pkg (scripts/build-web) and /usr/bin/chromium (or EDGEWARD_CHROMIUM).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, exportJWK, SignJWT, base64url, jwtVerify, EmbeddedJWK, calculateJwkThumbprint } from 'jose';
import { serveWww } from '../../demo/serve-www.mjs';
import { CHROMIUM, launchChromium } from './packed.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'www');
const AUDIENCE = 'api://demo';

const now = () => Math.floor(Date.now() / 1000);
const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));

let browser, www, issuerServer, issuer, jwks, keys, fakeGate, fakeGateUrl;
const pageErrors = [];
const gateCalls = []; // the stand-in gate's non-preflight requests: {path, authorization}

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
  fakeGate = await listen(http.createServer(standInGate(`http://127.0.0.1:${www.address().port}`)));
  fakeGateUrl = `http://127.0.0.1:${fakeGate.address().port}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  www?.close();
  issuerServer?.close();
  fakeGate?.close();
});

// The stand-in gate. Paths choose the answer:
//   /api/items    200 for FRESH, else 401 error="invalid_token" (an expired token)
//   /always-401   401 error="invalid_token" whatever the token (the refreshed one is refused too)
//   /limited      429 with Retry-After: 17
//   /no-error     401 `Bearer realm="edgeward"` only (what the gate says when no token came)
//   /unexposed    401 error="invalid_token", but no Access-Control-Expose-Headers
//   /stranger     the preflight is refused (403, no allow header), as for an origin not allowed
const FRESH = 'fresh-token-after-refresh';
const EXPIRED_CHALLENGE = 'Bearer realm="edgeward", error="invalid_token", error_description="token expired"';
function standInGate(allowedOrigin) {
  return (req, res) => {
    const { pathname } = new URL(req.url, 'http://gate');
    const allowed = req.headers.origin === allowedOrigin && pathname !== '/stranger';
    const cors = allowed ? { 'access-control-allow-origin': allowedOrigin, vary: 'Origin' } : { vary: 'Origin' };
    if (req.method === 'OPTIONS') {
      if (!allowed) return res.writeHead(403, { 'content-type': 'application/json' }).end('{"code":"cors_rejected"}');
      return res.writeHead(204, {
        ...cors,
        'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
        'access-control-allow-headers': 'authorization, content-type, x-csrf-token, dpop',
        'access-control-max-age': '0',
      }).end();
    }
    gateCalls.push({ path: pathname, authorization: req.headers.authorization ?? null });
    if (allowed && pathname !== '/unexposed') cors['access-control-expose-headers'] = 'www-authenticate, retry-after, ratelimit, ratelimit-policy, x-request-id';
    const json = { 'content-type': 'application/json', ...cors };
    const refuse = (challenge, code) => res.writeHead(401, { ...json, 'www-authenticate': challenge }).end(JSON.stringify({ code }));
    const fresh = req.headers.authorization === `Bearer ${FRESH}`;
    if (pathname === '/api/items' && fresh) return res.writeHead(200, json).end('{"items":["a","b"]}');
    if (pathname === '/limited') return res.writeHead(429, { ...json, 'retry-after': '17' }).end('{"code":"rate_limited"}');
    if (pathname === '/no-error') return refuse('Bearer realm="edgeward"', 'missing_token');
    return refuse(EXPIRED_CHALLENGE, 'expired');
  };
}

function mint(claims = {}, { iat = now() - 60, exp = now() + 3600 } = {}) {
  return new SignJWT({ scope: 'read', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'www-test', typ: 'JWT' })
    .setIssuer(issuer).setAudience(AUDIENCE).setSubject('user-42')
    .setIssuedAt(iat).setExpirationTime(exp)
    .sign(keys.privateKey);
}

/** Opens the page (optionally pre-filled from the query string) and waits for the module.
 * `expectedConsole`: console errors the browser itself logs for a test's refusals, not counted. */
async function openPage(query = {}, { expectedConsole = null } = {}) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !expectedConsole?.test(m.text())) pageErrors.push(m.text()); });
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

/** Fills the gate panel, clicks Call and returns what the panel shows; `gateCalls` then holds the
 * requests the stand-in gate received (preflights aside). */
async function callGateOnPage(page, path, { token = 'expired-token', refreshed = FRESH } = {}) {
  await page.fill('#gate-url', `${fakeGateUrl}${path}`);
  await page.fill('#gate-token', token);
  await page.fill('#gate-refreshed', refreshed);
  gateCalls.length = 0;
  await page.click('#gate-button');
  await page.waitForSelector('#gate-outcome[data-status]', { timeout: 10_000 });
  return page.evaluate(() => {
    const items = [...document.querySelectorAll('#gate-log li')];
    const out = document.getElementById('gate-outcome');
    return {
      status: out.dataset.status,
      verdict: out.dataset.verdict,
      retryAfter: out.dataset.retryAfter ?? null,
      message: document.getElementById('gate-message').textContent,
      body: document.getElementById('gate-body').textContent,
      steps: items.map((li) => li.dataset.step),
      log: items.map((li) => li.textContent),
    };
  });
}

// Chromium logs each refused response (and a blocked call) as a console error; those are expected.
const REFUSALS = /^(Failed to load resource: (the server responded with a status of (401|403|429)|net::ERR_FAILED)|Access to fetch at .* has been blocked by CORS policy)/;

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

  test('"Try it": a sample issuer made in the page, its token accepted with every check passing', async () => {
    const page = await openPage();
    await page.click('#try-button');
    await page.waitForSelector('#verdict[data-verdict]', { timeout: 10_000 });
    const r = await page.evaluate(() => ({
      verdict: document.getElementById('verdict').dataset.verdict,
      trust: document.getElementById('claims-trust').dataset.trust,
      steps: [...document.querySelectorAll('#steps li')].map((li) => li.dataset.result),
      sub: [...document.querySelectorAll('#claims tbody tr')].find((tr) => tr.querySelector('th').textContent === 'sub')?.querySelector('td').textContent,
      token: document.getElementById('token').value,
      jwks: JSON.parse(document.getElementById('jwks').value),
    }));
    assert.deepEqual([r.verdict, r.trust, r.sub], ['accept', 'verified', 'newcomer'], JSON.stringify(r));
    assert.deepEqual(r.steps, ['pass', 'pass', 'pass', 'pass', 'pass', 'pass']);
    await page.screenshot({ path: path.join(ARTIFACTS, 'try-it.png'), fullPage: true });
    // The page's token is a real ES256 token under the JWK Set it shows: jose agrees.
    const { importJWK } = await import('jose');
    const { payload } = await jwtVerify(r.token, await importJWK(r.jwks.keys[0], 'ES256'), { algorithms: ['ES256'] });
    assert.equal(payload.sub, 'newcomer');
    // And it is the package's verdict, not a fixed one: one changed claim is refused.
    const [h, , sig] = r.token.split('.');
    const forged = `${h}.${base64url.encode(JSON.stringify({ ...payload, sub: 'admin' }))}.${sig}`;
    await page.fill('#token', forged);
    await page.evaluate(() => { document.getElementById('verdict').removeAttribute('data-verdict'); });
    await page.click('#verify-button');
    await page.waitForSelector('#verdict[data-verdict]', { timeout: 10_000 });
    assert.equal(await page.evaluate(() => document.getElementById('verdict-code').textContent), 'bad_signature');
    await page.close();
  });

  test('an empty form shows what to do, not an error; the docs are one link away', async () => {
    const page = await openPage();
    await page.click('#verify-button');
    await page.waitForSelector('#verify-hint:not([hidden])', { timeout: 10_000 });
    const r = await page.evaluate(() => ({
      hint: document.getElementById('verify-hint').textContent,
      result: document.getElementById('result').hidden,
      verdict: document.getElementById('verdict').dataset.verdict ?? null,
      docs: document.getElementById('docs-link').href,
    }));
    assert.match(r.hint, /Paste a token.*Try it with a sample token/);
    assert.deepEqual([r.result, r.verdict], [true, null], 'no verdict shown');
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'pkg', 'package.json'), 'utf8'));
    assert.equal(r.docs, pkg.homepage, 'the link is the package\'s homepage');
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

  test('DPoP panel: a non-extractable key kept in IndexedDB, its thumbprint, proofs that jose verifies', async () => {
    const page = await openPage();
    assert.ok(await page.isHidden('#dpop-key'), 'no key before one is made');
    assert.ok(await page.isDisabled('#dpop-button'));
    await page.click('#dpop-key-button');
    await page.waitForSelector('#dpop-key:not([hidden])');
    const info = await page.$eval('#dpop-key-info', (e) => ({ ...e.dataset, text: e.textContent }));
    assert.deepEqual([info.extractable, info.origin], ['false', 'new'], JSON.stringify(info));
    const jkt = await page.textContent('#dpop-jkt');
    assert.match(jkt, /^[A-Za-z0-9_-]{43}$/);

    /** Fills the form, clicks "Make a proof", and returns the proof and the panel's decoded views. */
    const makeProof = async ({ method = 'GET', url, token = '', nonce = '' }) => {
      await page.selectOption('#dpop-method', method);
      await page.fill('#dpop-url', url);
      await page.fill('#dpop-token', token);
      await page.fill('#dpop-nonce', nonce);
      await page.evaluate(() => { delete document.getElementById('dpop-result').dataset.done; });
      await page.click('#dpop-button');
      await page.waitForSelector('#dpop-result[data-done]');
      return page.evaluate(() => ({
        done: document.getElementById('dpop-result').dataset.done,
        error: document.getElementById('dpop-error').textContent,
        proof: document.getElementById('dpop-proof').textContent,
        header: document.getElementById('dpop-header').textContent,
        claims: document.getElementById('dpop-claims').textContent,
      }));
    };
    const token = await mint();
    const r = await makeProof({ method: 'POST', url: 'https://api.example/orders?page=1#x', token, nonce: 'server-nonce-1' });
    assert.equal(r.done, 'proof', r.error);
    const { payload, protectedHeader } = await jwtVerify(r.proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
    assert.deepEqual(JSON.parse(r.header), protectedHeader, 'the panel shows the proof\'s header');
    assert.deepEqual(JSON.parse(r.claims), payload, 'and its claims');
    assert.deepEqual([payload.htm, payload.htu, payload.nonce], ['POST', 'https://api.example/orders', 'server-nonce-1']);
    assert.equal(payload.ath, crypto.createHash('sha256').update(token).digest('base64url'));
    assert.ok(Math.abs(payload.iat - now()) <= 5);
    assert.equal(jkt, await calculateJwkThumbprint(protectedHeader.jwk, 'sha256'), 'the thumbprint shown is the proof key\'s (jose agrees)');
    await page.locator('#dpop').screenshot({ path: path.join(ARTIFACTS, 'dpop.png') });

    // Reloaded, the page finds the same key in IndexedDB and signs with it.
    await page.reload();
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    assert.deepEqual(await page.$eval('#dpop-key-info', (e) => [e.dataset.origin, e.dataset.extractable]), ['stored', 'false']);
    assert.equal(await page.textContent('#dpop-jkt'), jkt);
    const again = await makeProof({ url: 'https://api.example/token' });
    const second = await jwtVerify(again.proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
    assert.equal(await calculateJwkThumbprint(second.protectedHeader.jwk, 'sha256'), jkt);
    assert.deepEqual(Object.keys(second.payload).sort(), ['htm', 'htu', 'iat', 'jti'], 'no token: no ath; no nonce');
    assert.notEqual(second.payload.jti, payload.jti);

    // A URL dpopProof cannot use: the package's error, shown.
    const bad = await makeProof({ url: 'ftp://files.example/x' });
    assert.equal(bad.done, 'error');
    assert.match(bad.error, /^invalid_argument: url must be an http: or https: URL/);
    await page.close();
  });

  test('gate panel: a 401 invalid_token is refreshed once and retried with the new token, then 200', async () => {
    const page = await openPage({}, { expectedConsole: REFUSALS });
    assert.equal(await page.inputValue('#gate-url'), 'http://127.0.0.1:8787/api/hello', 'the default gate URL');
    const r = await callGateOnPage(page, '/api/items');
    assert.equal(r.status, '200', JSON.stringify(r));
    assert.equal(r.verdict, 'accept');
    assert.deepEqual(r.steps, ['call', 'refresh', 'call'], 'one refresh, one retry');
    assert.match(r.log[0], /→ 401 · WWW-Authenticate: Bearer realm="edgeward", error="invalid_token"/, 'the page read the challenge cross-origin');
    assert.match(r.log[2], /with the refreshed token → 200$/);
    assert.deepEqual(gateCalls, [
      { path: '/api/items', authorization: 'Bearer expired-token' },
      { path: '/api/items', authorization: `Bearer ${FRESH}` },
    ]);
    assert.equal(r.message, 'accepted after one refresh');
    assert.equal(r.body, '{"items":["a","b"]}');
    await page.locator('#gate').screenshot({ path: path.join(ARTIFACTS, 'gate-refresh.png') });
    await page.close();
  });

  test('gate panel: a 401 after the refresh is not retried again', async () => {
    const page = await openPage({}, { expectedConsole: REFUSALS });
    const r = await callGateOnPage(page, '/always-401');
    assert.equal(r.status, '401', JSON.stringify(r));
    assert.deepEqual(r.steps, ['call', 'refresh', 'call']);
    assert.deepEqual(gateCalls.map((c) => c.authorization), ['Bearer expired-token', `Bearer ${FRESH}`]);
    assert.match(r.message, /not retried again/);
    await page.close();
  });

  test('gate panel: a 429 shows its Retry-After, with no refresh', async () => {
    const page = await openPage({}, { expectedConsole: REFUSALS });
    const r = await callGateOnPage(page, '/limited', { token: FRESH });
    assert.equal(r.status, '429', JSON.stringify(r));
    assert.equal(r.retryAfter, '17');
    assert.equal(r.message, 'rate limited: retry after 17 s');
    assert.deepEqual(r.steps, ['call']);
    assert.equal(gateCalls.length, 1);
    await page.locator('#gate').screenshot({ path: path.join(ARTIFACTS, 'gate-429.png') });
    await page.close();
  });

  test('gate panel: no refresh for a 401 without error="invalid_token", nor when WWW-Authenticate is not exposed', async () => {
    const page = await openPage({}, { expectedConsole: REFUSALS });
    const noError = await callGateOnPage(page, '/no-error');
    assert.equal(noError.status, '401', JSON.stringify(noError));
    assert.deepEqual(noError.steps, ['call']);
    assert.equal(gateCalls.length, 1);
    // The same challenge as /api/items, but without Access-Control-Expose-Headers the browser
    // hides it from the page: what the gate's expose_headers default is for.
    const hidden = await callGateOnPage(page, '/unexposed');
    assert.equal(hidden.status, '401', JSON.stringify(hidden));
    assert.deepEqual(hidden.steps, ['call']);
    assert.match(hidden.log[0], /WWW-Authenticate: \(not readable\)$/);
    assert.match(hidden.message, /not readable from this origin/);
    assert.equal(gateCalls.length, 1);
    await page.close();
  });

  test('gate panel: a refused preflight blocks the call before it is sent', async () => {
    const page = await openPage({}, { expectedConsole: REFUSALS });
    const r = await callGateOnPage(page, '/stranger');
    assert.equal(r.status, 'error', JSON.stringify(r));
    assert.deepEqual(r.steps, ['blocked']);
    assert.match(r.message, /cors\.allowed_origins/);
    assert.deepEqual(gateCalls, [], 'only the preflight reached the gate');
    await page.close();
  });

  test("gate panel: gate-call.js runs the package README's callApi, character for character", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'src', 'web', 'README.md'), 'utf8');
    const section = readme.split('\n## Calling an API behind the gate from another origin\n')[1];
    assert.ok(section, 'the README section exists');
    const block = section.match(/```js\n([\s\S]*?)```/)[1];
    // From the comment above the function to its closing brace.
    const fn = block.match(/\/\/ `refreshToken\(\)`[\s\S]*?\nexport async function callApi[\s\S]*?\n\}\n/)?.[0];
    assert.ok(fn, 'callApi in the README block');
    assert.ok(fs.readFileSync(path.join(ROOT, 'www', 'gate-call.js'), 'utf8').includes(fn), 'www/gate-call.js differs from the README');
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
