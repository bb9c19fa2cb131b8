import { closeSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { callInFlight, describeThrown, MIN_SNAPSHOT_KEY_BYTES, saveSnapshot, ServiceFailure, UsageError, type MachineImage, type SystemEvent, type Vm } from '@plugvisor/core';
import { hardExit, startWatchdog, type Watchdog } from '../watchdog.js';

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
  SERVICE_FAILURE: 14, // a service's handler, hook or state handler threw, or a handler never returned (watchdog)
});

/** The hypercall watchdog's default timeout (seconds). */
export const DEFAULT_HYPERCALL_TIMEOUT = 10;

export const runExitHelp = `Exit status: 0 the guest powered off (PSCI SYSTEM_OFF; x86: port 0x604 value 0) or the
snapshot was written; 10 guest fault (message names vCPU, PC/RIP, cause); 11 hang (all vCPUs
wait forever); 12 all vCPUs off; 20 reset (SYSTEM_RESET/RESET2; x86: 0x604 value 1);
21 hibernate-off (SYSTEM_OFF2); 22 suspend (SYSTEM_SUSPEND); 23 crash (x86: 0x604 value 2);
14 service failure (a service threw, or a hypercall did not return within --hypercall-timeout:
one line names the service package@version, the call, the vCPU and the PC);
1 failure; 2 bad input; 3 snapshot refused.`;

export const failureOptionsHelp = `  --snapshot-on-failure FILE
                         if a service fails, write the VM as it was before the failing call
                         (registers at the trap, PC on the HVC/SMC) so 'plugvisor restore FILE
                         --build FIXED' runs the call again on a fixed build. RAM a handler wrote
                         before it failed cannot be undone and stays written
  --hypercall-timeout SECONDS
                         stop the VM (exit 14) when a hypercall handler has not returned after
                         SECONDS (default ${DEFAULT_HYPERCALL_TIMEOUT}; 0 turns the watchdog off)
  --snapshot-key FILE    sign every snapshot written with HMAC-SHA-256 under the key in FILE
                         (at least 16 bytes, e.g. head -c 32 /dev/urandom > KEY); with it,
                         restore refuses a snapshot that is unsigned or signed with another
                         key (exit 3)`;

export const failureOptions = {
  'snapshot-on-failure': { type: 'string' },
  'hypercall-timeout': { type: 'string' },
  'snapshot-key': { type: 'string' },
} as const;

/** Reads --snapshot-key FILE: a regular, non-empty file whose bytes are the HMAC key (at least MIN_SNAPSHOT_KEY_BYTES). */
export function readSnapshotKey(path: string | undefined): { key?: Uint8Array } {
  if (path === undefined) return {};
  const key = readInputFile(path, '--snapshot-key');
  if (key.byteLength < MIN_SNAPSHOT_KEY_BYTES) throw new UsageError(`--snapshot-key ${path}: a key of ${key.byteLength} bytes is too short; it takes at least ${MIN_SNAPSHOT_KEY_BYTES}`);
  return { key };
}

/** Parses --hypercall-timeout: seconds, 0 (off) up to a day; the default when absent. */
export function parseHypercallTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_HYPERCALL_TIMEOUT;
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 86400)) throw new UsageError(`--hypercall-timeout takes seconds from 0 (off) to 86400, got '${text}'`);
  return n;
}

/** What `run`/`restore` need of a machine: the arm64 and the x86 machine both fit. */
export interface GuestMachine {
  readonly arch?: string;
  run(options?: { pauseAfterTraps?: number }):
    | { readonly kind: 'system-event'; readonly event: SystemEvent }
    | { readonly kind: 'fault'; readonly fault: { readonly message: string } }
    | { readonly kind: 'hang'; readonly message: string }
    | { readonly kind: 'all-off' }
    | { readonly kind: 'paused'; readonly reason: string };
  image(): MachineImage;
  dispose(): void;
  /** The vCPU's state as a plain value, and such a value as a VCPU record (RuntimeMachine). */
  vcpuState?(i: number): unknown;
  encodeVcpuState?(state: unknown): Uint8Array;
  /** Gives up the run in progress, from inside a handler that never returns (RuntimeMachine). */
  abandonRun?(): void;
  /** The vCPU whose slice is running, -1 between runs (RuntimeMachine). */
  readonly runningVcpu?: number;
}

export interface GuestRunOptions {
  readonly snapshotAt?: number;
  /** The console text that triggers the snapshot (--snapshot-on-output; the sink asks for the pause). */
  readonly snapshotOnOutput?: string;
  /** The guest time that triggers the snapshot (--snapshot-at-time; the machine pauses itself). */
  readonly snapshotAtTime?: number;
  readonly snapshotFile?: string;
  /** Where to write the VM as before a failing call (--snapshot-on-failure). */
  readonly snapshotOnFailure?: string;
  /** Hypercall watchdog timeout in seconds; 0 = off (default DEFAULT_HYPERCALL_TIMEOUT). */
  readonly hypercallTimeout?: number;
  /** HMAC key every snapshot written is signed with (--snapshot-key). */
  readonly snapshotKey?: Uint8Array;
}

/** Console sink: synchronous, so guest output and our messages keep their order. */
export const consoleOut = (bytes: Uint8Array) => {
  writeSync(1, bytes);
};

/**
 * The console sink for --snapshot-on-output TEXT: guest output goes to stdout as consoleOut's,
 * and the first time TEXT appears in it (across writes) the machine is asked to pause. The pause
 * lands at the end of the running vCPU's slice — never inside the UART access — and the run
 * writes the snapshot (runToEnd). `attach` names the machine once it exists.
 */
export function consoleWatch(text: string | undefined): { sink: (bytes: Uint8Array) => void; attach(machine: { requestPause(reason?: string): void }): void } {
  if (text === undefined) return { sink: consoleOut, attach: () => {} };
  let tail = '';
  let machine: { requestPause(reason?: string): void } | undefined;
  let fired = false;
  return {
    attach: (m) => void (machine = m),
    sink: (bytes) => {
      writeSync(1, bytes);
      if (fired) return;
      tail = (tail + Buffer.from(bytes).toString('latin1')).slice(-(text.length + 4096));
      if (tail.includes(text)) {
        fired = true;
        machine?.requestPause(`console output "${text}"`);
      }
    },
  };
}

const say = (line: string) => writeSync(2, `plugvisor: ${line}\n`);

/**
 * Where the trap of a failed call is, on a machine that can say: the PC of the trapping
 * instruction, and how to put the vCPU back on it so a restored VM executes the call again.
 *
 * arm64 (Unicorn): the interrupt hook for HVC/SMC runs after the instruction, with PC past it
 * (machine-arm64's cpu/vcpu.ts reads the immediate from the word at PC - 4; QEMU's
 * target/arm/translate-a64.c disas_exc ends the TB with PC = next instruction for HVC and
 * SMC), and A64 instructions are 4 bytes. A handler that throws never has its results written
 * back (the transfer writes back after dispatch returns), so every other register is the
 * guest's at the trap. RAM the handler wrote before it failed cannot be undone.
 */
function trapOf(machine: GuestMachine, vcpu: number): { pc: bigint; image(): MachineImage } | undefined {
  if (machine.arch !== 'arm64' || !machine.vcpuState || !machine.encodeVcpuState) return undefined;
  const state = machine.vcpuState(vcpu) as { core?: unknown };
  if (!Array.isArray(state?.core) || typeof state.core[31] !== 'string') return undefined;
  const core = state.core as string[];
  const pc = BigInt.asUintN(64, BigInt(core[31]!) - 4n);
  // The image with this vCPU's record edited; the engine is not written (from inside a stuck
  // handler, a register write or a translation flush could unwind Unicorn under our feet).
  const rewound = { ...state, core: core.map((r, i) => (i === 31 ? `0x${pc.toString(16).padStart(16, '0')}` : r)) };
  return {
    pc,
    image: () => {
      const img = machine.image();
      const vcpus = [...img.vcpus];
      vcpus[vcpu] = machine.encodeVcpuState!(rewound);
      return { ...img, vcpus };
    },
  };
}

/** Writes `bytes` whole or not at all: a temporary file beside `file`, then rename(2). */
function writeWhole(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * A service failed during the run: name it on one line (package@version, call, vCPU, PC),
 * write the VM as before the failing call if asked, and return exit 14. A snapshot that cannot
 * be taken (a snapshotSave tap or a state handler failing too) is named on the same line and
 * leaves no file behind.
 */
function serviceFailed(vm: Vm, machine: GuestMachine, failure: ServiceFailure, options: GuestRunOptions): number {
  const inCall = failure.site.phase === 'call' && failure.site.vcpu !== undefined;
  const trap = inCall ? trapOf(machine, failure.site.vcpu!) : undefined;
  failure.locate(trap?.pc);
  let note = '';
  const file = options.snapshotOnFailure;
  if (file !== undefined) {
    if (!inCall) note = '; no snapshot written: the failure was not in a hypercall';
    else if (!trap) note = `; no snapshot written: the ${machine.arch ?? ''} machine cannot put a vCPU back on its trap`;
    else {
      try {
        const bytes = saveSnapshot(vm, trap.image(), { key: options.snapshotKey });
        writeWhole(file, bytes);
        note = `; the VM as before the call is in ${file} (${bytes.byteLength} bytes): 'plugvisor restore ${file} --build FIXED' runs it again`;
      } catch (e) {
        note = `; no snapshot written: ${e instanceof ServiceFailure ? e.message : describeThrown(e)}`;
      }
    }
  }
  say(`service failure: ${failure.message}${note}`);
  if (process.env.PLUGVISOR_DEBUG === '1') writeSync(2, `${(failure.cause as Error)?.stack ?? String(failure.cause)}\n`);
  return RunExit.SERVICE_FAILURE;
}

export async function runToEnd(vm: Vm, machine: GuestMachine, options: GuestRunOptions): Promise<number> {
  const seconds = options.hypercallTimeout ?? DEFAULT_HYPERCALL_TIMEOUT;
  let watchdog: Watchdog | undefined;
  try {
    // onStall runs on this thread, paused inside the stuck handler (watchdog.ts): it never returns to it.
    let probing = true;
    watchdog = await startWatchdog(seconds, () => {
      // the vCPU in the stuck call: the one whose slice runs (vCPU 0 for a behaviour probe)
      const failure = callInFlight(seconds, Math.max(0, machine.runningVcpu ?? 0));
      if (!failure) return;
      if (probing) {
        say(`service failure: ${failure.message} (a behaviour probe of the build, before the guest ran)`);
        hardExit(RunExit.SERVICE_FAILURE);
      }
      machine.abandonRun?.();
      hardExit(serviceFailed(vm, machine, failure, options));
    });
    // A snapshot carries the build's manifest hash, whose behaviour transcripts run every handler
    // on probe inputs (core behaviour/transcript.ts). Computed now, before the guest runs: after
    // a service failed, its handlers must not run again to write the failure snapshot.
    if (options.snapshotAt !== undefined || options.snapshotOnOutput !== undefined || options.snapshotAtTime !== undefined || options.snapshotOnFailure !== undefined) vm.hv.manifest();
    probing = false;
    const result = machine.run(options.snapshotAt ? { pauseAfterTraps: options.snapshotAt } : {});
    if (options.snapshotAt && result.kind !== 'paused') {
      say(`no snapshot was written: the run ended before ${options.snapshotAt} hypercall traps`);
    }
    if (options.snapshotOnOutput !== undefined && result.kind !== 'paused') {
      say(`no snapshot was written: the guest never printed "${options.snapshotOnOutput}"`);
    }
    if (options.snapshotAtTime !== undefined && result.kind !== 'paused') {
      say(`no snapshot was written: the run ended before guest time ${options.snapshotAtTime} s`);
    }
    switch (result.kind) {
      case 'paused': {
        const bytes = saveSnapshot(vm, machine.image(), { key: options.snapshotKey });
        const file = options.snapshotFile ?? 'plugvisor.snap';
        writeWhole(file, bytes);
        const when = result.reason.startsWith('console output') || result.reason.startsWith('guest time') ? `at ${result.reason}` : `after ${options.snapshotAt} hypercall traps`;
        say(`snapshot ${when} written to ${file} (${bytes.byteLength} bytes); continue it with 'plugvisor restore ${file}'`);
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
    throw new Error(`unknown run result ${(result as { kind: string }).kind}`);
  } catch (e) {
    if (e instanceof ServiceFailure) return serviceFailed(vm, machine, e, options);
    throw e;
  } finally {
    watchdog?.stop();
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
