// The package's default entry point, imported.
import * as edgeward from 'edgeward';
import { run } from './check.js';

run(edgeward);
