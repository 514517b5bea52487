// Edgeward end to end, issue 18: issuers found by discovery under wrangler dev. The issuer is
// configured with `discovery: true` and no jwks_uri; the gate fetches its OpenID Connect metadata
// once, takes jwks_uri from it, and verifies tokens with the keys found there; metadata that
// names another issuer (a mix-up) is refused and its keys never fetched.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('discovery: issuer metadata', { timeout: 240_000 }, () => {
  let mixedUp; let mixKey;
  const stack = h.useStack({
    label: 'discovery',
    keys: ['ES256'],
    config: async ({ jwks }) => {
      mixKey = await h.makeKey('ES256');
      mixedUp = await h.startJwksServer({ keys: [mixKey.jwk] });
      mixedUp.setMetadataIssuer('https://someone-else.example');
      return {
        issuers: [
          { issuer: jwks.issuer, audiences: [h.AUDIENCE], algorithms: ['ES256'], discovery: true },
          { issuer: mixedUp.issuer, audiences: [h.AUDIENCE], algorithms: ['ES256'], discovery: true },
        ],
      };
    },
  });
  let worker; let jwks; let key;
  before(() => ({ worker, jwks, keys: [key] } = stack));
  after(() => mixedUp?.stop());

  it('takes jwks_uri from the metadata, once, and verifies with the keys found there', async () => {
    const t = await h.mintToken(key, { issuer: jwks.issuer });
    const r = await worker.request({ path: '/api/x', headers: h.bearer(t) });
    assert.equal(r.status, 200, r.text);
    assert.equal(jwks.metadataCount, 1);
    assert.equal(jwks.count, 1);
    for (let i = 0; i < 3; i += 1) {
      const again = await worker.request({ path: '/api/x', headers: h.bearer(await h.mintToken(key, { issuer: jwks.issuer })) });
      assert.equal(again.status, 200);
    }
    assert.deepEqual([jwks.metadataCount, jwks.count], [1, 1], 'fresh metadata and keys: nothing refetched');
    const line = await worker.waitForJsonLine((o) => o.event === 'discovery' && o.issuer === jwks.issuer, 4000);
    assert.equal(line.jwks_uri, jwks.jwksUri);
  });

  it('refuses metadata that names another issuer, and never fetches its keys', async () => {
    const t = await h.mintToken(mixKey, { issuer: mixedUp.issuer });
    const r = await worker.request({ path: '/api/x', headers: h.bearer(t) });
    h.assertError(r, { status: 503, code: 'jwks_unavailable' });
    assert.equal(mixedUp.metadataCount, 1);
    assert.equal(mixedUp.count, 0, 'the keys of mixed-up metadata are never fetched');
    const line = await worker.waitForJsonLine((o) => o.event === 'discovery_failed' && o.issuer === mixedUp.issuer, 4000);
    assert.match(line.error, /another issuer/);
  });
});
