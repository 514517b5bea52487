// A JWT gate written the way a Workers user would write it with jose 6 (issue 15's baseline, run
// by bench/gate-throughput.mjs): the issuer's JWKS through createRemoteJWKSet (fetched on first
// use, cached per isolate), jwtVerify with issuer, audience and an alg allow-list, then the
// request is forwarded to ORIGIN with the Authorization header removed, and one JSON decision
// line per request is written with console.log (iss, sub, status, path, ms) unless LOG is "0".
// Vars (passed with --var): JWKS_URI, ISSUER, AUDIENCE, ALGORITHMS (comma-separated), ORIGIN, LOG.
import { createRemoteJWKSet, jwtVerify } from 'jose';

let jwks; // per isolate: jose caches the fetched key set and the imported keys inside it

// One JSON line per request (a named function, so a CPU profile can tell the log line apart).
function logDecision(fields) {
  console.log(JSON.stringify(fields));
}

function unauthorized(path, started, log) {
  if (log) logDecision({ iss: null, sub: null, status: 401, path, ms: Date.now() - started });
  return new Response(JSON.stringify({ error: 'invalid_token' }), {
    status: 401,
    headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' },
  });
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    const log = env.LOG !== '0';
    const url = new URL(request.url);
    jwks ??= createRemoteJWKSet(new URL(env.JWKS_URI));
    const auth = request.headers.get('authorization') ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    if (!token) return unauthorized(url.pathname, started, log);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: env.ISSUER,
        audience: env.AUDIENCE,
        algorithms: env.ALGORITHMS.split(','),
      }));
    } catch {
      return unauthorized(url.pathname, started, log);
    }
    const headers = new Headers(request.headers);
    headers.delete('authorization');
    const response = await fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
      redirect: 'manual',
    });
    if (log) {
      logDecision({ iss: payload.iss, sub: payload.sub, status: response.status, path: url.pathname, ms: Date.now() - started });
    }
    return response;
  },
};
