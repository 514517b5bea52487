// Edgeward end to end, issue 20: WebSockets through the gate under wrangler dev, against a real
// WebSocket origin (the `ws` server on 127.0.0.1). The upgrade is checked like any request; frames
// flow both ways (text and binary) and close codes and reasons pass through; the browser's token
// subprotocol `edgeward.bearer.<JWT>` is taken and never forwarded; an upgrade on a route without
// `websocket: true` is refused and never forwarded; the token cookie from another origin is
// cross-site WebSocket hijacking (403); the gate ends the socket with 1008 when the token expires
// (at exp itself) and when it is revoked; one log line per socket at its end.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import * as h from './harness.mjs';

const ADMIN = `admin-${crypto.randomBytes(16).toString('hex')}`;
const PREFIX = '/__edgeward/admin';

/**
 * A WebSocket origin: echoes every message as it came (text or binary); `close:CODE:REASON`
 * makes it close with that code and reason. Selects the first subprotocol offered. Records each
 * upgrade's path and headers, and each socket's close as it saw it.
 */
async function startWsOrigin() {
  const upgrades = [];
  const plain = [];
  const srv = http.createServer((req, res) => {
    plain.push({ url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('plain');
  });
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => [...protocols][0] ?? false });
  srv.on('upgrade', (req, socket, head) => {
    const entry = { url: req.url, headers: req.headers, closed: null };
    upgrades.push(entry);
    if (req.url.startsWith('/ws/refuse')) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\nrefuse');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => {
        const text = isBinary ? null : data.toString();
        const m = text && /^close:(\d+):(.*)$/.exec(text);
        if (m) ws.close(Number(m[1]), m[2]);
        else ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code, reason) => {
        entry.closed = { code, reason: reason.toString(), at: Date.now() };
      });
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    upgrades,
    plain,
    url: `http://127.0.0.1:${srv.address().port}`,
    stop: () => new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      srv.closeAllConnections();
      srv.close(resolve);
    }),
  };
}

/** Opens a socket through the gate; resolves `{ ws, protocol }` on open, or `{ status, body }` on refusal. */
function connect(worker, path, { protocols = [], headers = {} } = {}) {
  const url = `${worker.url.replace(/^http/, 'ws')}${path}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers });
    const closes = [];
    const messages = [];
    ws.on('message', (data, isBinary) => messages.push({ data, isBinary }));
    ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString(), at: Date.now() }));
    ws.on('open', () => resolve({ ws, protocol: ws.protocol, closes, messages }));
    ws.on('unexpected-response', (_req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    ws.on('error', (e) => reject(e));
  });
}

/** The next message on an open socket. */
const nextMessage = (c, n) => h.until(() => c.messages.length >= n && c.messages[n - 1], { timeoutMs: 5000, what: `message ${n}` });
const closed = (c, timeoutMs = 10_000) => h.until(() => c.closes[0], { timeoutMs, what: 'the socket to close' });

describe('websocket: upgrades, frames, closes, the token subprotocol, expiry and revocation', { timeout: 300_000 }, () => {
  let wsOrigin;
  const stack = h.useStack({
    label: 'websocket',
    keys: ['ES256'],
    origin: async () => (wsOrigin = await startWsOrigin()),
    config: {
      revocations: { refresh_secs: 1, max_age_secs: 60 },
      csrf: { allowed_origins: ['https://app.example'] },
      routes: [
        { path: '/public/*', public: true },
        { path: '/ws/*', websocket: true },
        { path: '/api/*' },
      ],
    },
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN },
  });
  let worker; let key; let jwks;
  before(() => ({ worker, jwks, keys: [key] } = stack));
  after(() => wsOrigin?.stop());

  const token = (claims = {}) => h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'sock-user', ...claims } });

  it('relays text and binary frames both ways and passes close codes and reasons on, each way', async () => {
    const t = await token();
    const c = await connect(worker, '/ws/echo?room=1', { headers: h.bearer(t) });
    assert.ok(c.ws, `connected (got ${c.status} ${c.body})`);
    c.ws.send('hello ünïcode');
    c.ws.send(Buffer.from([0, 1, 2, 255]));
    const big = 'x'.repeat(512 * 1024);
    c.ws.send(big);
    assert.equal((await nextMessage(c, 1)).data.toString(), 'hello ünïcode');
    const bin = await nextMessage(c, 2);
    assert.equal(bin.isBinary, true);
    assert.deepEqual([...bin.data], [0, 1, 2, 255]);
    assert.equal((await nextMessage(c, 3)).data.toString().length, big.length);
    const seen = wsOrigin.upgrades.at(-1);
    assert.equal(seen.url, '/ws/echo?room=1');
    assert.equal(seen.headers.authorization, undefined, 'the token never reaches the origin');
    assert.ok(seen.headers['x-request-id'], 'the request id goes to the origin');
    // The client closes: the origin sees its code and reason.
    c.ws.close(4002, 'done here');
    await h.until(() => seen.closed, { timeoutMs: 5000, what: 'the origin to see the close' });
    assert.deepEqual([seen.closed.code, seen.closed.reason], [4002, 'done here']);
    // The gate answers the client's close (a clean close, not a timeout with 1006).
    const mine = await closed(c, 5000);
    assert.equal(mine.code, 4002);
    // The origin closes: the client sees its code and reason.
    const c2 = await connect(worker, '/ws/echo', { headers: h.bearer(t) });
    c2.ws.send('close:4001:origin says bye');
    const cl = await closed(c2);
    assert.deepEqual([cl.code, cl.reason], [4001, 'origin says bye']);
    const originSide = wsOrigin.upgrades.at(-1);
    await h.until(() => originSide.closed, { timeoutMs: 5000, what: 'the origin\'s close to be answered' });
    assert.equal(originSide.closed.code, 4001, 'the origin\'s close is answered cleanly');
    // One line per socket at its end, with its traffic; never the token.
    const line = await worker.waitForJsonLine((o) => o.event === 'websocket_closed' && o.ended === 'client_closed', 5000);
    assert.equal(line.code, 4002);
    assert.deepEqual(line.up, { messages: 3, bytes: Buffer.byteLength('hello ünïcode') + 4 + big.length });
    assert.deepEqual(line.down, line.up);
    assert.equal(line.path, '/ws/echo');
    const line2 = await worker.waitForJsonLine((o) => o.event === 'websocket_closed' && o.ended === 'origin_closed', 5000);
    assert.equal(line2.code, 4001);
    h.assertNoTokensIn(worker.output, [t]);
  });

  it('takes a browser token from the edgeward.bearer subprotocol and never forwards it', async () => {
    const t = await token();
    const c = await connect(worker, '/ws/chat', { protocols: ['chat.v2', `edgeward.bearer.${t}`] });
    assert.ok(c.ws, `connected (got ${c.status} ${c.body})`);
    assert.equal(c.protocol, 'chat.v2', 'the origin selected the other subprotocol');
    assert.equal(wsOrigin.upgrades.at(-1).headers['sec-websocket-protocol'], 'chat.v2');
    c.ws.send('via subprotocol');
    assert.equal((await nextMessage(c, 1)).data.toString(), 'via subprotocol');
    c.ws.close(1000);
    // Alone, the origin would have nothing to select.
    const before = wsOrigin.upgrades.length;
    const r = await connect(worker, '/ws/chat', { protocols: [`edgeward.bearer.${t}`] });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body).code, 'websocket_protocol_required');
    // No credential at all, or a bad one: refused like any request.
    const none = await connect(worker, '/ws/chat', { protocols: ['chat.v2'] });
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.body).code, 'missing_token');
    assert.equal(wsOrigin.upgrades.length, before, 'no refused upgrade reached the origin');
    h.assertNoTokensIn(worker.output, [t]);
  });

  it('refuses an upgrade on a route without websocket, and never forwards it', async () => {
    const t = await token();
    const before = [wsOrigin.upgrades.length, wsOrigin.plain.length];
    for (const path of ['/api/chat', '/public/feed']) {
      const r = await connect(worker, path, { headers: h.bearer(t) });
      assert.equal(r.status, 400, path);
      assert.equal(JSON.parse(r.body).code, 'websocket_not_allowed');
    }
    assert.deepEqual([wsOrigin.upgrades.length, wsOrigin.plain.length], before);
    // An origin that refuses the upgrade: its answer is relayed.
    const refused = await connect(worker, '/ws/refuse', { headers: h.bearer(t) });
    assert.equal(refused.status, 403);
  });

  it('a socket on the token cookie must come from the gate or an allowed origin', async () => {
    const t = await token();
    const cookie = `${h.COOKIE_NAME}=${t}`;
    const evil = await connect(worker, '/ws/chat', { headers: { cookie, origin: 'https://evil.example' } });
    assert.equal(evil.status, 403);
    assert.equal(JSON.parse(evil.body).code, 'csrf_rejected');
    const ok = await connect(worker, '/ws/chat', { headers: { cookie, origin: 'https://app.example' } });
    assert.ok(ok.ws, `connected (got ${ok.status} ${ok.body})`);
    assert.equal(wsOrigin.upgrades.at(-1).headers.cookie, undefined, 'the token cookie never reaches the origin');
    ok.ws.close(1000);
  });

  it('ends the socket at the token\'s exp itself (leeway does not extend it), both ways', async () => {
    const exp = h.nowSecs() + 3;
    const c = await connect(worker, '/ws/chat', { headers: h.bearer(await token({ exp })) });
    assert.ok(c.ws, `connected (got ${c.status} ${c.body})`);
    const seen = wsOrigin.upgrades.at(-1);
    // Still open and relaying just before.
    c.ws.send('still here');
    assert.equal((await nextMessage(c, 1)).data.toString(), 'still here');
    const cl = await closed(c, 10_000);
    assert.deepEqual([cl.code, cl.reason], [1008, 'token_expired']);
    assert.ok(cl.at >= exp * 1000 - 50, `closed ${exp * 1000 - cl.at} ms before exp`);
    assert.ok(cl.at < exp * 1000 + 2000, `closed ${cl.at - exp * 1000} ms after exp`);
    await h.until(() => seen.closed, { timeoutMs: 5000, what: 'the origin side to be closed too' });
    assert.equal(seen.closed.code, 1008);
    const line = await worker.waitForJsonLine((o) => o.event === 'websocket_closed' && o.reason === 'token_expired', 5000);
    assert.equal(line.ended, 'gate');
  });

  it('each socket keeps its own watch: one ending does not stop another from closing at its exp', async () => {
    // Every socket of the isolate re-reads the revocation list at the same moments; a watch that
    // waited on another socket's read would run on in that socket's request, and stop when it ends.
    const a = await connect(worker, '/ws/a', { headers: h.bearer(await token({ exp: h.nowSecs() + 600 })) });
    const expB = h.nowSecs() + 5;
    const b = await connect(worker, '/ws/b', { headers: h.bearer(await token({ exp: expB })) });
    assert.ok(a.ws && b.ws);
    await h.until(() => Date.now() >= (expB - 2) * 1000, { timeoutMs: 10_000, intervalMs: 100, what: 'a few list refreshes' });
    a.ws.close(1000);
    await closed(a, 5000);
    const cl = await closed(b, 10_000);
    assert.deepEqual([cl.code, cl.reason], [1008, 'token_expired']);
    assert.ok(cl.at < expB * 1000 + 2000, `closed ${cl.at - expB * 1000} ms after exp`);
  });

  it('ends the socket when its token is revoked, within refresh_secs + 2 s of the revocation', async () => {
    const jti = `sock-${crypto.randomUUID()}`;
    const c = await connect(worker, '/ws/chat', { headers: h.bearer(await token({ jti, exp: h.nowSecs() + 600 })) });
    assert.ok(c.ws, `connected (got ${c.status} ${c.body})`);
    const r = await worker.request({
      method: 'POST',
      path: `${PREFIX}/revocations`,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: { kind: 'jti', iss: jwks.issuer, jti }, reason: 'socket test' }),
    });
    assert.equal(r.status, 201, r.body);
    const revokedAt = Date.now();
    const cl = await closed(c, 15_000);
    assert.deepEqual([cl.code, cl.reason], [1008, 'token_revoked']);
    const took = cl.at - revokedAt;
    // refresh_secs is 1; the ledger publishes within half a second (its alarm).
    assert.ok(took <= 1000 + 2000 + 500, `closed ${took} ms after the revocation was acknowledged`);
    console.log(`# revoked socket closed ${took} ms after the admin call answered`);
  });
});
