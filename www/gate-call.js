// A call to an API behind the gate from another origin, refreshing the token once on a 401:
// the function of the package README's "Calling an API behind the gate from another origin",
// character for character below the import (tests/www/www.test.mjs checks that). The page's
// "Call an API behind the gate" panel runs it with the browser's fetch.
import { parseRateLimit } from './pkg/edgeward.js';

// `refreshToken()` is the app's own (its issuer's refresh flow) and resolves to a new access
// token. `init.headers`, if any, is a plain object. `fetch` is a parameter so the flow can be
// tested without a gate.
export async function callApi(url, { token, refreshToken, init = {}, fetch = globalThis.fetch }) {
  const call = (t) => fetch(url, { ...init, headers: { ...init.headers, authorization: `Bearer ${t}` } });
  let response = await call(token);
  // Readable cross-origin only because the gate lists WWW-Authenticate in Access-Control-Expose-Headers.
  const challenge = response.status === 401 ? (response.headers.get('www-authenticate') ?? '') : '';
  if (/\berror="?invalid_token\b/.test(challenge)) {
    token = await refreshToken(); // once
    response = await call(token); // once: whatever this answers is returned
  }
  const retryAfterSecs = response.status === 429 ? parseRateLimit(response.headers).retryAfterSecs : null;
  return { response, token, retryAfterSecs };
}
