// Issue 21: the revocation ledger's memory at 1,000,000 revocations (target ≤ 64 MiB), the way a
// user can check it: the control Worker under `wrangler dev` with `--inspector-port`, V8's JS
// heap after GC (`HeapProfiler.collectGarbage`, then `Runtime.getHeapUsage`) plus the wasm linear
// memory (every `WebAssembly.Memory` in the isolate, `Runtime.queryObjects` on
// `WebAssembly.Memory.prototype`, `buffer.byteLength` read with `Runtime.callFunctionOn`), as
// bench/isolate-memory.mjs measures the gate (the helpers are bench/local.mjs's).
//
//   node bench/ledger-memory.mjs [--revocations 1000000] [--conc 4] [--control-dir build-control]
//       [--out FILE.json] [--target-mib 64]
//
// Run from the repository root after `OUT_DIR=build-control bash scripts/build-worker --features
// control` (`bench/ledger-memory` does both). The control Worker (control/wrangler.toml) is the
// single-Worker deployment: the gate, the admin API under `/__edgeward/admin` and the
// `RevocationLedger` Durable Object in one Worker, so locally the ledger runs in the same workerd
// isolate as the Worker's requests (the bench checks it: the ledger's console lines reach the
// inspector session it measures through). Its wrangler config is derived from
// control/wrangler.toml (scripts/control-config.mjs: no [build], `main` absolute), with
// EDGEWARD_CONFIG (one issuer, its JWKS on a loopback server; revocations on, the default) and
// EDGEWARD_ADMIN_TOKEN (random per run) in a `.dev.vars` beside it; local state (the ledger's
// SQLite storage, KV) in a temporary directory.
//
//   (1) after the first admin call (`GET /__edgeward/admin/revocations?limit=1`: the ledger
//       object is created, its tables too; empty list),
//   (2) after N revocations (1 in 10 a subject watermark, 1 in 10 a kid, the rest `jti`s, as
//       bench/isolate-memory.mjs makeRecords; each expiring in a day) added through the admin
//       API's batch call (`POST /__edgeward/admin/revocations/batch`, 1,000 per call, --conc
//       calls in flight) and published: wrangler's output shows the ledger's
//       `{"event":"revocations_published", "entries": N, ...}` line (the ledger publishes 500 ms
//       after a change, again and again while the fill goes on); the list call answers total N,
//   (3) after one more revocation (`POST /__edgeward/admin/revocations`, one `jti`) published:
//       a `revocations_published` line with entries N + 1 and shards_written 1.
// Then wrangler dev is stopped and the local KV read back with `wrangler kv key get --local`
// (the manifest `revocations:v3`: its shard count and entries) and `wrangler kv key list --local`
// (every shard key the manifest names is there).
// wasm memory never shrinks: each figure is linear memory's high-water mark so far (the fill's
// publishes included). The GC is let run by one request with no credential to the gate (401).
// Waits poll wrangler's output (no fixed sleeps); a line's time is when wrangler printed it (the
// Worker's console lines reach wrangler over the inspector). Everything listens on 127.0.0.1.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, options, cleanupOnExit, httpRequest, inspectorTargets, isolateMemory, runtimeSession, sleep, startWrangler, tempDir, wranglerRun } from './local.mjs';
import { generateKeyPair, exportJWK } from 'jose';
import { writeControlConfig } from '../scripts/control-config.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ISSUER = 'https://issuer.example.com/oauth2/default';
const AUDIENCE = 'https://api.example.com';
const KID = 'k1';
const ADMIN = '/__edgeward/admin';
const BATCH = 1000; // the ledger's MAX_BATCH
const MiB = 1024 * 1024;

const { args, opt } = options('ledger-memory.mjs', ['revocations', 'conc', 'control-dir', 'out', 'command', 'target-mib']);
const N = Number(opt('revocations', 1000000));
const CONC = Number(opt('conc', 4));
const TARGET_MIB = Number(opt('target-mib', 64)); // issue 21: ledger ≤ 64 MiB at 1,000,000
const CONTROL_DIR = opt('control-dir', 'build-control');
const OUT = opt('out', null);
const COMMAND = opt('command', `node bench/ledger-memory.mjs${args.length ? ` ${args.join(' ')}` : ''}`);
if (!(Number.isInteger(N) && N > 0) || !(Number.isInteger(CONC) && CONC > 0)) throw new Error('--revocations and --conc take positive integers');

const log = (...a) => console.error('[ledger-memory]', ...a);
cleanupOnExit({ prefix: 'edgeward-ledgermem' });

const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
/** One request; resolves { status, text, json }. */
async function request(port, { method = 'GET', path, headers = {}, body, timeoutMs = 300000, keepAlive = true }) {
  const r = await httpRequest(port, { method, path, headers, body, timeoutMs, agent: keepAlive ? agent : false });
  let json = null;
  try {
    json = JSON.parse(r.text);
  } catch {
    /* not JSON */
  }
  return { ...r, json };
}

// ------------------------------------------------------------------------------------------
// wrangler's output, line by line: the ledger's publish lines and anything that looks wrong
// ------------------------------------------------------------------------------------------
const published = []; // { at (performance.now()), ...the line's fields }
const suspicious = []; // lines mentioning an error, a failure, a warning or an exception
const partial = { stdout: '', stderr: '' };
function onOutput(chunk, stream) {
  const lines = (partial[stream] + chunk).split(/\r?\n/);
  partial[stream] = lines.pop();
  const at = performance.now();
  for (const line of lines) {
    // The Worker's JSON lines (serde_json writes their keys sorted: `{"bytes":…,"entries":…,"event":…}`).
    const start = line.indexOf('{');
    if (start >= 0 && line.includes('"event":')) {
      try {
        const o = JSON.parse(line.slice(start));
        if (o.event === 'revocations_published') {
          published.push({ at, ...o });
          continue;
        }
        if (o.event === 'admin_audit' && o.authorized && o.status < 300) continue;
      } catch {
        /* not one JSON object */
      }
    }
    if (/error|fail|warn|exception|exceeded|unavailable|unreachable/i.test(line)) suspicious.push(line.slice(0, 500));
  }
}

/** Waits (polling what wrangler printed, every 20 ms) for a publish line after index `from` matching `pred`. */
async function waitPublished(g, from, pred, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = published.slice(from).find(pred);
    if (hit) return hit;
    if (g.exited()) throw new Error(`wrangler dev exited while waiting for ${what}:\n${g.output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`no ${what} in ${timeoutMs / 1000} s; last publish lines: ${JSON.stringify(published.slice(-3))}\n${g.output().slice(-3000)}`);
    await sleep(20);
  }
}

// ------------------------------------------------------------------------------------------
// The revocations
// ------------------------------------------------------------------------------------------
/** Revocation i (as bench/isolate-memory.mjs makeRecords: 1 in 10 a subject watermark, 1 in 10 a kid, the rest jtis). */
function item(i, now) {
  let target;
  if (i % 10 === 0) target = { kind: 'subject_before', iss: ISSUER, sub: `user-${i}`, before: now - 60 };
  else if (i % 10 === 1) target = { kind: 'kid', kid: `key-${i}` };
  else target = { kind: 'jti', iss: ISSUER, jti: i.toString(16).padStart(32, '0') };
  return { target, reason: 'bench', expires_at: now + 86400 };
}

/** Adds revocations 0..N-1 through the batch call, CONC calls in flight. */
async function fill(g, auth, now) {
  const calls = Math.ceil(N / BATCH);
  let next = 0;
  let done = 0;
  const totals = { created: 0, updated: 0, unchanged: 0, version: 0 };
  const callMs = [];
  const t0 = performance.now();
  let lastLog = t0;
  const worker = async () => {
    while (next < calls) {
      const k = next++;
      const items = [];
      for (let i = k * BATCH; i < Math.min(N, (k + 1) * BATCH); i++) items.push(item(i, now));
      const s = performance.now();
      const r = await request(g.port, { method: 'POST', path: `${ADMIN}/revocations/batch`, headers: auth, body: { items } });
      callMs.push(performance.now() - s);
      if (r.status !== 200 || !r.json || r.json.created + r.json.updated + r.json.unchanged !== items.length) {
        throw new Error(`batch call ${k} got ${r.status}: ${r.text.slice(0, 500)}`);
      }
      totals.created += r.json.created;
      totals.updated += r.json.updated;
      totals.unchanged += r.json.unchanged;
      totals.version = Math.max(totals.version, r.json.version);
      done += items.length;
      if (performance.now() - lastLog > 15000) {
        lastLog = performance.now();
        const secs = (lastLog - t0) / 1000;
        const lp = published.at(-1);
        log(`fill: ${done.toLocaleString('en-US')}/${N.toLocaleString('en-US')} in ${secs.toFixed(0)} s (${(done / secs).toFixed(0)}/s); ${published.length} publishes so far${lp ? `, the last of ${lp.entries} entries (${lp.shards_written}/${lp.shards} shards, ${lp.bytes} B)` : ''}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONC }, worker));
  const end = performance.now();
  callMs.sort((a, b) => a - b);
  return {
    ...totals, calls, secs: (end - t0) / 1000, start: t0, end, rate: N / ((end - t0) / 1000),
    call_ms: { p50: callMs[Math.floor(callMs.length * 0.5)], p90: callMs[Math.floor(callMs.length * 0.9)], max: callMs.at(-1) },
  };
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------
function listen(srv) {
  return new Promise((resolve) => srv.listen(0, HOST, () => resolve(`http://${HOST}:${srv.address().port}`)));
}

async function main() {
  const started = new Date();
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const mainDir = path.join(ROOT, CONTROL_DIR);
  if (!fs.existsSync(path.join(mainDir, 'index.js'))) throw new Error(`${mainDir}/index.js is missing: OUT_DIR=${CONTROL_DIR} bash scripts/build-worker --features control first`);
  const wasmFile = path.join(mainDir, 'index_bg.wasm');

  // The issuer's JWKS on a loopback server (no token is verified here; the config needs an issuer).
  const { publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwksBody = Buffer.from(JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' }] }));
  const jwksSrv = http.createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-length': jwksBody.length }).end(jwksBody));
  const jwksUrl = `${await listen(jwksSrv)}/jwks.json`;
  const okBody = Buffer.from('{"ok":true}\n');
  const originSrv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': okBody.length }).end(okBody));
  });
  const originUrl = await listen(originSrv);
  // Defaults otherwise: revocations on (EDGEWARD_KV), admin API under /__edgeward/admin.
  const config = { issuers: [{ issuer: ISSUER, audiences: [AUDIENCE], jwks_uri: jwksUrl, algorithms: ['RS256'] }], origin: originUrl };
  const adminToken = crypto.randomBytes(24).toString('hex');
  const auth = { authorization: `Bearer ${adminToken}` };

  const dir = tempDir('run');
  const cfgFile = writeControlConfig(path.join(dir, 'wrangler.toml'), { EDGEWARD_CONFIG: JSON.stringify(config), EDGEWARD_ADMIN_TOKEN: adminToken }, { mainDir });
  const persist = path.join(dir, 'state');

  log(`starting wrangler dev (${CONTROL_DIR}/, control/wrangler.toml)`);
  const g = await startWrangler('ledgermem', cfgFile, {}, { logLevel: 'log', persist, waitReadyLine: true, onOutput });

  // The first admin call: the ledger object and its tables are created.
  const list = async () => {
    const r = await request(g.port, { path: `${ADMIN}/revocations?limit=1`, headers: auth, keepAlive: false });
    if (r.status !== 200 || typeof r.json?.total !== 'number') throw new Error(`GET ${ADMIN}/revocations?limit=1: ${r.status} ${r.text.slice(0, 300)}\n${g.output().slice(-3000)}`);
    return r.json;
  };
  const first = await list();
  if (first.total !== 0) throw new Error(`a fresh ledger lists ${first.total} revocations`);

  // The inspector: which targets, and is the ledger in the one measured? Its console lines
  // reach a session on its isolate as Runtime.consoleAPICalled events.
  const targets = await inspectorTargets(g.inspector);
  log(`inspector targets: ${targets.map((t) => `${t.title ?? '?'} (${t.id ?? t.url ?? ''})`).join(', ')}`);
  const consoleSeen = { published: 0, audit: 0 };
  const session = await runtimeSession(g.inspector, {
    target: targets[0],
    onEvent(method, params) {
      if (method !== 'Runtime.consoleAPICalled') return;
      const text = (params.args ?? []).map((a) => a.value ?? '').join(' ');
      if (text.includes('"revocations_published"')) consoleSeen.published++;
      if (text.includes('"admin_audit"')) consoleSeen.audit++;
    },
  });
  const rows = [];
  const snap = async (label) => {
    const m = await isolateMemory(session, async () => {
      const r = await request(g.port, { path: '/api/resource', keepAlive: false });
      if (r.status !== 401) throw new Error(`the GC trigger request got ${r.status}`);
    });
    const sum = m.js_used + m.wasm_bytes;
    rows.push({ label, ...m, sum });
    log(`${label}: JS used ${(m.js_used / MiB).toFixed(2)} MiB (total ${(m.js_total / MiB).toFixed(2)}), wasm ${(m.wasm_bytes / MiB).toFixed(2)} MiB [${m.wasm_memories.join(', ')}], sum ${(sum / MiB).toFixed(2)} MiB`);
  };
  await snap('after the first admin call (empty ledger)');

  // (2) the fill.
  const now = Math.floor(Date.now() / 1000);
  log(`adding ${N.toLocaleString('en-US')} revocations, ${BATCH} per batch call, ${CONC} calls in flight`);
  const f = await fill(g, auth, now);
  const fillPublishes = published.length;
  log(`fill: ${N.toLocaleString('en-US')} in ${f.secs.toFixed(1)} s (${f.rate.toFixed(0)}/s; created ${f.created}, updated ${f.updated}, unchanged ${f.unchanged}; ledger version ${f.version}); ${fillPublishes} publishes during the fill`);
  const pub = await waitPublished(g, 0, (p) => p.entries === N, `revocations_published line with entries ${N}`, 30 * 60000);
  const publishSecs = (pub.at - f.end) / 1000;
  log(`published ${pub.entries} entries in ${pub.shards} shards (${pub.shards_written} written, ${pub.bytes} B) ${publishSecs.toFixed(1)} s after the last batch call`);
  const afterFill = await list();
  if (afterFill.total !== N) throw new Error(`after the fill the ledger lists total ${afterFill.total}, not ${N}`);
  await snap(`+ ${N.toLocaleString('en-US')} revocations, published (${pub.shards} shard${pub.shards === 1 ? "" : "s"})`);

  // (3) one more revocation: one shard republished.
  const fromIdx = published.length;
  const t1 = performance.now();
  const one = await request(g.port, { method: 'POST', path: `${ADMIN}/revocations`, headers: auth, body: { target: { kind: 'jti', iss: ISSUER, jti: 'ledger-memory-one-more' }, reason: 'bench', expires_at: now + 86400 }, keepAlive: false });
  const oneMs = performance.now() - t1;
  if (one.status !== 201) throw new Error(`POST ${ADMIN}/revocations: ${one.status} ${one.text.slice(0, 300)}`);
  const pub1 = await waitPublished(g, fromIdx, (p) => p.shards_written === 1 && p.entries === N + 1, 'revocations_published line with shards_written 1', 10 * 60000);
  const onePublishSecs = (pub1.at - t1 - oneMs) / 1000;
  log(`one more: published (${pub1.shards_written} of ${pub1.shards} shards, ${pub1.bytes} B) ${onePublishSecs.toFixed(2)} s after the call returned`);
  const afterOne = await list();
  if (afterOne.total !== N + 1) throw new Error(`after one more the ledger lists total ${afterOne.total}, not ${N + 1}`);
  await snap('+ 1 revocation, published (one shard rewritten)');
  session.close();

  // The isolate measured holds the ledger: its publish lines came over this session.
  const ledgerInIsolate = consoleSeen.published > 0;
  log(`console lines seen on the inspector session: ${consoleSeen.published} revocations_published, ${consoleSeen.audit} admin_audit`);

  // The local KV, read back after wrangler dev stops (the ledger's log line already said it).
  await g.stop();
  const kvArgs = ['--binding', 'EDGEWARD_KV', '--local', '--persist-to', persist, '--config', cfgFile];
  const raw = wranglerRun(['kv', 'key', 'get', 'revocations:v3', ...kvArgs], { encoding: 'buffer' });
  if (raw.length < 14 || raw.subarray(0, 4).toString('latin1') !== 'EWRM' || raw[4] !== 3) throw new Error(`revocations:v3 is not a format-3 manifest (${raw.length} B: ${raw.subarray(0, 32).toString('hex')})`);
  const bits = raw[13];
  const shards = Array.from({ length: 2 ** bits }, (_, i) => ({ version: Number(raw.readBigUInt64BE(14 + 12 * i)), count: raw.readUInt32BE(22 + 12 * i) }));
  const manifest = { bytes: raw.length, version: Number(raw.readBigUInt64BE(5)), bits, shards: shards.length, entries: shards.reduce((s, x) => s + x.count, 0) };
  const listed = JSON.parse(wranglerRun(['kv', 'key', 'list', '--prefix', 'revocations:v3:', ...kvArgs])).map((k) => k.name);
  const missing = shards.map((s, i) => `revocations:v3:${bits}:${i}:${s.version}`).filter((k, i) => shards[i].count > 0 && !listed.includes(k));
  log(`KV: manifest revocations:v3 version ${manifest.version}, ${manifest.shards} shards, ${manifest.entries} entries; ${listed.length} shard keys stored${missing.length ? `; MISSING ${missing.join(', ')}` : ', every one the manifest names among them'}`);
  if (manifest.entries !== N + 1 || missing.length) throw new Error('the local KV does not hold the published list');

  const result = {
    date: started.toISOString(), head, src_dirty: dirty, load_at_start: load, load_at_end: fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    command: COMMAND, control_dir: CONTROL_DIR, wasm_file_bytes: fs.statSync(wasmFile).size, revocations: N, conc: CONC, target_mib: TARGET_MIB,
    fill: f, publishes_during_fill: fillPublishes, publish: pub, publish_secs_after_last_batch: publishSecs,
    publishes_until_full: published.indexOf(pub) + 1, bytes_published_until_full: published.slice(0, published.indexOf(pub) + 1).reduce((s, p) => s + p.bytes, 0),
    one_more: { call_ms: oneMs, publish: pub1, publish_secs_after_call: onePublishSecs },
    list_total: { after_fill: afterFill.total, after_one_more: afterOne.total },
    kv_manifest: manifest, kv_shard_keys: listed.length,
    inspector_targets: targets.map((t) => ({ id: t.id, title: t.title, type: t.type, url: t.url })), ledger_in_measured_isolate: ledgerInIsolate, console_lines_seen: consoleSeen,
    // Every publish line: when wrangler printed it (ms after the fill started), entries, shards written, bytes.
    publishes: published.map((p) => ({ ms: Math.round(p.at - f.start), entries: p.entries, shards: p.shards, shards_written: p.shards_written, bytes: p.bytes })),
    suspicious_lines: suspicious, rows,
  };
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(result, null, 2));
  process.stdout.write(markdown(result));
  agent.destroy();
  jwksSrv.close();
  originSrv.close();
}

const mib = (b) => (b / MiB).toFixed(2);
const n0 = (x) => Math.round(x).toLocaleString('en-US');
function markdown(r) {
  const L = [];
  L.push(`Command: \`${r.command}\`, ${r.date.slice(0, 10)}, HEAD ${r.head}${r.src_dirty ? ' (src/ modified)' : ''}, control Worker \`${r.control_dir}/\` (wasm ${n0(r.wasm_file_bytes)} B), load average ${r.load_at_start} at start, ${r.load_at_end} at the end.`);
  L.push('');
  L.push('| state | JS heap used | JS heap total | wasm memory | JS used + wasm |');
  L.push('|---|---:|---:|---:|---:|');
  for (const x of r.rows) L.push(`| ${x.label} | ${mib(x.js_used)} MiB | ${mib(x.js_total)} MiB | ${mib(x.wasm_bytes)} MiB | ${mib(x.sum)} MiB |`);
  L.push('');
  const peak = Math.max(...r.rows.map((x) => x.sum));
  L.push('wasm memory only grows: each row is the high-water mark of linear memory so far, not the live data. The ledger keeps its entries in SQLite storage (outside the isolate\'s heap).');
  L.push(`Largest: ${mib(peak)} MiB. Target ≤ ${r.target_mib} MiB at ${n0(r.revocations)} revocations: **${peak <= r.target_mib * MiB ? 'met' : 'missed'}**.`);
  L.push('');
  const f = r.fill;
  L.push(`Fill: ${n0(r.revocations)} revocations in ${n0(f.calls)} batch calls (≤ 1,000 each, ${r.conc} in flight) in ${f.secs.toFixed(1)} s: **${n0(f.rate)} revocations/s** (call p50 ${n0(f.call_ms.p50)} ms, p90 ${n0(f.call_ms.p90)} ms, max ${n0(f.call_ms.max)} ms; created ${n0(f.created)}). The ledger published ${r.publishes_during_fill} times while the fill ran and ${r.publishes_until_full} times in all until the full list (${mib(r.bytes_published_until_full)} MiB of shards written).`);
  const late = r.publishes.slice(0, r.publishes_until_full).slice(-21);
  if (late.length >= 3) {
    const gaps = late.slice(1).map((p, i) => p.ms - late[i].ms).sort((a, b) => a - b);
    const avg = (k) => late.reduce((s, p) => s + p[k], 0) / late.length;
    L.push(`Late in the fill (the last ${late.length} publishes until the full list): one every ${(gaps[gaps.length >> 1] / 1000).toFixed(1)} s (median), each writing ${mib(avg('bytes'))} MiB on average (${avg('shards_written').toFixed(1)} of ${late.at(-1).shards} shards).`);
  }
  L.push(`Publish: the \`revocations_published\` line with entries ${n0(r.publish.entries)} (${r.publish.shards} shards, ${r.publish.shards_written} written, ${n0(r.publish.bytes)} B) came **${r.publish_secs_after_last_batch.toFixed(1)} s** after the last batch call returned. One more revocation: the call took ${n0(r.one_more.call_ms)} ms; its publish (${r.one_more.publish.shards_written} of ${r.one_more.publish.shards} shards, ${n0(r.one_more.publish.bytes)} B) came ${r.one_more.publish_secs_after_call.toFixed(2)} s after it returned.`);
  L.push(`Checks: \`GET ${ADMIN}/revocations?limit=1\` total ${n0(r.list_total.after_fill)} after the fill, ${n0(r.list_total.after_one_more)} after one more; local KV (\`wrangler kv key get --local revocations:v3\` after wrangler dev stopped): manifest version ${r.kv_manifest.version}, ${r.kv_manifest.shards} shards, ${n0(r.kv_manifest.entries)} entries, each named shard key present (${r.kv_shard_keys} shard keys stored, replaced ones included until their deletion 10 min later).`);
  L.push(`Inspector: ${r.inspector_targets.length} target(s) (${r.inspector_targets.map((t) => t.title ?? t.id).join(', ')}); ${r.ledger_in_measured_isolate ? `the ledger runs in the isolate measured (its ${r.console_lines_seen.published} publish lines and the Worker's ${r.console_lines_seen.audit} admin_audit lines came over the same session; ${r.rows.at(-1).wasm_memories.length} WebAssembly.Memory)` : 'the ledger\'s publish lines did NOT come over the session measured'}.`);
  if (r.suspicious_lines.length) {
    L.push('');
    L.push(`wrangler output lines mentioning an error, failure or warning (${r.suspicious_lines.length}; first 10):`);
    L.push('');
    for (const l of r.suspicious_lines.slice(0, 10)) L.push(`    ${l}`);
  }
  return `${L.join('\n')}\n`;
}

main().then(() => process.exit(0), (e) => {
  console.error(e.stack ?? e);
  process.exit(1);
});
