// Issue 17: what counting a decision in the usage counters adds to a request, inside workerd.
// The bench Worker's `usage` mode runs the gate's count of an accepted JWT request (its sub and
// client id, entries that exist) N times in one request; timed from outside (Date.now() does not
// advance during computation inside a Worker): per count = (t(N) − t(0)) / N, t(0) the same
// request with no count (the baseline, measured in the same run, alternating), median over rounds.
// Target: ≤ 2 µs per request. Then the flush's own CPU (issue 17 asks for "the flush cost"): modes
// `flush` and `flush0` count E distinct subjects, and `flush` also starts a flush, serializes every
// shard's batch as the gate sends it and ends it; per flush = t(flush) − t(flush0), alternating,
// median over rounds, for E = FLUSH_SIZES (default 100, 1000, 4096: the aggregator's bound). The
// sends themselves are subrequests from ctx.waitUntil, after the answer: waited on, not computed.
// Needs the bench build:
//   OUT_DIR=build-bench bash scripts/build-worker --features bench && node bench/usage-cost.mjs
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import os from 'node:os';
import { startWrangler, request } from '../tests/e2e/harness.mjs';
import { benchWranglerConfig } from './wrangler-config.mjs';

const N = Number(process.env.N ?? 100000);
const ROUNDS = Number(process.env.ROUNDS ?? 9);
const TARGET_US = 2;
const iss = 'https://issuer.bench';
const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'ed', alg: 'EdDSA' }] };
const config = { issuers: [{ issuer: iss, jwks, algorithms: ['EdDSA'] }], origin: 'http://127.0.0.1:9', revocations: { enabled: false } };
const load = os.loadavg()[0].toFixed(2);
const w = await startWrangler({ label: 'usage-cost', config, wranglerConfig: benchWranglerConfig() });
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
try {
  const token = await new SignJWT({ sub: 'b' }).setProtectedHeader({ alg: 'EdDSA', kid: 'ed' }).setIssuer(iss).setIssuedAt().setExpirationTime('1h').sign(privateKey);
  const time = async (n) => {
    const t = process.hrtime.bigint();
    const r = await request(w.url, { path: `/__edgeward/bench?mode=usage&n=${n}`, headers: { authorization: `Bearer ${token}` }, timeoutMs: 120000 });
    if (r.status !== 200 || !r.json().ok) throw new Error(`usage: ${r.status} ${r.text}`);
    return Number(process.hrtime.bigint() - t) / 1000;
  };
  await time(1000); await time(0); // warm: JIT, the entries made
  const per = []; const base = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = await time(0);
    const tn = await time(N);
    base.push(t0);
    per.push((tn - t0) / N);
  }
  const us = median(per);
  console.log(`usage count per request: ${us.toFixed(3)} µs (median of ${ROUNDS} rounds of N=${N}; baseline request ${median(base).toFixed(0)} µs; load ${load})`);
  console.log(`target ≤ ${TARGET_US} µs: ${us <= TARGET_US ? 'met' : 'MISSED'} (${(us / TARGET_US).toFixed(3)} of the target)`);
  const timeMode = async (mode, n) => {
    const t = process.hrtime.bigint();
    const r = await request(w.url, { path: `/__edgeward/bench?mode=${mode}&n=${n}`, headers: { authorization: `Bearer ${token}` }, timeoutMs: 120000 });
    if (r.status !== 200 || !r.json().ok) throw new Error(`${mode}: ${r.status} ${r.text}`);
    return Number(process.hrtime.bigint() - t) / 1000;
  };
  for (const e of (process.env.FLUSH_SIZES ?? '100,1000,4096').split(',').map(Number)) {
    await timeMode('flush', e); await timeMode('flush0', e); // warm
    const d = []; const b = [];
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = await timeMode('flush0', e);
      const t1 = await timeMode('flush', e);
      b.push(t0);
      d.push(t1 - t0);
    }
    const us = median(d);
    console.log(`flush of ${e} entries: ${us.toFixed(0)} µs (${(us / e).toFixed(2)} µs per entry; median of ${ROUNDS} rounds; counting them, the baseline request: ${median(b).toFixed(0)} µs)`);
  }
} finally {
  await w.stop();
}
