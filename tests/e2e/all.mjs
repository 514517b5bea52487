// Entry point for `node --test tests/e2e/`: Node 22 resolves a directory argument like a module
// (package.json "main"), so this file loads every suite into one test process. Running the files
// directly (`node --test tests/e2e/*.test.mjs`) works as well.
import './proxy.test.mjs';
import './jwks-cache.test.mjs';
import './persistence.test.mjs';
import './config.test.mjs';
import './cookies.test.mjs';
import './token-cache.test.mjs';
import './ratelimit.test.mjs';
import './ratelimit-binding.test.mjs';
import './revocations.test.mjs';
import './apikeys.test.mjs';
