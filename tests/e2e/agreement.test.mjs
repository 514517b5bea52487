// Edgeward end to end, issue 16: the gate Worker gives the verdicts the npm package gives. A fresh
// set of the shared fixture's cases (tests/fixtures/gen-agreement.mjs, `makeAgreement` at the real
// time: tokens signed by jose for RS256, PS256, ES256, EdDSA and HS256, a case per token reason
// code) goes to one gate holding every suite's issuer with its keys inline; each answer is 200
// through to the origin or 401 with the case's code. The committed fixture of the same cases is
// checked against the package (tests/www/package.test.mjs) and the core (tests/agreement.rs).

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';
import { makeAgreement } from '../fixtures/gen-agreement.mjs';

const fixture = await makeAgreement(h.nowSecs());

describe('the gate Worker gives the shared fixture\'s verdicts', { timeout: 300_000 }, () => {
  const stack = h.useStack({
    label: 'agreement',
    jwks: false,
    rawConfig: ({ origin }) => ({
      issuers: fixture.suites.map(({ policy, jwks }) => ({ issuer: policy.issuer, audiences: policy.audiences, algorithms: policy.algorithms, jwks })),
      origin: origin.url,
    }),
  });
  let worker; let origin;
  before(() => ({ worker, origin } = stack));

  for (const suite of fixture.suites) {
    it(`${suite.alg}: ${suite.cases.length} cases`, async () => {
      for (const { name, token, code } of suite.cases) {
        const id = `${suite.alg}-${name}`;
        const res = await worker.request({ path: '/api/agreement', headers: { ...h.bearer(token), 'x-test-id': id } });
        if (code === null) {
          assert.equal(res.status, 200, `${id}: ${res.text}`);
          assert.ok(origin.find(id), `${id}: forwarded to the origin`);
        } else {
          h.assertInvalidToken(res, code, id);
          assert.equal(origin.find(id), undefined, `${id}: not forwarded`);
        }
      }
    });
  }
});
