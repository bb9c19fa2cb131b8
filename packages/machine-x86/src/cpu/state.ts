/**
 * A vCPU's saved state: the blob each vCPU contributes to the core's snapshot stream.
 *
 *   "PVX86VCP" (8 bytes) | u32 format (2; 1 is read) | JSON (the core's encodeJson: bigints tagged)
 *
 * Everything in it is architectural or a fixed KVM uAPI struct, so it means the same on every
 * host: general registers and sregs as named fields; XSAVE decoded by @plugvisor/xsave into
 * per-component registers (`XsaveStateJson`) — never the raw kvm_xsave blob, whose component
 * offsets are the *source* host's (Intel SDM Vol. 1 §13.4.3: compacted offsets depend on
 * XCR0 | IA32_XSS); XCRs; MSRs as (index, value) pairs; the LAPIC register page,
 * kvm_vcpu_events and kvm_debugregs as bytes (hex); mp_state; and the machine runtime's run
 * state of the vCPU (power, parked, and a pending CPU_ON's entry and context: a snapshot taken
 * on the trap that called CPU_ON restores a vCPU that is still to be reset to that entry).
 * Format 1 blobs (power 'on' | 'off' only) are read as that power with nothing pending.
 */
import { StateError, decodeJson, encodeJson, validateVcpuRunState, type VcpuRunState } from '@plugvisor/core';
import { stateFromJson, stateToJson, type XsaveState, type XsaveStateJson } from '@plugvisor/xsave';
import { VcpuStateError } from '../errors.js';
import { REG_NAMES, SEGMENTS, type Regs, type Sregs, type Xcrs } from './structs.js';

export const VCPU_MAGIC = 'PVX86VCP';
export const VCPU_FORMAT = 2;

export interface VcpuState {
  /** The runtime's scheduler state of this vCPU (MachineRuntime.saveVcpu). */
  readonly run: VcpuRunState;
  readonly regs: Regs;
  readonly sregs: Sregs;
  readonly xsave: XsaveState;
  readonly xcrs: Xcrs;
  /** (index, value), in restore order (IA32_TSC before IA32_TSC_DEADLINE). */
  readonly msrs: readonly (readonly [number, bigint])[];
  /** KVM_GET_LAPIC's 1024-byte register page; absent without the in-kernel irqchip. */
  readonly lapic?: Uint8Array;
  readonly events: Uint8Array;
  readonly debugregs: Uint8Array;
  /** KVM_MP_STATE_*; absent without the in-kernel irqchip. */
  readonly mpState?: number;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export function encodeVcpuState(s: VcpuState): Uint8Array {
  const json = {
    run: s.run,
    regs: s.regs,
    sregs: s.sregs,
    xsave: stateToJson(s.xsave),
    xcrs: s.xcrs,
    msrs: s.msrs.map(([i, v]) => [i, v]),
    lapic: s.lapic ? hex(s.lapic) : null,
    events: hex(s.events),
    debugregs: hex(s.debugregs),
    mpState: s.mpState ?? null,
  };
  const head = Buffer.alloc(12);
  head.write(VCPU_MAGIC, 0, 'latin1');
  head.writeUInt32LE(VCPU_FORMAT, 8);
  return Buffer.concat([head, encodeJson(json)]);
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const isU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v < 1n << 64n;
const isInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

function bytes(v: unknown, len: number, what: string, problems: string[]): Uint8Array {
  if (typeof v !== 'string' || v.length !== len * 2 || !/^[0-9a-f]*$/.test(v)) {
    problems.push(`${what} is not ${len} bytes of hex`);
    return new Uint8Array(len);
  }
  return new Uint8Array(Buffer.from(v, 'hex'));
}

/** Parses and validates a vCPU blob; throws VcpuStateError naming every problem. */
export function decodeVcpuState(blob: Uint8Array): VcpuState {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < 12 || b.toString('latin1', 0, 8) !== VCPU_MAGIC) throw new VcpuStateError('not an x86 vCPU state (bad magic)');
  const format = b.readUInt32LE(8);
  if (format !== VCPU_FORMAT && format !== 1) throw new VcpuStateError(`x86 vCPU state format ${format} is not understood (this build reads 1 and ${VCPU_FORMAT})`);
  let j: unknown;
  try {
    j = decodeJson(b.subarray(12), 'VCPU');
  } catch (e) {
    throw new VcpuStateError((e as Error).message);
  }
  const problems: string[] = [];
  if (!isObj(j)) throw new VcpuStateError('x86 vCPU state is not an object');
  let run: VcpuRunState | undefined;
  if (format === 1) {
    if (j.power !== 'on' && j.power !== 'off') problems.push(`power '${String(j.power)}' is not on/off`);
    else run = { power: j.power, parked: false, pendingOn: null };
  } else {
    try {
      validateVcpuRunState(j.run, 'run');
      run = j.run as VcpuRunState;
    } catch (e) {
      problems.push(e instanceof StateError ? e.message : String(e));
    }
  }
  const regs = j.regs as Regs;
  if (!isObj(regs) || !REG_NAMES.every((n) => isU64(regs[n]))) problems.push('regs: not 18 u64 registers');
  const sregs = j.sregs as Sregs;
  if (!isObj(sregs)) problems.push('sregs missing');
  else {
    for (const n of SEGMENTS) {
      const s = sregs[n] as unknown as Record<string, unknown>;
      if (!isObj(s) || !isU64(s.base) || !isInt(s.limit, 0xffff_ffff) || !isInt(s.selector, 0xffff)) problems.push(`sregs.${n} is malformed`);
    }
    for (const k of ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const) if (!isU64(sregs[k])) problems.push(`sregs.${k} is not a u64`);
    if (!isObj(sregs.gdt) || !isObj(sregs.idt)) problems.push('sregs gdt/idt malformed');
    if (!Array.isArray(sregs.interruptBitmap) || sregs.interruptBitmap.length !== 4 || !sregs.interruptBitmap.every(isU64)) problems.push('sregs.interruptBitmap is not 4 u64');
  }
  let xsave: XsaveState | undefined;
  try {
    xsave = stateFromJson(j.xsave as XsaveStateJson);
  } catch (e) {
    problems.push(`xsave: ${(e as Error).message}`);
  }
  const xcrs = j.xcrs as Xcrs;
  if (!isObj(xcrs) || !isInt(xcrs.nrXcrs, 16) || !Array.isArray(xcrs.xcrs) || !xcrs.xcrs.every((x) => isObj(x) && isInt(x.xcr, 0xffff_ffff) && isU64(x.value))) problems.push('xcrs malformed');
  const msrs = j.msrs as [number, bigint][];
  if (!Array.isArray(msrs) || !msrs.every((m) => Array.isArray(m) && m.length === 2 && isInt(m[0], 0xffff_ffff) && isU64(m[1]))) problems.push('msrs: not a list of (index, u64)');
  const lapic = j.lapic === null ? undefined : bytes(j.lapic, 1024, 'lapic', problems);
  const events = bytes(j.events, 64, 'events', problems);
  const debugregs = bytes(j.debugregs, 128, 'debugregs', problems);
  if (j.mpState !== null && !isInt(j.mpState, 16)) problems.push(`mpState ${String(j.mpState)} is not a KVM_MP_STATE`);
  if (problems.length) throw new VcpuStateError(`x86 vCPU state refused:\n- ${problems.join('\n- ')}`);
  return {
    run: run!,
    regs,
    sregs,
    xsave: xsave!,
    xcrs,
    msrs: msrs.map(([i, v]) => [i, v] as const),
    ...(lapic ? { lapic } : {}),
    events,
    debugregs,
    ...(j.mpState !== null ? { mpState: j.mpState as number } : {}),
  };
}
