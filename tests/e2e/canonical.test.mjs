// Edgeward end to end, issue 14: "the gate must authorize exactly what the origin will serve".
//
// The real Worker under `wrangler dev` (workerd) in front of a *recording origin* that keeps, per
// request, the raw request target (Node's `req.url`), the method, the headers and the body, and
// reads each path the way common servers do:
//   decoding  decodeURIComponent (lenient: overlong UTF-8 accepted), `\` as `/`, dot segments
//             resolved, `//` merged (Express/Node, Apache with AllowEncodedSlashes, IIS);
//   tomcat    `;params` stripped from each segment, then decoded, dots resolved, `//` merged;
//   double    decoded twice (a proxy and then an application each decode);
//   nfkc      decoded, NFKC-normalized, dots resolved (Unicode-normalizing frameworks);
//   ascii-ci  the decoding reading, ASCII case folded (a case-insensitive router);
//   unicode-ci the decoding reading with Unicode simple case mapping per character, as Java's
//             String.equalsIgnoreCase and JavaScript's toUpperCase compare (`ı` → `I`, `ſ` → `S`,
//             `K` (Kelvin) → `k`, `İ` → `i`);
//   windows   the decoding reading with trailing dots and spaces of each segment dropped (IIS,
//             Windows file mapping).
// `/admin/*` is configured case-insensitive, so every reader is asked "is this under /admin?"
// ignoring ASCII case.
//
// What the gate decided on is read from its decision log line (`path`), and checked against the
// canonical path the CLI computes (`target/debug/edgeward path --config FILE -`) for the path
// workerd hands the Worker: workerd's URL parser (WHATWG) already resolves `.`/`..` (also
// `%2e`-spelled) and turns `\` into `/`, so the CLI is given `new URL(target).pathname`.
//
//   node --test tests/e2e/canonical.test.mjs

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import * as h from './harness.mjs';

const HOST = '127.0.0.1';

// ---------------------------------------------------------------------------------------------
// How origins read a path
// ---------------------------------------------------------------------------------------------

/** `%XX` → bytes (broken escapes stay literal), then UTF-8, accepting overlong forms as old decoders do. */
function lenientDecode(s) {
  const bytes = [];
  for (let i = 0; i < s.length; i += 1) {
    const m = /^%([0-9A-Fa-f]{2})/.exec(s.slice(i, i + 3));
    if (m) {
      bytes.push(parseInt(m[1], 16));
      i += 2;
    } else {
      for (const b of Buffer.from(s[i], 'utf8')) bytes.push(b);
    }
  }
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const n = b >= 0xf0 && b < 0xf8 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0;
    const cont = bytes.slice(i + 1, i + 1 + n);
    if (b < 0x80 || n === 0 || cont.length < n || cont.some((c) => (c & 0xc0) !== 0x80)) {
      out += b < 0x80 ? String.fromCharCode(b) : '\ufffd';
      i += 1;
      continue;
    }
    let cp = b & (0x3f >> n);
    for (const c of cont) cp = (cp << 6) | (c & 0x3f);
    out += cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? '\ufffd' : String.fromCodePoint(cp);
    i += 1 + n;
  }
  return out;
}

/** Dot segments resolved (RFC 3986 §5.2.4) and `//` merged. */
function normalize(p) {
  const parts = p.split('/').slice(1);
  const out = [];
  let trailing = false;
  parts.forEach((seg, i) => {
    const last = i === parts.length - 1;
    if (seg === '.' || seg === '') trailing = last;
    else if (seg === '..') {
      out.pop();
      trailing = last;
    } else {
      out.push(seg);
      trailing = false;
    }
  });
  return `/${out.join('/')}${trailing && out.length ? '/' : ''}`;
}

/** Java's Character.toUpperCase/toLowerCase, as equalsIgnoreCase compares, for one code point. */
function unicodeFold(c) {
  if (c === '\u0130') return 'i'; // İ: simple lower-case mapping is `i` (Java), full is `i̇`
  const up = c.toUpperCase();
  const low = (up.length === 1 ? up : c).toLowerCase();
  return low.length === 1 ? low : c.toLowerCase();
}

function readings(rawPath) {
  const decoding = normalize(lenientDecode(rawPath).replace(/\\/g, '/'));
  return {
    decoding,
    tomcat: normalize(lenientDecode(rawPath.split('/').map((s) => s.split(';')[0]).join('/'))),
    double: normalize(lenientDecode(lenientDecode(rawPath)).replace(/\\/g, '/')),
    nfkc: normalize(decoding.normalize('NFKC').replace(/\\/g, '/')),
    'ascii-ci': decoding.replace(/[A-Z]/g, (c) => c.toLowerCase()),
    'unicode-ci': [...decoding].map(unicodeFold).join(''),
    // IIS and Windows file mapping drop trailing dots and spaces of a segment.
    windows: normalize(decoding.split('/').map((s) => (s === '.' || s === '..' ? s : s.replace(/[. ]+$/, ''))).join('/')),
  };
}

const underAdmin = (p) => /^\/admin(\/|$)/i.test(p);

/** The readers that map `rawPath` under /admin. */
function adminReaders(rawPath) {
  return Object.entries(readings(rawPath))
    .filter(([, p]) => underAdmin(p))
    .map(([name, p]) => `${name}: ${p}`);
}

/**
 * A query or form body as PHP reads it into $_GET/$_POST: names decoded, leading spaces dropped,
 * `.` and ` ` turned into `_` (so `.method` is `_method`). First value of each name.
 */
function phpParams(text) {
  const out = new Map();
  for (const [k, v] of new URLSearchParams(text)) {
    const name = k.replace(/^ +/, '').replace(/[ .]/g, '_');
    if (name && !out.has(name)) out.set(name, v);
  }
  return out;
}

/**
 * How a framework that honours overrides reads a recorded request: the method (a POST's
 * `X-HTTP-Method-Override` header or `_method` field: Rack's MethodOverride reads the form body,
 * Laravel and Symfony the body and the query, through PHP's name mangling) and the path
 * (Symfony's and IIS URL Rewrite's `X-Original-URL` / `X-Rewrite-URL`).
 */
function frameworkView(entry) {
  let method = entry.method;
  if (entry.method === 'POST') {
    const form = /^application\/x-www-form-urlencoded\b/i.test(entry.headers['content-type'] ?? '') ? phpParams(entry.body.toString('utf8')).get('_method') : undefined;
    const override = entry.headers['x-http-method-override'] ?? form ?? phpParams(entry.query ?? '').get('_method');
    if (override) method = override.toUpperCase();
  }
  const rewritten = entry.headers['x-original-url'] ?? entry.headers['x-rewrite-url'];
  return { method, path: rewritten === undefined ? entry.rawPath : rewritten.split('?')[0] };
}

// ---------------------------------------------------------------------------------------------
// The recording origin
// ---------------------------------------------------------------------------------------------

async function startRecordingOrigin() {
  const requests = [];
  const parseErrors = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const q = req.url.indexOf('?');
      const rawPath = q < 0 ? req.url : req.url.slice(0, q);
      const entry = {
        method: req.method,
        target: req.url,
        rawPath,
        query: q < 0 ? null : req.url.slice(q + 1),
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
        readings: readings(rawPath),
      };
      requests.push(entry);
      const summary = JSON.stringify({ origin: 'edgeward-canonical-origin', method: req.method, target: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(summary) });
      res.end(summary);
    });
  });
  // A request Node's parser refuses is recorded too: the gate must never send one.
  server.on('clientError', (err, sock) => {
    parseErrors.push({ error: String(err), raw: err.rawPacket?.toString('latin1') });
    sock.destroy();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  return {
    requests,
    parseErrors,
    url: `http://${HOST}:${server.address().port}`,
    find: (id) => requests.find((r) => r.headers['x-test-id'] === id),
    stop: async () => {
      const closed = new Promise((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A client that sends headers exactly as given (repeated names, any case, `_` in names) and a
// request target as given (non-ASCII goes out as raw UTF-8 bytes)
// ---------------------------------------------------------------------------------------------

function send(worker, { method = 'GET', target, headers = [], body }) {
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const hdrs = [['host', `${HOST}:${worker.port}`], ...headers];
  if (payload !== undefined || !['GET', 'HEAD'].includes(method)) hdrs.push(['content-length', String(payload?.length ?? 0)]);
  // Node writes the request line as latin1: a UTF-8 byte string puts raw UTF-8 on the wire.
  const wire = /[^\x00-\x7f]/.test(target) ? Buffer.from(target, 'utf8').toString('latin1') : target;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: worker.port, method, path: wire, headers: hdrs.flat(), agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: buf,
          text,
          json() {
            return JSON.parse(text);
          },
        });
      });
    });
    req.setTimeout(20000, () => req.destroy(new Error(`${method} ${target} timed out`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Writes `text` as is on a fresh connection; { status, headers (lower-case names), text }. */
function sendRaw(worker, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(worker.port, HOST, () => sock.end(Buffer.from(text, 'latin1')));
    const chunks = [];
    sock.setTimeout(20000, () => sock.destroy(new Error('raw request timed out')));
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const all = Buffer.concat(chunks).toString('latin1');
      const [head, ...rest] = all.split('\r\n\r\n');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, text: rest.join('\r\n\r\n') });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The CLI, for the canonical path the gate must decide on
// ---------------------------------------------------------------------------------------------

const CLI = path.join(h.ROOT, 'target', 'debug', 'edgeward');

/** Builds target/debug/edgeward (cargo's own freshness check: a no-op when it is current). */
function ensureCli() {
  const r = spawnSync('cargo', ['build', '--locked', '--bin', 'edgeward'], { cwd: h.ROOT, env: h.childEnv(), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`cargo build --locked --bin edgeward failed (${r.status ?? r.signal ?? r.error}):\n${(r.stderr ?? '').slice(-6000)}`);
  assert.ok(fs.existsSync(CLI), `cargo build succeeded but ${CLI} does not exist`);
}

/** `edgeward path --config <config> --method <method> -` for every path: one JSON object each. */
function cliPaths(config, paths, method = 'GET') {
  const file = path.join(h.makeTempDir('canonical-cli'), 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const r = spawnSync(CLI, ['path', '--config', file, '--method', method, '-'], { input: `${paths.join('\n')}\n`, encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.ok(r.status === 0 || r.status === 1, `edgeward path exited ${r.status ?? r.signal}: ${r.stderr}`);
  const out = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(out.length, paths.length, `edgeward path printed ${out.length} lines for ${paths.length} paths`);
  return out;
}

/** The path workerd hands the Worker for a request target (its URL parser is WHATWG's). */
const workerdPath = (target) => new URL(`http://${HOST}${target}`).pathname;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const ROUTES = [
  { path: '/admin/*', scopes: ['admin'], case_insensitive: true },
  { path: '/public/*', public: true },
  { path: '/files/*', scopes: ['read'] },
  { path: '/billing', methods: ['GET'], scopes: ['read'] },
  { path: '/items/*', methods: ['DELETE'], scopes: ['admin'] },
  { path: '/reports/*', methods: ['POST'], scopes: ['admin'] },
];
const FORWARD_CLAIMS = {
  'x-edgeward-sub': 'sub',
  'x-edgeward-iss': 'iss',
  'x-edgeward-scope': 'scope',
  'x-edgeward-groups': 'groups',
  'x-user-email': 'email',
};
const configFor = (request = {}) => ({ routes: ROUTES, query_param: 'access_token', forward_claims: FORWARD_CLAIMS, ...(Object.keys(request).length ? { request } : {}) });

/** Every response of this file, for the "never 5xx" check. */
const allResponses = [];
/** Every request the origins saw, for the header-name check. */
const allOrigins = [];

function makeCaller(stack) {
  return async function call(target, { token, method = 'GET', headers = [], body } = {}) {
    const id = h.testId();
    const res = await send(stack.worker, {
      method,
      target,
      body,
      headers: [['x-test-id', id], ...(token ? [['authorization', `Bearer ${token}`]] : []), ...headers],
    });
    allResponses.push({ method, target, status: res.status, body: res.text.slice(0, 200) });
    return { res, id, seen: stack.origin.find(id), rid: res.headers['x-request-id'] };
  };
}

function assertRefused(r, status, code, context) {
  assert.equal(r.seen, undefined, `${context}: refused with ${r.res.status} but the origin got ${r.seen?.method} ${r.seen?.target}`);
  return h.assertError(r.res, {
    status,
    code,
    error: code === 'insufficient_scope' ? 'insufficient_scope' : undefined,
    wwwAuthPrefix: code === 'insufficient_scope' ? `Bearer realm="${h.REALM}", error="insufficient_scope"` : undefined,
    context,
  });
}

function assertForwarded(r, context) {
  assert.equal(r.res.status, 200, `${context}: expected 200, got ${r.res.status}: ${r.res.text.slice(0, 300)}`);
  assert.ok(r.seen, `${context}: 200 but the origin has no record of the request`);
  assert.equal(r.res.json().origin, 'edgeward-canonical-origin', `${context}: the body is not the origin's`);
  return r.seen;
}

/** What the gate must answer a read token for a path, given the CLI's verdict on it. */
function expectedOutcome(cli) {
  if (cli.refused) return { status: cli.status, code: cli.refused };
  if (cli.requirement !== 'public' && cli.requirement.scopes.some((x) => x !== 'read')) return { status: 403, code: 'insufficient_scope' };
  return { status: 200 };
}

/** The gate's decision log line for a response (its canonical `path`, `reason`, ...). */
async function decision(worker, r) {
  const line = await h.findDecisionLine(worker, r.rid);
  assert.ok(line, `no decision log line for request id ${r.rid}`);
  return line;
}

// ---------------------------------------------------------------------------------------------
// The readers themselves (no Worker): each attack spelling, sent raw to the origin, would be read
// under /admin by at least the named reader, so the "no reader maps it to /admin" checks below
// cannot pass vacuously.
// ---------------------------------------------------------------------------------------------

describe('canonical: the origin readers see the attacks', () => {
  it('each raw attack spelling is read under /admin by the expected reader', () => {
    const cases = [
      ['/files/..%2Fadmin/secret', 'decoding'],
      ['/public/..%5Cadmin', 'decoding'],
      ['/files/..;/admin/secret', 'tomcat'],
      ['/files/%252e%252e/admin', 'double'],
      ['/%EF%BC%8Fadmin', 'nfkc'],
      ['/%EF%BD%81dmin/secret', 'nfkc'],
      ['/files/%C0%AE%C0%AE/admin/secret', 'decoding'],
      ['/ADMIN/secret', 'ascii-ci'],
      ['/adm%C4%B1n/secret', 'unicode-ci'],
      ['/ADM%C4%B0N/secret', 'unicode-ci'],
      ['/files/%E2%80%A5/admin', 'nfkc'],
      ['//admin/secret', 'decoding'],
      ['/admin./secret', 'windows'],
      ['/ADMIN%20/secret', 'windows'],
    ];
    for (const [p, reader] of cases) assert.ok(adminReaders(p).some((x) => x.startsWith(`${reader}:`)), `${reader} does not read ${p} under /admin: ${JSON.stringify(readings(p))}`);
    // ... and the canonical forms the gate forwards are read as themselves.
    for (const p of ['/files/~user/a-b/c/d', '/files/a%3Ab/%C3%A9/x%20y/AZ', '/administrator', '/files/admin/secret', '/files/%25/admin']) assert.deepEqual(adminReaders(p), [], p);
    // The framework view: override headers, form fields and rewrite headers.
    const entry = (over) => ({ method: 'POST', rawPath: '/items/1', headers: {}, body: Buffer.alloc(0), ...over });
    assert.equal(frameworkView(entry({ headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from('_method=delete') })).method, 'DELETE');
    assert.equal(frameworkView(entry({ headers: { 'x-http-method-override': 'DELETE' } })).method, 'DELETE');
    assert.equal(frameworkView(entry({ method: 'GET', headers: { 'x-original-url': '/admin/x?y' } })).path, '/admin/x');
    assert.equal(frameworkView(entry({ query: '.method=DELETE' })).method, 'DELETE');
    assert.equal(frameworkView(entry({ query: 'keep=1' })).method, 'POST');
  });
});

// ---------------------------------------------------------------------------------------------
// Default `request` policy
// ---------------------------------------------------------------------------------------------

describe('canonical requests (default request policy)', { timeout: 600_000 }, () => {
  const stack = h.useStack({ label: 'canonical', keys: ['ES256'], origin: startRecordingOrigin, config: configFor() });
  const call = makeCaller(stack);
  let worker;
  let origin;
  let key;
  let issuer;
  let reader; // scope "read"
  let nobody; // no scope
  const mint = (claims) => h.mintToken(key, { issuer, claims });

  before(async () => {
    ({ worker, origin } = stack);
    allOrigins.push(origin);
    [key] = stack.keys;
    issuer = stack.jwks.issuer;
    reader = await mint({ sub: 'reader', scope: 'read' });
    nobody = await mint({ sub: 'nobody' });
    ensureCli();
  }, { timeout: 900_000 });

  /** Sends each target with the read token and checks it against the CLI and the readers. */
  async function attack(cases, { token = () => reader } = {}) {
    const expected = cliPaths(stack.config, cases.map((c) => workerdPath(c.target)));
    const outcomes = [];
    for (const [i, c] of cases.entries()) {
      const ctx = `GET ${c.target}`;
      const cli = expected[i];
      const r = await call(c.target, { token: token(c) });
      const line = await decision(worker, r);
      // The decision matches the CLI's for the path workerd hands over.
      const want = expectedOutcome(cli);
      if (c.expect) assert.deepEqual(want, c.expect, `${ctx}: the CLI's verdict for ${workerdPath(c.target)} is not the one this case expects: ${JSON.stringify(cli)}`);
      if (want.status === 200) {
        const seen = assertForwarded(r, ctx);
        assert.equal(line.path, cli.canonical, `${ctx}: the gate decided on ${line.path}, the CLI says ${cli.canonical}`);
        assert.equal(seen.rawPath, line.path, `${ctx}: the gate decided on ${line.path} but forwarded ${seen.rawPath}`);
        assert.deepEqual(adminReaders(seen.rawPath), [], `${ctx}: forwarded as ${seen.target}, which origins read under /admin`);
      } else {
        assertRefused(r, want.status, want.code, ctx);
        assert.equal(line.reason, want.code, `${ctx}: decision log reason`);
      }
      outcomes.push({ target: c.target, status: r.res.status, path: line.path });
    }
    return outcomes;
  }

  const REFUSED = { status: 400, code: 'ambiguous_path' };
  const SCOPE = { status: 403, code: 'insufficient_scope' };

  it('(a) the reported attack: a read token never reaches /admin under any spelling', async () => {
    const cases = [
      { target: '/files/..%2Fadmin/secret', expect: REFUSED },
      { target: '/files/..%2fadmin/secret', expect: REFUSED },
      { target: '/files/%2e%2e/admin/secret', expect: SCOPE }, // workerd resolves %2e%2e
      { target: '/files/.%2E/admin/secret', expect: SCOPE },
      { target: '/files/..;/admin/secret', expect: REFUSED },
      { target: '/files/..%3B/admin/secret', expect: REFUSED },
      { target: '/admin;x=1/secret', expect: REFUSED },
      { target: '/public/..%5Cadmin', expect: REFUSED },
      { target: '/files/..%5c..%5cadmin', expect: REFUSED },
      { target: '/files/..\\admin\\secret', expect: SCOPE }, // workerd reads \ as /
      { target: '/ADMIN/secret', expect: SCOPE },
      { target: '/Admin', expect: SCOPE },
      { target: '/%61dmin/secret', expect: SCOPE },
      { target: '/%41DMIN/secret', expect: SCOPE },
      { target: '/files/%252e%252e/admin', expect: REFUSED },
      { target: '/files/..%252Fadmin/secret', expect: REFUSED },
      { target: '/files/%25%32%65%25%32%65/admin', expect: REFUSED },
      { target: '/%EF%BC%8Fadmin', expect: REFUSED },
      { target: '/files/%EF%BC%8E%EF%BC%8E/admin', expect: REFUSED },
      { target: '/files/%E2%80%A5/admin', expect: REFUSED }, // two dot leader
      { target: '/%EF%BD%81dmin/secret', expect: REFUSED }, // fullwidth a, with a case-insensitive route
      { target: '/ａdmin/secret', expect: REFUSED }, // the same, raw UTF-8
      { target: '/files/%C0%AE%C0%AE/admin/secret', expect: REFUSED },
      { target: '/files/..%C0%AFadmin/secret', expect: REFUSED },
      { target: '/admin%00/secret', expect: REFUSED },
      { target: '/admin%0A/secret', expect: REFUSED },
      { target: '/files/%u002e%u002e/admin', expect: REFUSED },
      { target: '//admin/secret', expect: SCOPE },
      { target: '///admin//secret', expect: SCOPE },
      { target: '/files/./../admin/secret', expect: SCOPE },
      { target: '/public/../admin/secret', expect: SCOPE },
      { target: '/%2e%2e/admin', expect: SCOPE },
      { target: '/admin/', expect: SCOPE },
      // Case mappings outside NFKC: Java's equalsIgnoreCase and JS toUpperCase read ı and İ as i.
      { target: '/adm%C4%B1n/secret', expect: REFUSED },
      { target: '/ADM%C4%B0N/secret', expect: REFUSED },
      { target: '/admın/secret', expect: REFUSED },
      { target: '/%C4%B0%C4%B1/../adm%C4%B1n', expect: REFUSED },
      { target: '/%E2%84%AAdmin/%C5%BFecret', expect: REFUSED }, // Kelvin sign, long s
      // Windows path aliases: trailing dots and spaces.
      { target: '/admin./secret', expect: REFUSED },
      { target: '/admin%2e/secret', expect: REFUSED },
      { target: '/admin%20/secret', expect: REFUSED },
      { target: '/ADMIN.%20./secret', expect: REFUSED },
      // Near misses that are not /admin for any reader: forwarded, canonical.
      { target: '/files/admin/secret', expect: { status: 200 } },
      { target: '/administrator', expect: { status: 200 } },
      { target: '/files/%7Eadmin', expect: { status: 200 } },
    ];
    const outcomes = await attack(cases);
    // Not vacuous: refusals, scope denials and forwards all occurred.
    for (const s of [400, 403, 200]) assert.ok(outcomes.some((o) => o.status === s), `no ${s} among ${JSON.stringify(outcomes)}`);
  });

  it('(a) the same spellings without a token on a public prefix: never forwarded to /admin', async () => {
    const targets = ['/public/..%2Fadmin/secret', '/public/%2e%2e/admin/secret', '/public/..;/admin', '/public/..\\admin', '/public/%252e%252e/admin', '//public/../admin'];
    for (const t of targets) {
      const r = await call(t);
      if (r.seen) assert.deepEqual(adminReaders(r.seen.rawPath), [], `GET ${t}: forwarded as ${r.seen.target}`);
      assert.ok([400, 401].includes(r.res.status), `GET ${t}: expected 400 or 401, got ${r.res.status}: ${r.res.text.slice(0, 200)}`);
      assert.equal(r.seen, undefined, `GET ${t}: ${r.res.status} but the origin got ${r.seen?.target}`);
    }
  });

  it('(i) odd spellings: each 2xx/4xx as the CLI predicts; a forwarded one is canonical and not under /admin', async () => {
    const pieces = ['%', '%z', '%2', '%zz', '%C0', '%FF', '%ED%A0%80', '%F4%90%80%80', '%E2%80%AE', '%C2%85', '%C2%A0', '%00', '%7F', ';', '%3B', '\\', '%5C', '%2F', '%2f', '..', '.', '%2e', '%2E%2E', '//', '%7E', '%EF%BC%8F', '%E2%80%A4', '%EF%BD%81', '%25', '%2525', '%252F', 'é', 'ａ', '%20', '+', '%C4%B1', '%E2%84%AA'];
    const shapes = [(x) => `/files/${x}/admin`, (x) => `/files/${x}/../admin`, (x) => `/${x}admin/secret`, (x) => `/files/a${x}b`];
    const targets = pieces.flatMap((x) => shapes.map((s) => s(x)));
    const expected = cliPaths(stack.config, targets.map(workerdPath));
    const failures = [];
    for (const [i, target] of targets.entries()) {
      const r = await call(target, { token: reader });
      const cli = expected[i];
      const want = expectedOutcome(cli);
      if (r.res.status !== want.status) failures.push(`${target}: ${r.res.status} ${r.res.text.slice(0, 100)}; the CLI says ${JSON.stringify(cli)}`);
      if (r.seen) {
        if (want.status !== 200) failures.push(`${target}: ${r.res.status} but the origin got ${r.seen.target}`);
        if (r.seen.rawPath !== cli.canonical) failures.push(`${target}: forwarded as ${r.seen.rawPath}, the CLI says ${JSON.stringify(cli)}`);
        const admin = adminReaders(r.seen.rawPath);
        if (admin.length) failures.push(`${target}: forwarded as ${r.seen.rawPath}, read as ${admin}`);
      } else if (r.res.status === 200) failures.push(`${target}: 200 without reaching the origin`);
      else if (r.res.json().code !== want.code) failures.push(`${target}: code ${r.res.json().code}, the CLI says ${JSON.stringify(cli)}`);
    }
    assert.deepEqual(failures, []);
    const statuses = new Set(allResponses.slice(-targets.length).map((x) => x.status));
    for (const s of [200, 400, 403]) assert.ok(statuses.has(s), `the grid produced no ${s}`);
  });

  it('(b) canonical forwarding: escapes of unreserved characters decoded, dots resolved, // merged', async () => {
    const r = await call('/files/%7Euser/a%2db/./c//d', { token: reader });
    const seen = assertForwarded(r, '/files/%7Euser/a%2db/./c//d');
    assert.equal(seen.target, '/files/~user/a-b/c/d');
    assert.equal((await decision(worker, r)).path, '/files/~user/a-b/c/d');
    // Other escapes are kept, upper-cased; non-ASCII goes as upper-case UTF-8 escapes.
    const r2 = await call('/files/a%3ab/%c3%a9/x%20y/%41%5a?q=%2f', { token: reader });
    assert.equal(assertForwarded(r2, 'mixed escapes').target, '/files/a%3Ab/%C3%A9/x%20y/AZ?q=%2f');
    // The canonical form is a fixed point: sending it again forwards it unchanged.
    const r3 = await call('/files/a%3Ab/%C3%A9/x%20y/AZ', { token: reader });
    assert.equal(assertForwarded(r3, 'canonical again').target, '/files/a%3Ab/%C3%A9/x%20y/AZ');
  });

  it('(c) HEAD is matched as GET; an exact rule covers its trailing slash', async () => {
    // HEAD on the GET-only /billing needs the same scope.
    const head = await call('/billing', { token: nobody, method: 'HEAD' });
    assert.equal(head.res.status, 403, `HEAD /billing without scope: ${head.res.status}`);
    assert.match(String(head.res.headers['www-authenticate']), /error="insufficient_scope"/);
    assert.equal(head.seen, undefined, 'HEAD /billing without scope reached the origin');
    assert.equal((await decision(worker, head)).reason, 'insufficient_scope');
    const headOk = await call('/billing', { token: reader, method: 'HEAD' });
    assert.equal(headOk.res.status, 200);
    assert.ok(headOk.seen, 'HEAD /billing with read scope not forwarded');
    assert.equal(headOk.seen.method, 'HEAD');
    assert.equal(headOk.seen.target, '/billing');
    // The exact rule covers /billing/ (and its spellings) for GET and HEAD.
    for (const [method, target] of [['GET', '/billing/'], ['HEAD', '/billing/'], ['GET', '/billing//'], ['GET', '/billing/.'], ['GET', '/x/../billing/']]) {
      const r = await call(target, { token: nobody, method });
      assert.equal(r.res.status, 403, `${method} ${target} without scope: ${r.res.status}`);
      assert.equal(r.seen, undefined, `${method} ${target} without scope reached the origin`);
    }
    const slash = await call('/billing/', { token: reader });
    assert.equal(assertForwarded(slash, 'GET /billing/').target, '/billing/');
    // Not covered: another path, and a method the rule does not name (any valid token).
    assert.equal(assertForwarded(await call('/billingx', { token: nobody }), 'GET /billingx').target, '/billingx');
    const post = await call('/billing', { token: nobody, method: 'POST', body: '{}' });
    assert.equal(assertForwarded(post, 'POST /billing').method, 'POST');
    // HEAD on /admin/* still needs admin.
    const headAdmin = await call('/admin/x', { token: reader, method: 'HEAD' });
    assert.equal(headAdmin.res.status, 403);
    assert.equal(headAdmin.seen, undefined);
  });

  it('(d) method override headers and _method are stripped; the origin acts on the method authorized', async () => {
    // DELETE on /items/* needs admin: the override must not turn an authorized POST into one.
    const del = await call('/items/1', { token: reader, method: 'DELETE' });
    assertRefused(del, 403, 'insufficient_scope', 'DELETE /items/1 with read');
    const overrides = [
      ['X-HTTP-Method-Override', 'DELETE'],
      ['X-HTTP-Method', 'DELETE'],
      ['X-Method-Override', 'DELETE'],
      ['x-http-method-override', 'DELETE'],
    ];
    for (const query of ['_method=DELETE', '%5Fmethod=DELETE', '_METHOD=delete', '%5fMethod=DELETE']) {
      const r = await call(`/items/1?${query}&keep=1`, { token: reader, method: 'POST', headers: overrides, body: 'a=1' });
      const seen = assertForwarded(r, `POST /items/1?${query}`);
      assert.equal(seen.method, 'POST');
      assert.equal(seen.target, '/items/1?keep=1', `the override parameter ${query} reached the origin`);
      for (const [name] of overrides) assert.equal(seen.headers[name.toLowerCase()], undefined, `${name} reached the origin`);
      assert.ok(!seen.rawHeaders.some((v, i) => i % 2 === 0 && /method/i.test(v)), `an override header reached the origin: ${seen.rawHeaders}`);
      assert.equal(seen.body.toString(), 'a=1');
    }
  });

  it('(d) PHP-mangled override parameters (`.method`, `%2Emethod`) are stripped too', async () => {
    // PHP reads `.` (and ` `) in a parameter name as `_`: Laravel and Symfony would see _method.
    for (const query of ['.method=DELETE', '%2Emethod=DELETE', '.METHOD=delete']) {
      const r = await call(`/items/1?${query}&keep=1`, { token: reader, method: 'POST', body: 'a=1', headers: [['content-type', 'application/x-www-form-urlencoded']] });
      const seen = assertForwarded(r, `POST /items/1?${query}`);
      assert.equal(seen.method, 'POST');
      assert.equal(seen.target, '/items/1?keep=1', `?${query} reached the origin`);
      assert.equal(frameworkView(seen).method, 'POST');
    }
  });

  it('(e) extension methods reach the origin with their name and body intact', async () => {
    const xml = Buffer.concat([
      Buffer.from('<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/></D:prop></D:propfind>\n'),
      Buffer.from([0x00, 0xff, 0xc3, 0xa9, 0x0d, 0x0a]),
    ]);
    for (const method of ['PROPFIND', 'REPORT']) {
      const r = await call('/files/dav/', { token: reader, method, body: xml, headers: [['content-type', 'application/xml'], ['depth', '1']] });
      const seen = assertForwarded(r, `${method} /files/dav/`);
      assert.equal(seen.method, method);
      assert.equal(seen.target, '/files/dav/');
      assert.ok(seen.body.equals(xml), `${method}: the origin got ${seen.body.length} bytes, ${JSON.stringify(seen.body.toString('latin1').slice(0, 80))}`);
      assert.equal(seen.headers.depth, '1');
      assert.equal((await decision(worker, r)).method, method);
    }
    // The other WebDAV and registered methods workerd accepts.
    for (const method of ['MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'PROPPATCH', 'SEARCH', 'QUERY', 'ACL', 'PATCH', 'OPTIONS']) {
      const r = await call('/files/dav/x', { token: reader, method, body: 'payload', headers: [['destination', 'http://elsewhere.example/files/y']] });
      const seen = assertForwarded(r, `${method} /files/dav/x`);
      assert.equal(seen.method, method);
      assert.equal(seen.body.toString(), 'payload', `${method}: body`);
    }
    // Scopes apply to them as to any method, and a rule for POST covers them (origins that do
    // not know a method often treat it as POST).
    const denied = await call('/admin/dav', { token: reader, method: 'PROPFIND', body: xml });
    assertRefused(denied, 403, 'insufficient_scope', 'PROPFIND /admin/dav with read');
    for (const method of ['PROPFIND', 'REPORT', 'MKCOL']) {
      const r = await call('/reports/q', { token: reader, method, body: 'x' });
      assertRefused(r, 403, 'insufficient_scope', `${method} /reports/q (POST rule) with read`);
    }
    // TRACE (and CONNECT, which workerd never hands over) are refused by the gate.
    const trace = await call('/files/x', { token: reader, method: 'TRACE' });
    assertRefused(trace, 405, 'method_not_allowed', 'TRACE /files/x');
  });

  it('(e) methods the runtime does not know never reach the gate or the origin', async () => {
    // workerd answers these itself (501 Unrecognized request method, before the Worker runs):
    // no x-request-id, no decision log line, nothing at the origin. Not counted in (i): the gate
    // never sees them. Lower- and mixed-case methods are among them (workerd is case-sensitive).
    // Node's client upper-cases methods, so these go over a raw socket.
    for (const method of ['FOO', 'BIND', 'propfind', 'Get']) {
      const id = h.testId();
      const res = await sendRaw(
        worker,
        `${method} /files/m HTTP/1.1\r\nHost: ${HOST}:${worker.port}\r\nConnection: close\r\nx-test-id: ${id}\r\nAuthorization: Bearer ${reader}\r\nContent-Length: 3\r\n\r\nabc`,
      );
      assert.equal(origin.find(id), undefined, `${method}: reached the origin`);
      assert.equal(res.headers['x-request-id'], undefined, `${method}: answered by the gate (${res.status}); it must then be 2xx/4xx and is counted in (i)`);
      assert.equal(res.status, 501, `${method}: ${res.status} ${res.text.slice(0, 100)}`);
    }
  });

  it('a path over request.max_path_bytes (default 8192) → 414 path_too_long', async () => {
    const at = `/files/${'a'.repeat(8192 - '/files/'.length)}`;
    assert.equal(at.length, 8192);
    const ok = await call(at, { token: reader });
    assert.equal(assertForwarded(ok, '8192-byte path').target, at);
    const over = await call(`${at}b`, { token: reader });
    assertRefused(over, 414, 'path_too_long', '8193-byte path');
    // Counted as received: escapes are three bytes each even though they decode to one.
    const escaped = await call(`/files/${'%7E'.repeat(2800)}`, { token: reader });
    assertRefused(escaped, 414, 'path_too_long', '8407-byte escaped path');
    // Raw UTF-8 counts as its percent-encoded form: workerd encodes it before the gate sees it
    // (2807 bytes on the wire, 8407 as the gate measures it).
    const raw = await call(`/files/${'é'.repeat(1400)}`, { token: reader });
    assertRefused(raw, 414, 'path_too_long', '1400 raw é');
  });

  it('(f) client headers cannot spoof identity or connection data (public route)', async () => {
    const spoof = [
      ['x_edgeward_sub', 'admin'],
      ['X_Edgeward_Sub', 'admin-2'],
      ['x-edgeward-sub', 'admin-3'],
      ['X-Edgeward-Scope', 'admin'],
      ['x_edgeward_scope', 'admin'],
      ['X-User-Email', 'boss@example.test'],
      ['x_user_email', 'boss@example.test'],
      ['x-edgeward-groups', '"admins"'],
      ['X-Request-Id', 'spoofed-request-id'],
      ['x_request_id', 'spoofed-request-id'],
      ['X-Forwarded-For', '1.2.3.4'],
      ['x_forwarded_for', '1.2.3.5'],
      ['X-Forwarded-Host', 'evil.example'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Real-IP', '5.6.7.8'],
      ['Forwarded', 'for=9.9.9.9;host=evil.example;proto=https'],
      ['x_custom_header', 'kept?'],
      ['X-API-Key', 'spoofed-api-key'],
      ['x_api_key', 'spoofed-api-key'],
      ['x-custom-header', 'kept'],
      ['CF-Connecting-IP', '203.0.113.7'],
    ];
    const r = await call('/public/headers', { headers: spoof });
    const seen = assertForwarded(r, 'GET /public/headers');
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
    const values = seen.rawHeaders.filter((_, i) => i % 2 === 1);
    assert.deepEqual(names.filter((n) => n.includes('_')), [], 'header names with _ reached the origin');
    for (const v of ['admin', 'admin-2', 'admin-3', 'boss@example.test', '"admins"', 'spoofed-request-id', 'spoofed-api-key', '1.2.3.4', '1.2.3.5', '5.6.7.8', 'evil.example', 'kept?']) {
      assert.ok(!values.some((x) => x.includes(v)), `the client's ${JSON.stringify(v)} reached the origin: ${JSON.stringify(seen.rawHeaders)}`);
    }
    assert.ok(!values.some((x) => x.includes('9.9.9.9')), 'client Forwarded reached the origin');
    for (const n of ['x-edgeward-sub', 'x-edgeward-scope', 'x-edgeward-groups', 'x-user-email']) assert.equal(seen.headers[n], undefined, `${n} on an anonymous request`);
    assert.equal(seen.headers['x-custom-header'], 'kept', 'an ordinary header must be forwarded');
    // The gate's own values.
    const count = (n) => names.filter((x) => x.toLowerCase() === n).length;
    for (const n of ['x-forwarded-for', 'x-real-ip', 'forwarded', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id']) assert.equal(count(n), 1, `exactly one ${n}`);
    assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7', 'x-forwarded-for must be the CF-Connecting-IP sent');
    assert.equal(seen.headers['x-real-ip'], '203.0.113.7');
    assert.equal(seen.headers['x-forwarded-host'], `${HOST}:${worker.port}`);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers.forwarded, `for=203.0.113.7;proto=http;host="${HOST}:${worker.port}"`);
    assert.equal(seen.headers['x-request-id'], r.rid);

    // Authenticated: the verified identity wins, once; unset claims cannot be supplied.
    // (X-API-Key is a credential of its own: next to a bearer token it would be a second one.)
    const r2 = await call('/files/headers', { token: reader, headers: spoof.filter(([n]) => n !== 'X-API-Key') });
    const seen2 = assertForwarded(r2, 'GET /files/headers');
    const names2 = seen2.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.equal(names2.filter((n) => n === 'x-edgeward-sub').length, 1);
    assert.equal(seen2.headers['x-edgeward-sub'], 'reader');
    assert.equal(seen2.headers['x-edgeward-scope'], 'read');
    assert.equal(seen2.headers['x-user-email'], undefined, 'the token has no email: the client value must not stand in');
    assert.equal(seen2.headers['x-edgeward-groups'], undefined, 'the token has no groups: the client value must not stand in');
    assert.deepEqual(names2.filter((n) => n.includes('_')), []);
  });

  it('(f) the forwarded address is CF-Connecting-IP in one form (IPv6, IPv4-mapped); garbage sets none', async () => {
    const cases = [
      ['2001:DB8:0:0::1', '2001:db8::1', 'for="[2001:db8::1]";'],
      ['::ffff:198.51.100.4', '198.51.100.4', 'for=198.51.100.4;'],
      [' 192.0.2.1 ', '192.0.2.1', 'for=192.0.2.1;'],
      ['192.0.2.1, 1.2.3.4', undefined, ''],
      ['unknown', undefined, ''],
    ];
    for (const [sent, xff, forwardedFor] of cases) {
      const r = await call('/public/ip', { headers: [['CF-Connecting-IP', sent], ['X-Forwarded-For', '1.2.3.4'], ['X-Real-IP', '1.2.3.4']] });
      const seen = assertForwarded(r, `CF-Connecting-IP: ${sent}`);
      assert.equal(seen.headers['x-forwarded-for'], xff, `CF-Connecting-IP ${JSON.stringify(sent)}: x-forwarded-for`);
      assert.equal(seen.headers['x-real-ip'], xff, `CF-Connecting-IP ${JSON.stringify(sent)}: x-real-ip`);
      assert.equal(seen.headers.forwarded, `${forwardedFor}proto=http;host="${HOST}:${worker.port}"`, `CF-Connecting-IP ${JSON.stringify(sent)}: forwarded`);
      if (xff === undefined) assert.ok(!seen.rawHeaders.some((v, i) => i % 2 === 1 && v.includes('1.2.3.4') && seen.rawHeaders[i - 1].toLowerCase() !== 'cf-connecting-ip'), `the client's address reached the origin: ${seen.rawHeaders}`);
    }
  });

  it('(f) without CF-Connecting-IP the client cannot set the forwarded address either', async () => {
    const r = await call('/public/no-ip', { headers: [['X-Forwarded-For', '1.2.3.4'], ['X-Real-IP', '1.2.3.4'], ['Forwarded', 'for=1.2.3.4']] });
    const seen = assertForwarded(r, 'GET /public/no-ip');
    assert.ok(!seen.rawHeaders.some((v) => v.includes('1.2.3.4')), `the client's address reached the origin: ${JSON.stringify(seen.rawHeaders)}`);
  });

  it('(f) path-override headers (X-Original-URL, X-Rewrite-URL, ...) never reach the origin', async () => {
    // Symfony (trusted proxies), Laravel and IIS URL Rewrite route on them: forwarded, a request
    // authorized for /files/ok would be served from /admin/secret.
    const names = ['X-Original-URL', 'X-Rewrite-URL', 'X-Original-URI', 'X-Forwarded-URI', 'X-Forwarded-Path', 'X-Forwarded-Prefix', 'X-Envoy-Original-Path'];
    const r = await call('/files/ok', { token: reader, headers: [...names.map((n) => [n, '/admin/secret']), ...names.map((n) => [n.toLowerCase().replace(/-/g, '_'), '/admin/secret'])] });
    const seen = assertForwarded(r, 'GET /files/ok + path-override headers');
    assert.equal(seen.target, '/files/ok');
    const reached = seen.rawHeaders.filter((v, i) => i % 2 === 1 && v.includes('/admin'));
    assert.deepEqual(reached, [], `a path-override header reached the origin: ${JSON.stringify(seen.rawHeaders)}`);
    assert.equal(frameworkView(seen).path, '/files/ok');
  });

  it('(f) other client-address and scheme headers do not reach the origin', async () => {
    // Client-IP: Rails' request.remote_ip reads HTTP_CLIENT_IP; X-Original-Forwarded-For: ingress-nginx.
    const spoof = ['True-Client-IP', 'X-Client-IP', 'Client-IP', 'X-Cluster-Client-IP', 'X-Original-Forwarded-For', 'X-Forwarded-Port', 'X-Forwarded-Ssl', 'X-Forwarded-Scheme', 'X-Url-Scheme', 'Front-End-Https'];
    const r = await call('/public/more-ip', { headers: [...spoof.map((n) => [n, '6.6.6.6']), ['CF-Connecting-IP', '203.0.113.9']] });
    const seen = assertForwarded(r, 'GET /public/more-ip');
    const reached = spoof.filter((n) => seen.headers[n.toLowerCase()] !== undefined);
    assert.deepEqual(reached, [], `client values reached the origin: ${reached.map((n) => `${n}: ${seen.headers[n.toLowerCase()]}`).join(', ')}`);
  });

  it('(g) query token: found by decoded name, removed before forwarding; another case of the name → 400', async () => {
    const token = await mint({ sub: 'query-user', scope: 'read' });
    for (const name of ['access_token', 'access%5Ftoken', 'access%5ftoken', '%61ccess_token']) {
      const r = await call(`/files/q?a=1&${name}=${token}&b=2`);
      const seen = assertForwarded(r, `?${name}=`);
      assert.equal(seen.target, '/files/q?a=1&b=2', `?${name}=: the token parameter reached the origin`);
      assert.equal(seen.headers['x-edgeward-sub'], 'query-user');
      assert.ok(![seen.target, ...seen.rawHeaders].some((x) => x.includes(token.split('.')[2])), 'the token reached the origin');
      assert.equal((await decision(worker, r)).credential, 'query');
    }
    for (const name of ['Access_Token', 'ACCESS%5FTOKEN', 'access_Token']) {
      const r = await call(`/files/q?${name}=${token}`);
      assertRefused(r, 400, 'ambiguous_query', `?${name}=`);
      // Also next to a valid credential in the header.
      const r2 = await call(`/files/q?${name}=${token}`, { token });
      assertRefused(r2, 400, 'ambiguous_query', `?${name}= with a bearer header`);
    }
  });

  it('(g) the token parameter under another case of its name is never forwarded, on public routes too', async () => {
    const token = await mint({ sub: 'public-query', scope: 'read' });
    for (const name of ['access_token', 'Access_Token', 'ACCESS%5FTOKEN', 'access%5ftoken']) {
      const r = await call(`/public/q?${name}=${token}&x=1`);
      assert.equal(assertForwarded(r, `public ?${name}=`).target, '/public/q?x=1', `public ?${name}=<jwt>: the token reached the origin`);
    }
  });

  it('(g) the token parameter under its PHP-mangled name (`access.token`) is the token parameter', async () => {
    // PHP reads ?access.token= as access_token: the gate reads it so too, and never forwards it.
    const token = await mint({ sub: 'mangled', scope: 'read' });
    for (const name of ['access.token', 'access%2Etoken']) {
      const pub = await call(`/public/q?${name}=${token}&x=1`);
      assert.equal(assertForwarded(pub, `public ?${name}=`).target, '/public/q?x=1', `public ?${name}=<jwt>: the token reached the origin`);
      const r = await call(`/files/q?${name}=${token}&x=1`);
      const seen = assertForwarded(r, `?${name}=<jwt>`);
      assert.equal(seen.target, '/files/q?x=1');
      assert.equal(seen.headers['x-edgeward-sub'], 'mangled');
      assert.equal((await decision(worker, r)).credential, 'query');
    }
    // Next to another token in the header: two different credentials, refused.
    const other = await mint({ sub: 'other', scope: 'read' });
    const both = await call(`/files/q?access.token=${token}&x=1`, { token: other });
    assert.equal(both.seen, undefined, 'two credentials: forwarded');
    assert.equal(both.res.status, 401, `two credentials: ${both.res.status} ${both.res.text.slice(0, 200)}`);
  });

  it('(h) an empty claim array sends no header at all', async () => {
    const r = await call('/files/claims', { token: await mint({ sub: 'empty', scope: 'read', groups: [] }) });
    const seen = assertForwarded(r, 'groups: []');
    assert.equal(seen.headers['x-edgeward-groups'], undefined, `the origin got x-edgeward-groups: ${JSON.stringify(seen.headers['x-edgeward-groups'])}`);
  });

  it('(h) claims: arrays as RFC 8941 lists; values no header can carry verbatim → 403 claim_not_forwardable', async () => {
    const groups = ['eng', 'ops team', 'say "hi"', 'back\\slash'];
    const t = await mint({ sub: 'lister', scope: 'read', groups, email: 'lister@example.test' });
    const r = await call('/files/claims', { token: t });
    const seen = assertForwarded(r, 'groups claim');
    assert.equal(seen.headers['x-edgeward-groups'], '"eng", "ops team", "say \\"hi\\"", "back\\\\slash"');
    assert.equal(seen.headers['x-user-email'], 'lister@example.test');
    // One string is not a list: it goes as its text.
    const one = await call('/files/claims', { token: await mint({ sub: 'one', scope: 'read', groups: 'eng' }) });
    assert.equal(assertForwarded(one, 'string groups').headers['x-edgeward-groups'], 'eng');

    for (const [what, claims] of [
      ['non-ASCII sub', { sub: 'José' }],
      ['leading space', { sub: ' lead' }],
      ['trailing space', { sub: 'trail ' }],
      ['tab', { sub: 'a\tb' }],
      ['DEL', { sub: 'a\x7fb' }],
      ['non-ASCII list item', { sub: 'ok', groups: ['eng', 'équipe'] }],
      ['non-ASCII email', { sub: 'ok', email: 'jösé@example.test' }],
    ]) {
      const bad = await call('/files/claims', { token: await mint({ scope: 'read', ...claims }) });
      assertRefused(bad, 403, 'claim_not_forwardable', what);
      assert.equal((await decision(worker, bad)).reason, 'claim_not_forwardable', `${what}: decision log`);
    }
    // Non-string arrays and objects are not forwarded at all (nor can the client supply them).
    const odd = await call('/files/claims', { token: await mint({ sub: 'odd', scope: 'read', groups: ['a', 1], email: { x: 1 } }), headers: [['x-edgeward-groups', '"spoof"']] });
    const oddSeen = assertForwarded(odd, 'non-string claims');
    assert.equal(oddSeen.headers['x-edgeward-groups'], undefined);
    assert.equal(oddSeen.headers['x-user-email'], undefined);
    // Public routes carry no claims, so nothing to refuse.
    const pub = await call('/public/claims', { token: await mint({ sub: 'José' }) });
    assertForwarded(pub, 'public route with a non-forwardable token');
  });
});

// ---------------------------------------------------------------------------------------------
// request.method_override: reject, request.claim_values: percent
// ---------------------------------------------------------------------------------------------

describe('canonical requests (method_override: reject, claim_values: percent)', { timeout: 600_000 }, () => {
  const stack = h.useStack({ label: 'canonical-strict', keys: ['ES256'], origin: startRecordingOrigin, config: configFor({ method_override: 'reject', claim_values: 'percent' }) });
  const call = makeCaller(stack);
  let key;
  let issuer;
  before(() => {
    allOrigins.push(stack.origin);
    [key] = stack.keys;
    issuer = stack.jwks.issuer;
  });
  const mint = (claims) => h.mintToken(key, { issuer, claims });

  it('(d) method override headers or _method → 400 method_override; nothing forwarded', async () => {
    const reader = await mint({ sub: 'reader', scope: 'read' });
    const plain = await call('/items/1?keep=1', { token: reader, method: 'POST', body: 'a=1' });
    assert.equal(assertForwarded(plain, 'plain POST').method, 'POST');
    const variants = [
      { headers: [['X-HTTP-Method-Override', 'DELETE']] },
      { headers: [['X-HTTP-Method', 'DELETE']] },
      { headers: [['X-Method-Override', 'DELETE']] },
      { headers: [['x_http_method_override', 'DELETE']] },
      { query: '_method=DELETE' },
      { query: '%5Fmethod=DELETE' },
      { query: '_METHOD=DELETE' },
      { headers: [['X-HTTP-Method-Override', 'DELETE']], query: '_method=DELETE' },
    ];
    for (const v of variants) {
      const ctx = `POST /items/1 ${JSON.stringify(v)}`;
      const r = await call(`/items/1${v.query ? `?${v.query}` : ''}`, { token: reader, method: 'POST', headers: v.headers ?? [], body: 'a=1' });
      assertRefused(r, 400, 'method_override', ctx);
      // Also on a public route, and without any token: it is refused before the route is looked up.
      const pub = await call(`/public/x${v.query ? `?${v.query}` : ''}`, { method: 'POST', headers: v.headers ?? [], body: 'a=1' });
      assertRefused(pub, 400, 'method_override', `public ${ctx}`);
    }
  });

  it('(d) reject mode also refuses PHP-mangled override parameters', async () => {
    const reader = await mint({ sub: 'reader', scope: 'read' });
    for (const query of ['.method=DELETE', '%2Emethod=DELETE']) {
      const r = await call(`/items/1?${query}`, { token: reader, method: 'POST', body: 'a=1', headers: [['content-type', 'application/x-www-form-urlencoded']] });
      assertRefused(r, 400, 'method_override', `POST /items/1?${query}`);
    }
  });

  it('(h) claim_values: percent forwards every claim percent-encoded', async () => {
    const t = await mint({ sub: 'José', scope: 'read', groups: ['équipe', 'a b', '100%', 'a+b'] });
    const r = await call('/files/claims', { token: t });
    const seen = assertForwarded(r, 'percent claims');
    assert.equal(seen.headers['x-edgeward-sub'], 'Jos%C3%A9');
    // `+` too: form-decoding origins read a raw `+` as a space.
    assert.equal(seen.headers['x-edgeward-groups'], '"%C3%A9quipe", "a%20b", "100%25", "a%2Bb"');
    assert.equal(seen.headers['x-edgeward-scope'], 'read');
  });
});

// ---------------------------------------------------------------------------------------------
// Across both workers
// ---------------------------------------------------------------------------------------------

describe('canonical requests: invariants over everything sent above', () => {
  it('(i) every response was 2xx or 4xx, never 5xx', () => {
    assert.ok(allResponses.length > 100, `only ${allResponses.length} responses recorded: the suites above did not run`);
    const bad = allResponses.filter((r) => r.status < 200 || r.status >= 500);
    assert.deepEqual(bad, [], 'responses outside 2xx/4xx');
  });

  it('no origin saw a header name with `_`, a request its parser refused, or a path a reader puts under /admin without admin scope', () => {
    assert.equal(allOrigins.length, 2);
    assert.ok(allOrigins[0].requests.length > 50 && allOrigins[1].requests.length > 0, 'the origins saw too few requests for this check to mean anything');
    for (const o of allOrigins) {
      assert.deepEqual(o.parseErrors, [], 'the origin refused to parse a forwarded request');
      for (const r of o.requests) {
        const names = r.rawHeaders.filter((_, i) => i % 2 === 0);
        assert.deepEqual(names.filter((n) => n.includes('_')), [], `${r.method} ${r.target}: header names with _`);
        const scope = r.headers['x-edgeward-scope'] ?? '';
        if (!scope.split(' ').includes('admin')) {
          assert.deepEqual(adminReaders(r.rawPath), [], `${r.method} ${r.target} reached the origin without admin scope`);
          const fw = frameworkView(r);
          assert.ok(!underAdmin(normalize(lenientDecode(fw.path))), `${r.method} ${r.target}: a framework reads path ${fw.path}`);
          assert.equal(fw.method, r.method, `${r.method} ${r.target}: a framework reads method ${fw.method}`);
        }
      }
    }
  });
});
