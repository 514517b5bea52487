// Edgeward end to end: a fresh isolate starts from the JWKS snapshot kept in KV, without
// fetching the JWKS again.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('fresh isolate with a KV snapshot of the JWKS', { timeout: 240_000 }, () => {
  let jwks;
  let origin;
  let key;
  let config;
  let persistDir;
  const workers = [];

  before(
    async () => {
      await h.ensureBuilt();
      key = await h.makeKey('ES256', 'persisted-ec');
      jwks = await h.startJwksServer({ keys: [key.jwk] });
      origin = await h.startOrigin();
      config = h.baseConfig({ jwks, origin });
      persistDir = h.makeTempDir('persist-snapshot');
    },
    { timeout: 660_000 },
  );

  after(async () => {
    for (const w of workers) await w.stop();
    await origin?.stop();
    await jwks?.stop();
  });

  it('a new wrangler on the same --persist-to dir verifies without fetching the JWKS', async () => {
    const first = await h.startWrangler({ label: 'snapshot-1', config, persistTo: persistDir });
    workers.push(first);
    const t1 = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'first-isolate' } });
    const r1 = await first.request({ path: '/api/snapshot', headers: h.bearer(t1) });
    assert.equal(r1.status, 200, `first isolate: ${r1.status} ${r1.text.slice(0, 300)}`);
    assert.equal(jwks.count, 1, `first isolate should fetch the JWKS exactly once, saw ${jwks.count}`);
    await h.sleep(2000); // the snapshot is written to KV in the background
    await first.stop();

    const second = await h.startWrangler({ label: 'snapshot-2', config, persistTo: persistDir });
    workers.push(second);
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
