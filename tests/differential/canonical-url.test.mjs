// Differential test of the path canonicalizer (src/core/canonical.rs, issue 14) against the
// WHATWG URL parser (Node's `URL`, the parser family workerd uses for `request.url`).
//
// Three generated sets, from a seeded PRNG (deterministic: the same paths on every run):
//
//  1. AGREE: paths where both must give the same path, byte for byte. Segments (never empty, so
//     never `//`) made of unreserved characters, raw sub-delims, `:` and `@`, upper-case escapes
//     of ASCII characters that are neither unreserved nor refused (`%20`, `%3A`, `%40`, ...),
//     raw characters both percent-encode (`"`, `<`, `>`, backtick, `{`, `}`), non-ASCII
//     letters that are not NFKC look-alikes (raw, or as upper-case UTF-8 escapes), and `.`/`..`
//     segments. `new URL('http://h' + p).pathname` must equal Edgeward's canonical path.
//
//  2. KNOWN DIFFERENCES: the same alphabet plus encoded unreserved characters (Edgeward decodes
//     them, WHATWG keeps them), lower-case hex (Edgeward upper-cases it) and empty segments
//     (Edgeward merges `//`, before resolving dot segments, as NGINX does). The documented
//     relation: Edgeward(p) == fixEscapes(WHATWG(mergeSlashes(p))), where fixEscapes decodes
//     escaped unreserved characters and upper-cases the hex of the others; in particular
//     decodeURIComponent agrees on both sides.
//
//  3. ENCODED DOT SEGMENTS (`%2e`, `.%2E`, `%2e%2e`, ...): WHATWG resolves them as dot segments,
//     Edgeward refuses the path (`400 ambiguous_path`).
//
//  4. WINDOWS ALIASES (a segment ending in `.` or an encoded space, holding `::$`, or shaped as an
//     8.3 short name such as `ADMINI~1`): WHATWG keeps them, Edgeward refuses the path by default (`request.windows_aliases`).
//     Sets 1 to 3 draw their segments again until they are none.
//
// Edgeward's side is batch-computed by the CLI: `target/debug/edgeward path -` (one path per line
// on stdin, one JSON line per path out), built here first with `cargo build --locked --bin
// edgeward` (a no-op when it is current).
//
//   node --test tests/differential/canonical-url.test.mjs

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'target', 'debug', 'edgeward');
const SEED = 0x14c4_0a11;

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

/**
 * Builds target/debug/edgeward: `cargo build` every run (a no-op in well under a second when
 * fresh), since a binary newer than its sources can still predate an edit made during its build.
 */
function ensureCli() {
  const env = { ...process.env, PATH: `${path.join(os.homedir(), '.cargo', 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` };
  const r = spawnSync('cargo', ['build', '--locked', '--bin', 'edgeward'], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`cargo build --locked --bin edgeward failed (${r.status ?? r.signal ?? r.error}):\n${(r.stderr ?? '').slice(-6000)}`);
  assert.ok(fs.existsSync(CLI), `cargo build succeeded but ${CLI} does not exist`);
}

/** Edgeward's verdict for every path (default `request` rules): { canonical } or { refused, status }. */
function edgewardPaths(paths) {
  for (const p of paths) assert.ok(!/[\r\n?]/.test(p), `generator bug: ${JSON.stringify(p)} cannot go through \`edgeward path -\``);
  const r = spawnSync(CLI, ['path', '-'], { input: `${paths.join('\n')}\n`, encoding: 'utf8', maxBuffer: 256 << 20 });
  // 0: every path accepted, 1: some refused; anything else is a usage or configuration error.
  assert.ok(r.status === 0 || r.status === 1, `edgeward path - exited ${r.status ?? r.signal}: ${r.stderr}`);
  const lines = r.stdout.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, paths.length, `edgeward path - printed ${lines.length} lines for ${paths.length} paths`);
  return lines.map((l, i) => {
    const o = JSON.parse(l);
    assert.equal(o.path, paths[i], `line ${i} is about another path`);
    return o;
  });
}

// ---------------------------------------------------------------------------------------------
// WHATWG side and the documented relations
// ---------------------------------------------------------------------------------------------

/** The path WHATWG gives a request target (concatenated, so a leading `//` is no authority). */
const whatwg = (p) => new URL(`http://h${p}`).pathname;

const mergeSlashes = (p) => p.replace(/\/{2,}/g, '/');

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** Decodes escaped unreserved characters and upper-cases the hex of every other escape. */
const fixEscapes = (p) =>
  p.replace(/%([0-9A-Fa-f]{2})/g, (m, hex) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hex2 = (n) => n.toString(16).toUpperCase().padStart(2, '0');
const UNRESERVED_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~'.split('');
// ASCII that is not unreserved and is neither refused (`/`, `\`, `;`, `%`, controls) nor `.`.
const ESCAPABLE_ASCII = ' !"#$&\'()*+,:<=>?@[]^`{|}'.split('');
const RAW_PCHARS = "!$&'()*+,=:@".split('');
// Raw characters that WHATWG's path percent-encode set and Edgeward both encode (not a raw
// space: it cannot stand in a request line, and WHATWG trims it at the end of a URL).
const RAW_BOTH_ENCODE = ['"', '<', '>', '`', '{', '}'];
// Non-ASCII letters whose NFKC form holds no ASCII (checked below).
const LETTERS = ['é', 'ß', 'ж', '中', 'ñ', 'ü', 'Ω', 'ç', 'ø', 'å', 'λ', 'ğ', 'ı', '한', 'ا', 'ש', '😀'].filter(
  (c) => ![...c.normalize('NFKC')].some((x) => x.charCodeAt(0) < 0x80),
);
const upperEscape = (s) => encodeURIComponent(s); // UTF-8, upper-case hex
const lowerEscape = (s) => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());

function generator(seed) {
  const rnd = mulberry32(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (xs) => xs[int(xs.length)];
  return { rnd, int, pick };
}

/** One token of the AGREE alphabet. */
function agreeToken(g) {
  const r = g.rnd();
  if (r < 0.45) return g.pick(UNRESERVED_CHARS);
  if (r < 0.6) return `%${hex2(g.pick(ESCAPABLE_ASCII).charCodeAt(0))}`;
  if (r < 0.7) return g.pick(RAW_PCHARS);
  if (r < 0.77) return g.pick(RAW_BOTH_ENCODE);
  if (r < 0.9) return upperEscape(g.pick(LETTERS));
  return g.pick(LETTERS);
}

/** A segment that is a dot segment once decoded, with at least one `.` percent-encoded. */
function encodedDotSegment(g) {
  const dot = () => g.pick(['%2e', '%2E']);
  return g.pick([
    () => dot(),
    () => `${dot()}${dot()}`,
    () => `.${dot()}`,
    () => `${dot()}.`,
  ])();
}

/** Decoded form of a segment as far as unreserved escapes go (to spot dot segments). */
const decodeUnreserved = (s) => fixEscapes(s);

/** Edgeward's canonical form of one segment that is no dot segment (for these alphabets). */
const canonicalSegment = (seg) => fixEscapes(whatwg(`/${seg}`).slice(1));

/**
 * A segment Windows reads as another name (`admin.`, `admin%20`, `admin::$DATA`, `ADMINI~1`):
 * Edgeward refuses it by default (`request.windows_aliases`), WHATWG keeps it.
 */
const isWindowsAlias = (seg) => {
  const c = canonicalSegment(seg);
  return c.endsWith('.') || c.endsWith('%20') || c.includes('::$') || isShortName(c);
};

/** An 8.3 short name: one to six characters, `~`, digits (a base of at most eight), an extension of at most three. */
const isShortName = (c) => {
  const dot = c.indexOf('.');
  const [base, ext] = dot < 0 ? [c, ''] : [c.slice(0, dot), c.slice(dot + 1)];
  const tilde = base.lastIndexOf('~');
  if (tilde < 0) return false;
  const stem = base.slice(0, tilde);
  const digits = base.slice(tilde + 1);
  return stem.length >= 1 && stem.length <= 6 && /^[0-9]+$/.test(digits) && base.length <= 8 && ext.length <= 3 && !ext.includes('.');
};

/** 1 to `max` ASCII letters and digits (what short names are made of). */
const asciiStem = (g, max) => {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let s = '';
  const len = 1 + g.int(max);
  for (let j = 0; j < len; j += 1) s += chars[g.int(chars.length)];
  return s;
};

/** A segment of `len` tokens from `token`, drawn again until it is no Windows alias. */
function plainSegment(g, token, maxLen) {
  for (;;) {
    let s = '';
    const len = 1 + g.int(maxLen);
    for (let j = 0; j < len; j += 1) s += token(g);
    if (!isWindowsAlias(s)) return s;
  }
}

function agreePath(g) {
  const n = 1 + g.int(6);
  const segs = [];
  for (let i = 0; i < n; i += 1) {
    const r = g.rnd();
    if (r < 0.08) segs.push('.');
    else if (r < 0.18) segs.push('..');
    else segs.push(plainSegment(g, agreeToken, 8));
  }
  return `/${segs.join('/')}${g.rnd() < 0.2 ? '/' : ''}`;
}

/** One token of the KNOWN DIFFERENCES alphabet: AGREE plus encoded unreserved and lower-case hex. */
function differToken(g) {
  const r = g.rnd();
  if (r < 0.35) return agreeToken(g);
  if (r < 0.6) {
    const c = g.pick(UNRESERVED_CHARS);
    const e = `%${hex2(c.charCodeAt(0))}`;
    return g.rnd() < 0.5 ? e : e.toLowerCase();
  }
  if (r < 0.8) return `%${hex2(g.pick(ESCAPABLE_ASCII).charCodeAt(0))}`.toLowerCase();
  return lowerEscape(g.pick(LETTERS));
}

function differPath(g) {
  const n = 1 + g.int(7);
  const segs = [];
  for (let i = 0; i < n; i += 1) {
    const r = g.rnd();
    if (r < 0.15) segs.push(''); // an empty segment: `//`
    else if (r < 0.22) segs.push('.');
    else if (r < 0.32) segs.push('..');
    else {
      let s = plainSegment(g, differToken, 8);
      // Encoded dot segments belong to the third set.
      if (decodeUnreserved(s) === '.' || decodeUnreserved(s) === '..') s += 'x';
      segs.push(s);
    }
  }
  const p = `/${segs.join('/')}${g.rnd() < 0.2 ? '/' : ''}`;
  // Make sure each path shows at least one known difference.
  return hasKnownDifference(p) ? p : `${p}%7E/`;
}

/** `//`, lower-case hex, or an escaped unreserved character. */
function hasKnownDifference(p) {
  return p.includes('//') || [...p.matchAll(/%([0-9A-Fa-f]{2})/g)].some((m) => /[a-f]/.test(m[1]) || UNRESERVED.test(String.fromCharCode(parseInt(m[1], 16))));
}

function encodedDotPath(g) {
  const n = 2 + g.int(5);
  const segs = [];
  const where = g.int(n);
  for (let i = 0; i < n; i += 1) {
    if (i === where) {
      segs.push(encodedDotSegment(g));
      continue;
    }
    segs.push(plainSegment(g, agreeToken, 6));
  }
  return `/${segs.join('/')}`;
}

/** An AGREE-alphabet path (no dot segments) with one Windows alias segment. */
function windowsAliasPath(g) {
  const n = 2 + g.int(4);
  const where = g.int(n);
  const segs = [];
  for (let i = 0; i < n; i += 1) {
    if (i !== where) {
      segs.push(plainSegment(g, agreeToken, 6));
      continue;
    }
    // Starts with a letter or digit: `${base}.` must never be a dot segment.
    const base = `${asciiStem(g, 1)}${plainSegment(g, agreeToken, 4)}`;
    segs.push(
      g.pick([
        () => `${base}.`,
        () => `${base}%2E`,
        () => `${base}%20`,
        () => `${base}.%20.`,
        () => `${base}::$DATA`,
        () => `${asciiStem(g, 6)}~${1 + g.int(9)}`,
        () => `${asciiStem(g, 5)}%7E${1 + g.int(9)}.${asciiStem(g, 3)}`,
      ])(),
    );
  }
  return `/${segs.join('/')}${g.rnd() < 0.2 ? '/' : ''}`;
}

function generate(count, make, seed) {
  const g = generator(seed);
  const out = new Set();
  let guard = 0;
  while (out.size < count && guard < count * 20) {
    out.add(make(g));
    guard += 1;
  }
  return [...out];
}

function report(failures, total, what) {
  const shown = failures.slice(0, 25).map((f) => `  ${JSON.stringify(f)}`).join('\n');
  const paths = new Set(failures.map((f) => f.path)).size;
  assert.equal(failures.length, 0, `${paths} of ${total} ${what} (${failures.length} failures):\n${shown}`);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

before(() => ensureCli(), { timeout: 20 * 60_000 });

test('generator sanity: deterministic, and the alphabets are what the header says', () => {
  assert.deepEqual(generate(50, agreePath, SEED), generate(50, agreePath, SEED), 'the generator is not deterministic');
  assert.ok(LETTERS.length >= 15, 'too few non-ASCII letters survived the NFKC filter');
  for (const c of ['.', '/', '\\', ';', '%']) assert.ok(!ESCAPABLE_ASCII.includes(c), `${c} must not be in the AGREE escapes`);
  for (const p of generate(500, agreePath, SEED)) {
    assert.ok(!p.includes('//'), `AGREE path with an empty segment: ${p}`);
    assert.ok(!/%(2F|5C|3B|25|[01][0-9A-F]|7F)/i.test(p), `AGREE path with a refused escape: ${p}`);
    assert.ok(!/%[0-9A-F]?[a-f]/.test(p), `AGREE path with lower-case hex: ${p}`);
    for (const m of p.matchAll(/%([0-7][0-9A-F])/g)) {
      assert.ok(!UNRESERVED.test(String.fromCharCode(parseInt(m[1], 16))), `AGREE path with an encoded unreserved character: ${p}`);
    }
  }
  // The relations themselves must be able to fail.
  assert.notEqual(whatwg('/a/%7E'), '/a/~', 'WHATWG would decode %7E: set 2 would be vacuous');
  assert.notEqual(whatwg('/a//b'), '/a/b', 'WHATWG would merge //: set 2 would be vacuous');
  assert.equal(whatwg('/a/%2e%2E/b'), '/b', 'WHATWG no longer resolves encoded dot segments: set 3 would be wrong');
});

test('AGREE: WHATWG URL pathname == Edgeward canonical path (3000 generated paths)', () => {
  const paths = generate(3000, agreePath, SEED);
  assert.equal(paths.length, 3000);
  const ours = edgewardPaths(paths);
  const failures = [];
  let withDots = 0;
  let withNonAscii = 0;
  paths.forEach((p, i) => {
    const theirs = whatwg(p);
    if (/(^|\/)\.\.?(\/|$)/.test(p)) withDots += 1;
    if (/%[C-F][0-9A-F]|[^\x00-\x7f]/.test(p)) withNonAscii += 1;
    if (ours[i].canonical === undefined) failures.push({ path: p, whatwg: theirs, edgeward: `refused: ${ours[i].refused} (${ours[i].problem})` });
    else if (ours[i].canonical !== theirs) failures.push({ path: p, whatwg: theirs, edgeward: ours[i].canonical });
  });
  // The set must exercise what it claims to.
  assert.ok(withDots > 500, `only ${withDots} paths with dot segments`);
  assert.ok(withNonAscii > 500, `only ${withNonAscii} paths with non-ASCII`);
  report(failures, paths.length, 'AGREE paths differ between WHATWG and Edgeward');
});

test('KNOWN DIFFERENCES: Edgeward == fixEscapes(WHATWG(mergeSlashes(p))) (2000 generated paths)', () => {
  const paths = generate(2000, differPath, SEED ^ 0x5a5a5a5a);
  assert.equal(paths.length, 2000);
  const ours = edgewardPaths(paths);
  const failures = [];
  let differs = 0;
  let orderMatters = 0;
  paths.forEach((p, i) => {
    const e = ours[i].canonical;
    const w = whatwg(p);
    if (e === undefined) {
      failures.push({ path: p, whatwg: w, edgeward: `refused: ${ours[i].refused} (${ours[i].problem})` });
      return;
    }
    if (e !== w) differs += 1;
    const expected = fixEscapes(whatwg(mergeSlashes(p)));
    if (e !== expected) failures.push({ path: p, whatwg: w, expected, edgeward: e });
    // The weaker relation, without fixEscapes: both decode to the same text.
    if (decodeURIComponent(e) !== decodeURIComponent(whatwg(mergeSlashes(p)))) failures.push({ path: p, what: 'decoded forms differ', whatwg: w, edgeward: e });
    // Merging before or after WHATWG's dot-segment resolution differs only for `//` followed
    // (later) by `..`: `/a//../b` is `/b` for Edgeward (NGINX order), `/a/b` for WHATWG.
    if (mergeSlashes(fixEscapes(w)) !== e) {
      orderMatters += 1;
      if (!/\/\/(?:.*\/)?\.\.(?:\/|$)/.test(p)) failures.push({ path: p, what: 'merge order matters without //…/..', whatwg: w, edgeward: e });
    }
  });
  assert.ok(differs > paths.length / 2, `only ${differs} of ${paths.length} paths actually differ: the set does not test the differences`);
  assert.ok(orderMatters > 0, 'no path where merging before dot segments matters: the generator lost its `//…/..` cases');
  report(failures, paths.length, 'KNOWN-DIFFERENCE paths break the documented relation');
});

test('the merge-before-dots difference, spelled out', () => {
  const cases = ['/a//../b', '/a/b//../../c', '/x//..', '//..//a'];
  const ours = edgewardPaths(cases);
  const expected = ['/b', '/c', '/', '/a'];
  const whatwgExpected = ['/a/b', '/a/c', '/x/', '//a'];
  cases.forEach((p, i) => {
    assert.equal(ours[i].canonical, expected[i], `Edgeward ${p}`);
    assert.equal(whatwg(p), whatwgExpected[i], `WHATWG ${p}`);
  });
});

test('ENCODED DOT SEGMENTS: WHATWG resolves them, Edgeward refuses (400 ambiguous_path) (600 generated paths)', () => {
  const paths = generate(600, encodedDotPath, SEED ^ 0x2e2e2e2e);
  assert.equal(paths.length, 600);
  const ours = edgewardPaths(paths);
  const failures = [];
  paths.forEach((p, i) => {
    const o = ours[i];
    if (o.refused !== 'ambiguous_path' || o.status !== 400 || !/encoded dot segment/.test(o.problem)) failures.push({ path: p, edgeward: o.canonical ?? `${o.refused} ${o.status} (${o.problem})` });
    // WHATWG reads the encoded dots as dot segments: the same path as with literal dots.
    const literal = p
      .split('/')
      .map((s) => {
        const d = decodeUnreserved(s);
        return d === '.' || d === '..' ? d : s;
      })
      .join('/');
    assert.notEqual(literal, p, `generator bug: no encoded dot segment in ${p}`);
    if (whatwg(p) !== whatwg(literal)) failures.push({ path: p, what: 'WHATWG does not resolve it', whatwg: whatwg(p), literal: whatwg(literal) });
  });
  report(failures, paths.length, 'ENCODED-DOT paths not handled as documented');
});

test('WINDOWS ALIASES: WHATWG keeps them, Edgeward refuses (400 ambiguous_path, request.windows_aliases) (600 generated paths)', () => {
  const paths = generate(600, windowsAliasPath, SEED ^ 0x7e7e7e7e);
  assert.equal(paths.length, 600);
  const ours = edgewardPaths(paths);
  const failures = [];
  paths.forEach((p, i) => {
    const o = ours[i];
    if (o.refused !== 'ambiguous_path' || o.status !== 400 || !/Windows path alias/.test(o.problem)) failures.push({ path: p, edgeward: o.canonical ?? `${o.refused} ${o.status} (${o.problem})` });
    const alias = p.split('/').find((seg) => seg && isWindowsAlias(seg));
    assert.ok(alias, `generator bug: no Windows alias in ${p}`);
    if (!whatwg(p).split('/').includes(whatwg(`/${alias}`).slice(1))) failures.push({ path: p, what: 'WHATWG dropped the alias segment', whatwg: whatwg(p) });
  });
  report(failures, paths.length, 'WINDOWS-ALIAS paths not handled as documented');
});
