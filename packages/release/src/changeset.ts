#!/usr/bin/env node
/** `pnpm changeset [command] [args…]`: the changesets CLI, with the release ledger and Guest ABI notes on `version` (version.ts). */
import { run } from './version.js';

process.exitCode = run(process.argv.slice(2), { cwd: process.cwd() });
