// The built `edgeward` package in Node:
//   - against an independent JWT implementation: tokens signed by jose (every algorithm family)
//     are verified by the WebAssembly build, with the Worker's reason codes for refusals;
//   - as npm publishes it (`npm pack --dry-run`: exactly the expected files, the metadata, no
//     build machine path), and as a user installs it (`npm pack`, unpacked under
//     tests/artifacts/pkg/), in Node 20 and 22, from `import` and `require`, both entry points;
//   - its error class and guard.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateKeyPair, generateSecret, exportJWK, SignJWT, base64url } from 'jose';
import { NODE20, PKG, ROOT, packed } from './packed.mjs';

const ISSUER = 'https://id.example';
const AUDIENCE = 'api://demo';
const now = () => Math.floor(Date.now() / 1000);

let ew;

before(async () => {
  // The package's Node `import` entry point, as installed from the packed tarball.
  ew = await import(pathToFileURL(path.join(packed(), 'node_modules', 'edgeward', 'edgeward.node.mjs')).href);
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
    assert.ok(e instanceof ew.EdgewardError, `an EdgewardError: ${e}`);
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
});

describe('EdgewardError and isEdgewardError', () => {
  test('thrown errors are EdgewardError instances with code and status or field, never both', () => {
    let e;
    try {
      ew.verify('not-a-token', { keys: [] }, { issuer: ISSUER, algorithms: ['ES256'] });
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
      ew.verify('a.b.c', { keys: [] }, { issuer: ISSUER, algorithms: ['ES256', 'none'] });
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

// What a probe prints, in every runtime and module system: the runtime's own verdicts on a token
// signed by jose, and whether errors are the package's class.
const PROBE = `
  const [token, jwks] = process.argv.slice(-2);
  const policy = { issuer: ${JSON.stringify(ISSUER)}, algorithms: ['ES256'] };
  let tampered, isClass, guard;
  try { ew.verify(token.slice(0, -4) + 'AAAA', jwks, policy); } catch (e) {
    tampered = e.code; isClass = e instanceof ew.EdgewardError; guard = ew.isEdgewardError(e);
  }
  console.log(JSON.stringify({ node: process.versions.node.split('.')[0], sub: ew.verify(token, jwks, policy).sub, tampered, isClass, guard,
    pkce: ew.pkcePair().method, exports: Object.keys(ew).filter((k) => k !== 'default' && k !== '__esModule').sort() }));`;
const PROBES = {
  'import edgeward': ['probe.mjs', `import * as ew from 'edgeward';\n${PROBE}`],
  'require edgeward': ['probe.cjs', `const ew = require('edgeward');\n${PROBE}`],
  'import edgeward/web': ['probe-web.mjs', `import init, * as ew from 'edgeward/web';\nconst ready = await init();\nif (!ready.memory) throw new Error('init() did not return the module');\n${PROBE}`],
  'require edgeward/web': ['probe-web.cjs', `const ew = require('edgeward/web');\new.default().then((ready) => {\nif (!ready.memory) throw new Error('init() did not return the module');\n${PROBE}\n});`],
};

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
        assert.deepEqual(JSON.parse(out), {
          node: major, sub: 'user-42', tampered: 'bad_signature', isClass: true, guard: true, pkce: 'S256',
          exports: web ? [...api, 'initSync'].sort() : api,
        });
      });
    }
  }
});

// The files `npm pack` puts in the tarball, and nothing else.
const PACKED_FILES = [
  'LICENSE', 'README.md', 'package.json', 'edgeward_bg.wasm',
  'edgeward.js', 'edgeward.d.ts', 'edgeward.node.cjs', 'edgeward.node.mjs', 'edgeward.d.cts',
  'web.js', 'web.d.ts', 'web.node.cjs', 'web.node.mjs', 'web.d.cts',
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
    for (const entry of ['.', './web']) {
      const e = pkg.exports[entry];
      assert.deepEqual(Object.keys(e), ['types', 'node', 'browser', 'default'], 'types first; node before browser/default');
      assert.deepEqual(Object.keys(e.types), ['import', 'require']);
      assert.deepEqual(Object.keys(e.node), ['import', 'require']);
      for (const target of [e.types.import, e.types.require, e.node.import, e.node.require, e.browser, e.default]) {
        assert.ok(fs.existsSync(path.join(PKG, target)), `${entry}: ${target}`);
      }
    }
    assert.equal(fs.readFileSync(path.join(PKG, 'LICENSE'), 'utf8'), fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'));
    assert.match(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
    assert.match(fs.readFileSync(path.join(PKG, 'README.md'), 'utf8'), /^# edgeward \(JavaScript/);
  });

  test('the inlined build does not point a bundler at the .wasm file', () => {
    const text = fs.readFileSync(path.join(PKG, 'edgeward.js'), 'utf8');
    assert.ok(!text.includes('import.meta') && !text.includes('edgeward_bg.wasm'));
    assert.ok(!/\bawait\b/.test(text.replace(/^\s*(\/\/|\*).*$/gm, '')), 'no top-level await (nor any await)');
  });

  test('types: every runtime export is declared, verify and explain are generic, EdgewardError is a class', () => {
    for (const [file, extra] of [['edgeward.d.ts', []], ['edgeward.d.cts', []], ['web.d.ts', ['initSync', 'default']]]) {
      const dts = fs.readFileSync(path.join(PKG, file), 'utf8');
      const declared = [...dts.matchAll(/^export (?:declare )?(?:function|class) (\w+)/gm)].map((m) => m[1]);
      if (dts.includes('export default function')) declared.push('default');
      assert.deepEqual([...new Set(declared)].sort(), [...Object.keys(ew), ...extra].sort(), file);
      for (const sig of [
        'export function verify<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, nowSecs?: number): Claims & C;',
        'export function explain<C extends object = Claims>(token: string, jwks: Jwks, policy: VerifyPolicy, nowSecs?: number): Explanation<C>;',
        'export function decodeUnverified(token: string): UnverifiedParts;',
        'export function refreshAt(token: string, options?: RefreshOptions): number | null;',
        'export function pkcePair(): PkcePair;',
        'export function lintSetCookie(header: string, policy?: CookiePolicy, nowSecs?: number): CookieLint;',
        'export function parseRateLimit(headers: HeadersLike, nowSecs?: number): RateLimitInfo;',
        'export function checkApiKey(key: string): ApiKeyCheck;',
        'export class EdgewardError extends Error {',
        'export function isEdgewardError(e: unknown): e is EdgewardError;',
      ]) assert.ok(dts.includes(sig), `${file} declares ${sig}`);
    }
  });
});
