// DPoP (RFC 9449) for the client: a key pair and a proof per request, with WebCrypto. Plain JS,
// not Rust: the private key is a non-extractable CryptoKey, so its bytes never reach script (nor
// the WebAssembly memory), and signing is the platform's. What binds a token to the key, its
// RFC 7638 thumbprint, is the Rust core's (`jwkThumbprint`, src/web/mod.rs), so it is exactly the
// one the gate compares `cnf.jkt` with. scripts/pack-web.mjs bundles this file beside error.js
// into every entry point; the types are in src/web/mod.rs (TS_TYPES).

import { EdgewardError } from './error.js';

const ES256 = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };

/** WebCrypto's `subtle`, or the package's error (insecure contexts have none). */
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new EdgewardError('crypto_unavailable', 'WebCrypto (crypto.subtle) is unavailable: it needs a secure context (https: or localhost)');
  }
  return s;
}

/** A WebCrypto failure as the package's error, the platform's own as its cause. */
function failed(e, what) {
  if (e instanceof EdgewardError) return e;
  const err = new EdgewardError('crypto_unavailable', `${what}: ${e?.message ?? e}`);
  err.cause = e;
  return err;
}

const invalid = (message) => new EdgewardError('invalid_argument', message);

function b64url(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const utf8 = (text) => new TextEncoder().encode(text);
const b64json = (value) => b64url(utf8(JSON.stringify(value)));

/**
 * A new DPoP key pair: ECDSA P-256 (ES256), the private key not extractable. The pair is
 * structured-cloneable, so it can be kept in IndexedDB and used after a reload.
 * @returns {Promise<CryptoKeyPair>}
 */
export async function createDpopKey() {
  const s = subtle();
  try {
    return await s.generateKey(ES256, false, ['sign', 'verify']);
  } catch (e) {
    throw failed(e, 'generating the DPoP key failed');
  }
}

/**
 * The proof's `htu`: the absolute URL without query and fragment. A relative URL resolves as
 * `fetch` resolves it: against the document's base URL in a page (a `<base>` element moves it),
 * the script's location in a worker.
 */
function htuOf(url) {
  let u;
  try {
    u = new URL(String(url), globalThis.document?.baseURI ?? globalThis.location?.href);
  } catch {
    throw invalid('url must be an absolute URL (or, in a page, one relative to it)');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw invalid('url must be an http: or https: URL');
  return `${u.origin}${u.pathname}`;
}

/**
 * A DPoP proof for one request: a compact JWS, ES256, with the public key in its header.
 * @param {CryptoKeyPair} keyPair from `createDpopKey` (any ECDSA P-256 pair whose private key may sign)
 * @param {{method: string, url: string | URL, accessToken?: string, nonce?: string}} options
 * @returns {Promise<string>}
 */
export async function dpopProof(keyPair, options) {
  const { privateKey, publicKey } = keyPair ?? {};
  const isP256 = (k) => k?.algorithm?.name === 'ECDSA' && k.algorithm.namedCurve === 'P-256';
  if (!isP256(privateKey) || privateKey.type !== 'private' || !privateKey.usages.includes('sign') || !isP256(publicKey) || publicKey.type !== 'public') {
    throw invalid('keyPair must be an ECDSA P-256 CryptoKeyPair whose private key may sign (createDpopKey makes one)');
  }
  const { method, url, accessToken, nonce } = options ?? {};
  if (typeof method !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(method)) throw invalid('method must be an HTTP method');
  if (typeof url !== 'string' && !(url instanceof URL)) throw invalid('url must be a string or a URL');
  if (accessToken !== undefined && (typeof accessToken !== 'string' || accessToken === '')) throw invalid('accessToken must be a non-empty string');
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce === '')) throw invalid('nonce must be a non-empty string');
  const htu = htuOf(url);
  const s = subtle();
  try {
    const { kty, crv, x, y } = await s.exportKey('jwk', publicKey);
    const jti = new Uint8Array(16);
    globalThis.crypto.getRandomValues(jti);
    const claims = { htm: method.toUpperCase(), htu, iat: Math.floor(Date.now() / 1000), jti: b64url(jti) };
    if (accessToken !== undefined) claims.ath = b64url(new Uint8Array(await s.digest('SHA-256', utf8(accessToken))));
    if (nonce !== undefined) claims.nonce = nonce;
    const input = `${b64json({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })}.${b64json(claims)}`;
    // WebCrypto's ECDSA signature is r ‖ s, each 32 bytes: JWS ES256's format as it is.
    const signature = new Uint8Array(await s.sign(SIGN, privateKey, utf8(input)));
    return `${input}.${b64url(signature)}`;
  } catch (e) {
    throw failed(e, 'signing the DPoP proof failed');
  }
}
