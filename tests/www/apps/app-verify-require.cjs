// `edgeward/verify`, required: the same app as app-verify.js.
const edgeward = require('edgeward/verify');
const { runVerify } = require('./check.js');

runVerify(edgeward);
