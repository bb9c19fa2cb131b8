import { once } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { hypercallHeartbeat } from '@plugvisor/core';

/**
 * The hypercall watchdog: turns a service handler that never returns into a named stop.
 *
 * Why a worker and the inspector. A hypercall handler runs synchronously on the main thread,
 * inside Unicorn's interrupt hook (a koffi callback within uc_emu_start): while it spins, no
 * timer, signal handler or promise of this thread ever runs again, and nothing can unwind it
 * from outside (an exception cannot cross the C frames of the engine). `vm` module timeouts
 * would need the handler to run in a context of its own with a watchdog thread per call. The one
 * thing that can stop a JavaScript thread stuck in a loop is V8's interrupt mechanism, which the
 * inspector uses for `Debugger.pause` (Node's inspector: "node:inspector" Session
 * `connectToMainThread`, usable from a worker). So:
 *
 *   - the core's dispatcher keeps a heartbeat in a SharedArrayBuffer (router.ts: a sequence
 *     number bumped per dispatch and the site of the call in flight; plain stores, no allocation);
 *   - a worker thread, unref'd so it never keeps the process alive, polls it every 250 ms;
 *   - when the same call stays busy past the timeout, and only then (a connected session can make
 *     V8 deoptimise), it connects an inspector session to the main thread, enables the debugger,
 *     pauses it, and on `Debugger.paused` evaluates the stop function the main thread registered
 *     on globalThis (STALL_KEY): that prints the one line, writes the failure snapshot if asked,
 *     and ends the process with libc `_exit(2)` (process.exit would print "Waiting for the
 *     debugger to disconnect..." because a session is connected).
 */

/** Where the main thread's stop function lives (a registered symbol: a private name on globalThis). */
const STALL_KEY = 'plugvisor.hypercall-watchdog.stop';

/** How often the worker looks at the heartbeat. */
const POLL_MS = 250;

const WORKER = `
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const inspector = require('node:inspector');
const beat = new Int32Array(workerData.heartbeat);
const limit = workerData.seconds * 1000;
let seq = -1;
let since = Date.now();
let session;
// PLUGVISOR_WATCHDOG_TRACE=1: the worker says what it sees on stderr (for developers).
const trace = (m) => { if (process.env.PLUGVISOR_WATCHDOG_TRACE) require('fs').writeSync(2, 'watchdog: ' + m + '\\n'); };
setInterval(() => {
  const s = Atomics.load(beat, 0);
  const site = Atomics.load(beat, 1); // the call in flight, -1 when no handler runs
  trace('seq ' + s + ' site ' + site);
  if (site < 0 || s !== seq) {
    seq = s;
    since = Date.now();
    return;
  }
  if (session || Date.now() - since < limit) return;
  session = new inspector.Session();
  session.connectToMainThread();
  trace('stall: pausing the main thread');
  session.on('Debugger.paused', () => {
    trace('paused');
    session.post('Runtime.evaluate', { expression: 'globalThis[Symbol.for(${JSON.stringify(STALL_KEY)})]()' }, (err, res) => {
      trace('evaluated ' + JSON.stringify(err ?? res));
      // The stop function returned: no handler was stuck after all (it returned meanwhile).
      session.post('Debugger.resume', () => {
        session.disconnect();
        session = undefined;
        since = Date.now();
      });
    });
  });
  session.post('Debugger.enable', () => session.post('Debugger.pause'));
}, ${POLL_MS});
parentPort.postMessage('ready');
`;

let exitFn: ((code: number) => void) | undefined;

/**
 * libc's `_exit`, through koffi (the machine-arm64 package's FFI; the CLI has no other native
 * dependency): ends the process now, with no exit handlers and no wait for the inspector.
 * Falls back to process.reallyExit, which exits as well but prints the inspector's notice.
 */
export function hardExit(code: number): never {
  try {
    if (!exitFn) {
      const arm64 = fileURLToPath(import.meta.resolve('@plugvisor/machine-arm64'));
      const koffi = createRequire(arm64)('koffi') as { load(lib: string): { func(sig: string): (code: number) => void } };
      exitFn = koffi.load('libc.so.6').func('void _exit(int)');
    }
    exitFn(code);
  } catch {
    // fall through
  }
  (process as unknown as { reallyExit(code: number): never }).reallyExit(code);
  throw new Error('unreachable');
}

/** A started watchdog: `stop` ends its thread. */
export interface Watchdog {
  stop(): void;
}

/**
 * Starts the watchdog for this process: `onStall` runs on the main thread, inside the stuck
 * handler, when a hypercall has been busy for `seconds`; it returns to let the thread go on (no
 * call was stuck after all) or ends the process. 0 seconds: no watchdog. Resolves once the
 * worker runs: a worker thread starts only after the main thread returns to its event loop,
 * which a guest run never does.
 */
export async function startWatchdog(seconds: number, onStall: () => void): Promise<Watchdog> {
  if (!(seconds > 0)) return { stop: () => {} };
  const key = Symbol.for(STALL_KEY);
  (globalThis as Record<symbol, unknown>)[key] = onStall;
  const worker = new Worker(WORKER, { eval: true, workerData: { heartbeat: hypercallHeartbeat().buffer, seconds } });
  // Its first message says it is polling: a worker thread runs its script only after the main
  // thread returned to its event loop (and a guest run never does).
  await once(worker, 'message');
  worker.unref();
  return {
    stop: () => {
      delete (globalThis as Record<symbol, unknown>)[key];
      void worker.terminate();
    },
  };
}
