// Pass-through baseline: forwards the request to ORIGIN (same path and query) and relays the
// response. What a Worker in front of an origin costs with no gate at all. With `log=1` in the
// query it also writes one JSON line per request shaped like Edgeward's decision log, to show
// what logging alone costs under `wrangler dev` (console output travels to wrangler over the
// inspector protocol).
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const started = Date.now();
    const response = await fetch(new Request(env.ORIGIN + url.pathname + url.search, request), { redirect: 'manual' });
    if (url.searchParams.get('log') === '1') {
      console.log(JSON.stringify({
        event: 'decision', ts_ms: started, request_id: crypto.randomUUID().replaceAll('-', ''), method: request.method,
        path: url.pathname, decision: 'accept', status: response.status, credential: 'header',
        token_fp: 'sha256:0123456789abcdef', token_cache: 'hit', iss: 'https://bench.invalid/rs256', sub: 'bench-user',
        kid: 'bench-rs256', alg: 'RS256', jwks_fetches: 0,
      }));
    }
    return response;
  },
};
