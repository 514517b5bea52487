// Entry point for `node --test tests/www/` (Node 22 loads a directory argument through
// package.json "main"): the package tests (Node 20 and 22, npm pack, TypeScript, bundlers in
// headless Chromium), then the page in headless Chromium.
import './package.test.mjs';
import './types.test.mjs';
import './bundlers.test.mjs';
import './www.test.mjs';
