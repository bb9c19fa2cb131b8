/**
 * The arm64 vCPU blob: the codec only (CPU control is cpu/vcpu.ts). A versioned little-endian
 * blob of architectural values, never Unicorn's internal layout:
 *
 *   u64 magic, u32 version, u32 sysreg count,
 *   u64 x0..x30, pc, pstate, sp_el0, sp_el1, fpcr, fpsr,
 *   32 x 16 bytes V0..V31,
 *   u64 sysregs[count] (SAVED_SYSREGS order),
 *   u32 json length, JSON {power, parked, pendingOn, gicc}
 *
 * The JSON tail is the machine runtime's run state of the vCPU (pendingOn as decimal strings)
 * and the GIC CPU interface state; both are validated by their owners' functions
 * (validateVcpuRunState, validateGiccState) when the blob is parsed.
 *
 * The persistence contract's view of the same state is {@link Arm64VcpuStateValue}: a plain,
 * JSON-safe value (u64s and vector registers as hex strings) validated field by field by
 * {@link validateArm64VcpuState}; {@link arm64VcpuCodec} turns it into the blob and back. The blob
 * format is unchanged, so every blob written before the plain value existed still restores.
 */
import { StateError, StateReader, hex64, hexBytes, validateVcpuRunState, type VcpuPowerState, type VcpuRunState, type VcpuStateCodec } from '@plugvisor/core';
import { validateGiccState, type GiccState } from '../devices/gicc.js';
import { VcpuStateError } from '../errors.js';
import { PSTATE_BTYPE, PSTATE_DAIF, PSTATE_IL, PSTATE_PAN, PSTATE_SS, PSTATE_SSBS, PSTATE_UAO, SAVED_SYSREGS } from './sysregs.js';

/**
 * PSTATE as SPSR_ELx holds it for an exception taken from AArch64 (Arm ARM C5.2.18 SPSR_EL1):
 * N Z C V [31:28], DIT [24], UAO [23], PAN [22], SS [21], IL [20], SSBS [12], BTYPE [11:10],
 * D A I F [9:6], M[4] (0 = AArch64) and M[3:0]. Every other bit is RES0 for the features of
 * Unicorn 2.0.1's `max` CPU (QEMU 5.0 target/arm: no MTE, so TCO [25] too); QEMU's
 * aarch64_pstate_valid_mask drops them silently, so a state carrying one was not saved here.
 */
const PSTATE_DIT = 1 << 24;
const PSTATE_KNOWN = (0xf000_0000 | PSTATE_DIT | PSTATE_UAO | PSTATE_PAN | PSTATE_SS | PSTATE_IL | PSTATE_SSBS | PSTATE_BTYPE | PSTATE_DAIF | 0x1f) >>> 0;
/**
 * The modes a guest vCPU runs in on this machine: EL0t (0b0000), EL1t (0b0100), EL1h (0b0101),
 * all AArch64 (M[4] = 0). Reset and CPU_ON enter EL1h (vcpu.ts reset); EL2 and EL3 belong to
 * the hypervisor (its EL3 trampoline), AArch32 modes (M[4] = 1) and EL0h (0b0001, an illegal
 * mode: Arm ARM D1.12.3 "Illegal return events from AArch64 state") cannot be entered.
 */
const GUEST_MODES: ReadonlyMap<number, string> = new Map([
  [0b0000, 'EL0t'],
  [0b0100, 'EL1t'],
  [0b0101, 'EL1h'],
]);

/** Refuses a saved PSTATE this machine cannot enter; returns why, or undefined. */
export function pstateProblem(pstate: bigint): string | undefined {
  const hex = `0x${pstate.toString(16)}`;
  if (pstate >= 1n << 32n) return `${hex} is wider than 32 bits`;
  const p = Number(pstate);
  if (p & 0x10) return `${hex} is an AArch32 mode (M[4] set); this machine runs AArch64 EL0/EL1 only`;
  const mode = GUEST_MODES.get(p & 0xf);
  if (mode === undefined) return `${hex} has mode M[3:0] = 0b${(p & 0xf).toString(2).padStart(4, '0')}; a guest runs in EL0t, EL1t or EL1h`;
  const reserved = (p & ~PSTATE_KNOWN) >>> 0;
  if (reserved !== 0) return `${hex} sets reserved (RES0) bits 0x${reserved.toString(16)}`;
  return undefined;
}

const BLOB_MAGIC = 0x55504341_5650n; // "PVAPCU" marker, little-endian in the blob
const BLOB_VERSION = 1;

/** The JSON tail of the blob: the runtime's run state (pendingOn as decimal strings) and the GIC CPU interface. */
export interface VcpuStateExtras {
  power: VcpuPowerState;
  parked: boolean;
  pendingOn: { entry: string; context: string } | null;
  gicc: GiccState;
}

/** A vCPU's architectural registers as plain values. */
export interface Arm64CpuRegs {
  /** x0..x30, pc, pstate, sp_el0, sp_el1, fpcr, fpsr (37 values). */
  readonly core: readonly bigint[];
  /** V0..V31, 16 bytes each. */
  readonly vregs: readonly Uint8Array[];
  /** SAVED_SYSREGS order; a blob from an older build may hold fewer. */
  readonly sysregs: readonly bigint[];
}

export interface Arm64VcpuState {
  readonly cpu: Arm64CpuRegs;
  readonly run: VcpuRunState;
  readonly gicc: GiccState;
}

export function encodeVcpuBlob(s: Arm64VcpuState): Uint8Array {
  const { cpu, run } = s;
  const extras: VcpuStateExtras = {
    power: run.power,
    parked: run.parked,
    pendingOn: run.pendingOn ? { entry: BigInt(run.pendingOn.entry).toString(), context: BigInt(run.pendingOn.context).toString() } : null,
    gicc: s.gicc,
  };
  const json = Buffer.from(JSON.stringify(extras));
  const nSys = cpu.sysregs.length;
  const fixed = 16 + 37 * 8 + 32 * 16 + nSys * 8;
  const out = Buffer.alloc(fixed + 4 + json.length);
  out.writeBigUInt64LE(BLOB_MAGIC, 0);
  out.writeUInt32LE(BLOB_VERSION, 8);
  out.writeUInt32LE(nSys, 12);
  let o = 16;
  for (const v of cpu.core) {
    out.writeBigUInt64LE(v, o);
    o += 8;
  }
  for (const v of cpu.vregs) {
    out.set(v, o);
    o += 16;
  }
  for (const v of cpu.sysregs) {
    out.writeBigUInt64LE(v, o);
    o += 8;
  }
  out.writeUInt32LE(json.length, o);
  json.copy(out, o + 4);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * Parses and validates a vCPU blob without applying it (restore checks every blob before it
 * changes anything). Throws VcpuStateError naming what is wrong.
 */
export function parseVcpuBlob(blob: Uint8Array): Arm64VcpuState {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < 16 || b.readBigUInt64LE(0) !== BLOB_MAGIC) throw new VcpuStateError('not an arm64 vCPU state blob');
  const version = b.readUInt32LE(8);
  if (version !== BLOB_VERSION) throw new VcpuStateError(`unsupported arm64 vCPU state version ${version} (expected ${BLOB_VERSION})`);
  const nSys = b.readUInt32LE(12);
  if (nSys > SAVED_SYSREGS.length) {
    throw new VcpuStateError(`vCPU state has ${nSys} system registers; this build knows ${SAVED_SYSREGS.length}`);
  }
  const fixed = 16 + 37 * 8 + 32 * 16 + nSys * 8;
  if (b.length < fixed + 4) throw new VcpuStateError('truncated arm64 vCPU state');
  const jsonLen = b.readUInt32LE(fixed);
  if (b.length !== fixed + 4 + jsonLen) throw new VcpuStateError('arm64 vCPU state has the wrong length');
  let extras: VcpuStateExtras;
  try {
    extras = JSON.parse(b.subarray(fixed + 4).toString('utf8')) as VcpuStateExtras;
  } catch {
    throw new VcpuStateError('arm64 vCPU state: bad JSON tail');
  }
  const dec = (v: unknown): string => (typeof v === 'string' && /^[0-9]{1,20}$/.test(v) && BigInt(v) < 1n << 64n ? `0x${BigInt(v).toString(16)}` : String(v));
  const p = extras?.pendingOn;
  const candidate = extras && typeof extras === 'object' ? { power: extras.power, parked: extras.parked, pendingOn: p && typeof p === 'object' ? { entry: dec(p.entry), context: dec(p.context) } : p } : extras;
  let gicc: GiccState;
  try {
    validateVcpuRunState(candidate, 'arm64 vCPU run state');
    gicc = validateGiccState(extras.gicc);
  } catch (e) {
    throw new VcpuStateError(e instanceof StateError ? e.message : String(e));
  }
  let o = 16;
  const core = Array.from({ length: 37 }, (_, i) => b.readBigUInt64LE(o + 8 * i));
  o += 37 * 8;
  const vregs = Array.from({ length: 32 }, (_, i) => new Uint8Array(b.subarray(o + 16 * i, o + 16 * i + 16)));
  o += 32 * 16;
  const sysregs = Array.from({ length: nSys }, (_, i) => b.readBigUInt64LE(o + 8 * i));
  const bad = pstateProblem(core[32]!);
  if (bad) throw new VcpuStateError(`arm64 vCPU state: core entry 32 (pstate) ${bad}`);
  return { cpu: { core, vregs, sysregs }, run: candidate as VcpuRunState, gicc };
}

/** A vCPU's state as a plain value: what `RuntimeMachine.vcpuState` returns and checkPersistence checks. */
export interface Arm64VcpuStateValue {
  readonly run: VcpuRunState;
  /** x0..x30, pc, pstate, sp_el0, sp_el1, fpcr, fpsr as 0x-hex u64s. */
  readonly core: readonly string[];
  /** V0..V31, 16 bytes each as hex. */
  readonly vregs: readonly string[];
  /** SAVED_SYSREGS order (an older build's state may hold fewer), 0x-hex u64s. */
  readonly sysregs: readonly string[];
  readonly gicc: GiccState;
}

/** Validates a plain vCPU state (vm-superio's from_state); throws StateError naming `component` and the field. */
export function validateArm64VcpuState(value: unknown, component = 'arm64 vCPU state'): Arm64VcpuState {
  const r = new StateReader(component, value);
  const run = r.raw('run');
  validateVcpuRunState(run, `${component} run`);
  const core = r.u64List('core', 37);
  const bad = pstateProblem(core[32]!);
  if (bad) r.fail('core', `entry 32 (pstate) ${bad}`);
  const vregs = r.array('vregs', 32).map((x, i) => {
    if (typeof x !== 'string' || !/^[0-9a-f]{32}$/.test(x)) r.fail('vregs', `entry ${i} must be 16 bytes of lowercase hex, got ${JSON.stringify(x)}`);
    return new Uint8Array(Buffer.from(x as string, 'hex'));
  });
  const sysregs = r.u64List('sysregs', undefined, SAVED_SYSREGS.length);
  const gicc = validateGiccState(r.raw('gicc'), `${component} gicc`);
  return { cpu: { core, vregs, sysregs }, run: run as VcpuRunState, gicc };
}

/** The plain value of a parsed state. */
export function arm64VcpuStateValue(s: Arm64VcpuState): Arm64VcpuStateValue;
export function arm64VcpuStateValue(s: Omit<Arm64VcpuState, 'run'>): Omit<Arm64VcpuStateValue, 'run'>;
export function arm64VcpuStateValue(s: Omit<Arm64VcpuState, 'run'> & { run?: VcpuRunState }): Omit<Arm64VcpuStateValue, 'run'> & { run?: VcpuRunState } {
  return {
    ...(s.run ? { run: s.run } : {}),
    core: s.cpu.core.map(hex64),
    vregs: s.cpu.vregs.map(hexBytes),
    sysregs: s.cpu.sysregs.map(hex64),
    gicc: s.gicc,
  };
}

/** The arm64 vCPU state codec: plain value ⇄ blob (format 1, above), and the validating from_state. */
export const arm64VcpuCodec: VcpuStateCodec<Arm64VcpuStateValue, Arm64VcpuState> = Object.freeze({
  encode: (v: Arm64VcpuStateValue) => encodeVcpuBlob(validateArm64VcpuState(v)),
  decode: (blob: Uint8Array) => arm64VcpuStateValue(parseVcpuBlob(blob)),
  validate: validateArm64VcpuState,
});
