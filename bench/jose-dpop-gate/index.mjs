// A DPoP-checking gate (RFC 9449) written the way a Workers user would write it with jose 6
// (issue 18's baseline, run by bench/dpop.mjs). The same two checks the Edgeward gate makes on
// every `Authorization: DPoP` request:
//   1. the access token: jwtVerify against a local JWKS (createLocalJWKSet, once per isolate;
//      jose caches the imported key) with issuer, audience and an alg allow-list;
//   2. the proof (exactly one `DPoP` header): jwtVerify with EmbeddedJWK (the public key in the
//      proof's `jwk` header, imported for this proof), typ `dpop+jwt`, an asymmetric alg
//      allow-list; then htm = the method, htu = the request URL without query and fragment
//      (compared as parsed URLs: origin and path), iat within IAT_WINDOW_SECS either way, jti
//      present and not seen before in this isolate (a Map of jkt + jti, entries dropped once
//      their window has passed or past 100,000, oldest first — as the gate's per-isolate
//      replay memory), ath = base64url(SHA-256(token)), calculateJwkThumbprint(proof jwk) =
//      the token's cnf.jkt.
// `Authorization: Bearer` is verified the same way (step 1) and refused when the token carries
// cnf.jkt. Accepted requests go to ORIGIN without Authorization and DPoP, with
// x-edgeward-cnf / x-edgeward-jkt set as the gate sets them, and one JSON decision line per request
// is written with console.log unless LOG is "0" (the gate always writes one).
// Vars (--var): JWKS (a JSON key set), ISSUER, AUDIENCE, ORIGIN, IAT_WINDOW_SECS, LOG.
import { EmbeddedJWK, base64url, calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';

const PROOF_ALGS = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'];
const REPLAY_CAPACITY = 100_000;

let jwks; // per isolate
const seen = new Map(); // `${jkt}.${jti}` -> expiry (seconds), in insertion order

function logDecision(fields) {
  console.log(JSON.stringify(fields));
}

function refuse(scheme, error, code, path, started, log) {
  if (log) logDecision({ iss: null, sub: null, status: 401, code, path, ms: Date.now() - started });
  return new Response(JSON.stringify({ error, code }), {
    status: 401,
    headers: { 'content-type': 'application/json', 'www-authenticate': `${scheme} error="${error}", algs="${PROOF_ALGS.join(' ')}"` },
  });
}

async function sha256b64u(text) {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
}

/** First use of a proof's jti (with its key's thumbprint) within its window. */
function firstUse(key, expiry, now) {
  for (const [k, exp] of seen) {
    if (exp > now && seen.size < REPLAY_CAPACITY) break;
    seen.delete(k);
  }
  if (seen.has(key)) return false;
  seen.set(key, expiry);
  return true;
}

/** The proof checks after the token's: null when the proof is good, else a reason code. */
async function checkProof(request, url, token, payload, env) {
  const header = request.headers.get('dpop');
  if (!header) return 'dpop_proof_missing';
  if (header.includes(',')) return 'dpop_proof_multiple'; // several DPoP headers, joined by ", "
  let p;
  let jwk;
  try {
    ({ payload: p, protectedHeader: { jwk } } = await jwtVerify(header, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: PROOF_ALGS }));
  } catch {
    return 'dpop_proof_invalid';
  }
  if (p.htm !== request.method) return 'dpop_htm';
  let htu;
  try {
    htu = new URL(p.htu);
  } catch {
    return 'dpop_htu';
  }
  if (htu.origin !== url.origin || htu.pathname !== url.pathname) return 'dpop_htu';
  const now = Math.floor(Date.now() / 1000);
  const window = Number(env.IAT_WINDOW_SECS);
  if (typeof p.iat !== 'number' || Math.abs(now - p.iat) > window) return 'dpop_iat';
  if (typeof p.jti !== 'string' || p.jti.length === 0) return 'dpop_jti';
  if (p.ath !== (await sha256b64u(token))) return 'dpop_ath';
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  if (payload.cnf?.jkt !== jkt) return 'dpop_key_mismatch';
  if (!firstUse(`${jkt}.${p.jti}`, p.iat + window, now)) return 'dpop_replay';
  return null;
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    const log = env.LOG !== '0';
    const url = new URL(request.url);
    jwks ??= createLocalJWKSet(JSON.parse(env.JWKS));
    const auth = request.headers.get('authorization') ?? '';
    const scheme = auth.startsWith('DPoP ') ? 'DPoP' : auth.startsWith('Bearer ') ? 'Bearer' : null;
    const token = scheme ? auth.slice(scheme.length + 1).trim() : '';
    if (!token) return refuse('Bearer', 'invalid_token', 'token_missing', url.pathname, started, log);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { issuer: env.ISSUER, audience: env.AUDIENCE, algorithms: ['ES256'] }));
    } catch {
      return refuse(scheme, 'invalid_token', 'invalid_token', url.pathname, started, log);
    }
    if (scheme === 'Bearer' && payload.cnf?.jkt !== undefined) {
      return refuse('Bearer', 'invalid_token', 'dpop_bound_token_as_bearer', url.pathname, started, log);
    }
    const headers = new Headers(request.headers);
    headers.delete('authorization');
    headers.delete('dpop');
    if (scheme === 'DPoP') {
      const failure = await checkProof(request, url, token, payload, env);
      if (failure) return refuse('DPoP', 'invalid_dpop_proof', failure, url.pathname, started, log);
      headers.set('x-edgeward-cnf', 'dpop');
      headers.set('x-edgeward-jkt', payload.cnf.jkt);
    }
    const response = await fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
      redirect: 'manual',
    });
    if (log) {
      logDecision({ iss: payload.iss, sub: payload.sub, status: response.status, path: url.pathname, ms: Date.now() - started, cnf: scheme === 'DPoP' ? 'dpop' : null });
    }
    return response;
  },
};
