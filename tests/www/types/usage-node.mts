// `import` in Node's ES module TypeScript (module nodenext): the `types` → `import` condition.
import { verify, isEdgewardError, createDpopKey, dpopProof, type EdgewardErrorCode } from 'edgeward';
import init, { checkApiKey } from 'edgeward/web';
import { createVerifier, EdgewardError } from 'edgeward/verify';

declare const token: string;
const claims = await verify<{ tenant: string }>(token, { keys: [] }, { issuer: null, algorithms: ['HS256'] });
claims.tenant satisfies string;
try {
  await init();
  checkApiKey(token);
} catch (e) {
  if (isEdgewardError(e)) e.code satisfies EdgewardErrorCode;
}
const proof: string = await dpopProof(await createDpopKey(), { method: 'GET', url: 'https://api.example/' });
proof satisfies string;
const verifier = createVerifier({ issuer: null, algorithms: ['ES256'] }, { jwks: '{"keys":[]}' });
await verifier.verify<{ tenant: string }>(token).then((c) => c.tenant satisfies string, (e: unknown) => e instanceof EdgewardError && e.code);
