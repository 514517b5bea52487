// Edgeward end to end: a fresh isolate starts from the JWKS snapshot kept in KV, without
// fetching the JWKS again.

import fs from 'node:fs';
import path from 'node:path';
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

/** node:sqlite, without the one-line "SQLite is an experimental feature" warning Node 22 prints on load. */
async function loadSqlite() {
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, ...rest) => (/SQLite is an experimental feature/.test(String(warning)) ? undefined : emitWarning.call(process, warning, ...rest));
  try {
    return await import('node:sqlite');
  } finally {
    process.emitWarning = emitWarning;
  }
}

/**
 * The JWKS snapshot for `jwksUri` if it is committed to the local KV under `persistDir`, else
 * undefined. Reads miniflare's on-disk store as `wrangler dev --persist-to` leaves it: entries in
 * v3/kv/miniflare-KVNamespaceObject/*.sqlite (table _mf_entries: key → blob_id), values in
 * v3/kv/<namespace id>/blobs/<blob_id>. A committed entry is what a fresh isolate will read.
 */
async function committedJwksSnapshot(persistDir, jwksUri) {
  const { DatabaseSync } = await loadSqlite();
  const kvDir = path.join(persistDir, 'v3', 'kv');
  const entriesDir = path.join(kvDir, 'miniflare-KVNamespaceObject');
  if (!fs.existsSync(entriesDir)) return undefined;
  const blobDirs = fs.readdirSync(kvDir).filter((d) => !d.startsWith('miniflare-')).map((d) => path.join(kvDir, d, 'blobs'));
  for (const file of fs.readdirSync(entriesDir).filter((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite')) {
    const db = new DatabaseSync(path.join(entriesDir, file), { readOnly: true });
    let rows;
    try {
      rows = db.prepare("SELECT key, blob_id FROM _mf_entries WHERE key LIKE 'jwks:v1:%'").all();
    } catch {
      rows = []; // not (yet) a KV entries database
    } finally {
      db.close();
    }
    for (const { blob_id: blobId } of rows) {
      const blob = blobDirs.map((d) => path.join(d, blobId)).find((p) => fs.existsSync(p));
      if (!blob) continue;
      try {
        const snap = JSON.parse(fs.readFileSync(blob, 'utf8'));
        if (snap.jwks_uri === jwksUri) return snap;
      } catch {
        /* not a snapshot */
      }
    }
  }
  return undefined;
}

describe('fresh isolate with a KV snapshot of the JWKS', { timeout: 240_000 }, () => {
  // No worker at start: the test starts two, one after the other, on the stack's persist dir.
  const stack = h.useStack({ label: 'snapshot', keys: [{ alg: 'ES256', kid: 'persisted-ec' }], worker: false });
  let jwks;
  let origin;
  let key;
  before(() => ({ jwks, origin, keys: [key] } = stack));

  it('a new wrangler on the same --persist-to dir verifies without fetching the JWKS', async () => {
    const first = await stack.startWorker({ label: 'snapshot-1' });
    const t1 = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'first-isolate' } });
    const r1 = await first.request({ path: '/api/snapshot', headers: h.bearer(t1) });
    assert.equal(r1.status, 200, `first isolate: ${r1.status} ${r1.text.slice(0, 300)}`);
    assert.equal(jwks.count, 1, `first isolate should fetch the JWKS exactly once, saw ${jwks.count}`);
    // The snapshot is written to KV in the background: wait until it is committed there.
    await h.until(() => committedJwksSnapshot(first.persistDir, jwks.jwksUri), {
      timeoutMs: 10_000,
      what: `the JWKS snapshot for ${jwks.jwksUri} in the KV store under ${first.persistDir}`,
    });
    await first.stop();

    const second = await stack.startWorker({ label: 'snapshot-2' }); // same config and persist dir
    jwks.resetCount();
    const t2 = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'second-isolate' } });
    const id = h.testId();
    const r2 = await second.request({ path: '/api/snapshot', headers: { ...h.bearer(t2), 'x-test-id': id } });
    assert.equal(r2.status, 200, `second isolate: ${r2.status} ${r2.text.slice(0, 300)}`);
    assert.equal(origin.find(id)?.headers['x-edgeward-sub'], 'second-isolate');
    assert.equal(jwks.count, 0, `the fresh isolate fetched the JWKS ${jwks.count} time(s) despite the KV snapshot`);

    // The snapshot is only a cache: with the JWKS server down the fresh isolate still verifies.
    await jwks.stop();
    const t3 = await h.mintToken(key, { issuer: jwks.issuer });
    const r3 = await second.request({ path: '/api/snapshot', headers: h.bearer(t3) });
    assert.equal(r3.status, 200, `second isolate with the issuer down: ${r3.status} ${r3.text.slice(0, 300)}`);
    await jwks.start();

    for (const w of [first, second]) h.assertNoTokensIn(w.output, [t1, t2, t3]);
  });
});
