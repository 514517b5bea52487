// Edgeward end to end: the JWKS cache. Key rotation, garbage kids that must not hammer the
// issuer, issuer outage with keys cached, and an issuer that is down before anything is cached.

import net from 'node:net';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const COOLDOWN_SECS = 2;
const COOLDOWN_MS = COOLDOWN_SECS * 1000;
const PAST_COOLDOWN_MS = COOLDOWN_MS + 400;
// How long an unknown kid may have to wait for the refetch: the cooldown, one more second because
// the Worker counts it in whole seconds, and room for a slow machine.
const REFETCH_DEADLINE_MS = COOLDOWN_MS + 4000;
const REDIRECTED_ISSUER = 'https://redirected.example';

describe('JWKS cache: rotation, garbage kids, issuer outage', { timeout: 240_000 }, () => {
  // Only k1 is published at first; k2 comes with the rotation, garbage never.
  const stack = h.useStack({
    label: 'jwks-cache',
    keys: [{ alg: 'RS256', kid: 'k1-rsa' }, { alg: 'ES256', kid: 'k2-ec-rotated', publish: false }, { alg: 'EdDSA', kid: 'garbage-base', publish: false }],
    config: (s) => ({
      jwksCache: { unknown_kid_cooldown_secs: COOLDOWN_SECS },
      // An issuer whose key URL redirects to the JWKS server's real one.
      extraIssuers: [{ issuer: REDIRECTED_ISSUER, audiences: [h.AUDIENCE], jwks_uri: `${s.jwks.issuer}/redirect.json`, algorithms: ['RS256'] }],
    }),
  });
  let jwks;
  let worker;
  let k1, k2, garbage;
  const kinds = {};
  before(() => ({ jwks, worker, keys: [k1, k2, garbage] } = stack));

  const get = (token, path = '/api/cache') => worker.request({ path, headers: h.bearer(token) });
  const garbageToken = () => h.mintToken(garbage, { issuer: jwks.issuer, header: { kid: `garbage-${h.testId()}` } });

  it('fetches the JWKS once, then verifies from the cache', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await get(await h.mintToken(k1, { issuer: jwks.issuer }));
      assert.equal(res.status, 200, `request ${i}: ${res.status} ${res.text.slice(0, 300)}`);
      kinds.allowed ??= res.headers['x-request-id'];
    }
    assert.equal(jwks.count, 1, `expected exactly one JWKS fetch since the JWKS server started, saw ${jwks.count}`);
  });

  it('accepts a newly rotated kid once the unknown-kid cooldown has passed', async () => {
    const before = jwks.count;
    jwks.setKeys([k1.jwk, k2.jwk]);
    const token = await h.mintToken(k2, { issuer: jwks.issuer, claims: { sub: 'rotated-user' } });
    const first = await get(token);
    if (first.status !== 200) h.assertInvalidToken(first, 'unknown_kid', 'rotated kid within the cooldown');
    // Ask until the cooldown has passed and the refetch brings the rotated key in.
    const second = await h.until(() => get(token, '/api/rotated'), {
      ok: (r) => r.status === 200,
      timeoutMs: REFETCH_DEADLINE_MS,
      intervalMs: 200,
      what: 'the rotated kid to be accepted after the cooldown',
    });
    assert.equal(second.status, 200, `rotated kid after the cooldown: ${second.status} ${second.text.slice(0, 300)}`);
    const grew = jwks.count - before;
    assert.ok(grew >= 1 && grew <= 2, `JWKS fetches for the rotation: ${grew} (expected 1 or 2)`);
    // The old key keeps working.
    const old = await get(await h.mintToken(k1, { issuer: jwks.issuer }));
    assert.equal(old.status, 200);
    assert.equal(jwks.count - before, grew, 'a cached kid must not cause a fetch');
  });

  async function burst(label, { parallel }) {
    const tokens = await Promise.all(Array.from({ length: 20 }, () => garbageToken()));
    const before = jwks.count;
    const t0 = Date.now();
    let responses;
    if (parallel) {
      responses = await Promise.all(tokens.map((t) => get(t, '/api/garbage')));
    } else {
      responses = [];
      for (const t of tokens) responses.push(await get(t, '/api/garbage'));
    }
    const elapsed = Date.now() - t0;
    for (const [i, res] of responses.entries()) {
      const body = h.assertInvalidToken(res, 'unknown_kid', `${label} #${i}`);
      kinds.invalid_token ??= body.request_id;
    }
    const grew = jwks.count - before;
    // One fetch per cooldown period. Worker clocks tick in whole seconds (and the Worker may count
    // the cooldown in whole seconds), so two fetches a cooldown apart can be as little as
    // (cooldown - 1 s) apart in real time; the bound allows for that and no more.
    const allowed = Math.floor(elapsed / (COOLDOWN_MS - 1000)) + 1;
    assert.ok(grew <= allowed, `${label}: 20 garbage kids in ${elapsed} ms caused ${grew} JWKS fetches (at most ${allowed} allowed)`);
    return grew;
  }

  // The cooldown runs from the Worker's last fetch attempt, which the JWKS server records; probing
  // with an unknown kid would itself start a new cooldown, so this watches the recorded time.
  const outsideCooldown = (why) => h.until(() => Date.now() - (jwks.fetchTimes.at(-1) ?? 0) >= PAST_COOLDOWN_MS, {
    timeoutMs: PAST_COOLDOWN_MS + 1000,
    what: `${PAST_COOLDOWN_MS} ms since the last recorded JWKS fetch (${why})`,
  });

  it('20 garbage-kid tokens cannot hammer the issuer (≤ 1 fetch per cooldown period)', async () => {
    await outsideCooldown('before the first burst'); // outside the cooldown: the burst is as tempting as it gets
    await burst('parallel burst', { parallel: true });
    await burst('sequential burst', { parallel: false });
    await outsideCooldown('before the second parallel burst');
    await burst('second parallel burst', { parallel: true });
    // Valid cached keys are unaffected by the garbage.
    const res = await get(await h.mintToken(k2, { issuer: jwks.issuer }));
    assert.equal(res.status, 200);
  });

  it('a key URL that redirects: the redirect is not followed (503 jwks_unavailable), the target never fetched', async () => {
    const before = jwks.count;
    const res = await get(await h.mintToken(k1, { issuer: REDIRECTED_ISSUER }));
    h.assertError(res, { status: 503, code: 'jwks_unavailable', context: 'a 302 from the key URL' });
    assert.ok(jwks.redirectCount >= 1, 'the gate asked the key URL');
    assert.equal(jwks.count, before, 'the redirect target was not fetched');
  });

  it('issuer outage: cached keys keep working, an unknown kid → 503 jwks_unavailable', async () => {
    await jwks.stop();
    try {
      for (const key of [k1, k2]) {
        const res = await get(await h.mintToken(key, { issuer: jwks.issuer }), '/api/outage');
        assert.equal(res.status, 200, `cached ${key.kid} during the outage: ${res.status} ${res.text.slice(0, 300)}`);
      }
      // Within the cooldown an unknown kid is refused (401 unknown_kid) without trying the issuer;
      // ask until the answer changes, i.e. the worker has tried the issuer for the unknown kid.
      const res = await h.until(async () => get(await garbageToken(), '/api/outage'), {
        ok: (r) => r.status !== 401,
        timeoutMs: REFETCH_DEADLINE_MS,
        intervalMs: 200,
        what: 'an unknown kid to make the worker try the (stopped) issuer after the cooldown',
      });
      const body = h.assertError(res, { status: 503, code: 'jwks_unavailable', context: 'unknown kid while the issuer is down' });
      kinds.jwks_unavailable = body.request_id;
      // The failed refresh must not have evicted the cached keys.
      const again = await get(await h.mintToken(k1, { issuer: jwks.issuer }), '/api/outage');
      assert.equal(again.status, 200, `cached key after a failed refresh: ${again.status} ${again.text.slice(0, 300)}`);
    } finally {
      await jwks.start();
    }
  });

  it('logs: decision lines per request kind; no raw token in the output', async () => {
    for (const kind of ['allowed', 'invalid_token', 'jwks_unavailable']) {
      assert.ok(kinds[kind], `no ${kind} request recorded`);
      assert.ok(await h.findDecisionLine(worker, kinds[kind]), `no decision log line mentions request ${kinds[kind]} (${kind})`);
    }
    h.assertNoTokensIn(worker.output);
  });
});

describe('JWKS unreachable and nothing cached', { timeout: 180_000 }, () => {
  let origin;
  let worker;
  let key;
  let deadIssuer;

  before(
    async () => {
      await h.ensureBuilt();
      key = await h.makeKey('RS256', 'never-served');
      const deadPort = await h.freePort(); // nothing listens here
      deadIssuer = { issuer: `http://127.0.0.1:${deadPort}`, jwksUri: `http://127.0.0.1:${deadPort}/jwks.json` };
      origin = await h.startOrigin();
      worker = await h.startWrangler({ label: 'jwks-dead', config: h.baseConfig({ jwks: deadIssuer, origin }) });
    },
    { timeout: 660_000 },
  );

  after(async () => {
    await worker?.stop();
    await origin?.stop();
  });

  it('a well-formed token → 503 jwks_unavailable; public and missing-token paths are unaffected', async () => {
    const token = await h.mintToken(key, { issuer: deadIssuer.issuer });
    const id = h.testId();
    const res = await worker.request({ path: '/api/needs-keys', headers: { ...h.bearer(token), 'x-test-id': id } });
    const body = h.assertError(res, { status: 503, code: 'jwks_unavailable', context: 'issuer never reachable' });
    assert.equal(origin.find(id), undefined, 'request forwarded without verification');

    const pub = await worker.request({ path: '/public/ok' });
    assert.equal(pub.status, 200, `public route while the issuer is down: ${pub.status}`);

    const missing = await worker.request({ path: '/api/needs-keys' });
    h.assertError(missing, { status: 401, code: 'missing_token', wwwAuth: `Bearer realm="${h.REALM}"` });

    assert.ok(await h.findDecisionLine(worker, body.request_id), 'no decision log line for the 503');
    h.assertNoTokensIn(worker.output, [token]);
  });
});

describe('JWKS endpoint that accepts and never answers', { timeout: 180_000 }, () => {
  let origin;
  let worker;
  let key;
  let stalled;
  let issuer;
  const sockets = new Set();
  let connections = 0;

  before(
    async () => {
      await h.ensureBuilt();
      key = await h.makeKey('RS256', 'stalled');
      // Accepts every connection and reads the request, but never writes a byte back: only
      // jwks_cache.fetch_timeout_ms can end the wait.
      stalled = net.createServer((s) => {
        connections++;
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      });
      await new Promise((resolve) => stalled.listen(0, '127.0.0.1', resolve));
      const port = stalled.address().port;
      issuer = { issuer: `http://127.0.0.1:${port}`, jwksUri: `http://127.0.0.1:${port}/jwks.json` };
      origin = await h.startOrigin();
      worker = await h.startWrangler({ label: 'jwks-stalled', config: h.baseConfig({ jwks: issuer, origin, jwksCache: { fetch_timeout_ms: 800 } }) });
    },
    { timeout: 660_000 },
  );

  after(async () => {
    await worker?.stop();
    await origin?.stop();
    for (const s of sockets) s.destroy();
    stalled?.close();
  });

  it('the fetch timeout fires on the request path: 503 jwks_unavailable in about fetch_timeout_ms, never a hang', async () => {
    const token = await h.mintToken(key, { issuer: issuer.issuer });
    const id = h.testId();
    const t0 = Date.now();
    const res = await worker.request({ path: '/api/needs-keys', headers: { ...h.bearer(token), 'x-test-id': id }, timeoutMs: 10_000 });
    const ms = Date.now() - t0;
    h.assertError(res, { status: 503, code: 'jwks_unavailable', context: 'issuer stalls' });
    assert.ok(ms >= 700, `answered in ${ms} ms, before the 800 ms fetch timeout could have fired`);
    assert.ok(ms < 8000, `answered only after ${ms} ms`);
    assert.equal(origin.find(id), undefined, 'request forwarded without verification');
    assert.ok(connections >= 1, 'the Worker never reached the JWKS endpoint');
  });
});
