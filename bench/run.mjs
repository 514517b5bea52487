// Workerd measurements of issue 4, timed from outside the Worker (Date.now() does not advance
// during computation inside a Worker). Run by bench/run, which builds build-bench/ first.
//
//   node bench/run.mjs --out FILE.json [--quick] [--only micro|e2e]
//
// 1. Per-verification cost per algorithm: Edgeward (bench build, /__edgeward/bench?mode=miss:
//    the whole uncached path, CryptoKey cached per isolate) vs jose 6 (key imported once), each
//    request doing n verifications; cost = (fastest t(n=K) − fastest t(n=0)) / K over the cycles
//    of a round, the n=0 and n=K requests of both sides interleaved in shuffled order; median of
//    5 rounds (3 with --quick).
// 2. Cache-hit cost (mode=hit: token_hash + TokenCache lookup + authorize), same method.
// 3. End-to-end with wrk at fixed concurrency: Edgeward with a cached token vs a pass-through
//    Worker, both forwarding to the same loopback Node origin, alternated over 3 rounds.
// Everything listens on 127.0.0.1; keys and tokens are generated here and never written to disk
// (the public keys go to the Workers as --var).

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { childEnv, freePort as freePortOn } from './local.mjs';
import { generateKeyPair, exportJWK, SignJWT, base64url } from 'jose';
import { benchWranglerConfig } from './wrangler-config.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const freePort = () => freePortOn(HOST);
const WRANGLER = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
const AUDIENCE = 'api://bench';
const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'];

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const OUT = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : null; // micro | e2e
const ROUNDS = 3; // end to end
// Micro rounds: the signature (23-66 µs) dominates the cold figures and moves a few % between
// the two workerd processes from round to round; five rounds keep one slow round out of the median.
const MICRO_ROUNDS = QUICK ? 3 : 5;
// K is chosen so the work per timed request (tens of ms) stands well above the noise of the
// wrangler dev request path (~5-15 ms per request on a loaded 2-core machine).
const K_MISS = QUICK ? 100 : 1000; // verifications per timed request (cold path)
const K_HIT = QUICK ? 2000 : 10000; // lookups per timed request (cache hit)
const PAIRS = QUICK ? 3 : 9; // request cycles per round and algorithm
const E2E_SECS = QUICK ? 3 : 8; // wrk duration per run
const E2E_CONNS = 8; // fixed concurrency
const E2E_THREADS = 1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[bench]', ...a);
const min = (xs) => Math.min(...xs);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ------------------------------------------------------------------------------------------
// Processes: every group we start is killed on the way out.
// ------------------------------------------------------------------------------------------
const groups = new Set();
const tempDirs = new Set();
function cleanup() {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  groups.clear();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => process.exit(130));

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One GET; resolves { status, text, ms } (ms: wall time from send to last byte). */
function get(port, reqPath, headers = {}, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: HOST, port, path: reqPath, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), ms });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${reqPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function startWrangler(label, configFile, vars) {
  const port = await freePort();
  const inspector = await freePort();
  const persist = fs.mkdtempSync(path.join(os.tmpdir(), `edgeward-bench-${label}-`));
  tempDirs.add(persist);
  const argv = ['dev', '--config', configFile, '--ip', HOST, '--port', String(port), '--inspector-port', String(inspector),
    '--persist-to', persist, '--show-interactive-dev-session=false',
    // Worker console output is not printed: the harness's own printing would compete for the
    // two cores during the load test. Edgeward still formats and emits its decision log line.
    '--log-level', 'warn'];
  for (const [k, v] of Object.entries(vars)) argv.push('--var', `${k}:${v}`);
  const child = spawn(WRANGLER, argv, { cwd: ROOT, env: childEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  groups.add(child.pid);
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  let exited = false;
  child.on('exit', () => (exited = true));
  const deadline = Date.now() + 90000;
  for (;;) {
    if (exited) throw new Error(`wrangler dev (${label}) exited:\n${output.slice(-4000)}`);
    try {
      await get(port, '/', {}, 2000);
      break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`wrangler dev (${label}) not ready in 90 s:\n${output.slice(-4000)}`);
    await sleep(250);
  }
  log(`${label} ready on ${HOST}:${port}`);
  return { label, port, pgid: child.pid, output: () => output };
}

// ------------------------------------------------------------------------------------------
// Keys, tokens, configuration
// ------------------------------------------------------------------------------------------
async function makeKeys() {
  const now = Math.floor(Date.now() / 1000);
  const out = {};
  for (const alg of ALGS) {
    const kid = `bench-${alg.toLowerCase()}`;
    const issuer = `https://bench.invalid/${alg.toLowerCase()}`;
    let jwk;
    let signKey;
    if (alg === 'HS256') {
      const secret = crypto.randomBytes(32);
      jwk = { kty: 'oct', k: base64url.encode(secret) };
      signKey = secret;
    } else {
      const opts = alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048, extractable: true } : { extractable: true };
      const { publicKey, privateKey } = await generateKeyPair(alg, opts);
      jwk = await exportJWK(publicKey);
      signKey = privateKey;
    }
    Object.assign(jwk, { kid, alg, use: 'sig' });
    const token = await new SignJWT({ iss: issuer, aud: AUDIENCE, sub: 'bench-user', scope: 'read write', iat: now, exp: now + 3600 })
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .sign(signKey);
    out[alg] = { alg, kid, issuer, jwk, token };
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Loopback origin
// ------------------------------------------------------------------------------------------
function startOrigin() {
  const body = Buffer.from('{"ok":true}\n');
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  srv.keepAliveTimeout = 60000;
  return new Promise((resolve) => srv.listen(0, HOST, () => resolve({ srv, port: srv.address().port })));
}

// ------------------------------------------------------------------------------------------
// Micro: per-verification cost inside workerd, timed from outside
// ------------------------------------------------------------------------------------------
async function call(target, alg, n, mode, keys) {
  const q = target.kind === 'edgeward' ? `/__edgeward/bench?mode=${mode}&n=${n}` : `/?alg=${alg}&n=${n}&mode=${mode}`;
  const r = await get(target.port, q, { authorization: `Bearer ${keys[alg].token}` });
  if (r.status !== 200) throw new Error(`${target.label} ${alg} ${mode} n=${n}: HTTP ${r.status} ${r.text}`);
  const j = JSON.parse(r.text);
  if (!j.ok) throw new Error(`${target.label} ${alg} ${mode} n=${n}: verification failed: ${r.text}`);
  return r.ms;
}

/**
 * One round for one algorithm: PAIRS cycles, each sending every request of SPECS once in a
 * shuffled order (both sides' n=0 baselines and their n=K requests), so load drift on this shared
 * machine hits every figure alike. Returns µs per operation for each spec with n > 0.
 */
const SPECS = [
  // [name, side, mode, n?]
  ['edgeward_0', 'edgeward', 'miss', 0],
  ['edgeward', 'edgeward', 'miss'],
  ['edgeward_core', 'edgeward', 'core'],
  ['edgeward_sig', 'edgeward', 'sig'],
  ['edgeward_cachekey', 'edgeward', 'cachekey'],
  ['edgeward_rawsig', 'edgeward', 'rawsig'],
  ['edgeward_await', 'edgeward', 'await'],
  ['jose_0', 'jose', 'miss', 0],
  ['jose', 'jose', 'miss'],
  ['jose_subtle', 'jose', 'subtle'],
  ['jose_await', 'jose', 'await'],
];
async function roundFor(alg, edgeward, jose, keys) {
  const ms = SPECS.map(() => []);
  for (let i = 0; i < PAIRS; i++) {
    const order = SPECS.map((_, j) => j).sort(() => Math.random() - 0.5);
    for (const j of order) {
      const [, side, mode, n = K_MISS] = SPECS[j];
      ms[j].push(await call(side === 'edgeward' ? edgeward : jose, alg, n, mode, keys));
    }
  }
  // Fastest of the cycles: on this shared machine noise only ever adds time (CPU contention), so
  // the lower envelope is the steadiest estimate of each request's own cost.
  const m = Object.fromEntries(SPECS.map(([name], j) => [name, min(ms[j])]));
  const out = {};
  for (const [name, side, , n] of SPECS) {
    if (n === 0) continue;
    const base = m[`${side}_0`];
    out[name] = { us: ((m[name] - base) * 1000) / K_MISS, t0: base, tk: m[name] };
  }
  return out;
}

/** One round of the cache-hit measurement (Edgeward only; n=0 and n=K_HIT interleaved). */
async function hitRound(edgeward, keys) {
  const t0 = [];
  const tk = [];
  for (let i = 0; i < PAIRS; i++) {
    const first = i % 2 ? [K_HIT, 0] : [0, K_HIT];
    for (const n of first) (n ? tk : t0).push(await call(edgeward, 'RS256', n, 'hit', keys));
  }
  return { us: ((min(tk) - min(t0)) * 1000) / K_HIT, t0: min(t0), tk: min(tk) };
}

async function micro(edgeward, jose, keys) {
  // Warm-up: key import, JIT, isolate start.
  for (const alg of ALGS) {
    for (let i = 0; i < 3; i++) {
      await call(edgeward, alg, 50, 'miss', keys);
      await call(jose, alg, 50, 'miss', keys);
    }
  }
  for (let i = 0; i < 3; i++) await call(edgeward, 'RS256', 1000, 'hit', keys);
  const names = SPECS.filter((s) => s[3] !== 0).map((s) => s[0]);
  const rows = {};
  for (const alg of ALGS) rows[alg] = Object.fromEntries(names.map((n) => [n, []]));
  const hit = [];
  for (let round = 0; round < MICRO_ROUNDS; round++) {
    for (const alg of ALGS) {
      const r = await roundFor(alg, edgeward, jose, keys);
      for (const name of names) rows[alg][name].push(r[name].us);
      log(`round ${round + 1} ${alg}: ` + names.map((n) => `${n} ${r[n].us.toFixed(1)}`).join(', ') + ` µs/op (t0 ${r.edgeward.t0.toFixed(1)} / ${r.jose.t0.toFixed(1)} ms)`);
    }
    const r = await hitRound(edgeward, keys);
    hit.push(r.us);
    log(`round ${round + 1} cache hit: ${r.us.toFixed(3)} µs/lookup (t0 ${r.t0.toFixed(2)} ms, t${K_HIT} ${r.tk.toFixed(2)} ms)`);
  }
  const out = { k_miss: K_MISS, k_hit: K_HIT, pairs: PAIRS, rounds: MICRO_ROUNDS, algs: {}, hit: { rounds: hit, us: median(hit) } };
  for (const alg of ALGS) {
    out.algs[alg] = {};
    for (const n of names) {
      out.algs[alg][`${n}_us`] = median(rows[alg][n]);
      out.algs[alg][`${n}_rounds`] = rows[alg][n];
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// End-to-end with wrk
// ------------------------------------------------------------------------------------------
function toMs(s) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(s.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

/** CPU time (ms) used so far by the processes of process group `pgid`: { workerd, all }. */
function groupCpuMs(pgid) {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  const out = { workerd: 0, all: 0 };
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue; // exited
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] = field 3 (state)
    if (Number(f[2]) !== pgid) continue; // field 5: process group
    const ms = (Number(f[11]) + Number(f[12])) * tick; // fields 14, 15: utime, stime
    out.all += ms;
    if (comm === 'workerd') out.workerd += ms;
  }
  return out;
}

/** Runs wrk asynchronously (the loopback origin lives in this process's event loop). */
async function wrk(port, token, secs, pgid, reqPath = '/e2e/resource') {
  const cpu0 = groupCpuMs(pgid);
  const argv = [`-t${E2E_THREADS}`, `-c${E2E_CONNS}`, `-d${secs}s`, '--latency', '-H', `Authorization: Bearer ${token}`, `http://${HOST}:${port}${reqPath}`];
  const r = await new Promise((resolve, reject) => {
    const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), (secs + 30) * 1000);
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
  const cpu1 = groupCpuMs(pgid);
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}${r.stdout}`);
  const text = r.stdout;
  const requests = Number(/(\d+) requests in/.exec(text)?.[1]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const bad = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(text)?.[0] ?? null;
  if (!(rps > 0) || Number.isNaN(p50) || Number.isNaN(p99)) throw new Error(`cannot parse wrk output:\n${text}`);
  if (bad > 0) throw new Error(`wrk saw ${bad} non-2xx responses:\n${text}`);
  return {
    rps, p50, p99, errors, requests,
    // CPU per request of this wrangler dev instance (its workerd processes; all its processes):
    // unlike latency, barely moved by other load on the machine.
    cpu_ms_workerd: (cpu1.workerd - cpu0.workerd) / requests,
    cpu_ms_all: (cpu1.all - cpu0.all) / requests,
  };
}

async function e2e(edgeward, passthrough, keys) {
  const token = keys.RS256.token;
  // Three targets: Edgeward (cached token), the pass-through, and the pass-through writing one
  // decision-shaped log line per request (to separate the cost of logging under wrangler dev).
  const targets = [
    { name: 'edgeward', label: 'Edgeward', t: edgeward, path: '/e2e/resource' },
    { name: 'passthrough', label: 'pass-through', t: passthrough, path: '/e2e/resource' },
    { name: 'passthrough_log', label: 'pass-through + log line', t: passthrough, path: '/e2e/resource?log=1' },
  ];
  // The first request verifies and caches the token; every request after it is a cache hit.
  for (const x of targets) {
    const r = await get(x.t.port, x.path, { authorization: `Bearer ${token}` });
    if (r.status !== 200) throw new Error(`${x.label} e2e: HTTP ${r.status} ${r.text}`);
  }
  for (const x of targets) await wrk(x.t.port, token, 2, x.t.pgid, x.path); // warm-up
  const runs = Object.fromEntries(targets.map((x) => [x.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...targets].reverse() : targets;
    for (const x of order) {
      const r = await wrk(x.t.port, token, E2E_SECS, x.t.pgid, x.path);
      runs[x.name].push(r);
      log(`e2e round ${round + 1} ${x.label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms, workerd CPU ${r.cpu_ms_workerd.toFixed(3)} ms/request${r.errors ? ` (${r.errors})` : ''}`);
    }
  }
  const med = (xs, k) => median(xs.map((x) => x[k]));
  const summary = (xs) => ({ rps: med(xs, 'rps'), p50: med(xs, 'p50'), p99: med(xs, 'p99'), cpu_ms_workerd: med(xs, 'cpu_ms_workerd'), cpu_ms_all: med(xs, 'cpu_ms_all'), runs: xs });
  return {
    connections: E2E_CONNS, threads: E2E_THREADS, secs: E2E_SECS, rounds: ROUNDS,
    ...Object.fromEntries(targets.map((x) => [x.name, summary(runs[x.name])])),
  };
}

// ------------------------------------------------------------------------------------------
async function main() {
  if (!fs.existsSync(path.join(ROOT, 'build-bench', 'index.js'))) throw new Error('build-bench/index.js is missing: run bench/run (it builds it)');
  const started = Date.now();
  const keys = await makeKeys();
  const origin = await startOrigin();
  const edgewardConfig = {
    issuers: ALGS.map((alg) => ({ issuer: keys[alg].issuer, audiences: [AUDIENCE], jwks: { keys: [keys[alg].jwk] }, algorithms: [alg] })),
    origin: `http://${HOST}:${origin.port}`,
  };
  const joseKeys = { audience: AUDIENCE, issuers: Object.fromEntries(ALGS.map((a) => [a, { issuer: keys[a].issuer, jwk: keys[a].jwk }])) };
  const [edgeward, jose, passthrough] = await Promise.all([
    startWrangler('edgeward', benchWranglerConfig(), { EDGEWARD_CONFIG: JSON.stringify(edgewardConfig) }),
    startWrangler('jose', 'bench/jose-worker/wrangler.toml', { BENCH_KEYS: JSON.stringify(joseKeys) }),
    startWrangler('passthrough', 'bench/passthrough-worker/wrangler.toml', { ORIGIN: `http://${HOST}:${origin.port}` }),
  ]);
  edgeward.kind = 'edgeward';
  jose.kind = 'jose';
  passthrough.kind = 'passthrough';

  const microResult = ONLY === 'e2e' ? null : await micro(edgeward, jose, keys);
  const e2eResult = ONLY === 'micro' ? null : await e2e(edgeward, passthrough, keys);
  const result = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadavg_start: os.loadavg() },
    micro: microResult,
    e2e: e2eResult,
    wrk: spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].trim(),
    secs: (Date.now() - started) / 1000,
  };
  origin.srv.close();
  const text = JSON.stringify(result, null, 2);
  if (OUT) fs.writeFileSync(OUT, text);
  else console.log(text);
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (e) => {
    console.error(`[bench] FAILED: ${e.stack ?? e}`);
    cleanup();
    process.exit(1);
  },
);
