// Edgeward end to end, issue 20: per-route origins and origin timeouts, streaming and origin
// failures, under wrangler dev. A
// route's own origin URL gets its requests (its path a prefix); a `service:NAME` origin is another
// Worker in the same workerd behind a service binding; an origin that never answers is a 504
// origin_timeout after the route's timeout_ms, and the gate aborts its request to it; other
// routes keep the top-level origin.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import * as h from './harness.mjs';

/** A loopback server that accepts requests and never answers; records when each connection closes. */
async function startHangingOrigin() {
  const seen = [];
  const srv = http.createServer((req) => {
    const entry = { url: req.url, closedAt: null };
    seen.push(entry);
    req.socket.on('close', () => {
      entry.closedAt = Date.now();
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    seen,
    url: `http://127.0.0.1:${srv.address().port}`,
    stop: () => new Promise((resolve) => {
      srv.closeAllConnections();
      srv.close(resolve);
    }),
  };
}

/**
 * An origin that fails mid-body (`/break/…`: headers and one chunk, then the connection is
 * destroyed) and one that streams slowly (`/slowstream/…`: a chunk every 50 ms, for 20 s),
 * recording when each connection closes.
 */
async function startBreakingOrigin() {
  const seen = [];
  const srv = http.createServer((req, res) => {
    const entry = { url: req.url, closedAt: null, chunks: 0 };
    seen.push(entry);
    req.socket.on('close', () => {
      entry.closedAt = Date.now();
    });
    if (req.url.startsWith('/sse/')) {
      // Server-Sent Events: three events 300 ms apart, each send time recorded.
      entry.sent = [];
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      let n = 0;
      const send = () => {
        n += 1;
        entry.sent.push(Date.now());
        res.write(`id: ${n}\ndata: event ${n}\n\n`);
        if (n === 3) res.end();
        else setTimeout(send, 300);
      };
      send();
      return;
    }
    if (req.url.startsWith('/big/')) {
      // 32 MiB in 64 KiB chunks, generated as sent, with backpressure; or an upload's hash.
      const hash = crypto.createHash('sha256');
      if (req.method === 'POST') {
        let n = 0;
        req.on('data', (c) => { n += c.length; hash.update(c); });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes: n, sha256: hash.digest('hex') }));
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(32 * 1024 * 1024) });
      let i = 0;
      const pump = () => {
        while (i < 512) {
          const chunk = Buffer.alloc(65536, i % 251);
          i += 1;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        return res.end();
      };
      pump();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (req.url.startsWith('/break/')) {
      res.write('partial-body-', () => setImmediate(() => req.socket.destroy()));
      return;
    }
    const timer = setInterval(() => {
      entry.chunks += 1;
      if (entry.chunks > 400) {
        clearInterval(timer);
        res.end('end');
      } else {
        res.write(`chunk-${entry.chunks}\n`);
      }
    }, 50);
    req.socket.on('close', () => clearInterval(timer));
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    seen,
    url: `http://127.0.0.1:${srv.address().port}`,
    stop: () => new Promise((resolve) => {
      srv.closeAllConnections();
      srv.close(resolve);
    }),
  };
}

/** GET through the gate with a raw client: resolves when the response ends or breaks. */
function rawGet(worker, path, { leaveAfterFirstChunk = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${worker.url}${path}`, (res) => {
      const chunks = [];
      let settled = false;
      const done = (how) => {
        if (settled) return;
        settled = true;
        resolve({ how, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete });
      };
      res.on('data', (c) => {
        chunks.push(c);
        if (leaveAfterFirstChunk) {
          req.destroy();
          done('left');
        }
      });
      res.on('end', () => done('end'));
      res.on('error', () => done('error'));
      res.on('close', () => done(res.complete ? 'end' : 'aborted'));
    });
    req.on('error', (e) => (leaveAfterFirstChunk ? null : reject(e)));
  });
}

/** The Worker behind the service binding: echoes what it received. */
const API_WORKER = `export default {
  async fetch(req) {
    const headers = Object.fromEntries(req.headers);
    return Response.json({ from: 'api-worker', method: req.method, url: req.url, headers }, { headers: { 'x-from': 'api-worker' } });
  },
};
`;

describe('origins: per-route origins and timeouts', { timeout: 240_000 }, () => {
  let hanging; let second; let breaking;
  const stack = h.useStack({
    label: 'origins',
    keys: ['ES256'],
    serviceWorkers: [{ binding: 'API_WORKER', name: 'edgeward-e2e-api', script: API_WORKER }],
    config: async () => {
      hanging = await startHangingOrigin();
      second = await h.startOrigin();
      breaking = await startBreakingOrigin();
      return {
        origin_timeout_ms: 20000,
        routes: [
          { path: '/public/*', public: true },
          { path: '/slow/*', public: true, origin: hanging.url, timeout_ms: 1500 },
          { path: '/break/*', public: true, origin: breaking.url },
          { path: '/slowstream/*', public: true, origin: breaking.url },
          { path: '/sse/*', public: true, origin: breaking.url },
          { path: '/big/*', public: true, origin: breaking.url },
          { path: '/reports/*', public: true, origin: `${second.url}/v2/` },
          { path: '/svc/*', origin: 'service:API_WORKER' },
          { path: '/nobinding/*', public: true, origin: 'service:NOT_BOUND' },
        ],
      };
    },
  });
  let origin; let worker; let jwks; let key;
  before(() => ({ origin, worker, jwks, keys: [key] } = stack));
  after(async () => {
    await hanging?.stop();
    await second?.stop();
    await breaking?.stop();
  });

  it('an origin that fails mid-body aborts the client\'s response (never a clean, short 200) and is logged as origin_aborted', async () => {
    const r = await rawGet(worker, '/break/report');
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, `the response must not end cleanly (it ended "${r.how}" with ${JSON.stringify(r.body)})`);
    assert.notEqual(r.how, 'end');
    const rid = r.headers['x-request-id'];
    const line = await worker.waitForJsonLine((o) => o.event === 'origin_aborted' && o.request_id === rid, 5000);
    assert.ok(line, 'an origin_aborted line for the request');
    assert.equal(line.path, '/break/report');
    assert.equal(line.status, 200);
  });

  it('Server-Sent Events arrive as sent: each event before the origin sends the next', async () => {
    const arrived = [];
    await new Promise((resolve, reject) => {
      http.get(`${worker.url}/sse/feed`, (res) => {
        assert.equal(res.statusCode, 200);
        assert.match(res.headers['content-type'], /text\/event-stream/);
        let buf = '';
        res.on('data', (c) => {
          buf += c.toString('utf8');
          for (let k = buf.indexOf('\n\n'); k >= 0; k = buf.indexOf('\n\n')) {
            arrived.push(Date.now());
            buf = buf.slice(k + 2);
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
      }).on('error', reject);
    });
    const sent = breaking.seen.findLast((e) => e.url === '/sse/feed').sent;
    assert.equal(arrived.length, 3);
    for (let i = 0; i < 2; i += 1) assert.ok(arrived[i] < sent[i + 1], `event ${i + 1} arrived ${arrived[i] - sent[i + 1]} ms after event ${i + 2} was sent`);
  });

  it('32 MiB stream down and up intact, and an origin 5xx is relayed as it is', async () => {
    const down = await new Promise((resolve, reject) => {
      http.get(`${worker.url}/big/file`, (res) => {
        const hash = crypto.createHash('sha256');
        let n = 0;
        res.on('data', (c) => { n += c.length; hash.update(c); });
        res.on('end', () => resolve({ n, sha: hash.digest('hex'), complete: res.complete }));
        res.on('error', reject);
      }).on('error', reject);
    });
    const want = crypto.createHash('sha256');
    for (let i = 0; i < 512; i += 1) want.update(Buffer.alloc(65536, i % 251));
    assert.deepEqual(down, { n: 32 * 1024 * 1024, sha: want.digest('hex'), complete: true });
    const up = await new Promise((resolve, reject) => {
      const req = http.request(`${worker.url}/big/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve(JSON.parse(body)));
      });
      req.on('error', reject);
      let i = 0;
      const pump = () => {
        while (i < 512) {
          const chunk = Buffer.alloc(65536, (i * 7) % 251);
          i += 1;
          if (!req.write(chunk)) return req.once('drain', pump);
        }
        return req.end();
      };
      pump();
    });
    assert.equal(up.bytes, 32 * 1024 * 1024);
    const want2 = crypto.createHash('sha256');
    for (let i = 0; i < 512; i += 1) want2.update(Buffer.alloc(65536, (i * 7) % 251));
    assert.equal(up.sha256, want2.digest('hex'));
    // The origin's own 5xx, with its body: relayed unchanged (not the gate's error).
    const r = await worker.request({ path: '/public/status/503' });
    assert.equal(r.status, 503);
    assert.equal(r.json().origin, 'edgeward-e2e-origin');
  });

  it('a client that leaves mid-body cancels the origin fetch (not logged as origin_aborted)', async () => {
    const r = await rawGet(worker, '/slowstream/feed', { leaveAfterFirstChunk: true });
    assert.equal(r.status, 200);
    const entry = breaking.seen.findLast((e) => e.url === '/slowstream/feed');
    await h.until(() => entry.closedAt, { timeoutMs: 10_000, what: 'the gate to close its connection to the origin' });
    assert.ok(entry.chunks < 200, `the origin stopped early (${entry.chunks} chunks sent)`);
    const rid = r.headers['x-request-id'];
    assert.equal(worker.jsonLines().find((o) => o.event === 'origin_aborted' && o.request_id === rid), undefined);
  });

  it('an origin that never answers is a 504 after the route timeout, and the gate hangs up on it', async () => {
    const started = Date.now();
    const r = await worker.request({ path: '/slow/report' });
    const took = Date.now() - started;
    h.assertError(r, { status: 504, code: 'origin_timeout' });
    assert.ok(took >= 1400 && took < 10000, `answered after ${took} ms (timeout 1500 ms)`);
    assert.equal(hanging.seen.at(-1)?.url, '/slow/report', 'the request reached the hanging origin');
    await h.until(() => hanging.seen.at(-1).closedAt, { timeoutMs: 10_000, what: 'the gate to close its connection to the hanging origin' });
    const line = await h.findDecisionLine(worker, r.headers['x-request-id']);
    assert.equal(line.reason, 'origin_timeout');
    assert.match(line.detail, /no response headers after \d+ ms \(timeout 1500 ms\)/);
  });

  it("a route's own origin gets its requests, under its path prefix; others keep the top-level one", async () => {
    const id = h.testId();
    const r = await worker.request({ path: '/reports/q1?x=1', headers: { 'x-test-id': id } });
    assert.equal(r.status, 200, r.text);
    assert.equal(second.find(id)?.url, '/v2/reports/q1?x=1');
    assert.equal(origin.find(id), undefined);
    const id2 = h.testId();
    assert.equal((await worker.request({ path: '/public/a', headers: { 'x-test-id': id2 } })).status, 200);
    assert.ok(origin.find(id2), 'the top-level origin');
  });

  it('a service:NAME origin is the Worker behind that binding, given the canonical request and the verified identity', async () => {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'svc-user' } });
    const r = await worker.request({ path: '/svc/a/./b?q=1', headers: h.bearer(token) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-from'], 'api-worker');
    const seen = r.json();
    assert.equal(seen.from, 'api-worker');
    assert.equal(new URL(seen.url).pathname, '/svc/a/b', 'the canonical path');
    assert.equal(new URL(seen.url).search, '?q=1');
    assert.equal(seen.headers['x-edgeward-sub'], 'svc-user');
    assert.equal(seen.headers.authorization, undefined, 'the credential is not forwarded');
    assert.ok(r.headers['x-request-id']);
    // A binding the gate does not have: 502, with the reason in the log only.
    const missing = await worker.request({ path: '/nobinding/x' });
    h.assertError(missing, { status: 502, code: 'origin_unreachable' });
  });
});
