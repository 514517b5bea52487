// Edgeward end to end, issue 6: rate limits with the real Durable Object (exact mode) under
// wrangler dev. 200 concurrent requests for one key with a burst of 10 → exactly 10 pass, the rest
// get 429 with Retry-After; after waiting that long one more passes; keys are independent; a
// per-IP limit stops a garbage-token flood before any verification.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

describe('rate limits (exact mode, Durable Object)', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'ratelimit',
    keys: ['ES256'],
    config: {
      rate_limits: {
        mode: 'exact',
        ip_pre_auth: { rate: 1, period_secs: 60, burst: 5 },
        rules: [{ name: 'per-sub', key: 'sub', rate: 1, period_secs: 8, burst: 10 }],
      },
    },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));

  it('200 concurrent requests for one key: exactly 10 pass, the rest 429 with Retry-After', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'alice' } });
    // Each request from its own address, so only the per-subject rule is in play (the per-IP
    // pre-auth limit is exercised below).
    const from = (i) => ({ ...h.bearer(token), 'cf-connecting-ip': `198.51.${100 + Math.floor(i / 200)}.${i % 200}` });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => worker.request({ path: `/api/burst/${i}`, headers: from(i), timeoutMs: 60_000 })));
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    assert.equal(ok.length, 10, `statuses: ${JSON.stringify(results.map((r) => r.status).reduce((m, s) => ({ ...m, [s]: (m[s] ?? 0) + 1 }), {}))}`);
    assert.equal(limited.length, 190);
    for (const r of limited) {
      const body = h.assertError(r, { status: 429, code: 'rate_limited' });
      assert.ok(body.request_id);
      const ra = Number(r.headers['retry-after']);
      assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 8, `Retry-After ${r.headers['retry-after']}`);
      assert.equal(r.headers['ratelimit-policy'], '"per-sub";q=1;w=8');
      assert.match(r.headers.ratelimit, /^"per-sub";r=0;t=\d+$/);
    }
    assert.match(ok[0].headers.ratelimit, /^"per-sub";r=\d+;t=\d+$/, 'successful responses carry the remaining quota');
    const wait = Math.max(...limited.map((r) => Number(r.headers['retry-after'])));
    // Ask until one more request passes (a refused one takes nothing from the bucket); each from a
    // new address, so the per-IP pre-auth limit (burst 5) never answers instead.
    let n = 200;
    const again = await h.until(() => worker.request({ path: '/api/after-wait', headers: from(n++) }), {
      ok: (r) => r.status !== 429,
      timeoutMs: wait * 1000 + 5000,
      intervalMs: 200,
      what: `a request to pass again within Retry-After (${wait} s)`,
    });
    assert.equal(again.status, 200, again.text);
    const next = await worker.request({ path: '/api/after-wait-2', headers: from(n++) });
    assert.equal(next.status, 429, 'only one more after one emission interval');
  });

  it('two keys do not affect each other', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'bob' } });
    const r = await worker.request({ path: '/api/bob', headers: { ...h.bearer(token), 'cf-connecting-ip': '198.51.100.2' } });
    assert.equal(r.status, 200, r.text);
  });

  it('per-IP limit refuses a garbage-token flood before verification', async () => {
    const ip = '203.0.113.9';
    const statuses = [];
    for (let i = 0; i < 12; i++) {
      const r = await worker.request({ path: '/api/flood', headers: { authorization: `Bearer garbage.${i}.x`, 'cf-connecting-ip': ip } });
      statuses.push(r.status);
    }
    assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401], 'the first 5 are parsed (and refused as malformed)');
    assert.ok(statuses.slice(5).every((s) => s === 429), `then 429: ${statuses}`);
    const other = await worker.request({ path: '/api/flood', headers: { authorization: 'Bearer garbage.x.y', 'cf-connecting-ip': '203.0.113.10' } });
    assert.equal(other.status, 401, 'another IP is not limited');
  });
});
