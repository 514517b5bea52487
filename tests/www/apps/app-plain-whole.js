// The plain-JS functions imported from `edgeward` itself: a bundler drops the WebAssembly module the
// app does not use (the test runs this app under a CSP without 'wasm-unsafe-eval').
import { decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError, createDpopKey, dpopProof } from 'edgeward';
import { runPlain } from './check.js';

runPlain({ decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError, createDpopKey, dpopProof });
