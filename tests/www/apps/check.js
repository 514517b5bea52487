// What every tiny app checks (tests/www/bundlers.test.mjs builds each with a bundler's defaults):
// once `ready` resolves, it verifies the test's token, refuses a tampered one, makes a DPoP key and
// proof (checked by the test with jose) and the key's thumbprint, and puts what it saw on
// <body data-result> (or the error on data-error).
export function run(edgeward, ready = Promise.resolve()) {
  const { verify, createVerifier, decodeUnverified, pkcePair, EdgewardError, isEdgewardError, createDpopKey, dpopProof, jwkThumbprint } = edgeward;
  Promise.all([ready, fetch('./fixture.json').then((r) => r.json())])
    .then(async ([, { token, tampered, jwks, policy }]) => {
      const result = { sub: (await verify(token, jwks, policy)).sub, alg: decodeUnverified(token).header.alg, pkce: pkcePair().method };
      result.viaVerifier = (await createVerifier(policy, { jwks }).verify(token)).sub;
      try {
        await verify(tampered, jwks, policy);
        result.tampered = 'accepted';
      } catch (e) {
        result.tampered = e instanceof EdgewardError && isEdgewardError(e) ? e.code : String(e);
      }
      const keyPair = await createDpopKey();
      result.dpop = {
        extractable: keyPair.privateKey.extractable,
        jkt: jwkThumbprint(await crypto.subtle.exportKey('jwk', keyPair.publicKey)),
        // Relative to the page: htu is the page's origin and this path.
        proof: await dpopProof(keyPair, { method: 'get', url: './api/orders?page=1', accessToken: token }),
      };
      document.body.dataset.result = JSON.stringify(result);
    })
    .catch((e) => {
      document.body.dataset.error = String(e?.stack ?? e);
    });
}

/**
 * What the `edgeward/verify` apps check: that the entry point gives exactly its five exports, a
 * token accepted by `verify`, by a verifier and by `explain`, and refusals with the gate's codes
 * (a tampered token; the same token checked after it expired, with the status the gate answers).
 */
export function runVerify(ew) {
  const { verify, createVerifier, explain, EdgewardError, isEdgewardError } = ew;
  const codeOf = (promise) =>
    promise.then(() => ['accepted'], (e) => (e instanceof EdgewardError && isEdgewardError(e) ? [e.code, e.status] : [String(e)]));
  fetch('./fixture.json')
    .then((r) => r.json())
    .then(async ({ token, tampered, jwks, policy }) => {
      const verifier = createVerifier(policy, { jwks });
      const result = {
        exports: Object.keys(ew).filter((k) => k !== '__esModule' && k !== 'default').sort(),
        sub: (await verify(token, jwks, policy)).sub,
        viaVerifier: (await verifier.verify(token)).sub,
        explained: (await explain(token, jwks, policy)).verdict,
        tampered: await codeOf(verify(tampered, jwks, policy)),
        expired: await codeOf(verifier.verify(token, { nowSecs: Math.floor(Date.now() / 1000) + 86_400 })),
      };
      verifier.free();
      document.body.dataset.result = JSON.stringify(result);
    })
    .catch((e) => {
      document.body.dataset.error = String(e?.stack ?? e);
    });
}

/**
 * What the plain-JS apps check (`edgeward/decode` and `edgeward/dpop`, or the same functions from
 * `edgeward`; run without WebAssembly): a token decoded, a malformed one refused with the
 * package's code, a PKCE pair, a refresh time, random values, and a DPoP proof (checked by the
 * test with jose). The functions come by name, so a bundler can leave out what the app does not use.
 */
export function runPlain({ decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError, createDpopKey, dpopProof }) {
  fetch('./fixture.json')
    .then((r) => r.json())
    .then(async ({ token }) => {
      const { header, claims } = decodeUnverified(token);
      let malformed;
      try {
        decodeUnverified('a.b');
      } catch (e) {
        malformed = isEdgewardError(e) && e.code;
      }
      const keyPair = await createDpopKey();
      const result = {
        sub: claims.sub, alg: header.alg, malformed, pkce: pkcePair().method, refresh: refreshAt(token, { skewSecs: 60, jitter: 0 }) === claims.exp - 60,
        random: randomToken(8).length + nonce().length, proof: await dpopProof(keyPair, { method: 'get', url: './api/orders?page=1', accessToken: token }),
      };
      document.body.dataset.result = JSON.stringify(result);
    })
    .catch((e) => {
      document.body.dataset.error = String(e?.stack ?? e);
    });
}
