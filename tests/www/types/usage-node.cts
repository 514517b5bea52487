// `require('edgeward')`, `require('edgeward/web')` and the other entry points in CommonJS TypeScript (module nodenext):
// the types come from the package's `.d.cts` files (its `types` → `require` condition).
import edgeward = require('edgeward');
import web = require('edgeward/web');
import decode = require('edgeward/decode');
import dpop = require('edgeward/dpop');
import verifyOnly = require('edgeward/verify');

declare const token: string;
const policy: edgeward.VerifyPolicy = { issuer: null, algorithms: ['EdDSA'] };
edgeward.verify<{ roles: string[] }>(token, { keys: [] }, policy).then((claims) => claims.roles satisfies string[]);
edgeward.createVerifier(policy, { jwksUri: 'https://id.example/jwks' }).verify(token).then((claims) => claims.sub);
try {
  edgeward.decodeUnverified(token);
} catch (e) {
  if (edgeward.isEdgewardError(e)) e.code satisfies edgeward.EdgewardErrorCode;
}
web.default().then(() => web.verify(token, '{"keys":[]}', policy));
web.initSync({ module: new Uint8Array() });
new edgeward.EdgewardError('expired') satisfies Error;
edgeward.createDpopKey().then((keys) => edgeward.dpopProof(keys, { method: 'GET', url: 'https://api.example/', nonce: 'n' }))
  .then((proof: string) => web.jwkThumbprint(JSON.parse(atob(proof.split('.')[0])).jwk));
decode.decodeUnverified(token).claims.sub satisfies string | undefined;
dpop.createDpopKey().then((keys) => dpop.dpopProof(keys, { method: 'GET', url: 'https://api.example/' }));
verifyOnly.createVerifier(policy, { jwks: { keys: [] } }).explain<{ roles: string[] }>(token).then((r) => r.claims?.roles satisfies string[] | undefined);
verifyOnly.verify(token, '{"keys":[]}', policy).catch((e: unknown) => verifyOnly.isEdgewardError(e) && e.code satisfies verifyOnly.EdgewardErrorCode);
