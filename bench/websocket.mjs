// Issue 20: WebSocket overhead through the gate under `wrangler dev` (workerd). One echo origin
// (the `ws` server on 127.0.0.1); the median and p99 round trip of a small message, sent one at a
// time, measured in the same run, interleaved in rounds:
//   direct     — the client to the origin;
//   js-relay   — through a minimal JS Worker that relays frames with a WebSocketPair (the
//                platform's floor for a relaying Worker);
//   gate       — through the production gate (build/), on a `websocket` route with an HS256 JWT
//                (verified at the upgrade; the socket then watched for its exp and revocations).
// Target: gate median ≤ 1.5 × direct + 1 ms.
//
//   node bench/websocket.mjs [--messages 2000] [--rounds 5] [--size 64] [--gate-dir build]
//
// Run from the repository root after `bash scripts/build-worker` (`bench/websocket` does both).
// Prints a Markdown section; BENCHMARKS.md is not rewritten.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { SignJWT } from 'jose';
import { HOST, options, cleanupOnExit, startWrangler, tempDir } from './local.mjs';
import { deriveWranglerConfig, tomlString } from '../scripts/wrangler-derive.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { args, opt } = options('websocket.mjs', ['messages', 'rounds', 'size', 'gate-dir', 'command']);
const MESSAGES = Number(opt('messages', 2000));
const ROUNDS = Number(opt('rounds', 5));
const SIZE = Number(opt('size', 64));
const GATE_DIR = opt('gate-dir', 'build');
const COMMAND = opt('command', `node bench/websocket.mjs${args.length ? ` ${args.join(' ')}` : ''}`);
const log = (...a) => console.error('[websocket]', ...a);

cleanupOnExit({ prefix: 'edgeward-wsbench' });

const JS_RELAY = `export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const resp = await fetch(env.ORIGIN + url.pathname, { headers: { upgrade: 'websocket' } });
    const origin = resp.webSocket;
    if (!origin) return new Response('no socket', { status: 502 });
    const [client, server] = Object.values(new WebSocketPair());
    origin.accept();
    server.accept();
    origin.addEventListener('message', (e) => server.send(e.data));
    server.addEventListener('message', (e) => origin.send(e.data));
    origin.addEventListener('close', (e) => server.close(e.code, e.reason));
    server.addEventListener('close', (e) => origin.close(e.code, e.reason));
    return new Response(null, { status: 101, webSocket: client });
  },
};
`;

async function startEchoOrigin() {
  const srv = http.createServer((_req, res) => res.end('ok'));
  const wss = new WebSocketServer({ server: srv });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise((resolve) => srv.listen(0, HOST, resolve));
  return { port: srv.address().port, stop: () => new Promise((r) => { for (const c of wss.clients) c.terminate(); srv.close(r); }) };
}

function open(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [], { headers, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_q, res) => reject(new Error(`${url}: HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** Round trips of `n` messages sent one at a time on `ws`, in ms. */
async function roundTrips(ws, n, payload) {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise((resolve) => {
      ws.once('message', resolve);
      ws.send(payload);
    });
    out[i] = performance.now() - t0;
  }
  return out;
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs) => quantile(xs, 0.5);

async function main() {
  const echo = await startEchoOrigin();
  const dir = tempDir('wsbench');
  const secret = crypto.randomBytes(32);
  const k = Buffer.from(secret).toString('base64url');
  const config = {
    issuers: [{ issuer: 'https://issuer.bench', audiences: ['api://bench'], algorithms: ['HS256'], jwks: { keys: [{ kty: 'oct', kid: 'h1', alg: 'HS256', k }] } }],
    origin: `http://${HOST}:${echo.port}`,
    routes: [{ path: '/ws/*', websocket: true }],
  };
  const gateCfg = path.join(dir, 'gate.toml');
  fs.writeFileSync(gateCfg, deriveWranglerConfig('wrangler.toml', { drop: ['build', 'vars', 'services', 'durable_objects.bindings'], main: path.join(ROOT, GATE_DIR, 'index.js'), name: 'edgeward-wsbench' }));
  const relayDir = path.join(dir, 'relay');
  fs.mkdirSync(relayDir);
  fs.writeFileSync(path.join(relayDir, 'relay.mjs'), JS_RELAY);
  const relayCfg = path.join(relayDir, 'wrangler.toml');
  fs.writeFileSync(relayCfg, `name = "edgeward-wsbench-relay"\nmain = ${tomlString(path.join(relayDir, 'relay.mjs'))}\ncompatibility_date = "2025-11-01"\n`);
  log('starting the gate and the JS relay (wrangler dev)');
  const gate = await startWrangler('wsbench-gate', gateCfg, { EDGEWARD_CONFIG: JSON.stringify(config) }, { logLevel: 'info', waitReadyLine: true });
  const relay = await startWrangler('wsbench-relay', relayCfg, { ORIGIN: `http://${HOST}:${echo.port}` }, { logLevel: 'info', waitReadyLine: true });
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ sub: 'bench', aud: 'api://bench', iss: 'https://issuer.bench', iat: now, exp: now + 3600 })
    .setProtectedHeader({ alg: 'HS256', kid: 'h1' })
    .sign(secret);
  const targets = {
    direct: () => open(`ws://${HOST}:${echo.port}/ws/echo`),
    'js-relay': () => open(`ws://${HOST}:${relay.port}/ws/echo`),
    gate: () => open(`ws://${HOST}:${gate.port}/ws/echo`, { authorization: `Bearer ${token}` }),
  };
  const sockets = {};
  for (const [name, f] of Object.entries(targets)) sockets[name] = await f();
  const payload = 'x'.repeat(SIZE);
  for (const ws of Object.values(sockets)) await roundTrips(ws, 200, payload); // warm-up
  const all = Object.fromEntries(Object.keys(targets).map((n) => [n, []]));
  const perRound = Object.fromEntries(Object.keys(targets).map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = Object.keys(targets).sort(() => Math.random() - 0.5);
    for (const name of order) {
      const rt = await roundTrips(sockets[name], MESSAGES, payload);
      all[name].push(...rt);
      perRound[name].push(median(rt));
    }
    log(`round ${r + 1}/${ROUNDS}: ${Object.keys(targets).map((n) => `${n} ${perRound[n].at(-1).toFixed(3)} ms`).join(', ')}`);
  }
  for (const ws of Object.values(sockets)) ws.close(1000);
  await gate.stop();
  await relay.stop();
  await echo.stop();

  const med = Object.fromEntries(Object.keys(all).map((n) => [n, median(perRound[n])]));
  const p99 = Object.fromEntries(Object.keys(all).map((n) => [n, quantile(all[n], 0.99)]));
  const limit = 1.5 * med.direct + 1;
  const met = med.gate <= limit;
  const rows = Object.keys(all).map((n) => `| ${n} | ${med[n].toFixed(3)} | ${p99[n].toFixed(3)} | ${(med[n] / med.direct).toFixed(2)}× |`);
  const section = [
    '## WebSockets through the gate (issue 20)',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} with \`${COMMAND}\` (load average at start ${os.loadavg()[0].toFixed(2)}, ${os.cpus().length} cores),`,
    `${ROUNDS} rounds × ${MESSAGES} round trips of a ${SIZE}-byte text message sent one at a time, after 200 warm-up ones; the three`,
    'targets interleaved in shuffled order within each round; median = the median of the rounds\' medians, p99 over all round trips.',
    'Origin: the `ws` echo server on 127.0.0.1; js-relay: a minimal JS Worker relaying with a `WebSocketPair`; gate: the production',
    'gate (`build/`) on a `websocket: true` route with an HS256 JWT (verified at the upgrade; the socket then watched).',
    '',
    '| path | median (ms) | p99 (ms) | median / direct |',
    '|---|---:|---:|---:|',
    ...rows,
    '',
    `Target: gate median ≤ 1.5 × direct + 1 ms = ${limit.toFixed(3)} ms: **${met ? 'met' : 'missed'}** (${med.gate.toFixed(3)} ms; the JS relay floor is ${med['js-relay'].toFixed(3)} ms).`,
    '',
  ].join('\n');
  console.log(section);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
