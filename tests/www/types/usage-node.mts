// `import` in Node's ES module TypeScript (module nodenext): the `types` → `import` condition.
import { verify, isEdgewardError, createDpopKey, dpopProof, type EdgewardErrorCode } from 'edgeward';
import init, { checkApiKey } from 'edgeward/web';

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
