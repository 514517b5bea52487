// Prints the demo gateway's EDGEWARD_CONFIG for the given issuer and origin ports, and the port
// of www/ (the page's "Call an API behind the gate" panel calls the gate from there: CORS).
const [issuerPort, originPort, wwwPort] = process.argv.slice(2).map(Number);
const issuer = `http://127.0.0.1:${issuerPort}`;
console.log(JSON.stringify({
  issuers: [{ issuer, audiences: ['api://demo'], jwks_uri: `${issuer}/.well-known/jwks.json`, algorithms: ['RS256', 'ES256', 'EdDSA'] }],
  origin: `http://127.0.0.1:${originPort}`,
  routes: [
    { path: '/public/*', public: true },
    { path: '/admin/*', scopes: ['admin'] },
    // Programs call /partner/* with an API key; the origin gets its own credential instead.
    { path: '/partner/*', auth: 'api_key', upstream_credential: 'demo_origin' },
  ],
  cookie_name: '__Host-edgeward',
  api_keys: { environment: 'test' },
  // Anyone can make well-formed keys (the checksum is public): limit unauthenticated traffic per IP.
  rate_limits: { ip_pre_auth: { rate: 600, period_secs: 60, burst: 120 } },
  // www/ on another port is another origin: the gate answers its preflights and lets it read
  // WWW-Authenticate and Retry-After (the defaults of expose_headers).
  ...(wwwPort ? { cors: { allowed_origins: [`http://127.0.0.1:${wwwPort}`] } } : {}),
  upstream_credentials: { demo_origin: { header: 'Authorization', value: 'Bearer {secret}', secret: 'DEMO_ORIGIN_TOKEN' } },
}));
