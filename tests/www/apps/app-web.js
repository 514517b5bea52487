// `edgeward/web`: `init()` fetches the .wasm, which the bundler emits as an asset.
import init, * as edgeward from 'edgeward/web';
import { run } from './check.js';

run(edgeward, init());
