// Entry point for `node --test tests/e2e/`: Node 22 resolves a directory argument like a module
// (package.json "main"), so this file loads every suite into one test process: every
// `*.test.mjs` in this directory, in name order, found at run time so a new suite cannot be left
// out. Running the files directly (`node --test tests/e2e/*.test.mjs`) works as well.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const suites = fs.readdirSync(dir).filter((f) => f.endsWith('.test.mjs') && !f.startsWith('.')).sort();
if (suites.length === 0) throw new Error(`no *.test.mjs suites in ${dir}`);
for (const f of suites) await import(pathToFileURL(path.join(dir, f)).href);
