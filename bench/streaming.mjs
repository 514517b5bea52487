// Issue 20: bodies stream both ways through the gate, never buffered. Under `wrangler dev`
// (workerd), with the production gate (a public route, `/stream/*`, in front of a loopback origin)
// and, in the same run, the same requests sent straight to the origin (the baseline):
//
//   (1) Server-Sent Events: the origin answers `text/event-stream`, sends one event at once and
//       the next ones `--sse-gap-ms` apart (small events, about 50 bytes: a proxy that buffers
//       would hold them). Per stream: the time from sending the request to the first event
//       parsed, and every event's delivery delay (arrival − the origin's send time; the origin
//       writes its send time into the event, both read from this machine's clock). "Arrives as
//       sent": every event reaches the client before the origin sends the next one (and none
//       later than half the gap). Gate and direct streams alternate; `--sse-streams` each.
//   (2) `--mib` MiB down: the origin generates the body as it sends it (64 KiB chunks, waiting
//       for `drain`: never held in memory); the client hashes what it receives (SHA-256) and
//       compares with the expected digest (computed once up front from the same generator).
//   (3) `--mib` MiB up, twice: chunked (no Content-Length) and with a Content-Length. The client
//       generates the body as it sends it; the origin counts and hashes it and answers
//       `{"bytes","chunks","sha256"}`.
//   Each transfer one warm-up round and `--rounds` timed rounds, through the gate and directly,
//   alternating which goes first; throughput is MiB / (request sent → last byte of the answer),
//   median of the rounds.
//
// The gate isolate's memory, over wrangler's inspector (bench/local.mjs isolateMemory: JS heap
// used after a full GC + ArrayBuffer backing stores + every WebAssembly.Memory): before each
// transfer kind, after it, and, during every gate transfer, `Runtime.getHeapUsage` polled every
// 100 ms (no GC, so garbage counts: an upper bound of what is live; backing stores included, which
// is where a buffered body would sit), plus the wasm memory's size after the transfer (it only
// grows: its size after is its peak). Growth = peak during − before; target < 64 MiB each way.
// workerd's resident memory (every workerd process of that wrangler dev, /proc/PID/status VmRSS,
// polled every 100 ms) is reported beside it: buffers workerd keeps outside the isolate show there.
//
// (4) The control: a JS Worker of a few lines that buffers (`await r.arrayBuffer()`), under its own
//     wrangler dev in front of the same origin: one SSE stream and a `--control-mib` MiB download
//     measured the same way, to show the measurements do see buffering (0: skipped).
//
//   node bench/streaming.mjs [--build-dir build] [--mib 256] [--rounds 3] [--sse-streams 10]
//       [--sse-events 6] [--sse-gap-ms 200] [--target-mib 64] [--control-mib 64] [--out FILE.json]
//
// Run from the repository root after `bash scripts/build-worker` (`bench/streaming` does both).
// The origin runs in a worker thread of this process (its own event loop, so the client's
// hashing does not delay its timers or its sends); everything listens on 127.0.0.1. The helpers
// (wrangler start, CDP client, the memory measurement) are bench/local.mjs's.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const HOST = '127.0.0.1';
/** Absolute time in ms, comparable between threads (performance.now() is per thread). */
const clock = () => performance.timeOrigin + performance.now();

/** Chunk i of a generated body: the random block with i in its first 8 bytes (a new buffer). */
function chunkOf(base, i, size) {
  const c = Buffer.allocUnsafe(size);
  base.copy(c, 0, 0, size);
  if (size >= 8) c.writeBigUInt64BE(BigInt(i), 0);
  return c;
}
const chunkCount = (bytes) => Math.ceil(bytes / CHUNK);
const chunkSize = (bytes, i) => Math.min(CHUNK, bytes - i * CHUNK);

// ------------------------------------------------------------------------------------------
// The origin (a worker thread)
// ------------------------------------------------------------------------------------------
if (!isMainThread) {
  const base = Buffer.from(workerData.base);
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, `http://${HOST}`);
    const q = (k, d) => Number(url.searchParams.get(k) ?? d);
    if (url.pathname === '/stream/sse') {
      // Small events, the first at once, the others `gap` ms apart (the deliberate pauses).
      const n = q('n', 6);
      const gap = q('gap', 200);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const send = () => {
        res.write(`id: ${i}\nevent: tick\ndata: {"i":${i},"t":${clock().toFixed(3)}}\n\n`);
        if (++i < n) setTimeout(send, gap);
        else res.end();
      };
      send();
      return;
    }
    if (url.pathname === '/stream/down') {
      const bytes = q('bytes', 0);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
      const n = chunkCount(bytes);
      let i = 0;
      const pump = () => {
        while (i < n) {
          const ok = res.write(chunkOf(base, i, chunkSize(bytes, i)));
          i++;
          if (!ok) return res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => {
        i = n + 1; // the client went away: stop generating
      });
      pump();
      return;
    }
    if (url.pathname === '/stream/upload' && req.method === 'POST') {
      const h = crypto.createHash('sha256');
      let bytes = 0;
      let chunks = 0;
      let firstAt = null;
      req.on('data', (c) => {
        firstAt ??= clock();
        bytes += c.length;
        chunks++;
        h.update(c);
      });
      req.on('end', () => {
        const body = JSON.stringify({ bytes, chunks, first_at: firstAt, sha256: h.digest('hex'), chunked: req.headers['transfer-encoding'] ?? null, content_length: req.headers['content-length'] ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
      return;
    }
    if (url.pathname === '/stream/ping') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 }).end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-length': 0 }).end();
  });
  srv.keepAliveTimeout = 120000;
  srv.listen(0, HOST, () => parentPort.postMessage({ port: srv.address().port }));
  parentPort.on('message', (m) => {
    if (m === 'close') srv.close(() => process.exit(0));
  });
} else {
  main().then(() => process.exit(0), (e) => {
    console.error(e.stack ?? e);
    process.exit(1);
  });
}

async function main() {
  const { options, cleanupOnExit, httpRequest, isolateMemory, runtimeSession, startWrangler, tempDir, sleep } = await import('./local.mjs');
  const { deriveWranglerConfig, tomlString } = await import('../scripts/wrangler-derive.mjs');

  const { args, opt } = options('streaming.mjs', ['build-dir', 'mib', 'rounds', 'sse-streams', 'sse-events', 'sse-gap-ms', 'target-mib', 'control-mib', 'out', 'command']);
  const BUILD_DIR = opt('build-dir', 'build');
  const BYTES = Math.round(Number(opt('mib', 256)) * MiB);
  const ROUNDS = Number(opt('rounds', 3));
  const SSE_STREAMS = Number(opt('sse-streams', 10));
  const SSE_EVENTS = Number(opt('sse-events', 6));
  const SSE_GAP = Number(opt('sse-gap-ms', 200));
  const TARGET_MIB = Number(opt('target-mib', 64));
  // The buffering control's download (0: no control).
  const CONTROL_BYTES = Math.round(Number(opt('control-mib', 64)) * MiB);
  const OUT = opt('out', null);
  const COMMAND = opt('command', `node bench/streaming.mjs${args.length ? ` ${args.join(' ')}` : ''}`);
  const log = (...a) => console.error('[streaming]', ...a);
  let originThread = null;
  cleanupOnExit({ prefix: 'edgeward-streaming', also: () => originThread?.terminate() });

  const started = new Date();
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const loadStart = loadavg();
  const mainJs = path.join(ROOT, BUILD_DIR, 'index.js');
  if (!fs.existsSync(mainJs)) throw new Error(`${mainJs} is missing: bash scripts/build-worker first (OUT_DIR=${BUILD_DIR})`);

  // The generated body and its digest (the same generator on both sides).
  const base = crypto.randomBytes(CHUNK);
  const digests = new Map();
  const digestOf = (bytes) => {
    if (!digests.has(bytes)) {
      const h = crypto.createHash('sha256');
      for (let i = 0; i < chunkCount(bytes); i++) h.update(chunkOf(base, i, chunkSize(bytes, i)));
      digests.set(bytes, h.digest('hex'));
    }
    return digests.get(bytes);
  };
  const expected = digestOf(BYTES);

  // The origin.
  originThread = new Worker(fileURLToPath(import.meta.url), { workerData: { base } });
  const [{ port: originPort }] = await once(originThread, 'message');
  originThread.on('error', (e) => {
    console.error('origin thread failed:', e);
    process.exit(1);
  });
  const originUrl = `http://${HOST}:${originPort}`;
  log(`origin on ${originUrl}`);

  // The gate: wrangler.toml's bindings (KV, ...), main in BUILD_DIR, a public route to the origin.
  // The issuer (an inline HS256 key nobody signs with) is only there because one is required:
  // /stream/* needs no credential; any other path answers 401 (the GC trigger below).
  const config = {
    issuers: [{ issuer: 'https://issuer.invalid', jwks: { keys: [{ kty: 'oct', kid: 'k1', alg: 'HS256', k: crypto.randomBytes(32).toString('base64url') }] }, algorithms: ['HS256'] }],
    origin: originUrl,
    routes: [{ path: '/stream/*', public: true }],
  };
  const dir = tempDir('run');
  const cfgFile = path.join(dir, 'wrangler.toml');
  fs.writeFileSync(cfgFile, `# Generated by bench/streaming.mjs from wrangler.toml (main = ${tomlString(mainJs)}).\n${deriveWranglerConfig('wrangler.toml', { drop: ['build', 'vars', 'services', 'durable_objects.bindings'], main: mainJs, name: 'edgeward-streaming' })}`);
  log(`starting wrangler dev (gate from ${BUILD_DIR}/)`);
  const g = await startWrangler('gate', cfgFile, { EDGEWARD_CONFIG: JSON.stringify(config) }, { logLevel: 'info', waitReadyLine: true });
  log(`gate on http://${HOST}:${g.port}, inspector ${g.inspector}`);
  // The second baseline: bench/run's pass-through Worker (fetch(new Request(ORIGIN + path,
  // request)), the response returned as it is), what any Worker in front of the origin costs
  // under wrangler dev (its proxy Worker included) without the gate.
  const ptDir = path.join(ROOT, 'bench', 'passthrough-worker');
  const ptScratch = path.join(ptDir, '.wrangler');
  if (!fs.existsSync(ptScratch)) process.on('exit', () => fs.rmSync(ptScratch, { recursive: true, force: true }));
  log('starting wrangler dev (bench/passthrough-worker)');
  const pt = await startWrangler('passthrough', path.join(ptDir, 'wrangler.toml'), { ORIGIN: originUrl }, { logLevel: 'info', waitReadyLine: true });

  const VIAS = ['direct', 'passthrough', 'gate'];
  /** The paths in the order of round r (rotated each round). */
  const order = (r) => VIAS.map((_, i) => VIAS[(i + r + VIAS.length) % VIAS.length]);
  const agents = Object.fromEntries(VIAS.map((v) => [v, new http.Agent({ keepAlive: true, maxSockets: 4 })]));
  const portOf = { gate: g.port, passthrough: pt.port, direct: originPort };

  // Warm-up: the isolates, the connections.
  for (const via of VIAS) {
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(portOf[via], { path: '/stream/ping', agent: agents[via] });
      if (r.status !== 200 || r.text !== 'ok\n') throw new Error(`warm-up ${via}: ${r.status} ${r.text.slice(0, 300)}\n${g.output().slice(-3000)}`);
    }
  }

  // ----------------------------------------------------------------------------------------
  // Memory: the isolate over the inspector, workerd's RSS from /proc
  // ----------------------------------------------------------------------------------------
  // `w`: { g (startWrangler), session (runtimeSession) }: the gate, or the buffering control.
  // (The session is opened after the SSE streams: with a DevTools client attached, every log line
  // of the gate also travels to it.)
  const gate = { g, session: null };
  const total = (m) => m.js_used + (m.backing_storage ?? 0) + m.wasm_bytes;
  const snapshot = async (w) => {
    const m = await isolateMemory(w.session, async () => {
      const r = await httpRequest(w.g.port, { path: '/api/gc-trigger', agent: false });
      if (r.status !== 401) throw new Error(`the GC trigger request got ${r.status}`);
    });
    return { ...m, total: total(m), rss: workerdRss(w.g.pgid) };
  };
  /** snapshot(), asked again (on a new session) when the inspector does not answer. */
  const snapshotRetry = async (w) => {
    for (let i = 1; ; i++) {
      try {
        return await snapshot(w);
      } catch (e) {
        if (i >= 3 || !/no answer/.test(e.message)) throw e;
        log(`isolate measurement: ${e.message}; again on a new inspector session`);
        w.session.close();
        w.session = await runtimeSession(w.g.inspector);
      }
    }
  };
  /** Every workerd process in the process group `pgid` (a wrangler dev), and their summed VmRSS. */
  function workerdRss(pgid) {
    let sum = 0;
    for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        if (Number(after[2]) !== pgid || !/workerd/.test(comm)) continue;
        const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) sum += Number(m[1]) * 1024;
      } catch {
        /* gone */
      }
    }
    return sum;
  }
  const wasmNow = async ({ session }) => {
    const contextId = session.contexts.at(-1).id;
    const proto = await session.send('Runtime.evaluate', { expression: 'WebAssembly.Memory.prototype', contextId, objectGroup: 'stream' });
    const { objects } = await session.send('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: 'stream' }, 60000);
    const sizes = await session.send('Runtime.callFunctionOn', {
      objectId: objects.objectId, functionDeclaration: 'function () { return Array.from(this, (m) => m.buffer.byteLength); }', returnByValue: true, objectGroup: 'stream',
    });
    await session.send('Runtime.releaseObjectGroup', { objectGroup: 'stream' }).catch(() => {});
    return sizes.result.value.reduce((a, b) => a + b, 0);
  };
  /** Polls the isolate's heap (no GC) and workerd's RSS every 100 ms until stop(). */
  function sampler(w) {
    let running = true;
    const s = { heap: [], js: [], backing: [], rss: [], unanswered: 0 };
    const heapLoop = (async () => {
      while (running) {
        try {
          const h = await w.session.send('Runtime.getHeapUsage', {}, 5000);
          s.heap.push(h.usedSize + (h.backingStorageSize ?? 0));
          s.js.push(h.usedSize);
          s.backing.push(h.backingStorageSize ?? 0);
        } catch {
          s.unanswered++;
        }
        await sleep(100);
      }
    })();
    const rssLoop = (async () => {
      while (running) {
        s.rss.push(workerdRss(w.g.pgid));
        await sleep(100);
      }
    })();
    return async () => {
      running = false;
      await Promise.all([heapLoop, rssLoop]);
      const wasm = await wasmNow(w);
      return { samples: s.heap.length, unanswered: s.unanswered, peak_heap: Math.max(0, ...s.heap), peak_js: Math.max(0, ...s.js), peak_backing: Math.max(0, ...s.backing), wasm, peak: Math.max(0, ...s.heap) + wasm, peak_rss: Math.max(0, ...s.rss) };
    };
  }

  // ----------------------------------------------------------------------------------------
  // (1) Server-Sent Events
  // ----------------------------------------------------------------------------------------
  /** One SSE stream: the first event's time from the request, every event's delivery delay. */
  function sseStream(via) {
    return new Promise((resolve, reject) => {
      const t0 = clock();
      const req = http.request({ host: HOST, port: portOf[via], path: `/stream/sse?n=${SSE_EVENTS}&gap=${SSE_GAP}`, agent: agents[via], headers: { accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`SSE ${via}: ${res.statusCode}`));
        const headersMs = clock() - t0;
        res.setEncoding('utf8');
        let buf = '';
        const events = [];
        res.on('data', (text) => {
          const at = clock();
          buf += text;
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, k);
            buf = buf.slice(k + 2);
            const data = /^data: (.*)$/m.exec(block);
            if (data) events.push({ ...JSON.parse(data[1]), at });
          }
        });
        res.on('error', reject);
        res.on('end', () => {
          if (events.length !== SSE_EVENTS || events.some((e, i) => e.i !== i)) return reject(new Error(`SSE ${via}: got events ${events.map((e) => e.i)}`));
          resolve({
            via, headers_ms: headersMs, first_ms: events[0].at - t0,
            delays: events.map((e) => e.at - e.t),
            // Event i arrived before the origin sent event i + 1 (the last: before the stream ended).
            before_next: events.slice(0, -1).map((e, i) => e.at < events[i + 1].t),
            content_type: res.headers['content-type'],
          });
        });
      });
      req.setTimeout(60000, () => req.destroy(new Error(`SSE ${via} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }
  log(`gate's workerd RSS ${mib(workerdRss(g.pgid))} MiB`);
  log(`SSE: ${SSE_STREAMS} streams each way, ${SSE_EVENTS} events ${SSE_GAP} ms apart`);
  const sse = Object.fromEntries(VIAS.map((v) => [v, []]));
  for (const via of VIAS) await sseStream(via); // warm-up, not counted
  for (let i = 0; i < SSE_STREAMS; i++) {
    for (const via of order(i)) sse[via].push(await sseStream(via));
  }

  log(`gate's workerd RSS ${mib(workerdRss(g.pgid))} MiB`);
  gate.session = await runtimeSession(g.inspector);

  // ----------------------------------------------------------------------------------------
  // (2), (3) the transfers
  // ----------------------------------------------------------------------------------------
  function download(via, bytes = BYTES) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const h = crypto.createHash('sha256');
      let got = 0;
      let chunks = 0;
      let firstMs = null;
      const req = http.request({ host: HOST, port: portOf[via], path: `/stream/down?bytes=${bytes}`, agent: agents[via] }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`download ${via}: ${res.statusCode}`));
        res.on('data', (c) => {
          if (got === 0) firstMs = performance.now() - t0;
          got += c.length;
          chunks++;
          h.update(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const ms = performance.now() - t0;
          const sha = h.digest('hex');
          if (got !== bytes || sha !== digestOf(bytes)) return reject(new Error(`download ${via}: ${got} bytes, sha256 ${sha} (expected ${bytes}, ${digestOf(bytes)})`));
          resolve({ via, ms, first_ms: firstMs, mibs: bytes / MiB / (ms / 1000), bytes, chunks, sha256_ok: true, te: res.headers['transfer-encoding'] ?? null, cl: res.headers['content-length'] ?? null });
        });
      });
      req.setTimeout(300000, () => req.destroy(new Error(`download ${via} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }
  /** `framing`: `chunked` (no Content-Length: the length unknown up front) or `length`. */
  function upload(via, framing) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      let sentAllAt = null;
      const req = http.request({ host: HOST, port: portOf[via], method: 'POST', path: '/stream/upload', agent: agents[via], headers: { 'content-type': 'application/octet-stream', ...(framing === 'length' ? { 'content-length': BYTES } : {}) } }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const ms = performance.now() - t0;
          const text = Buffer.concat(parts).toString('utf8');
          if (res.statusCode !== 200) return reject(new Error(`upload ${via}: ${res.statusCode} ${text.slice(0, 300)}`));
          const got = JSON.parse(text);
          if (got.bytes !== BYTES || got.sha256 !== expected) return reject(new Error(`upload ${via}: origin got ${got.bytes} bytes, sha256 ${got.sha256} (sent ${BYTES}, ${expected})`));
          // How long before the client wrote its last byte the origin had its first.
          resolve({ via, ms, lead_ms: sentAllAt - got.first_at, sent_ms: sentAllAt - (performance.timeOrigin + t0), mibs: BYTES / MiB / (ms / 1000), bytes: got.bytes, chunks: got.chunks, sha256_ok: true, origin_saw: { chunked: got.chunked, content_length: got.content_length } });
        });
      });
      req.setTimeout(300000, () => req.destroy(new Error(`upload ${via} timed out`)));
      req.on('error', reject);
      (async () => {
        for (let i = 0; i < chunkCount(BYTES); i++) {
          if (!req.write(chunkOf(base, i, chunkSize(BYTES, i)))) await once(req, 'drain');
        }
        req.end();
        req.once('finish', () => {
          sentAllAt = clock();
        });
      })().catch(reject);
    });
  }

  // Per phase: the isolate before; one warm-up transfer each way (its memory counted, its time
  // reported apart: the first large transfer of a fresh wrangler dev is slower); ROUNDS timed
  // rounds; the isolate after.
  const PHASES = [
    ['down', 'download', (via) => download(via)],
    ['up_chunked', 'upload, chunked', (via) => upload(via, 'chunked')],
    ['up_length', 'upload, Content-Length', (via) => upload(via, 'length')],
  ];
  const transfers = {};
  for (const [key, what, fn] of PHASES) {
    log(`${what}: measuring the isolate before`);
    const before = await snapshotRetry(gate);
    const ptRssBefore = workerdRss(pt.pgid);
    const runs = Object.fromEntries(VIAS.map((v) => [v, []]));
    const warm = {};
    const peaks = [];
    for (let r = -1; r < ROUNDS; r++) {
      for (const via of order(r)) {
        const stop = via === 'gate' ? sampler(gate) : null;
        const x = await fn(via);
        if (stop) peaks.push(await stop());
        if (r < 0) warm[via] = x;
        else runs[via].push(x);
        log(`${what} ${via} ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ${(BYTES / MiB).toFixed(0)} MiB in ${(x.ms / 1000).toFixed(2)} s, ${x.mibs.toFixed(1)} MiB/s, ${x.chunks} reads (${(BYTES / x.chunks / 1024).toFixed(1)} KiB each)${stop ? `, isolate peak ${mib(peaks.at(-1).peak)} MiB (${peaks.at(-1).samples} samples), workerd RSS peak ${mib(peaks.at(-1).peak_rss)} MiB` : ''}`);
      }
    }
    const after = await snapshotRetry(gate);
    const ptRss = [ptRssBefore, workerdRss(pt.pgid)];
    const peak = Math.max(...peaks.map((p) => p.peak), after.total);
    transfers[key] = { what, before, after, peaks, peak, growth: peak - before.total, warm, runs, pt_rss: ptRss, peak_rss: Math.max(...peaks.map((p) => p.peak_rss)) };
  }

  // ----------------------------------------------------------------------------------------
  // The control: a Worker that buffers (await arrayBuffer(), then answers) — what the same
  // measurements show when a proxy does hold bodies.
  // ----------------------------------------------------------------------------------------
  let control = null;
  if (CONTROL_BYTES > 0) {
    const cdir = tempDir('control');
    fs.writeFileSync(path.join(cdir, 'worker.js'), `// Generated by bench/streaming.mjs: a proxy that buffers whole bodies (the control).
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    if (!u.pathname.startsWith('/stream/')) return new Response('no credential', { status: 401 });
    const r = await fetch(env.ORIGIN + u.pathname + u.search, { method: request.method, headers: request.headers });
    return new Response(await r.arrayBuffer(), { status: r.status, headers: r.headers });
  },
};
`);
    fs.writeFileSync(path.join(cdir, 'wrangler.toml'), 'name = "edgeward-streaming-control"\nmain = "worker.js"\ncompatibility_date = "2025-11-01"\n');
    log('control: starting wrangler dev with a Worker that buffers');
    const cg = await startWrangler('control', path.join(cdir, 'wrangler.toml'), { ORIGIN: originUrl }, { logLevel: 'info', waitReadyLine: true });
    agents.control = new http.Agent({ keepAlive: true, maxSockets: 4 });
    portOf.control = cg.port;
    await sseStream('control'); // warm-up
    const cw = { g: cg, session: await runtimeSession(cg.inspector) };
    const sseC = await sseStream('control');
    const before = await snapshotRetry(cw);
    const stop = sampler(cw);
    const x = await download('control', CONTROL_BYTES);
    const p = await stop();
    const after = await snapshotRetry(cw);
    control = { sse: sseC, before, after, sample: p, peak: Math.max(p.peak, after.total), download: x, bytes: CONTROL_BYTES };
    log(`control: SSE first event ${sseC.first_ms.toFixed(1)} ms, ${sseC.before_next.filter(Boolean).length}/${sseC.before_next.length} before the next; ${(CONTROL_BYTES / MiB).toFixed(0)} MiB down, isolate ${mib(before.total)} → peak ${mib(control.peak)} MiB`);
    cw.session.close();
    await cg.stop();
  }

  const result = {
    date: started.toISOString(), head, src_dirty: dirty, load_at_start: loadStart, load_at_end: loadavg(), command: COMMAND, build_dir: BUILD_DIR,
    wasm_file_bytes: fs.statSync(path.join(ROOT, BUILD_DIR, 'index_bg.wasm')).size,
    built_at: fs.statSync(path.join(ROOT, BUILD_DIR, 'index_bg.wasm')).mtime.toISOString(),
    bytes: BYTES, rounds: ROUNDS, sse_streams: SSE_STREAMS, sse_events: SSE_EVENTS, sse_gap_ms: SSE_GAP, target_mib: TARGET_MIB,
    control_bytes: CONTROL_BYTES, sse, transfers, control, secs: (Date.now() - started.getTime()) / 1000,
  };
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(result, null, 2));
  process.stdout.write(markdown(result));
  gate.session.close();
  originThread.postMessage('close');
  for (const a of Object.values(agents)) a.destroy();
  await g.stop();
  await pt.stop();
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------
function mib(b) {
  return (b / MiB).toFixed(2);
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

function markdown(r) {
  const L = [];
  const f1 = (x) => x.toFixed(1);
  const f2 = (x) => x.toFixed(2);
  const size = (b) => mib(b).replace(/\.00$/, '');
  const NAME = { direct: 'direct to the origin', passthrough: 'pass-through Worker', gate: 'through the gate' };
  const vias = ['direct', 'passthrough', 'gate'].filter((v) => r.sse[v]);
  L.push(`Command: \`${r.command}\`, ${r.date.slice(0, 10)}, HEAD ${r.head}${r.src_dirty ? ' (src/ modified)' : ''}, gate \`${r.build_dir}/\` (production build of ${r.built_at.slice(0, 16).replace('T', ' ')}Z, wasm ${r.wasm_file_bytes.toLocaleString('en-US')} B) under \`wrangler dev\`, a public route (\`/stream/*\`) to a loopback origin (a Node server in a worker thread of the bench); load average ${r.load_at_start} at start, ${r.load_at_end} at the end; ${Math.round(r.secs)} s. Three paths to the same origin in the same run, alternating: direct, the pass-through Worker of \`bench/passthrough-worker/\` under its own \`wrangler dev\` (what any Worker in front costs here, wrangler's proxy Worker included), and the gate.`);
  L.push('');
  L.push('### Server-Sent Events');
  L.push('');
  L.push(`${r.sse_streams} streams per path, in rotating order after one each as warm-up, on kept-alive connections; each stream ${r.sse_events} events of about 50 bytes, the first sent at once, the others ${r.sse_gap_ms} ms apart. First event: request sent → first event parsed. Delivery delay: arrival at the client − the origin's send time (written into the event).`);
  L.push('');
  L.push('| | first event (median) | first event (max) | delivery delay median | p90 | max | events arrived before the next was sent |');
  L.push('|---|---:|---:|---:|---:|---:|---:|');
  const row = {};
  for (const via of vias) {
    const s = r.sse[via];
    const delays = s.flatMap((x) => x.delays);
    const before = s.flatMap((x) => x.before_next);
    row[via] = { first: median(s.map((x) => x.first_ms)), firstMax: Math.max(...s.map((x) => x.first_ms)), med: median(delays), p90: quantile(delays, 0.9), max: Math.max(...delays), ok: before.filter(Boolean).length, n: before.length };
    const x = row[via];
    L.push(`| ${NAME[via]} | ${f2(x.first)} ms | ${f2(x.firstMax)} ms | ${f2(x.med)} ms | ${f2(x.p90)} ms | ${f2(x.max)} ms | ${x.ok} / ${x.n} |`);
  }
  L.push('');
  const sseMet = row.gate.ok === row.gate.n && row.gate.max < r.sse_gap_ms / 2;
  const vs = (k) => (row.passthrough ? `, pass-through Worker ${f2(row.passthrough[k])} ms` : '');
  L.push(`First event through the gate: ${f2(row.gate.first)} ms (median) against ${f2(row.direct.first)} ms direct${vs('first')}; each event delivered ${f2(row.gate.med)} ms after it was sent (median; direct ${f2(row.direct.med)} ms${vs('med')}), ${f2(row.gate.max)} ms at worst.`);
  L.push(`Target "Server-Sent Events arrive as sent" (every event before the origin sends the next, none later than half the gap): **${sseMet ? 'met' : 'missed'}**.`);
  L.push('');
  L.push(`### ${size(r.bytes)} MiB down and up`);
  L.push('');
  L.push(`Bodies generated as they are sent (64 KiB chunks, backpressure honoured), never held whole by the client or the origin: the download with a Content-Length; the upload twice, chunked (no Content-Length, the length unknown up front) and with a Content-Length. Every transfer checked: byte count and SHA-256 equal to the generator's. Throughput = MiB / (request sent → last byte of the answer), median of ${r.rounds} rounds after one warm-up round, the paths in rotating order; the client, the origin and workerd share this machine's 2 cores (and did with other work: see the load). "Reads": the receiver's mean chunk size (Node \`data\` events: the client's on the way down, the origin's on the way up).`);
  L.push('');
  L.push('| MiB/s | direct | pass-through Worker | gate | gate / direct | gate / pass-through | gate per round | gate warm-up | reads, direct / pass-through / gate |');
  L.push('|---|---:|---:|---:|---:|---:|---|---:|---:|');
  const keys = Object.keys(r.transfers);
  for (const k of keys) {
    const t = r.transfers[k];
    const m = Object.fromEntries(vias.map((v) => [v, median(t.runs[v].map((x) => x.mibs))]));
    const kib = (v) => `${(r.bytes / median(t.runs[v].map((x) => x.chunks)) / 1024).toFixed(1)}`;
    L.push(`| ${t.what} | ${f1(m.direct)} | ${m.passthrough ? f1(m.passthrough) : '—'} | ${f1(m.gate)} | ${f2(m.gate / m.direct)} | ${m.passthrough ? f2(m.gate / m.passthrough) : '—'} | ${t.runs.gate.map((x) => f1(x.mibs)).join(', ')} | ${f1(t.warm.gate.mibs)} | ${vias.map(kib).join(' / ')} KiB |`);
  }
  L.push('');
  const t = r.transfers;
  const down = t.down ? t.down.runs.gate.concat(t.down.warm.gate) : [];
  const ups = Object.values(t).filter((x) => x.runs.gate[0]?.lead_ms !== undefined).flatMap((x) => x.runs.gate.concat(x.warm.gate));
  if (down.length && ups.length) {
    L.push(`Streamed, not stored and forwarded: through the gate the first byte of each download reached the client ${f1(median(down.map((x) => x.first_ms)))} ms after the request (median, at most ${f1(Math.max(...down.map((x) => x.first_ms)))} ms) of transfers of ${f1(median(down.map((x) => x.ms)))} ms; on every upload the origin had its first byte ${f1(median(ups.map((x) => x.lead_ms)))} ms (median, at least ${f1(Math.min(...ups.map((x) => x.lead_ms)))} ms) before the client had written its last.`);
    L.push('');
  }
  L.push(`The gate isolate's memory (JS heap used + ArrayBuffer backing stores + wasm linear memory; before and after: after a full GC; peak: the largest of the samples polled every 100 ms during the ${r.rounds + 1} gate transfers of the row, without GC so garbage counts, and of the figure after) and the gate's workerd's resident memory (all its processes, wrangler's proxy Worker included):`);
  L.push('');
  L.push(`| ${r.rounds + 1} × ${size(r.bytes)} MiB through the gate | isolate before | isolate peak during | isolate after | growth (peak − before) | target | workerd RSS before → peak → after | heap samples per transfer |`);
  L.push('|---|---:|---:|---:|---:|---|---:|---:|');
  const met = {};
  for (const k of keys) {
    const t = r.transfers[k];
    met[k] = t.growth < r.target_mib * MiB;
    const samples = t.peaks.map((p) => `${p.samples}${p.unanswered ? ` (+${p.unanswered} unanswered)` : ''}`).join(', ');
    L.push(`| ${t.what} | ${mib(t.before.total)} MiB | ${mib(t.peak)} MiB | ${mib(t.after.total)} MiB | ${mib(t.growth)} MiB | < ${r.target_mib} MiB: **${met[k] ? 'met' : 'missed'}** | ${mib(t.before.rss)} → ${mib(t.peak_rss)} → ${mib(t.after.rss)} MiB | ${samples} |`);
  }
  L.push('');
  const comp = (m) => `JS ${mib(m.js_used)} + backing ${mib(m.backing_storage ?? 0)} + wasm ${mib(m.wasm_bytes)}`;
  L.push(`The pass-through Worker's workerd RSS over the same rows (no GC, before → after): ${keys.map((k) => `${r.transfers[k].what} ${mib(r.transfers[k].pt_rss[0])} → ${mib(r.transfers[k].pt_rss[1])} MiB`).join(', ')}.`);
  L.push(`Components (MiB, before → after): ${keys.map((k) => `${r.transfers[k].what} ${comp(r.transfers[k].before)} → ${comp(r.transfers[k].after)}`).join('; ')}. Largest samples during the transfers, each part on its own (MiB): ${keys.map((k) => `${r.transfers[k].what} JS ${mib(Math.max(...r.transfers[k].peaks.map((p) => p.peak_js)))}, backing ${mib(Math.max(...r.transfers[k].peaks.map((p) => p.peak_backing)))}`).join('; ')}.`);
  if (r.control) {
    const c = r.control;
    const ok = c.sse.before_next.filter(Boolean).length;
    L.push('');
    L.push(`Control (can these measurements see buffering?): the same origin behind a \`wrangler dev\` of a JS Worker of a few lines that buffers (\`new Response(await r.arrayBuffer(), …)\`). One SSE stream: first event after ${f1(c.sse.first_ms)} ms, ${ok} / ${c.sse.before_next.length} events before the next was sent. ${size(c.bytes)} MiB down (${f1(c.download.mibs)} MiB/s): the isolate ${mib(c.before.total)} MiB before, ${mib(c.peak)} MiB at the peak (growth ${mib(c.peak - c.before.total)} MiB, ${c.sample.samples} samples), ${mib(c.after.total)} MiB after; workerd RSS ${mib(c.before.rss)} → ${mib(c.sample.peak_rss)} → ${mib(c.after.rss)} MiB.`);
  }
  L.push('');
  L.push(`Targets: Server-Sent Events arrive as sent: **${sseMet ? 'met' : 'missed'}**; isolate growth < ${r.target_mib} MiB each way: **${keys.every((k) => met[k]) ? 'met' : 'missed'}** (${keys.map((k) => `${r.transfers[k].what} ${mib(r.transfers[k].growth)} MiB`).join(', ')}).`);
  return `${L.join('\n')}\n`;
}
