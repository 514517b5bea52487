// The plain-JS functions imported from `edgeward` itself: a bundler drops the WebAssembly module the
// app does not use (the test runs this app under a CSP without 'wasm-unsafe-eval').
import { decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError } from 'edgeward';
import { createDpopKey, dpopProof } from 'edgeward';

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
