// The I/O of the package's verifier: signature checks on the platform's WebCrypto
// (`crypto.subtle`) and JWKS fetches. The Rust core (src/web/verifier.rs) decides everything else
// (parse, header rules, key selection, claims, the JWKS cache policy); it calls these two
// functions where the gate's Worker calls its own WebCrypto and fetch (src/core/io.rs, GateIo).
// wasm-bindgen bundles this module with the glue.

const HASH = { 256: 'SHA-256', 384: 'SHA-384', 512: 'SHA-512' };
const CURVE = { 256: 'P-256', 384: 'P-384', 512: 'P-521' };
/** Most `CryptoKey`s a verifier keeps imported (a key set holds a few; rotations add more). */
const MAX_IMPORTED = 64;

/** [importKey algorithm, verify algorithm] for a JWS `alg` the core has already allowed. */
function params(alg) {
  const bits = alg.slice(2);
  const hash = { name: HASH[bits] };
  switch (alg.slice(0, 2)) {
    case 'RS':
      return [{ name: 'RSASSA-PKCS1-v1_5', hash }, { name: 'RSASSA-PKCS1-v1_5' }];
    case 'PS':
      return [{ name: 'RSA-PSS', hash }, { name: 'RSA-PSS', saltLength: Number(bits) / 8 }];
    case 'ES':
      return [{ name: 'ECDSA', namedCurve: CURVE[bits] }, { name: 'ECDSA', hash }];
    case 'HS':
      return [{ name: 'HMAC', hash }, { name: 'HMAC' }];
    default: // EdDSA, Ed25519
      return [{ name: 'Ed25519' }, { name: 'Ed25519' }];
  }
}

/** Whether this context has WebCrypto (not in an insecure context: plain http off localhost). */
export function subtleAvailable() {
  return typeof globalThis.crypto === 'object' && globalThis.crypto !== null && typeof globalThis.crypto.subtle === 'object';
}

/**
 * Whether `signature` verifies over `input` under the key `id` for `alg`: a promise of a boolean
 * (a rejection, which the caller reads as false, for a key WebCrypto cannot use). `keys` is the
 * verifier's cache: `id` (the key's fingerprint and the algorithm) to the imported `CryptoKey`,
 * imported from `jwkText` (the public JWK as the core parsed it) the first time; a key that fails
 * to import is forgotten and does not verify.
 */
export function subtleVerify(keys, id, alg, jwkText, signature, input) {
  let entry = keys.get(id);
  if (entry === undefined) {
    if (jwkText === undefined) return Promise.resolve(false);
    const [importAlg, verifyAlg] = params(alg);
    let jwk;
    try {
      jwk = JSON.parse(jwkText);
    } catch {
      return Promise.resolve(false);
    }
    entry = { pending: crypto.subtle.importKey('jwk', jwk, importAlg, false, ['verify']), key: null, verifyAlg };
    entry.pending.then((key) => { entry.key = key; }, () => keys.delete(id));
    // Bounded: a long-lived verifier sees its issuer's keys rotate; past MAX_IMPORTED keys the
    // cache starts again (the keys in use are imported again on their next use).
    if (keys.size >= MAX_IMPORTED) keys.clear();
    keys.set(id, entry);
  }
  if (entry.key !== null) {
    // WebCrypto copies its arguments before it returns, so views of WebAssembly memory are safe here.
    return crypto.subtle.verify(entry.verifyAlg, entry.key, signature, input);
  }
  // The key is still being imported: copy the views, which may move while it is awaited.
  const sig = signature.slice();
  const data = input.slice();
  return entry.pending.then((key) => crypto.subtle.verify(entry.verifyAlg, key, sig, data), () => false);
}

/**
 * GETs a JWK Set with `fetchFn` within `timeoutMs`, reading at most `maxBytes` of its body:
 * `{status, cacheControl, body}`, or `{error}` for a network error, a timeout, a larger body or a
 * body that is not UTF-8. Never rejects. A redirect is not followed (its 3xx status is the
 * answer). The core reads the status and `Cache-Control` by its own rules. One fetch per URL at a
 * time: calls while one is under way (`inflight`, the verifier's, by URL) share its answer, so a
 * burst of verifications on a cold cache sends one request.
 */
export function fetchJwks(inflight, fetchFn, uri, timeoutMs, maxBytes) {
  let pending = inflight.get(uri);
  if (pending === undefined) {
    pending = fetchWithin(fetchFn, uri, timeoutMs, maxBytes).finally(() => inflight.delete(uri));
    inflight.set(uri, pending);
  }
  return pending;
}

/**
 * `readJwks`, answered by the timeout even when `fetchFn` ignores its abort signal: the timeout's
 * answer settles the race before the abort it sends reaches the fetch.
 */
async function fetchWithin(fetchFn, uri, timeoutMs, maxBytes) {
  const abort = new AbortController();
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => {
      resolve({ error: `no answer within ${timeoutMs} ms` });
      abort.abort();
    }, timeoutMs);
  });
  try {
    return await Promise.race([readJwks(fetchFn, uri, abort, maxBytes), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function readJwks(fetchFn, uri, abort, maxBytes) {
  try {
    const res = await fetchFn(uri, { headers: { accept: 'application/json' }, signal: abort.signal, redirect: 'manual' });
    const tooLarge = { error: `JWKS larger than ${maxBytes} bytes` };
    if (Number(res.headers.get('content-length')) > maxBytes) {
      abort.abort();
      return tooLarge;
    }
    let body = '';
    if (res.body) {
      const chunks = [];
      let size = 0;
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.length;
        if (size > maxBytes) {
          await reader.cancel();
          return tooLarge;
        }
        chunks.push(value);
      }
      const all = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      try {
        body = strictUtf8.decode(all);
      } catch {
        return { error: 'JWKS is not UTF-8' };
      }
    } else {
      body = await res.text();
      if (body.length > maxBytes) return tooLarge;
    }
    return { status: res.status, cacheControl: res.headers.get('cache-control'), body };
  } catch (e) {
    return { error: String((e && e.message) || e) };
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
