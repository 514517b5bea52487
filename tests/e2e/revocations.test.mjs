// Edgeward end to end, issue 5: the replicated revocation list with the real ledger Durable Object
// and real local KV under wrangler dev. Revoke a jti → after the snapshot interval the token is 401
// token_revoked while others pass; subject-before and kid revocations; 200 concurrent revocations →
// exactly 200 entries, published to KV in a few batched writes, not 200; unauthenticated or malformed admin calls are refused and write nothing; the
// list survives a restart of wrangler dev.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PREFIX = '/__edgeward/admin';

describe('revocations', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'revocations',
    keys: ['ES256', 'ES256'],
    config: { revocations: { refresh_secs: 1, max_age_secs: 60 }, token_cache: { capacity: 1000, max_ttl_secs: 300 } },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN },
  });
  let jwks; let worker; let key; let key2;
  before(() => ({ jwks, worker, keys: [key, key2] } = stack));

  const admin = (method, path, body, token = ADMIN) => worker.request({
    method,
    path: `${PREFIX}${path}`,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  // A revocation reaches the gate when the ledger has published it to KV (its alarm, 500 ms) and
  // the gate's background re-read (refresh_secs: 1, started by a request) has taken it in: ask
  // with the revoked tokens until every one of them is refused.
  const untilRefused = (tokens) => h.until(async () => Promise.all(tokens.map(async (t) => (await worker.request({ path: '/api/x', headers: h.bearer(t) })).status)), {
    ok: (statuses) => statuses.every((s) => s === 401),
    timeoutMs: 10_000,
    intervalMs: 200,
    what: `the gate to refuse ${tokens.length} revoked token(s) after the refresh (statuses in order)`,
  });
  const far = () => h.nowSecs() + 3600;

  it('unauthenticated and malformed admin calls are refused and write nothing', async () => {
    for (const token of [null, 'wrong-token-wrong-token', `${ADMIN}x`]) {
      const r = await admin('POST', '/revocations', { target: { kind: 'kid', kid: 'x' }, expires_at: far() }, token);
      assert.equal(r.status, 401, r.text);
    }
    for (const body of ['not json', '[1]', { target: { kind: 'jti', iss: '', jti: 'j' }, expires_at: far() }, { target: { kind: 'nope' }, expires_at: far() }, { target: { kind: 'kid', kid: 'k' }, expires_at: 1 }]) {
      const r = await admin('POST', '/revocations', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.text}`);
    }
    const list = (await admin('GET', '/revocations')).json();
    assert.equal(list.total, 0, 'nothing was written');
    const audit = await worker.waitForJsonLine((o) => o.event === 'admin_audit' && o.authorized === false);
    assert.ok(audit, 'admin calls are audit-logged');
    assert.ok(!worker.output.includes(ADMIN), 'the admin token is never logged');
  });

  it('revoke a jti: that token is refused after the refresh interval, others pass, even from the cache', async () => {
    const victim = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: 'stolen-1' } });
    const bystander = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: 'fine-1' } });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(victim) })).status, 200, 'cached before revocation');
    const add = await admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: 'stolen-1' }, reason: 'laptop stolen', expires_at: far() });
    assert.equal(add.status, 201, add.text);
    const again = await admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: 'stolen-1' }, reason: 'laptop stolen', expires_at: far() });
    assert.equal(again.status, 200, 'idempotent');
    assert.equal(again.json().id, add.json().id);
    await worker.request({ path: '/api/warm', headers: h.bearer(bystander) }); // may trigger the background refresh
    await untilRefused([victim]);
    h.assertInvalidToken(await worker.request({ path: '/api/x', headers: h.bearer(victim) }), 'token_revoked');
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(bystander) })).status, 200);
    const got = await admin('GET', `/revocations/${add.json().id}`);
    assert.equal(got.status, 200);
    assert.equal(got.json().revocation.reason, 'laptop stolen');
  });

  it('subject "revoked before" and kid revocations', async () => {
    const now = h.nowSecs();
    const old = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'erin', iat: now - 100 } });
    const fresh = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'erin', iat: now } });
    const byKey2 = await h.mintToken(key2, { issuer: jwks.issuer });
    assert.equal((await admin('POST', '/revocations', { target: { kind: 'subject_before', iss: jwks.issuer, sub: 'erin', before: now - 10 }, expires_at: far() })).status, 201);
    assert.equal((await admin('POST', '/revocations', { target: { kind: 'kid', kid: key2.kid }, reason: 'key compromised', expires_at: far() })).status, 201);
    await worker.request({ path: '/api/warm', headers: h.bearer(fresh) });
    await untilRefused([old, byKey2]);
    h.assertInvalidToken(await worker.request({ path: '/api/x', headers: h.bearer(old) }), 'token_revoked');
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(fresh) })).status, 200);
    h.assertInvalidToken(await worker.request({ path: '/api/x', headers: h.bearer(byKey2) }), 'token_revoked');
  });

  it('200 concurrent revocations → exactly 200 new entries, listed in pages, published in batches', async () => {
    const before = (await admin('GET', '/revocations')).json().total;
    const published = () => worker.jsonLines().filter((o) => o.event === 'revocations_published');
    const publishedBefore = published().length;
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: `bulk-${i}` }, expires_at: far() })));
    assert.deepEqual([...new Set(results.map((r) => r.status))], [201]);
    const ids = new Set();
    let cursor = '';
    for (let page = 0; page < 10; page++) {
      const r = (await admin('GET', `/revocations?limit=64${cursor ? `&cursor=${cursor}` : ''}`)).json();
      for (const it of r.items) ids.add(it.id);
      if (!r.next_cursor) break;
      cursor = r.next_cursor;
    }
    assert.equal(ids.size, before + 200, 'no entry lost or duplicated');
    // The last batch is published by the ledger's alarm (500 ms): wait for a publish that holds them all.
    await h.until(() => published().slice(publishedBefore), {
      ok: (b) => b.at(-1)?.entries === before + 200,
      timeoutMs: 5_000,
      what: `a revocations_published line with all ${before + 200} entries (the publishes since the burst)`,
    });
    const batches = published().slice(publishedBefore);
    const last = batches.at(-1);
    assert.ok(last && last.entries === before + 200, `the last publish holds every entry: ${JSON.stringify(last)}`);
    // One shard (at most 65,536 entries per shard), rewritten whole: a 20-byte header, 17 bytes
    // per entry, 8 more for the one subject watermark above.
    assert.equal(last.shards, 1, JSON.stringify(last));
    assert.equal(last.bytes, 20 + 17 * last.entries + 8, 'compact shard size');
    const limit = Math.ceil((Date.now() - started) / 500) + 1;
    assert.ok(batches.length >= 1 && batches.length <= limit, `${batches.length} KV writes for 200 changes (at most one per 500 ms: ≤ ${limit})`);
  });

  it('a batch is one all-or-nothing call; a jti needs no expiry (the token lifetime bounds it)', async () => {
    const before = (await admin('GET', '/revocations')).json().total;
    const items = Array.from({ length: 1000 }, (_, i) => ({ target: { kind: 'jti', iss: jwks.issuer, jti: `batch-${i}` }, reason: 'batch' }));
    const victim = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: 'batch-999' } });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(victim) })).status, 200);
    const r = await admin('POST', '/revocations/batch', { items });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual([r.json().created, r.json().updated, r.json().unchanged], [1000, 0, 0]);
    const again = await admin('POST', '/revocations/batch', { items: items.slice(0, 10) });
    // The same targets again: no new entry (a natural expiry computed a second later extends them).
    assert.deepEqual([again.json().created, again.json().updated + again.json().unchanged], [0, 10], 'idempotent');
    // One bad item (a kid needs an expiry) writes nothing, and names the item.
    const bad = await admin('POST', '/revocations/batch', { items: [{ target: { kind: 'jti', iss: jwks.issuer, jti: 'never-1' } }, { target: { kind: 'kid', kid: 'never-k' } }] });
    assert.equal(bad.status, 400, bad.text);
    assert.deepEqual([bad.json().index, bad.json().field], [1, 'expires_at']);
    for (const body of [{ items: [] }, { items: Array.from({ length: 1001 }, () => items[0]) }, { nope: 1 }]) {
      assert.equal((await admin('POST', '/revocations/batch', body)).status, 400);
    }
    assert.equal((await admin('GET', '/revocations')).json().total, before + 1000, 'nothing of the bad batches was written');
    // The natural expiry: now + max_lifetime_secs (86400) + twice the leeway (60); with the
    // token's exp, that exp + leeway.
    // (batch-500: not among the ten sent again above, whose expiry that second call extended.
    // Its id is the target's: the first 8 bytes of SHA-256 of "jti\n{iss}\n{jti}", in hex.)
    const id = crypto.createHash('sha256').update(`jti\n${jwks.issuer}\nbatch-500`).digest('hex').slice(0, 16);
    const mine = (await admin('GET', `/revocations/${id}`)).json();
    assert.equal(mine.revocation.expires_at - mine.revocation.created_at, 86400 + 120);
    const exp = h.nowSecs() + 300;
    const withExp = await admin('POST', '/revocations', { target: { kind: 'jti', iss: jwks.issuer, jti: 'with-exp' }, token_exp: exp });
    assert.equal(withExp.status, 201, withExp.text);
    assert.equal(withExp.json().revocation.expires_at, exp + 60);
    await untilRefused([victim]);
  });

  it('the CLI revokes and lists through the admin API', async () => {
    // Built by `cargo test` (scripts/test runs it before this suite).
    const bin = path.join(h.ROOT, 'target', 'debug', 'edgeward');
    assert.ok(fs.existsSync(bin), `${bin} missing: run cargo build first`);
    const tokenFile = path.join(h.makeTempDir('cli'), 'admin-token');
    fs.writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
    const adminArgs = ['--url', worker.url, '--admin-token-file', tokenFile];
    const out = execFileSync(bin, ['revoke', 'jti', '--iss', jwks.issuer, '--jti', 'cli-jti', '--reason', 'via cli', ...adminArgs], { encoding: 'utf8' });
    const added = JSON.parse(out);
    assert.equal(added.created, true);
    const lines = execFileSync(bin, ['revocations', 'list', '--limit', '50', ...adminArgs], { encoding: 'utf8' }).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.id === added.id && l.revocation.reason === 'via cli'), 'listed across pages');
    const total = (await admin('GET', '/revocations')).json().total;
    assert.equal(lines.length, total, 'all pages');
    fs.writeFileSync(tokenFile, 'not-the-admin-token');
    let status;
    try {
      execFileSync(bin, ['revoke', 'kid', '--kid', 'x', ...adminArgs], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      status = e.status;
    }
    assert.equal(status, 1, 'refused by the API → exit 1');
    const removed = JSON.parse(execFileSync(bin, ['revocations', 'remove', added.id, '--url', worker.url, '--admin-token-file', (fs.writeFileSync(tokenFile, ADMIN), tokenFile)], { encoding: 'utf8' }));
    assert.equal(removed.removed, true);
    // Without --expires-in a jti revocation takes its natural expiry (here from --token-exp).
    const exp = h.nowSecs() + 600;
    const natural = JSON.parse(execFileSync(bin, ['revoke', 'jti', '--iss', jwks.issuer, '--jti', 'cli-natural', '--token-exp', String(exp), ...adminArgs], { encoding: 'utf8' }));
    assert.equal(natural.revocation.expires_at, exp + 60);
    // Import: JSON lines, every line checked before anything is sent.
    const jsonl = Array.from({ length: 1205 }, (_, i) => JSON.stringify({ target: { kind: 'jti', iss: jwks.issuer, jti: `import-${i}` }, reason: 'import' }));
    const file = path.join(h.makeTempDir('cli-import'), 'revocations.jsonl');
    fs.writeFileSync(file, `${jsonl.join('\n')}\n`);
    const totalBefore = (await admin('GET', '/revocations')).json().total;
    const imported = JSON.parse(execFileSync(bin, ['revocations', 'import', file, ...adminArgs], { encoding: 'utf8' }));
    assert.deepEqual([imported.items, imported.created], [1205, 1205], 'two batch calls');
    assert.equal((await admin('GET', '/revocations')).json().total, totalBefore + 1205);
    fs.writeFileSync(file, `${jsonl[0]}\nnot json\n`);
    let bad;
    try {
      execFileSync(bin, ['revocations', 'import', file, ...adminArgs], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      bad = e;
    }
    assert.equal(bad?.status, 2, 'a line that is not JSON: nothing sent');
    assert.match(bad.stdout, /line 2/);
    assert.equal((await admin('GET', '/revocations')).json().total, totalBefore + 1205);
  });

  it('the list survives a restart of wrangler dev', async () => {
    const total = (await admin('GET', '/revocations')).json().total;
    worker = await stack.restart({ label: 'revocations-restart' }); // same config, persist dir and vars
    assert.equal((await admin('GET', '/revocations')).json().total, total);
    const victim = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: 'stolen-1' } });
    h.assertInvalidToken(await worker.request({ path: '/api/x', headers: h.bearer(victim) }), 'token_revoked');
  });
});

describe('revocations: strict mode on sensitive routes', { timeout: 240_000 }, () => {
  const stack = h.useStack({
    label: 'revocations-strict',
    keys: ['EdDSA'],
    config: { routes: [{ path: '/sensitive/*', sensitive: true }], revocations: { refresh_secs: 60, max_age_secs: 300 } },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN },
  });
  let jwks; let worker; let key;
  before(() => ({ jwks, worker, keys: [key] } = stack));

  it('a sensitive route sees a revocation at once; others after the snapshot interval', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: 'strict-1' } });
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(token) })).status, 200);
    assert.equal((await worker.request({ path: '/sensitive/x', headers: h.bearer(token) })).status, 200);
    const add = await worker.request({
      method: 'POST',
      path: `${PREFIX}/revocations`,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: { kind: 'jti', iss: jwks.issuer, jti: 'strict-1' }, expires_at: h.nowSecs() + 600 }),
    });
    assert.equal(add.status, 201, add.text);
    h.assertInvalidToken(await worker.request({ path: '/sensitive/x', headers: h.bearer(token) }), 'token_revoked');
    assert.equal((await worker.request({ path: '/api/x', headers: h.bearer(token) })).status, 200, 'not yet propagated (refresh_secs 60)');
  });
});
