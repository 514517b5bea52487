// Revocation check cost inside the Worker (issue 5): the bench build's route
// `/__edgeward/bench?mode=revoked100k|revoked0&n=N` verifies the token once, then runs N
// `RevocationSet::check`s against 100,000 active revocations (built once per isolate from the
// compact snapshot) or against an empty set. Timed from outside as bench/run.mjs does
// (`Date.now()` does not advance inside a Worker): per mode, (t(n = K) − t(n = 0)) / K, n = 0 and
// n = K requests in shuffled order within each cycle, fastest of the cycles, median of 3 rounds.
//
//   OUT_DIR=build-bench bash scripts/build-worker --features bench
//   node bench/revocation-worker.mjs [K] [CYCLES]     (defaults 20000 and 15)

import { performance } from 'node:perf_hooks';
import { startWrangler, makeKey, mintToken, request, bearer } from '../tests/e2e/harness.mjs';
import { benchWranglerConfig } from './wrangler-config.mjs';

const K = Number(process.argv[2] ?? 20000);
const CYCLES = Number(process.argv[3] ?? 15);
const ISS = 'https://issuer.bench';
const min = (a) => Math.min(...a);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const key = await makeKey('ES256');
const config = { issuers: [{ issuer: ISS, audiences: ['api://demo'], algorithms: ['ES256'], jwks: { keys: [key.jwk] } }], origin: 'http://127.0.0.1:9' };
// jti, sub and kid present and not revoked: all three lookups run on every check.
const token = await mintToken(key, { issuer: ISS, claims: { jti: 'not-revoked', sub: 'user-1', exp: Math.floor(Date.now() / 1000) + 3600 } });
const server = await startWrangler({ label: 'bench-revocations', config, wranglerConfig: benchWranglerConfig() });

async function call(mode, n) {
  const t = performance.now();
  const r = await request(server.url, { path: `/__edgeward/bench?mode=${mode}&n=${n}`, headers: bearer(token), timeoutMs: 120000 });
  const ms = performance.now() - t;
  if (r.status !== 200 || !JSON.parse(r.text).ok) throw new Error(`${mode} n=${n}: ${r.status} ${r.text}`);
  return ms;
}

try {
  const first = performance.now();
  await call('revoked100k', 0); // builds the 100,000-entry set in this isolate
  const buildMs = performance.now() - first;
  await call('revoked0', 0);
  const specs = [['revoked100k', 0], ['revoked100k', K], ['revoked0', 0], ['revoked0', K]];
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const ms = specs.map(() => []);
    for (let c = 0; c < CYCLES; c++) {
      for (const j of specs.map((_, i) => i).sort(() => Math.random() - 0.5)) ms[j].push(await call(...specs[j]));
    }
    const m = ms.map(min);
    rounds.push({ full: ((m[1] - m[0]) * 1e6) / K, empty: ((m[3] - m[2]) * 1e6) / K, t: m });
  }
  const full = median(rounds.map((r) => r.full));
  const empty = median(rounds.map((r) => r.empty));
  console.log(JSON.stringify({ K, CYCLES, rounds }, null, 0));
  console.log(`first request (builds the 100,000-entry set in the isolate, plus one verification): ${buildMs.toFixed(0)} ms`);
  console.log('| list | check ns (in the Worker) | ratio |');
  console.log('|---|---:|---:|');
  console.log(`| 100,000 active | ${full.toFixed(0)} | ${(full / empty).toFixed(2)} |`);
  console.log(`| empty (baseline) | ${empty.toFixed(0)} | 1.00 |`);
} finally {
  await server.stop();
}
