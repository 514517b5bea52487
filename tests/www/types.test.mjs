// The package's TypeScript types, as a user's compiler sees them: `tsc --strict` (the pinned
// TypeScript, package.json) over tests/www/types/, copied next to the packed package
// (tests/www/packed.mjs) so that `edgeward` resolves through its `exports` and `types` conditions:
//   usage.ts                     every export of `edgeward`, `edgeward/web`'s own, and every export of
//                                `edgeward/verify`, `edgeward/decode`, `edgeward/dpop` (bundler resolution)
//   usage-node.cts, usage-node.mts  `require` and `import` in Node's module resolution (nodenext),
//                                which read the `.d.cts` and `.d.ts` files respectively
// Library files are checked too (skipLibCheck off), and each `@ts-expect-error` must be an error.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, packed } from './packed.mjs';

const TYPES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'types');
const TSC = path.join(ROOT, 'node_modules', '.bin', 'tsc');
let dir;

before(() => {
  dir = path.join(packed(), 'types');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(TYPES, dir, { recursive: true });
});

const tsc = (project) => {
  try {
    execFileSync(TSC, ['-p', project], { cwd: dir, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc -p ${project}:\n${e.stdout}${e.stderr}`);
  }
};

describe('TypeScript: tsc --strict over code using every export', () => {
  test('usage.ts imports every runtime export (edgeward/web: those it adds to edgeward\'s, which it shares; edgeward/verify: its five)', () => {
    const require = createRequire(path.join(dir, 'x.cjs'));
    const source = fs.readFileSync(path.join(TYPES, 'usage.ts'), 'utf8');
    const imports = (entry) => new RegExp(`import ([^;]+) from '${entry}';`).exec(source)[1];
    const names = (entry) => Object.keys(require(entry)).filter((k) => k !== '__esModule');
    const shared = names('edgeward');
    for (const name of shared) assert.match(imports('edgeward'), new RegExp(`\\b${name}\\b`), `usage.ts imports ${name} from edgeward`);
    const webOnly = names('edgeward/web').filter((k) => !shared.includes(k));
    assert.deepEqual(webOnly.sort(), ['default', 'initSync']);
    assert.match(imports('edgeward/web'), /^init, \{ initSync\b/);
    const verifyOnly = names('edgeward/verify');
    assert.deepEqual(verifyOnly.sort(), ['EdgewardError', 'createVerifier', 'explain', 'isEdgewardError', 'verify']);
    for (const name of verifyOnly) assert.match(imports('edgeward/verify'), new RegExp(`\\b${name}\\b`), `usage.ts imports ${name} from edgeward/verify`);
  });

  test('bundler resolution (usage.ts)', () => tsc('tsconfig.json'));
  test('Node resolution, require and import (usage-node.cts, usage-node.mts)', () => tsc('tsconfig.node.json'));
});
