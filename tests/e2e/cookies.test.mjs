// Edgeward end to end, issue 7: cookie security. An origin that sets insecure cookies → the client
// receives fixed ones (each Set-Cookie kept separate); a cross-site POST with a cookie token → 403;
// the same POST same-origin → forwarded without the token cookie; an expired cookie token → 401
// and a clearing Set-Cookie; the edge mints a double-submit CSRF cookie that then works.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as h from './harness.mjs';

/** An origin that answers every request with several insecure Set-Cookie headers. */
async function startCookieOrigin() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.setHeader('set-cookie', [
        'sid=abc123',
        'pref=dark; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/',
        '__Host-app=1; Domain=example.com; Path=/sub; Secure; HttpOnly; SameSite=Lax',
        'ok=1; Secure; HttpOnly; SameSite=Strict; Path=/',
        'garbage-without-equals',
      ]);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

describe('cookie security', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'cookies',
    keys: ['ES256'],
    origin: startCookieOrigin,
    config: { csrf: { allowed_origins: ['https://app.example'] } },
  });
  let jwks; let origin; let worker; let key;
  before(() => ({ jwks, origin, worker, keys: [key] } = stack));

  const cookieHeader = (token, extra = '') => ({ cookie: `theme=blue; ${h.COOKIE_NAME}=${token}${extra}` });

  it('origin Set-Cookie headers are fixed one by one; invalid ones dropped', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const res = await worker.request({ path: '/api/cookies', headers: h.bearer(token) });
    assert.equal(res.status, 200, res.text);
    const set = res.headers['set-cookie'];
    assert.ok(Array.isArray(set), 'set-cookie headers arrive separately');
    const byName = Object.fromEntries(set.map((c) => [c.split('=')[0], c]));
    assert.deepEqual(Object.keys(byName).sort(), ['__Host-app', 'ok', 'pref', 'sid']);
    assert.match(byName.sid, /^sid=abc123;/);
    for (const attr of [/; Secure/, /; HttpOnly/, /; SameSite=Lax/]) assert.match(byName.sid, attr);
    assert.match(byName.pref, /Max-Age=34560000/);
    assert.doesNotMatch(byName.pref, /Expires/i, 'too-long Expires replaced by the Max-Age cap');
    assert.match(byName['__Host-app'], /Path=\/(;|$)/);
    assert.doesNotMatch(byName['__Host-app'], /Domain/i);
    assert.equal(byName.ok, 'ok=1; Secure; HttpOnly; SameSite=Strict; Path=/', 'a compliant cookie is untouched');
    const line = await worker.waitForJsonLine((o) => o.event === 'cookie_policy' && o.cookie === 'sid');
    assert.ok(line, 'cookie changes are logged by name');
    assert.ok(!worker.output.includes('abc123'), 'cookie values are never logged');
  });

  it('cross-site POST with a cookie token → 403 csrf_rejected, origin not called', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const before = origin.seen.length;
    const res = await worker.request({ method: 'POST', path: '/api/transfer', headers: { ...cookieHeader(token), 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }, body: 'x=1' });
    h.assertError(res, { status: 403, code: 'csrf_rejected' });
    assert.equal(origin.seen.length, before);
  });

  it('same-origin POST with a cookie token → forwarded without the token cookie', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const res = await worker.request({ method: 'POST', path: '/api/transfer', headers: { ...cookieHeader(token), 'sec-fetch-site': 'same-origin' }, body: 'x=1' });
    assert.equal(res.status, 200, res.text);
    const seen = origin.seen.at(-1);
    assert.equal(seen.body, 'x=1');
    assert.equal(seen.headers.cookie, 'theme=blue', 'other cookies untouched, token cookie removed');
    assert.ok(!JSON.stringify(seen.headers).includes(token));
    const csrf = res.headers['set-cookie'].find((c) => c.startsWith('__Host-edgeward-csrf='));
    assert.ok(csrf, 'the edge mints a CSRF cookie for cookie-authenticated clients');
    assert.match(csrf, /^__Host-edgeward-csrf=[A-Za-z0-9_-]{43}; Path=\/; Secure; SameSite=Strict$/);
  });

  it('allow-listed Origin and double-submit token pass; a wrong token does not', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    let res = await worker.request({ method: 'PUT', path: '/api/x', headers: { ...cookieHeader(token), origin: 'https://app.example' }, body: '1' });
    assert.equal(res.status, 200, res.text);
    res = await worker.request({ method: 'DELETE', path: '/api/x', headers: { ...cookieHeader(token, '; __Host-edgeward-csrf=abc'), 'x-csrf-token': 'abc' } });
    assert.equal(res.status, 200, res.text);
    res = await worker.request({ method: 'DELETE', path: '/api/x', headers: { ...cookieHeader(token, '; __Host-edgeward-csrf=abc'), 'x-csrf-token': 'abd' } });
    h.assertError(res, { status: 403, code: 'csrf_rejected' });
  });

  it('bearer-header POSTs are not subject to CSRF checks', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const res = await worker.request({ method: 'POST', path: '/api/x', headers: { ...h.bearer(token), 'sec-fetch-site': 'cross-site' }, body: '1' });
    assert.equal(res.status, 200, res.text);
  });

  it('expired token in a cookie → 401 and a clearing Set-Cookie', async () => {
    const now = h.nowSecs();
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { iat: now - 7200, exp: now - 3600 } });
    const res = await worker.request({ path: '/api/x', headers: cookieHeader(token) });
    h.assertInvalidToken(res, 'expired');
    const set = [res.headers['set-cookie']].flat().filter(Boolean);
    assert.deepEqual(set, [`${h.COOKIE_NAME}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax`]);
    h.assertNoTokensIn(worker.output, [token]);
  });
});
