// The jose 6 peer: verifies the bearer token n times per request with the key imported once per
// isolate, with claim checks comparable to Edgeward's (alg allow-list, iss, aud, exp required,
// nbf/iat with 60 s leeway). GET /?alg=RS256&n=200, Authorization: Bearer <token>.
// mode=await: n awaits of an already-settled promise (no crypto).
// mode=subtle: n raw crypto.subtle.verify calls on the same key, signature and signing input
// (no parsing, no claims): the floor any WebCrypto-based verifier pays.
// BENCH_KEYS = {"audience": "...", "issuers": {"RS256": {"issuer": "...", "jwk": {...}}, ...}}.
import { importJWK, jwtVerify, base64url } from 'jose';

let config; // parsed once per isolate
const keys = new Map(); // alg -> CryptoKey (resolved keys only, never promises)

async function key(alg) {
  let k = keys.get(alg);
  if (!k) {
    const { jwk } = config.issuers[alg];
    if (jwk.kty === 'oct') {
      // importJWK returns raw bytes for oct keys, which jose would re-import on every verify;
      // import a CryptoKey once instead (the same treatment as the other algorithms).
      const hash = `SHA-${alg.slice(2)}`;
      k = await crypto.subtle.importKey('raw', base64url.decode(jwk.k), { name: 'HMAC', hash }, false, ['verify']);
    } else {
      k = await importJWK(jwk, alg);
    }
    keys.set(alg, k);
  }
  return k;
}

const SUBTLE = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  PS256: { name: 'RSA-PSS', saltLength: 32 },
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  EdDSA: { name: 'Ed25519' },
  HS256: { name: 'HMAC' },
};

export default {
  async fetch(request, env) {
    config ??= JSON.parse(env.BENCH_KEYS);
    const url = new URL(request.url);
    const alg = url.searchParams.get('alg');
    const n = Math.max(0, Math.min(100000, Number.parseInt(url.searchParams.get('n') ?? '0', 10) || 0));
    const auth = request.headers.get('authorization') ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    if (!config.issuers[alg] || !token) {
      return Response.json({ error: 'alg and a bearer token are required' }, { status: 400 });
    }
    const k = await key(alg);
    const options = {
      algorithms: [alg],
      issuer: config.issuers[alg].issuer,
      audience: config.audience,
      requiredClaims: ['exp'],
      clockTolerance: 60,
    };
    let ok = true;
    if (url.searchParams.get('mode') === 'await') {
      // The cost of resuming after an await of an already-settled promise (compare with Edgeward's
      // mode=await, the same from Rust).
      for (let i = 0; i < n; i++) ok = (await Promise.resolve(true)) && ok;
      return Response.json({ n, alg, ok });
    }
    if (url.searchParams.get('mode') === 'subtle') {
      const dot = token.lastIndexOf('.');
      const data = new TextEncoder().encode(token.slice(0, dot));
      const sig = base64url.decode(token.slice(dot + 1));
      for (let i = 0; i < n; i++) ok = (await crypto.subtle.verify(SUBTLE[alg], k, sig, data)) && ok;
      return Response.json({ n, alg, ok });
    }
    for (let i = 0; i < n; i++) {
      try {
        await jwtVerify(token, k, options);
      } catch {
        ok = false;
      }
    }
    return Response.json({ n, alg, ok });
  },
};
