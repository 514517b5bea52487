// Edgeward end to end: a fresh isolate starts from the JWKS snapshot kept in KV, without
// fetching the JWKS again.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('fresh isolate with a KV snapshot of the JWKS', { timeout: 240_000 }, () => {
  // No worker at start: the test starts two, one after the other, on the stack's persist dir.
  const stack = h.useStack({ label: 'snapshot', keys: [{ alg: 'ES256', kid: 'persisted-ec' }], worker: false });
  let jwks;
  let origin;
  let key;
  before(() => ({ jwks, origin, keys: [key] } = stack));

  it('a new wrangler on the same --persist-to dir verifies without fetching the JWKS', async () => {
    const first = await stack.startWorker({ label: 'snapshot-1' });
    const t1 = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'first-isolate' } });
    const r1 = await first.request({ path: '/api/snapshot', headers: h.bearer(t1) });
    assert.equal(r1.status, 200, `first isolate: ${r1.status} ${r1.text.slice(0, 300)}`);
    assert.equal(jwks.count, 1, `first isolate should fetch the JWKS exactly once, saw ${jwks.count}`);
    await h.sleep(2000); // the snapshot is written to KV in the background
    await first.stop();

    const second = await stack.startWorker({ label: 'snapshot-2' }); // same config and persist dir
    jwks.resetCount();
    const t2 = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'second-isolate' } });
    const id = h.testId();
    const r2 = await second.request({ path: '/api/snapshot', headers: { ...h.bearer(t2), 'x-test-id': id } });
    assert.equal(r2.status, 200, `second isolate: ${r2.status} ${r2.text.slice(0, 300)}`);
    assert.equal(origin.find(id)?.headers['x-edgeward-sub'], 'second-isolate');
    assert.equal(jwks.count, 0, `the fresh isolate fetched the JWKS ${jwks.count} time(s) despite the KV snapshot`);

    // The snapshot is only a cache: with the JWKS server down the fresh isolate still verifies.
    await jwks.stop();
    const t3 = await h.mintToken(key, { issuer: jwks.issuer });
    const r3 = await second.request({ path: '/api/snapshot', headers: h.bearer(t3) });
    assert.equal(r3.status, 200, `second isolate with the issuer down: ${r3.status} ${r3.text.slice(0, 300)}`);
    await jwks.start();

    for (const w of [first, second]) h.assertNoTokensIn(w.output, [t1, t2, t3]);
  });
});
