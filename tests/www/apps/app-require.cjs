// The package's default entry point, required.
const edgeward = require('edgeward');
const { run } = require('./check.js');

run(edgeward);
