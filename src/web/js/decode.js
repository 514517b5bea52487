// The package's functions that need none of the edge's decisions, in plain JS (no WebAssembly):
// `edgeward/decode`, and the same functions of `edgeward` and `edgeward/web`. They read a token as
// strictly as the gate does (canonical base64url, strict UTF-8, duplicate members refused at any
// depth) and give the same results and error codes as the Rust functions of the same names in
// src/web/tokens.rs (the reference, which no entry point exports); tests/www/package.test.mjs runs
// both over one set of tokens and compares them.
// scripts/pack-web.mjs builds it into decode.js / decode.node.cjs; the types are decode.d.ts.

import { EdgewardError } from './error.js';

/** Largest token `decodeUnverified` reads (the configuration's upper bound for max_token_bytes). */
const MAX_DECODE_BYTES = 1 << 20;
const MAX_RANDOM_BYTES = 1024;

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SIX = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) SIX[B64.charCodeAt(i)] = i;

const tokenError = (code, message) => new EdgewardError(code, message, { status: 401 });
const malformedToken = () => tokenError('malformed_token', 'token is not three segments of canonical base64url');
const invalid = (message) => new EdgewardError('invalid_argument', message);

// A compact JWS: three segments of the base64url alphabet, the first two not empty.
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const NON_ASCII = /[^\x00-\x7f]/;

/** Whether `s`, of the base64url alphabet, is canonical unpadded base64url: no stray bits. */
function b64urlCanonical(s) {
  const r = s.length % 4;
  return r !== 1 && !(r && SIX[s.charCodeAt(s.length - 1)] & (r === 2 ? 15 : 3));
}

/**
 * The text of a segment of the base64url alphabet: null if it is not canonical base64url, undefined
 * if its bytes are not strict UTF-8.
 */
function segmentText(s) {
  if (!b64urlCanonical(s)) return null;
  // atob gives one character per byte: ASCII text as it is, anything else decoded as UTF-8.
  const bin = atob(s.replaceAll('-', '+').replaceAll('_', '/'));
  if (!NON_ASCII.test(bin)) return bin;
  try {
    return utf8.decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

function b64urlEncode(bytes) {
  let s = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i < bytes.length) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8);
    s += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : '');
  }
  return s;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Colons in `text`. */
function colons(text) {
  let n = 0;
  for (let i = text.indexOf(':'); i >= 0; i = text.indexOf(':', i + 1)) n++;
  return n;
}

/** Deepest nesting of arrays and objects the gate's parser reads (serde_json's limit). */
const MAX_DEPTH = 127;

/**
 * What a parsed value holds that the gate's strict parser refuses: a number JSON text cannot carry
 * (1e999 parses to Infinity here), a string with a lone surrogate (only from an escape, the UTF-8
 * having been decoded strictly: looked for when `escapes`, the text has a backslash), or arrays
 * and objects nested deeper than MAX_DEPTH (`depth`: the value's own). Adds to `count.n` one per
 * member and one per colon in its names and strings.
 */
function refused(v, count, escapes, depth) {
  if (typeof v === 'number') return !Number.isFinite(v);
  if (typeof v === 'string') {
    if (v.includes(':')) count.n += colons(v);
    return escapes && !v.isWellFormed();
  }
  if (typeof v !== 'object' || v === null) return false;
  if (depth > MAX_DEPTH) return true;
  if (Array.isArray(v)) return v.some((x) => refused(x, count, escapes, depth + 1));
  for (const k in v) {
    count.n++;
    if (k.includes(':')) count.n += colons(k);
    if ((escapes && !k.isWellFormed()) || refused(v[k], count, escapes, depth + 1)) return true;
  }
  return false;
}

// Strings (whole, escapes included) and the structural characters of JSON text: outside strings,
// JSON has no quote, so every match starts at a token boundary.
const TOKENS = /"(?:[^"\\]|\\.)*"|[{}[\]:]/g;

/** The first member name repeated in one object of `text` (valid JSON), if any. */
function duplicate(text) {
  const objects = [];
  let last = null;
  for (const [t] of text.matchAll(TOKENS)) {
    if (t === '{') objects.push(new Set());
    else if (t === '[') objects.push(null);
    else if (t === '}' || t === ']') objects.pop();
    else if (t === ':') {
      const names = objects[objects.length - 1];
      const name = JSON.parse(last);
      if (names.has(name)) return name;
      names.add(name);
    }
    last = t;
  }
  return undefined;
}

/** A strict JSON object from a segment's text (undefined: not UTF-8), or the gate's error for `part`. */
function strictObject(text, claims) {
  const notObject = () =>
    claims ? tokenError('malformed_claims', 'claims are malformed: not a JSON object') : tokenError('malformed_header', 'token header is malformed: not a JSON object');
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw notObject();
  }
  const count = { n: 0 };
  // Lone surrogates come only from escapes: strictly decoded UTF-8 has none.
  const escapes = text.includes('\\');
  if (typeof value !== 'object' || value === null || Array.isArray(value) || refused(value, count, escapes, 1)) throw notObject();
  if (escapes || colons(text) !== count.n) {
    const name = duplicate(text);
    if (name !== undefined) throw tokenError('duplicate_member', `duplicate member "${[...name].slice(0, 64).join('')}"`);
  }
  return value;
}

/**
 * Decodes a token's header and claims WITHOUT verifying anything: for display and scheduling only.
 * Throws `malformed_token`, `malformed_header`, `malformed_claims`, `duplicate_member`, `token_too_large`.
 */
export function decodeUnverified(token) {
  if (typeof token !== 'string') throw invalid('token must be a string');
  if (token.length > MAX_DECODE_BYTES / 3) {
    const len = new TextEncoder().encode(token).length;
    if (len > MAX_DECODE_BYTES) throw tokenError('token_too_large', `token is ${len} bytes, over the ${MAX_DECODE_BYTES} byte limit`);
  }
  if (!COMPACT.test(token)) throw malformedToken();
  const parts = token.split('.');
  const header = segmentText(parts[0]);
  const claims = segmentText(parts[1]);
  if (header === null || claims === null || !b64urlCanonical(parts[2])) throw malformedToken();
  return { header: strictObject(header, false), claims: strictObject(claims, true) };
}

/** A uniform number in [0, 1) from the platform's CSPRNG. */
function random01() {
  return fill(new Uint32Array(1))[0] / 4294967296;
}

/**
 * When a client should refresh `token` (Unix seconds): `skewSecs` (default 60) before `exp`, moved
 * earlier by a random part (`jitter`, default 0.1, of the span from `iat`); `null` without `exp`.
 */
export function refreshAt(token, options) {
  let skewSecs = 60;
  let jitter = 0.1;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object') throw invalid('options must be an object');
    if (options.skewSecs !== undefined) {
      if (typeof options.skewSecs !== 'number' || !Number.isInteger(options.skewSecs)) throw invalid('skewSecs must be a non-negative integer');
      skewSecs = options.skewSecs;
    }
    if (options.jitter !== undefined) {
      if (typeof options.jitter !== 'number') throw invalid('jitter must be a number from 0 to 1');
      jitter = options.jitter;
    }
  }
  if (typeof token !== 'string') throw invalid('token must be a string');
  if (!(jitter >= 0 && jitter <= 1)) throw invalid('jitter must be a number from 0 to 1');
  if (!(skewSecs >= 0 && skewSecs <= 1e9)) throw invalid('skewSecs must be a non-negative integer');
  const { claims } = decodeUnverified(token);
  const numeric = (name) => {
    if (!(name in claims)) return null;
    const n = claims[name];
    if (typeof n !== 'number' || !(n >= 0)) throw tokenError('malformed_claims', `claims are malformed: ${name} is not a NumericDate`);
    return n;
  };
  const exp = numeric('exp');
  if (exp === null) return null;
  const deadline = exp - skewSecs;
  const iat = numeric('iat');
  const window = iat !== null && iat < deadline ? deadline - iat : 0;
  return Math.floor(deadline - jitter * random01() * window);
}

/** `bytes` filled from the platform's CSPRNG. */
function fill(bytes) {
  const c = globalThis.crypto;
  if (!c || typeof c.getRandomValues !== 'function') throw new EdgewardError('random_unavailable', "the platform's random source is unavailable");
  return c.getRandomValues(bytes);
}

/** `bytes` (1–1024, default 32) random bytes as unpadded base64url. */
export function randomToken(bytes) {
  const n = bytes === undefined || bytes === null ? 32 : bytes;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_RANDOM_BYTES) throw invalid(`bytes must be an integer from 1 to ${MAX_RANDOM_BYTES}`);
  return b64urlEncode(fill(new Uint8Array(n)));
}

/** A fresh OpenID Connect `nonce`: 128 random bits as 22 base64url characters. */
export function nonce() {
  return randomToken(16);
}

// SHA-256 (FIPS 180-4), synchronous, for the PKCE challenge: WebCrypto's digest is asynchronous.
const K = new Uint32Array(64);
{
  // The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
  let n = 0;
  for (let p = 2; n < 64; p++) {
    let prime = true;
    for (let d = 2; d * d <= p; d++) if (p % d === 0) prime = false;
    if (prime) K[n++] = ((Math.cbrt(p) % 1) * 4294967296) >>> 0;
  }
}
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

function sha256(bytes) {
  const len = bytes.length;
  const padded = new Uint8Array(((len + 72) >> 6) << 6);
  padded.set(bytes);
  padded[len] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 4, len * 8);
  view.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
  const h = H0.slice();
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      k = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((x, i) => outView.setUint32(4 * i, x >>> 0));
  return out;
}

/** A fresh RFC 7636 PKCE pair: a 43-character verifier (256 random bits) and its S256 challenge. */
export function pkcePair() {
  const verifier = randomToken(32);
  return { verifier, challenge: b64urlEncode(sha256(new TextEncoder().encode(verifier))), method: 'S256' };
}

export { EdgewardError, isEdgewardError } from './error.js';
