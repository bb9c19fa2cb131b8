import { MachineError, StateReader } from '@plugvisor/core';
import { Layout } from './board/layout.js';
import { validatePl011State, type Pl011State } from './devices/pl011.js';
import { GICD_MAX_CPUS, validateGicdState, type GicdState } from './devices/gicd.js';
import { parseHoleRuns, type HoleRun } from './memory/holes.js';
import { HVC_IMMEDIATES, type HvcImmediates } from './traps.js';

/** The board and device state a snapshot carries beside the per-vCPU blobs. */
export interface Arm64MachineDescription {
  readonly board: 'plugvisor-virt';
  readonly schema: 1;
  readonly ramBase: string;
  readonly ramSize: number;
  readonly vcpus: number;
  readonly uart: Pl011State;
  /** The GIC distributor (absent in snapshots of builds before it: it stays at reset, which is what those guests saw). */
  readonly gicd?: GicdState;
  /** Index of the vCPU the round-robin scheduler runs next. */
  readonly nextVcpu: number;
  /**
   * The guest's virtual counter (CNTVCT_EL0, decimal) when the snapshot was taken: a restored
   * machine continues it from there, on any host and in any process (absent in snapshots of
   * older builds: their counter follows the host's).
   */
  readonly virtualCounter?: string;
  /**
   * Guest pages removed from RAM (memory/holes.ts) as ascending, apart runs of
   * ["0x<guest-physical address>", <4 KiB pages>]; absent when none are (and in snapshots of
   * builds before page removal).
   */
  readonly holes?: readonly HoleRun[];
  /**
   * What an HVC with a non-zero immediate does for this VM (traps.ts HvcImmediates); absent in snapshots of builds before personalities, whose guests saw the
   * 'legacy' rule and are restored with it.
   */
  readonly hvcImmediates?: HvcImmediates;
  /**
   * 'caller': a CPU_ON target starts with its caller's SCTLR_EL1.EE (KVM's rule); absent in
   * snapshots of builds before it, whose targets always started little-endian ('little').
   */
  readonly cpuOnEndianness?: CpuOnEndianness;
  /** vCPUs whose pending CPU_ON came from a big-endian caller (ascending; absent when none). */
  readonly bigEndianCpuOn?: readonly number[];
}

/** Whether a CPU_ON target starts with its caller's data endianness ('caller', KVM's) or little-endian ('little'). */
export type CpuOnEndianness = 'caller' | 'little';
export const CPU_ON_ENDIANNESS: readonly CpuOnEndianness[] = Object.freeze(['caller', 'little']);

export interface Arm64MachineOptions {
  /** Number of vCPUs (default 1). vCPU 0 boots; the others start powered off. */
  vcpus?: number;
  /** Guest RAM size in bytes (default 128 MiB, multiple of 4 KiB). */
  memSize?: number;
  /** Receives console output (UART data register writes). Default: process.stdout. */
  console?: (bytes: Uint8Array) => void;
  /** Instructions per slice when several vCPUs are runnable or an interrupt waits for the guest to unmask it (default 100000). */
  sliceInstructions?: number;
  /**
   * Move trap registers through the engine's register memory when it can be found and proven
   * (README "Traps"), else with uc_reg_*_batch calls. False: always batches. Default: true,
   * unless the environment sets PLUGVISOR_ARM64_REGISTER_WINDOW=0 (to test the batch path).
   */
  registerWindow?: boolean;
  /**
   * What an HVC with a non-zero immediate does (traps.ts HvcImmediates). Default: the personality
   * of the build whose VM is attached (`personalityOf`: 'kvm' for SMCCC calls only, 'kvm-xen' for
   * SMCCC and Xen calls, 'xen' for Xen calls only).
   */
  hvcImmediates?: HvcImmediates;
  /** Whether a CPU_ON target starts with its caller's SCTLR_EL1.EE (default 'caller', KVM's rule) or little-endian ('little'). */
  cpuOnEndianness?: CpuOnEndianness;
}

/**
 * Validates a snapshot's machine description for `vcpuRecords` vCPU blobs: the one check both
 * the restore dry run (checkArm64Snapshot) and Arm64Machine.fromImage use. Throws StateError
 * naming the field.
 */
export function validateArm64Description(value: unknown, vcpuRecords: number): Arm64MachineDescription {
  const r = new StateReader('arm64 machine description', value);
  if (r.raw('board') !== 'plugvisor-virt' || r.raw('schema') !== 1) r.fail('board', 'is not a plugvisor-virt arm64 board (description schema 1)');
  const vcpus = r.int('vcpus', 1, 512);
  if (vcpus !== vcpuRecords) r.fail('vcpus', `is ${vcpus} but the snapshot has ${vcpuRecords} vCPU records`);
  const ramSize = r.int('ramSize', 0x10000, 0xc000_0000);
  if (ramSize % 4096 !== 0) r.fail('ramSize', `${ramSize} is not a multiple of 4 KiB`);
  const base = `0x${Layout.RAM_BASE.toString(16)}`;
  if (r.raw('ramBase') !== base) r.fail('ramBase', `${String(r.raw('ramBase'))} is not this board's ${base}`);
  const nextVcpu = r.int('nextVcpu', 0, vcpus - 1);
  const uart = validatePl011State(r.raw('uart'), 'arm64 machine description uart');
  const counter = r.raw('virtualCounter');
  if (counter !== undefined && (typeof counter !== 'string' || !/^(0|[1-9][0-9]{0,19})$/.test(counter) || BigInt(counter) >= 1n << 64n)) {
    r.fail('virtualCounter', 'is not a 64-bit counter value as a decimal string');
  }
  const holes = r.raw('holes');
  if (holes !== undefined) parseHoleRuns(holes, ramSize, (problem) => r.fail('holes', problem));
  const hvc = r.raw('hvcImmediates');
  if (hvc !== undefined && !HVC_IMMEDIATES.includes(hvc as HvcImmediates)) r.fail('hvcImmediates', `is not one of ${HVC_IMMEDIATES.join(', ')}`);
  const endian = r.raw('cpuOnEndianness');
  if (endian !== undefined && !CPU_ON_ENDIANNESS.includes(endian as CpuOnEndianness)) r.fail('cpuOnEndianness', `is not one of ${CPU_ON_ENDIANNESS.join(', ')}`);
  const beOn = r.raw('bigEndianCpuOn');
  if (beOn !== undefined) {
    const ok = Array.isArray(beOn) && beOn.length > 0 && beOn.every((x, i) => Number.isInteger(x) && x >= 0 && x < vcpus && (i === 0 || x > (beOn[i - 1] as number)));
    if (!ok) r.fail('bigEndianCpuOn', `must be a non-empty ascending list of vCPU indexes below ${vcpus}`);
    if (endian !== 'caller') r.fail('bigEndianCpuOn', "is set but cpuOnEndianness is not 'caller'");
  }
  const gicd = r.raw('gicd') === undefined ? undefined : validateGicdState(r.raw('gicd'), Math.min(vcpus, GICD_MAX_CPUS), 'arm64 machine description gicd');
  return {
    board: 'plugvisor-virt',
    schema: 1,
    ramBase: base,
    ramSize,
    vcpus,
    uart,
    nextVcpu,
    ...(gicd ? { gicd } : {}),
    ...(counter !== undefined ? { virtualCounter: counter as string } : {}),
    ...(holes !== undefined ? { holes: holes as HoleRun[] } : {}),
    ...(hvc !== undefined ? { hvcImmediates: hvc as HvcImmediates } : {}),
    ...(endian !== undefined ? { cpuOnEndianness: endian as CpuOnEndianness } : {}),
    ...(beOn !== undefined ? { bigEndianCpuOn: beOn as number[] } : {}),
  };
}

/** A validated description's removed pages as [first page, count] runs (none: empty). */
export function parseArm64Holes(d: Arm64MachineDescription): Array<[number, number]> {
  return d.holes === undefined ? [] : parseHoleRuns(d.holes, d.ramSize, (problem) => {
    throw new MachineError(`arm64 machine description: holes ${problem}`);
  });
}

/** Checks the options' vCPU count and RAM size (defaults applied); throws MachineError. */
export function checkArm64Options(options: Arm64MachineOptions): { vcpus: number; ramSize: number } {
  const vcpus = options.vcpus ?? 1;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 512) throw new MachineError(`vCPU count must be 1..512, got ${vcpus}`);
  const ramSize = options.memSize ?? Layout.DEFAULT_RAM_SIZE;
  if (!Number.isInteger(ramSize) || ramSize < 0x10000 || ramSize % 4096 !== 0 || ramSize > 0xc000_0000) {
    throw new MachineError(`RAM size must be a multiple of 4 KiB between 64 KiB and 3 GiB, got ${ramSize}`);
  }
  const endian = options.cpuOnEndianness;
  if (endian !== undefined && !CPU_ON_ENDIANNESS.includes(endian)) throw new MachineError(`cpuOnEndianness must be one of ${CPU_ON_ENDIANNESS.join(', ')}, got ${String(endian)}`);
  const hvc = options.hvcImmediates;
  if (hvc !== undefined && !HVC_IMMEDIATES.includes(hvc)) throw new MachineError(`hvcImmediates must be one of ${HVC_IMMEDIATES.join(', ')}, got ${String(hvc)}`);
  return { vcpus, ramSize };
}
