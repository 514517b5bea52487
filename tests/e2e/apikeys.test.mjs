// Edgeward end to end, issue 8: API keys under wrangler dev with real local KV and the real
// revocation ledger. Keys are created through the admin API (and the CLI); a key reaches the
// origin with the injected origin credential and without the client's key; IP allow-lists; expiry,
// disable and rotation overlap; a bad checksum is refused with no KV read; no log line holds a key.
// Also: the admin API authenticated by an admin-scoped JWT (issue 5).

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PEPPER = crypto.randomBytes(32).toString('hex');
const ORIGIN_TOKEN = `origin-${crypto.randomBytes(12).toString('hex')}`;
const PARTNER_SECRET = `partner-${crypto.randomBytes(12).toString('hex')}`;
const PREFIX = '/__edgeward/admin';
const KEY_RE = /^ew_(?:live|test)_[0-9A-Za-z]{38}$/;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

describe('API keys', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'apikeys',
    keys: ['ES256'],
    config: {
      routes: [
        { path: '/public/*', public: true },
        { path: '/svc/*', auth: 'api_key', upstream_credential: 'origin' },
        { path: '/partner/*', auth: 'api_key', upstream_credential: 'partner', scopes: ['partner:read'] },
        { path: '/either/*', auth: 'either' },
        { path: '/limited/*', auth: 'api_key' },
      ],
      api_keys: { environment: 'test', cache_ttl_secs: 1, negative_cache_ttl_secs: 30 },
      upstream_credentials: {
        origin: { header: 'Authorization', value: 'Bearer {secret}', secret: 'ORIGIN_TOKEN' },
        partner: { header: 'X-Partner-Auth', secret: 'PARTNER_SECRET' },
      },
      rate_limits: { mode: 'local', rules: [{ name: 'per-key', key: 'api_key', path: '/limited/*', rate: 3, period_secs: 60, burst: 3 }] },
      revocations: { refresh_secs: 1, max_age_secs: 60 },
      admin: { jwt_scope: 'edgeward:admin' },
    },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN, EDGEWARD_API_KEY_PEPPER: PEPPER, ORIGIN_TOKEN, PARTNER_SECRET },
  });
  let jwks; let origin; let worker; let key;
  before(() => ({ jwks, origin, worker, keys: [key] } = stack));
  const keys = []; // every plain key seen, for the leak check

  const admin = (method, p, body, token = ADMIN) => worker.request({
    method,
    path: `${PREFIX}${p}`,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const create = async (body) => {
    const r = await admin('POST', '/keys', { owner: 'acme', ...body });
    assert.equal(r.status, 201, r.text);
    const k = r.json();
    keys.push(k.key);
    return k;
  };
  const withKey = (k, p = '/svc/x', headers = {}) => worker.request({ path: p, headers: { 'x-api-key': k, 'x-test-id': h.testId(), ...headers } });
  const decision = (res) => h.findDecisionLine(worker, res.headers['x-request-id']);

  it('a created key reaches the origin with the injected origin credential and without the client key', async () => {
    const k = await create({ scopes: ['svc:read'], description: 'e2e' });
    assert.match(k.key, KEY_RE);
    assert.ok(k.key.startsWith('ew_test_'), 'the deployment environment is test');
    assert.match(k.id, /^key_[0-9a-f]{24}$/);
    assert.equal(k.secrets.length, 1);
    assert.ok(!JSON.stringify(k.secrets).includes('hash'), 'no stored hash is shown');

    const id = h.testId();
    const r = await worker.request({ path: '/svc/orders?x=1', headers: { 'x-api-key': k.key, 'x-test-id': id, 'x-edgeward-key-id': 'forged' } });
    assert.equal(r.status, 200, r.text);
    const seen = origin.find(id);
    assert.equal(seen.headers.authorization, `Bearer ${ORIGIN_TOKEN}`, 'origin credential injected');
    assert.equal(seen.headers['x-api-key'], undefined, 'the client key is not forwarded');
    assert.equal(seen.headers['x-edgeward-key-id'], k.id);
    assert.equal(seen.headers['x-edgeward-auth'], 'api_key');
    assert.equal(seen.headers['x-edgeward-sub'], 'acme');
    assert.ok(!JSON.stringify(seen.headers).includes(k.key));

    // Authorization: ApiKey works too; the header is still the origin's credential only.
    const id2 = h.testId();
    const r2 = await worker.request({ path: '/svc/a', headers: { authorization: `ApiKey ${k.key}`, 'x-test-id': id2 } });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(origin.find(id2).headers.authorization, `Bearer ${ORIGIN_TOKEN}`);

    // Inspect and list show no secret.
    const got = await admin('GET', `/keys/${k.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.json().owner, 'acme');
    const list = await admin('GET', '/keys?limit=100');
    assert.equal(list.status, 200);
    assert.ok(list.json().items.some((i) => i.id === k.id));
    assert.ok(!list.text.includes(k.key) && !got.text.includes(k.key));
  });

  it('client copies of the upstream credential header are removed; route scopes apply to keys', async () => {
    const reader = await create({ scopes: ['partner:read'] });
    const id = h.testId();
    const r = await worker.request({ path: '/partner/x', headers: { 'x-api-key': reader.key, 'x-partner-auth': 'forged', 'x-test-id': id } });
    assert.equal(r.status, 200, r.text);
    const seen = origin.find(id);
    assert.equal(seen.headers['x-partner-auth'], PARTNER_SECRET, 'exactly the injected value');
    assert.equal(seen.rawHeaders.filter((x) => x.toLowerCase() === 'x-partner-auth').length, 1);
    const other = await create({ scopes: ['svc:read'] });
    h.assertError(await withKey(other.key, '/partner/x'), { status: 403, code: 'insufficient_scope', error: 'insufficient_scope' });
    // Even on a public route, a client-sent copy of an origin credential header goes nowhere.
    const pid = h.testId();
    await worker.request({ path: '/public/p', headers: { 'x-partner-auth': 'forged', 'x-test-id': pid } });
    assert.equal(origin.find(pid).headers['x-partner-auth'], undefined);
  });

  it('routes take the credentials they declare', async () => {
    const k = await create({});
    h.assertError(await worker.request({ path: '/svc/x' }), { status: 401, code: 'missing_api_key', wwwAuth: 'ApiKey realm="edgeward"' });
    h.assertError(await worker.request({ path: '/either/x' }), { status: 401, code: 'missing_credential', wwwAuth: 'Bearer realm="edgeward", ApiKey realm="edgeward"' });
    h.assertError(await withKey(k.key, '/api/x'), { status: 401, code: 'credential_not_accepted', wwwAuth: 'Bearer realm="edgeward"' });
    const jwt = h.track(await h.mintToken(key, { issuer: jwks.issuer }));
    h.assertError(await worker.request({ path: '/svc/x', headers: h.bearer(jwt) }), { status: 401, code: 'credential_not_accepted', wwwAuth: 'ApiKey realm="edgeward"' });
    assert.equal((await worker.request({ path: '/either/x', headers: h.bearer(jwt) })).status, 200);
    assert.equal((await withKey(k.key, '/either/x')).status, 200);
    // A key and a different JWT together are ambiguous.
    assert.equal((await withKey(k.key, '/either/x', h.bearer(jwt))).status, 401);
  });

  it('a key used from a disallowed IP → 403; allowed v4 and v6 ranges pass', async () => {
    const k = await create({ allowed_ips: ['203.0.113.0/24', '2001:db8:1::/48'] });
    h.assertError(await withKey(k.key, '/svc/x', { 'cf-connecting-ip': '198.51.100.7' }), { status: 403, code: 'ip_not_allowed' });
    h.assertError(await withKey(k.key, '/svc/x', { 'cf-connecting-ip': '2001:db8:2::1' }), { status: 403, code: 'ip_not_allowed' });
    h.assertError(await withKey(k.key, '/svc/x'), { status: 403, code: 'ip_not_allowed' });
    assert.equal((await withKey(k.key, '/svc/x', { 'cf-connecting-ip': '203.0.113.200' })).status, 200);
    assert.equal((await withKey(k.key, '/svc/x', { 'cf-connecting-ip': '2001:db8:1:ffff::9' })).status, 200);
  });

  it('an expired or disabled key → 401 api_key_invalid, indistinguishable from an unknown one', async () => {
    const shortLived = await create({ expires_at: h.nowSecs() + 2 });
    const doomed = await create({});
    assert.equal((await withKey(shortLived.key)).status, 200);
    assert.equal((await withKey(doomed.key)).status, 200);
    const dis = await admin('POST', `/keys/${doomed.id}/disable`, {});
    assert.equal(dis.status, 200, dis.text);
    assert.equal(dis.json().status, 'disabled');
    assert.equal(dis.json().revoked, true, 'also on the revocation list');
    // Both stop working once the expiry (2 s) has passed and the record cache (cache_ttl_secs 1) and
    // the revocation list (refresh_secs 1) have caught up: ask until both are refused.
    await h.until(async () => (await Promise.all([shortLived, doomed].map(async (k) => (await withKey(k.key)).status))), {
      ok: (statuses) => statuses.every((s) => s === 401),
      timeoutMs: 10_000,
      intervalMs: 200,
      what: 'the expired and the disabled key to be refused (statuses [expired, disabled])',
    });
    const bodies = [];
    for (const k of [shortLived.key, doomed.key]) {
      const r = await withKey(k);
      bodies.push(h.assertError(r, { status: 401, code: 'api_key_invalid', wwwAuthPrefix: 'ApiKey realm="edgeward", error="invalid_key"' }));
    }
    // A well-formed key that was never issued answers the same.
    const unknown = await withKey(makeValidLookingKey());
    bodies.push(h.assertError(unknown, { status: 401, code: 'api_key_invalid' }));
    assert.equal(new Set(bodies.map((b) => b.message)).size, 1, 'one message for every refusal');
    assert.equal(new Set([unknown.headers['www-authenticate'], ...[shortLived, doomed].map(() => unknown.headers['www-authenticate'])]).size, 1);
    const line = await decision(unknown);
    assert.equal(line.reason, 'api_key_invalid');
    assert.match(line.detail, /unknown/, 'the operator log says why');
  });

  it('rotation: both keys work during the overlap, only the successor after', async () => {
    const k = await create({});
    const rot = await admin('POST', `/keys/${k.id}/rotate`, { overlap_secs: 3 });
    assert.equal(rot.status, 200, rot.text);
    const successor = rot.json().key;
    keys.push(successor);
    assert.match(successor, KEY_RE);
    assert.notEqual(successor, k.key);
    assert.equal(rot.json().id, k.id, 'same key id lineage');
    assert.equal(rot.json().secrets.length, 2, 'both visible in the admin API');
    assert.equal((await withKey(k.key)).status, 200, 'old key during the overlap');
    assert.equal((await withKey(successor)).status, 200, 'successor');
    // The old key stops once the overlap (3 s) is over and the record cache (cache_ttl_secs 1) has
    // caught up: ask until it is refused.
    await h.until(() => withKey(k.key), { ok: (r) => r.status === 401, timeoutMs: 10_000, intervalMs: 200, what: 'the rotated-out key to be refused after the overlap' });
    h.assertError(await withKey(k.key), { status: 401, code: 'api_key_invalid' });
    assert.equal((await withKey(successor)).status, 200);
    const after = (await admin('GET', `/keys/${k.id}`)).json();
    assert.deepEqual(after.secrets.map((s) => s.active), [false, true]);
  });

  it('a valid-looking key with a bad checksum is refused without any KV read', async () => {
    const k = await create({});
    const responses = [];
    for (let i = 0; i < 20; i++) {
      // Change one body character: the checksum no longer matches.
      const pos = 8 + (i % 32);
      const c = k.key[pos] === 'a' ? 'b' : 'a';
      const bad = `${k.key.slice(0, pos)}${c}${k.key.slice(pos + 1)}`;
      const r = await withKey(bad);
      h.assertError(r, { status: 401, code: 'api_key_malformed', wwwAuthPrefix: 'ApiKey realm="edgeward", error="invalid_key"' });
      responses.push(r);
    }
    const random = `ew_test_${Array.from({ length: 38 }, () => ALPHABET[crypto.randomInt(62)]).join('')}`;
    responses.push(await withKey(random));
    let reads = 0;
    for (const r of responses) {
      const line = await decision(r);
      reads += line.kv_reads ?? 0;
      assert.equal(line.key_id, undefined);
    }
    assert.equal(reads, 0, 'no KV read for a bad checksum');
    // The counter is real: a well-formed unknown key costs exactly one read, then none (cached).
    const unknownKey = makeValidLookingKey();
    const first = await decision(await withKey(unknownKey));
    const second = await decision(await withKey(unknownKey));
    assert.equal(first.kv_reads, 1);
    assert.equal(second.kv_reads ?? 0, 0, 'negative result cached');
    // A live key at this test deployment is refused offline too.
    const live = await decision(await withKey(makeValidLookingKey('live')));
    assert.equal(live.reason, 'api_key_malformed');
    assert.equal(live.kv_reads ?? 0, 0);
  });

  it('limits are per key id', async () => {
    const [a, b] = [await create({}), await create({})];
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await withKey(a.key, '/limited/x')).status);
    assert.deepEqual(codes, [200, 200, 200, 429]);
    assert.equal((await withKey(b.key, '/limited/x')).status, 200, 'another key has its own bucket');
  });

  it('the admin API takes an admin-scoped JWT; other JWTs and keys are refused and audited', async () => {
    const adminJwt = h.track(await h.mintToken(key, { issuer: jwks.issuer, claims: { scope: 'edgeward:admin', sub: 'ops-1' } }));
    const plainJwt = h.track(await h.mintToken(key, { issuer: jwks.issuer, claims: { scope: 'read', sub: 'user-1' } }));
    const ok = await admin('GET', '/keys?limit=5', undefined, adminJwt);
    assert.equal(ok.status, 200, ok.text);
    const rev = await admin('GET', '/revocations', undefined, adminJwt);
    assert.equal(rev.status, 200, rev.text);
    assert.equal((await admin('GET', '/keys', undefined, plainJwt)).status, 401);
    const k = await create({});
    assert.equal((await admin('GET', '/keys', undefined, k.key)).status, 401, 'an API key is no admin credential');
    const audit = await worker.waitForJsonLine((o) => o.event === 'admin_audit' && o.principal === `jwt:${jwks.issuer} ops-1`);
    assert.ok(audit, 'the JWT admin is named in the audit log');
    const denied = await worker.waitForJsonLine((o) => o.event === 'admin_audit' && o.authorized === false && /scope/.test(o.denied_because ?? ''));
    assert.ok(denied, 'a JWT without the scope is denied, with the reason logged');
  });

  it('bad admin input is refused with the field named, and nothing is written', async () => {
    const before = (await admin('GET', '/keys?limit=100')).json().items.length;
    for (const [body, field] of [
      [{ owner: '' }, 'owner'],
      [{ owner: 'x', allowed_ips: ['10.0.0.0/8', '10.0.0.1/8'] }, 'allowed_ips[1]'],
      [{ owner: 'x', expires_at: 1 }, 'expires_at'],
      [{ owner: 'x', scopes: ['a b'] }, 'scopes[0]'],
    ]) {
      const r = await admin('POST', '/keys', body);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json().field, field);
    }
    assert.equal((await admin('POST', '/keys', { owner: 'x', surprise: 1 })).status, 400, 'unknown fields refused');
    assert.equal((await admin('GET', '/keys?limit=100')).json().items.length, before, 'nothing written');
    assert.equal((await admin('POST', '/keys', { owner: 'x' }, null)).status, 401);
    assert.equal((await admin('GET', '/keys/key_000000000000000000000000')).status, 404);
  });

  it('the CLI creates, checks, lists, rotates and disables keys', async () => {
    const bin = path.join(h.ROOT, 'target', 'debug', 'edgeward');
    assert.ok(fs.existsSync(bin), `${bin} missing: run cargo build first`);
    const tokenFile = path.join(h.makeTempDir('cli-keys'), 'admin-token');
    fs.writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
    const adminArgs = ['--url', worker.url, '--admin-token-file', tokenFile];
    const run = (args) => JSON.parse(execFileSync(bin, args, { encoding: 'utf8' }));
    const created = run(['keys', 'create', '--owner', 'cli-owner', '--scope', 'a', '--scope', 'b', '--allow-ip', '203.0.113.0/24', '--expires-in', '3600', ...adminArgs]);
    keys.push(created.key);
    assert.deepEqual(created.scopes, ['a', 'b']);
    assert.deepEqual(created.allowed_ips, ['203.0.113.0/24']);
    assert.equal(run(['keys', 'check', created.key]).valid, true);
    let status = 0;
    try {
      execFileSync(bin, ['keys', 'check', `${created.key.slice(0, -1)}${created.key.endsWith('A') ? 'B' : 'A'}`], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      status = e.status;
      assert.equal(JSON.parse(e.stdout).reason, 'checksum');
    }
    assert.equal(status, 1, 'a bad checksum exits 1');
    const listed = execFileSync(bin, ['keys', 'list', '--limit', '3', ...adminArgs], { encoding: 'utf8' }).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(listed.some((k) => k.id === created.id), 'listed across pages');
    assert.equal(new Set(listed.map((k) => k.id)).size, listed.length, 'no duplicates across pages');
    const rotated = run(['keys', 'rotate', created.id, '--overlap', '60', ...adminArgs]);
    keys.push(rotated.key);
    assert.equal(rotated.secrets.length, 2);
    assert.equal(run(['keys', 'disable', created.id, ...adminArgs]).status, 'disabled');
    const deleted = run(['keys', 'delete', created.id, ...adminArgs]);
    assert.equal(deleted.deleted, true);
    assert.equal((await admin('GET', `/keys/${created.id}`)).status, 404);
  });

  it('a rotation racing a disable ends as one of the two orders would: never active again', async () => {
    // Each key's writes go through its own writer (the KeyWriter Durable Object), one at a time.
    for (let round = 0; round < 6; round++) {
      const k = await create({ description: `race ${round}` });
      const [rot, dis] = await Promise.all([
        admin('POST', `/keys/${k.id}/rotate`, { overlap_secs: 60 }),
        admin('POST', `/keys/${k.id}/disable`, {}),
      ]);
      if (rot.status === 200) keys.push(rot.json().key);
      assert.equal(dis.status, 200, dis.text);
      assert.ok([200, 409].includes(rot.status), rot.text);
      const now = (await admin('GET', `/keys/${k.id}`)).json();
      assert.equal(now.status, 'disabled', `round ${round}: the disable is not lost (rotate ${rot.status})`);
      // Rotate first: two secrets; disable first: the rotation was refused and one secret is left.
      assert.equal(now.secrets.length, rot.status === 200 ? 2 : 1, JSON.stringify(now));
    }
  });

  it('no log line contains a key, the pepper or an origin secret', async () => {
    assert.ok(keys.length >= 10, 'keys were tracked');
    // Every earlier request has been answered; once the decision line of one more request is in the
    // output, so is everything the worker logged before it.
    const marker = await worker.request({ path: '/public/log-flush' });
    const markerId = marker.headers['x-request-id'];
    await h.until(() => worker.jsonLines().find((o) => o.event === 'decision' && o.request_id === markerId), {
      timeoutMs: 10_000,
      what: `the decision log line of request ${markerId} (the output to catch up)`,
    });
    const out = worker.output;
    for (const k of keys) assert.ok(!out.includes(k), 'a plain API key appears in the wrangler output');
    for (const s of [PEPPER, ORIGIN_TOKEN, PARTNER_SECRET, ADMIN]) {
      // wrangler prints --var values only as (hidden) bindings; they must not appear in any log line.
      const lines = out.split('\n').filter((l) => l.includes(s) && !l.includes('Environment Variable'));
      assert.equal(lines.length, 0, `a secret appears in the output: ${lines[0]?.slice(0, 200)}`);
    }
    h.assertNoTokensIn(out);
  });
});

/** A key with a correct checksum that was never issued (CRC32 computed here independently). */
function makeValidLookingKey(env = 'test') {
  const body = Array.from({ length: 32 }, () => ALPHABET[crypto.randomInt(62)]).join('');
  const signed = `ew_${env}_${body}`;
  let v = crc32(Buffer.from(signed));
  let sum = '';
  for (let i = 0; i < 6; i++) {
    sum = ALPHABET[v % 62] + sum;
    v = Math.floor(v / 62);
  }
  return signed + sum;
}

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}
