// Edgeward end to end, issue 17 ("Alerts"): the UsageStore runs the alert rules on each flushed
// batch (observability.flush_secs: 1) and delivers each alert, from its alarm, to a real webhook
// receiver started here that checks every Edgeward-Signature (HMAC-SHA-256 of `t.body`,
// recomputed with node:crypto) — a JSON webhook and a Slack one. Normal traffic raises nothing;
// 50 bad tokens from one IP raise exactly one auth_failures alert (more within the cooldown
// none); a burst on one API key above its own baseline raises exactly one usage_spike; a revoked
// token presented repeatedly raises exactly one revoked_use; a key refused from outside its
// allowed IPs raises one auth_failures whose suspend_key_secs action revokes the key through the
// ledger (the gate then refuses it; key_suspend in the trail); the IP rule's block_ip_secs puts
// the address on the block list: refused (403 ip_blocked) until the block ends, then allowed. Each alert is in the audit trail (alert_fired). No alert holds a
// token or key. Waits poll; nothing sleeps a fixed time.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PEPPER = crypto.randomBytes(32).toString('hex');
const HOOK_SECRET = `whsec-${crypto.randomBytes(16).toString('hex')}`;
const PREFIX = '/__edgeward/admin';

/** A webhook receiver on 127.0.0.1: every POST recorded with whether its signature verifies. */
function startReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const header = req.headers['edgeward-signature'] ?? '';
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
      const expected = m && crypto.createHmac('sha256', HOOK_SECRET).update(`${m[1]}.${body}`).digest('hex');
      const valid = Boolean(m) && crypto.timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(m[2], 'hex'))
        && Math.abs(Number(m[1]) - h.nowSecs()) < 300;
      received.push({ path: req.url, body, valid, alertId: req.headers['edgeward-alert-id'] });
      res.writeHead(valid ? 200 : 401).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    received,
    /** The JSON deliveries, parsed. */
    alerts: () => received.filter((r) => r.path === '/json').map((r) => JSON.parse(r.body)),
    stop: () => new Promise((r) => server.close(r)),
  })));
}

describe('alerts', { timeout: 300_000 }, () => {
  let receiver;
  before(async () => { receiver = await startReceiver(); });
  after(() => receiver?.stop());
  const stack = h.useStack({
    label: 'alerts',
    keys: ['ES256'],
    config: () => ({
      routes: [
        { path: '/public/*', public: true },
        { path: '/svc/*', auth: 'api_key' },
      ],
      api_keys: { environment: 'test' },
      revocations: { refresh_secs: 1, max_age_secs: 60 },
      observability: { flush_secs: 1 },
      ip_blocks: { refresh_secs: 1 },
      alerts: {
        rules: [
          { rule: 'auth_failures', subjects: ['ip'], threshold: 50, window_secs: 60, cooldown_secs: 600, action: { block_ip_secs: 15 } },
          { rule: 'auth_failures', subjects: ['key_id'], threshold: 5, window_secs: 60, action: { suspend_key_secs: 120 } },
          { rule: 'usage_spike', subjects: ['key_id'], factor: 5, window_secs: 3, baseline_secs: 120, min_requests: 40 },
          { rule: 'revoked_use', threshold: 5, window_secs: 600 },
        ],
        webhooks: [
          { url: `${receiver.url}/json`, secret: 'HOOK_SECRET', format: 'json' },
          { url: `${receiver.url}/slack`, secret: 'HOOK_SECRET', format: 'slack' },
        ],
      },
    }),
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN, EDGEWARD_API_KEY_PEPPER: PEPPER, HOOK_SECRET },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));
  const secrets = [ADMIN, PEPPER, HOOK_SECRET];

  const admin = (method, p, body) => worker.request({
    method,
    path: `${PREFIX}${p}`,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const usageTotal = async (query) => {
    const r = await admin('GET', `/usage?${query}`);
    assert.equal(r.status, 200, r.text);
    return r.json().series.reduce((n, p) => n + p.accepted + Object.values(p.rejected).reduce((a, b) => a + b, 0), 0);
  };
  const alertsOf = (rule) => receiver.alerts().filter((a) => a.rule === rule);
  const waitAlert = (rule, n = 1) => h.until(() => alertsOf(rule).length >= n, { timeoutMs: 30_000, what: `${n} ${rule} alert(s)` });
  const send = (n, req) => Promise.all(Array.from({ length: n }, () => worker.request(req)));

  it('normal traffic raises nothing', async () => {
    const sub = `user-${crypto.randomUUID().slice(0, 8)}`;
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub } });
    const from = h.nowSecs() - 5;
    for (let i = 0; i < 20; i++) {
      const r = await worker.request({ path: '/api/x', headers: { ...h.bearer(token), 'cf-connecting-ip': '203.0.113.5' } });
      assert.equal(r.status, 200);
    }
    // Counted (so the rules ran on it), and nothing delivered.
    await h.until(async () => (await usageTotal(`sub=${sub}&iss=${encodeURIComponent(jwks.issuer)}&from=${from}`)) === 20, { timeoutMs: 20_000, what: 'the normal traffic counted' });
    assert.deepEqual(receiver.received, []);
  });

  it('50 bad tokens from one IP: exactly one auth_failures alert, signed, on both webhooks', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer });
    const bad = h.tamperSignature(token);
    const from = { ...h.bearer(bad), 'cf-connecting-ip': '198.51.100.7' };
    for (let i = 0; i < 49; i++) assert.equal((await worker.request({ path: '/api/x', headers: from })).status, 401);
    assert.equal((await worker.request({ path: '/api/x', headers: from })).status, 401);
    await waitAlert('auth_failures');
    const [a] = alertsOf('auth_failures');
    assert.deepEqual(a.subject, { kind: 'ip', id: '198.51.100.0/24' }, 'the address as logging.client_ip renders it');
    assert.equal(a.count, 50, 'fired on the 50th, not before (an earlier alert would count fewer)');
    assert.equal(a.window_secs, 60);
    assert.ok(a.first_seen <= a.last_seen && a.last_seen <= h.nowSecs());
    assert.ok(a.sample_request_ids.length >= 1 && a.sample_request_ids.every((id) => /^[0-9a-f]{32}$/.test(id)));
    assert.match(a.alert_id, /^[0-9a-f]{32}$/);
    assert.deepEqual(a.action, { block_ip_secs: 15 });
    // The automatic response: the /24 the alert names is blocked (a valid token does not help)
    // until the block ends, then allowed again; the block is in the audit trail.
    const good = { path: '/api/x', headers: { ...h.bearer(token), 'cf-connecting-ip': '198.51.100.200' } };
    const blockedAt = await h.until(async () => (await worker.request(good)).status === 403 && Date.now(), { timeoutMs: 20_000, intervalMs: 100, what: 'the alert\'s block to reach the gate' });
    h.assertError(await worker.request(good), { status: 403, code: 'ip_blocked' });
    assert.equal((await worker.request({ ...good, headers: { ...good.headers, 'cf-connecting-ip': '198.51.101.1' } })).status, 200, 'outside the /24');
    const listed = (await admin('GET', '/blocks')).json().items;
    assert.deepEqual(listed.map((i) => i.id), ['198.51.100.0_24']);
    assert.match(listed[0].block.reason, new RegExp(a.alert_id));
    await h.until(async () => (await worker.request(good)).status === 200, { timeoutMs: 30_000, intervalMs: 250, what: 'the block to end' });
    assert.ok(Date.now() - blockedAt < 25_000);
    await h.until(() => receiver.received.some((r) => r.path === '/slack' && r.alertId === a.alert_id), { timeoutMs: 30_000, what: 'the Slack delivery' });
    const slack = JSON.parse(receiver.received.find((r) => r.path === '/slack').body);
    assert.match(slack.text, /auth_failures: ip 198\.51\.100\.0\/24: 50 in 60 s/);
    // 20 more within the cooldown: counted, no second alert.
    await send(20, { path: '/api/x', headers: from });
  });

  it('a burst on one API key above its own baseline: exactly one usage_spike', async () => {
    const created = await admin('POST', '/keys', { owner: 'alerts-test' });
    assert.equal(created.status, 201, created.text);
    const { key: apiKey, id: keyId } = created.json();
    const since = h.nowSecs() - 5;
    const req = { path: '/svc/x', headers: { 'x-api-key': apiKey, 'cf-connecting-ip': '203.0.113.5' } };
    // A steady baseline: 2 requests, then wait until the store has them (one flush later), 8 times.
    for (let i = 1; i <= 8; i++) {
      for (const r of await send(2, req)) assert.equal(r.status, 200);
      await h.until(async () => (await usageTotal(`key_id=${keyId}&from=${since}`)) === 2 * i, { timeoutMs: 20_000, what: `baseline round ${i}` });
    }
    assert.equal(alertsOf('usage_spike').length, 0, 'a steady rate is no spike');
    for (let i = 0; i < 8; i++) for (const r of await send(10, req)) assert.equal(r.status, 200);
    await waitAlert('usage_spike');
    const [a] = alertsOf('usage_spike');
    assert.deepEqual(a.subject, { kind: 'key_id', id: keyId });
    assert.ok(a.count >= 40, JSON.stringify(a));
    assert.ok(!JSON.stringify(receiver.received).includes(apiKey), 'no key in an alert');
  });

  it('a revoked token presented repeatedly: exactly one revoked_use', async () => {
    const sub = `user-${crypto.randomUUID().slice(0, 8)}`;
    const jti = crypto.randomUUID();
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub, jti } });
    const req = { path: '/api/x', headers: { ...h.bearer(token), 'cf-connecting-ip': '192.0.2.44' } };
    assert.equal((await worker.request(req)).status, 200);
    const r = await admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti }, reason: 'test', expires_at: h.nowSecs() + 3600 });
    assert.ok([200, 201].includes(r.status), r.text);
    await h.until(async () => (await worker.request(req)).status === 401, { timeoutMs: 30_000, what: 'the token refused' });
    for (let i = 0; i < 6; i++) h.assertError(await worker.request(req), { status: 401, code: 'token_revoked', error: 'invalid_token' });
    await waitAlert('revoked_use');
    const [a] = alertsOf('revoked_use');
    assert.deepEqual(a.subject, { kind: 'sub', id: sub, iss: jwks.issuer });
    assert.ok(a.count >= 5);
  });

  it('a key refused from outside its allowed IPs 5 times: one alert, and the key suspended through the revocation ledger', async () => {
    const created = await admin('POST', '/keys', { owner: 'alerts-test', allowed_ips: ['203.0.113.0/24'] });
    assert.equal(created.status, 201, created.text);
    const { key: apiKey, id: keyId } = created.json();
    const fromOutside = { path: '/svc/x', headers: { 'x-api-key': apiKey, 'cf-connecting-ip': '198.51.100.9' } };
    const fromInside = { path: '/svc/x', headers: { 'x-api-key': apiKey, 'cf-connecting-ip': '203.0.113.9' } };
    assert.equal((await worker.request(fromInside)).status, 200);
    for (let i = 0; i < 5; i++) h.assertError(await worker.request(fromOutside), { status: 403, code: 'ip_not_allowed' });
    await h.until(() => alertsOf('auth_failures').some((a) => a.subject.kind === 'key_id'), { timeoutMs: 30_000, what: 'the key\'s alert' });
    const a = alertsOf('auth_failures').find((x) => x.subject.kind === 'key_id');
    assert.deepEqual([a.subject, a.count, a.action], [{ kind: 'key_id', id: keyId }, 5, { suspend_key_secs: 120 }]);
    // The suspension is an api_key revocation in the ledger, expiring in 120 s, and the gate refuses the key.
    await h.until(async () => {
      const list = await admin('GET', '/revocations?limit=1000');
      return list.json().items.some(({ revocation: r }) => r.target.kind === 'api_key' && r.target.key_id === keyId && r.reason.includes(a.alert_id));
    }, { timeoutMs: 30_000, what: 'the suspension in the ledger' });
    const r = (await admin('GET', '/revocations?limit=1000')).json().items.find((x) => x.revocation.target.key_id === keyId).revocation;
    assert.ok(Math.abs(r.expires_at - (h.nowSecs() + 120)) <= 30, JSON.stringify(r));
    await h.until(async () => (await worker.request(fromInside)).status === 401, { timeoutMs: 30_000, what: 'the suspended key refused' });
    h.assertError(await worker.request(fromInside), { status: 401, code: 'api_key_invalid', error: undefined, wwwAuthPrefix: 'ApiKey' });
    // And the automatic action is in the audit trail.
    await h.until(async () => (await admin('GET', '/audit?limit=1000')).json().items.some((e) => e.action === 'key_suspend' && e.target === keyId && e.outcome === 'ok'), { timeoutMs: 30_000, what: 'key_suspend in the trail' });
  });

  it('in the end: one alert per scenario, every delivery signed, each alert in the audit trail', async () => {
    // Let any second alert the scenarios could have raised arrive: one more flush and alarm.
    const marker = `user-${crypto.randomUUID().slice(0, 8)}`;
    const from = h.nowSecs() - 5;
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: marker } });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(token) })).status, 200);
    await h.until(async () => (await usageTotal(`sub=${marker}&iss=${encodeURIComponent(jwks.issuer)}&from=${from}`)) === 1, { timeoutMs: 20_000, what: 'a last flush' });
    await h.until(() => receiver.received.length === 8, { timeoutMs: 20_000, what: 'two deliveries of each of four alerts' });
    const rules = receiver.alerts().map((a) => `${a.rule} ${a.subject.kind}`).sort();
    assert.deepEqual(rules, ['auth_failures ip', 'auth_failures key_id', 'revoked_use sub', 'usage_spike key_id']);
    assert.ok(receiver.received.every((r) => r.valid), 'every signature verifies');
    h.assertNoTokensIn(JSON.stringify(receiver.received));
    for (const s of secrets) assert.ok(!JSON.stringify(receiver.received).includes(s));
    const trail = await admin('GET', '/audit?limit=1000');
    assert.equal(trail.status, 200);
    const fired = trail.json().items.filter((e) => e.action === 'alert_fired');
    assert.deepEqual(fired.map((e) => e.request_id).sort(), receiver.alerts().map((a) => a.alert_id).sort());
    assert.ok(fired.every((e) => e.principal === 'edgeward:alerts'));
  });
});
