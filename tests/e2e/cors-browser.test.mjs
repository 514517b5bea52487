// Edgeward end to end, issue 20: a page in headless Chromium on one origin calling the gate (under
// wrangler dev) on another, as a single-page app does. The browser preflights the call with
// `Authorization`; the gate answers the preflight itself; the app reads the gate's own 401 and its
// WWW-Authenticate, and a 429 and its Retry-After; a page on an origin `cors` does not allow
// cannot make the call at all. Needs /usr/bin/chromium (or EDGEWARD_CHROMIUM), like tests/www.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';
import * as h from './harness.mjs';

const CHROMIUM = process.env.EDGEWARD_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A page server on its own loopback port (its own origin): one blank HTML page. */
async function startPageServer() {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><p>app</p>');
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${srv.address().port}`, stop: () => new Promise((resolve) => srv.close(resolve)) };
}

describe('cors: a browser app on another origin', { timeout: 240_000 }, () => {
  let app; let stranger; let browser;
  const stack = h.useStack({
    label: 'cors-browser',
    keys: ['ES256'],
    config: async () => {
      app = await startPageServer();
      stranger = await startPageServer();
      return {
        cors: { allowed_origins: [app.url] },
        rate_limits: { rules: [{ name: 'per-sub', key: 'sub', rate: 1, period_secs: 3600, burst: 1 }] },
      };
    },
  });
  let jwks; let worker; let key;
  before(async () => {
    ({ jwks, worker, keys: [key] } = stack);
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/setup`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });
  after(async () => {
    await browser?.close();
    await app?.stop();
    await stranger?.stop();
  });

  /** Runs `fetch(gate + path, init)` in a page of `from`; the status, the headers the page can read, and the body, or the error. */
  async function fetchFrom(from, path, headers = {}) {
    const page = await browser.newPage();
    try {
      await page.goto(from.url);
      return await page.evaluate(async ({ url, headers }) => {
        try {
          const r = await fetch(url, { headers });
          return { status: r.status, www: r.headers.get('www-authenticate'), retryAfter: r.headers.get('retry-after'), body: await r.text() };
        } catch (e) {
          return { error: String(e) };
        }
      }, { url: `${worker.url}${path}`, headers });
    } finally {
      await page.close();
    }
  }

  it("the app reads the gate's 401, its answer through the origin, and a 429", async () => {
    const missing = await fetchFrom(app, '/api/items');
    assert.equal(missing.status, 401, JSON.stringify(missing));
    assert.match(missing.www ?? '', /^Bearer realm=/, 'WWW-Authenticate is exposed to the app');
    assert.equal(JSON.parse(missing.body).code, 'missing_token');

    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'browser-user' } });
    const ok = await fetchFrom(app, '/api/items', h.bearer(token));
    assert.equal(ok.status, 200, JSON.stringify(ok));
    assert.equal(JSON.parse(ok.body).origin, 'edgeward-e2e-origin');
    const preflights = worker.jsonLines().filter((o) => o.event === 'decision' && o.decision === 'preflight');
    assert.ok(preflights.length >= 1, 'the browser preflighted the call with Authorization, and the gate answered it');

    const limited = await fetchFrom(app, '/api/items', h.bearer(token));
    assert.equal(limited.status, 429, JSON.stringify(limited));
    assert.ok(Number(limited.retryAfter) >= 1, `Retry-After is exposed: ${limited.retryAfter}`);

    const expired = await h.mintToken(key, { issuer: jwks.issuer, claims: { exp: h.nowSecs() - 3600, iat: h.nowSecs() - 7200 } });
    const stale = await fetchFrom(app, '/api/items', h.bearer(expired));
    assert.equal(stale.status, 401);
    assert.match(stale.www ?? '', /error="invalid_token"/, 'the app can tell it must refresh');
  });

  it('a page on another origin cannot make the call', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'stranger' } });
    const r = await fetchFrom(stranger, '/api/items', h.bearer(token));
    assert.ok(r.error, `blocked by the browser: ${JSON.stringify(r)}`);
    const refused = worker.jsonLines().filter((o) => o.event === 'decision' && o.reason === 'cors_rejected');
    assert.ok(refused.length >= 1, 'the gate refused the preflight');
  });
});
