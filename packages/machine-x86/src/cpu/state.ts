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
import { StateError, StateReader, decodeJson, encodeJson, hexBytes, validateVcpuRunState, type VcpuRunState, type VcpuStateCodec } from '@plugvisor/core';
import { stateFromJson, stateToJson, type XsaveState, type XsaveStateJson } from '@plugvisor/xsave';
import { VcpuStateError } from '../errors.js';
import { REG_NAMES, SEGMENTS, type Regs, type Sregs, type Xcrs } from './structs.js';

export const VCPU_MAGIC = 'PVX86VCP';
export const VCPU_FORMAT = 2;

/** A vCPU's state decoded for KVM (what X86Vcpu.restore takes). */
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

/**
 * The same state as a plain value: exactly the JSON of a format-2 blob (u64s as bigints, which
 * the core's encodeJson tags; byte arrays as hex; XSAVE as @plugvisor/xsave's portable record).
 * What `RuntimeMachine.vcpuState` returns and the persistence contract checks.
 */
export interface X86VcpuStateValue {
  readonly run: VcpuRunState;
  readonly regs: Regs;
  readonly sregs: Sregs;
  readonly xsave: XsaveStateJson;
  readonly xcrs: Xcrs;
  readonly msrs: readonly (readonly [number, bigint])[];
  readonly lapic: string | null;
  readonly events: string;
  readonly debugregs: string;
  readonly mpState: number | null;
}

/** The plain value of a decoded state (`run` kept if present). */
export function x86VcpuStateValue(s: Omit<VcpuState, 'run'> & { run?: VcpuRunState }): Omit<X86VcpuStateValue, 'run'> & { run?: VcpuRunState } {
  return {
    ...(s.run ? { run: s.run } : {}),
    regs: s.regs,
    sregs: s.sregs,
    xsave: stateToJson(s.xsave),
    xcrs: s.xcrs,
    msrs: s.msrs.map(([i, v]) => [i, v] as const),
    lapic: s.lapic ? hexBytes(s.lapic) : null,
    events: hexBytes(s.events),
    debugregs: hexBytes(s.debugregs),
    mpState: s.mpState ?? null,
  };
}

/** Validates a plain vCPU state (vm-superio's from_state): throws StateError naming `component` and the field. */
export function validateX86VcpuState(value: unknown, component = 'x86 vCPU state'): VcpuState {
  const r = new StateReader(component, value);
  const run = r.raw('run');
  validateVcpuRunState(run, `${component} run`);
  const rr = r.object('regs');
  const regs = Object.fromEntries(REG_NAMES.map((n) => [n, rr.bigint(n)])) as unknown as Regs;
  const sr = r.object('sregs');
  for (const n of SEGMENTS) {
    const g = sr.object(n);
    g.bigint('base');
    g.int('limit', 0, 0xffff_ffff);
    g.int('selector', 0, 0xffff);
    for (const f of ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable']) g.int(f, 0, 0xff);
  }
  for (const n of ['gdt', 'idt']) {
    const t = sr.object(n);
    t.bigint('base');
    t.int('limit', 0, 0xffff);
  }
  for (const k of ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase']) sr.bigint(k);
  checkControlRegisters(sr);
  const bitmap = sr.array('interruptBitmap', 4);
  if (!bitmap.every((x) => typeof x === 'bigint' && x >= 0n && x < 1n << 64n)) sr.fail('interruptBitmap', 'is not 4 u64s');
  let xsave: XsaveState;
  try {
    xsave = stateFromJson(r.raw('xsave'));
  } catch (e) {
    r.fail('xsave', `is refused: ${(e as Error).message}`);
  }
  const xr = r.object('xcrs');
  const nrXcrs = xr.int('nrXcrs', 0, 16);
  if (xr.array('xcrs').length !== nrXcrs) xr.fail('xcrs', `holds ${xr.array('xcrs').length} entries; nrXcrs says ${nrXcrs}`);
  xr.int('flags', 0, 0xffff_ffff);
  xr.array('xcrs').forEach((x, i) => {
    if (!x || typeof x !== 'object' || !isInt((x as { xcr: unknown }).xcr, 0xffff_ffff) || !isU64((x as { value: unknown }).value)) xr.fail('xcrs', `entry ${i} is not { xcr, value: u64 }`);
    if ((x as { xcr: number }).xcr === 0) checkXcr0((x as { value: bigint }).value, xr);
  });
  const msrs = r.array('msrs') as [number, bigint][];
  msrs.forEach((m, i) => {
    if (!Array.isArray(m) || m.length !== 2 || !isInt(m[0], 0xffff_ffff) || !isU64(m[1])) r.fail('msrs', `entry ${i} is not (index, u64)`);
  });
  const lapic = r.raw('lapic') === null ? undefined : r.bytes('lapic', 1024);
  const events = r.bytes('events', 64);
  const debugregs = r.bytes('debugregs', 128);
  const mpState = r.raw('mpState') === null ? undefined : r.int('mpState', 0, 16);
  return {
    run: run as VcpuRunState,
    regs,
    sregs: r.raw('sregs') as Sregs,
    xsave: xsave!,
    xcrs: r.raw('xcrs') as Xcrs,
    msrs: msrs.map(([i, v]) => [i, v] as const),
    ...(lapic ? { lapic } : {}),
    events,
    debugregs,
    ...(mpState !== undefined ? { mpState } : {}),
  };
}

const CR0_PE = 1n;
const CR0_NW = 1n << 29n;
const CR0_CD = 1n << 30n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/**
 * The control-register combinations KVM_SET_SREGS refuses with EINVAL (Linux arch/x86/kvm/x86.c
 * kvm_is_valid_sregs and kvm_is_valid_cr0; Intel SDM vol. 3A 2.5 and 9.8.5): CR0 bits 63:32
 * set, NW without CD, PG without PE; long mode active (EFER.LME with CR0.PG) without CR4.PAE or
 * EFER.LMA; EFER.LMA or a 64-bit code segment outside long mode. Refused here, naming the
 * field, instead of by the ioctl after the snapshot was accepted. (CR4 and EFER reserved bits
 * depend on the host's CPUID: KVM still checks those.)
 */
function checkControlRegisters(sr: StateReader): void {
  const cr0 = sr.raw('cr0') as bigint;
  const cr4 = sr.raw('cr4') as bigint;
  const efer = sr.raw('efer') as bigint;
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  if (cr0 >> 32n) sr.fail('cr0', `${hex(cr0)} sets bits 63:32 (reserved)`);
  if (cr0 & CR0_NW && !(cr0 & CR0_CD)) sr.fail('cr0', `${hex(cr0)} sets NW without CD`);
  if (cr0 & CR0_PG && !(cr0 & CR0_PE)) sr.fail('cr0', `${hex(cr0)} sets PG without PE`);
  if (cr4 >> 32n) sr.fail('cr4', `${hex(cr4)} sets bits 63:32 (reserved)`);
  if (efer & EFER_LME && cr0 & CR0_PG) {
    if (!(cr4 & CR4_PAE)) sr.fail('cr4', `${hex(cr4)} lacks PAE while long mode is on (EFER.LME and CR0.PG)`);
    if (!(efer & EFER_LMA)) sr.fail('efer', `${hex(efer)} lacks LMA while long mode is on (EFER.LME and CR0.PG)`);
  } else {
    if (efer & EFER_LMA) sr.fail('efer', `${hex(efer)} sets LMA outside long mode (EFER.LME and CR0.PG not both set)`);
    const cs = sr.object('cs');
    if (cs.raw('l') !== 0) sr.fail('cs', 'is a 64-bit code segment (l = 1) outside long mode');
  }
  // no physical address is wider than 52 bits (SDM vol. 3A 4.1.4: MAXPHYADDR is at most 52)
  const cr3 = sr.raw('cr3') as bigint;
  if (cr3 >> 52n) sr.fail('cr3', `${hex(cr3)} is beyond the widest physical address (52 bits)`);
  // IA32_APIC_BASE: bits 0-7 and 9 reserved, the base below MAXPHYADDR (Linux arch/x86/kvm/lapic.c kvm_apic_set_base)
  const apicBase = sr.raw('apicBase') as bigint;
  if (apicBase & 0x2ffn || apicBase >> 52n) sr.fail('apicBase', `${hex(apicBase)} sets reserved bits`);
}

/** XCR0 as XSETBV accepts it (SDM vol. 1 13.3): x87 (bit 0) always set, AVX (bit 2) only with SSE (bit 1), bit 63 reserved. */
function checkXcr0(value: bigint, xr: StateReader): void {
  if (value >> 63n) xr.fail('xcrs', `XCR0 0x${value.toString(16)} sets bit 63 (reserved)`);
  if (!(value & 1n)) xr.fail('xcrs', `XCR0 0x${value.toString(16)} lacks x87 (bit 0), which is always set`);
  if (value & 4n && !(value & 2n)) xr.fail('xcrs', `XCR0 0x${value.toString(16)} enables AVX (bit 2) without SSE (bit 1)`);
}

const isU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v < 1n << 64n;
const isInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** The plain value as a format-2 blob (validated first: a value may come from anywhere). */
function encodeValue(v: X86VcpuStateValue): Uint8Array {
  validateX86VcpuState(v);
  return encodeRaw(v);
}

/** A format-2 blob of a value known to be valid (the live vCPU's own state). */
function encodeRaw(v: X86VcpuStateValue): Uint8Array {
  const head = Buffer.alloc(12);
  head.write(VCPU_MAGIC, 0, 'latin1');
  head.writeUInt32LE(VCPU_FORMAT, 8);
  return Buffer.concat([head, encodeJson(v)]);
}

/**
 * A blob of format 2 or 1 as the plain value (format 1 kept `power` 'on' | 'off' beside the
 * registers: read as that power, not parked, nothing pending). Refused fields throw StateError.
 */
function decodeValue(blob: Uint8Array): X86VcpuStateValue {
  const value = decodeRaw(blob);
  validateX86VcpuState(value);
  return value;
}

/** A blob's plain value, header checked and format 1 upgraded, fields not yet validated. */
function decodeRaw(blob: Uint8Array): X86VcpuStateValue {
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
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new VcpuStateError('x86 vCPU state is not an object');
  let value = j as Record<string, unknown>;
  if (format === 1) {
    const { power, ...rest } = value;
    if (power !== 'on' && power !== 'off') throw new StateError('x86 vCPU state (format 1)', 'power', `must be on or off, got ${JSON.stringify(power)}`);
    value = { run: { power, parked: false, pendingOn: null }, ...rest };
  }
  return value as unknown as X86VcpuStateValue;
}

/** The x86 vCPU state codec: plain value ⇄ blob (format 2; format 1 read), and the validating from_state. */
export const x86VcpuCodec: VcpuStateCodec<X86VcpuStateValue, VcpuState> = Object.freeze({
  encode: encodeValue,
  decode: decodeValue,
  validate: validateX86VcpuState,
});

/** The live vCPU's state as a blob (validated when it is read back, not when it is written). */
export function encodeVcpuState(s: VcpuState): Uint8Array {
  return encodeRaw(x86VcpuStateValue(s) as X86VcpuStateValue);
}

/** Parses and validates a vCPU blob, once; throws StateError naming the field (VcpuStateError for a bad header). */
export function decodeVcpuState(blob: Uint8Array): VcpuState {
  return validateX86VcpuState(decodeRaw(blob));
}
