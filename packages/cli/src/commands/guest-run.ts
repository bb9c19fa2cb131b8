import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { saveSnapshot, UsageError, type MachineImage, type SystemEvent, type Vm } from '@plugvisor/core';

/**
 * Reads an operator-named input file (an image, a snapshot, a record) only if it is a
 * non-empty regular file: a directory, a device or a FIFO (which would block forever) is bad
 * operator input (exit 2), refused before anything is read.
 */
export function readInputFile(path: string, what: string): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`${what} ${path} does not exist`, 'BAD_INPUT_FILE');
  }
  if (st.isDirectory()) throw new UsageError(`${what} ${path} is a directory`, 'BAD_INPUT_FILE');
  if (!st.isFile()) throw new UsageError(`${what} ${path} is not a regular file`, 'BAD_INPUT_FILE');
  if (st.size === 0) throw new UsageError(`${what} ${path}: ${what} is empty`, 'BAD_INPUT_FILE');
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${what} ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'BAD_INPUT_FILE');
  }
}

/**
 * Checks up front that an output file (a snapshot, a record) can be written, so a run is not
 * lost after N traps: opened for appending (creating it if need be, leaving its contents).
 */
export function checkWritable(path: string, flag: string): void {
  try {
    const existing = statSync(path, { throwIfNoEntry: false });
    if (existing?.isDirectory()) throw Object.assign(new Error(), { code: 'EISDIR' });
    closeSync(openSync(path, 'a'));
    if (!existing) unlinkSync(path); // only a probe: leave no empty file behind
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EISDIR' ? 'is a directory' : code === 'ENOENT' ? 'is in a directory that does not exist' : `cannot be written (${code ?? (e as Error).message})`;
    throw new UsageError(`${flag} ${path} ${why}`, 'BAD_ARGUMENT');
  }
}

/**
 * Running a guest to its end, shared by `run` and `restore`: every way a run ends has its own
 * exit status, and a requested snapshot stops the run after N hypercall traps and writes the
 * core's stream (the VM can then continue elsewhere with `plugvisor restore`).
 */
export const RunExit = Object.freeze({
  SYSTEM_OFF: 0,
  SNAPSHOT_WRITTEN: 0,
  GUEST_FAULT: 10, // unhandled exception, access outside RAM and devices (every backend's GUEST_FAULT_EXIT_CODE)
  HANG: 11, // every vCPU waits for an interrupt nothing will raise (every backend's GUEST_HANG_EXIT_CODE)
  ALL_OFF: 12, // every vCPU powered itself off without a system event
  RESET: 20, // PSCI SYSTEM_RESET / SYSTEM_RESET2
  HIBERNATE_OFF: 21, // PSCI SYSTEM_OFF2 (hibernate)
  SUSPEND: 22, // PSCI SYSTEM_SUSPEND
  CRASH: 23,
});

export const runExitHelp = `Exit status: 0 the guest powered off (PSCI SYSTEM_OFF; x86: port 0x604 value 0) or the
snapshot was written; 10 guest fault (message names vCPU, PC/RIP, cause); 11 hang (all vCPUs
wait forever); 12 all vCPUs off; 20 reset (SYSTEM_RESET/RESET2; x86: 0x604 value 1);
21 hibernate-off (SYSTEM_OFF2); 22 suspend (SYSTEM_SUSPEND); 23 crash (x86: 0x604 value 2);
1 failure; 2 bad input; 3 snapshot refused.`;

/** What `run`/`restore` need of a machine: the arm64 and the x86 machine both fit. */
export interface GuestMachine {
  run(options?: { pauseAfterTraps?: number }):
    | { readonly kind: 'system-event'; readonly event: SystemEvent }
    | { readonly kind: 'fault'; readonly fault: { readonly message: string } }
    | { readonly kind: 'hang'; readonly message: string }
    | { readonly kind: 'all-off' }
    | { readonly kind: 'paused'; readonly reason: string };
  image(): MachineImage;
  dispose(): void;
}

export interface GuestRunOptions {
  readonly snapshotAt?: number;
  readonly snapshotFile?: string;
}

/** Console sink: synchronous, so guest output and our messages keep their order. */
export const consoleOut = (bytes: Uint8Array) => {
  writeSync(1, bytes);
};

const say = (line: string) => writeSync(2, `plugvisor: ${line}\n`);

export function runToEnd(vm: Vm, machine: GuestMachine, options: GuestRunOptions): number {
  try {
    const result = machine.run(options.snapshotAt ? { pauseAfterTraps: options.snapshotAt } : {});
    if (options.snapshotAt && result.kind !== 'paused') {
      say(`no snapshot was written: the run ended before ${options.snapshotAt} hypercall traps`);
    }
    switch (result.kind) {
      case 'paused': {
        const bytes = saveSnapshot(vm, machine.image());
        const file = options.snapshotFile ?? 'plugvisor.snap';
        writeFileSync(file, bytes);
        say(`snapshot after ${options.snapshotAt} hypercall traps written to ${file} (${bytes.byteLength} bytes); continue it with 'plugvisor restore ${file}'`);
        return RunExit.SNAPSHOT_WRITTEN;
      }
      case 'system-event': {
        const { kind, vcpu, data } = result.event;
        const detail = data.length ? ` (${data.map((d) => `0x${d.toString(16)}`).join(', ')})` : '';
        if (kind !== 'off') say(`guest requested ${kind} on vCPU ${vcpu}${detail}`);
        return { off: RunExit.SYSTEM_OFF, reset: RunExit.RESET, 'hibernate-off': RunExit.HIBERNATE_OFF, suspend: RunExit.SUSPEND, crash: RunExit.CRASH }[kind];
      }
      case 'fault':
        say(`guest fault: ${result.fault.message}`);
        return RunExit.GUEST_FAULT;
      case 'hang':
        say(`guest hang: ${result.message}`);
        return RunExit.HANG;
      case 'all-off':
        say('every vCPU is off and no system event was requested');
        return RunExit.ALL_OFF;
    }
  } finally {
    machine.dispose();
  }
}

/** Parses a size like 134217728, 128M, 64m, 1G, 512K. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!m) return undefined;
  const mult = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * mult;
}
