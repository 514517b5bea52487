// Added latency of rate limiting per request inside workerd (wrangler dev), measured from outside:
// the same cached-token request through three Workers started in this run — no limits (baseline),
// `local` mode, and `exact` mode (Durable Object) — median and p90 of sequential requests.
// Usage: node bench/ratelimit-latency.mjs [requests=400]   (after `bash scripts/build-worker`)
import http from 'node:http';
import * as h from '../tests/e2e/harness.mjs';

// One keep-alive connection, so TCP set-up is not what is measured.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/api/x`, { agent, headers }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.setNoDelay(true);
    req.on('error', reject);
  });
}

const N = Number(process.argv[2] ?? 400);
const key = await h.makeKey('ES256');
const jwks = await h.startJwksServer({ keys: [key.jwk] });
const origin = await h.startOrigin();
const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { sub: 'bench', exp: h.nowSecs() + 3600 } });
const rule = { name: 'per-sub', key: 'sub', rate: 1_000_000, period_secs: 1, burst: 1_000_000 };
const variants = [
  ['no limits (baseline)', {}],
  ['local', { rate_limits: { mode: 'local', rules: [rule] } }],
  ['exact (Durable Object)', { rate_limits: { mode: 'exact', rules: [rule] } }],
];
const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const results = [];
for (const [label, extra] of variants) {
  const worker = await h.startWrangler({ label: `bench-rl-${label.split(' ')[0]}`, config: h.baseConfig({ jwks, origin, ...extra }) });
  try {
    for (let i = 0; i < 50; i++) await get(worker.url, h.bearer(token));
    const times = [];
    for (let i = 0; i < N; i++) {
      const t = process.hrtime.bigint();
      const status = await get(worker.url, h.bearer(token));
      times.push(Number(process.hrtime.bigint() - t) / 1e3);
      if (status !== 200) throw new Error(`${label}: status ${status}`);
    }
    results.push({ label, p50: pct(times, 0.5), p90: pct(times, 0.9) });
  } finally {
    await worker.stop();
  }
}
await origin.stop();
await jwks.stop();
const base = results[0];
console.log(`| mode | p50 µs | p90 µs | p50 − baseline µs | p50 ratio |`);
console.log(`|---|---:|---:|---:|---:|`);
for (const r of results) {
  console.log(`| ${r.label} | ${r.p50.toFixed(0)} | ${r.p90.toFixed(0)} | ${(r.p50 - base.p50).toFixed(0)} | ${(r.p50 / base.p50).toFixed(2)} |`);
}
process.exit(0);
