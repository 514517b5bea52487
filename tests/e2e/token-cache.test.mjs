// Edgeward end to end, issue 4: the verified-token cache. A repeated token is a cache hit (logged),
// scope checks still run on a hit, and a key removed from the JWKS stops its cached tokens.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('verified-token cache', { timeout: 240_000 }, () => {
  // newKey is published only later, by the rotation test.
  const stack = h.useStack({ label: 'token-cache', keys: ['ES256', { alg: 'ES256', publish: false }] });
  let jwks; let origin; let worker; let oldKey; let newKey;
  before(() => ({ jwks, origin, worker, keys: [oldKey, newKey] } = stack));

  it('second use of a token is a cache hit; scopes are still checked on a hit', async () => {
    const token = await h.mintToken(oldKey, { issuer: jwks.issuer, claims: { scope: 'read' } });
    const first = await worker.request({ path: '/api/a', headers: h.bearer(token) });
    assert.equal(first.status, 200, first.text);
    const second = await worker.request({ path: '/api/b', headers: h.bearer(token) });
    assert.equal(second.status, 200, second.text);
    const l1 = await h.findDecisionLine(worker, first.headers['x-request-id']);
    const l2 = await h.findDecisionLine(worker, second.headers['x-request-id']);
    assert.equal(l1.token_cache, 'miss');
    assert.equal(l2.token_cache, 'hit');
    assert.equal(l2.sub, l1.sub);
    const admin = await worker.request({ path: '/admin/x', headers: h.bearer(token) });
    h.assertError(admin, { status: 403, code: 'insufficient_scope', error: 'insufficient_scope' });
    const l3 = await h.findDecisionLine(worker, admin.headers['x-request-id']);
    assert.equal(l3.token_cache, 'hit');
  });

  it('a key removed from the JWKS invalidates its cached tokens', async () => {
    const token = await h.mintToken(oldKey, { issuer: jwks.issuer });
    assert.equal((await worker.request({ path: '/api/c', headers: h.bearer(token) })).status, 200);
    assert.equal((await worker.request({ path: '/api/c', headers: h.bearer(token) })).status, 200);
    // Rotate: the issuer now publishes only the new key. A token with the new kid makes the
    // gateway refetch (after the 2 s cooldown), which purges tokens of the removed key.
    jwks.setKeys([newKey.jwk]);
    const fresh = await h.mintToken(newKey, { issuer: jwks.issuer });
    // Within the cooldown the new kid is refused without a fetch; ask until the refetch lets it in.
    const r = await h.until(() => worker.request({ path: '/api/d', headers: h.bearer(fresh) }), {
      ok: (res) => res.status === 200,
      timeoutMs: 6_000, // the 2 s cooldown, one more second as the Worker counts whole seconds, and room for a slow machine
      intervalMs: 200,
      what: 'the new kid to be accepted after the unknown-kid cooldown',
    });
    assert.equal(r.status, 200, r.text);
    const stale = await worker.request({ path: '/api/e', headers: h.bearer(token) });
    h.assertInvalidToken(stale, 'unknown_kid');
    const purge = await worker.waitForJsonLine((o) => o.event === 'jwks_fetch' && o.purged_tokens >= 1);
    assert.ok(purge, 'the fetch that removed the key logged purged tokens');
  });
});
