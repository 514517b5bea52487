// Edgeward end to end, issue 17 ("Audit trail"): the control Worker's AuditTrail Durable Object
// under wrangler dev. Admin writes (revocations single and batch, removal, API key create, rotate,
// disable, delete) and refused admin calls (no credential, a wrong one, a JWT without the admin
// scope) are entries, in order, each holding the SHA-256 of the one before: recomputed here from
// the README's encoding with JSON.stringify, independently of the Rust code. `GET /audit` pages and
// filters; `edgeward audit --verify` passes, survives a restart, and exits 1 once a stored entry
// is altered (or altered and rehashed, or deleted) through the test-only hook, which is refused
// where EDGEWARD_TEST_HOOKS is not set; entries aged past the retention are pruned and the chain
// verifies from the mark. No entry holds a token, key or secret.

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
const GENESIS = '0'.repeat(64);
const far = () => h.nowSecs() + 3600;

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');
const fingerprint = (secret) => `sha256:${sha256(secret).slice(0, 16)}`;
/** RFC 8785 for the values an entry holds: members sorted by UTF-16 code units, no whitespace. */
const canonical = (v) => {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
};
const hashOf = ({ hash, ...rest }) => sha256(canonical(rest));

/** The edgeward CLI (`cargo test`, which scripts/test runs before this suite, builds it). */
function cli(worker, args, token = ADMIN) {
  const bin = path.join(h.ROOT, 'target', 'debug', 'edgeward');
  assert.ok(fs.existsSync(bin), `${bin} missing: run cargo build first`);
  const tokenFile = path.join(h.makeTempDir('audit-cli'), 'admin-token');
  fs.writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const r = spawnSync(bin, ['audit', ...args, '--url', worker.url, '--admin-token-file', tokenFile], { encoding: 'utf8' });
  const lines = r.stdout.trim() ? r.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
  return { status: r.status, lines, stderr: r.stderr };
}

describe('audit trail', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'audit',
    keys: ['ES256'],
    config: {
      routes: [{ path: '/svc/*', auth: 'api_key' }],
      api_keys: { environment: 'test' },
      revocations: { refresh_secs: 1, max_age_secs: 60 },
      admin: { jwt_scope: 'edgeward:admin' },
    },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN, EDGEWARD_API_KEY_PEPPER: PEPPER, EDGEWARD_TEST_HOOKS: '1' },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));
  const secrets = [ADMIN, PEPPER]; // and every key and token below: none may appear in the trail

  const admin = (method, p, body, token = ADMIN) => worker.request({
    method,
    path: `${PREFIX}${p}`,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  /** Every entry, through the admin API, page by page. */
  const listAll = async (query = '', limit = 1000) => {
    const items = [];
    let cursor = '';
    let page;
    for (let i = 0; i < 1000; i++) {
      page = await admin('GET', `/audit?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200, page.text);
      items.push(...page.json().items);
      cursor = page.json().next_cursor;
      if (!cursor) break;
    }
    return { items, head: page.json().head, pruned: page.json().pruned_through };
  };
  // What each call below is expected to record: [action, outcome, status, request id].
  const expected = [];
  const record = (res, action, outcome) => {
    expected.push([action, outcome, res.status, res.json().request_id]);
    return res;
  };

  it('admin writes and refused calls are entries, in order, each linked to the one before', async (t) => {
    const adminJwt = h.track(await h.mintToken(key, { issuer: jwks.issuer, claims: { scope: 'edgeward:admin', sub: 'ops-1' } }));
    const userJwt = h.track(await h.mintToken(key, { issuer: jwks.issuer, claims: { scope: 'read', sub: 'user-1' } }));
    secrets.push(adminJwt, userJwt);

    // Refused: no credential, a wrong one, a JWT without the admin scope.
    record(await admin('POST', '/revocations', { target: { kind: 'kid', kid: 'x' }, expires_at: far() }, null), 'revocation_add', 'denied');
    record(await admin('DELETE', '/keys/key_0123456789abcdef01234567', undefined, `${ADMIN}x`), 'key_delete', 'denied');
    record(await admin('GET', '/revocations', undefined, userJwt), 'revocation_list', 'denied');
    for (const [, , status] of expected) assert.equal(status, 401);

    // Writes: each revocation call, each key call.
    const reason = 'laptop "stolen" \\ naïve ✓'; // escaped and as-is characters, hashed alike here and in Rust
    const added = record(await admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: 'audit-1' }, reason, expires_at: far() }), 'revocation_add', 'ok');
    assert.equal(added.status, 201, added.text);
    const batch = record(await admin('POST', '/revocations/batch', { items: [1, 2, 3].map((i) => ({ target: { kind: 'jti', iss: jwks.issuer, jti: `audit-b${i}` }, expires_at: far() })) }), 'revocation_add_batch', 'ok');
    assert.equal(batch.status, 200, batch.text);
    const removed = record(await admin('DELETE', `/revocations/${added.json().id}`), 'revocation_remove', 'ok');
    assert.equal(removed.status, 200, removed.text);
    const created = record(await admin('POST', '/keys', { owner: 'acme', scopes: ['svc:read', 'svc:write'] }), 'key_create', 'ok');
    assert.equal(created.status, 201, created.text);
    const id = created.json().id;
    const rotated = record(await admin('POST', `/keys/${id}/rotate`, { overlap_secs: 60 }), 'key_rotate', 'ok');
    assert.equal(rotated.status, 200, rotated.text);
    secrets.push(created.json().key, rotated.json().key);
    assert.equal(record(await admin('POST', `/keys/${id}/disable`, {}), 'key_disable', 'ok').status, 200);
    assert.equal(record(await admin('DELETE', `/keys/${id}`), 'key_delete', 'ok').status, 200);
    // Refused for their input or state, by an admin: recorded with their outcome.
    assert.equal(record(await admin('POST', '/revocations', 'not json'), 'revocation_add', 'refused').status, 400);
    assert.equal(record(await admin('POST', '/revocations', { target: { kind: 'kid', kid: 'k' } }), 'revocation_add', 'refused').status, 400);
    assert.equal(record(await admin('DELETE', `/keys/${id}`), 'key_delete', 'refused').status, 404);
    // An admin JWT is named as its issuer and subject.
    const byJwt = record(await admin('POST', '/revocations', { target: { kind: 'kid', kid: 'audit-kid' }, expires_at: far() }, adminJwt), 'revocation_add', 'ok');
    assert.equal(byJwt.status, 201, byJwt.text);
    // Reads by an admin are not recorded.
    assert.equal((await admin('GET', '/revocations')).status, 200);
    assert.equal((await admin('GET', `/keys/${id}`)).status, 404);

    const { items, head, pruned } = await listAll();
    assert.equal(pruned, null);
    assert.deepEqual(items.map((e) => [e.action, e.outcome, e.status, e.request_id]), expected, 'every recorded call, in order, with its request id');
    items.forEach((e, i) => {
      assert.equal(e.v, 1);
      assert.equal(e.seq, i + 1, 'no gap');
      assert.equal(e.prev, i === 0 ? GENESIS : items[i - 1].hash, `entry ${e.seq} links to the one before`);
      assert.equal(e.hash, hashOf(e), `entry ${e.seq}: its hash is SHA-256 of its canonical JSON`);
      if (i > 0) assert.ok(e.time >= items[i - 1].time, 'times never go back');
      assert.ok(Math.abs(e.time - h.nowSecs()) < 300, 'time is Unix seconds');
    });
    assert.deepEqual(head, { seq: items.length, hash: items.at(-1).hash });

    // Who: a fingerprint of the credential (none without one), and the principal it verified as.
    assert.deepEqual([items[0].actor, items[0].principal, items[0].reason], [null, null, 'no bearer credential']);
    assert.deepEqual([items[1].actor, items[1].principal], [fingerprint(`${ADMIN}x`), null]);
    assert.match(items[2].reason, /scope/);
    assert.equal(items[2].actor, fingerprint(userJwt));
    for (const e of items.slice(3, -1)) assert.deepEqual([e.actor, e.principal], [fingerprint(ADMIN), 'admin_token']);
    assert.deepEqual([items.at(-1).actor, items.at(-1).principal], [fingerprint(adminJwt), `jwt:${jwks.issuer} ops-1`]);

    // What: targets and details.
    const [add, bat, rem, kc, kr, kd, kx] = items.slice(3, 10);
    assert.equal(add.target, added.json().id);
    assert.deepEqual(add.detail, { kind: 'jti', iss: jwks.issuer, jti: 'audit-1', reason, expires_at: added.json().revocation.expires_at, created: true, version: added.json().version });
    assert.deepEqual([bat.target, bat.detail], [null, { created: 3, updated: 0, unchanged: 0, version: batch.json().version }]);
    assert.deepEqual([rem.target, rem.detail.jti], [added.json().id, 'audit-1']);
    assert.deepEqual([kc.target, kc.detail.owner, kc.detail.scopes, kc.detail.secret_fp], [id, 'acme', 'svc:read svc:write', created.json().secrets[0].fingerprint]);
    assert.deepEqual([kr.target, kr.detail.secret_fp], [id, rotated.json().secrets.at(-1).fingerprint]);
    assert.deepEqual([kd.target, kd.detail.revoked], [id, true]);
    assert.deepEqual([kx.target, kx.detail.revoked], [id, true]);
    const [badJson, badInput, gone] = items.slice(10, 13);
    assert.deepEqual([badJson.reason, badInput.reason, badInput.detail.field, gone.reason, gone.target], ['bad_request', 'bad_request', 'expires_at', 'not_found', id]);

    // What an entry costs in storage: its JSON text (the row adds seq and time).
    const sizes = items.map((e) => Buffer.byteLength(JSON.stringify(e)));
    t.diagnostic(`entry JSON: ${Math.min(...sizes)}-${Math.max(...sizes)} bytes, mean ${Math.round(sizes.reduce((a, b) => a + b) / sizes.length)} (${sizes.length} entries)`);
    // Never a credential: not the admin token, the pepper, the JWTs or the API keys.
    const text = JSON.stringify(items);
    for (const s of secrets) assert.ok(!text.includes(s), 'no secret in the trail');
    // The log line of each call names its entry.
    const line = await worker.waitForJsonLine((o) => o.event === 'admin_audit' && o.request_id === expected[4][3]);
    assert.equal(line?.audit_seq, 5, JSON.stringify(line));
  });

  it('GET /audit pages, filters by time, bounds its limit, and is refused (and recorded) without a credential', async () => {
    const all = await listAll();
    const paged = await listAll('', 2);
    assert.deepEqual(paged.items, all.items, 'pages of 2 give the same entries');
    const from = all.items[5];
    const since = await listAll(`&since=${from.time}`);
    assert.ok(since.items.length >= all.items.length - 5 && since.items[0].time >= from.time, 'from the first entry at or after since');
    assert.deepEqual(since.items.at(-1), all.items.at(-1));
    assert.deepEqual((await listAll(`&since=${h.nowSecs() + 3600}`)).items, []);
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'since=yesterday', 'cursor=-1']) {
      const r = await admin('GET', `/audit?${q}`);
      assert.equal(r.status, 400, `${q}: ${r.text}`);
    }
    const denied = await admin('GET', '/audit', undefined, null);
    assert.equal(denied.status, 401);
    const last = (await listAll()).items.at(-1);
    assert.deepEqual([last.action, last.outcome, last.request_id], ['audit_list', 'denied', denied.json().request_id]);
  });

  it('the CLI prints the trail and verifies its chain, before and after a restart', async () => {
    const listed = cli(worker, []);
    assert.equal(listed.status, 0, listed.stderr);
    const { items } = await listAll();
    assert.deepEqual(listed.lines, items, 'one JSON line per entry, every page');
    const verified = cli(worker, ['--verify', '--limit', '3']);
    assert.equal(verified.status, 0, JSON.stringify(verified.lines));
    assert.deepEqual(verified.lines, [{ verified: true, entries: items.length, first_seq: 1, head: { seq: items.length, hash: items.at(-1).hash } }]);
    const fromTime = cli(worker, ['--verify', '--since', String(items[4].time)]);
    assert.equal(fromTime.status, 0, JSON.stringify(fromTime.lines));
    assert.equal(cli(worker, ['--verify'], 'not-the-admin-token').status, 1, 'refused by the API');

    worker = await stack.restart({ label: 'audit-restart' }); // same persist dir and vars
    const again = cli(worker, ['--verify']);
    assert.equal(again.status, 0, JSON.stringify(again.lines));
    // The refusal above was recorded too; the chain goes on where it stopped.
    assert.equal(again.lines[0].entries, items.length + 1);
    const r = await admin('POST', '/revocations', { target: { kind: 'kid', kid: 'after-restart' }, expires_at: far() });
    assert.equal(r.status, 201, r.text);
    const after = await listAll();
    assert.deepEqual([after.items.at(-1).seq, after.items.at(-1).prev], [items.length + 2, after.items.at(-2).hash]);
    assert.equal(cli(worker, ['--verify']).status, 0);
  });

  it('an entry altered, altered and rehashed, or deleted through the test hook fails --verify (exit 1); pruning keeps it verifiable', async () => {
    const hook = async (body) => {
      const r = await admin('POST', '/audit/test-hook', body);
      assert.equal(r.status, 200, r.text);
      return r.json();
    };
    const { items } = await listAll();
    const target = items[4]; // the batch
    // Altered: its content no longer matches its hash.
    await hook({ seq: target.seq, set: { outcome: 'failed', status: 500 } });
    let v = cli(worker, ['--verify']);
    assert.equal(v.status, 1, JSON.stringify(v.lines));
    assert.deepEqual([v.lines[0].verified, v.lines[0].problem, v.lines[0].seq], [false, 'altered', target.seq]);
    // Put back byte for byte: intact again (the hook's own calls are entries, chained as any).
    await hook({ seq: target.seq, set: { outcome: target.outcome, status: target.status } });
    assert.equal(cli(worker, ['--verify']).status, 0);
    // Altered and rehashed: the next entry no longer links to it.
    await hook({ seq: target.seq, set: { actor: fingerprint('someone else') }, rehash: true });
    v = cli(worker, ['--verify']);
    assert.deepEqual([v.status, v.lines[0].problem, v.lines[0].seq], [1, 'unlinked', target.seq + 1]);
    await hook({ seq: target.seq, set: { actor: target.actor }, rehash: true });
    assert.equal(cli(worker, ['--verify']).status, 0);
    // Deleted: a gap.
    const gone = await hook({ seq: 2, delete: true });
    assert.equal(gone.deleted, true);
    v = cli(worker, ['--verify']);
    assert.deepEqual([v.status, v.lines[0].problem, v.lines[0].seq], [1, 'gap', 2]);
    // Retention: entries dated past admin.audit_retention_days (365) go at the next append, and
    // the trail then starts after the last one removed: entries 1 and 3 aged (each hook call is
    // such an append), so 1 to 3 go, the gap at 2 with them; the first entry kept links to the
    // mark, and the chain verifies again from there.
    const old = h.nowSecs() - 400 * 86_400;
    await hook({ seq: 1, set: { time: old } });
    await hook({ seq: 3, set: { time: old } });
    const kept = await listAll();
    assert.deepEqual(kept.pruned, { seq: 3, hash: items[2].hash });
    assert.equal(kept.items[0].seq, 4);
    v = cli(worker, ['--verify']);
    assert.equal(v.status, 0, JSON.stringify(v.lines));
    assert.deepEqual([v.lines[0].first_seq, v.lines[0].head.seq], [4, kept.head.seq]);
    // The hook's use is in the trail itself.
    const hooks = kept.items.filter((e) => e.action === 'audit_test_hook');
    assert.equal(hooks.length, 7);
    assert.ok(hooks.every((e) => e.outcome === 'ok' && e.principal === 'admin_token'));
  });
});

describe('audit trail: the test hook is refused where EDGEWARD_TEST_HOOKS is not set', { timeout: 240_000 }, () => {
  const stack = h.useStack({ label: 'audit-nohooks', vars: { EDGEWARD_ADMIN_TOKEN: ADMIN } });
  let worker;
  before(() => ({ worker } = stack));

  it('403 test_hooks_disabled, nothing altered, and the attempt recorded', async () => {
    const call = (method, p, body) => worker.request({ method, path: `${PREFIX}${p}`, headers: { authorization: `Bearer ${ADMIN}` }, body: body && JSON.stringify(body) });
    assert.equal((await call('POST', '/revocations', { target: { kind: 'kid', kid: 'k1' }, expires_at: far() })).status, 201);
    const before = (await call('GET', '/audit')).json().items;
    const r = await call('POST', '/audit/test-hook', { seq: 1, set: { outcome: 'failed' } });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json().code, 'test_hooks_disabled');
    const after = (await call('GET', '/audit')).json().items;
    assert.deepEqual(after[0], before[0], 'entry 1 unchanged');
    assert.deepEqual([after.at(-1).action, after.at(-1).outcome, after.at(-1).status, after.at(-1).reason], ['audit_test_hook', 'refused', 403, 'test_hooks_disabled']);
    assert.equal(cli(worker, ['--verify']).status, 0);
  });
});
