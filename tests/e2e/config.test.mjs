// Edgeward end to end: an invalid EDGEWARD_CONFIG turns every request into 500 config_invalid,
// and the log says which field is wrong.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

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
  let worker;
  let token;

  before(
    async () => {
      await h.ensureBuilt();
      const key = await h.makeKey('RS256');
      token = await h.mintToken(key, { issuer: 'http://127.0.0.1:9' });
      worker = await h.startWrangler({ label: 'config-empty-issuers', config: '{"issuers": []}' });
    },
    { timeout: 660_000 },
  );

  after(async () => {
    await worker?.stop();
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
  let worker;

  before(
    async () => {
      await h.ensureBuilt();
      const config = h.baseConfig({
        jwks: { issuer: 'http://127.0.0.1:9', jwksUri: 'http://127.0.0.1:9/jwks.json' },
        originUrl: 'http://127.0.0.1:9',
      });
      config.issuers = [];
      worker = await h.startWrangler({ label: 'config-complete-empty-issuers', config });
    },
    { timeout: 660_000 },
  );

  after(async () => {
    await worker?.stop();
  });

  it('every request → 500 config_invalid and a JSON log line names "issuers"', async () => {
    const key = await h.makeKey('EdDSA');
    const token = await h.mintToken(key, { issuer: 'http://127.0.0.1:9' });
    await assertAllConfigInvalid(worker, token);
    const line = await worker.waitForJsonLine((o) => o.__line.includes('issuers'));
    assert.ok(line, `no JSON log line mentions "issuers"; output:\n${worker.output.slice(-4000)}`);
  });
});

describe('invalid config: not JSON', { timeout: 180_000 }, () => {
  let worker;
  let token;

  before(
    async () => {
      await h.ensureBuilt();
      const key = await h.makeKey('ES256');
      token = await h.mintToken(key, { issuer: 'http://127.0.0.1:9' });
      worker = await h.startWrangler({ label: 'config-not-json', config: '{"issuers": [' });
    },
    { timeout: 660_000 },
  );

  after(async () => {
    await worker?.stop();
  });

  it('every request → 500 config_invalid, and nothing leaks the token', async () => {
    const ids = await assertAllConfigInvalid(worker, token);
    assert.ok(await h.findDecisionLine(worker, ids.at(-1)), 'no decision log line for a config_invalid request');
    h.assertNoTokensIn(worker.output, [token]);
  });
});
