#!/usr/bin/env node
import { main } from './main.js';

// A reader that goes away early (`plugvisor abi | head`) closes our stdout: EPIPE on the next
// write. That is the reader's choice, not a failure: stop quietly, as a Unix filter does on SIGPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

process.exitCode = await main(process.argv.slice(2));
