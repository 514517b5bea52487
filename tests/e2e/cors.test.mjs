// Edgeward end to end, issue 20: CORS answered at the edge, under wrangler dev. A preflight from
// the app's origin is a 204 with the allow headers and never reaches the origin; one from another
// origin is a 403 without them; the gate's own 401 carries the CORS headers (the app can read
// WWW-Authenticate); the origin's response has the gate's CORS headers in place of its own, and
// `Vary: Origin` added to its own; a route with `cors: false` is left alone.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const APP = 'https://app.example';

describe('cors: answered at the edge', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'cors',
    keys: ['ES256'],
    config: {
      cors: { allowed_origins: [APP], allow_credentials: true },
      csrf: { allowed_origins: [APP] },
      routes: [{ path: '/public/*', public: true }, { path: '/nocors/*', public: true, cors: false }],
    },
  });
  let jwks; let origin; let worker; let key;
  before(() => ({ jwks, origin, worker, keys: [key] } = stack));

  const preflight = (path, from, method, headers) => worker.request({
    method: 'OPTIONS',
    path,
    headers: { origin: from, 'access-control-request-method': method, ...(headers ? { 'access-control-request-headers': headers } : {}), 'x-test-id': h.testId() },
  });

  it('a preflight is answered by the gate: 204 for the app, 403 for others, never forwarded', async () => {
    const seenBefore = origin.requests.length;
    const ok = await preflight('/api/items', APP, 'POST', 'authorization, content-type');
    assert.equal(ok.status, 204, ok.text);
    assert.equal(ok.headers['access-control-allow-origin'], APP);
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');
    assert.match(ok.headers['access-control-allow-methods'], /\bPOST\b/);
    assert.match(ok.headers['access-control-allow-headers'], /\bauthorization\b/);
    assert.equal(ok.headers['access-control-max-age'], '600');
    assert.match(ok.headers.vary ?? '', /Origin/);
    for (const [from, method, headers] of [['https://evil.example', 'GET', undefined], [APP, 'PROPFIND', undefined], [APP, 'GET', 'x-evil']]) {
      const r = await preflight('/api/items', from, method, headers);
      assert.equal(r.status, 403, `${from} ${method} ${headers}: ${r.text}`);
      assert.equal(r.json().code, 'cors_rejected');
      assert.equal(r.headers['access-control-allow-origin'], undefined);
    }
    assert.equal(origin.requests.length, seenBefore, 'no preflight reached the origin');
  });

  it("the gate's own refusal is readable by the app; the origin's answer gets the gate's CORS headers", async () => {
    const refused = await worker.request({ path: '/api/items', headers: { origin: APP } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['access-control-allow-origin'], APP);
    assert.match(refused.headers['access-control-expose-headers'], /www-authenticate/);
    assert.ok(refused.headers['www-authenticate']);
    const other = await worker.request({ path: '/api/items', headers: { origin: 'https://evil.example' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined);

    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const ok = await worker.request({ path: '/api/cors-origin/items', headers: { origin: APP, ...h.bearer(token) } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers['access-control-allow-origin'], APP, "the gate's, not the origin's *");
    assert.equal(ok.headers['access-control-allow-methods'], undefined, "the origin's other CORS headers are gone");
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');
    assert.match(ok.headers.vary, /Accept-Encoding/i);
    assert.match(ok.headers.vary, /Origin/);
    assert.equal(ok.headers['x-origin-header'], 'origin-value');
  });

  it('a route with cors: false is left alone', async () => {
    const r = await worker.request({ path: '/nocors/cors-origin/x', headers: { origin: APP } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['access-control-allow-origin'], '*', "the origin's own");
    assert.equal(r.headers['access-control-allow-methods'], 'TRACE');
    // Its preflight goes to the origin like any (public) request.
    const seenBefore = origin.requests.length;
    const p = await preflight('/nocors/x', APP, 'GET');
    assert.equal(p.status, 200);
    assert.equal(origin.requests.length, seenBefore + 1);
  });
});
