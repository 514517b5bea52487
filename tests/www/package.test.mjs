// The built `edgeward` package against an independent JWT implementation: tokens signed by jose
// (every algorithm family) are verified by the WebAssembly build, with the Worker's reason codes
// for refusals. Runs the --target web build (www/pkg) in Node, and smoke-tests the --target
// bundler build (pkg/) through Node's WebAssembly ES module integration.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { generateKeyPair, generateSecret, exportJWK, SignJWT, base64url } from 'jose';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WEB_PKG = path.join(ROOT, 'www', 'pkg');
const BUNDLER_PKG = path.join(ROOT, 'pkg');
const ISSUER = 'https://id.example';
const AUDIENCE = 'api://demo';
const now = () => Math.floor(Date.now() / 1000);

let ew;

before(async () => {
  assert.ok(fs.existsSync(path.join(WEB_PKG, 'edgeward_bg.wasm')), 'www/pkg is missing: run scripts/build-web');
  ew = await import(pathToFileURL(path.join(WEB_PKG, 'edgeward.js')).href);
  ew.initSync({ module: fs.readFileSync(path.join(WEB_PKG, 'edgeward_bg.wasm')) });
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

const codeOf = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.equal(e.name, 'EdgewardError');
    assert.ok(e instanceof Error);
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
      assert.equal(ew.verify(good, jwks, policy).sub, 'user-42');
      assert.equal(ew.explain(good, JSON.stringify(jwks), policy).verdict, 'accept');

      const [h, , s] = good.split('.');
      const forged = `${h}.${base64url.encode(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'admin', exp: now() + 600 }))}.${s}`;
      assert.equal(codeOf(() => ew.verify(forged, jwks, policy)), 'bad_signature');
      const expired = await mint(alg, signKey, jwk.kid, {}, now() - 120);
      assert.equal(codeOf(() => ew.verify(expired, jwks, policy)), 'expired');
      assert.equal(codeOf(() => ew.verify(good, jwks, { ...policy, audiences: ['api://other'] })), 'audience_mismatch');
      assert.equal(codeOf(() => ew.verify(good, jwks, { ...policy, issuer: 'https://evil.example' })), 'issuer_mismatch');
      const { signKey: otherKey } = await issuer(alg, options);
      const otherKeysToken = await mint(alg, otherKey, jwk.kid);
      assert.equal(codeOf(() => ew.verify(otherKeysToken, jwks, policy)), 'bad_signature', 'same kid, another key');
    });
  }

  test('alg confusion and alg none are refused', async () => {
    const { signKey, jwk } = await issuer('RS256', { modulusLength: 2048 });
    const jwks = { keys: [jwk] };
    const policy = { issuer: ISSUER, algorithms: ['RS256'] };
    const good = await mint('RS256', signKey, jwk.kid);
    const [, p] = good.split('.');
    const none = `${base64url.encode('{"alg":"none"}')}.${p}.`;
    assert.equal(codeOf(() => ew.verify(none, jwks, policy)), 'alg_none');
    const hs = `${base64url.encode('{"alg":"HS256","kid":"k-RS256"}')}.${p}.${base64url.encode('x'.repeat(32))}`;
    assert.equal(codeOf(() => ew.verify(hs, jwks, policy)), 'alg_not_allowed');
  });

  test('the bundler build (pkg/) loads through ES module integration and agrees', async () => {
    assert.ok(fs.existsSync(path.join(BUNDLER_PKG, 'edgeward_bg.wasm')), 'pkg/ is missing: run scripts/build-web');
    const { signKey, jwk } = await issuer('ES256');
    const token = await mint('ES256', signKey, jwk.kid);
    const script = `
      import * as ew from ${JSON.stringify(pathToFileURL(path.join(BUNDLER_PKG, 'edgeward.js')).href)};
      const [token, jwks] = process.argv.slice(1);
      const policy = { issuer: ${JSON.stringify(ISSUER)}, algorithms: ['ES256'] };
      let tampered;
      try { ew.verify(token.slice(0, -4) + 'AAAA', jwks, policy); } catch (e) { tampered = e.code; }
      console.log(JSON.stringify({ sub: ew.verify(token, jwks, policy).sub, tampered, pkce: ew.pkcePair().method }));`;
    const out = execFileSync(process.execPath, ['--experimental-wasm-modules', '--no-warnings', '--input-type=module', '-e', script, token, JSON.stringify({ keys: [jwk] })], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { sub: 'user-42', tampered: 'bad_signature', pkce: 'S256' });
  });

  test('the package ships its own README and TypeScript types', () => {
    for (const dir of [WEB_PKG, BUNDLER_PKG]) {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      assert.equal(pkg.name, 'edgeward');
      assert.match(fs.readFileSync(path.join(dir, 'README.md'), 'utf8'), /^# edgeward \(JavaScript/);
      const dts = fs.readFileSync(path.join(dir, 'edgeward.d.ts'), 'utf8');
      for (const sig of [
        'export function verify<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, nowSecs?: number): Claims & C;',
        'export function explain<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, nowSecs?: number): Explanation<C>;',
        'export function decodeUnverified(token: string): UnverifiedParts;',
        'export function refreshAt(token: string, options?: RefreshOptions): number | null;',
        'export function pkcePair(): PkcePair;',
        'export function lintSetCookie(header: string, policy?: CookiePolicy, nowSecs?: number): CookieLint;',
        'export function parseRateLimit(headers: HeadersLike, nowSecs?: number): RateLimitInfo;',
        'export function checkApiKey(key: string): ApiKeyCheck;',
        'export interface ApiKeyCheck {',
        'export class EdgewardError extends Error {',
        'export function isEdgewardError(e: unknown): e is EdgewardError;',
      ]) assert.ok(dts.includes(sig), `${dir}/edgeward.d.ts declares ${sig}`);
    }
  });
});
