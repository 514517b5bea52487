// A tiny static server for www/ (the page that runs the `edgeward` package in the browser).
// Loopback only, GET/HEAD only, no directory listings, nothing outside the root. Used by the demo
// and by the browser test (tests/www/).
//
// Usage: node demo/serve-www.mjs [port=8790] [issuerPort] [gatewayPort]
//   With issuerPort, prints a link that pre-fills the demo issuer's JWKS URL, issuer and audience;
//   with gatewayPort too, the gate panel's URL (the demo gate's /api/hello).
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'www');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

// The page needs its own scripts, WebAssembly compilation, and fetches to the JWKS URL the user
// enters (any http(s) origin); nothing else.
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** Starts serving `root` on 127.0.0.1:`port` (0 = any free port). Resolves to the server.
 * `headers` replaces the page's security headers (the package tests serve apps under other CSPs). */
export function serveWww({ root = DEFAULT_ROOT, port = 8790, host = '127.0.0.1', headers = HEADERS } = {}) {
  const base = path.resolve(root);
  const server = http.createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (pathname.endsWith('/')) pathname += 'index.html';
    const file = path.resolve(base, `.${pathname}`);
    if (!file.startsWith(base + path.sep) || pathname.includes('\0')) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await fs.readFile(file);
      const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { ...headers, 'content-type': type, 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, headers).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? 8790);
  const issuerPort = process.argv[3] ? Number(process.argv[3]) : null;
  const gatewayPort = process.argv[4] ? Number(process.argv[4]) : null;
  try {
    await fs.access(path.join(DEFAULT_ROOT, 'pkg', 'edgeward.js'));
  } catch {
    console.error('www/pkg is missing: run scripts/build-web first');
    process.exit(1);
  }
  const server = await serveWww({ port });
  let url = `http://127.0.0.1:${server.address().port}/`;
  if (issuerPort) {
    const issuer = `http://127.0.0.1:${issuerPort}`;
    const q = new URLSearchParams({ jwks_uri: `${issuer}/.well-known/jwks.json`, issuer, audience: 'api://demo' });
    if (gatewayPort) q.set('gate', `http://127.0.0.1:${gatewayPort}/api/hello`);
    url += `?${q}`;
  }
  console.log(`Edgeward in the browser (www/): ${url}`);
}
