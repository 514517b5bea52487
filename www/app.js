// Edgeward's page: the `edgeward` package (the gate's Rust core as WebAssembly), no framework.
// Nothing here is logged; tokens and keys are shown only where the user pasted them.
import init, {
  verify, explain, decodeUnverified, refreshAt, lintSetCookie, pkcePair, randomToken, nonce, checkApiKey,
  jwkThumbprint, createDpopKey, dpopProof,
} from './pkg/edgeward.js';
import { callApi } from './gate-call.js';

const $ = (id) => document.getElementById(id);
const nowSecs = () => Math.floor(Date.now() / 1000);
const words = (s) => s.split(/[\s,]+/).filter(Boolean);

function el(tag, { dataset, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

// ---------------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------------

let countdownTimer = null;

function policyFromForm() {
  return {
    issuer: $('issuer').value.trim() || null,
    audiences: words($('audiences').value),
    algorithms: words($('algorithms').value),
    leewaySecs: Number($('leeway').value || 0),
  };
}

async function jwksFromForm() {
  const url = $('jwks-url').value.trim();
  if (!url) return $('jwks').value;
  let res;
  try {
    res = await fetch(url, { cache: 'no-store', credentials: 'omit' });
  } catch {
    throw Object.assign(new Error(`could not fetch ${url} (is the issuer up, and does it allow cross-origin reads?); paste the JWK Set instead`), { code: 'jwks_unavailable' });
  }
  if (!res.ok) throw Object.assign(new Error(`${url} answered ${res.status}`), { code: 'jwks_unavailable' });
  return res.text();
}

function showVerdict(accepted, code, message) {
  $('result').hidden = false;
  const v = $('verdict');
  v.dataset.verdict = accepted ? 'accept' : 'reject';
  $('verdict-title').textContent = accepted ? 'Accepted' : 'Rejected';
  $('verdict-code').textContent = code ?? '';
  $('verdict-message').textContent = message ?? '';
}

function showSteps(steps) {
  $('steps').replaceChildren(...steps.map((s) =>
    el('li', { dataset: { result: s.result } },
      el('b', { textContent: s.result }), ` ${s.step}`, el('small', { textContent: s.detail }))));
}

const DATE_CLAIMS = new Set(['exp', 'nbf', 'iat', 'auth_time']);

function showClaims(claims, trust) {
  const badge = $('claims-trust');
  badge.dataset.trust = trust;
  badge.textContent = trust === 'verified' ? 'verified' : 'unverified — do not trust';
  const rows = Object.entries(claims ?? {}).map(([name, value]) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    const cell = el('td', { textContent: text });
    if (DATE_CLAIMS.has(name) && typeof value === 'number') {
      cell.append(' ', el('small', { textContent: new Date(value * 1000).toISOString().replace('.000Z', 'Z') }));
    }
    return el('tr', {}, el('th', { textContent: name }), cell);
  });
  $('claims').tBodies[0].replaceChildren(...rows);
}

function formatSpan(secs) {
  const s = Math.abs(secs);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return [h && `${h} h`, (h || m) && `${m} min`, `${r} s`].filter(Boolean).join(' ');
}

// A live countdown to `exp`; when an accepted token passes exp + leeway, the check runs again so
// the verdict follows the clock.
function startCountdown(claims, accepted, leewaySecs, token) {
  clearInterval(countdownTimer);
  const out = $('countdown');
  if (typeof claims?.exp !== 'number') {
    out.textContent = 'No exp claim: this token never expires.';
    return;
  }
  // For a rejected token exp is only what the token claims; a refresh hint makes no sense.
  const prefix = accepted ? '' : 'Unverified exp: ';
  let refreshHint = '';
  if (accepted) {
    try {
      const at = refreshAt(token, { skewSecs: 60, jitter: 0.1 });
      if (at !== null) refreshHint = ` · a client should refresh at ${new Date(at * 1000).toLocaleTimeString()} (refreshAt)`;
    } catch { /* no hint */ }
  }
  const tick = () => {
    const left = claims.exp - nowSecs();
    const text = left > 0 ? `expires in ${formatSpan(left)}${refreshHint}` : `expired ${formatSpan(left)} ago`;
    out.textContent = prefix ? prefix + text : text[0].toUpperCase() + text.slice(1);
    out.dataset.expired = String(left <= 0);
    if (accepted && left + leewaySecs <= 0) {
      clearInterval(countdownTimer);
      runVerify();
    }
  };
  tick();
  countdownTimer = setInterval(tick, 1000);
}

// A sample issuer made in this page: a fresh ES256 key (WebCrypto), its public JWK Set and a token
// it signed, so a newcomer sees an accepted token without an issuer of their own.
const SAMPLE_ISSUER = 'https://sample-issuer.edgeward.invalid';

async function trySample() {
  const keyPair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  const jwks = { keys: [{ kty, crv, x, y, kid: 'sample-1', alg: 'ES256', use: 'sig' }] };
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const text = (v) => b64(new TextEncoder().encode(JSON.stringify(v)));
  const iat = nowSecs();
  const input = `${text({ alg: 'ES256', kid: 'sample-1', typ: 'JWT' })}.${text({ iss: SAMPLE_ISSUER, aud: 'api://sample', sub: 'newcomer', scope: 'read', iat, exp: iat + 600 })}`;
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keyPair.privateKey, new TextEncoder().encode(input));
  $('token').value = `${input}.${b64(signature)}`;
  $('jwks-url').value = '';
  $('jwks').value = JSON.stringify(jwks, null, 1);
  $('issuer').value = SAMPLE_ISSUER;
  $('audiences').value = 'api://sample';
  $('algorithms').value = 'ES256';
  await runVerify();
}

async function runVerify() {
  const token = $('token').value.trim();
  const policy = policyFromForm();
  const hint = $('verify-hint');
  hint.hidden = true;
  if (!token) {
    // Nothing to check yet: say what to do rather than show a refusal.
    clearInterval(countdownTimer);
    $('result').hidden = true;
    hint.textContent = 'Paste a token and its issuer\'s JWKS URL or JWK Set, or press "Try it with a sample token".';
    hint.hidden = false;
    return;
  }
  let jwks;
  try {
    jwks = await jwksFromForm();
  } catch (e) {
    clearInterval(countdownTimer);
    showVerdict(false, e.code, e.message);
    showSteps([]);
    showClaims({}, 'unverified');
    $('countdown').textContent = '';
    return;
  }
  const report = await explain(token, jwks, policy);
  let claims = null, accepted = false;
  try {
    claims = await verify(token, jwks, policy, { nowSecs: report.nowSecs });
    accepted = true;
    showVerdict(true, null, `signature and claims pass (${report.steps.length} checks)`);
  } catch (e) {
    showVerdict(false, e.code, e.message);
    try { claims = decodeUnverified(token).claims; } catch { claims = null; }
  }
  showSteps(report.steps);
  showClaims(claims, accepted ? 'verified' : 'unverified');
  if (claims) startCountdown(claims, accepted, policy.leewaySecs, token);
  else { clearInterval(countdownTimer); $('countdown').textContent = ''; }
}

// ---------------------------------------------------------------------------------------------
// Cookie linter
// ---------------------------------------------------------------------------------------------

const FINDINGS = {
  unparseable: 'not a valid Set-Cookie',
  missing_secure: 'no Secure attribute',
  missing_httponly: 'no HttpOnly (scripts could read it)',
  missing_samesite: 'no SameSite attribute',
  samesite_none_insecure: 'SameSite=None without Secure',
  lifetime_too_long: 'lifetime over the policy maximum',
  host_prefix: '__Host- cookie needs Path=/ and no Domain',
  secure_prefix: '__Secure- cookie without Secure',
};

function runCookieLint() {
  const policy = {
    mode: $('cookie-mode').value,
    sameSite: $('cookie-samesite').value,
    scriptReadable: words($('cookie-readable').value),
  };
  $('cookie-result').hidden = false;
  try {
    const r = lintSetCookie($('set-cookie').value.trim(), policy);
    const verb = { keep: 'Sent unchanged', fix: 'Sent corrected', drop: 'Dropped by the edge' }[r.action];
    $('cookie-action').textContent = `${verb}${r.findings.length ? ` — ${r.findings.length} finding(s)` : ' — no findings'}`;
    $('cookie-findings').replaceChildren(...r.findings.map((f) =>
      el('li', {}, el('code', { textContent: f }), ` ${FINDINGS[f] ?? ''}`)));
    $('cookie-fixed').textContent = r.action === 'fix' ? `Set-Cookie: ${r.header}` : '';
  } catch (e) {
    $('cookie-action').textContent = `${e.code}: ${e.message}`;
    $('cookie-findings').replaceChildren();
    $('cookie-fixed').textContent = '';
  }
}

// ---------------------------------------------------------------------------------------------
// API key check (offline: prefix, shape, checksum)
// ---------------------------------------------------------------------------------------------

const KEY_REASONS = {
  prefix: 'not an Edgeward key (ew_live_ or ew_test_)',
  shape: 'wrong length or characters',
  checksum: 'checksum mismatch: a character is wrong',
};

function runKeyCheck() {
  const text = $('apikey-input').value.trim();
  const out = $('apikey-result');
  if (!text) {
    out.textContent = '';
    delete out.dataset.valid;
    return;
  }
  const r = checkApiKey(text);
  out.dataset.valid = String(r.valid);
  out.textContent = r.valid ? `Well-formed ${r.env} key.` : `Not valid: ${KEY_REASONS[r.reason] ?? r.reason}.`;
}

// ---------------------------------------------------------------------------------------------
// PKCE
// ---------------------------------------------------------------------------------------------

function runPkce() {
  const pair = pkcePair();
  $('pkce-verifier').textContent = pair.verifier;
  $('pkce-challenge').textContent = pair.challenge;
  $('pkce-method').textContent = pair.method;
  $('pkce-state').textContent = randomToken(16);
  $('pkce-nonce').textContent = nonce();
  $('pkce-out').hidden = false;
}

// ---------------------------------------------------------------------------------------------
// DPoP: a key pair (non-extractable private key) kept in IndexedDB, its thumbprint, and a proof
// per request, shown decoded.
// ---------------------------------------------------------------------------------------------

const KEY_DB = 'edgeward-demo';
let dpopKey = null;

/** Runs `fn(store)` in a transaction on the page's one object store; resolves to the request's result. */
function keyStore(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(KEY_DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore('keys');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const req = fn(db.transaction('keys', mode).objectStore('keys'));
      req.onsuccess = () => { db.close(); resolve(req.result); };
      req.onerror = () => { db.close(); reject(req.error); };
    };
  });
}

async function showDpopKey(keyPair, how) {
  dpopKey = keyPair;
  const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  $('dpop-jkt').textContent = jwkThumbprint(jwk);
  const info = $('dpop-key-info');
  info.dataset.extractable = String(keyPair.privateKey.extractable);
  info.dataset.origin = how;
  info.textContent = `ECDSA P-256 (ES256), private key ${keyPair.privateKey.extractable ? 'extractable' : 'not extractable'}; ${how === 'stored' ? 'restored from IndexedDB' : 'new, saved in IndexedDB'}`;
  $('dpop-key').hidden = false;
  $('dpop-button').disabled = false;
}

async function runDpopKey() {
  const keyPair = await createDpopKey();
  await keyStore('readwrite', (store) => store.put(keyPair, 'dpop'));
  await showDpopKey(keyPair, 'new');
}

async function runDpopProof() {
  const out = $('dpop-result');
  delete out.dataset.done;
  out.hidden = false;
  for (const id of ['dpop-error', 'dpop-proof', 'dpop-header', 'dpop-claims']) $(id).textContent = '';
  try {
    const token = $('dpop-token').value.trim();
    const nonceValue = $('dpop-nonce').value.trim();
    const proof = await dpopProof(dpopKey, {
      method: $('dpop-method').value,
      url: $('dpop-url').value.trim(),
      ...(token ? { accessToken: token } : {}),
      ...(nonceValue ? { nonce: nonceValue } : {}),
    });
    const { header, claims } = decodeUnverified(proof);
    $('dpop-proof').textContent = proof;
    $('dpop-header').textContent = JSON.stringify(header, null, 2);
    $('dpop-claims').textContent = JSON.stringify(claims, null, 2);
    out.dataset.done = 'proof';
  } catch (e) {
    $('dpop-error').textContent = e.code ? `${e.code}: ${e.message}` : String(e.message ?? e);
    out.dataset.done = 'error';
  }
}

// ---------------------------------------------------------------------------------------------
// Call an API behind the gate from this origin: callApi (gate-call.js) with the browser's fetch,
// wrapped only to show each request and the refresh as they happen. Tokens are not shown.
// ---------------------------------------------------------------------------------------------

async function runGateCall() {
  const url = $('gate-url').value.trim();
  const first = $('gate-token').value.trim();
  const log = (step, text) => $('gate-log').append(el('li', { dataset: { step } }, text));
  const outcome = (status, verdict, title, message) => {
    const out = $('gate-outcome');
    out.dataset.verdict = verdict;
    $('gate-status').textContent = title;
    $('gate-message').textContent = message;
    out.dataset.status = String(status); // set last: the test waits for it
  };
  $('gate-log').replaceChildren();
  $('gate-body').textContent = '';
  delete $('gate-outcome').dataset.status;
  delete $('gate-outcome').dataset.retryAfter;
  $('gate-result').hidden = false;

  if (!first) {
    outcome('error', 'reject', 'No token', 'paste an access token (an expired one shows the refresh)');
    return;
  }
  let calls = 0;
  const shownFetch = async (u, init) => {
    calls += 1; // callApi calls at most twice: the second time after refreshToken()
    const which = calls === 1 ? 'the access token' : 'the refreshed token';
    let res;
    try {
      res = await fetch(u, init);
    } catch (e) {
      log('blocked', `${init.method ?? 'GET'} with ${which}: no response (${e.message})`);
      throw e;
    }
    const challenge = res.headers.get('www-authenticate');
    const seen = res.status === 401 ? ` · WWW-Authenticate: ${challenge ?? '(not readable)'}` : '';
    log('call', `${init.method ?? 'GET'} with ${which} → ${res.status}${seen}`);
    return res;
  };
  let refreshes = 0;
  const refreshToken = async () => {
    refreshes += 1;
    const next = $('gate-refreshed').value.trim();
    log('refresh', next ? 'refreshToken() → a new token' : 'refreshToken() → nothing to return');
    if (!next) throw new Error('refreshToken() has no token to return: paste one in "Token the app\'s refreshToken() returns"');
    return next;
  };

  let r;
  try {
    r = await callApi(url, { token: first, refreshToken, init: { method: 'GET', cache: 'no-store' }, fetch: shownFetch });
  } catch (e) {
    const blocked = e instanceof TypeError;
    outcome('error', 'reject', blocked ? 'No response' : 'Error', blocked
      ? `the browser blocked the call or nothing answered: is the gate running, and is ${location.origin} in its cors.allowed_origins?`
      : e.message);
    return;
  }
  const { response, retryAfterSecs } = r;
  const body = await response.text().catch(() => '');
  $('gate-body').textContent = body.length > 2000 ? `${body.slice(0, 2000)}…` : body;
  const challenge = response.headers.get('www-authenticate');
  let message;
  if (response.ok) {
    message = refreshes ? 'accepted after one refresh' : 'accepted';
  } else if (response.status === 429) {
    message = retryAfterSecs === null ? 'rate limited; no readable Retry-After' : `rate limited: retry after ${retryAfterSecs} s`;
    $('gate-outcome').dataset.retryAfter = String(retryAfterSecs);
  } else if (response.status === 401 && refreshes) {
    message = 'the refreshed token was refused too: not retried again (sign in again)';
  } else if (response.status === 401 && challenge === null) {
    message = 'WWW-Authenticate is not readable from this origin (the gate\'s cors section exposes it), so no refresh';
  } else if (response.status === 401) {
    message = 'no error="invalid_token" in the challenge (no usable token was sent): not refreshed';
  } else {
    message = 'refused (see the body)';
  }
  outcome(response.status, response.ok ? 'accept' : 'reject', String(response.status), message);
}

// ---------------------------------------------------------------------------------------------
// Start: load the module, prefill from the query string (the demo links here with its issuer).
// ---------------------------------------------------------------------------------------------

try {
  await init();
} catch (e) {
  $('load-status').textContent = `Could not load the WebAssembly module: ${e.message}`;
  throw e;
}

const params = new URLSearchParams(location.search);
for (const [param, id] of [['jwks_uri', 'jwks-url'], ['issuer', 'issuer'], ['audience', 'audiences'], ['algorithms', 'algorithms'], ['gate', 'gate-url']]) {
  if (params.has(param)) $(id).value = params.get(param);
}

$('verify-form').addEventListener('submit', (e) => { e.preventDefault(); runVerify(); });
$('cookie-form').addEventListener('submit', (e) => { e.preventDefault(); runCookieLint(); });
$('pkce-button').addEventListener('click', runPkce);
$('apikey-input').addEventListener('input', runKeyCheck);
$('gate-form').addEventListener('submit', (e) => { e.preventDefault(); runGateCall(); });
$('dpop-key-button').addEventListener('click', () => runDpopKey().catch((e) => { $('dpop-key-info').textContent = `no key: ${e.message}`; $('dpop-key').hidden = false; }));
$('dpop-form').addEventListener('submit', (e) => { e.preventDefault(); runDpopProof(); });
$('gate-origin').textContent = location.origin;
// A DPoP key this browser kept from an earlier visit (none if IndexedDB is unavailable).
const storedKey = await keyStore('readonly', (store) => store.get('dpop')).catch(() => undefined);
if (storedKey) await showDpopKey(storedKey, 'stored');
$('try-button').addEventListener('click', () => trySample().catch((e) => showVerdict(false, e.code ?? 'crypto_unavailable', e.message)));
for (const id of ['verify-button', 'try-button', 'cookie-button', 'pkce-button', 'apikey-input', 'gate-button', 'dpop-key-button']) $(id).disabled = false;
$('load-status').textContent = 'Ready.';
document.body.dataset.ready = 'true';
