// Edgeward end to end, issue 20 ("nothing acknowledged is lost"): admin writes — revocations and
// API keys — go on while wrangler dev (workerd, with its local KV and Durable Object storage under
// --persist-to) is killed with SIGKILL, mid-burst; a new wrangler dev on the same directory must
// still have every write that was answered 2xx, and the gate must refuse the revoked tokens.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PEPPER = crypto.randomBytes(32).toString('base64url');
const PREFIX = '/__edgeward/admin';

describe('crash: acknowledged admin writes survive a kill mid-burst', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'crash',
    keys: ['ES256'],
    config: { revocations: { refresh_secs: 1, max_age_secs: 60 }, api_keys: { environment: 'test' }, routes: [{ path: '/public/*', public: true }, { path: '/svc/*', auth: 'api_key' }], rate_limits: { ip_pre_auth: { rate: 100000, period_secs: 60, burst: 100000 } } },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN, EDGEWARD_API_KEY_PEPPER: PEPPER },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));

  const admin = (w, method, p, body) => w.request({
    method,
    path: `${PREFIX}${p}`,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    timeoutMs: 10_000,
  });

  it('every write answered 2xx before the kill is there after the restart', async () => {
    const acked = { revocations: [], keys: [] };
    let stop = false;
    let sent = 0;
    // Four writers, alternating revocations and key creations, until the kill.
    const writer = async (n) => {
      for (let i = 0; !stop; i++) {
        const k = `${n}-${i}`;
        sent++;
        try {
          if (i % 2 === 0) {
            const r = await admin(worker, 'POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: `crash-${k}` }, reason: 'crash test' });
            if (r.status === 201) acked.revocations.push({ id: r.json().id, jti: `crash-${k}` });
          } else {
            const r = await admin(worker, 'POST', '/keys', { owner: `crash-${k}` });
            if (r.status === 201) acked.keys.push(r.json().id);
          }
        } catch {
          // Connection reset by the kill: not acknowledged.
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    await h.until(() => acked.revocations.length >= 20 && acked.keys.length >= 20, { timeoutMs: 60_000, what: 'at least 20 acknowledged writes of each kind' });
    await worker.kill();
    stop = true;
    await Promise.all(writers);
    assert.ok(sent > acked.revocations.length + acked.keys.length, 'some writes were in flight at the kill (sent, not acknowledged)');

    const revived = await stack.startWorker({ label: 'crash-2' }); // same persist dir and config
    for (const { id } of acked.revocations) {
      const r = await admin(revived, 'GET', `/revocations/${id}`);
      assert.equal(r.status, 200, `acknowledged revocation ${id} lost: ${r.text}`);
    }
    for (const id of acked.keys) {
      const r = await admin(revived, 'GET', `/keys/${id}`);
      assert.equal(r.status, 200, `acknowledged key ${id} lost: ${r.text}`);
    }
    // And the revocations reach the gate (the ledger publishes what it had not yet published).
    const tokens = await Promise.all(acked.revocations.slice(-3).map(({ jti }) => h.mintToken(key, { issuer: jwks.issuer, claims: { jti } })));
    await h.until(async () => Promise.all(tokens.map(async (t) => (await revived.request({ path: '/api/x', headers: h.bearer(t) })).status)), {
      ok: (statuses) => statuses.every((s) => s === 401),
      timeoutMs: 20_000,
      intervalMs: 250,
      what: 'the gate to refuse the last acknowledged revocations after the restart',
    });
  });
});
