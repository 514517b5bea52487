// Derives a wrangler config from one of the repository's (wrangler.toml, control/wrangler.toml):
// the same bindings, Durable Objects and migrations, with whole sections dropped (`[build]`, so
// `wrangler dev` does not rebuild; `[vars]`; `[[services]]`) and the top-level `main` and `name`
// replaced. Only keys before the first section are the Worker's own: `name` also appears in
// `[[durable_objects.bindings]]`. Used by bench/wrangler-config.mjs, scripts/control-config.mjs
// and the end-to-end tests.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A TOML basic string (JSON's escapes are a subset of TOML's). */
export const tomlString = (s) => JSON.stringify(String(s));

/**
 * The text of `source` (a path relative to the repository root) without the sections named in
 * `drop` (`build`, `vars`, `services`, ...), with top-level `main` / `name` set when given.
 */
export function deriveWranglerConfig(source, { drop = ['build'], main, name } = {}) {
  const out = [];
  let skip = false;
  let topLevel = true;
  for (const line of fs.readFileSync(path.join(ROOT, source), 'utf8').split('\n')) {
    const section = /^\[\[?([^\]]+)\]\]?/.exec(line);
    if (section) {
      topLevel = false;
      skip = drop.includes(section[1].trim());
    }
    if (skip) continue;
    let l = line;
    if (topLevel && main !== undefined) l = l.replace(/^main\s*=.*/, `main = ${tomlString(main)}`);
    if (topLevel && name !== undefined) l = l.replace(/^name\s*=.*/, `name = ${tomlString(name)}`);
    out.push(l);
  }
  return out.join('\n');
}
