// `edgeward/decode` and `edgeward/dpop`: plain JS, no WebAssembly (the test runs this app under a
// CSP without 'wasm-unsafe-eval').
import { decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError } from 'edgeward/decode';
import { createDpopKey, dpopProof } from 'edgeward/dpop';
import { runPlain } from './check.js';

runPlain({ decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError, createDpopKey, dpopProof });
