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
