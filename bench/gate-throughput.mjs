// Issue 15: the gate end to end under `wrangler dev` (workerd), against a plain jose 6 gate
// (bench/jose-gate/) in the same run. Run by bench/gate-throughput, which builds the gate first:
//
//   node bench/gate-throughput.mjs [--secs 10] [--rounds 4] [--conns 16] [--cold 5]
//       [--profile-secs 5] [--only throughput,cold,profile,coldprofile] [--out FILE.json] [--md FILE.md]
//       [--profile-out DIR] [--gate-dir build-gatebench] [--names-dir build-gatebench-names]
//
// 1. Throughput: wrk -t1 -c16 --latency, the same valid RS256 token on every request, against
//    (A) the jose gate writing one JSON decision line per request, (B) Edgeward's gate
//    (build-gatebench/: revocations on with the EDGEWARD_KV binding — local KV, no snapshot, an
//    empty list —, the default cookie policy, one local per-`sub` rate-limit rule that never
//    refuses, `jwks_uri` on a loopback JWKS server) and (C) the jose gate with LOG=0 (reference).
//    Rounds interleave the three (order reversed every other round); medians of rps, p50, p99.
//    Before timing, each gate must forward (200 from the origin, Authorization removed) and
//    refuse a token signed by another key (401); wrk runs with any non-2xx answer fail the bench.
// 2. Cold start: for each gate, alternately, --cold times: a fresh `wrangler dev` (fresh local
//    state: no JWKS in KV), TCP poll of its port, then its output watched for "Ready on" (the
//    proxy Worker opens the port before the Worker is loaded; no fixed sleeps), then one
//    authenticated request (fetches the JWKS), a second one (warm), then 5 more (warm median).
// 3. Profile: 5 s of wrk load on the Edgeward gate built with wasm names kept
//    (build-gatebench-names/, EDGEWARD_KEEP_NAMES=1) and on both jose gates, each in a fresh
//    `wrangler dev`, with V8's CPU profiler driven over wrangler's inspector (Chrome DevTools
//    protocol over a WebSocket): self and inclusive time per function, and per part of the
//    request (log line, origin fetch, ...). (Shares only: the profiler slows every gate.)
// 4. First-request profile (part `coldprofile`): one more fresh start per gate, the profiler on
//    for its first request only.
// --only takes a comma-separated subset of throughput,cold,profile,coldprofile (all by default).
// Everything listens on 127.0.0.1; keys and tokens are generated here and never written to disk.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, options, cdp as cdpClient, cleanup, cleanupOnExit, httpRequest, inspectorTarget, sleep, startWrangler, tempDir } from './local.mjs';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { deriveWranglerConfig, tomlString } from '../scripts/wrangler-derive.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ISSUER = 'https://issuer.gatebench.invalid';
const AUDIENCE = 'api://gatebench';
const KID = 'gatebench-rs256';
const REQ_PATH = '/api/resource';

// ------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------
const { args, opt } = options('gate-throughput.mjs', ['secs', 'rounds', 'conns', 'cold', 'profile-secs', 'only', 'out', 'md', 'gate-dir', 'names-dir', 'profile-out', 'command', 'build-note']);
const SECS = Number(opt('secs', 10)); // wrk duration per run
const ROUNDS = Number(opt('rounds', 4)); // rounds of A, B, C
const CONNS = Number(opt('conns', 16));
const THREADS = 1;
const WARMUP_SECS = 3;
const COLD_N = Number(opt('cold', 5)); // cold starts per gate
const WARM_EXTRA = 5; // requests after the second one, for the warm median
const PROFILE_SECS = Number(opt('profile-secs', 5));
const ONLY = new Set((opt('only', 'throughput,cold,profile,coldprofile')).split(','));
const OUT = opt('out', null);
const MD = opt('md', null);
const PROFILE_OUT = opt('profile-out', null); // directory for the raw .cpuprofile files
const GATE_DIR = opt('gate-dir', 'build-gatebench');
const NAMES_DIR = opt('names-dir', 'build-gatebench-names');
for (const k of ONLY) if (!['throughput', 'cold', 'profile', 'coldprofile'].includes(k)) throw new Error(`--only: unknown part ${k}`);

const log = (...a) => console.error('[gate-bench]', ...a);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ------------------------------------------------------------------------------------------
// Processes and temporary directories (bench/local.mjs): everything started here is removed on
// the way out, and wrangler's scratch directory beside the jose gate's config.
// ------------------------------------------------------------------------------------------
cleanupOnExit({ prefix: 'edgeward-gatebench', also: () => fs.rmSync(path.join(ROOT, 'bench', 'jose-gate', '.wrangler'), { recursive: true, force: true }) });

/** One request on a new connection (bench/local.mjs): { status, text, headers, ms }. */
const request = (port, { path = REQ_PATH, headers = {}, timeoutMs = 60000 } = {}) => httpRequest(port, { path, headers, timeoutMs });

// ------------------------------------------------------------------------------------------
// Keys, JWKS server, origin
// ------------------------------------------------------------------------------------------
async function makeTokens() {
  const now = Math.floor(Date.now() / 1000);
  const { publicKey, privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' };
  const claims = { iss: ISSUER, aud: AUDIENCE, sub: 'bench-user', scope: 'read write', iat: now, exp: now + 3 * 3600 };
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' }).sign(privateKey);
  // Same header and claims, signed by a key the JWKS does not hold: must be refused (401).
  const other = await generateKeyPair('RS256', { modulusLength: 2048 });
  const badToken = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' }).sign(other.privateKey);
  return { jwk, token, badToken };
}

/** Serves the JWKS at /<gate>/jwks.json (one path per gate, to count each gate's fetches). */
function startJwks(jwk) {
  const body = Buffer.from(JSON.stringify({ keys: [jwk] }));
  const fetches = {};
  const srv = http.createServer((req, res) => {
    const m = /^\/([a-z0-9-]+)\/jwks\.json$/.exec(req.url);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    fetches[m[1]] = (fetches[m[1]] ?? 0) + 1;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600', 'content-length': body.length });
    res.end(body);
  });
  return new Promise((resolve) => srv.listen(0, HOST, () => resolve({
    srv, fetches, uri: (gate) => `http://${HOST}:${srv.address().port}/${gate}/jwks.json`,
  })));
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
// The two gates
// ------------------------------------------------------------------------------------------

/** Edgeward's EDGEWARD_CONFIG: one RS256 issuer by jwks_uri, defaults otherwise, one local rule. */
function edgewardConfig(jwks, origin, gate) {
  return {
    issuers: [{ issuer: ISSUER, audiences: [AUDIENCE], jwks_uri: jwks.uri(gate), algorithms: ['RS256'] }],
    origin: origin.url,
    // Defaults kept: revocations.enabled (EDGEWARD_KV), cookies.mode "fix", token cache, CSRF.
    rate_limits: { mode: 'local', rules: [{ name: 'per-sub', key: 'sub', rate: 1000000, period_secs: 1, burst: 1000000 }] },
  };
}

/**
 * The gate's wrangler config for `wrangler dev` of `buildDir`: wrangler.toml (the production
 * gate's KV binding, rate-limiting binding, compatibility date) without [build] (no rebuild),
 * [vars] (EDGEWARD_CONFIG comes by --var), the service binding to the control Worker and its
 * Durable Object bindings (neither used by this configuration's requests: no admin calls, no
 * `exact` limits, no `sensitive` routes; dropped so this gate never binds another `wrangler dev`'s
 * control Worker on this machine), `main` made absolute. Written into a temporary directory.
 */
function gateWranglerConfig(buildDir, label) {
  const main = path.join(ROOT, buildDir, 'index.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run bench/gate-throughput (it builds it) or OUT_DIR=${buildDir} bash scripts/build-worker`);
  const text = deriveWranglerConfig('wrangler.toml', { drop: ['build', 'vars', 'services', 'durable_objects.bindings'], main, name: `edgeward-gatebench-${label}` });
  const file = path.join(tempDir(`config-${label}`), 'wrangler.toml');
  fs.writeFileSync(file, `# Generated by bench/gate-throughput.mjs from wrangler.toml (main = ${tomlString(buildDir)}).\n${text}`);
  return file;
}

const JOSE_CONFIG = path.join('bench', 'jose-gate', 'wrangler.toml');
function joseVars(jwks, origin, gate, logOn) {
  return { JWKS_URI: jwks.uri(gate), ISSUER, AUDIENCE, ALGORITHMS: 'RS256', ORIGIN: origin.url, LOG: logOn ? '1' : '0' };
}

/** Refuses to time a gate that does not forward a valid token or does not refuse a bad one. */
async function verifyGate(g, tokens, origin) {
  const bad = await request(g.port, { headers: { authorization: `Bearer ${tokens.badToken}` } });
  if (bad.status !== 401) throw new Error(`${g.label}: a token signed by another key got ${bad.status} (expected 401): ${bad.text.slice(0, 300)}`);
  const before = origin.state.count;
  const ok = await request(g.port, { headers: { authorization: `Bearer ${tokens.token}` } });
  if (ok.status !== 200 || ok.text !== '{"ok":true}\n') throw new Error(`${g.label}: the valid token got ${ok.status} ${ok.text.slice(0, 300)} (expected 200 from the origin)`);
  if (origin.state.count !== before + 1) throw new Error(`${g.label}: the origin did not see the request`);
  if (origin.state.last.headers.authorization !== undefined) throw new Error(`${g.label}: Authorization was forwarded to the origin`);
  const none = await request(g.port, {});
  if (none.status !== 401) throw new Error(`${g.label}: no token got ${none.status} (expected 401)`);
}

// ------------------------------------------------------------------------------------------
// wrk
// ------------------------------------------------------------------------------------------
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

/** Runs wrk asynchronously (the origin and JWKS server live in this process's event loop). */
async function wrk(g, token, secs) {
  const cpu0 = groupCpuMs(g.pgid);
  const argv = [`-t${THREADS}`, `-c${CONNS}`, `-d${secs}s`, '--latency', '-H', `Authorization: Bearer ${token}`, `http://${HOST}:${g.port}${REQ_PATH}`];
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
  const cpu1 = groupCpuMs(g.pgid);
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}${r.stdout}`);
  const text = r.stdout;
  const requests = Number(/(\d+) requests in/.exec(text)?.[1]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = toMs(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const p99 = toMs(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const bad = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(text)?.[0] ?? null;
  if (!(rps > 0) || Number.isNaN(p50) || Number.isNaN(p99)) throw new Error(`cannot parse wrk output:\n${text}`);
  if (bad > 0) throw new Error(`${g.label}: wrk saw ${bad} non-2xx responses (the bench never times errors):\n${text}`);
  return {
    rps, p50, p99, requests, errors,
    cpu_ms_workerd: (cpu1.workerd - cpu0.workerd) / requests,
    cpu_ms_all: (cpu1.all - cpu0.all) / requests,
  };
}

// ------------------------------------------------------------------------------------------
// 1. Throughput
// ------------------------------------------------------------------------------------------
const SIDES = [
  { name: 'jose_log', label: '(A) jose gate, decision log line' },
  { name: 'edgeward', label: '(B) Edgeward gate' },
  { name: 'jose_nolog', label: '(C) jose gate, no log line' },
];

async function startThroughputGates(tokens, jwks, origin) {
  const edgewardFile = gateWranglerConfig(GATE_DIR, 'tp');
  const [a, b, c] = await Promise.all([
    startWrangler('jose_log', JOSE_CONFIG, joseVars(jwks, origin, 'jose-log', true)),
    startWrangler('edgeward', edgewardFile, { EDGEWARD_CONFIG: JSON.stringify(edgewardConfig(jwks, origin, 'edgeward')) }),
    startWrangler('jose_nolog', JOSE_CONFIG, joseVars(jwks, origin, 'jose-nolog', false)),
  ]);
  const gates = { jose_log: a, edgeward: b, jose_nolog: c };
  for (const g of Object.values(gates)) {
    await verifyGate(g, tokens, origin);
    log(`${g.label} on ${HOST}:${g.port}: forwards a valid token (200, Authorization removed), refuses a bad one (401)`);
  }
  return gates;
}

async function throughput(gates, tokens) {
  for (const s of SIDES) await wrk(gates[s.name], tokens.token, WARMUP_SECS); // warm-up (JIT, caches)
  const runs = Object.fromEntries(SIDES.map((s) => [s.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...SIDES].reverse() : SIDES;
    for (const s of order) {
      const r = await wrk(gates[s.name], tokens.token, SECS);
      r.round = round + 1;
      r.loadavg = os.loadavg()[0];
      runs[s.name].push(r);
      log(`round ${round + 1} ${s.label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, workerd CPU ${r.cpu_ms_workerd.toFixed(3)} ms/req${r.errors ? ` (${r.errors})` : ''}`);
    }
  }
  const med = (xs, k) => median(xs.map((x) => x[k]));
  const out = { secs: SECS, rounds: ROUNDS, connections: CONNS, threads: THREADS, warmup_secs: WARMUP_SECS, sides: {} };
  for (const s of SIDES) {
    const xs = runs[s.name];
    out.sides[s.name] = { label: s.label, rps: med(xs, 'rps'), p50: med(xs, 'p50'), p99: med(xs, 'p99'), cpu_ms_workerd: med(xs, 'cpu_ms_workerd'), cpu_ms_all: med(xs, 'cpu_ms_all'), runs: xs };
  }
  // Per-round ratios (each round's B against the A and C of the same round), and their median.
  const ratioRounds = (k, base) => runs.edgeward.map((r, i) => r[k] / runs[base][i][k]);
  out.ratios = {
    rps_vs_jose_log: { median: median(ratioRounds('rps', 'jose_log')), rounds: ratioRounds('rps', 'jose_log') },
    rps_vs_jose_nolog: { median: median(ratioRounds('rps', 'jose_nolog')), rounds: ratioRounds('rps', 'jose_nolog') },
    p50_vs_jose_log: { median: median(ratioRounds('p50', 'jose_log')), rounds: ratioRounds('p50', 'jose_log') },
    p99_vs_jose_log: { median: median(ratioRounds('p99', 'jose_log')), rounds: ratioRounds('p99', 'jose_log') },
    cpu_vs_jose_log: { median: median(ratioRounds('cpu_ms_workerd', 'jose_log')), rounds: ratioRounds('cpu_ms_workerd', 'jose_log') },
    cpu_all_vs_jose_log: { median: median(ratioRounds('cpu_ms_all', 'jose_log')), rounds: ratioRounds('cpu_ms_all', 'jose_log') },
  };
  return out;
}

// ------------------------------------------------------------------------------------------
// 2. Cold start
// ------------------------------------------------------------------------------------------
async function coldOnce(kind, tokens, jwks, origin, i) {
  const gate = `${kind}-cold-${i}`; // its own JWKS path: counts this instance's fetches
  const persist = tempDir(`persist-cold-${kind}`); // fresh local KV: no JWKS snapshot
  const g = kind === 'edgeward'
    ? await startWrangler(`cold-edgeward-${i}`, gateWranglerConfig(GATE_DIR, `cold-${i}`), { EDGEWARD_CONFIG: JSON.stringify(edgewardConfig(jwks, origin, gate)) }, { logLevel: 'log', persist, waitReadyLine: true })
    : await startWrangler(`cold-jose-${i}`, JOSE_CONFIG, joseVars(jwks, origin, gate, true), { logLevel: 'log', persist, waitReadyLine: true });
  try {
    const auth = { authorization: `Bearer ${tokens.token}` };
    const first = await request(g.port, { headers: auth });
    const firstEndMs = performance.now() - g.t0;
    const fetchesAfterFirst = jwks.fetches[gate] ?? 0;
    const second = await request(g.port, { headers: auth });
    const warm = [];
    for (let k = 0; k < WARM_EXTRA; k++) warm.push(await request(g.port, { headers: auth }));
    for (const [what, r] of [['first', first], ['second', second], ...warm.map((r) => ['warm', r])]) {
      if (r.status !== 200) throw new Error(`cold ${kind} #${i}: ${what} request got ${r.status} ${r.text.slice(0, 300)}`);
    }
    const fetches = jwks.fetches[gate] ?? 0;
    // The decision lines of the requests (Edgeward's `"event":"decision"`, the jose gate's own line).
    await sleep(300); // let wrangler print the last lines (output check only; nothing is timed here)
    const out = g.output();
    const lines = kind === 'edgeward'
      ? (out.match(/"event":"decision"/g) ?? []).length
      : (out.match(/"sub":"bench-user","status":200/g) ?? []).length;
    return {
      ready_ms: g.readyMs, ready_line_ms: g.readyLineMs, first_ms: first.ms, second_ms: second.ms, warm_ms: median(warm.map((r) => r.ms)),
      spawn_to_first_response_ms: firstEndMs, jwks_fetches_first: fetchesAfterFirst, jwks_fetches_total: fetches, decision_lines: lines,
    };
  } finally {
    await g.stop();
  }
}

async function coldStart(tokens, jwks, origin) {
  const runs = { jose: [], edgeward: [] };
  for (let i = 0; i < COLD_N; i++) {
    const order = i % 2 ? ['edgeward', 'jose'] : ['jose', 'edgeward'];
    for (const kind of order) {
      const r = await coldOnce(kind, tokens, jwks, origin, i);
      r.loadavg = os.loadavg()[0];
      runs[kind].push(r);
      log(`cold ${i + 1} ${kind}: port open ${r.ready_ms.toFixed(0)} ms after spawn, "Ready" ${r.ready_line_ms.toFixed(0)} ms; first response ${r.first_ms.toFixed(1)} ms (JWKS fetches ${r.jwks_fetches_first}), second ${r.second_ms.toFixed(1)} ms, warm median ${r.warm_ms.toFixed(1)} ms; decision lines ${r.decision_lines}`);
    }
  }
  const summary = (xs) => Object.fromEntries(['ready_ms', 'ready_line_ms', 'first_ms', 'second_ms', 'warm_ms', 'spawn_to_first_response_ms'].map((k) => [k, median(xs.map((x) => x[k]))]));
  const e = summary(runs.edgeward);
  const j = summary(runs.jose);
  const pairRatio = (k) => runs.edgeward.map((r, i) => r[k] / runs.jose[i][k]);
  return {
    n: COLD_N, warm_extra: WARM_EXTRA, edgeward: { ...e, runs: runs.edgeward }, jose: { ...j, runs: runs.jose },
    ratios: Object.fromEntries(['first_ms', 'second_ms', 'warm_ms', 'ready_ms', 'ready_line_ms', 'spawn_to_first_response_ms'].map((k) => [k, { median: median(pairRatio(k)), of_medians: e[k] / j[k], pairs: pairRatio(k) }])),
  };
}

// ------------------------------------------------------------------------------------------
// 3. CPU profile over wrangler's inspector (Chrome DevTools protocol)
// ------------------------------------------------------------------------------------------
// inspectorTarget and the DevTools client: bench/local.mjs.
const cdp = (url) => cdpClient(url, { log });

/**
 * A readable name for a profile frame: Rust hashes dropped; JavaScript functions with their place
 * (the Worker's handler is `fetch (index.js:N)`, the runtime's fetch plain `fetch`); anonymous
 * wasm-bindgen glue by the import it implements (`glue.get(scriptId:line:col)`).
 */
function frameName(cf, glue) {
  const name = (cf.functionName || '').replace(/::h[0-9a-f]{16}$/, '').replace(/__rustc\[[0-9a-f]+\]::/, '');
  const file = cf.url ? cf.url.replace(/^.*\//, '') : '';
  if (!cf.url || /^\(.*\)$/.test(name) || /\.wasm/.test(cf.url) || cf.url.startsWith('wasm://')) return name;
  const where = `${file}:${cf.lineNumber + 1}`;
  const g = glue?.get(`${cf.scriptId}:${cf.lineNumber}:${cf.columnNumber}`);
  if (!name) return g ? `${g} (glue, ${where})` : `(anonymous) ${where}`;
  return `${name} (${where})`;
}

function frameKind(cf) {
  const name = cf.functionName || '';
  if ((cf.url || '').startsWith('wasm://') || /\.wasm/.test(cf.url || '') || /^(js-to-wasm|wasm-to-js)/.test(name)) return 'wasm';
  if (/^\((program|garbage collector|root|idle)\)$/.test(name)) return 'vm';
  if (cf.url) return 'js';
  return 'native';
}

/**
 * Where each gate's isolate time goes, by what is on the stack: the first group (in order) whose
 * test matches a sample's frames takes it. `labels` is the set of the sample's frame names (the
 * sampled frame and its callers), `self` the sampled frame's name.
 */
const GROUPS = {
  edgeward: [
    ['decision log line (serialized in Rust, console.log)', (labels) => labels.has('edgeward::worker::gate::emit') || [...labels].some((l) => /console::log/.test(l))],
    ['origin subrequest (fetch)', (labels) => [...labels].some((l) => /^worker::global::Fetch::send/.test(l))],
    ['response rebuilt for the client (new Response, headers)', (labels) => [...labels].some((l) => /gen_Response::Response::(new_with|headers)|From<worker::response::Response>/.test(l))],
    ['the rest of the gate in wasm (decision: token cache, revocations, limits, request canonicalization, forward plan; inlined) and its JS glue', (labels) => [...labels].some((l) => /^edgeward::|^js-to-wasm|\(glue, |^\(anonymous\) index\.js:/.test(l))],
    ['runtime outside the Worker\'s code', () => true],
  ],
  jose: [
    ['decision log line (console.log)', (labels) => [...labels].some((l) => /^logDecision \(|^(formatLog|formatWithOptions)/.test(l))],
    ['origin subrequest (fetch)', (labels) => labels.has('fetch') || labels.has('(native, called by fetch)')],
    // After an await, jose's code resumes from the microtask queue, not under the handler.
    ['jose and the handler (JWKS lookup, WebCrypto verify, JWS and claims checks, headers)', (labels, self) => self === 'verify' || [...labels].some((l) => / \(index\.js:\d+\)$|^\(anonymous\) index\.js:/.test(l))],
    ['runtime outside the Worker\'s code', () => true],
  ],
};

/**
 * Self and inclusive time per function and per group. The sampler records what is on the
 * isolate's thread at each tick, wall time: on a loaded machine a preempted thread still counts,
 * so shares matter, not absolute times. A native frame without a name (workerd's C++ behind a
 * JavaScript call, such as console.log) is named after the nearest caller that has a name.
 */
function summarizeProfile(profile, groups, glue) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const labels = new Map(); // node id -> { label, kind, chain: Set(labels) }
  const info = (id) => {
    if (labels.has(id)) return labels.get(id);
    const n = byId.get(id);
    const cf = n.callFrame;
    let label = frameName(cf, glue);
    const kind = frameKind(cf);
    if (!label) {
      let p = parent.get(id);
      let caller = null;
      while (p !== undefined) {
        const pn = frameName(byId.get(p).callFrame, glue);
        if (pn && !pn.startsWith('(anonymous)') && !/\(glue, /.test(pn) && !/^(js-to-wasm|wasm-to-js)/.test(pn) && pn !== '(root)') {
          caller = pn;
          break;
        }
        p = parent.get(p);
      }
      label = caller ? `(native, called by ${caller})` : '(native, top level)';
    }
    const up = parent.get(id);
    const chain = new Set(up === undefined ? [] : info(up).chain);
    chain.add(label);
    const v = { label, kind, chain };
    labels.set(id, v);
    return v;
  };
  const selfMs = new Map();
  const inclMs = new Map();
  const groupMs = new Map((groups ?? []).map(([g]) => [g, 0]));
  const kinds = {};
  let busy = 0;
  let idle = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const dt = (timeDeltas[i + 1] ?? 0) / 1000; // the delta after a sample is the time it stands for
    const v = info(samples[i]);
    if (v.label === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    kinds[v.kind] = (kinds[v.kind] ?? 0) + dt;
    const e = selfMs.get(v.label) ?? { name: v.label, kind: v.kind, ms: 0 };
    e.ms += dt;
    selfMs.set(v.label, e);
    for (const l of v.chain) inclMs.set(l, (inclMs.get(l) ?? 0) + dt);
    const g = (groups ?? []).find(([, test]) => test(v.chain, v.label));
    if (g) groupMs.set(g[0], groupMs.get(g[0]) + dt);
  }
  const top = [...selfMs.values()].sort((a, b) => b.ms - a.ms).slice(0, 25).map((r) => ({ ...r, share: r.ms / busy, incl_share: (inclMs.get(r.name) ?? 0) / busy }));
  const inclusive = [...inclMs].filter(([l]) => l !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, 40).map(([name, ms]) => ({ name, ms, share: ms / busy }));
  return {
    busy_ms: busy, idle_ms: idle,
    kinds: Object.fromEntries(Object.entries(kinds).map(([k, ms]) => [k, { ms, share: ms / busy }])),
    groups: [...groupMs].map(([name, ms]) => ({ name, ms, share: ms / busy })),
    top, inclusive,
  };
}

/**
 * Names the anonymous functions of the Worker's script that are wasm-bindgen glue (the
 * `__wbg_NAME_HASH: function (…) {…}` import table): the script's source comes from
 * Debugger.getScriptSource, asked after the profile is taken.
 */
async function glueNames(c, profile) {
  const frames = profile.nodes.map((n) => n.callFrame).filter((cf) => !cf.functionName && cf.url && cf.scriptId && !/\.wasm|^wasm:/.test(cf.url));
  const glue = new Map();
  if (!frames.length) return glue;
  await c.send('Debugger.enable');
  try {
    const sources = new Map();
    for (const cf of frames) {
      if (!sources.has(cf.scriptId)) {
        try {
          sources.set(cf.scriptId, (await c.send('Debugger.getScriptSource', { scriptId: cf.scriptId })).scriptSource.split('\n'));
        } catch {
          sources.set(cf.scriptId, null);
        }
      }
      const lines = sources.get(cf.scriptId);
      if (!lines) continue;
      // The property name just before the function's position (same line, else the line above).
      const here = (lines[cf.lineNumber] ?? '').slice(0, cf.columnNumber + 1);
      const m = /(__wbg_[A-Za-z0-9_]+?|__wbindgen_[A-Za-z0-9_]+?)(?:_[0-9a-f]{16})?\s*:\s*(?:function)?\s*\(?[^:]*$/.exec(here)
        ?? /(__wbg_[A-Za-z0-9_]+?|__wbindgen_[A-Za-z0-9_]+?)(?:_[0-9a-f]{16})?\s*:\s*(?:function)?[^:]*$/.exec(lines[cf.lineNumber - 1] ?? '');
      if (m) glue.set(`${cf.scriptId}:${cf.lineNumber}:${cf.columnNumber}`, m[1]);
    }
  } finally {
    await c.send('Debugger.disable').catch(() => {});
  }
  return glue;
}

async function profileGate(g, token, groups) {
  const target = await inspectorTarget(g.inspector);
  const c = cdp(target.webSocketDebuggerUrl);
  await c.open;
  try {
    await c.sendRetry('Profiler.enable');
    await c.sendRetry('Profiler.setSamplingInterval', { interval: 100 }); // µs
    await c.sendRetry('Profiler.start');
    const load = await wrk(g, token, PROFILE_SECS);
    const { profile } = await c.sendRetry('Profiler.stop');
    await c.send('Profiler.disable').catch(() => {});
    if (PROFILE_OUT) {
      fs.mkdirSync(PROFILE_OUT, { recursive: true });
      const file = path.join(PROFILE_OUT, `${g.label}.cpuprofile`);
      fs.writeFileSync(file, JSON.stringify(profile));
      log(`wrote ${file} (open it in Chrome DevTools, Performance tab)`);
    }
    let glue = new Map();
    try {
      glue = await glueNames(c, profile);
    } catch (e) {
      log(`glue names not resolved: ${e.message ?? e}`);
    }
    return { target: target.title ?? target.url ?? null, wrk: load, ...summarizeProfile(profile, groups, glue) };
  } finally {
    c.close();
  }
}

/**
 * Each gate profiled in a `wrangler dev` of its own, started for it (after the throughput runs,
 * whose instances are stopped first): wrangler receives every console.log line over the
 * inspector, and after minutes of logging load its inspector proxy lags far enough behind that a
 * new DevTools client's messages go unanswered for a long time.
 */
async function profiles(tokens, jwks, origin) {
  const out = {};
  const errors = {};
  const namesMain = path.join(ROOT, NAMES_DIR, 'index.js');
  const dir = fs.existsSync(namesMain) ? NAMES_DIR : GATE_DIR;
  if (dir !== NAMES_DIR) log(`${NAMES_DIR}/ is missing: profiling ${GATE_DIR}/ (wasm names stripped)`);
  const specs = [
    ['edgeward', () => startWrangler('profile-edgeward', gateWranglerConfig(dir, 'profile'), { EDGEWARD_CONFIG: JSON.stringify(edgewardConfig(jwks, origin, 'edgeward-profile')) }), GROUPS.edgeward],
    ['jose_log', () => startWrangler('profile-jose_log', JOSE_CONFIG, joseVars(jwks, origin, 'jose-log-profile', true)), GROUPS.jose],
    ['jose_nolog', () => startWrangler('profile-jose_nolog', JOSE_CONFIG, joseVars(jwks, origin, 'jose-nolog-profile', false)), GROUPS.jose],
  ];
  const started = await Promise.allSettled(specs.map(([, start]) => start()));
  for (const [i, [name, , groups]] of specs.entries()) {
    if (started[i].status === 'rejected') {
      errors[name] = String(started[i].reason?.message ?? started[i].reason);
      continue;
    }
    const g = started[i].value;
    try {
      await verifyGate(g, tokens, origin);
      await wrk(g, tokens.token, WARMUP_SECS);
      out[name] = await profileGate(g, tokens.token, groups);
      if (name === 'edgeward') out[name] = { build: dir, ...out[name] };
      log(`profile ${name}: ${out[name].busy_ms.toFixed(0)} ms busy, ${out[name].wrk.requests} requests`);
    } catch (e) {
      log(`profile ${name} failed: ${e.message ?? e}`);
      errors[name] = String(e.message ?? e);
    } finally {
      await g.stop();
    }
  }
  return { profiles: out, errors };
}

/**
 * The first request of a fresh isolate under the profiler (one start per gate, Edgeward from the
 * build with wasm names): what it spends its time on beyond a warm request.
 */
async function coldProfiles(tokens, jwks, origin) {
  const out = {};
  const errors = {};
  const namesMain = path.join(ROOT, NAMES_DIR, 'index.js');
  const dir = fs.existsSync(namesMain) ? NAMES_DIR : GATE_DIR;
  for (const kind of ['edgeward', 'jose']) {
    const gate = `${kind}-coldprofile`;
    const persist = tempDir(`persist-coldprofile-${kind}`);
    let g;
    try {
      g = kind === 'edgeward'
        ? await startWrangler('coldprofile-edgeward', gateWranglerConfig(dir, 'coldprofile'), { EDGEWARD_CONFIG: JSON.stringify(edgewardConfig(jwks, origin, gate)) }, { logLevel: 'log', persist, waitReadyLine: true })
        : await startWrangler('coldprofile-jose', JOSE_CONFIG, joseVars(jwks, origin, gate, true), { logLevel: 'log', persist, waitReadyLine: true });
      const target = await inspectorTarget(g.inspector);
      const c = cdp(target.webSocketDebuggerUrl);
      await c.open;
      try {
        await c.sendRetry('Profiler.enable');
        await c.sendRetry('Profiler.setSamplingInterval', { interval: 50 }); // µs
        await c.sendRetry('Profiler.start');
        const first = await request(g.port, { headers: { authorization: `Bearer ${tokens.token}` } });
        const { profile } = await c.sendRetry('Profiler.stop');
        await c.send('Profiler.disable').catch(() => {});
        if (first.status !== 200) throw new Error(`first request got ${first.status} ${first.text.slice(0, 200)}`);
        if (PROFILE_OUT) {
          fs.mkdirSync(PROFILE_OUT, { recursive: true });
          fs.writeFileSync(path.join(PROFILE_OUT, `cold-${kind}.cpuprofile`), JSON.stringify(profile));
        }
        let glue = new Map();
        try {
          glue = await glueNames(c, profile);
        } catch {
          /* names only */
        }
        out[kind] = { build: kind === 'edgeward' ? dir : null, first_ms: first.ms, ...summarizeProfile(profile, null, glue) };
        log(`cold profile ${kind}: first response ${first.ms.toFixed(1)} ms with the profiler on, ${out[kind].busy_ms.toFixed(1)} ms busy in the isolate`);
      } finally {
        c.close();
      }
    } catch (e) {
      log(`cold profile ${kind} failed: ${e.message ?? e}`);
      errors[kind] = String(e.message ?? e);
    } finally {
      await g?.stop();
    }
  }
  return { profiles: out, errors };
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------
const f0 = (x) => Math.round(x).toLocaleString('en-US');
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);

function markdown(r) {
  const L = [];
  L.push(`Command: \`${r.command}\` (wrk ${r.wrk_version.replace(/^wrk /, '')}, wrangler ${r.wrangler}, jose ${r.jose}, Node ${r.node}); ${r.date}, ${r.secs.toFixed(0)} s. Machine: ${r.host.cpus} cores (${r.host.cpu}), shared with other builds and tests; load average ${r.host.loadavg_start.map((x) => x.toFixed(2)).join(' ')} at start, ${r.host.loadavg_end.map((x) => x.toFixed(2)).join(' ')} at the end. Edgeward: \`${r.gate_dir}/\` built by \`OUT_DIR=${r.gate_dir} bash scripts/build-worker\` (${r.builds[r.gate_dir] ? `built ${r.builds[r.gate_dir].built}, wasm ${f0(r.builds[r.gate_dir].wasm_bytes)} B` : 'missing'}; HEAD ${r.git} at the run)${r.profile && r.builds[r.names_dir] ? `; \`${r.names_dir}/\` built ${r.builds[r.names_dir].built}` : ''}.${r.build_note ? ` ${r.build_note}` : ''}`);
  L.push('');
  if (r.throughput) {
    const t = r.throughput;
    L.push(`### Throughput through \`wrangler dev\`: Edgeward vs a jose gate`);
    L.push('');
    L.push(`\`wrk -t${t.threads} -c${t.connections} -d${t.secs}s --latency\`, the same valid RS256 token on every request, \`GET ${REQ_PATH}\` forwarded to a loopback Node origin (200, 12-byte body) with Authorization removed; the RS256 key from a loopback JWKS server (\`Cache-Control: max-age=3600\`), the same for every gate. ${t.rounds} rounds, the three gates interleaved (order reversed every other round) after a ${t.warmup_secs} s warm-up each; medians. (A) \`bench/jose-gate/\`: \`createRemoteJWKSet\` + \`jwtVerify(token, jwks, {issuer, audience, algorithms})\` on every request, forward, one \`console.log\` JSON line (iss, sub, status, path, ms). (B) Edgeward's gate (\`${r.gate_dir}/\`, production features): token cache (the token is verified once, then a cache hit), revocations on (local KV, no snapshot: an empty list), default cookie policy, one \`local\` per-\`sub\` rule (1,000,000 per 1 s, burst 1,000,000), its decision log line. (C) = (A) with \`LOG=0\`. wrangler runs with \`--log-level warn\`: the lines are written (they travel to wrangler over the inspector) but not printed.`);
    L.push('');
    L.push('| gate | req/s | p50 ms | p99 ms | workerd CPU ms/request | all CPU ms/request | runs (req/s) |');
    L.push('|---|---:|---:|---:|---:|---:|---|');
    for (const s of SIDES) {
      const x = t.sides[s.name];
      L.push(`| ${x.label} | ${f0(x.rps)} | ${f2(x.p50)} | ${f2(x.p99)} | ${x.cpu_ms_workerd.toFixed(3)} | ${x.cpu_ms_all.toFixed(3)} | ${x.runs.map((q) => f0(q.rps)).join(', ')} |`);
    }
    L.push('');
    L.push('*workerd CPU ms/request*: user + system CPU of that `wrangler dev`\'s workerd processes (its proxy Worker and the Worker) during the run, per request served; *all CPU*: the same for every process of that `wrangler dev`, wrangler\'s own Node process included (it receives each console.log line over the inspector, printed or not). CPU per request moves far less with the machine\'s other load than req/s and latency do.');
    L.push('');
    const ro = t.ratios;
    const met = ro.rps_vs_jose_log.median >= 1.0;
    L.push('| ratio (B) Edgeward / … (median of per-round ratios) | measured | per round | target | |');
    L.push('|---|---:|---|---|---|');
    L.push(`| throughput / (A) jose with log line | ${f2(ro.rps_vs_jose_log.median)} | ${ro.rps_vs_jose_log.rounds.map(f2).join(', ')} | ≥ 1.00 | ${met ? '**met**' : `**missed** by ${f0((1 - ro.rps_vs_jose_log.median) * 100)} %`} |`);
    L.push(`| p50 latency / (A) | ${f2(ro.p50_vs_jose_log.median)} | ${ro.p50_vs_jose_log.rounds.map(f2).join(', ')} | — | |`);
    L.push(`| p99 latency / (A) | ${f2(ro.p99_vs_jose_log.median)} | ${ro.p99_vs_jose_log.rounds.map(f2).join(', ')} | — | |`);
    L.push(`| workerd CPU per request / (A) | ${f2(ro.cpu_vs_jose_log.median)} | ${ro.cpu_vs_jose_log.rounds.map(f2).join(', ')} | — | |`);
    L.push(`| all CPU per request / (A) | ${f2(ro.cpu_all_vs_jose_log.median)} | ${ro.cpu_all_vs_jose_log.rounds.map(f2).join(', ')} | — | |`);
    L.push(`| throughput / (C) jose without log line (reference) | ${f2(ro.rps_vs_jose_nolog.median)} | ${ro.rps_vs_jose_nolog.rounds.map(f2).join(', ')} | — | |`);
    L.push('');
  }
  if (r.cold) {
    const c = r.cold;
    L.push('### Cold start: first response from a fresh `wrangler dev`');
    L.push('');
    L.push(`${c.n} starts per gate, alternating (jose, Edgeward, Edgeward, jose, …). Each: \`wrangler dev\` with fresh local state (so Edgeward finds no JWKS in KV), its port polled every 20 ms until it accepts TCP, then its output watched (every 10 ms) until wrangler prints \`Ready on http://…\`, then one authenticated request on a new connection (timed from send to last byte; both gates fetch the JWKS in it — Edgeward also parses its config and reads the revocation snapshot and the JWKS from KV, both absent —, import the key and verify), a second one, then ${c.warm_extra} more (their median: *warm*). wrangler's proxy Worker opens the port long before the Worker is loaded and holds requests until it is: the wait for \`Ready on\` keeps that start-up out of *first response* (a few tens of ms between that line and the proxy letting requests through can remain in it, for both gates alike). workerd evaluates the Worker's module when it loads it — for Edgeward that includes instantiating the wasm module, which the generated \`index.js\` does at module scope — so that part is in *\`Ready on\`*, with wrangler's own start and bundling, not in *first response*; V8 compiles wasm functions lazily, on first call, which is in *first response*. Medians; ratio = Edgeward / jose, median of the per-pair ratios.`);
    L.push('');
    L.push('| | jose gate (A) ms | Edgeward ms | ratio | Edgeward runs | jose runs |');
    L.push('|---|---:|---:|---:|---|---|');
    const rows = [['first response', 'first_ms'], ['second response', 'second_ms'], ['warm (median of the next 5)', 'warm_ms'], ['port open, after spawn', 'ready_ms'], ['"Ready on" printed, after spawn', 'ready_line_ms'], ['spawn → first response', 'spawn_to_first_response_ms']];
    for (const [label, k] of rows) {
      L.push(`| ${label} | ${f1(c.jose[k])} | ${f1(c.edgeward[k])} | ${f2(c.ratios[k].median)} | ${c.edgeward.runs.map((x) => f1(x[k])).join(', ')} | ${c.jose.runs.map((x) => f1(x[k])).join(', ')} |`);
    }
    const fetchOk = [...c.edgeward.runs, ...c.jose.runs].every((x) => x.jwks_fetches_first === 1 && x.jwks_fetches_total === 1);
    L.push('');
    L.push(`JWKS fetches: ${fetchOk ? 'exactly one per start, in the first request, for both gates' : `Edgeward ${c.edgeward.runs.map((x) => `${x.jwks_fetches_first}/${x.jwks_fetches_total}`).join(', ')}; jose ${c.jose.runs.map((x) => `${x.jwks_fetches_first}/${x.jwks_fetches_total}`).join(', ')} (first request / all)`}. Decision lines seen in wrangler's output per start: Edgeward ${c.edgeward.runs.map((x) => x.decision_lines).join(', ')}; jose ${c.jose.runs.map((x) => x.decision_lines).join(', ')} (of ${2 + c.warm_extra} requests).`);
    L.push('');
  }
  if (r.cold_profile) {
    const cp = r.cold_profile;
    L.push('### The first request of a fresh isolate, under the profiler');
    L.push('');
    L.push(`One more fresh \`wrangler dev\` per gate (not part of the medians above; Edgeward from \`${cp.edgeward?.build ?? r.names_dir}/\`), the profiler attached after \`Ready on\` and on for the first request only (50 µs interval; wall time on the isolate's thread). First response with the profiler on: Edgeward ${cp.edgeward ? f1(cp.edgeward.first_ms) : '—'} ms, jose ${cp.jose ? f1(cp.jose.first_ms) : '—'} ms; busy samples in the isolate: Edgeward ${cp.edgeward ? f1(cp.edgeward.busy_ms) : '—'} ms, jose ${cp.jose ? f1(cp.jose.busy_ms) : '—'} ms (the rest is waiting: the JWKS fetch, KV, the origin). Edgeward writes two lines in this request (\`jwks_fetch\` and the decision), jose one; the first console.log of an isolate also sets up workerd's console formatting (\`formatWithOptions\`).`);
    L.push('');
    for (const [kind, p] of Object.entries(cp)) {
      const keep = kind === 'edgeward'
        // Edgeward's own steps and the runtime calls they make; the executor and promise plumbing
        // (wake, settled, js::call, …), which sits above everything after an await, left out.
        ? (x) => /^(edgeward|worker|web_sys)::|^<edgeward|^formatWithOptions/.test(x.name) && !/executor::|promise::|runtime::js::/.test(x.name) && x.ms < 0.75 * p.busy_ms
        : (x) => / \((index\.js|node-internal:[a-z_]+):\d+\)$/.test(x.name) && !/^(__facade|next |fetch \(index\.js:9)/.test(x.name) && x.ms < 0.75 * p.busy_ms || /^importKey$|^fetch$/.test(x.name);
      L.push(`${kind === 'edgeward' ? 'Edgeward' : 'jose gate'}, first request — inclusive time of the main functions (ms of ${f1(p.busy_ms)} busy; self time: ${p.top.slice(0, 5).map((x) => `\`${x.name.slice(0, 60)}\` ${f1(x.ms)}`).join(', ')}):`);
      L.push('');
      L.push('| function | inclusive ms |');
      L.push('|---|---:|');
      for (const x of p.inclusive.filter(keep).slice(0, 12)) L.push(`| \`${x.name.replace(/\|/g, '\\|').slice(0, 110)}\` | ${f1(x.ms)} |`);
      L.push('');
    }
  }
  for (const [name, e] of Object.entries(r.cold_profile_errors ?? {})) {
    L.push(`First-request profile of ${name}: not taken (${e}).`);
    L.push('');
  }
  if (r.profile) {
    L.push('### Where the time goes: V8 CPU profiles under the same load');
    L.push('');
    L.push(`${PROFILE_SECS} s of the same wrk load per gate with V8's sampling profiler on (100 µs interval), started and stopped over wrangler's inspector (\`--inspector-port\`; Chrome DevTools protocol over a WebSocket: \`Profiler.enable\`, \`start\`, \`stop\`). Edgeward profiled from \`${r.profile.edgeward?.build}/\`${r.profile.edgeward?.build === r.names_dir ? ' (the same source built with `EDGEWARD_KEEP_NAMES=1`, so wasm functions have their Rust names)' : ' (wasm names stripped)'}, each gate in a \`wrangler dev\` of its own started for the profile (after a ${WARMUP_SECS} s warm-up). The profiler sees the Worker's isolate thread only — not workerd's proxy Worker, nor its network code outside JavaScript calls — and samples wall time on that thread: on this loaded machine a preempted thread still counts, so read shares, not absolute times. A native frame without a name (workerd's C++ behind a JavaScript call) is named after its nearest named caller; *(native, top level)* is workerd's own work in the isolate outside any Worker function (request and response plumbing, promise resolution). The profiler slows every gate: the req/s figures here are not comparable with the table above. Raw profiles: \`${r.profile_out ?? '(not kept: --profile-out DIR)'}\`.`);
    L.push('');
    L.push('| gate | requests | req/s while profiling | busy samples, ms | idle, ms | by kind (share of busy) |');
    L.push('|---|---:|---:|---:|---:|---|');
    const gateLabel = { edgeward: '(B) Edgeward', jose_log: '(A) jose, log line', jose_nolog: '(C) jose, no log line' };
    for (const [name, p] of Object.entries(r.profile)) {
      L.push(`| ${gateLabel[name]} | ${f0(p.wrk.requests)} | ${f0(p.wrk.rps)} | ${f0(p.busy_ms)} | ${f0(p.idle_ms)} | ${Object.entries(p.kinds).sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => `${k} ${f0(v.share * 100)} %`).join(', ')} |`);
    }
    L.push('');
    L.push('Where the isolate\'s busy time goes (each sample counted once, in the first group its stack matches):');
    L.push('');
    L.push('| gate | part | share of busy |');
    L.push('|---|---|---:|');
    for (const [name, p] of Object.entries(r.profile)) {
      for (const x of p.groups) L.push(`| ${gateLabel[name]} | ${x.name} | ${f1(x.share * 100)} % |`);
    }
    L.push('');
    for (const [name, p] of Object.entries(r.profile)) {
      L.push(`Top self time, ${gateLabel[name]}:`);
      L.push('');
      L.push('| function | kind | self % of busy | inclusive % |');
      L.push('|---|---|---:|---:|');
      for (const x of p.top.slice(0, name === 'edgeward' ? 12 : 8)) {
        L.push(`| \`${x.name.replace(/\|/g, '\\|').slice(0, 110)}\` | ${x.kind} | ${f1(x.share * 100)} | ${f1(x.incl_share * 100)} |`);
      }
      L.push('');
    }
    const e = r.profile.edgeward;
    if (e) {
      // Inclusive time of Edgeward's own functions and the runtime calls they make (wrappers that
      // hold nearly every sample are left out).
      const rows = e.inclusive.filter((x) => /^(edgeward|worker|web_sys)::/.test(x.name) && x.share < 0.9).slice(0, 10);
      L.push('Inclusive time of Edgeward\'s functions (and the runtime bindings they call), share of busy samples:');
      L.push('');
      L.push('| function | inclusive % |');
      L.push('|---|---:|');
      for (const x of rows) L.push(`| \`${x.name.replace(/\|/g, '\\|').slice(0, 110)}\` | ${f1(x.share * 100)} |`);
      L.push('');
    }
  }
  for (const [name, e] of Object.entries(r.profile_errors ?? {})) {
    L.push(`Profile of ${name}: not taken (${e}).`);
    L.push('');
  }
  return L.join('\n');
}

// ------------------------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  const loadStart = os.loadavg();
  const tokens = await makeTokens();
  const jwks = await startJwks(tokens.jwk);
  const origin = await startOrigin();
  const result = {
    command: opt('command', `node bench/gate-throughput.mjs${args.length ? ` ${args.join(' ')}` : ''}`),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' '),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg_start: loadStart },
    node: process.version,
    wrk_version: spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].trim(),
    wrangler: JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'wrangler', 'package.json'), 'utf8')).version,
    jose: JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'jose', 'package.json'), 'utf8')).version,
    git: (() => {
      const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
      const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
      return `${rev}${dirty ? ' (src/ modified)' : ''}`;
    })(),
    gate_dir: GATE_DIR,
    names_dir: NAMES_DIR,
    // When each build was made (src/ may change between builds and runs).
    builds: Object.fromEntries([GATE_DIR, NAMES_DIR].map((d) => {
      try {
        const st = fs.statSync(path.join(ROOT, d, 'index_bg.wasm'));
        return [d, { built: st.mtime.toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' '), wasm_bytes: st.size }];
      } catch {
        return [d, null];
      }
    })),
    build_note: opt('build-note', '').trim(),
    profile_out: PROFILE_OUT,
  };
  if (ONLY.has('throughput')) {
    const gates = await startThroughputGates(tokens, jwks, origin);
    result.throughput = await throughput(gates, tokens);
    for (const g of Object.values(gates)) await g.stop();
  }
  if (ONLY.has('profile')) {
    const { profiles: p, errors } = await profiles(tokens, jwks, origin);
    if (Object.keys(p).length) result.profile = p;
    if (Object.keys(errors).length) result.profile_errors = errors;
  }
  if (ONLY.has('cold')) result.cold = await coldStart(tokens, jwks, origin);
  if (ONLY.has('coldprofile')) {
    const { profiles: p, errors } = await coldProfiles(tokens, jwks, origin);
    if (Object.keys(p).length) result.cold_profile = p;
    if (Object.keys(errors).length) result.cold_profile_errors = errors;
  }
  result.host.loadavg_end = os.loadavg();
  result.secs = (Date.now() - started) / 1000;
  jwks.srv.close();
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
    console.error(`[gate-bench] FAILED: ${e.stack ?? e}`);
    cleanup();
    process.exit(1);
  },
);
