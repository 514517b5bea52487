// Edgeward end to end: the two Workers. The gate (wrangler.toml, feature `worker`) carries no
// admin API and no Durable Object class: admin calls go through its EDGEWARD_CONTROL service
// binding to the control Worker (control/wrangler.toml). Every other suite runs both; this one
// checks what each side does on its own.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from './harness.mjs';
import { deriveWranglerConfig } from '../../scripts/wrangler-derive.mjs';

/**
 * The gate's wrangler.toml without its EDGEWARD_CONTROL service binding (and [build]), written
 * beside the gate's build (build/, git-ignored); returns its path relative to the repository.
 */
function gateWithoutControl() {
  const text = deriveWranglerConfig('wrangler.toml', { drop: ['build', 'services'], main: 'index.js' });
  fs.writeFileSync(path.join(h.ROOT, 'build', 'wrangler.gate-alone.toml'), text);
  return path.join('build', 'wrangler.gate-alone.toml');
}

const ADMIN = `admin-${Math.random().toString(16).slice(2)}-${Date.now()}`;
const PREFIX = '/__edgeward/admin';

/** The names a built Worker's index.js exports (its last `export {...}` statement). */
function exportsOf(dir) {
  const js = fs.readFileSync(path.join(h.ROOT, dir, 'index.js'), 'utf8');
  const m = /export\s*\{([^}]*)\}\s*;?\s*$/.exec(js);
  assert.ok(m, `${dir}/index.js ends in no export statement`);
  return m[1].split(',').map((s) => s.trim().split(/\s+as\s+/).pop());
}

describe('the two builds', { timeout: 660_000 }, () => {
  it('the Durable Object classes are exported by the control Worker only', async () => {
    await h.ensureBuilt();
    const gate = exportsOf('build');
    const control = exportsOf('build-control');
    for (const cls of ['RateLimiter', 'RevocationLedger', 'KeyWriter', 'ReplayGuard', 'AuditTrail', 'UsageStore']) {
      assert.ok(!gate.includes(cls), `the gate exports ${cls}: ${gate}`);
      assert.ok(control.includes(cls), `the control Worker does not export ${cls}: ${control}`);
    }
    assert.ok(gate.includes('default') && control.includes('default'), 'both export a fetch handler');
  });
});

describe('the gate alone, without its control Worker', { timeout: 240_000 }, () => {
  const stack = h.useStack({ label: 'gate-alone', keys: ['ES256'], worker: false, vars: { EDGEWARD_ADMIN_TOKEN: ADMIN } });

  it('verifies and forwards as usual, and answers admin calls 503 admin_unavailable', async () => {
    // Only the gate, and no EDGEWARD_CONTROL binding (its Durable Object bindings lead nowhere).
    const worker = await stack.startWorker({ wranglerConfig: gateWithoutControl() });
    const token = await h.mintToken(stack.keys[0], { issuer: stack.jwks.issuer });
    const ok = await worker.request({ path: '/api/x', headers: h.bearer(token) });
    assert.equal(ok.status, 200, ok.text);
    for (const [method, path] of [['GET', '/revocations'], ['POST', '/keys'], ['GET', '']]) {
      const r = await worker.request({ method, path: `${PREFIX}${path}`, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined });
      h.assertError(r, { status: 503, code: 'admin_unavailable', context: `${method} ${path}` });
      assert.equal(r.headers['retry-after'], '5');
    }
    const line = await worker.waitForJsonLine((o) => o.event === 'decision' && o.reason === 'admin_unavailable');
    assert.ok(line, 'the refusal is logged');
    assert.match(line.detail, /control Worker/);
    assert.ok(!worker.output.includes(ADMIN), 'the admin token is never logged');
  });
});

describe('the gate with its control Worker', { timeout: 240_000 }, () => {
  const stack = h.useStack({ label: 'gate-and-control', keys: ['ES256'], vars: { EDGEWARD_ADMIN_TOKEN: ADMIN } });

  it('admin calls are answered and audited by the control Worker, decisions by the gate', async () => {
    const { worker } = stack;
    const token = await h.mintToken(stack.keys[0], { issuer: stack.jwks.issuer });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(token) })).status, 200);
    const r = await worker.request({ path: `${PREFIX}/revocations`, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().total, 0);
    const denied = await worker.request({ path: `${PREFIX}/revocations`, headers: { authorization: 'Bearer not-the-admin-token' } });
    assert.equal(denied.status, 401, denied.text);
    assert.ok(await worker.waitForJsonLine((o) => o.event === 'admin_audit' && o.authorized === false, 10000), 'the refused call is audited');
    // The gate logs each call it passed on, with the control Worker's status (a line of its own,
    // which may arrive after the control Worker's).
    assert.ok(await worker.waitForJsonLine((o) => o.event === 'decision' && o.decision === 'control' && o.status === 401, 10000), 'the gate logs the refused call it passed on');
    const passed = worker.jsonLines().filter((o) => o.event === 'decision' && o.decision === 'control');
    assert.deepEqual(passed.map((o) => o.status).sort(), [200, 401], JSON.stringify(passed));
    // wrangler prefixes each console.log line of a multi-Worker session with the Worker that
    // printed it (the first Worker's name shows as it pleases wrangler, so only the control
    // Worker's prefix is matched exactly).
    const lines = worker.output.split('\n');
    const byControl = (l) => l.startsWith('[edgeward-control] ');
    const byOther = (l) => /^\[[^\]]+\] /.test(l) && !byControl(l);
    const audit = lines.filter((l) => l.includes('"admin_audit"'));
    assert.equal(audit.length, 2, `two audited admin calls:\n${audit.join('\n')}`);
    assert.ok(audit.every(byControl), `audited by the control Worker:\n${audit.join('\n')}`);
    const decisions = lines.filter((l) => l.includes('"event":"decision"'));
    assert.ok(decisions.length >= 3, `a decision for /api/x and one per passed call:\n${decisions.join('\n')}`);
    assert.ok(decisions.every(byOther), `every decision line is the gate's:\n${decisions.join('\n')}`);
  });
});
