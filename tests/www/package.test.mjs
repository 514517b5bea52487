// The built `edgeward` package in Node:
//   - against an independent JWT implementation: tokens signed by jose (every algorithm family)
//     are verified by the WebAssembly build, with the Worker's reason codes for refusals;
//   - as npm publishes it (`npm pack --dry-run`: exactly the expected files, the metadata, no
//     build machine path), and as a user installs it (`npm pack`, unpacked under
//     tests/artifacts/pkg/), in Node 20 and 22, from `import` and `require`, every WebAssembly
//     entry point (`edgeward`, `edgeward/web`, `edgeward/verify`);
//   - the gate's verdicts on the shared fixture (tests/fixtures/agreement.json) from `edgeward` and
//     from `edgeward/verify` (its own module, built with feature `web-verifier`);
//   - its error class and guard;
//   - decodeUnverified, refreshAt, pkcePair, randomToken and nonce: every entry point exports the
//     plain-JS ones (src/web/js/decode.js), which give what the Rust functions of the same names
//     give (src/web/tokens.rs, from wasm-bindgen's output in the build directory: the reference);
//   - DPoP: proofs made by the package (WebCrypto) verified by jose, thumbprints by the gate's Rust
//     code against jose's and the RFCs', a non-extractable key, in Node 20 and 22; and the package
//     README's callDpopApi against a stand-in gate that asks for a nonce.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import crypto from 'node:crypto';
import { generateKeyPair, generateSecret, exportJWK, SignJWT, base64url, jwtVerify, EmbeddedJWK, calculateJwkThumbprint, decodeProtectedHeader } from 'jose';
import * as esbuild from 'esbuild';
import http from 'node:http';
import { ARTIFACTS, NODE20, PKG, ROOT, packed } from './packed.mjs';

const ISSUER = 'https://id.example';
const AUDIENCE = 'api://demo';
const now = () => Math.floor(Date.now() / 1000);

let ew, verifyOnly, plain, rust;

before(async () => {
  // The package's Node `import` entry point, as installed from the packed tarball.
  ew = await import(pathToFileURL(path.join(packed(), 'node_modules', 'edgeward', 'edgeward.node.mjs')).href);
  // edgeward/verify: verification alone, its own WebAssembly module.
  verifyOnly = await import(pathToFileURL(path.join(packed(), 'node_modules', 'edgeward', 'verify.node.mjs')).href);
  // edgeward/decode: plain JS.
  plain = await import(pathToFileURL(path.join(packed(), 'node_modules', 'edgeward', 'decode.js')).href);
  // The reference: the Rust functions, from wasm-bindgen's output for the package (scripts/build-web),
  // which no entry point exports.
  const bindgen = path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, 'target'), 'edgeward-web', 'bindgen');
  rust = await import(pathToFileURL(path.join(bindgen, 'edgeward.js')).href);
  rust.initSync({ module: fs.readFileSync(path.join(bindgen, 'edgeward_bg.wasm')) });
});

async function issuer(alg, options = {}) {
  if (alg.startsWith('HS')) {
    const secret = await generateSecret(alg, { extractable: true });
    return { signKey: secret, jwk: { ...(await exportJWK(secret)), kid: `k-${alg}`, alg } };
  }
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...options });
  return { signKey: privateKey, jwk: { ...(await exportJWK(publicKey)), kid: `k-${alg}`, alg, use: 'sig' } };
}

const mint = (alg, key, kid, claims = {}, exp = now() + 600) =>
  new SignJWT({ scope: 'read', ...claims }).setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuer(ISSUER).setAudience(AUDIENCE).setSubject('user-42').setIssuedAt().setExpirationTime(exp)
    .sign(key);

/** The code `fn` rejects with (an error of `module`'s class), or 'accepted'. */
const codeOf = async (fn, module = ew) => {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof module.EdgewardError, `an EdgewardError: ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'EdgewardError');
    return e.code;
  }
  return 'accepted';
};

describe('edgeward package (wasm) vs tokens signed by jose', () => {
  for (const [alg, options] of [
    ['RS256', { modulusLength: 2048 }], ['PS384', { modulusLength: 3072 }], ['ES256'], ['ES384'], ['ES512'],
    ['EdDSA', { crv: 'Ed25519' }], ['HS256'],
  ]) {
    test(`${alg}: accepted, and the Worker's code when tampered, expired or wrongly addressed`, async () => {
      const { signKey, jwk } = await issuer(alg, options);
      const jwks = { keys: [jwk] };
      const policy = { issuer: ISSUER, audiences: [AUDIENCE], algorithms: [alg] };
      const good = await mint(alg, signKey, jwk.kid);
      assert.equal((await ew.verify(good, jwks, policy)).sub, 'user-42');
      assert.equal((await ew.explain(good, JSON.stringify(jwks), policy)).verdict, 'accept');

      const [h, , s] = good.split('.');
      const forged = `${h}.${base64url.encode(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'admin', exp: now() + 600 }))}.${s}`;
      assert.equal(await codeOf(() => ew.verify(forged, jwks, policy)), 'bad_signature');
      const expired = await mint(alg, signKey, jwk.kid, {}, now() - 120);
      assert.equal(await codeOf(() => ew.verify(expired, jwks, policy)), 'expired');
      assert.equal(await codeOf(() => ew.verify(good, jwks, { ...policy, audiences: ['api://other'] })), 'audience_mismatch');
      assert.equal(await codeOf(() => ew.verify(good, jwks, { ...policy, issuer: 'https://evil.example' })), 'issuer_mismatch');
      const { signKey: otherKey } = await issuer(alg, options);
      const otherKeysToken = await mint(alg, otherKey, jwk.kid);
      assert.equal(await codeOf(() => ew.verify(otherKeysToken, jwks, policy)), 'bad_signature', 'same kid, another key');
    });
  }

  test('alg confusion and alg none are refused', async () => {
    const { signKey, jwk } = await issuer('RS256', { modulusLength: 2048 });
    const jwks = { keys: [jwk] };
    const policy = { issuer: ISSUER, algorithms: ['RS256'] };
    const good = await mint('RS256', signKey, jwk.kid);
    const [, p] = good.split('.');
    const none = `${base64url.encode('{"alg":"none"}')}.${p}.`;
    assert.equal(await codeOf(() => ew.verify(none, jwks, policy)), 'alg_none');
    const hs = `${base64url.encode('{"alg":"HS256","kid":"k-RS256"}')}.${p}.${base64url.encode('x'.repeat(32))}`;
    assert.equal(await codeOf(() => ew.verify(hs, jwks, policy)), 'alg_not_allowed');
  });
});

describe('EdgewardError and isEdgewardError', () => {
  test('rejections are EdgewardError instances with code and status or field, never both', async () => {
    let e;
    try {
      await ew.verify('not-a-token', { keys: [] }, { issuer: ISSUER, algorithms: ['ES256'] });
    } catch (err) {
      e = err;
    }
    assert.ok(e instanceof ew.EdgewardError && e instanceof Error);
    assert.ok(ew.isEdgewardError(e));
    assert.equal(e.name, 'EdgewardError');
    assert.equal(e.constructor, ew.EdgewardError);
    assert.deepEqual([e.code, e.status, 'field' in e], ['malformed_token', 401, false]);
    assert.match(String(e), /^EdgewardError: /);
    assert.match(e.stack, /EdgewardError/);

    try {
      await ew.verify('a.b.c', { keys: [] }, { issuer: ISSUER, algorithms: ['ES256', 'none'] });
    } catch (err) {
      e = err;
    }
    assert.deepEqual([e.code, e.field, 'status' in e], ['config_invalid', 'algorithms[1]', false]);
    assert.deepEqual(Object.keys(e).sort(), ['code', 'field'], 'name is on the prototype, as for built-in errors');
  });

  test('the class can be constructed (for tests and mocks), and the guard recognises other copies', () => {
    const mine = new ew.EdgewardError('expired', 'token expired', { status: 401 });
    assert.deepEqual([mine.name, mine.code, mine.message, mine.status, 'field' in mine], ['EdgewardError', 'expired', 'token expired', 401, false]);
    assert.equal(new ew.EdgewardError('invalid_argument').message, 'invalid_argument');
    assert.ok(ew.isEdgewardError(mine));
    // From another copy of the package (a second bundle, another realm): same name, a code.
    const foreign = Object.assign(new Error('x'), { name: 'EdgewardError', code: 'expired' });
    assert.ok(ew.isEdgewardError(foreign));
    for (const other of [new Error('x'), new TypeError('x'), Object.assign(new Error('x'), { name: 'EdgewardError' }), null, undefined, 'EdgewardError', { code: 'expired' }]) {
      assert.equal(ew.isEdgewardError(other), false, String(other));
    }
  });
});

/** A proof checked as a server would, with jose: signature by its embedded key, typ, ES256. */
async function checkProof(proof) {
  const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
  return { payload, protectedHeader, jkt: await calculateJwkThumbprint(protectedHeader.jwk, 'sha256') };
}

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('base64url');

// RFC 7638 §3.1: the example RSA key and its thumbprint.
const RFC7638_KEY = {
  kty: 'RSA', e: 'AQAB', alg: 'RS256', kid: '2011-04-29',
  n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
};

const rejection = async (promise) => {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof ew.EdgewardError, `an EdgewardError: ${e}`);
    return e.code;
  }
  return 'resolved';
};

describe('DPoP: createDpopKey, dpopProof, jwkThumbprint', () => {
  test('createDpopKey: ECDSA P-256, the private key not extractable, the public key exportable', async () => {
    const { privateKey, publicKey } = await ew.createDpopKey();
    assert.deepEqual([privateKey.type, privateKey.extractable, privateKey.usages], ['private', false, ['sign']]);
    assert.deepEqual(privateKey.algorithm, { name: 'ECDSA', namedCurve: 'P-256' });
    assert.equal(publicKey.type, 'public');
    await assert.rejects(crypto.webcrypto.subtle.exportKey('jwk', privateKey), /not extractable/);
    await assert.rejects(crypto.webcrypto.subtle.exportKey('pkcs8', privateKey), /not extractable/);
    const jwk = await crypto.webcrypto.subtle.exportKey('jwk', publicKey);
    assert.equal(jwk.d, undefined);
    // A CryptoKeyPair is structured-cloneable (what IndexedDB stores), and signs after cloning.
    const clone = structuredClone({ privateKey, publicKey });
    assert.equal(clone.privateKey.extractable, false);
    const proof = await ew.dpopProof(clone, { method: 'GET', url: 'https://api.example/x' });
    assert.equal((await checkProof(proof)).jkt, ew.jwkThumbprint(jwk));
  });

  test('dpopProof: verified by jose (EmbeddedJWK, typ dpop+jwt), with the RFC 9449 header and claims', async () => {
    const keyPair = await ew.createDpopKey();
    const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2ln';
    const before = Math.floor(Date.now() / 1000);
    const proof = await ew.dpopProof(keyPair, { method: 'post', url: 'https://API.example:443/orders/7?page=2#top', accessToken: token, nonce: 'n-1' });
    const { payload, protectedHeader, jkt } = await checkProof(proof);
    assert.deepEqual(Object.keys(protectedHeader).sort(), ['alg', 'jwk', 'typ']);
    assert.deepEqual([protectedHeader.typ, protectedHeader.alg], ['dpop+jwt', 'ES256']);
    assert.deepEqual(Object.keys(protectedHeader.jwk).sort(), ['crv', 'kty', 'x', 'y'], 'the public JWK only: no key_ops, ext, d');
    assert.deepEqual(Object.keys(payload).sort(), ['ath', 'htm', 'htu', 'iat', 'jti', 'nonce']);
    assert.equal(payload.htm, 'POST');
    assert.equal(payload.htu, 'https://api.example/orders/7', 'no query, no fragment, default port dropped');
    assert.ok(payload.iat >= before && payload.iat <= Math.floor(Date.now() / 1000) + 1);
    assert.match(payload.jti, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(payload.ath, sha256(token));
    assert.equal(payload.nonce, 'n-1');
    assert.equal(jkt, ew.jwkThumbprint(await crypto.webcrypto.subtle.exportKey('jwk', keyPair.publicKey)));
    assert.equal(jkt, ew.jwkThumbprint(protectedHeader.jwk));

    // Without a token or nonce (a token request): no ath, no nonce. Each proof has its own jti.
    const bare = await ew.dpopProof(keyPair, { method: 'GET', url: new URL('https://api.example/token') });
    const second = await checkProof(bare);
    assert.deepEqual(Object.keys(second.payload).sort(), ['htm', 'htu', 'iat', 'jti']);
    assert.notEqual(second.payload.jti, payload.jti);
    assert.equal(second.jkt, jkt);
    assert.equal(decodeProtectedHeader(bare).jwk.x, protectedHeader.jwk.x);
  });

  test('dpopProof: a relative URL resolves against the document\'s base URL, as fetch resolves it', async () => {
    const keyPair = await ew.createDpopKey();
    try {
      globalThis.location = { href: 'https://app.example/page/x?q=1' };
      assert.equal((await checkProof(await ew.dpopProof(keyPair, { method: 'GET', url: 'api/y' }))).payload.htu, 'https://app.example/page/api/y', 'a worker: its location');
      globalThis.document = { baseURI: 'https://app.example/base/' };
      assert.equal((await checkProof(await ew.dpopProof(keyPair, { method: 'GET', url: 'api/y?z' }))).payload.htu, 'https://app.example/base/api/y', 'a page: its base URL');
    } finally {
      delete globalThis.document;
      delete globalThis.location;
    }
  });

  test('dpopProof: any ECDSA P-256 key pair that may sign (an extractable one from jose too)', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const proof = await ew.dpopProof({ privateKey, publicKey }, { method: 'DELETE', url: 'http://127.0.0.1:8787/api/x' });
    const { payload, jkt } = await checkProof(proof);
    assert.deepEqual([payload.htm, payload.htu], ['DELETE', 'http://127.0.0.1:8787/api/x']);
    assert.equal(jkt, await calculateJwkThumbprint(await exportJWK(publicKey)));
  });

  test('dpopProof: refuses what it cannot use, with invalid_argument', async () => {
    const keyPair = await ew.createDpopKey();
    const rsa = await generateKeyPair('RS256', { modulusLength: 2048 });
    const p384 = await generateKeyPair('ES384');
    const ok = { method: 'GET', url: 'https://api.example/' };
    for (const [why, pair, options] of [
      ['no key pair', undefined, ok], ['an RSA pair', rsa, ok], ['a P-384 pair', p384, ok],
      ['public keys only', { privateKey: keyPair.publicKey, publicKey: keyPair.publicKey }, ok],
      ['no options', keyPair, undefined], ['no method', keyPair, { url: ok.url }], ['a method with a space', keyPair, { ...ok, method: 'G T' }],
      ['a relative URL outside a page', keyPair, { ...ok, url: '/api' }], ['a non-http URL', keyPair, { ...ok, url: 'ftp://api.example/' }],
      ['an empty token', keyPair, { ...ok, accessToken: '' }], ['a numeric nonce', keyPair, { ...ok, nonce: 7 }],
    ]) {
      assert.equal(await rejection(ew.dpopProof(pair, options)), 'invalid_argument', why);
    }
  });

  test('jwkThumbprint: the gate\'s thumbprint equals jose\'s for EC, RSA and OKP keys, and RFC 7638\'s example', async () => {
    assert.equal(ew.jwkThumbprint(RFC7638_KEY), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
    assert.equal(ew.jwkThumbprint(JSON.stringify(RFC7638_KEY)), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs', 'JSON text too');
    assert.equal(await calculateJwkThumbprint(RFC7638_KEY), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
    for (const [alg, options] of [
      ['ES256'], ['ES384'], ['ES512'], ['RS256', { modulusLength: 2048 }], ['PS256', { modulusLength: 4096 }], ['EdDSA', { crv: 'Ed25519' }],
    ]) {
      for (let i = 0; i < 3; i++) {
        const { publicKey } = await generateKeyPair(alg, { extractable: true, ...options });
        const jwk = await exportJWK(publicKey);
        assert.equal(ew.jwkThumbprint(jwk), await calculateJwkThumbprint(jwk, 'sha256'), `${alg}: ${JSON.stringify(jwk)}`);
        assert.equal(ew.jwkThumbprint({ ...jwk, kid: 'k', alg, use: 'sig' }), ew.jwkThumbprint(jwk), 'optional members do not count');
      }
    }
  });

  test('jwkThumbprint: a key the gate refuses in a proof is an EdgewardError, invalid_argument', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const small = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    for (const [why, jwk] of [
      ['a private key', privateJwk], ['a secret', { kty: 'oct', k: base64url.encode('x'.repeat(32)) }],
      ['X25519', { kty: 'OKP', crv: 'X25519', x: base64url.encode(new Uint8Array(32)) }],
      ['no kty', { x: 'a' }], ['not JSON', '{'], ['nothing', undefined], ['a number', 7], ['a 1024-bit RSA key', small],
    ]) {
      let e;
      try {
        ew.jwkThumbprint(jwk);
      } catch (err) {
        e = err;
      }
      assert.ok(e instanceof ew.EdgewardError, `${why}: ${e}`);
      assert.deepEqual([e.code, 'status' in e, 'field' in e], ['invalid_argument', false, false], why);
      assert.match(e.message, /^jwk: /, why);
      assert.ok(!e.message.includes(privateJwk.d), 'no key material in the message');
    }
  });
});

// The package README's callDpopApi, run as written, against a stand-in gate that first asks for
// a server nonce: the first proof has none, the retry has the one from DPoP-Nonce.
describe('the package README: callDpopApi', () => {
  let callDpopApi;
  before(async () => {
    const readme = fs.readFileSync(path.join(ROOT, 'src', 'web', 'README.md'), 'utf8');
    const section = readme.split('\n## Calling a DPoP-protected API\n')[1];
    assert.ok(section, 'the README section exists');
    const block = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes('export async function callDpopApi'));
    const fn = block.match(/\nexport async function callDpopApi[\s\S]*?\n\}\n/)[0];
    const file = path.join(packed(), 'call-dpop-api.mjs');
    fs.writeFileSync(file, `import { dpopProof } from 'edgeward';\n${fn}`);
    ({ callDpopApi } = await import(pathToFileURL(file).href));
  });

  /** A stand-in gate: requires `nonce` in proofs; answers 200 with a next nonce. Records what it got. */
  function standIn(nonce, seen) {
    return async (url, init) => {
      const { payload } = await checkProof(init.headers.dpop);
      seen.push({ url, method: init.method, authorization: init.headers.authorization, accept: init.headers.accept, claims: payload });
      if (payload.nonce !== nonce) {
        return new Response('{"code":"dpop_nonce_required"}', {
          status: 401,
          headers: { 'www-authenticate': 'DPoP realm="edgeward", error="use_dpop_nonce", error_description="a DPoP server nonce is required"', 'dpop-nonce': nonce },
        });
      }
      return new Response('{"ok":true}', { status: 200, headers: { 'dpop-nonce': `${nonce}-next` } });
    };
  }

  test('a 401 use_dpop_nonce is retried once with the DPoP-Nonce; the next nonce is returned', async () => {
    const keyPair = await ew.createDpopKey();
    const seen = [];
    const { response, nonce } = await callDpopApi('https://api.example/orders?page=1', {
      token: 'tok', keyPair, init: { method: 'POST', headers: { accept: 'application/json' } }, fetch: standIn('n1', seen),
    });
    assert.equal(response.status, 200);
    assert.equal(nonce, 'n1-next');
    assert.equal(seen.length, 2);
    for (const s of seen) {
      assert.deepEqual([s.method, s.authorization, s.accept], ['POST', 'DPoP tok', 'application/json']);
      assert.deepEqual([s.claims.htm, s.claims.htu, s.claims.ath], ['POST', 'https://api.example/orders', sha256('tok')]);
    }
    assert.deepEqual(seen.map((s) => s.claims.nonce), [undefined, 'n1']);
    assert.notEqual(seen[0].claims.jti, seen[1].claims.jti);
  });

  test('a known nonce is used at once; a second refusal is returned as is', async () => {
    const keyPair = await ew.createDpopKey();
    const seen = [];
    const first = await callDpopApi('https://api.example/a', { token: 't', keyPair, nonce: 'n2', fetch: standIn('n2', seen) });
    assert.deepEqual([first.response.status, seen.length, seen[0].method, seen[0].claims.nonce], [200, 1, 'GET', 'n2']);
    // A gate whose nonce changes on every answer: one retry, then its 401 is returned.
    const seenRotating = [];
    let n = 0;
    const rotating = async (url, init) => standIn(`r${++n}`, seenRotating)(url, init);
    const second = await callDpopApi('https://api.example/a', { token: 't', keyPair, fetch: rotating });
    assert.deepEqual([second.response.status, seenRotating.length], [401, 2]);
  });
});

describe('the package gives the gate\'s verdicts on the shared fixture (tests/fixtures/agreement.json, tests/agreement.rs)', () => {
  const fixture = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fixtures', 'agreement.json'), 'utf8'));
  for (const [entry, module] of [['edgeward', () => ew], ['edgeward/verify', () => verifyOnly]]) {
    for (const suite of fixture.suites) {
      test(`${entry}: ${suite.alg}: ${suite.cases.length} cases, verify, createVerifier and explain`, async () => {
        const m = module();
        const at = { nowSecs: fixture.nowSecs };
        const v = m.createVerifier(suite.policy, { jwks: suite.jwks });
        for (const { name, token, code } of suite.cases) {
          const got = await codeOf(() => m.verify(token, suite.jwks, suite.policy, at), m);
          assert.equal(got, code ?? 'accepted', `${suite.alg} / ${name}: verify`);
          assert.equal(await codeOf(() => v.verify(token, at), m), got, `${suite.alg} / ${name}: createVerifier`);
          const report = await v.explain(token, at);
          assert.deepEqual([report.verdict, report.code], code === null ? ['accept', null] : ['reject', code], `${suite.alg} / ${name}: explain`);
          const explained = await m.explain(token, suite.jwks, suite.policy, at);
          assert.deepEqual([explained.verdict, explained.code], [report.verdict, report.code], `${suite.alg} / ${name}: explain (function)`);
        }
        v.free();
      });
    }
  }
});

/** What a call gives: its value, or the error's code, message and status. */
function outcome(fn) {
  try {
    return { value: fn() };
  } catch (e) {
    return { code: e.code, message: e.message, status: e.status, isError: plain.isEdgewardError(e) };
  }
}

describe('the plain-JS decodeUnverified, refreshAt, pkcePair, randomToken and nonce give what the Rust ones give', () => {
  const b64 = (s) => base64url.encode(typeof s === 'string' ? s : JSON.stringify(s));
  const seg = (h, c, sig = 'c2ln') => `${b64(h)}.${b64(c)}.${sig}`;
  const corpus = async () => {
    const tokens = [];
    for (const alg of ['RS256', 'ES256', 'EdDSA', 'HS256']) {
      const { signKey, jwk } = await issuer(alg, alg === 'RS256' ? { modulusLength: 2048 } : alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
      tokens.push(await mint(alg, signKey, jwk.kid, { nested: { a: [1, { b: 'é' }] }, big: 2 ** 53 + 2, neg: -1.5e300 }));
    }
    const [h, p, s] = tokens[0].split('.');
    tokens.push(
      '', 'a', 'a.b', 'a.b.c.d', `.${p}.${s}`, `${h}..${s}`, `${h}.${p}.`, `${h}.${p}.${s}=`, `${h}=.${p}.${s}`, `${h}.${p}.${s.slice(0, -1)}`,
      `${h.slice(0, -1)}B.${p}.${s}`, `${h}.${p}.a`, `${h}+.${p}.${s}`, `${h}.${p}/.${s}`,
      seg({ alg: 'none' }, { sub: 'x' }, ''), seg('[]', {}), seg({}, '[]'), seg({}, '"x"'), seg('{"a":1,"a":2}', {}),
      seg({}, '{"x":{"b":1,"c":[{"b":2},{"b":3}],"b":4}}'), seg({}, '{"a":1,"\\u0061":2}'), seg({}, '{"a\\"":1,"a\\u0022":2}'),
      seg({}, '{"a":"\\ud800"}'), seg({}, '{"\\ud800":1}'), seg({}, '{"é":"\\udfff"}'), seg({}, '{"é":"ü","é":1}'), seg({}, '{"a":"\\udc00x"}'), seg({}, '{"a":"\\ud83d\\ude00"}'), seg({}, '{"a":1e999}'), seg({}, '{"a":12345678901234567890}'),
      seg({}, '{"a":1} x'), seg({}, '{"a":01}'), `${b64({})}.${base64url.encode(Buffer.from([0x7b, 0xff, 0x7d]))}.`, seg({}, '\ufeff{}'),
      seg({}, `{"${'n'.repeat(100)}":1,"${'n'.repeat(100)}":2}`), seg({}, '{"a":"x:y","a":"z"}'), seg({}, '{"a:b":1,"a:b":2}'),
      seg({}, '{"u":"\\u003a","u":1}'), seg({}, '{"u":"https://x","v":{"w:":"::"}}'), seg({}, '{"a":{"b":"c:d"},"e":[{"b":1,"b":"f:g"}]}'), seg({}, ' { "a" : [ ] , "b" : { } } '), 'x'.repeat((1 << 20) + 1),
      // Nesting: the gate's parser reads 127 levels of arrays and objects, no more.
      ...[126, 127, 3000].map((d) => seg({}, `{"a":${'['.repeat(d)}${']'.repeat(d)}}`)), seg(`{"alg":"none","x":${'{"y":'.repeat(126)}1${'}'.repeat(126)}}`, {}),
      seg(`{"alg":"none","x":${'{"y":'.repeat(127)}1${'}'.repeat(127)}}`, {}),
    );
    return tokens;
  };

  test('decodeUnverified: same parts, same error code, message and status for every token', async () => {
    for (const t of await corpus()) {
      const js = outcome(() => plain.decodeUnverified(t));
      const reference = outcome(() => rust.decodeUnverified(t));
      assert.deepEqual(js, reference, `token ${t.slice(0, 80)}`);
    }
    assert.deepEqual(outcome(() => plain.decodeUnverified(42)), outcome(() => rust.decodeUnverified(42)));
  });

  test('refreshAt: same time without jitter, same errors; pkcePair, randomToken and nonce', async () => {
    const t = await corpus();
    const dated = seg({ alg: 'ES256' }, { iat: 1000, exp: 4600 });
    for (const [token, options] of [
      [dated, { skewSecs: 60, jitter: 0 }], [dated, { skewSecs: 5000, jitter: 0 }], [seg({}, { exp: 4600 }), undefined], [seg({}, { sub: 'x' }), undefined],
      [seg({}, { exp: 'soon' }), undefined], [seg({}, { exp: 1, iat: -1 }), { jitter: 0 }], [dated, { skewSecs: -1 }], [dated, { skewSecs: 1.5 }],
      [dated, { jitter: 2 }], [dated, { jitter: NaN }], [dated, 'x'], [t[0], { jitter: 0 }], ['a.b', undefined], [7, undefined],
    ]) {
      assert.deepEqual(outcome(() => plain.refreshAt(token, options)), outcome(() => rust.refreshAt(token, options)), `${token.slice?.(0, 40)} ${JSON.stringify(options)}`);
    }
    const jittered = new Set(Array.from({ length: 50 }, () => plain.refreshAt(dated, { skewSecs: 0, jitter: 1 })));
    assert.ok(jittered.size > 10 && [...jittered].every((x) => x >= 1000 && x <= 4600), 'jitter draws within [iat, exp - skew]');
    for (let i = 0; i < 20; i++) {
      const pair = plain.pkcePair();
      assert.equal(pair.verifier.length, 43);
      assert.equal(pair.challenge, crypto.createHash('sha256').update(pair.verifier).digest('base64url'));
    }
    assert.deepEqual([plain.randomToken().length, plain.randomToken(1).length, plain.randomToken(1024).length, plain.nonce().length], [43, 2, 1366, 22]);
    assert.notEqual(plain.nonce(), plain.nonce());
    for (const n of [0, 1025, 1.5, '8']) assert.deepEqual(outcome(() => plain.randomToken(n)), outcome(() => rust.randomToken(n)));
    const pair = rust.pkcePair();
    assert.deepEqual([pair.method, pair.verifier.length, pair.challenge], ['S256', 43, crypto.createHash('sha256').update(pair.verifier).digest('base64url')]);
    assert.deepEqual([rust.randomToken().length, rust.nonce().length], [43, 22]);
  });

  test('the whole package\'s entry points export the plain-JS ones, not the module\'s, with their own error class', async () => {
    const web = await import(pathToFileURL(path.join(packed(), 'node_modules', 'edgeward', 'web.node.mjs')).href);
    const dir = path.join(packed(), 'node_modules', 'edgeward');
    const compact = String(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/);
    assert.ok(fs.readFileSync(path.join(dir, 'decode.js'), 'utf8').includes(compact), 'decode.js checks the shape with COMPACT');
    for (const file of ['edgeward.module.js', 'edgeward.node.cjs', 'web.js', 'web.node.mjs', 'web.node.cjs']) {
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      assert.equal(text.includes(compact), file !== 'edgeward.module.js', `${file} carries decode.js (edgeward.module.js: the module's functions alone)`);
      for (const f of ['decodeUnverified', 'refreshAt', 'pkcePair', 'randomToken', 'nonce']) assert.ok(!text.includes(`wasm.${f}(`), `${file} calls the module's ${f}`);
    }
    // The browser build: one file per part, all sharing error.js (one class for every export).
    const browser = fs.readFileSync(path.join(dir, 'edgeward.js'), 'utf8');
    for (const part of ['./edgeward.module.js', './decode.js', './dpop.js', './error.js']) assert.ok(browser.includes(`from '${part}'`), `edgeward.js re-exports ${part}`);
    for (const file of ['edgeward.module.js', 'decode.js', 'dpop.js']) {
      assert.ok(fs.readFileSync(path.join(dir, file), 'utf8').includes('from "./error.js"'), `${file} imports error.js`);
    }
    const parts = await import(pathToFileURL(path.join(dir, 'edgeward.js')).href);
    assert.throws(() => parts.decodeUnverified('a.b'), (e) => e instanceof parts.EdgewardError && e.code === 'malformed_token', "decodeUnverified: edgeward.js's own class");
    parts.checkApiKey('nope'); // a report, not an error: the module's functions load from edgeward.js
    const refused = await parts.verify('a.b.c', { keys: [] }, { issuer: null, algorithms: ['ES256'] }).then(() => null, (e) => e);
    assert.ok(refused instanceof parts.EdgewardError && typeof refused.code === 'string', `the module throws the same class: ${refused}`);
    for (const [entry, m] of [['edgeward', ew], ['edgeward/web', web]]) {
      try {
        m.decodeUnverified('a.b');
        assert.fail('accepted');
      } catch (e) {
        assert.ok(e instanceof m.EdgewardError && m.isEdgewardError(e) && e.code === 'malformed_token', `${entry}: its own EdgewardError`);
      }
      assert.equal(m.decodeUnverified(await mint('HS256', new TextEncoder().encode('k'.repeat(32)), 'k')).claims.sub, 'user-42', entry);
    }
  });
});

/** A JWK Set server on 127.0.0.1: `serve(doc, headers)` sets the answer; `hits` counts requests. */
async function jwksServer() {
  const state = { status: 200, doc: { keys: [] }, cacheControl: 'max-age=600', hits: 0 };
  const server = http.createServer((req, res) => {
    state.hits++;
    res.writeHead(state.status, { 'content-type': 'application/json', 'cache-control': state.cacheControl });
    res.end(JSON.stringify(state.doc));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.uri = `http://127.0.0.1:${server.address().port}/jwks.json`;
  state.close = () => new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
  return state;
}

/** Polls `cond` until it holds (a background refresh is not awaited by the call that starts it). */
async function until(cond, what) {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(cond(), what);
}

describe('createVerifier: one policy, keys imported once, a remote JWK Set cached by the gate\'s rules', () => {
  test('inline keys: many tokens, every algorithm family, the Worker\'s codes', async () => {
    for (const alg of ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256', 'HS512']) {
      const { signKey, jwk } = await issuer(alg, alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
      const v = ew.createVerifier({ issuer: ISSUER, audiences: [AUDIENCE], algorithms: [alg] }, { jwks: { keys: [jwk] } });
      for (const n of ['a', 'b', 'c']) assert.equal((await v.verify(await mint(alg, signKey, jwk.kid, { n }))).n, n, alg);
      const good = await mint(alg, signKey, jwk.kid);
      assert.equal(await codeOf(() => v.verify(good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA'))), 'bad_signature', alg);
      assert.equal(await codeOf(() => v.verify(good, { nowSecs: now() + 3600 })), 'expired', alg);
      assert.equal((await v.explain(good)).verdict, 'accept');
      const payload = JSON.parse(Buffer.from(good.split('.')[1], 'base64url').toString());
      assert.deepEqual(await v.verify(good), payload, 'the whole payload');
      assert.deepEqual((await v.explain(good)).claims, payload);
      v.free();
    }
    assert.throws(() => ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwksUri: 'http://id.example/jwks' }), (e) => e.code === 'config_invalid' && e.field === 'jwksUri');
    assert.throws(() => ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, {}), (e) => e.code === 'config_invalid' && e.field === 'keys');
  });

  test('jwksUri: fetched once, max-age clamped, unknown kid after the cooldown, last good keys while the issuer fails', async () => {
    const srv = await jwksServer();
    try {
      const k1 = await issuer('ES256');
      const k2 = await issuer('ES256');
      k2.jwk.kid = 'k-2';
      const t0 = now();
      const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'], maxLifetimeSecs: null }, { jwksUri: srv.uri });
      const token1 = await mint('ES256', k1.signKey, k1.jwk.kid, {}, t0 + 100_000);
      const token2 = await mint('ES256', k2.signKey, 'k-2', {}, t0 + 100_000);
      const at = (secs) => ({ nowSecs: t0 + secs });

      srv.status = 503;
      assert.equal(await codeOf(() => v.verify(token1, at(0))), 'jwks_unavailable', 'no keys yet: 503, never an accept');
      assert.equal(srv.hits, 1);
      srv.status = 200;
      srv.doc = { keys: [k1.jwk] };
      srv.cacheControl = 'max-age=5';
      assert.equal(await codeOf(() => v.verify(token1, at(1))), 'jwks_unavailable', 'a failed fetch is not retried within the cooldown');
      assert.equal(srv.hits, 1);
      assert.equal((await v.verify(token1, at(31))).sub, 'user-42');
      assert.equal(srv.hits, 2);
      for (const s of [32, 100, 250]) await v.verify(token1, at(s));
      assert.equal(srv.hits, 2, 'max-age=5 is clamped to 300 s: no fetch within it');

      srv.doc = { keys: [k1.jwk, k2.jwk] };
      srv.cacheControl = 'max-age=600';
      assert.equal((await v.verify(token2, at(260))).sub, 'user-42', 'an unknown kid refetches (the last fetch was 229 s ago)');
      assert.equal(srv.hits, 3);
      const k3 = await issuer('ES256');
      const token3 = await mint('ES256', k3.signKey, 'k-3', {}, t0 + 100_000);
      assert.equal(await codeOf(() => v.verify(token3, at(270))), 'unknown_kid', 'within the 30 s cooldown: no fetch');
      assert.equal(srv.hits, 3);

      // Past 90 % of the TTL: answered from the cache, refreshed in the background.
      srv.status = 500;
      assert.equal((await v.verify(token1, at(260 + 550))).sub, 'user-42');
      await until(() => srv.hits === 4, 'a background refresh');
      assert.equal((await v.verify(token2, at(260 + 5000))).sub, 'user-42', 'the issuer fails: the last good keys stay usable');
      v.free();
    } finally {
      await srv.close();
    }
  });

  test('jwksUri: a redirect is not followed; a call dated ahead does not keep the cache fresh', async () => {
    const srv = await jwksServer();
    const redirector = http.createServer((req, res) => res.writeHead(302, { location: srv.uri }).end());
    await new Promise((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const k1 = await issuer('ES256');
      const k2 = await issuer('ES256');
      k2.jwk.kid = 'k-2';
      srv.doc = { keys: [k1.jwk] };
      const t0 = now();
      const token1 = await mint('ES256', k1.signKey, k1.jwk.kid, {}, t0 + 100_000);
      const token2 = await mint('ES256', k2.signKey, 'k-2', {}, t0 + 100_000);
      const at = (secs) => ({ nowSecs: t0 + secs });

      const redirected = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwksUri: `http://127.0.0.1:${redirector.address().port}/jwks.json` });
      assert.equal(await codeOf(() => redirected.verify(token1, at(0))), 'jwks_unavailable', 'a 302 is a failed fetch');
      assert.equal(srv.hits, 0, 'the redirect target was not fetched');
      redirected.free();

      const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'], maxLifetimeSecs: null }, { jwksUri: srv.uri });
      assert.equal((await v.verify(token1, at(0))).sub, 'user-42');
      // One call a year ahead fetches and stamps the cache with its clock...
      assert.equal((await v.explain(token1, at(365 * 86_400))).code, 'expired');
      assert.equal(srv.hits, 2);
      // ... then the issuer rotates k1 out. At the present clock the keys stamped a year ahead
      // are stale: the next call is answered from them (k-2 unknown yet) and refreshes them in the
      // background, after which the new key verifies and the removed one is refused.
      srv.doc = { keys: [k2.jwk] };
      assert.equal(await codeOf(() => v.verify(token2, at(10))), 'unknown_kid');
      // Polled until the refresh has been applied (explain fetches nothing within the cooldown).
      for (let i = 0; i < 500 && (await v.explain(token2, at(12))).verdict !== 'accept'; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.equal((await v.verify(token2, at(12))).sub, 'user-42');
      assert.equal(srv.hits, 3, 'one background refresh');
      assert.equal(await codeOf(() => v.verify(token1, at(13))), 'unknown_kid');
      assert.equal(srv.hits, 3, 'the cooldown counts from the present fetch');
      v.free();
    } finally {
      redirector.close();
      redirector.closeAllConnections();
      await srv.close();
    }
  });

  test('jwksUri: a burst on a cold cache sends one fetch; a fetch that ignores its abort signal still times out', async () => {
    const srv = await jwksServer();
    try {
      const k1 = await issuer('ES256');
      srv.doc = { keys: [k1.jwk] };
      const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwksUri: srv.uri });
      const tokens = await Promise.all(Array.from({ length: 50 }, (_, n) => mint('ES256', k1.signKey, k1.jwk.kid, { n })));
      const subs = await Promise.all(tokens.map((t) => v.verify(t).then((c) => c.n)));
      assert.deepEqual(subs, tokens.map((_, n) => n));
      assert.equal(srv.hits, 1, 'one fetch for the burst');
      v.free();
    } finally {
      await srv.close();
    }
    // A fetch that never settles and ignores the signal: the verifier answers at its 5 s timeout.
    const k2 = await issuer('ES256');
    const stuck = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwksUri: 'https://id.example/jwks', fetch: () => new Promise(() => {}) });
    const token = await mint('ES256', k2.signKey, k2.jwk.kid);
    const t0 = performance.now();
    assert.equal(await codeOf(() => stuck.verify(token)), 'jwks_unavailable');
    const took = performance.now() - t0;
    assert.ok(took >= 4900 && took < 9000, `answered after ${took} ms`);
    stuck.free();
  });

  test('a verifier past 64 imported keys imports again what it dropped', async () => {
    const keys = await Promise.all(Array.from({ length: 66 }, async (_, i) => {
      const k = await issuer('ES256');
      k.jwk.kid = `k-${i}`;
      return k;
    }));
    const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwks: { keys: keys.map((k) => k.jwk) } });
    for (const k of [...keys, keys[0], keys[65]]) assert.equal((await v.verify(await mint('ES256', k.signKey, k.jwk.kid))).sub, 'user-42', k.jwk.kid);
    const forged = await mint('ES256', keys[1].signKey, 'k-0');
    assert.equal(await codeOf(() => v.verify(forged)), 'bad_signature', 'a re-imported key is the right one');
    v.free();
  });

  test('explain shows no credentials of the jwksUri and no more than 64 characters of a kid', async () => {
    const k1 = await issuer('ES256');
    const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['ES256'] }, { jwksUri: 'http://user:hunter2@127.0.0.1:9/jwks.json?api_key=SEKRIT', fetch: async () => { throw new Error('offline'); } });
    const report = await v.explain(await mint('ES256', k1.signKey, 'k'.repeat(5000)));
    const text = JSON.stringify(report);
    assert.ok(!text.includes('hunter2') && !text.includes('SEKRIT'), text.slice(0, 400));
    assert.match(report.steps.find((s) => s.step === 'policy').detail, /keys from http:\/\/…@127\.0\.0\.1:9\/jwks\.json\?…/);
    const parse = report.steps.find((s) => s.step === 'parse').detail;
    assert.ok(parse.includes(`"${'k'.repeat(64)}"`) && !parse.includes('k'.repeat(65)), parse.slice(0, 200));
    v.free();
  });

  test('jwksUri with a fetch of our own', async () => {
    const k1 = await issuer('EdDSA', { crv: 'Ed25519' });
    const seen = [];
    const fetch = async (url, init) => {
      seen.push([url, init.headers.accept]);
      return new Response(JSON.stringify({ keys: [k1.jwk] }), { headers: { 'cache-control': 'max-age=60' } });
    };
    const v = ew.createVerifier({ issuer: ISSUER, algorithms: ['EdDSA'] }, { jwksUri: 'https://id.example/jwks', fetch });
    assert.equal((await v.verify(await mint('EdDSA', k1.signKey, k1.jwk.kid))).sub, 'user-42');
    assert.deepEqual(seen, [['https://id.example/jwks', 'application/json']]);
    // A key set larger than the gate reads (256 KiB) is not read to its end: no keys, 503.
    const huge = async () => new Response(JSON.stringify({ keys: [k1.jwk], pad: 'x'.repeat(300_000) }));
    const big = ew.createVerifier({ issuer: ISSUER, algorithms: ['EdDSA'] }, { jwksUri: 'https://id.example/jwks', fetch: huge });
    const fresh = await mint('EdDSA', k1.signKey, k1.jwk.kid);
    assert.equal(await codeOf(() => big.verify(fresh)), 'jwks_unavailable');
  });
});

// What a probe prints, in every runtime and module system: the runtime's own verdicts on a token
// signed by jose, and whether errors are the package's class.
const PROBE = `
  const [token, jwks] = process.argv.slice(-2);
  const policy = { issuer: ${JSON.stringify(ISSUER)}, algorithms: ['ES256'] };
  let tampered, isClass, guard;
  ew.verify(token.slice(0, -4) + 'AAAA', jwks, policy).catch((e) => {
    tampered = e.code; isClass = e instanceof ew.EdgewardError; guard = ew.isEdgewardError(e);
  }).then(() => ew.verify(token, jwks, policy)).then(({ sub }) => console.log(JSON.stringify({ node: process.versions.node.split('.')[0], sub, tampered, isClass, guard,
    pkce: ew.pkcePair ? ew.pkcePair().method : null, exports: Object.keys(ew).filter((k) => k !== 'default' && k !== '__esModule').sort() })));`;
const PROBES = {
  'import edgeward': ['probe.mjs', `import * as ew from 'edgeward';\n${PROBE}`],
  'require edgeward': ['probe.cjs', `const ew = require('edgeward');\n${PROBE}`],
  'import edgeward/web': ['probe-web.mjs', `import init, * as ew from 'edgeward/web';\nconst ready = await init();\nif (!ready.memory) throw new Error('init() did not return the module');\n${PROBE}`],
  'require edgeward/web': ['probe-web.cjs', `const ew = require('edgeward/web');\new.default().then((ready) => {\nif (!ready.memory) throw new Error('init() did not return the module');\n${PROBE}\n});`],
  'import edgeward/verify': ['probe-verify.mjs', `import * as ew from 'edgeward/verify';\n${PROBE}`],
  'require edgeward/verify': ['probe-verify.cjs', `const ew = require('edgeward/verify');\n${PROBE}`],
};
// What `edgeward/verify` exports: verification and the error class and guard, nothing else.
const VERIFY_EXPORTS = ['EdgewardError', 'createVerifier', 'explain', 'isEdgewardError', 'verify'];

describe('the packed package in Node 20 and 22, from import and require (resolved through its exports)', () => {
  let token, jwks, api;
  before(async () => {
    const { signKey, jwk } = await issuer('ES256');
    token = await mint('ES256', signKey, jwk.kid);
    jwks = JSON.stringify({ keys: [jwk] });
    api = Object.keys(ew).sort();
    for (const [file, source] of Object.values(PROBES)) fs.writeFileSync(path.join(packed(), file), source);
  });

  for (const [node, major] of [[NODE20, '20'], [process.execPath, '22']]) {
    for (const [name, [file]] of Object.entries(PROBES)) {
      test(`Node ${major}: ${name}`, () => {
        assert.ok(fs.existsSync(node), `${node} is missing: run scripts/setup`);
        const out = execFileSync(node, [file, token, jwks], { cwd: packed(), encoding: 'utf8' });
        const web = name.endsWith('/web');
        const verifying = name.endsWith('/verify');
        assert.deepEqual(JSON.parse(out), {
          node: major, sub: 'user-42', tampered: 'bad_signature', isClass: true, guard: true, pkce: verifying ? null : 'S256',
          exports: web ? [...api, 'initSync'].sort() : verifying ? VERIFY_EXPORTS : api,
        });
      });
    }
  }
});

// DPoP in each runtime and module system: the probe makes a key and a proof; the test checks the
// proof with jose and the thumbprint the package computed.
const DPOP_PROBE = `
  const keyPair = await ew.createDpopKey();
  const proof = await ew.dpopProof(keyPair, { method: 'get', url: 'https://api.example/r?q=1', accessToken: 'tok', nonce: 'n' });
  const jkt = ew.jwkThumbprint(await crypto.subtle.exportKey('jwk', keyPair.publicKey));
  console.log(JSON.stringify({ proof, jkt, extractable: keyPair.privateKey.extractable }));`;
const DPOP_PROBES = {
  'import edgeward': ['dpop-probe.mjs', `import * as ew from 'edgeward';\n${DPOP_PROBE}`],
  'require edgeward': ['dpop-probe.cjs', `const ew = require('edgeward');\n(async () => {${DPOP_PROBE}\n})();`],
  'require edgeward/web': ['dpop-probe-web.cjs', `const ew = require('edgeward/web');\n(async () => {${DPOP_PROBE}\n})();`],
};

// Bun and Deno (dev dependencies from the package registry, pinned in package.json): the packed
// package resolved through its exports from node_modules, every entry point that needs no browser.
// Deno gets a cache directory of this run's own: Deno 2.9's V8 code cache keys a file in
// node_modules by its path and modification time, and npm gives every packed file the same time, so
// a cache left by an earlier build at this path (a file of the same length) runs that build's code
// (a SyntaxError from a lazily compiled function). The package README tells Deno users the same.
const OTHER_RUNTIMES = {
  bun: { bin: path.join(ROOT, 'node_modules', '.bin', 'bun'), args: [], module: ['esm', 'cjs'], env: {} },
  deno: {
    bin: path.join(ROOT, 'node_modules', '.bin', 'deno'), args: ['run', '--allow-read'], module: ['esm'],
    env: { DENO_DIR: path.join(ARTIFACTS, '.deno') },
  },
};
const runtimeProbe = (format, fixture) => {
  const load = format === 'esm'
    ? "import * as ew from 'edgeward';\nimport * as decode from 'edgeward/decode';\nimport * as dpop from 'edgeward/dpop';\nimport * as only from 'edgeward/verify';\n"
    : "const ew = require('edgeward');\nconst decode = require('edgeward/decode');\nconst dpop = require('edgeward/dpop');\nconst only = require('edgeward/verify');\n";
  return `${load}const { token, jwks, policy } = ${JSON.stringify(fixture)};
(async () => {
  const sub = (await ew.createVerifier(policy, { jwks }).verify(token)).sub;
  const tampered = await ew.verify(token.slice(0, -4) + 'AAAA', jwks, policy).then(() => 'accepted', (e) => ew.isEdgewardError(e) && e.code);
  const proof = (await dpop.dpopProof(await dpop.createDpopKey(), { method: 'GET', url: 'https://api.example/' })).split('.').length;
  const verifyOnly = {
    sub: (await only.createVerifier(policy, { jwks }).verify(token)).sub,
    tampered: await only.verify(token.slice(0, -4) + 'AAAA', jwks, policy).then(() => 'accepted', (e) => e instanceof only.EdgewardError && only.isEdgewardError(e) && e.code),
    explained: (await only.explain(token, jwks, policy)).verdict,
  };
  console.log(JSON.stringify({ sub, tampered, decoded: decode.decodeUnverified(token).claims.sub, proof, pkce: ew.pkcePair().method, verifyOnly }));
})();
`;
};

describe('the packed package in Bun and Deno', () => {
  let fixture;
  before(async () => {
    const { signKey, jwk } = await issuer('ES256');
    fixture = { token: await mint('ES256', signKey, jwk.kid), jwks: { keys: [jwk] }, policy: { issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['ES256'] } };
  });
  for (const [runtime, { bin, args, module, env }] of Object.entries(OTHER_RUNTIMES)) {
    for (const format of module) {
      test(`${runtime}: ${format === 'esm' ? 'import' : 'require'}`, () => {
        const file = `${runtime}-probe.${format === 'esm' ? 'mjs' : 'cjs'}`;
        fs.writeFileSync(path.join(packed(), file), runtimeProbe(format, fixture));
        const out = execFileSync(bin, [...args, file], { cwd: packed(), encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env } });
        assert.deepEqual(JSON.parse(out), {
          sub: 'user-42', tampered: 'bad_signature', decoded: 'user-42', proof: 3, pkce: 'S256',
          verifyOnly: { sub: 'user-42', tampered: 'bad_signature', explained: 'accept' },
        });
      });
    }
  }
});

// The plain-JS entry points in each runtime and module system.
const PLAIN_PROBE = `
  const parts = decode.decodeUnverified(process.argv.at(-1));
  let code;
  try { decode.decodeUnverified('a.b'); } catch (e) { code = decode.isEdgewardError(e) && e instanceof decode.EdgewardError && e.code; }
  dpop.createDpopKey().then((keys) => dpop.dpopProof(keys, { method: 'GET', url: 'https://api.example/' })).then((proof) =>
    console.log(JSON.stringify({ sub: parts.claims.sub, code, pkce: decode.pkcePair().method, proof: proof.split('.').length,
      exports: [...Object.keys(decode), ...Object.keys(dpop)].filter((k) => k !== '__esModule').sort() })));`;
const PLAIN_PROBES = {
  import: ['plain-probe.mjs', `import * as decode from 'edgeward/decode';\nimport * as dpop from 'edgeward/dpop';\n${PLAIN_PROBE}`],
  require: ['plain-probe.cjs', `const decode = require('edgeward/decode');\nconst dpop = require('edgeward/dpop');\n${PLAIN_PROBE}`],
};

describe('edgeward/decode and edgeward/dpop in Node 20 and 22, from import and require', () => {
  before(() => {
    for (const [file, source] of Object.values(PLAIN_PROBES)) fs.writeFileSync(path.join(packed(), file), source);
  });
  for (const [node, major] of [[NODE20, '20'], [process.execPath, '22']]) {
    for (const [name, [file]] of Object.entries(PLAIN_PROBES)) {
      test(`Node ${major}: ${name}`, async () => {
        const { signKey, jwk } = await issuer('ES256');
        const out = JSON.parse(execFileSync(node, [file, await mint('ES256', signKey, jwk.kid)], { cwd: packed(), encoding: 'utf8' }));
        assert.deepEqual(out, {
          sub: 'user-42', code: 'malformed_token', pkce: 'S256', proof: 3,
          exports: ['EdgewardError', 'EdgewardError', 'createDpopKey', 'decodeUnverified', 'dpopProof', 'isEdgewardError', 'isEdgewardError', 'nonce', 'pkcePair', 'randomToken', 'refreshAt'],
        });
      });
    }
  }
});

describe('DPoP in Node 20 and 22, from import and require', () => {
  before(() => {
    for (const [file, source] of Object.values(DPOP_PROBES)) fs.writeFileSync(path.join(packed(), file), source);
  });
  for (const [node, major] of [[NODE20, '20'], [process.execPath, '22']]) {
    for (const [name, [file]] of Object.entries(DPOP_PROBES)) {
      test(`Node ${major}: ${name}`, async () => {
        const { proof, jkt, extractable } = JSON.parse(execFileSync(node, [file], { cwd: packed(), encoding: 'utf8' }));
        const checked = await checkProof(proof);
        assert.deepEqual([checked.payload.htm, checked.payload.htu, checked.payload.ath, checked.payload.nonce], ['GET', 'https://api.example/r', sha256('tok'), 'n']);
        assert.equal(jkt, checked.jkt);
        assert.equal(extractable, false);
      });
    }
  }
});

// The files `npm pack` puts in the tarball, and nothing else.
const PACKED_FILES = [
  'LICENSE', 'README.md', 'package.json', 'edgeward_bg.wasm',
  'edgeward.js', 'edgeward.module.js', 'error.js', 'edgeward.d.ts', 'edgeward.node.cjs', 'edgeward.node.mjs', 'edgeward.d.cts',
  'web.js', 'web.d.ts', 'web.node.cjs', 'web.node.mjs', 'web.d.cts',
  'verify_bg.wasm', 'verify.js', 'verify.d.ts', 'verify.node.cjs', 'verify.node.mjs', 'verify.d.cts',
  'decode.js', 'decode.cjs', 'decode.d.ts', 'decode.d.cts', 'dpop.js', 'dpop.cjs', 'dpop.d.ts', 'dpop.d.cts',
];

describe('what npm publishes', () => {
  test('npm pack --dry-run: exactly the package files, no source maps, no build machine path', () => {
    const [report] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', PKG], { encoding: 'utf8' }));
    assert.deepEqual(report.files.map((f) => f.path).sort(), [...PACKED_FILES].sort());
    // Paths of this machine: the checkout, the home directory (the cargo registry's sources), /work.
    const leaks = [ROOT, os.homedir(), '/work/', '/root/', '/home/'];
    for (const { path: file } of report.files) {
      const text = fs.readFileSync(path.join(PKG, file)).toString('latin1');
      for (const leak of leaks) assert.ok(!text.includes(leak), `${file} contains ${leak}`);
      assert.ok(!/sourceMappingURL/.test(text), `${file} refers to a source map`);
    }
  });

  test('package.json: the package\'s own metadata, exports with types/import/require/browser/default, side-effect free', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'));
    const cargo = fs.readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8');
    assert.equal(pkg.name, 'edgeward');
    assert.equal(pkg.version, /^version = "(.+)"$/m.exec(cargo)[1]);
    assert.equal(pkg.license, /^license = "(.+)"$/m.exec(cargo)[1]);
    assert.notEqual(pkg.description, /^description = "(.+)"$/m.exec(cargo)[1], 'the package\'s description, not the Worker\'s');
    assert.match(pkg.description, /browser and Node/);
    assert.ok(pkg.keywords.includes('jwt') && pkg.keywords.includes('webassembly'));
    assert.match(pkg.repository.url, /^git\+https:\/\/.+\.git$/);
    assert.equal(pkg.repository.directory, 'src/web');
    assert.match(pkg.homepage, /^https:\/\//);
    assert.equal(pkg.engines.node, '>=20');
    assert.equal(pkg.sideEffects, false);
    for (const entry of ['.', './web', './verify']) {
      const e = pkg.exports[entry];
      assert.deepEqual(Object.keys(e), ['types', 'node', 'browser', 'default'], 'types first; node before browser/default');
      assert.deepEqual(Object.keys(e.types), ['import', 'require']);
      assert.deepEqual(Object.keys(e.node), ['import', 'require']);
      for (const target of [e.types.import, e.types.require, e.node.import, e.node.require, e.browser, e.default]) {
        assert.ok(fs.existsSync(path.join(PKG, target)), `${entry}: ${target}`);
      }
    }
    for (const entry of ['./decode', './dpop']) {
      const e = pkg.exports[entry];
      assert.deepEqual(Object.keys(e), ['types', 'import', 'require', 'default'], `${entry}: plain JS, one build for every runtime`);
      for (const target of [e.types.import, e.types.require, e.import, e.require, e.default]) assert.ok(fs.existsSync(path.join(PKG, target)), `${entry}: ${target}`);
    }
    assert.equal(fs.readFileSync(path.join(PKG, 'LICENSE'), 'utf8'), fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'));
    assert.match(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
    assert.match(fs.readFileSync(path.join(PKG, 'README.md'), 'utf8'), /^# edgeward \(JavaScript/);
  });

  test('the inlined builds do not point a bundler at a .wasm file', async () => {
    for (const file of ['edgeward.js', 'edgeward.module.js', 'verify.js']) {
      const text = fs.readFileSync(path.join(PKG, file), 'utf8');
      assert.ok(!text.includes('import.meta') && !text.includes('_bg.wasm'), file);
      // esbuild refuses top-level await in CommonJS output; the `await`s inside dpop.js's async functions pass.
      await assert.doesNotReject(esbuild.transform(text, { format: 'cjs', loader: 'js' }), `${file}: no top-level await`);
    }
    await assert.rejects(esbuild.transform('await 0; export {};', { format: 'cjs' }), /Top-level await/, 'the check catches one');
  });

  test('edgeward/verify inlines its own module, smaller than the whole package\'s', () => {
    const hex = (file) => /fromHex\("([0-9a-f]+)"\)/.exec(fs.readFileSync(path.join(PKG, file), 'utf8'))?.[1];
    const [whole, verifying] = [hex('edgeward.module.js'), hex('verify.js')];
    assert.equal(whole, fs.readFileSync(path.join(PKG, 'edgeward_bg.wasm')).toString('hex'), 'edgeward.module.js inlines edgeward_bg.wasm');
    assert.equal(verifying, fs.readFileSync(path.join(PKG, 'verify_bg.wasm')).toString('hex'), 'verify.js inlines verify_bg.wasm');
    assert.ok(verifying.length < whole.length, `verify_bg.wasm (${verifying.length / 2} B) is smaller than edgeward_bg.wasm (${whole.length / 2} B)`);
    const nodeBuild = fs.readFileSync(path.join(PKG, 'verify.node.cjs'), 'utf8');
    assert.ok(/__dirname, ["']verify_bg\.wasm["']/.test(nodeBuild) && !nodeBuild.includes('edgeward_bg.wasm'), 'verify.node.cjs reads verify_bg.wasm');
  });

  test('types: every runtime export is declared, verify and explain are generic, EdgewardError is a class', () => {
    for (const [file, extra] of [['edgeward.d.ts', []], ['edgeward.d.cts', []], ['web.d.ts', ['initSync', 'default']]]) {
      const dts = fs.readFileSync(path.join(PKG, file), 'utf8');
      const declared = [...dts.matchAll(/^export (?:declare )?(?:function|class) (\w+)/gm)].map((m) => m[1]);
      if (dts.includes('export default function')) declared.push('default');
      assert.deepEqual([...new Set(declared)].sort(), [...Object.keys(ew), ...extra].sort(), file);
      for (const sig of [
        'export function verify<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, options?: VerifyOptions): Promise<Claims & C>;',
        'export function explain<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, options?: VerifyOptions): Promise<Explanation<C>>;',
        'export function createVerifier(policy: VerifyPolicy, keys: KeySource): Verifier;',
        'export function decodeUnverified(token: string): UnverifiedParts;',
        'export function refreshAt(token: string, options?: RefreshOptions): number | null;',
        'export function pkcePair(): PkcePair;',
        'export function lintSetCookie(header: string, policy?: CookiePolicy, nowSecs?: number): CookieLint;',
        'export function parseRateLimit(headers: HeadersLike, nowSecs?: number): RateLimitInfo;',
        'export function checkApiKey(key: string): ApiKeyCheck;',
        'export function jwkThumbprint(jwk: JsonWebKey | string): string;',
        'export function createDpopKey(): Promise<CryptoKeyPair>;',
        'export function dpopProof(keyPair: CryptoKeyPair, options: DpopProofOptions): Promise<string>;',
        'export class EdgewardError extends Error {',
        'export function isEdgewardError(e: unknown): e is EdgewardError;',
      ]) assert.ok(dts.includes(sig), `${file} declares ${sig}`);
    }
  });

  test('types of edgeward/verify: its exports, declared word for word as edgeward declares them, and only what they need', () => {
    const whole = fs.readFileSync(path.join(PKG, 'edgeward.d.ts'), 'utf8');
    for (const file of ['verify.d.ts', 'verify.d.cts']) {
      const dts = fs.readFileSync(path.join(PKG, file), 'utf8');
      const declared = [...dts.matchAll(/^export (?:declare )?(?:function|class) (\w+)/gm)].map((m) => m[1]);
      assert.deepEqual(declared.sort(), Object.keys(verifyOnly).sort(), `${file}: the runtime exports`);
      const blocks = dts.split('\n\n').filter((b) => /^export /m.test(b));
      assert.deepEqual(blocks.map((b) => /^export (?:declare )?(?:function|class|interface|type) (\w+)/m.exec(b)[1]).sort(), [
        'Algorithm', 'Claims', 'EdgewardError', 'EdgewardErrorCode', 'ExplainStep', 'Explanation', 'Jwks', 'KeySource', 'Verifier', 'VerifyOptions', 'VerifyPolicy',
        'createVerifier', 'explain', 'isEdgewardError', 'verify',
      ], file);
      for (const b of blocks) assert.ok(whole.includes(b), `${file}: edgeward.d.ts declares the same ${b.slice(0, 80)}`);
    }
  });
});
