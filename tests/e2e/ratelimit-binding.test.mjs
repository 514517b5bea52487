// Edgeward end to end, issue 6: `binding` mode uses Cloudflare's rate-limiting binding (simulated
// by wrangler dev): the binding's own limit (5 per 10 s per key, see wrangler.toml) applies.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('rate limits (binding mode)', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'ratelimit-binding',
    keys: ['EdDSA'],
    config: { rate_limits: { mode: 'binding', rules: [{ name: 'per-sub', key: 'sub', rate: 5, period_secs: 10, burst: 5, binding: 'EDGEWARD_RL' }] } },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));

  it('the binding decides: 5 pass, then 429 rate_limited; another key is unaffected', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'carol' } });
    // wrangler dev simulates the binding with fixed 10 s windows aligned to the wall clock, so a
    // burst that straddles a window edge sees two quotas (7 or 8 pass). Start in the first half of
    // a window, at least 200 ms past its edge: watch the clock until it is there (at most ~5 s).
    await h.until(() => {
      const intoWindow = Date.now() % 10_000;
      return intoWindow >= 200 && intoWindow <= 5_000;
    }, { timeoutMs: 10_000, intervalMs: 20, what: 'the wall clock to be 200–5000 ms into a 10 s rate-limit window' });
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await worker.request({ path: `/api/b/${i}`, headers: h.bearer(token) })).status);
    assert.deepEqual(statuses.slice(0, 5), [200, 200, 200, 200, 200], `${statuses}`);
    assert.ok(statuses.slice(5).every((s) => s === 429), `${statuses}`);
    const limited = await worker.request({ path: '/api/b/x', headers: h.bearer(token) });
    h.assertError(limited, { status: 429, code: 'rate_limited' });
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    const other = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'dave' } });
    assert.equal((await worker.request({ path: '/api/b/y', headers: h.bearer(other) })).status, 200);
  });
});
