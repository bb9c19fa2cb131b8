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
 */
import { StateError, validateVcpuRunState, type VcpuPowerState, type VcpuRunState } from '@plugvisor/core';
import { validateGiccState, type GiccState } from '../devices/gicc.js';
import { VcpuStateError } from '../errors.js';
import { SAVED_SYSREGS } from './sysregs.js';

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
  return { cpu: { core, vregs, sysregs }, run: candidate as VcpuRunState, gicc };
}
