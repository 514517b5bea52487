// Differential test of the signature seam (issue 4): the Worker's WebCrypto backend and the
// pure-Rust NativeBackend (the CLI's and the JS package's) must give the same verdict for every
// token. Runs the bench build (feature `bench`, build-bench/, never a production build) under
// `wrangler dev` and asks its route `GET /__edgeward/bench/differential` for each token; the route
// runs the whole uncached path (parse → issuer → select_key → job → backend → finish) once per
// backend with the same policy and `now`, and answers {"webcrypto": CODE, "native": CODE}.
//
// Every algorithm Edgeward accepts, valid tokens and tampered ones (flipped signature bits, the
// signature of another key, payload or header changed after signing, truncated, extended, zeroed
// signatures, a signature made with another algorithm than the header names, ECDSA and Ed25519
// malleability, RSA-PSS with another salt length, ...). Each case states the verdict expected, so
// the test fails if both backends agree on a wrong answer, not only if they disagree.
//
//   OUT_DIR=build-bench bash scripts/build-worker --features bench   # the test runs it too
//   node --test tests/e2e-bench/*.test.mjs

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { generateKeyPair, exportJWK, SignJWT, base64url } from 'jose';
import { ROOT, childEnv, startWrangler, nowSecs } from '../e2e/harness.mjs';
import { benchWranglerConfig } from '../../bench/wrangler-config.mjs';

const ASYM = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const HMAC = ['HS256', 'HS384', 'HS512'];
const ISS_ASYM = 'https://diff.invalid/asym';
const ISS_HMAC = 'https://diff.invalid/hmac';
const AUD = 'api://diff';
const ROUTE = '/__edgeward/bench/differential';
// RSA sizes: the 2048-bit minimum and larger moduli, so signature lengths differ per key.
const RSA_BITS = { RS256: 2048, RS384: 3072, RS512: 4096, PS256: 2048, PS384: 3072, PS512: 2048 };
// Group orders (big-endian hex) for ECDSA malleability; checked below against Node's own verify.
const EC_ORDER = {
  ES256: 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
  ES384: 'ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973',
  ES512: '01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409',
};
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------
const enc = (obj) => base64url.encode(JSON.stringify(obj));
const b64 = (bytes) => base64url.encode(bytes);
const parts = (token) => token.split('.');
const sigOf = (token) => Buffer.from(base64url.decode(parts(token)[2]));
const withSig = (token, sig) => `${parts(token).slice(0, 2).join('.')}.${b64(sig)}`;
const hashOf = (alg) => `sha${alg.slice(2)}`; // RS256 → sha256 (not for EdDSA)
const bigOf = (buf) => BigInt(`0x${Buffer.from(buf).toString('hex') || '0'}`);
const bufOf = (n, len) => Buffer.from(n.toString(16).padStart(len * 2, '0'), 'hex');

/** Raw signature of `data` with `prim`'s primitive (options: hash, saltLength, dsaEncoding). */
function rawSign(prim, key, data, opts = {}) {
  const hash = opts.hash ?? (prim.startsWith('Ed') ? null : hashOf(prim));
  const bytes = Buffer.from(data);
  if (prim.startsWith('HS')) return crypto.createHmac(hash, key).update(bytes).digest();
  if (prim.startsWith('RS')) return crypto.sign(hash, bytes, key);
  if (prim.startsWith('PS')) {
    return crypto.sign(hash, bytes, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: opts.saltLength ?? Number(prim.slice(2)) / 8 });
  }
  if (prim.startsWith('ES')) return crypto.sign(hash, bytes, { key, dsaEncoding: opts.dsaEncoding ?? 'ieee-p1363' });
  return crypto.sign(null, bytes, key); // EdDSA / Ed25519
}

function claims(issuer, extra = {}) {
  const now = nowSecs();
  return { iss: issuer, aud: AUD, sub: 'diff-user', scope: 'read', iat: now, exp: now + 600, ...extra };
}

/** header.payload signed with primitive `prim` (default: the header's alg) and `key`. */
function signed(header, payload, key, prim = header.alg, opts = {}) {
  const input = `${enc(header)}.${enc(payload)}`;
  return `${input}.${b64(rawSign(prim, key, input, opts))}`;
}

async function makeKeys() {
  const keys = {};
  for (const alg of ASYM) {
    const opts = { extractable: true, ...(RSA_BITS[alg] ? { modulusLength: RSA_BITS[alg] } : {}) };
    const pair = await generateKeyPair(alg, opts);
    const other = await generateKeyPair(alg, opts); // not configured: "signature of another key"
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: alg.toLowerCase(), alg, use: 'sig' };
    keys[alg] = { alg, kid: jwk.kid, jwk, jose: pair.privateKey, priv: crypto.KeyObject.from(pair.privateKey), other: crypto.KeyObject.from(other.privateKey) };
  }
  for (const alg of HMAC) {
    const len = Number(alg.slice(2)) / 8;
    const secret = crypto.randomBytes(len);
    const jwk = { kty: 'oct', k: b64(secret), kid: alg.toLowerCase(), alg, use: 'sig' };
    keys[alg] = { alg, kid: jwk.kid, jwk, jose: secret, priv: secret, other: crypto.randomBytes(len) };
  }
  // Keys that declare no `alg`, so a token can name any algorithm of their family and reach the
  // backend with it: the backend, not key selection, must then refuse a mismatched signature.
  const anyKey = async (genAlg, kid, opts = {}) => {
    const pair = await generateKeyPair(genAlg, { extractable: true, ...opts });
    return { kid, jwk: { ...(await exportJWK(pair.publicKey)), kid, use: 'sig' }, priv: crypto.KeyObject.from(pair.privateKey) };
  };
  keys.rsaAny = await anyKey('PS256', 'rsa-any', { modulusLength: 2048 });
  keys.p256Any = await anyKey('ES256', 'p256-any');
  keys.edAny = await anyKey('EdDSA', 'ed-any');
  const octAny = crypto.randomBytes(64);
  keys.octAny = { kid: 'oct-any', jwk: { kty: 'oct', k: b64(octAny), kid: 'oct-any' }, priv: octAny };
  return keys;
}

function edgewardConfig(keys) {
  const jwks = (names) => ({ keys: names.map((n) => keys[n].jwk) });
  return {
    issuers: [
      { issuer: ISS_ASYM, audiences: [AUD], algorithms: ASYM, jwks: jwks([...ASYM, 'rsaAny', 'p256Any', 'edAny']) },
      { issuer: ISS_HMAC, audiences: [AUD], algorithms: HMAC, jwks: jwks([...HMAC, 'octAny']) },
    ],
    leeway_secs: 60,
    origin: 'http://127.0.0.1:9',
  };
}

/** Every case: { group, name, token, expect } (expect: "ok" or the reason code both must give). */
async function makeCases(keys) {
  const cases = [];
  const add = (group, name, token, expect) => cases.push({ group, name, token, expect });

  for (const alg of [...ASYM, ...HMAC]) {
    const k = keys[alg];
    const iss = HMAC.includes(alg) ? ISS_HMAC : ISS_ASYM;
    const header = { alg, kid: k.kid, typ: 'JWT' };
    // The valid token comes from jose; the tampered ones are derived from it or signed raw.
    const valid = await new SignJWT(claims(iss)).setProtectedHeader(header).sign(k.jose);
    const sig = sigOf(valid);
    const [h, p] = parts(valid);
    const flip = (i) => {
      const s = Buffer.from(sig);
      s[i] ^= 0x01;
      return withSig(valid, s);
    };
    add(alg, 'valid (jose)', valid, 'ok');
    add(alg, 'valid (raw signature)', signed(header, claims(iss), k.priv), 'ok');
    add(alg, 'valid signature, expired', signed(header, claims(iss, { iat: nowSecs() - 7200, exp: nowSecs() - 3600 }), k.priv), 'expired');
    add(alg, 'flipped bit, first signature byte', flip(0), 'bad_signature');
    add(alg, 'flipped bit, middle signature byte', flip(sig.length >> 1), 'bad_signature');
    add(alg, 'flipped bit, last signature byte', flip(sig.length - 1), 'bad_signature');
    add(alg, 'signature of another key (same alg, same kid)', signed(header, claims(iss), k.other), 'bad_signature');
    add(alg, 'payload changed after signing', `${h}.${enc({ ...JSON.parse(Buffer.from(base64url.decode(p)).toString()), sub: 'admin', scope: 'admin' })}.${parts(valid)[2]}`, 'bad_signature');
    add(alg, 'header changed after signing', `${enc({ ...header, typ: 'at+jwt' })}.${p}.${parts(valid)[2]}`, 'bad_signature');
    add(alg, 'signature truncated by one byte', withSig(valid, sig.subarray(0, sig.length - 1)), 'bad_signature');
    add(alg, 'signature extended by one byte', withSig(valid, Buffer.concat([sig, Buffer.from([0])])), 'bad_signature');
    add(alg, 'empty signature', `${h}.${p}.`, 'bad_signature');
    add(alg, 'all-zero signature', withSig(valid, Buffer.alloc(sig.length)), 'bad_signature');
    add(alg, 'all-0xff signature', withSig(valid, Buffer.alloc(sig.length, 0xff)), 'bad_signature');
    add(alg, 'signature of another token', withSig(valid, sigOf(signed(header, claims(iss, { sub: 'other' }), k.priv))), 'bad_signature');
    // The header names another algorithm of the family than the kid's key declares.
    const sibling = { RS256: 'RS384', RS384: 'RS512', RS512: 'RS256', PS256: 'PS384', PS384: 'PS512', PS512: 'PS256', ES256: 'ES384', ES384: 'ES512', ES512: 'ES256', EdDSA: 'HS256', Ed25519: 'ES256', HS256: 'HS384', HS384: 'HS512', HS512: 'HS256' }[alg];
    if (HMAC.includes(sibling) !== HMAC.includes(alg)) {
      // HS256 for the asymmetric issuer, HMAC keyed with the public JWK: refused by the
      // allow-list, so the classic key confusion cannot even reach key selection.
      add(alg, `header alg ${sibling} (HMAC keyed with the public JWK)`, signed({ ...header, alg: sibling }, claims(iss), Buffer.from(JSON.stringify(k.jwk))), 'alg_not_allowed');
    } else {
      // Signed by the kid's key with the header's alg where the primitive allows (RSA, HMAC),
      // else with the key's own alg; key selection refuses either way.
      const prim = RSA_BITS[alg] || HMAC.includes(alg) ? sibling : alg;
      add(alg, `header alg ${sibling}, kid of a key declaring ${alg}`, signed({ ...header, alg: sibling }, claims(iss), k.priv, prim), 'no_matching_key');
    }
    add(alg, 'unknown kid', signed({ ...header, kid: 'nope' }, claims(iss), k.priv), 'unknown_kid');
  }

  // Alg confusion at the backend: keys without `alg`, a signature made with another primitive
  // than the header names (same key, so the length check passes).
  const rsa = keys.rsaAny;
  for (const [named, madeWith, opts, expect] of [
    ['RS256', 'RS256', {}, 'ok'],
    ['PS256', 'PS256', {}, 'ok'],
    ['PS512', 'PS512', {}, 'ok'],
    ['PS256', 'RS256', {}, 'bad_signature'],
    ['RS256', 'PS256', {}, 'bad_signature'],
    ['RS384', 'RS256', {}, 'bad_signature'],
    ['RS256', 'RS512', {}, 'bad_signature'],
    ['PS384', 'PS256', {}, 'bad_signature'],
    ['PS256', 'PS256', { hash: 'sha384' }, 'bad_signature'],
    // RFC 7518 §3.5: the PSS salt is as long as the hash; other salt lengths are refused.
    ['PS256', 'PS256', { saltLength: 0 }, 'bad_signature'],
    ['PS256', 'PS256', { saltLength: 20 }, 'bad_signature'],
    ['PS256', 'PS256', { saltLength: 64 }, 'bad_signature'],
    ['PS512', 'PS512', { saltLength: 32 }, 'bad_signature'],
  ]) {
    const label = `header ${named}, signed ${madeWith}${opts.hash ? ` with ${opts.hash}` : ''}${opts.saltLength !== undefined ? ` salt ${opts.saltLength}` : ''}`;
    add('alg confusion (rsa-any)', label, signed({ alg: named, kid: rsa.kid }, claims(ISS_ASYM), rsa.priv, madeWith, opts), expect);
  }
  add('alg confusion (rsa-any)', 'signature = modulus n', withSig(signed({ alg: 'RS256', kid: rsa.kid }, claims(ISS_ASYM), rsa.priv), base64url.decode(rsa.jwk.n)), 'bad_signature');
  add('alg confusion (rsa-any)', 'signature = 1', withSig(signed({ alg: 'RS256', kid: rsa.kid }, claims(ISS_ASYM), rsa.priv), bufOf(1n, 256)), 'bad_signature');
  const p256 = keys.p256Any;
  add('alg confusion (p256-any)', 'header ES256, signed ES256', signed({ alg: 'ES256', kid: p256.kid }, claims(ISS_ASYM), p256.priv), 'ok');
  add('alg confusion (p256-any)', 'header ES256, P-256 with SHA-384', signed({ alg: 'ES256', kid: p256.kid }, claims(ISS_ASYM), p256.priv, 'ES256', { hash: 'sha384' }), 'bad_signature');
  add('alg confusion (p256-any)', 'header ES256, P-256 with SHA-512', signed({ alg: 'ES256', kid: p256.kid }, claims(ISS_ASYM), p256.priv, 'ES256', { hash: 'sha512' }), 'bad_signature');
  add('alg confusion (p256-any)', 'header ES384 for a P-256 key', signed({ alg: 'ES384', kid: p256.kid }, claims(ISS_ASYM), p256.priv, 'ES256'), 'no_matching_key');
  const ed = keys.edAny;
  add('alg confusion (ed-any)', 'header EdDSA', signed({ alg: 'EdDSA', kid: ed.kid }, claims(ISS_ASYM), ed.priv), 'ok');
  add('alg confusion (ed-any)', 'header Ed25519 (same primitive)', signed({ alg: 'Ed25519', kid: ed.kid }, claims(ISS_ASYM), ed.priv), 'ok');
  add('alg confusion (ed-any)', 'EdDSA signature relabelled Ed25519', (() => {
    const t = signed({ alg: 'EdDSA', kid: ed.kid }, claims(ISS_ASYM), ed.priv);
    return `${enc({ alg: 'Ed25519', kid: ed.kid })}.${parts(t)[1]}.${parts(t)[2]}`;
  })(), 'bad_signature');
  const oct = keys.octAny;
  add('alg confusion (oct-any)', 'header HS512, signed HS512', signed({ alg: 'HS512', kid: oct.kid }, claims(ISS_HMAC), oct.priv), 'ok');
  add('alg confusion (oct-any)', 'header HS256, signed HS256', signed({ alg: 'HS256', kid: oct.kid }, claims(ISS_HMAC), oct.priv), 'ok');
  add('alg confusion (oct-any)', 'header HS512, signed HS384 (padded to 64 bytes)', (() => {
    const input = `${enc({ alg: 'HS512', kid: oct.kid })}.${enc(claims(ISS_HMAC))}`;
    return `${input}.${b64(Buffer.concat([rawSign('HS384', oct.priv, input), Buffer.alloc(16)]))}`;
  })(), 'bad_signature');

  // Malleability. ECDSA: (r, n − s) is the same signature mathematically (JWS has no low-S
  // rule), so both must accept it; r or s out of range must be refused. Ed25519: S + L is
  // non-canonical (RFC 8032 §5.1.7) and must be refused.
  for (const alg of ['ES256', 'ES384', 'ES512']) {
    const k = keys[alg];
    const header = { alg, kid: k.kid };
    const token = signed(header, claims(ISS_ASYM), k.priv);
    const sig = sigOf(token);
    const half = sig.length / 2;
    const n = BigInt(`0x${EC_ORDER[alg]}`);
    const r = sig.subarray(0, half);
    const s = bigOf(sig.subarray(half));
    const highS = Buffer.concat([r, bufOf(n - s, half)]);
    const input = Buffer.from(parts(token).slice(0, 2).join('.'));
    assert.ok(crypto.verify(hashOf(alg), input, { key: k.priv, dsaEncoding: 'ieee-p1363' }, highS), `${alg}: the group order constant is wrong (Node rejects (r, n - s))`);
    add(`${alg} malleability`, 'high-S twin (r, n - s)', withSig(token, highS), 'ok');
    add(`${alg} malleability`, 's = n (out of range)', withSig(token, Buffer.concat([r, bufOf(n, half)])), 'bad_signature');
    add(`${alg} malleability`, 'r = n', withSig(token, Buffer.concat([bufOf(n, half), sig.subarray(half)])), 'bad_signature');
    add(`${alg} malleability`, 's = 0', withSig(token, Buffer.concat([r, Buffer.alloc(half)])), 'bad_signature');
    add(`${alg} malleability`, 'DER-encoded signature', withSig(token, rawSign(alg, k.priv, input, { dsaEncoding: 'der' })), 'bad_signature');
  }
  for (const alg of ['EdDSA', 'Ed25519']) {
    const k = keys[alg];
    const token = signed({ alg, kid: k.kid }, claims(ISS_ASYM), k.priv);
    const sig = sigOf(token);
    const sLe = Buffer.from(sig.subarray(32)).reverse(); // S is little-endian
    const sPlusL = bufOf(bigOf(sLe) + ED25519_L, 32).reverse();
    add(`${alg} malleability`, 'non-canonical S + L', withSig(token, Buffer.concat([sig.subarray(0, 32), sPlusL])), 'bad_signature');
  }
  return cases;
}

// ------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------
let server;
let cases = [];

function buildBenchWorker() {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'build-worker'), '--features', 'bench'], {
    cwd: ROOT,
    env: { ...childEnv(), OUT_DIR: 'build-bench' },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`OUT_DIR=build-bench bash scripts/build-worker --features bench failed (${r.status}):\n${`${r.stdout}${r.stderr}`.slice(-8000)}`);
}

async function verdicts(list, concurrency = 4) {
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const c = list[next++];
      const res = await server.request({ path: ROUTE, headers: { authorization: `Bearer ${c.token}` } });
      assert.equal(res.status, 200, `${c.group} / ${c.name}: HTTP ${res.status} ${res.text.slice(0, 300)}`);
      const body = res.json();
      assert.ok('webcrypto' in body && 'native' in body, `${c.group} / ${c.name}: not a differential answer (is build-bench/ an older bench build?): ${res.text}`);
      c.webcrypto = body.webcrypto;
      c.native = body.native;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

before(async () => {
  buildBenchWorker(); // a no-op when build-bench/ is up to date
  const keys = await makeKeys();
  cases = await makeCases(keys);
  server = await startWrangler({ label: 'differential', config: edgewardConfig(keys), wranglerConfig: benchWranglerConfig() });
  await verdicts(cases);
});

after(async () => {
  await server?.stop();
});

test('both backends give the same verdict for every token', (t) => {
  const mismatches = cases.filter((c) => c.webcrypto !== c.native).map((c) => `${c.group} / ${c.name}: webcrypto=${c.webcrypto} native=${c.native}`);
  t.diagnostic(`${cases.length} tokens, ${cases.filter((c) => c.webcrypto === 'ok').length} accepted, ${mismatches.length} mismatches`);
  assert.deepEqual(mismatches, [], `the backends disagree on ${mismatches.length} of ${cases.length} tokens:\n${mismatches.join('\n')}`);
});

test('the verdicts are the expected ones (valid tokens accepted, tampered ones refused)', () => {
  const wrong = cases
    .filter((c) => c.webcrypto !== c.expect || c.native !== c.expect)
    .map((c) => `${c.group} / ${c.name}: expected ${c.expect}, webcrypto=${c.webcrypto} native=${c.native}`);
  assert.deepEqual(wrong, [], `${wrong.length} unexpected verdicts:\n${wrong.join('\n')}`);
});

test('every algorithm is covered with valid and tampered tokens', () => {
  for (const alg of [...ASYM, ...HMAC]) {
    const mine = cases.filter((c) => c.group === alg);
    assert.ok(mine.some((c) => c.expect === 'ok' && c.webcrypto === 'ok'), `${alg}: no accepted token`);
    assert.ok(mine.filter((c) => c.expect === 'bad_signature').length >= 10, `${alg}: too few tampered tokens`);
  }
});
