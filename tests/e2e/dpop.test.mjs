// Edgeward end to end, issue 18: DPoP-bound tokens (RFC 9449) under wrangler dev. A local issuer
// (the harness's JWKS server) mints tokens bound to a client key (`cnf.jkt`); the client signs a
// proof per request with jose, as a browser app would with WebCrypto. Bound token + proof → 200
// and the origin sees the binding, never the token or the proof; a replayed proof, wrong htm, htu
// or ath, a proof by another key → 401 with a DPoP challenge; a bound token sent as Bearer → 401;
// with server nonces on, the first proof is challenged with a DPoP-Nonce and the retry passes;
// `dpop: "required"` refuses plain bearer tokens; with `dpop.replay: "exact"` a proof replayed to a
// fresh isolate (the Workers restarted on the same state) is still refused.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import * as h from './harness.mjs';

const NONCE_SECRET = crypto.randomBytes(32).toString('hex');

async function clientKey(alg = 'ES256') {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

/** A proof by `k` for this request; `patch` overrides claims (undefined removes). */
async function proof(k, { method = 'GET', url, token, nonce, patch = {} }) {
  const ath = crypto.createHash('sha256').update(token).digest('base64url');
  const claims = { htm: method, htu: url, iat: h.nowSecs(), jti: crypto.randomUUID(), ath, ...(nonce ? { nonce } : {}), ...patch };
  for (const [key, v] of Object.entries(claims)) if (v === undefined) delete claims[key];
  return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: k.alg, jwk: k.jwk }).sign(k.privateKey);
}

describe('dpop: sender-constrained tokens through the gate', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'dpop',
    keys: ['ES256'],
    config: {
      dpop: { nonce: true, replay: 'exact' },
      routes: [
        { path: '/public/*', public: true },
        { path: '/strict/*', dpop: 'required' },
      ],
    },
    vars: { EDGEWARD_DPOP_NONCE_SECRET: NONCE_SECRET },
  });
  let worker; let jwks; let key; let origin;
  let nonce;
  before(() => ({ worker, jwks, origin, keys: [key] } = stack));

  const bound = (k, claims = {}) => h.mintToken(key, { issuer: jwks.issuer, claims: { cnf: { jkt: k.jkt }, ...claims } });
  const call = (path, token, dpop, extra = {}) => worker.request({ path, headers: { authorization: `DPoP ${token}`, ...(dpop ? { dpop } : {}), ...extra } });

  it('challenges a proof without a nonce, then accepts the retry; the origin sees the binding only', async () => {
    const k = await clientKey();
    const t = await bound(k);
    const url = `${worker.url}/api/orders`;
    const first = await call('/api/orders?page=1', t, await proof(k, { url, token: t }));
    assert.equal(first.status, 401, first.text);
    assert.equal(first.json().code, 'dpop_nonce_required');
    assert.match(first.headers['www-authenticate'], /^DPoP realm="edgeward", error="use_dpop_nonce"/);
    nonce = first.headers['dpop-nonce'];
    assert.ok(nonce, 'a DPoP-Nonce header');
    const id = h.testId();
    const ok = await call('/api/orders?page=1', t, await proof(k, { url, token: t, nonce }), { 'x-test-id': id });
    assert.equal(ok.status, 200, ok.text);
    const seen = origin.find(id);
    assert.equal(seen.headers['x-edgeward-cnf'], 'dpop');
    assert.equal(seen.headers['x-edgeward-jkt'], k.jkt);
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers.dpop, undefined);
    h.assertNoTokensIn(worker.output, [t]);
  });

  it('refuses a replayed proof and each wrong claim, with a DPoP challenge and its own code', async () => {
    const k = await clientKey();
    const t = await bound(k);
    const url = `${worker.url}/api/x`;
    const p = await proof(k, { url, token: t, nonce });
    assert.equal((await call('/api/x', t, p)).status, 200);
    const replay = await call('/api/x', t, p);
    h.assertError(replay, { status: 401, code: 'dpop_replay', error: 'invalid_dpop_proof', wwwAuthPrefix: 'DPoP realm="edgeward", error="invalid_dpop_proof"' });
    assert.match(replay.headers['www-authenticate'], /algs="ES256 ES384 PS256 RS256 EdDSA"$/);
    const other = await clientKey();
    const cases = [
      ['dpop_htm', await proof(k, { url, token: t, nonce, patch: { htm: 'POST' } })],
      ['dpop_htu', await proof(k, { url: `${worker.url}/api/y`, token: t, nonce })],
      ['dpop_ath', await proof(k, { url, token: `${t}x`, nonce })],
      ['dpop_iat', await proof(k, { url, token: t, nonce, patch: { iat: h.nowSecs() - 600 } })],
      ['dpop_key_mismatch', await proof(other, { url, token: t, nonce })],
      ['dpop_proof_missing', null],
    ];
    for (const [code, dp] of cases) {
      const r = await call('/api/x', t, dp);
      h.assertError(r, { status: 401, code, error: 'invalid_dpop_proof', wwwAuthPrefix: 'DPoP realm="edgeward", error="invalid_dpop_proof"' });
    }
  });

  it('refuses a bound token sent as a bearer token, and plain bearer tokens where DPoP is required', async () => {
    const k = await clientKey();
    const t = await bound(k);
    const asBearer = await worker.request({ path: '/api/x', headers: h.bearer(t) });
    h.assertError(asBearer, { status: 401, code: 'dpop_bound_token_as_bearer', error: 'invalid_token' });
    const plain = await h.mintToken(key, { issuer: jwks.issuer });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(plain) })).status, 200, 'allowed: plain bearer tokens pass');
    const strict = await worker.request({ path: '/strict/x', headers: h.bearer(plain) });
    h.assertError(strict, { status: 401, code: 'dpop_required' });
    assert.equal(strict.headers['www-authenticate'], 'DPoP realm="edgeward", algs="ES256 ES384 PS256 RS256 EdDSA"');
    const p = await proof(k, { url: `${worker.url}/strict/x`, token: t, nonce });
    assert.equal((await call('/strict/x', t, p)).status, 200);
  });

  it('exact replay: a proof replayed to a fresh isolate is refused by the replay Durable Object', async () => {
    const k = await clientKey();
    const t = await bound(k);
    const url = `${worker.url}/api/once`;
    const p = await proof(k, { url, token: t, nonce });
    assert.equal((await call('/api/once', t, p)).status, 200);
    // The Workers restart on the same state and port: a fresh isolate, whose own replay cache is
    // empty; only the Durable Object remembers the proof.
    worker = await stack.restart({ port: new URL(worker.url).port });
    const replay = await call('/api/once', t, p);
    h.assertError(replay, { status: 401, code: 'dpop_replay', error: 'invalid_dpop_proof' });
    const fresh = await proof(k, { url, token: t, nonce });
    assert.equal((await call('/api/once', t, fresh)).status, 200, 'a fresh proof still passes');
  });

  it('checks an EdDSA and an RS256 proof key too (WebCrypto in the Worker)', async () => {
    for (const alg of ['EdDSA', 'RS256']) {
      const k = await clientKey(alg);
      const t = await bound(k);
      const url = `${worker.url}/api/${alg}`;
      const r = await call(`/api/${alg}`, t, await proof(k, { url, token: t, nonce }));
      assert.equal(r.status, 200, `${alg}: ${r.text}`);
      const bad = await proof(k, { url, token: t, nonce });
      const [hh, cc, sig] = bad.split('.');
      const flipped = `${hh}.${cc}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
      h.assertError(await call(`/api/${alg}`, t, flipped), { status: 401, code: 'dpop_signature', error: 'invalid_dpop_proof' });
    }
  });
});
