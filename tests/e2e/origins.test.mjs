// Edgeward end to end, issue 20: per-route origins and origin timeouts, under wrangler dev. A
// route's own origin URL gets its requests (its path a prefix); a `service:NAME` origin is another
// Worker in the same workerd behind a service binding; an origin that never answers is a 504
// origin_timeout after the route's timeout_ms, and the gate aborts its request to it; other
// routes keep the top-level origin.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import * as h from './harness.mjs';

/** A loopback server that accepts requests and never answers; records when each connection closes. */
async function startHangingOrigin() {
  const seen = [];
  const srv = http.createServer((req) => {
    const entry = { url: req.url, closedAt: null };
    seen.push(entry);
    req.socket.on('close', () => {
      entry.closedAt = Date.now();
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    seen,
    url: `http://127.0.0.1:${srv.address().port}`,
    stop: () => new Promise((resolve) => {
      srv.closeAllConnections();
      srv.close(resolve);
    }),
  };
}

/** The Worker behind the service binding: echoes what it received. */
const API_WORKER = `export default {
  async fetch(req) {
    const headers = Object.fromEntries(req.headers);
    return Response.json({ from: 'api-worker', method: req.method, url: req.url, headers }, { headers: { 'x-from': 'api-worker' } });
  },
};
`;

describe('origins: per-route origins and timeouts', { timeout: 240_000 }, () => {
  let hanging; let second;
  const stack = h.useStack({
    label: 'origins',
    keys: ['ES256'],
    serviceWorkers: [{ binding: 'API_WORKER', name: 'edgeward-e2e-api', script: API_WORKER }],
    config: async () => {
      hanging = await startHangingOrigin();
      second = await h.startOrigin();
      return {
        origin_timeout_ms: 20000,
        routes: [
          { path: '/public/*', public: true },
          { path: '/slow/*', public: true, origin: hanging.url, timeout_ms: 1500 },
          { path: '/reports/*', public: true, origin: `${second.url}/v2/` },
          { path: '/svc/*', origin: 'service:API_WORKER' },
          { path: '/nobinding/*', public: true, origin: 'service:NOT_BOUND' },
        ],
      };
    },
  });
  let origin; let worker; let jwks; let key;
  before(() => ({ origin, worker, jwks, keys: [key] } = stack));
  after(async () => {
    await hanging?.stop();
    await second?.stop();
  });

  it('an origin that never answers is a 504 after the route timeout, and the gate hangs up on it', async () => {
    const started = Date.now();
    const r = await worker.request({ path: '/slow/report' });
    const took = Date.now() - started;
    h.assertError(r, { status: 504, code: 'origin_timeout' });
    assert.ok(took >= 1400 && took < 10000, `answered after ${took} ms (timeout 1500 ms)`);
    assert.equal(hanging.seen.at(-1)?.url, '/slow/report', 'the request reached the hanging origin');
    await h.until(() => hanging.seen.at(-1).closedAt, { timeoutMs: 10_000, what: 'the gate to close its connection to the hanging origin' });
    const line = await h.findDecisionLine(worker, r.headers['x-request-id']);
    assert.equal(line.reason, 'origin_timeout');
    assert.match(line.detail, /no response headers after \d+ ms \(timeout 1500 ms\)/);
  });

  it("a route's own origin gets its requests, under its path prefix; others keep the top-level one", async () => {
    const id = h.testId();
    const r = await worker.request({ path: '/reports/q1?x=1', headers: { 'x-test-id': id } });
    assert.equal(r.status, 200, r.text);
    assert.equal(second.find(id)?.url, '/v2/reports/q1?x=1');
    assert.equal(origin.find(id), undefined);
    const id2 = h.testId();
    assert.equal((await worker.request({ path: '/public/a', headers: { 'x-test-id': id2 } })).status, 200);
    assert.ok(origin.find(id2), 'the top-level origin');
  });

  it('a service:NAME origin is the Worker behind that binding, given the canonical request and the verified identity', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'svc-user' } });
    const r = await worker.request({ path: '/svc/a/./b?q=1', headers: h.bearer(token) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-from'], 'api-worker');
    const seen = r.json();
    assert.equal(seen.from, 'api-worker');
    assert.equal(new URL(seen.url).pathname, '/svc/a/b', 'the canonical path');
    assert.equal(new URL(seen.url).search, '?q=1');
    assert.equal(seen.headers['x-edgeward-sub'], 'svc-user');
    assert.equal(seen.headers.authorization, undefined, 'the credential is not forwarded');
    assert.ok(r.headers['x-request-id']);
    // A binding the gate does not have: 502, with the reason in the log only.
    const missing = await worker.request({ path: '/nobinding/x' });
    h.assertError(missing, { status: 502, code: 'origin_unreachable' });
  });
});
