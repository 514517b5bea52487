// Edgeward demo: a local token issuer (JWKS over HTTP) and a local origin that echoes what it
// receives, so you can see what the gateway forwards. Test-only keys, generated at start.
// Usage: node demo/servers.mjs <issuerPort> <originPort> <gatewayPort>
import http from 'node:http';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';

const [issuerPort, originPort, gatewayPort] = process.argv.slice(2).map(Number);
const issuer = `http://127.0.0.1:${issuerPort}`;
const audience = 'api://demo';

const rsa = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
const ec = await generateKeyPair('ES256', { extractable: true });
const rogue = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
const jwks = { keys: [
  { ...(await exportJWK(rsa.publicKey)), kid: 'demo-rsa', alg: 'RS256', use: 'sig' },
  { ...(await exportJWK(ec.publicKey)), kid: 'demo-ec', alg: 'ES256', use: 'sig' },
] };

http.createServer((req, res) => {
  if (req.url === '/.well-known/jwks.json') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600', 'access-control-allow-origin': '*' });
    res.end(JSON.stringify(jwks));
  } else { res.writeHead(404); res.end(); }
}).listen(issuerPort, '127.0.0.1');

http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ origin: 'demo', method: req.method, url: req.url, headers: req.headers, body }, null, 2) + '\n');
  });
}).listen(originPort, '127.0.0.1');

const now = Math.floor(Date.now() / 1000);
const mint = (key, kid, alg, claims, iat = now, exp = now + 3600) =>
  new SignJWT({ scope: 'read', ...claims }).setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuer(issuer).setAudience(audience).setSubject('user-42').setIssuedAt(iat).setExpirationTime(exp).sign(key);

const good = await mint(rsa.privateKey, 'demo-rsa', 'RS256', {});
const admin = await mint(ec.privateKey, 'demo-ec', 'ES256', { scope: 'read admin' });
const expired = await mint(rsa.privateKey, 'demo-rsa', 'RS256', {}, now - 7200, now - 3600);
const forged = await mint(rogue.privateKey, 'demo-rsa', 'RS256', {});
const wrongAud = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'demo-rsa' })
  .setIssuer(issuer).setAudience('api://other').setSubject('user-42').setIssuedAt(now).setExpirationTime(now + 3600).sign(rsa.privateKey);

const gw = `http://127.0.0.1:${gatewayPort}`;
const line = (label, token, path = '/api/hello') =>
  `# ${label}\ncurl -si ${token ? `-H 'Authorization: Bearer ${token}' ` : ''}${gw}${path}\n`;
console.log([
  '', '=== Edgeward demo: paste these into another terminal ===', '',
  line('accepted: valid RS256 token (origin echoes identity headers, never the token)', good),
  line('accepted: ES256 token with the admin scope on /admin/*', admin, '/admin/panel'),
  line('403 insufficient_scope: valid token without admin scope', good, '/admin/panel'),
  line('401 missing_token', null),
  line('401 expired', expired),
  line('401 bad_signature: signed by a key the issuer never published', forged),
  line('401 audience_mismatch', wrongAud),
  line('public route: no token needed', null, '/public/status'),
].join('\n'));

// An API key, created through the admin API (shown once), for the /partner/* route.
try {
  const created = await fetch(`${gw}/__edgeward/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${process.env.EDGEWARD_DEMO_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ owner: 'demo-partner', scopes: ['partner'], description: 'created by scripts/demo' }),
  }).then((r) => r.json());
  const key = created.key;
  const last = key.at(-1) === 'A' ? 'B' : 'A';
  const keyLine = (label, k, path = '/partner/orders') => `# ${label}\ncurl -si ${k ? `-H 'X-API-Key: ${k}' ` : ''}${gw}${path}\n`;
  console.log([
    keyLine(`accepted: API key ${created.id} (the origin sees its own credential, never the key)`, key),
    keyLine('401 api_key_malformed: one character off, refused by the checksum with no lookup', key.slice(0, -1) + last),
    keyLine('401 missing_api_key', null),
    keyLine('401 credential_not_accepted: an API key on a JWT route', key, '/api/hello'),
  ].join('\n'));
} catch (e) {
  console.log(`(could not create a demo API key: ${e.message})`);
}
