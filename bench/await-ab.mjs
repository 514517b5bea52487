// A/B of the promise await used for WebCrypto calls from Rust: `rawsig` (promise.rs: one JS call
// per await) vs `rawsig_jsfuture` (wasm-bindgen's JsFuture), in the same bench Worker, alternating,
// timed from outside: (t(N) − t(0)) / N per call, median over rounds. Needs the bench build:
//   OUT_DIR=build-bench bash scripts/build-worker --features bench && node bench/await-ab.mjs
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { startWrangler, request } from '../tests/e2e/harness.mjs';
import { benchWranglerConfig } from './wrangler-config.mjs';

const N = Number(process.env.N ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 9);
const algs = (process.env.ALGS ?? 'RS256,ES256,EdDSA').split(',');
const iss = 'https://issuer.bench';
const keys = {};
const jwks = { keys: [] };
for (const alg of algs) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  keys[alg] = privateKey;
  jwks.keys.push({ ...(await exportJWK(publicKey)), kid: alg, alg });
}
const config = { issuers: [{ issuer: iss, jwks, algorithms: algs }], origin: 'http://127.0.0.1:9', revocations: { enabled: false } };
const w = await startWrangler({ label: 'await-ab', config, wranglerConfig: benchWranglerConfig() });
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
try {
  for (const alg of algs) {
    const token = await new SignJWT({ sub: 'b' }).setProtectedHeader({ alg, kid: alg }).setIssuer(iss).setIssuedAt().setExpirationTime('1h').sign(keys[alg]);
    const time = async (mode, n) => {
      const t = process.hrtime.bigint();
      const r = await request(w.url, { path: `/__edgeward/bench?mode=${mode}&n=${n}`, headers: { authorization: `Bearer ${token}` }, timeoutMs: 120000 });
      if (r.status !== 200 || !r.json().ok) throw new Error(`${mode}: ${r.status} ${r.text}`);
      return Number(process.hrtime.bigint() - t) / 1000;
    };
    const per = { rawsig: [], rawsig_jsfuture: [] };
    await time('rawsig', 200); await time('rawsig_jsfuture', 200); // warm: key import, JIT
    for (let i = 0; i < ROUNDS; i++) {
      for (const mode of i % 2 ? ['rawsig', 'rawsig_jsfuture'] : ['rawsig_jsfuture', 'rawsig']) {
        const t0 = await time(mode, 0);
        per[mode].push((await time(mode, N) - t0) / N);
      }
    }
    const a = median(per.rawsig); const b = median(per.rawsig_jsfuture);
    console.log(`${alg}: promise.rs ${a.toFixed(1)} µs/call, JsFuture ${b.toFixed(1)} µs/call, ratio ${(a / b).toFixed(2)}`);
  }
} finally {
  await w.stop();
}
