// Every export of `edgeward`, `edgeward/web` and `edgeward/verify`, used as an app would, compiled by `tsc --strict`
// against the packed package (tests/www/types.test.mjs; nothing here runs). The
// `@ts-expect-error` lines are mistakes the types must catch.
import {
  verify, explain, createVerifier, decodeUnverified, refreshAt, pkcePair, randomToken, nonce, checkApiKey, lintSetCookie, parseRateLimit,
  EdgewardError, isEdgewardError, jwkThumbprint, createDpopKey, dpopProof,
  type DpopProofOptions, type Claims, type Verifier, type VerifyOptions, type KeySource, type Jwks, type VerifyPolicy, type Explanation, type EdgewardErrorCode, type UnverifiedParts,
  type PkcePair, type ApiKeyCheck, type CookieLint, type CookiePolicy, type RateLimitInfo,
} from 'edgeward';
import init, { initSync, verify as verifyAfterInit, isEdgewardError as isWebError, EdgewardError as WebError } from 'edgeward/web';
import {
  decodeUnverified as decodePlain, refreshAt as refreshPlain, pkcePair as pkcePlain, randomToken as randomPlain, nonce as noncePlain,
  EdgewardError as PlainError, isEdgewardError as isPlainError, type UnverifiedParts as PlainParts, type EdgewardErrorCode as PlainCode,
} from 'edgeward/decode';
import {
  createVerifier as createVerifierOnly, verify as verifyOnly, explain as explainOnly, EdgewardError as VerifyError, isEdgewardError as isVerifyError,
  type Verifier as VerifierOnly, type VerifyPolicy as PolicyOnly, type Jwks as JwksOnly, type Explanation as ExplanationOnly, type EdgewardErrorCode as CodeOnly,
} from 'edgeward/verify';
// @ts-expect-error: edgeward/verify has verification only
import { decodeUnverified as notInVerify } from 'edgeward/verify';
import { createDpopKey as dpopKeyPlain, dpopProof as dpopProofPlain, type DpopProofOptions as PlainDpopOptions, isEdgewardError as isDpopError } from 'edgeward/dpop';

const policy: VerifyPolicy = { issuer: 'https://id.example', audiences: ['api://demo'], algorithms: ['RS256', 'ES256'] };
const jwks: Jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: '…', y: '…', kid: 'k1' }] };
declare const token: string;

// verify<C>: the issuer's own claims, typed; the registered ones stay typed.
interface AppClaims {
  roles: string[];
  tenant: string;
}
const claims = await verify<AppClaims>(token, jwks, policy);
const roles: string[] = claims.roles;
const tenant: string = claims.tenant;
const sub: string | undefined = claims.sub;
const exp: number | undefined = claims.exp;
const plain: Claims = await verify(token, JSON.stringify(jwks), policy, { nowSecs: 1_800_000_000 });
// @ts-expect-error: asynchronous: a promise of the claims
const notYetClaims: Claims = verify(token, jwks, policy);
// @ts-expect-error: without a claims type, an unregistered claim is `unknown`
const untyped: string[] = plain.roles;
// @ts-expect-error: not an algorithm Edgeward verifies
verify(token, jwks, { issuer: null, algorithms: ['RS1'] });
// @ts-expect-error: the policy needs algorithms
verify(token, jwks, { issuer: null });

const why: Explanation<AppClaims> = await explain<AppClaims>(token, jwks, policy);

// createVerifier: the policy once, the keys inline or from a URL (with an optional fetch).
const local: Verifier = createVerifier(policy, { jwks });
const remoteKeys: KeySource = { jwksUri: 'https://id.example/jwks', fetch: (input, init) => fetch(input, init) };
const remote: Verifier = createVerifier(policy, remoteKeys);
const at0: VerifyOptions = { nowSecs: 1_800_000_000 };
const fromLocal: string[] = (await local.verify<AppClaims>(token, at0)).roles;
const explained: 'accept' | 'reject' = (await remote.explain(token)).verdict;
remote.free();
// @ts-expect-error: one key source, not both
createVerifier(policy, { jwks, jwksUri: 'https://id.example/jwks' });
const verdict: 'accept' | 'reject' = why.verdict;
const explainedRoles: string[] | undefined = why.claims?.roles;
for (const step of why.steps) step.result satisfies 'pass' | 'fail' | 'skipped';

const parts: UnverifiedParts = decodeUnverified(token);
const alg: unknown = parts.header.alg;
const at: number | null = refreshAt(token, { skewSecs: 30, jitter: 0.2 });
const pair: PkcePair = pkcePair();
const method: 'S256' = pair.method;
const state: string = randomToken(16) + randomToken() + nonce();
const key: ApiKeyCheck = checkApiKey('ew_live_…');
const env: 'live' | 'test' | null = key.env;
const cookies: CookiePolicy = { mode: 'fix', sameSite: 'Lax', scriptReadable: ['csrf'], maxAgeSecs: 86_400 };
const lint: CookieLint = lintSetCookie('sid=1; Path=/', cookies, 1_800_000_000);
const action: 'keep' | 'fix' | 'drop' = lint.action;
const limits: RateLimitInfo = parseRateLimit(new Headers({ 'retry-after': '5' }));
const fromObject: number | null = parseRateLimit({ 'RateLimit-Remaining': '3', 'set-cookie': ['a', 'b'] }, 1_800_000_000).remaining;

// DPoP: a WebCrypto key pair, its thumbprint (a JWK object or its JSON text), a proof per request.
async function dpop(accessToken: string, serverNonce?: string): Promise<Headers> {
  const keyPair: CryptoKeyPair = await createDpopKey();
  const jkt: string = jwkThumbprint(await crypto.subtle.exportKey('jwk', keyPair.publicKey));
  jwkThumbprint(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: jkt }));
  const options: DpopProofOptions = { method: 'POST', url: new URL('https://api.example/orders'), accessToken, nonce: serverNonce };
  const proof: string = await dpopProof(keyPair, options);
  await dpopProof(keyPair, { method: 'GET', url: '/api/me' });
  // @ts-expect-error: the method and URL are required
  await dpopProof(keyPair, { accessToken });
  // @ts-expect-error: a key pair, not a single key
  await dpopProof(keyPair.privateKey, options);
  // @ts-expect-error: a JWK, not a CryptoKey
  jwkThumbprint(keyPair.publicKey);
  // @ts-expect-error: asynchronous
  const notYet: string = dpopProof(keyPair, options);
  return new Headers({ authorization: `DPoP ${accessToken}`, dpop: proof, 'x-jkt': jkt, 'x-not-yet': String(notYet) });
}
new EdgewardError('crypto_unavailable') satisfies Error;

// Errors: the class, its fields, and the guard for `catch (e: unknown)`.
try {
  await verify(token, jwks, policy);
} catch (e) {
  if (isEdgewardError(e)) {
    const code: EdgewardErrorCode = e.code;
    const status: number | undefined = e.status;
    const field: string | undefined = e.field;
    const name: 'EdgewardError' = e.name;
    const message: string = e.message;
  }
  if (e instanceof EdgewardError) e.code satisfies EdgewardErrorCode;
  // @ts-expect-error: `e` is unknown until narrowed
  e.code;
}
const mine = new EdgewardError('expired', 'token expired', { status: 401 });
mine satisfies Error;
// @ts-expect-error: codes are a closed set
new EdgewardError('nope');

// edgeward/web: initialise, then the same functions.
async function startWeb(bytes: BufferSource): Promise<void> {
  await init();
  await init({ module_or_path: new URL('/edgeward_bg.wasm', 'https://app.example') });
  initSync({ module: bytes });
  const webClaims = await verifyAfterInit<AppClaims>(token, jwks, policy);
  webClaims.roles satisfies string[];
  const err: unknown = null;
  if (isWebError(err)) err.code satisfies EdgewardErrorCode;
  new WebError('expired') satisfies Error;
}

// edgeward/decode and edgeward/dpop: the same signatures, no WebAssembly.
const plainParts: PlainParts = decodePlain(token);
const plainAt: number | null = refreshPlain(token, { jitter: 0 });
const plainState: string = pkcePlain().challenge + randomPlain(8) + noncePlain();
// @ts-expect-error: the plain decoder is synchronous, like edgeward's
decodePlain(token).then;
try {
  decodePlain(token);
} catch (e) {
  if (isPlainError(e)) e.code satisfies PlainCode;
  if (e instanceof PlainError) e.status satisfies number | undefined;
}
async function plainDpop(): Promise<string> {
  const options: PlainDpopOptions = { method: 'GET', url: '/api' };
  return dpopProofPlain(await dpopKeyPlain(), options).catch((e: unknown) => (isDpopError(e) ? e.code : 'other'));
}

// edgeward/verify: the same functions and types as edgeward's, from a module of their own.
async function verifyAlone(): Promise<string[]> {
  const onlyPolicy: PolicyOnly = policy;
  const onlyKeys: JwksOnly = jwks;
  const claimsOnly = await verifyOnly<AppClaims>(token, onlyKeys, onlyPolicy, { nowSecs: 1_800_000_000 });
  const verifier: VerifierOnly = createVerifierOnly(onlyPolicy, { jwksUri: 'https://id.example/jwks' });
  const sameShape: Verifier = verifier;
  const report: ExplanationOnly<AppClaims> = await explainOnly<AppClaims>(token, onlyKeys, onlyPolicy);
  report.claims?.tenant satisfies string | undefined;
  // @ts-expect-error: asynchronous, as edgeward's
  const notYet: Claims = verifyOnly(token, onlyKeys, onlyPolicy);
  // @ts-expect-error: not an algorithm Edgeward verifies
  createVerifierOnly({ issuer: null, algorithms: ['none'] }, { jwks });
  try {
    await sameShape.verify(token);
  } catch (e) {
    if (isVerifyError(e)) e.code satisfies CodeOnly & EdgewardErrorCode;
    if (e instanceof VerifyError) e.status satisfies number | undefined;
  }
  new VerifyError('expired', 'token expired', { status: 401 }) satisfies Error;
  return [...claimsOnly.roles, String(notYet), String(notInVerify)];
}

export { verifyAlone, plainParts, plainAt, plainState, plainDpop, dpop, notYetClaims, fromLocal, explained, roles, tenant, sub, exp, untyped, verdict, explainedRoles, alg, at, method, state, env, action, limits, fromObject, startWeb };
