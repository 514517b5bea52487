// Shared by the package tests: the package as a user gets it, and the browser they run it in.
//   packed()  `npm pack` of pkg/ unpacked into tests/artifacts/pkg/node_modules/edgeward (so only
//             the files npm publishes, resolved through the package's `exports`), once per run
//   CHROMIUM, CHROMIUM_ARGS, launchChromium()  headless Chromium as TOOLCHAIN.md says
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PKG = path.join(ROOT, 'pkg');
export const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'pkg');
/** Node 20 for the package's runtime tests: a pinned dev dependency (package.json, `node-v20`). */
export const NODE20 = path.join(ROOT, 'node_modules', 'node-v20', 'bin', 'node');

export const CHROMIUM = process.env.EDGEWARD_CHROMIUM ?? '/usr/bin/chromium';
// Headless Chromium as root, with nothing reaching outside hosts (see TOOLCHAIN.md).
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
/** Headless Chromium; `extra`: more command-line switches (the benches' diagnoses). */
export const launchChromium = (extra = []) => chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extra], headless: true });

let installed;

/** The directory whose node_modules/edgeward is the packed package (apps and probes go under it). */
export function packed() {
  if (installed) return installed;
  if (!fs.existsSync(path.join(PKG, 'package.json'))) throw new Error('pkg/ is missing: run scripts/build-web');
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  const modules = path.join(ARTIFACTS, 'node_modules');
  fs.mkdirSync(modules, { recursive: true });
  const [{ filename }] = JSON.parse(execFileSync('npm', ['pack', PKG, '--json', '--pack-destination', ARTIFACTS], { encoding: 'utf8' }));
  execFileSync('tar', ['-xzf', path.join(ARTIFACTS, filename), '-C', modules]);
  fs.renameSync(path.join(modules, 'package'), path.join(modules, 'edgeward'));
  installed = ARTIFACTS;
  return installed;
}
