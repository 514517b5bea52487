// Issues 15 and 21: the gate isolate's memory the way a user can check it, under `wrangler dev`
// with `--inspector-port` (Chrome DevTools protocol over wrangler's inspector WebSocket):
// V8's JS heap (`HeapProfiler.collectGarbage`, then `Runtime.getHeapUsage`) plus the wasm linear
// memory (every `WebAssembly.Memory` in the isolate, found with `Runtime.queryObjects` on
// `WebAssembly.Memory.prototype`, its `buffer.byteLength` read with `Runtime.callFunctionOn`).
//
//   node bench/isolate-memory.mjs [--tokens 10000] [--keys 10000] [--revocations 100000]
//       [--conc 16] [--gate-dir build] [--out FILE.json] [--target-mib 32 (48 from 1,000,000 revocations)]
//
// Run from the repository root after `bash scripts/build-worker` (the production gate in build/;
// `bench/isolate-memory` does both). The gate's state is filled the way requests fill it:
//   (1) after the first requests (a token and the probe token; the snapshot read finds nothing),
//   (2) after the revocation list (100,000 active entries) is published the way the ledger
//       publishes it — the sharded snapshot of src/core/revocation.rs (format 3: a manifest,
//       `revocations:v3`, and one value per shard of at most 65,536 entries) written into
//       wrangler's local KV with `wrangler kv bulk put --local` — and the gate has read it (its
//       background re-read, every `revocations.refresh_secs` = 10 s by default; confirmed by a
//       probe token whose `jti` is in the list turning from 200 to 401); then after one more
//       revocation republished in its shard only (a second probe turning 401): the refresh
//       reads that one shard. The gate keeps re-reading the manifest every 10 s while the rest
//       loads, as a deployed gate does,
//   (3) after 10,000 distinct RS256 tokens with a typical IdP's 13 claims (iss, sub, aud, exp,
//       iat, nbf, jti, azp, scope, email, name, given_name, family_name; the payload of
//       examples/bench_token_cache.rs) each verified once (the JWKS from a loopback server),
//   (4) after 10,000 distinct API keys (records written beforehand with `wrangler kv bulk put
//       --local`, looked up once each on an `auth: "api_key"` route; `api_keys.cache_ttl_secs`
//       3600 so none expires while the rest load),
//   (5) after every token and key once more.
// wasm memory never shrinks: each figure is linear memory's high-water mark so far.
// Every request must get the expected status (200 from the loopback origin); requests go with
// --conc in flight. Keys, tokens and the pepper are generated per run; everything listens on
// 127.0.0.1. The helpers (wrangler start, CDP client, the measurement) are bench/local.mjs's.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, options, cleanupOnExit, httpRequest, isolateMemory, runtimeSession, sleep, startWrangler as startWranglerIn, tempDir, wranglerRun } from './local.mjs';
import { generateKeyPair, exportJWK } from 'jose';
import { deriveWranglerConfig, tomlString } from '../scripts/wrangler-derive.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ISSUER = 'https://issuer.example.com/oauth2/default';
const AUDIENCE = 'https://api.example.com';
const KID = 'k1';
const MiB = 1024 * 1024;

const { args, opt } = options('isolate-memory.mjs', ['tokens', 'keys', 'revocations', 'conc', 'gate-dir', 'out', 'command', 'target-mib']);
const N_TOKENS = Number(opt('tokens', 10000));
const N_KEYS = Number(opt('keys', 10000));
const N_REVOCATIONS = Number(opt('revocations', 100000));
const CONC = Number(opt('conc', 16));
// Issue 21's targets: ≤ 32 MiB with 100,000 revocations, ≤ 48 MiB at 1,000,000.
const TARGET_MIB = Number(opt('target-mib', N_REVOCATIONS >= 1000000 ? 48 : 32));
const GATE_DIR = opt('gate-dir', 'build');
const OUT = opt('out', null);
const COMMAND = opt('command', `node bench/isolate-memory.mjs${args.length ? ` ${args.join(' ')}` : ''}`);

const log = (...a) => console.error('[isolate-memory]', ...a);

// ------------------------------------------------------------------------------------------
// Processes and temporary directories (bench/local.mjs: removed on the way out)
// ------------------------------------------------------------------------------------------
cleanupOnExit({ prefix: 'edgeward-isomem' });

const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
/** One request (bench/local.mjs), on the kept-alive agent unless `keepAlive` is false. */
const request = (port, { path = '/api/resource', headers = {}, timeoutMs = 60000, keepAlive = true } = {}) =>
  httpRequest(port, { path, headers, timeoutMs, agent: keepAlive ? agent : false });

/** `wrangler dev` (bench/local.mjs) in its own process group; resolves once it prints "Ready on". */
function startWrangler(configFile, vars, persistTo) {
  return startWranglerIn('isomem', configFile, vars, { logLevel: 'info', persist: persistTo, waitReadyLine: true });
}

// ------------------------------------------------------------------------------------------
// The measurement, over wrangler's inspector (bench/local.mjs)
// ------------------------------------------------------------------------------------------
/**
 * JS heap after a full GC, and the byte length of every WebAssembly.Memory in the isolate.
 * workerd runs the inspector's `HeapProfiler.collectGarbage` as a task of the isolate, which it
 * runs when the isolate next has work: one request with no credential (a 401, its few KB of
 * garbage) lets it run; the answer to the command comes after the collection.
 */
let session = null; // one DevTools connection for the run (the proxy announces the context once)
async function measure(g) {
  session ??= await runtimeSession(g.inspector);
  return isolateMemory(session, async () => {
    const r = await request(g.port, { path: '/api/resource', keepAlive: false });
    if (r.status !== 401) throw new Error(`the GC trigger request got ${r.status}`);
  });
}

// ------------------------------------------------------------------------------------------
// Tokens, API keys, the revocation snapshot
// ------------------------------------------------------------------------------------------
const b64u = (b) => Buffer.from(b).toString('base64url');

/** Token i: the 13-claim payload of examples/bench_token_cache.rs, signed RS256 (node:crypto). */
function makeToken(privateKey, i, now, jti) {
  const header = b64u(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: KID }));
  const n = String(i).padStart(12, '0');
  const payload = {
    iss: ISSUER, sub: `8c6f0a4e-2b1d-4d7a-9f3e-${n}`, aud: AUDIENCE, exp: now + 3600, iat: now - 10, nbf: now - 10,
    jti: jti ?? `f2d9c1b0-7a6e-4c3d-8b2a-${n}`, azp: '0oa9f3c7b', scope: 'openid profile email',
    email: `jdoe.${String(i).padStart(6, '0')}@example.com`, name: 'Jane Doe', given_name: 'Jane', family_name: 'Doe',
  };
  const input = `${header}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${b64u(crypto.sign('RSA-SHA256', Buffer.from(input), privateKey))}`;
}

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(s) {
  let c = 0xffffffff;
  for (const b of Buffer.from(s)) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
/** An `ew_live_` key as src/core/apikey/format.rs makes one (32 base62 + CRC32 in 6 base62). */
function makeApiKey() {
  let body = '';
  while (body.length < 32) for (const b of crypto.randomBytes(64)) if (b < 248 && body.length < 32) body += ALPHABET[b % 62];
  const signed = `ew_live_${body}`;
  let v = crc32(signed);
  let sum = '';
  for (let k = 0; k < 6; k++) {
    sum = ALPHABET[v % 62] + sum;
    v = Math.floor(v / 62);
  }
  return signed + sum;
}

/** The id of a revocation target (src/core/revocation.rs `id_of`): SHA-256 prefix, big-endian. */
function idOf(tag, parts) {
  return crypto.createHash('sha256').update([tag, ...parts].join('\n')).digest().subarray(0, 8);
}

/**
 * The revocation records, n entries: as examples/bench_memory.rs, 1 in 10 a subject watermark,
 * 1 in 10 a kid, the rest `jti`s; the last one the probe token's jti.
 */
function makeRecords(n, now, probeJti) {
  const recs = [];
  for (let i = 0; i < n - 1; i++) {
    if (i % 10 === 0) recs.push({ kind: 2, id: idOf('sub', [ISSUER, `user-${i}`]), before: now - 60 });
    else if (i % 10 === 1) recs.push({ kind: 3, id: idOf('kid', [`key-${i}`]) });
    else recs.push({ kind: 1, id: idOf('jti', [ISSUER, `${i.toString(16).padStart(32, '0')}`]) });
  }
  recs.push({ kind: 1, id: idOf('jti', [ISSUER, probeJti]) });
  return recs;
}

/** src/core/revocation.rs `shard_bits_for(count, 0)`: 65,536 entries per shard at most. */
const shardBits = (count) => {
  let bits = 0;
  while (bits < 8 && count > 65536 * 2 ** bits) bits++;
  return bits;
};
const shardOf = (id, bits) => (bits === 0 ? 0 : id[0] >> (8 - bits));

/**
 * The sharded publication the ledger writes (src/core/revocation.rs, format 3): one shard value
 * per index (`EWRS`, 3, version u64, bits u8, index u16, count u32; records kind u8 | id u64 |
 * expires i64 [| before i64] sorted by (kind, id)) under `revocations:v3:{bits}:{index}:{version}`,
 * and the manifest (`EWRM`, 3, version u64, bits u8; per shard version u64 | count u32) under
 * `revocations:v3`. `shardVersions[i]` is shard i's version (all `version` when absent); only
 * the shards at `version` are returned as values. Returns { entries (for `kv bulk put`), bytes }.
 */
function shardedPublication(recs, now, version, bits, shardVersions) {
  const per = Array.from({ length: 2 ** bits }, () => []);
  for (const r of recs) per[shardOf(r.id, bits)].push(r);
  const manifest = Buffer.alloc(14 + 12 * per.length);
  manifest.write('EWRM', 0, 'latin1');
  manifest.writeUInt8(3, 4);
  manifest.writeBigUInt64BE(BigInt(version), 5);
  manifest.writeUInt8(bits, 13);
  const entries = [];
  let bytes = 0;
  per.forEach((list, i) => {
    const v = shardVersions?.[i] ?? version;
    manifest.writeBigUInt64BE(BigInt(v), 14 + 12 * i);
    manifest.writeUInt32BE(list.length, 22 + 12 * i);
    if (v !== version || list.length === 0) return;
    list.sort((a, b) => a.kind - b.kind || Buffer.compare(a.id, b.id));
    const buf = Buffer.alloc(20 + list.reduce((s, r) => s + (r.kind === 2 ? 25 : 17), 0));
    buf.write('EWRS', 0, 'latin1');
    buf.writeUInt8(3, 4);
    buf.writeBigUInt64BE(BigInt(v), 5);
    buf.writeUInt8(bits, 13);
    buf.writeUInt16BE(i, 14);
    buf.writeUInt32BE(list.length, 16);
    let o = 20;
    for (const r of list) {
      buf.writeUInt8(r.kind, o);
      r.id.copy(buf, o + 1);
      buf.writeBigInt64BE(BigInt(now + 86400), o + 9);
      o += 17;
      if (r.kind === 2) {
        buf.writeBigInt64BE(BigInt(r.before), o);
        o += 8;
      }
    }
    bytes += buf.length;
    entries.push({ key: `revocations:v3:${bits}:${i}:${v}`, value: buf.toString('base64'), base64: true });
  });
  entries.push({ key: 'revocations:v3', value: manifest.toString('base64'), base64: true });
  return { entries, bytes: bytes + manifest.length };
}

// ------------------------------------------------------------------------------------------
// Loopback JWKS server and origin
// ------------------------------------------------------------------------------------------
function listen(srv) {
  return new Promise((resolve) => srv.listen(0, HOST, () => resolve(`http://${HOST}:${srv.address().port}`)));
}

/** Sends every request of `list` (each { path, headers, expect }) with CONC in flight. */
async function sendAll(g, list, what) {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < list.length) {
      const r = list[next++];
      const res = await request(g.port, r);
      if (res.status !== r.expect) throw new Error(`${what}: ${r.path} got ${res.status} (expected ${r.expect}): ${res.text.slice(0, 300)}`);
      if (++done % 2000 === 0) log(`${what}: ${done}/${list.length}`);
    }
  };
  await Promise.all(Array.from({ length: CONC }, worker));
  const secs = (performance.now() - t0) / 1000;
  log(`${what}: ${list.length} requests in ${secs.toFixed(1)} s (${(list.length / secs).toFixed(0)}/s)`);
  return secs;
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------
async function main() {
  const started = new Date();
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const main = path.join(ROOT, GATE_DIR, 'index.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: bash scripts/build-worker first`);
  const wasmFile = path.join(ROOT, GATE_DIR, 'index_bg.wasm');

  const now = Math.floor(Date.now() / 1000);
  const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
  const pem = crypto.createPrivateKey({ key: await exportJWK(privateKey), format: 'jwk' });
  log(`signing ${N_TOKENS} RS256 tokens`);
  const tokens = Array.from({ length: N_TOKENS }, (_, i) => makeToken(pem, i, now));
  const probeJti = 'probe-revoked-0001';
  const probe = makeToken(pem, N_TOKENS + 1, now, probeJti);
  const probe2Jti = 'probe-revoked-0002';
  const probe2 = makeToken(pem, N_TOKENS + 2, now, probe2Jti);
  const tokenBytes = [...new Set(tokens.map((t) => t.length))];

  const jwksBody = Buffer.from(JSON.stringify({ keys: [jwk] }));
  let jwksFetches = 0;
  const jwksSrv = http.createServer((req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600', 'content-length': jwksBody.length }).end(jwksBody);
  });
  const jwksUrl = `${await listen(jwksSrv)}/jwks.json`;
  const okBody = Buffer.from('{"ok":true}\n');
  let originCount = 0;
  const originSrv = http.createServer((req, res) => {
    originCount++;
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': okBody.length }).end(okBody));
  });
  originSrv.keepAliveTimeout = 60000;
  const originUrl = await listen(originSrv);

  const config = {
    issuers: [{ issuer: ISSUER, audiences: [AUDIENCE], jwks_uri: jwksUrl, algorithms: ['RS256'] }],
    origin: originUrl,
    routes: [{ path: '/svc/*', auth: 'api_key' }],
    // Defaults otherwise (token_cache capacity 10,000 / max_bytes 8 MiB, api_keys cache_capacity
    // 10,000, revocations on and re-read every 10 s in the background), except that key records
    // are trusted for an hour (none expires while the rest load).
    api_keys: { cache_ttl_secs: 3600 },
  };
  const pepper = crypto.randomBytes(32).toString('hex');

  const dir = tempDir('run');
  const cfgFile = path.join(dir, 'wrangler.toml');
  fs.writeFileSync(cfgFile, `# Generated by bench/isolate-memory.mjs from wrangler.toml (main = ${tomlString(GATE_DIR)}).\n${deriveWranglerConfig('wrangler.toml', { drop: ['build', 'vars', 'services', 'durable_objects.bindings'], main, name: 'edgeward-isomem' })}`);
  const persist = path.join(dir, 'state');
  const kvArgs = ['--binding', 'EDGEWARD_KV', '--local', '--persist-to', persist, '--config', cfgFile];

  // API key records, written before the gate starts (KV holds them; the isolate only once asked).
  log(`writing ${N_KEYS} API key records into the local KV (wrangler kv bulk put --local)`);
  const apiKeys = [];
  const bulk = [];
  for (let i = 0; i < N_KEYS; i++) {
    const key = makeApiKey();
    const hash = crypto.createHmac('sha256', pepper).update(key).digest('hex');
    const record = {
      id: `key_${crypto.randomBytes(12).toString('hex')}`, owner: `owner-${i}`, description: 'bench key', scopes: ['read'],
      tier: null, allowed_ips: [], not_before: null, expires_at: null, status: 'active', env: 'live', created_at: now - 100,
      secrets: [{ hash, created_at: now - 100, not_after: null }],
    };
    apiKeys.push(key);
    bulk.push({ key: `apikey:v1:h:${hash}`, value: JSON.stringify(record) });
  }
  const bulkFile = path.join(dir, 'keys.json');
  fs.writeFileSync(bulkFile, JSON.stringify(bulk));
  if (N_KEYS > 0) wranglerRun(['kv', 'bulk', 'put', bulkFile, ...kvArgs]);
  const recordBytes = Math.round(bulk.reduce((s, b) => s + b.value.length, 0) / Math.max(1, bulk.length));

  log('starting wrangler dev');
  const g = await startWrangler(cfgFile, { EDGEWARD_CONFIG: JSON.stringify(config), EDGEWARD_API_KEY_PEPPER: pepper }, persist);
  const rows = [];
  const snap = async (label) => {
    const m = await measure(g);
    const sum = m.js_used + m.wasm_bytes;
    rows.push({ label, ...m, sum });
    log(`${label}: JS used ${(m.js_used / MiB).toFixed(2)} MiB (total ${(m.js_total / MiB).toFixed(2)}), wasm ${(m.wasm_bytes / MiB).toFixed(2)} MiB [${m.wasm_memories.join(', ')}], sum ${(sum / MiB).toFixed(2)} MiB`);
  };

  // (1) the first request.
  const bearer = (t) => ({ authorization: `Bearer ${t}` });
  const first = await request(g.port, { headers: bearer(tokens[0]) });
  if (first.status !== 200) throw new Error(`first request: ${first.status} ${first.text.slice(0, 300)}\n${g.output().slice(-3000)}`);
  const p0 = await request(g.port, { headers: bearer(probe) });
  if (p0.status !== 200) throw new Error(`probe before the snapshot: ${p0.status} ${p0.text.slice(0, 300)}`);
  await snap('after the first request (2 tokens, empty revocation list)');

  // (2) the revocation list, as the ledger publishes it (sharded).
  const records = makeRecords(N_REVOCATIONS, now, probeJti);
  const bits = shardBits(records.length);
  const pub1 = shardedPublication(records, now, 1, bits);
  const putBulk = (entries, name) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, JSON.stringify(entries));
    wranglerRun(['kv', 'bulk', 'put', f, ...kvArgs]);
  };
  log(`writing the revocation list (${N_REVOCATIONS} entries in ${2 ** bits} shards, ${pub1.bytes} bytes) into the local KV (wrangler kv bulk put --local)`);
  putBulk(pub1.entries, 'revocations-1.json');
  const waitFor = async (token, status, what) => {
    const deadline = Date.now() + 60000;
    for (;;) {
      await sleep(1000); // past refresh_secs (10 s), a request schedules a background re-read
      const got = (await request(g.port, { headers: bearer(token) })).status;
      if (got === status) return;
      if (Date.now() > deadline) throw new Error(`the gate did not pick up ${what} in 60 s (probe: ${got})`);
    }
  };
  await waitFor(probe, 401, 'the revocation list');
  await snap(`+ ${N_REVOCATIONS.toLocaleString('en-US')} revocations (${2 ** bits} shards read)`);
  // One more revocation (the second probe's jti): the ledger republishes its shard only, and the
  // gate's refresh reads that one shard beside the live set.
  records.push({ kind: 1, id: idOf('jti', [ISSUER, probe2Jti]) });
  const changed = shardOf(records.at(-1).id, bits);
  const pub2 = shardedPublication(records, now, 2, bits, Array.from({ length: 2 ** bits }, (_, i) => (i === changed ? 2 : 1)));
  putBulk(pub2.entries, 'revocations-2.json');
  await waitFor(probe2, 401, 'the one-shard change');
  await snap('+ 1 revocation (one shard re-read)');
  const snapshot = { length: pub1.bytes };

  // (3) distinct tokens.
  const tokenSecs = await sendAll(g, tokens.slice(1).map((t) => ({ headers: bearer(t), expect: 200 })), 'tokens');
  await snap(`+ ${N_TOKENS.toLocaleString('en-US')} cached tokens`);

  // (4) distinct API keys.
  const keySecs = await sendAll(g, apiKeys.map((k) => ({ path: '/svc/x', headers: { 'x-api-key': k }, expect: 200 })), 'api keys');
  await snap(`+ ${N_KEYS.toLocaleString('en-US')} cached API key records`);

  // Still cached? Every token and key again: must all still pass (and, cached, need no KV or JWKS).
  const jwksBefore = jwksFetches;
  await sendAll(g, [...tokens.map((t) => ({ headers: bearer(t), expect: 200 })), ...apiKeys.map((k) => ({ path: '/svc/x', headers: { 'x-api-key': k }, expect: 200 }))], 'second pass');
  await snap('after a second pass over every token and key');

  const result = {
    date: started.toISOString(), head, src_dirty: dirty, load_at_start: load, command: COMMAND, gate_dir: GATE_DIR,
    wasm_file_bytes: fs.statSync(wasmFile).size, token_bytes: tokenBytes, key_record_bytes: recordBytes,
    snapshot_bytes: snapshot.length, tokens: N_TOKENS, keys: N_KEYS, revocations: N_REVOCATIONS, conc: CONC,
    token_secs: tokenSecs, key_secs: keySecs, jwks_fetches: jwksFetches, jwks_fetches_second_pass: jwksFetches - jwksBefore,
    origin_requests: originCount, target_mib: TARGET_MIB, rows,
  };
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(result, null, 2));
  process.stdout.write(markdown(result));
  session?.close();
  agent.destroy();
  jwksSrv.close();
  originSrv.close();
}

const mib = (b) => (b / MiB).toFixed(2);
function markdown(r) {
  const L = [];
  L.push(`Command: \`${r.command}\`, ${r.date.slice(0, 10)}, HEAD ${r.head}${r.src_dirty ? ' (src/ modified)' : ''}, gate \`${r.gate_dir}/\` (wasm ${r.wasm_file_bytes.toLocaleString('en-US')} B), load average ${r.load_at_start} at start.`);
  L.push('');
  L.push('| state | JS heap used | JS heap total | wasm memory | JS used + wasm |');
  L.push('|---|---:|---:|---:|---:|');
  for (const x of r.rows) L.push(`| ${x.label} | ${mib(x.js_used)} MiB | ${mib(x.js_total)} MiB | ${mib(x.wasm_bytes)} MiB | ${mib(x.sum)} MiB |`);
  L.push('');
  const filled = r.rows[3] ?? r.rows.at(-1);
  const peak = Math.max(...r.rows.map((x) => x.sum));
  L.push('wasm memory only grows: each row is the high-water mark of linear memory so far, not the live data.');
  L.push(`Filled: ${mib(filled.sum)} MiB (JS heap used ${mib(filled.js_used)} + wasm ${mib(filled.wasm_bytes)}); largest ${mib(peak)} MiB. Target ≤ ${r.target_mib} MiB: **${peak <= r.target_mib * MiB ? 'met' : 'missed'}**.`);
  L.push(`Tokens ${r.token_bytes.join('/')} bytes; key records ${r.key_record_bytes} B of JSON each; snapshot ${r.snapshot_bytes.toLocaleString('en-US')} B; ${r.tokens} tokens in ${r.token_secs.toFixed(1)} s and ${r.keys} keys in ${r.key_secs.toFixed(1)} s at ${r.conc} in flight; JWKS fetched ${r.jwks_fetches} time(s) (${r.jwks_fetches_second_pass} in the second pass).`);
  return `${L.join('\n')}\n`;
}

main().then(() => process.exit(0), (e) => {
  console.error(e.stack ?? e);
  process.exit(1);
});
