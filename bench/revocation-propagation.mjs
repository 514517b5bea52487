// Revocation propagation time, locally: under wrangler dev (real ledger Durable Object, real
// local KV), revoke a token's jti through the admin API, then poll with the token every 50 ms
// until it is refused; repeated for each refresh interval given. Steady traffic keeps the
// background refresh going, as in production.
// Usage: node bench/revocation-propagation.mjs [refresh_secs ...]   (default: 10 1)
import crypto from 'node:crypto';
import * as h from '../tests/e2e/harness.mjs';

const intervals = process.argv.slice(2).map(Number);
const ADMIN = crypto.randomBytes(24).toString('hex');
const key = await h.makeKey('ES256');
const jwks = await h.startJwksServer({ keys: [key.jwk] });
const origin = await h.startOrigin();
console.log('| refresh_secs | propagation ms (revocation written → first refusal) |');
console.log('|---:|---:|');
for (const refresh of intervals.length ? intervals : [10, 1]) {
  const worker = await h.startWrangler({
    label: `bench-prop-${refresh}`,
    config: h.baseConfig({ jwks, origin, revocations: { refresh_secs: refresh, max_age_secs: Math.max(300, refresh) } }),
    vars: { EDGEWARD_ADMIN_TOKEN: ADMIN },
  });
  try {
    const token = await h.mintToken(key, { issuer: jwks.issuer, claims: { jti: `prop-${refresh}` } });
    for (let i = 0; i < 5; i++) await worker.request({ path: '/api/warm', headers: h.bearer(token) });
    const t0 = Date.now();
    const add = await worker.request({
      method: 'POST', path: '/__edgeward/admin/revocations',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: { kind: 'jti', iss: jwks.issuer, jti: `prop-${refresh}` }, expires_at: h.nowSecs() + 600 }),
    });
    if (add.status !== 201) throw new Error(`admin: ${add.status} ${add.text}`);
    let ms = null;
    while (Date.now() - t0 < (refresh + 10) * 1000) {
      const r = await worker.request({ path: '/api/poll', headers: h.bearer(token) });
      if (r.status === 401) { ms = Date.now() - t0; break; }
      await h.sleep(50);
    }
    console.log(`| ${refresh} | ${ms ?? 'not within refresh + 10 s'} |`);
  } finally {
    await worker.stop();
  }
}
await origin.stop();
await jwks.stop();
process.exit(0);
