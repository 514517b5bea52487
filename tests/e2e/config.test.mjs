// Edgeward end to end: an invalid EDGEWARD_CONFIG turns every request into 500 config_invalid,
// and the log says which field is wrong.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

/** A complete, valid document whose issuer and origin are never reached (nothing listens on :9). */
const unreachableConfig = () =>
  h.baseConfig({
    jwks: { issuer: 'http://127.0.0.1:9', jwksUri: 'http://127.0.0.1:9/jwks.json' },
    originUrl: 'http://127.0.0.1:9',
  });

async function assertAllConfigInvalid(worker, token) {
  const requests = [
    { method: 'GET', path: '/' },
    { method: 'GET', path: '/public/anything' },
    { method: 'GET', path: '/api/x', headers: h.bearer(token) },
    { method: 'POST', path: '/admin/y', headers: { ...h.bearer(token), 'content-type': 'application/json' }, body: '{"a":1}' },
  ];
  const ids = [];
  for (const r of requests) {
    const res = await worker.request(r);
    const body = h.assertError(res, { status: 500, code: 'config_invalid', context: `${r.method} ${r.path}` });
    ids.push(body.request_id);
  }
  return ids;
}

describe('invalid config: {"issuers": []}', { timeout: 180_000 }, () => {
  const stack = h.useStack({ label: 'config-empty-issuers', keys: ['RS256'], jwks: false, origin: false, rawConfig: '{"issuers": []}' });
  let worker;
  let token;

  before(async () => {
    ({ worker } = stack);
    token = await h.mintToken(stack.keys[0], { issuer: 'http://127.0.0.1:9' });
  });

  it('every request → 500 config_invalid', async () => {
    const ids = await assertAllConfigInvalid(worker, token);
    assert.ok(await h.findDecisionLine(worker, ids[0]), 'no decision log line for a config_invalid request');
  });

  it('a JSON log line names an offending field', async () => {
    // Both `issuers` (empty) and `origin` (absent) are wrong in this document; either may be named.
    const line = await worker.waitForJsonLine((o) => /issuers|origin/.test(o.__line));
    assert.ok(line, `no JSON log line mentions "issuers" or "origin"; output:\n${worker.output.slice(-4000)}`);
    h.assertNoTokensIn(worker.output, [token]);
  });
});

describe('invalid config: a complete document with "issuers": []', { timeout: 180_000 }, () => {
  const stack = h.useStack({
    label: 'config-complete-empty-issuers',
    jwks: false,
    origin: false,
    rawConfig: {
      ...unreachableConfig(),
      issuers: [],
    },
  });
  let worker;
  before(() => ({ worker } = stack));

  it('every request → 500 config_invalid and a JSON log line names "issuers"', async () => {
    const key = await h.makeKey('EdDSA');
    const token = await h.mintToken(key, { issuer: 'http://127.0.0.1:9' });
    await assertAllConfigInvalid(worker, token);
    const line = await worker.waitForJsonLine((o) => o.__line.includes('issuers'));
    assert.ok(line, `no JSON log line mentions "issuers"; output:\n${worker.output.slice(-4000)}`);
  });
});

describe('invalid config: not JSON', { timeout: 180_000 }, () => {
  const stack = h.useStack({ label: 'config-not-json', keys: ['ES256'], jwks: false, origin: false, rawConfig: '{"issuers": [' });
  let worker;
  let token;

  before(async () => {
    ({ worker } = stack);
    token = await h.mintToken(stack.keys[0], { issuer: 'http://127.0.0.1:9' });
  });

  it('every request → 500 config_invalid, and nothing leaks the token', async () => {
    const ids = await assertAllConfigInvalid(worker, token);
    assert.ok(await h.findDecisionLine(worker, ids.at(-1)), 'no decision log line for a config_invalid request');
    h.assertNoTokensIn(worker.output, [token]);
  });
});

describe('request_id_header: refusals carry the configured header, not x-request-id', { timeout: 180_000 }, () => {
  const stack = h.useStack({
    label: 'config-request-id-header',
    jwks: false,
    origin: false,
    rawConfig: {
      ...unreachableConfig(),
      request_id_header: 'X-Trace-Id',
    },
  });
  let worker;
  before(() => ({ worker } = stack));

  it('a 401 and a 400 each carry x-trace-id equal to the body request_id', async () => {
    for (const path of ['/api/x', '/api/%2e%2e%2Fx', '/a%2Fb']) {
      const res = await worker.request({ method: 'GET', path });
      assert.ok([400, 401].includes(res.status), `${path}: ${res.status} ${res.text.slice(0, 200)}`);
      const body = res.json();
      assert.equal(typeof body.request_id, 'string');
      assert.equal(res.headers['x-trace-id'], body.request_id, `${path}: x-trace-id`);
      assert.equal(res.headers['x-request-id'], undefined, `${path}: x-request-id must not be sent`);
    }
  });
});
