// Edgeward end to end, issue 17's automatic responses: the block list under wrangler dev, with the
// real ledger Durable Object and local KV. An address blocked through the admin API is refused
// (403 ip_blocked) before anything else of its request is read — a valid token does not help,
// a public route neither — until the block ends or is removed; a prefix blocks every address in
// it; other addresses pass throughout; each write is in the audit trail.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PREFIX = '/__edgeward/admin';

describe('blocks: addresses refused before anything else', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'blocks',
    keys: ['ES256'],
    config: { ip_blocks: { refresh_secs: 1 } },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN },
  });
  let worker; let jwks; let key;
  before(() => ({ worker, jwks, keys: [key] } = stack));

  const admin = (method, path, body) => worker.request({
    method,
    path: `${PREFIX}${path}`,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'cf-connecting-ip': '192.0.2.250' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const from = async (ip, path = '/api/x', token) => (await worker.request({ path, headers: { 'cf-connecting-ip': ip, ...(token ? h.bearer(token) : {}) } }));
  // A block reaches the gate when the ledger has written it to KV (its alarm, ~500 ms) and the
  // gate's background re-read (refresh_secs: 1, started by a request) has taken it in.
  const untilStatus = (ip, status, token, what) => h.until(async () => (await from(ip, '/api/x', token)).status, {
    ok: (s) => s === status, timeoutMs: 10_000, intervalMs: 200, what,
  });

  it('a blocked address is refused with a valid token, on a public route too, until it is unblocked; others pass', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    assert.equal((await from('198.51.100.7', '/api/x', token)).status, 200);
    const added = await admin('POST', '/blocks', { target: '198.51.100.7', expires_in_secs: 600, reason: 'e2e' });
    assert.equal(added.status, 201, added.text);
    assert.equal(added.json().id, '198.51.100.7');
    await untilStatus('198.51.100.7', 403, token, 'the block to reach the gate');
    h.assertError(await from('198.51.100.7', '/api/x', token), { status: 403, code: 'ip_blocked' });
    h.assertError(await from('198.51.100.7', '/public/x'), { status: 403, code: 'ip_blocked' });
    assert.equal((await from('198.51.100.8', '/api/x', token)).status, 200, 'another address passes');
    const listed = (await admin('GET', '/blocks')).json();
    assert.deepEqual(listed.items.map((i) => i.id), ['198.51.100.7']);
    // Removed: allowed again.
    const removed = await admin('DELETE', '/blocks/198.51.100.7');
    assert.equal(removed.status, 200, removed.text);
    await untilStatus('198.51.100.7', 200, token, 'the unblock to reach the gate');
    assert.equal((await admin('DELETE', '/blocks/198.51.100.7')).status, 404);
    // Both writes are in the audit trail.
    const trail = (await admin('GET', '/audit?limit=500')).json();
    const actions = trail.items.map((e) => `${e.action} ${e.detail?.target ?? ''}`);
    assert.ok(actions.includes('block_add 198.51.100.7') && actions.includes('block_remove 198.51.100.7'), actions.join(', '));
  });

  it('a prefix blocks every address in it until its expiry, then they pass', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const r = await admin('POST', '/blocks', { target: '203.0.113.77/24', expires_in_secs: 4 });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json().id, '203.0.113.0_24');
    await untilStatus('203.0.113.5', 403, token, 'the prefix block to reach the gate');
    h.assertError(await from('203.0.113.250', '/api/x', token), { status: 403, code: 'ip_blocked' });
    assert.equal((await from('203.0.114.1', '/api/x', token)).status, 200);
    // It ends by itself (the gate ignores an expired block without a new list).
    await untilStatus('203.0.113.5', 200, token, 'the block to expire');
  });

  it('refuses bad blocks with a clear error and writes nothing', async () => {
    for (const [body, code] of [
      [{ target: 'example.com' }, 'bad_target'],
      [{ target: '10.0.0.0/4' }, 'bad_target'],
      [{ target: '10.0.0.1', expires_in_secs: -5 }, 'bad_expiry'],
      [{ target: '10.0.0.1', expires_in_secs: 400 * 86400 }, 'bad_expiry'],
      [{ target: '10.0.0.1', ttl: 5 }, 'bad_request'],
    ]) {
      const r = await admin('POST', '/blocks', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.text}`);
      assert.equal(r.json().code, code, r.text);
    }
    assert.ok(!(await admin('GET', '/blocks')).json().items.some((i) => i.id.startsWith('10.')));
  });
});
