// Edgeward end to end, issue 18: opaque tokens checked by introspection (RFC 7662) under wrangler
// dev, against a real introspection endpoint the test starts on 127.0.0.1 (it checks the gate's
// client credentials). Active → 200 with the answer's identity, cached (the endpoint is asked
// once); inactive → 401 token_inactive, remembered; an endpoint that does not answer in time →
// 503 introspection_unavailable, never an accept; the token and the client secret never logged.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import * as h from './harness.mjs';

const SECRET = `intro-${crypto.randomBytes(12).toString('hex')}`;
const ISSUER = 'https://as.e2e.example';
let discoveredIssuer; // the JWKS server's issuer, whose metadata names the endpoint

async function startIntrospection() {
  const calls = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const token = form.get('token');
      calls.push({ token, auth: req.headers.authorization, type: req.headers['content-type'] });
      const expected = `Basic ${Buffer.from(`edge-gate:${SECRET}`).toString('base64')}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_client"}');
        return;
      }
      if (token.startsWith('op_slow')) return; // never answers
      const now = Math.floor(Date.now() / 1000);
      const good = token.startsWith('op_good') || token.startsWith('dx_good');
      const iss = token.startsWith('dx_') ? discoveredIssuer : ISSUER;
      const answer = good
        ? { active: true, sub: `opaque-${token}`, scope: 'read', aud: h.AUDIENCE, iss, exp: now + 300, iat: now, client_id: 'mobile-app' }
        : { active: false };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { calls, url: `http://127.0.0.1:${srv.address().port}/introspect`, stop: () => new Promise((r) => { srv.closeAllConnections(); srv.close(r); }) };
}

describe('introspection: opaque tokens', { timeout: 240_000 }, () => {
  let endpoint;
  const stack = h.useStack({
    label: 'introspection',
    keys: ['ES256'],
    config: async ({ jwks }) => {
      endpoint = await startIntrospection();
      discoveredIssuer = jwks.issuer;
      jwks.setMetadataFields({ introspection_endpoint: endpoint.url });
      return {
        issuers: [
          // Keys and the introspection endpoint both from its metadata (discovery).
          {
            issuer: jwks.issuer, audiences: [h.AUDIENCE], algorithms: ['ES256'], discovery: true, token_prefix: 'dx_',
            introspection: { client_id: 'edge-gate', client_secret: 'EDGEWARD_INTROSPECTION_SECRET', timeout_ms: 800 },
          },
          { issuer: ISSUER, audiences: [h.AUDIENCE], introspection: { endpoint: endpoint.url, client_id: 'edge-gate', client_secret: 'EDGEWARD_INTROSPECTION_SECRET', timeout_ms: 800 } },
        ],
        forward_claims: { 'x-user': 'sub' },
      };
    },
    vars: { EDGEWARD_INTROSPECTION_SECRET: SECRET },
  });
  let worker; let origin; let jwks; let key;
  before(() => ({ worker, origin, jwks, keys: [key] } = stack));
  after(() => endpoint?.stop());

  it('an active opaque token is accepted with the answer\'s identity, and the answer is cached', async () => {
    const token = `op_good_${crypto.randomUUID()}`;
    const id = h.testId();
    const r = await worker.request({ path: '/api/x', headers: { ...h.bearer(token), 'x-test-id': id } });
    assert.equal(r.status, 200, r.text);
    assert.equal(origin.find(id).headers['x-user'], `opaque-${token}`);
    assert.equal(origin.find(id).headers.authorization, undefined);
    assert.equal(endpoint.calls.filter((c) => c.token === token).length, 1);
    assert.equal(endpoint.calls.at(-1).type, 'application/x-www-form-urlencoded');
    for (let i = 0; i < 3; i += 1) assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(token) })).status, 200);
    assert.equal(endpoint.calls.filter((c) => c.token === token).length, 1, 'cached: asked once');
    // JWTs still verify with keys, without the endpoint.
    const before = endpoint.calls.length;
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(await h.mintToken(key, { issuer: jwks.issuer })) })).status, 200);
    assert.equal(endpoint.calls.length, before);
  });

  it('an issuer without a configured endpoint introspects at the one its metadata names', async () => {
    const token = `dx_good_${crypto.randomUUID()}`;
    const id = h.testId();
    const r = await worker.request({ path: '/api/x', headers: { ...h.bearer(token), 'x-test-id': id } });
    assert.equal(r.status, 200, r.text);
    assert.equal(origin.find(id).headers['x-user'], `opaque-${token}`);
    assert.equal(endpoint.calls.filter((c) => c.token === token).length, 1);
    assert.ok(jwks.metadataCount >= 1, 'the metadata was read');
    const line = await worker.waitForJsonLine((o) => o.event === 'discovery' && o.issuer === jwks.issuer, 4000);
    assert.equal(line.introspection_endpoint, endpoint.url);
    h.assertError(await worker.request({ path: '/api/x', headers: h.bearer(`dx_dead_${crypto.randomUUID()}`) }), { status: 401, code: 'token_inactive', error: 'invalid_token' });
  });

  it('an inactive token is refused and remembered; an endpoint that does not answer is a 503', async () => {
    const dead = `op_dead_${crypto.randomUUID()}`;
    h.assertError(await worker.request({ path: '/api/x', headers: h.bearer(dead) }), { status: 401, code: 'token_inactive', error: 'invalid_token' });
    h.assertError(await worker.request({ path: '/api/x', headers: h.bearer(dead) }), { status: 401, code: 'token_inactive', error: 'invalid_token' });
    assert.equal(endpoint.calls.filter((c) => c.token === dead).length, 1, 'the negative answer is reused');
    const started = Date.now();
    const slow = await worker.request({ path: '/api/x', headers: h.bearer(`op_slow_${crypto.randomUUID()}`) });
    h.assertError(slow, { status: 503, code: 'introspection_unavailable' });
    assert.ok(Date.now() - started < 5000, 'answered after the timeout, not the client\'s');
    h.assertNoTokensIn(worker.output, [dead]);
    assert.ok(!worker.output.includes(SECRET), 'the client secret is never logged');
  });
});
