// `edgeward/verify`: an app that only verifies, and ships only the verifying module.
import * as edgeward from 'edgeward/verify';
import { runVerify } from './check.js';

runVerify(edgeward);
