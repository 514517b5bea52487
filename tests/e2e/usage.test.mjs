// Edgeward end to end, issue 17 ("Usage, counted off the hot path"): the gate counts every
// decision in the isolate and flushes the counts (observability.flush_secs: 1 here) to the control
// Worker's UsageStore Durable Objects; GET {admin}/usage answers exact series for a scripted
// pattern of API key, JWT (sub, azp) and refused requests, sent in two rounds with a flush
// between them; hour and day granularities sum the same; bad parameters are 400
// bad_usage_query naming the parameter; `edgeward usage` prints the same points and exits 1 on a
// refused query. Waits poll the admin API; nothing sleeps a fixed time.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PEPPER = crypto.randomBytes(32).toString('hex');
const PREFIX = '/__edgeward/admin';

/** The edgeward CLI as `cargo test` built it (in CARGO_TARGET_DIR when that is set). */
function cli(worker, args) {
  const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(h.ROOT, 'target'), 'debug', 'edgeward');
  assert.ok(fs.existsSync(bin), `${bin} missing: run cargo build first`);
  const tokenFile = path.join(h.makeTempDir('usage-cli'), 'admin-token');
  fs.writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
  const r = spawnSync(bin, ['usage', ...args, '--url', worker.url, '--admin-token-file', tokenFile], { encoding: 'utf8' });
  const lines = r.stdout.trim() ? r.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
  return { status: r.status, lines, stderr: r.stderr };
}

/** Sums a series: accepted, and refusals by reason. */
function totals(series) {
  const out = { accepted: 0, rejected: {} };
  for (const p of series) {
    out.accepted += p.accepted;
    for (const [code, n] of Object.entries(p.rejected)) out.rejected[code] = (out.rejected[code] ?? 0) + n;
  }
  return out;
}

describe('usage counters', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'usage',
    keys: ['ES256'],
    config: {
      routes: [
        { path: '/public/*', public: true },
        { path: '/admin/*', scopes: ['admin'] },
        { path: '/svc/*', auth: 'api_key' },
        { path: '/svc-admin/*', auth: 'api_key', scopes: ['admin'] },
      ],
      api_keys: { environment: 'test' },
      observability: { flush_secs: 1 },
    },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN, EDGEWARD_API_KEY_PEPPER: PEPPER },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));

  const admin = (method, p, body) => worker.request({
    method,
    path: `${PREFIX}${p}`,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const usage = async (query) => {
    const r = await admin('GET', `/usage?${query}`);
    assert.equal(r.status, 200, r.text);
    return r.json().series;
  };
  /** Polls until the subject's totals are `want` (then checks they stay so after one more flush). */
  const settle = async (query, want) => {
    await h.until(async () => JSON.stringify(totals(await usage(query))) === JSON.stringify(want), { timeoutMs: 20_000, what: `usage ${query} = ${JSON.stringify(want)}` });
  };

  it('answers exact counts per key id, sub and client id across flushes', async () => {
    const from = h.nowSecs() - 5;
    const created = await admin('POST', '/keys', { owner: 'usage-test' });
    assert.equal(created.status, 201, created.text);
    const { key: apiKey, id: keyId } = created.json();
    const sub = `user-${crypto.randomUUID().slice(0, 8)}`;
    const client = `app-${crypto.randomUUID().slice(0, 8)}`;
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub, azp: client } });
    const send = async (n, req, status) => {
      for (let i = 0; i < n; i++) {
        const r = await worker.request(req);
        assert.equal(r.status, status, `${req.path}: ${r.text}`);
      }
    };
    // Round 1: 3 accepted with the key; 2 accepted with the token, 1 refused for its scope.
    await send(3, { path: '/svc/a', headers: { 'x-api-key': apiKey } }, 200);
    await send(2, { path: '/api/a', headers: h.bearer(token) }, 200);
    await send(1, { path: '/admin/a', headers: h.bearer(token) }, 403);
    const keyQuery = `key_id=${keyId}&from=${from}`;
    const subQuery = `sub=${encodeURIComponent(sub)}&iss=${encodeURIComponent(jwks.issuer)}&from=${from}`;
    await settle(keyQuery, { accepted: 3, rejected: {} });
    await settle(subQuery, { accepted: 2, rejected: { insufficient_scope: 1 } });
    // Round 2, after that flush: 2 more with the key and 2 refused for its scopes; 3 more with
    // the token (cached now: counted all the same), 1 more refused.
    await send(2, { path: '/svc/b', headers: { 'x-api-key': apiKey } }, 200);
    await send(2, { path: '/svc-admin/b', headers: { 'x-api-key': apiKey } }, 403);
    await send(3, { path: '/api/b', headers: h.bearer(token) }, 200);
    await send(1, { path: '/admin/b', headers: h.bearer(token) }, 403);
    await settle(keyQuery, { accepted: 5, rejected: { insufficient_scope: 2 } });
    await settle(subQuery, { accepted: 5, rejected: { insufficient_scope: 2 } });
    await settle(`client_id=${client}&from=${from}`, { accepted: 5, rejected: { insufficient_scope: 2 } });
    // Counted once: another flush (any traffic) changes nothing.
    await send(1, { path: '/public/x' }, 200);
    const minute = await usage(subQuery);
    assert.deepEqual(totals(minute), { accepted: 5, rejected: { insufficient_scope: 2 } });
    for (const p of minute) assert.equal(p.t % 60, 0, 'minute points start on the minute');
    // Coarser granularities sum the same.
    for (const g of ['hour', 'day']) {
      const s = await usage(`${subQuery}&granularity=${g}`);
      assert.ok(s.length >= 1 && s.length <= 2, `${g}: ${JSON.stringify(s)}`);
      assert.deepEqual(totals(s), { accepted: 5, rejected: { insufficient_scope: 2 } }, g);
    }
    // Before `from`: nothing.
    assert.deepEqual(await usage(`sub=${encodeURIComponent(sub)}&iss=${encodeURIComponent(jwks.issuer)}&from=${from - 7200}&to=${from - 3700}`), []);
    // The CLI prints the same points, one per line.
    const c = cli(worker, ['--sub', sub, '--iss', jwks.issuer, '--from', String(from)]);
    assert.equal(c.status, 0, c.stderr);
    assert.deepEqual(c.lines, minute);
    const bad = cli(worker, ['--key-id', keyId, '--from', '10', '--to', '5']);
    assert.equal(bad.status, 1);
    assert.equal(bad.lines[0].code, 'bad_usage_query');
  });

  it('refuses bad parameters with 400 bad_usage_query naming the parameter', async () => {
    for (const [query, field] of [
      ['', 'subject'],
      ['sub=alice', 'iss'],
      ['key_id=a&client_id=b', 'subject'],
      ['key_id=a&granularity=week', 'granularity'],
      ['key_id=a&from=abc', 'from'],
      ['key_id=a&from=0&to=99999999', 'granularity'],
      ['key_id=a&bogus=1', 'query'],
    ]) {
      const r = await admin('GET', `/usage?${query}`);
      assert.equal(r.status, 400, `${query}: ${r.text}`);
      assert.equal(r.json().code, 'bad_usage_query', query);
      assert.equal(r.json().field, field, query);
    }
    const anon = await worker.request({ path: `${PREFIX}/usage?key_id=a` });
    assert.equal(anon.status, 401);
  });
});
