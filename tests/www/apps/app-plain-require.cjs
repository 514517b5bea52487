// `edgeward/decode` and `edgeward/dpop` from CommonJS: the same app as app-plain.js.
const { decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError } = require('edgeward/decode');
const { createDpopKey, dpopProof } = require('edgeward/dpop');
const { runPlain } = require('./check.js');

runPlain({ decodeUnverified, refreshAt, pkcePair, randomToken, nonce, isEdgewardError, createDpopKey, dpopProof });
