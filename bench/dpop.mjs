// Issue 18: what DPoP (RFC 9449) verification costs in workerd, the gate against jose 6 doing the
// same two checks. Run by bench/dpop, which builds the gate first:
//
//   node bench/dpop.mjs [--secs 5] [--rounds 6] [--conns 16] [--warmup 3] [--out FILE.json]
//       [--md FILE.md] [--gate-dir build-dpopbench]
//
// Three `wrangler dev`s on 127.0.0.1, one loopback Node origin (200, 12-byte body), five sides
// measured interleaved in the same run (the order rotated each round), wrk -t1 -c16 --latency:
//   (a)  the gate (production build), `Authorization: Bearer <ES256 JWT>` — the baseline;
//   (b)  the same gate, `Authorization: DPoP <ES256 token bound by cnf.jkt>` + a fresh ES256 proof
//        per request (default configuration: the token is verified once and then a token-cache
//        hit; the proof is checked on every request, as it must be);
//   (b') a second gate whose token cache is off (`token_cache.capacity: 0`): the token's
//        signature is checked on every request too — exactly the two checks jose makes;
//   (c)  bench/jose-dpop-gate/ (jose 6: jwtVerify of the token against a local JWKS, jwtVerify of
//        the proof with EmbeddedJWK, typ, htm, htu, iat, ath, calculateJwkThumbprint vs cnf.jkt,
//        a per-isolate jti map) with the same DPoP requests;
//   (c') the same jose Worker with the Bearer token (jose's own baseline).
// Every gate writes one JSON decision line per request (the Edgeward gate always does; the jose
// Worker with LOG=1), forwards without Authorization and DPoP, refuses errors with 401.
// Gate configuration: one issuer with the ES256 key inline, defaults otherwise (revocations on:
// local KV, no snapshot; routes' dpop mode `allowed`; dpop.iat_window_secs 60; nonces off).
//
// Proofs: each request needs its own (jti), so before each wrk run (untimed) this process signs
// the run's proofs with jose (iat = now; a run lasts --secs, well inside the 60 s window) and
// writes them to a file that wrk's Lua script reads in `init` and sends one per request (the same
// script, minus the DPoP header, sends the Bearer sides: every side pays the same client cost).
// The number signed is 1.5 × the side's best req/s so far × --secs (+ margin); a run that runs out
// (the script would have to resend a proof, which the gate refuses) is redone with twice as many.
// Before timing, each gate must forward a valid Bearer and a valid DPoP request (the origin sees
// no Authorization, no DPoP, the thumbprint in x-edgeward-jkt) and refuse a replayed proof, wrong
// htm, htu, ath, iat, typ, a proof by another key, a bound token as Bearer, a missing proof (401).
// A wrk run with any non-2xx answer fails the bench.
// Everything listens on 127.0.0.1; keys and tokens are generated here, proofs written to a
// temporary directory removed on exit.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, options, cleanup, cleanupOnExit, httpRequest, startWrangler, tempDir } from './local.mjs';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { deriveWranglerConfig, tomlString } from '../scripts/wrangler-derive.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ISSUER = 'https://issuer.dpopbench.invalid';
const AUDIENCE = 'api://dpopbench';
const KID = 'dpopbench-es256';
const REQ_PATH = '/api/resource';
const IAT_WINDOW_SECS = 60;

const { args, opt } = options('dpop.mjs', ['secs', 'rounds', 'conns', 'warmup', 'out', 'md', 'gate-dir', 'command', 'build-note']);
const SECS = Number(opt('secs', 5));
const ROUNDS = Number(opt('rounds', 6));
const CONNS = Number(opt('conns', 16));
const WARMUP_SECS = Number(opt('warmup', 3));
const OUT = opt('out', null);
const MD = opt('md', null);
const GATE_DIR = opt('gate-dir', 'build-dpopbench');
const JOSE_DIR = path.join('bench', 'jose-dpop-gate');

const log = (...a) => console.error('[dpop-bench]', ...a);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// wrk runs are children of this process (not process groups of local.mjs): killed on the way out.
const wrkChildren = new Set();
cleanupOnExit({
  prefix: 'edgeward-dpopbench',
  also: () => {
    for (const c of wrkChildren) c.kill('SIGKILL');
    fs.rmSync(path.join(ROOT, JOSE_DIR, '.wrangler'), { recursive: true, force: true });
  },
});
const scratch = tempDir('run');

// ------------------------------------------------------------------------------------------
// Keys, tokens, proofs, origin
// ------------------------------------------------------------------------------------------
async function clientKey() {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg: 'ES256', privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

async function makeKeys() {
  const now = Math.floor(Date.now() / 1000);
  const issuer = await generateKeyPair('ES256', { extractable: true });
  const issuerJwk = { ...(await exportJWK(issuer.publicKey)), kid: KID, alg: 'ES256', use: 'sig' };
  const client = await clientKey();
  const other = await clientKey();
  const mint = (extra) => new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: 'bench-user', scope: 'read write', iat: now, exp: now + 3 * 3600, jti: crypto.randomUUID(), ...extra })
    .setProtectedHeader({ alg: 'ES256', kid: KID, typ: 'JWT' }).sign(issuer.privateKey);
  const bearer = await mint({});
  const bound = await mint({ cnf: { jkt: client.jkt } });
  return { issuerJwk, client, other, bearer, bound, ath: crypto.createHash('sha256').update(bound).digest('base64url') };
}

/** One proof by `k` (default: the client's) for GET `url` with `token`; `patch` overrides claims, `typ` the header's. */
function proof(keys, url, { k = keys.client, ath = keys.ath, patch = {}, typ = 'dpop+jwt' } = {}) {
  const claims = { htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID(), ath, ...patch };
  return new SignJWT(claims).setProtectedHeader({ typ, alg: k.alg, jwk: k.jwk }).sign(k.privateKey);
}

/** `n` fresh proofs for `url`, written one per line to a new file; resolves its path and the time taken. */
async function proofFile(keys, url, n) {
  const t0 = performance.now();
  const lines = [];
  for (let i = 0; i < n; i += 500) {
    lines.push(...(await Promise.all(Array.from({ length: Math.min(500, n - i) }, () => proof(keys, url)))));
  }
  const file = path.join(scratch, 'proofs.txt');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, ms: performance.now() - t0 };
}

/** Answers every request 200 with a 12-byte JSON body; remembers the last request's headers. */
function startOrigin() {
  const body = Buffer.from('{"ok":true}\n');
  const state = { count: 0, last: null };
  const srv = http.createServer((req, res) => {
    state.count++;
    state.last = { url: req.url, headers: req.headers };
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  srv.keepAliveTimeout = 60000;
  return new Promise((resolve) => srv.listen(0, HOST, () => resolve({ srv, state, url: `http://${HOST}:${srv.address().port}` })));
}

// ------------------------------------------------------------------------------------------
// The gates
// ------------------------------------------------------------------------------------------
function gateConfig(keys, origin, { tokenCache }) {
  return {
    issuers: [{ issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: [keys.issuerJwk] }, algorithms: ['ES256'] }],
    origin: origin.url,
    dpop: { iat_window_secs: IAT_WINDOW_SECS, nonce: false },
    ...(tokenCache ? {} : { token_cache: { capacity: 0 } }),
  };
}

/** The gate's wrangler config for `wrangler dev` of GATE_DIR (as bench/gate-throughput.mjs makes it). */
function gateWranglerConfig(label) {
  const main = path.join(ROOT, GATE_DIR, 'index.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run bench/dpop (it builds it) or OUT_DIR=${GATE_DIR} bash scripts/build-worker`);
  const text = deriveWranglerConfig('wrangler.toml', { drop: ['build', 'vars', 'services', 'durable_objects.bindings'], main, name: `edgeward-dpopbench-${label}` });
  const file = path.join(tempDir(`config-${label}`), 'wrangler.toml');
  fs.writeFileSync(file, `# Generated by bench/dpop.mjs from wrangler.toml (main = ${tomlString(GATE_DIR)}).\n${text}`);
  return file;
}

async function startGates(keys, origin) {
  const [gate, gateNocache, jose] = await Promise.all([
    startWrangler('gate', gateWranglerConfig('gate'), { EDGEWARD_CONFIG: JSON.stringify(gateConfig(keys, origin, { tokenCache: true })) }),
    startWrangler('gate_nocache', gateWranglerConfig('nocache'), { EDGEWARD_CONFIG: JSON.stringify(gateConfig(keys, origin, { tokenCache: false })) }),
    startWrangler('jose', path.join(JOSE_DIR, 'wrangler.toml'), {
      JWKS: JSON.stringify({ keys: [keys.issuerJwk] }), ISSUER, AUDIENCE, ORIGIN: origin.url, IAT_WINDOW_SECS: String(IAT_WINDOW_SECS), LOG: '1',
    }),
  ]);
  return { gate, gate_nocache: gateNocache, jose };
}

const urlOf = (g) => `http://${HOST}:${g.port}${REQ_PATH}`;

/** Refuses to time a gate that does not forward valid requests or does not refuse bad proofs. */
async function verifyGate(g, keys, origin) {
  const url = urlOf(g);
  const call = (headers) => httpRequest(g.port, { path: REQ_PATH, headers, timeoutMs: 60000 });
  const dpop = (p, token = keys.bound) => call({ authorization: `DPoP ${token}`, ...(p ? { dpop: p } : {}) });
  const expect = (r, status, what) => {
    if (r.status !== status) throw new Error(`${g.label}: ${what} got ${r.status} (expected ${status}): ${r.text.slice(0, 300)}`);
  };
  let before = origin.state.count;
  const bearer = await call({ authorization: `Bearer ${keys.bearer}` });
  expect(bearer, 200, 'a valid Bearer token');
  if (origin.state.count !== before + 1 || origin.state.last.headers.authorization !== undefined) throw new Error(`${g.label}: Bearer: not forwarded, or with Authorization`);
  const p = await proof(keys, url);
  before = origin.state.count;
  expect(await dpop(p), 200, 'a bound token with a valid proof');
  const seen = origin.state.last.headers;
  if (origin.state.count !== before + 1 || seen.authorization !== undefined || seen.dpop !== undefined || seen['x-edgeward-jkt'] !== keys.client.jkt) {
    throw new Error(`${g.label}: DPoP: not forwarded as expected: ${JSON.stringify(seen)}`);
  }
  expect(await dpop(p), 401, 'a replayed proof');
  const bad = [
    ['wrong htm', await proof(keys, url, { patch: { htm: 'POST' } })],
    ['wrong htu', await proof(keys, `${url}x`)],
    ['wrong ath', await proof(keys, url, { ath: crypto.createHash('sha256').update(`${keys.bound}x`).digest('base64url') })],
    ['stale iat', await proof(keys, url, { patch: { iat: Math.floor(Date.now() / 1000) - 10 * IAT_WINDOW_SECS } })],
    ['typ JWT', await proof(keys, url, { typ: 'JWT' })],
    ['another key', await proof(keys, url, { k: keys.other })],
    ['no proof', null],
  ];
  for (const [what, q] of bad) expect(await dpop(q), 401, `a proof with ${what}`);
  expect(await call({ authorization: `Bearer ${keys.bound}` }), 401, 'a bound token sent as Bearer');
}

// ------------------------------------------------------------------------------------------
// wrk
// ------------------------------------------------------------------------------------------
// One proof per request from the file named by the first script argument ("-": none, for the
// Bearer sides). Past the last one it would resend it (the gate refuses: a non-2xx) and flags the
// thread, which done() reports.
const LUA = `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  proofs = {}
  if args[1] ~= "-" then
    for line in io.lines(args[1]) do if #line > 0 then proofs[#proofs + 1] = line end end
  end
  idx = 0
  exhausted = 0
end
function request()
  if #proofs > 0 then
    idx = idx + 1
    local p = proofs[idx]
    if p == nil then
      exhausted = 1
      p = proofs[#proofs]
    end
    wrk.headers["DPoP"] = p
  end
  return wrk.format()
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    if t:get("exhausted") == 1 then io.write("EDGEWARD_PROOFS_EXHAUSTED\\n") end
  end
end
`;
const LUA_FILE = path.join(scratch, 'dpop.lua');
fs.writeFileSync(LUA_FILE, LUA);

function toMs(s) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(s.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

/** CPU time (ms) used so far by the workerd processes of process group `pgid`, and by all of them. */
function groupCpuMs(pgid) {
  const out = { workerd: 0, all: 0 };
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) !== pgid) continue;
    const ms = (Number(f[11]) + Number(f[12])) * 10; // utime + stime, USER_HZ = 100
    out.all += ms;
    if (comm === 'workerd') out.workerd += ms;
  }
  return out;
}

function runWrkOnce(g, authorization, proofs, secs) {
  const argv = ['-t1', `-c${CONNS}`, `-d${secs}s`, '--latency', '-s', LUA_FILE, '-H', `Authorization: ${authorization}`, urlOf(g), '--', proofs ?? '-'];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    wrkChildren.add(child);
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), (secs + 30) * 1000);
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      wrkChildren.delete(child);
      resolve({ status, stdout, stderr });
    });
  });
}

const best = {}; // side -> best req/s so far (sizes the next run's proofs)

/** One timed wrk run of `side` (proofs signed first, untimed); redone with more proofs if they ran out. */
async function wrk(side, gates, keys, secs) {
  const g = gates[side.inst];
  const authorization = side.mode === 'dpop' ? `DPoP ${keys.bound}` : `Bearer ${keys.bearer}`;
  let budget = Math.ceil((best[side.name] ?? 2500) * secs * 1.5) + 4 * CONNS + 200;
  for (let attempt = 1; ; attempt++) {
    const proofs = side.mode === 'dpop' ? await proofFile(keys, urlOf(g), budget) : null;
    const cpu0 = groupCpuMs(g.pgid);
    const r = await runWrkOnce(g, authorization, proofs?.file, secs);
    const cpu1 = groupCpuMs(g.pgid);
    if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}${r.stdout}`);
    const text = r.stdout;
    if (/EDGEWARD_PROOFS_EXHAUSTED/.test(text)) {
      if (attempt >= 3) throw new Error(`${side.label}: ran out of proofs ${attempt} times (last: ${budget})`);
      log(`${side.label}: ${budget} proofs were not enough; again with ${budget * 2}`);
      budget *= 2;
      continue;
    }
    const requests = Number(/(\d+) requests in/.exec(text)?.[1]);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
    const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? '');
    const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? '');
    const bad = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
    const errors = /Socket errors:.*/.exec(text)?.[0] ?? null;
    if (!(rps > 0) || Number.isNaN(p50) || Number.isNaN(p99)) throw new Error(`cannot parse wrk output:\n${text}`);
    if (bad > 0) throw new Error(`${side.label}: wrk saw ${bad} non-2xx responses (the bench never times errors):\n${text}`);
    best[side.name] = Math.max(best[side.name] ?? 0, rps);
    return {
      rps, p50, p99, requests, errors, proofs_signed: proofs ? budget : 0, proof_sign_ms: proofs?.ms ?? 0,
      cpu_ms_workerd: (cpu1.workerd - cpu0.workerd) / requests,
      cpu_ms_all: (cpu1.all - cpu0.all) / requests,
    };
  }
}

const SIDES = [
  { name: 'gate_bearer', inst: 'gate', mode: 'bearer', label: '(a) gate, Bearer ES256 token' },
  { name: 'gate_dpop', inst: 'gate', mode: 'dpop', label: '(b) gate, DPoP: bound ES256 token + ES256 proof' },
  { name: 'gate_dpop_nocache', inst: 'gate_nocache', mode: 'dpop', label: "(b') gate with the token cache off, DPoP" },
  { name: 'jose_dpop', inst: 'jose', mode: 'dpop', label: '(c) jose 6 Worker, DPoP (both checks)' },
  { name: 'jose_bearer', inst: 'jose', mode: 'bearer', label: "(c') jose 6 Worker, Bearer ES256 token" },
];

async function measure(gates, keys) {
  for (const s of SIDES) {
    const w = await wrk(s, gates, keys, WARMUP_SECS); // warm-up (JIT, caches), sizes the proof files
    log(`warm-up ${s.label}: ${w.rps.toFixed(0)} req/s`);
  }
  const runs = Object.fromEntries(SIDES.map((s) => [s.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = SIDES.map((_, i) => SIDES[(i + round * 2) % SIDES.length]);
    if (round % 2) order.reverse();
    for (const s of order) {
      const r = await wrk(s, gates, keys, SECS);
      r.round = round + 1;
      r.loadavg = os.loadavg()[0];
      runs[s.name].push(r);
      log(`round ${round + 1} ${s.label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, workerd CPU ${r.cpu_ms_workerd.toFixed(3)} ms/req${r.proofs_signed ? ` (${r.proofs_signed} proofs signed in ${(r.proof_sign_ms / 1000).toFixed(1)} s before the run)` : ''}${r.errors ? ` (${r.errors})` : ''}`);
    }
  }
  const out = { secs: SECS, rounds: ROUNDS, connections: CONNS, warmup_secs: WARMUP_SECS, sides: {} };
  for (const s of SIDES) {
    const xs = runs[s.name];
    const med = (k) => median(xs.map((x) => x[k]));
    out.sides[s.name] = { label: s.label, rps: med('rps'), p50: med('p50'), p99: med('p99'), cpu_ms_workerd: med('cpu_ms_workerd'), cpu_ms_all: med('cpu_ms_all'), runs: xs };
  }
  // Per-round comparisons (each round's figures against the same round's), and their median.
  const per = (f) => {
    const rounds = runs.gate_bearer.map((_, i) => f(Object.fromEntries(SIDES.map((s) => [s.name, runs[s.name][i]]))));
    return { median: median(rounds), rounds };
  };
  const ratio = (a, b, k) => per((r) => r[a][k] / r[b][k]);
  const diff = (a, b, f) => per((r) => f(r[a]) - f(r[b]));
  const perReq = (x) => 1000 / x.rps; // ms of the loaded gate's time per request (all 16 connections)
  out.ratios = {};
  for (const [key, a, b] of [['b_vs_c', 'gate_dpop', 'jose_dpop'], ['b2_vs_c', 'gate_dpop_nocache', 'jose_dpop'], ['a_vs_c2', 'gate_bearer', 'jose_bearer']]) {
    out.ratios[key] = { rps: ratio(a, b, 'rps'), p50: ratio(a, b, 'p50'), p99: ratio(a, b, 'p99'), cpu: ratio(a, b, 'cpu_ms_workerd') };
  }
  out.added = {};
  for (const [key, a, b] of [['gate', 'gate_dpop', 'gate_bearer'], ['gate_nocache', 'gate_dpop_nocache', 'gate_bearer'], ['jose', 'jose_dpop', 'jose_bearer']]) {
    out.added[key] = {
      cpu_ms: diff(a, b, (x) => x.cpu_ms_workerd), p50_ms: diff(a, b, (x) => x.p50), per_req_ms: diff(a, b, perReq), rps_ratio: ratio(a, b, 'rps'),
    };
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------
function markdown(r) {
  const f0 = (x) => x.toFixed(0);
  const f2 = (x) => x.toFixed(2);
  const f3 = (x) => x.toFixed(3);
  const sgn = (x, f = f3) => `${x >= 0 ? '+' : '−'}${f(Math.abs(x))}`;
  const t = r.throughput;
  const L = [];
  const la = (xs) => xs.map((x) => x.toFixed(2)).join(' ');
  L.push(`Command: \`${r.command}\` (${r.wrk_version.split(' [')[0]}, wrangler ${r.wrangler}, jose ${r.jose}, Node ${r.node}); ${r.date}, ${f0(r.secs)} s. Machine: ${r.host.cpus} cores (${r.host.cpu}), shared with other builds and tests; load average ${la(r.host.loadavg_start)} at start, ${la(r.host.loadavg_end)} at the end. Gate: \`${r.gate_dir}/\`, a production build (\`scripts/build-worker\`, no features; built ${r.build?.built ?? '?'}, wasm ${r.build ? r.build.wasm_bytes.toLocaleString('en-US') : '?'} B; HEAD ${r.git} at the run).${r.build_note ? ` ${r.build_note}` : ''}`);
  L.push('');
  L.push(`\`wrk -t1 -c${t.connections} -d${t.secs}s --latency\` with a Lua script sending one proof per request from a file signed before the run (untimed, jose in Node; ${f0(median(Object.values(t.sides).flatMap((s) => s.runs.filter((x) => x.proofs_signed).map((x) => x.proofs_signed / (x.proof_sign_ms / 1000)))))} proofs/s), \`GET ${REQ_PATH}\` forwarded to a loopback Node origin (200, 12-byte body). ${t.rounds} rounds after a ${t.warmup_secs} s warm-up per side, the five sides interleaved (order rotated every round, reversed every other); medians. Proof: ES256, \`typ\` dpop+jwt, \`jwk\` header, \`htm\`, \`htu\`, \`iat\` (window ${IAT_WINDOW_SECS} s), a fresh \`jti\`, \`ath\`; token: ES256, \`cnf.jkt\` = the proof key's thumbprint, key inline (the gate's \`jwks.keys\`, jose's \`createLocalJWKSet\`). Every side writes one JSON decision line per request (under \`--log-level warn\`: written, not printed).`);
  L.push('');
  L.push('| side | req/s | p50 ms | p99 ms | workerd CPU ms/request | runs (req/s) |');
  L.push('|---|---:|---:|---:|---:|---|');
  for (const s of SIDES) {
    const x = t.sides[s.name];
    L.push(`| ${x.label} | ${f0(x.rps)} | ${f2(x.p50)} | ${f2(x.p99)} | ${f3(x.cpu_ms_workerd)} | ${x.runs.map((q) => f0(q.rps)).join(', ')} |`);
  }
  L.push('');
  L.push('*workerd CPU ms/request*: user + system CPU of that `wrangler dev`\'s workerd processes (its proxy Worker and the Worker) during the run, per request served. (a) and (b) run in one `wrangler dev`, (c) and (c\') in another, (b\') in a third.');
  L.push('');
  L.push('Gate against jose, DPoP requests (the issue\'s comparison; median of the per-round ratios, each round\'s figures against the same round\'s):');
  L.push('');
  L.push('| ratio | req/s | p50 | p99 | workerd CPU/request | req/s per round | CPU per round |');
  L.push('|---|---:|---:|---:|---:|---|---|');
  const rr = (label, x) => L.push(`| ${label} | ${f2(x.rps.median)} | ${f2(x.p50.median)} | ${f2(x.p99.median)} | ${f2(x.cpu.median)} | ${x.rps.rounds.map(f2).join(', ')} | ${x.cpu.rounds.map(f2).join(', ')} |`);
  rr('(b) gate / (c) jose — DPoP, default gate', t.ratios.b_vs_c);
  rr('(b\') gate, token cache off / (c) jose — DPoP, both checks each', t.ratios.b2_vs_c);
  rr('(a) gate / (c\') jose — Bearer (reference)', t.ratios.a_vs_c2);
  L.push('');
  L.push('What DPoP adds per request over a Bearer token of the same issuer (median of per-round differences: DPoP side − Bearer side of the same round):');
  L.push('');
  L.push('| | workerd CPU ms/request | p50 ms | 1000 / req/s, ms | req/s ratio | CPU per round |');
  L.push('|---|---:|---:|---:|---:|---|');
  const ar = (label, x) => L.push(`| ${label} | ${sgn(x.cpu_ms.median)} | ${sgn(x.p50_ms.median, f2)} | ${sgn(x.per_req_ms.median)} | ${f2(x.rps_ratio.median)} | ${x.cpu_ms.rounds.map((v) => sgn(v)).join(', ')} |`);
  ar('gate: (b) − (a)', t.added.gate);
  ar('gate, token cache off: (b\') − (a)', t.added.gate_nocache);
  ar('jose: (c) − (c\')', t.added.jose);
  L.push('');
  L.push('*1000 / req/s*: the loaded Worker\'s time per request at this concurrency (all its work, on a machine where the client, the origin and workerd share 2 cores).');
  L.push('');
  // Faster or slower: throughput and CPU per request must agree (CPU per request moves far less
  // with the machine's other load than req/s does); otherwise the run is called mixed.
  const verdict = (x) => (x.rps.median >= 1 && x.cpu.median <= 1 ? 'faster' : x.rps.median < 1 && x.cpu.median > 1 ? 'slower' : 'neither clearly faster nor slower (throughput and CPU per request disagree)');
  const count = (xs, f) => `${xs.filter(f).length} of ${xs.length} rounds`;
  const b = t.ratios.b_vs_c;
  const b2 = t.ratios.b2_vs_c;
  const a = t.ratios.a_vs_c2;
  L.push(`**Verdict:** on DPoP requests the gate is **${verdict(b)}** than jose 6: ${f2(b.rps.median)} × jose's throughput (above 1 in ${count(b.rps.rounds, (x) => x >= 1)}), p50 latency ${f2(b.p50.median)} ×, workerd CPU per request ${f2(b.cpu.median)} × (above 1 in ${count(b.cpu.rounds, (x) => x > 1)}). With the gate's token cache off — the token's signature and the proof's checked on every request, as jose does — it is **${verdict(b2)}**: ${f2(b2.rps.median)} × jose's throughput, CPU per request ${f2(b2.cpu.median)} ×. For reference, on Bearer requests (no DPoP) the gate runs at ${f2(a.rps.median)} × jose's throughput with ${f2(a.cpu.median)} × its CPU per request. What DPoP adds per request: the gate ${sgn(t.added.gate.cpu_ms.median)} ms of workerd CPU over its Bearer requests (${sgn(t.added.gate_nocache.cpu_ms.median)} ms with the token cache off), jose ${sgn(t.added.jose.cpu_ms.median)} ms over its own.`);
  return L.join('\n');
}

// ------------------------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  const loadStart = os.loadavg();
  const keys = await makeKeys();
  const origin = await startOrigin();
  const result = {
    command: opt('command', `node bench/dpop.mjs${args.length ? ` ${args.join(' ')}` : ''}`),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' '),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg_start: loadStart },
    node: process.version,
    wrk_version: spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].trim(),
    wrangler: JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'wrangler', 'package.json'), 'utf8')).version,
    jose: JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'jose', 'package.json'), 'utf8')).version,
    git: (() => {
      const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
      const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
      return `${rev}${dirty ? ' (src/ modified in the working tree)' : ''}`;
    })(),
    gate_dir: GATE_DIR,
    build: (() => {
      try {
        const st = fs.statSync(path.join(ROOT, GATE_DIR, 'index_bg.wasm'));
        return { built: st.mtime.toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' '), wasm_bytes: st.size };
      } catch {
        return null;
      }
    })(),
    build_note: opt('build-note', '').trim(),
  };
  const gates = await startGates(keys, origin);
  for (const g of Object.values(gates)) {
    await verifyGate(g, keys, origin);
    log(`${g.label} on ${HOST}:${g.port}: forwards Bearer and DPoP requests, refuses replayed and wrong proofs (401)`);
  }
  result.throughput = await measure(gates, keys);
  for (const g of Object.values(gates)) await g.stop();
  result.host.loadavg_end = os.loadavg();
  result.secs = (Date.now() - started) / 1000;
  origin.srv.close();
  const md = markdown(result);
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(result, null, 2));
  if (MD) fs.writeFileSync(MD, `${md}\n`);
  console.log(md);
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (e) => {
    console.error(`[dpop-bench] FAILED: ${e.stack ?? e}`);
    cleanup();
    process.exit(1);
  },
);
