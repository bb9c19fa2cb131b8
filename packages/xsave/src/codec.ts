/**
 * The KVM uAPI XSAVE buffer (KVM_GET_XSAVE/KVM_GET_XSAVE2/KVM_SET_XSAVE) in the standard
 * format, decoded into per-component register values and encoded back, at a given host's
 * CPUID 0xD offsets (layout: Intel SDM Vol. 1 ch. 13, `struct xregs_state` in arch/x86/include/asm/fpu/types.h).
 *
 * Rules taken from Linux (xstate.c __copy_xstate_to_uabi_buf / copy_uabi_to_xstate):
 * - a component whose XSTATE_BV bit is clear is in its init state: it is absent from
 *   `components`, and encoding writes its init image (x87: FCW 0x37F; everything else zero);
 * - MXCSR is shared by SSE and AVX and KVM writes it whenever either is live, so it is a field
 *   of the state, decoded and encoded regardless of the bits;
 * - XCOMP_BV must be 0 and the 48 reserved header bytes must be zero in the uAPI format;
 * - bytes 416-511 (padding, sw_reserved) carry nothing KVM reads; encoding writes zeros;
 * - architecturally reserved bytes inside a component (the high 6 bytes of each ST slot, the
 *   byte after FTW, PKRU's upper half, BNDCSR's padding, TILECFG bytes 2-15) are not
 *   registers: decoding ignores them and encoding writes zeros.
 */
import {
  EXTENDED_OFFSET,
  FCW_INIT,
  HEADER,
  LEGACY,
  MXCSR_DEFAULT,
  bit,
  bitsOf,
  componentInfo,
  componentLabel,
  hex64,
  type ComponentKey,
} from './components.js';
import { refuse } from './errors.js';
import type { HostCapabilities, HostComponent } from './host.js';

/** x87 FPU (component 0, legacy bytes 0-159 minus MXCSR). */
export interface X87Registers {
  fcw: number;
  fsw: number;
  /** Abridged tag word: one bit per register, 1 = valid (FXSAVE format). */
  ftw: number;
  fop: number;
  /** 64-bit FIP (or FCS:FIP in 32-bit form; the 8 bytes are kept whole). */
  fip: bigint;
  fdp: bigint;
  /** ST0-ST7 / MM0-MM7: eight 10-byte (80-bit) values. */
  st: Uint8Array[];
}
/** SSE (component 1): XMM0-15, 16 bytes each. */
export interface SseRegisters {
  xmm: Uint8Array[];
}
/** AVX (component 2): bits 255:128 of YMM0-15, 16 bytes each. */
export interface AvxRegisters {
  ymmHi: Uint8Array[];
}
/** MPX BND0-3 (component 3): lower and upper bound, u64 each. */
export interface BndregsRegisters {
  bnd: { lower: bigint; upper: bigint }[];
}
/** MPX BNDCFGU and BNDSTATUS (component 4). */
export interface BndcsrRegisters {
  bndcfgu: bigint;
  bndstatus: bigint;
}
/** AVX-512 k0-k7 (component 5). */
export interface OpmaskRegisters {
  k: bigint[];
}
/** AVX-512 bits 511:256 of ZMM0-15 (component 6), 32 bytes each. */
export interface ZmmHi256Registers {
  zmmHi: Uint8Array[];
}
/** AVX-512 ZMM16-31 (component 7), 64 bytes each. */
export interface Hi16ZmmRegisters {
  zmm: Uint8Array[];
}
/** PKRU (component 9). */
export interface PkruRegisters {
  pkru: number;
}
/** AMX TILECFG (component 17): palette, start row, 16 × colsb (u16), 16 × rows (u8). */
export interface XtileCfgRegisters {
  palette: number;
  startRow: number;
  colsb: number[];
  rows: number[];
}
/** AMX TMM0-7 (component 18), 1024 bytes each. */
export interface XtileDataRegisters {
  tmm: Uint8Array[];
}
/** APX R16-R31 (component 19). */
export interface ApxRegisters {
  egpr: bigint[];
}

export interface XsaveComponents {
  x87?: X87Registers;
  sse?: SseRegisters;
  avx?: AvxRegisters;
  bndregs?: BndregsRegisters;
  bndcsr?: BndcsrRegisters;
  opmask?: OpmaskRegisters;
  zmmHi256?: ZmmHi256Registers;
  hi16Zmm?: Hi16ZmmRegisters;
  pkru?: PkruRegisters;
  xtileCfg?: XtileCfgRegisters;
  xtileData?: XtileDataRegisters;
  apx?: ApxRegisters;
  /** Components without a register model (e.g. AMD LWP), by bit: their bytes as saved. */
  opaque?: { [bit: number]: Uint8Array };
}

/**
 * One vCPU's XSAVE state, independent of any host's layout. `components` holds exactly the
 * components whose bit is set in `xstateBv`; every other user component is in its init state.
 */
export interface XsaveState {
  xstateBv: bigint;
  mxcsr: number;
  mxcsrMask: number;
  components: XsaveComponents;
}

/** How one component's registers sit in its bytes. Offsets are relative to the component. */
interface RegisterCodec<V> {
  decode(dv: DataView, bytes: Uint8Array, at: number): V;
  encode(v: V, dv: DataView, bytes: Uint8Array, at: number): void;
  /** Shape problems of a value (from JSON or a caller), empty if fine. */
  check(v: V): string[];
}

const vectors = (bytes: Uint8Array, at: number, count: number, width: number, stride = width): Uint8Array[] => {
  const out = new Array<Uint8Array>(count);
  for (let i = 0; i < count; i++) out[i] = bytes.slice(at + i * stride, at + i * stride + width);
  return out;
};
const putVectors = (vs: readonly Uint8Array[], bytes: Uint8Array, at: number, stride: number): void => {
  for (let i = 0; i < vs.length; i++) bytes.set(vs[i]!, at + i * stride);
};
const checkVectors = (what: string, vs: unknown, count: number, width: number): string[] =>
  Array.isArray(vs) && vs.length === count && vs.every((v) => v instanceof Uint8Array && v.length === width)
    ? []
    : [`${what} must be ${count} byte arrays of ${width} bytes`];
const u64s = (dv: DataView, at: number, count: number): bigint[] => {
  const out = new Array<bigint>(count);
  for (let i = 0; i < count; i++) out[i] = dv.getBigUint64(at + 8 * i, true);
  return out;
};
const isU = (v: unknown, bits: number): boolean =>
  bits === 64 ? typeof v === 'bigint' && v >= 0n && v < 1n << 64n : typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** bits;
const checkU64s = (what: string, vs: unknown, count: number): string[] =>
  Array.isArray(vs) && vs.length === count && vs.every((v) => isU(v, 64)) ? [] : [`${what} must be ${count} unsigned 64-bit bigints`];
const checkFields = (v: object, spec: Record<string, number>): string[] =>
  Object.entries(spec).flatMap(([k, bits]) => (isU((v as Record<string, unknown>)[k], bits) ? [] : [`${k} must be an unsigned ${bits}-bit ${bits === 64 ? 'bigint' : 'integer'}`]));

const x87: RegisterCodec<X87Registers> = {
  decode: (dv, bytes, at) => ({
    fcw: dv.getUint16(at + LEGACY.FCW, true),
    fsw: dv.getUint16(at + LEGACY.FSW, true),
    ftw: dv.getUint8(at + LEGACY.FTW),
    fop: dv.getUint16(at + LEGACY.FOP, true),
    fip: dv.getBigUint64(at + LEGACY.FIP, true),
    fdp: dv.getBigUint64(at + LEGACY.FDP, true),
    st: vectors(bytes, at + LEGACY.ST, 8, 10, 16),
  }),
  encode: (v, dv, bytes, at) => {
    dv.setUint16(at + LEGACY.FCW, v.fcw, true);
    dv.setUint16(at + LEGACY.FSW, v.fsw, true);
    dv.setUint8(at + LEGACY.FTW, v.ftw);
    dv.setUint16(at + LEGACY.FOP, v.fop, true);
    dv.setBigUint64(at + LEGACY.FIP, v.fip, true);
    dv.setBigUint64(at + LEGACY.FDP, v.fdp, true);
    putVectors(v.st, bytes, at + LEGACY.ST, 16);
  },
  check: (v) => [...checkFields(v, { fcw: 16, fsw: 16, ftw: 8, fop: 16, fip: 64, fdp: 64 }), ...checkVectors('st', v.st, 8, 10)],
};

// SSE's "component" bytes start at 160 in the legacy region (the table's offset), so at = 160.
const sse: RegisterCodec<SseRegisters> = {
  decode: (_dv, bytes, at) => ({ xmm: vectors(bytes, at, 16, 16) }),
  encode: (v, _dv, bytes, at) => putVectors(v.xmm, bytes, at, 16),
  check: (v) => checkVectors('xmm', v.xmm, 16, 16),
};
const avx: RegisterCodec<AvxRegisters> = {
  decode: (_dv, bytes, at) => ({ ymmHi: vectors(bytes, at, 16, 16) }),
  encode: (v, _dv, bytes, at) => putVectors(v.ymmHi, bytes, at, 16),
  check: (v) => checkVectors('ymmHi', v.ymmHi, 16, 16),
};
const bndregs: RegisterCodec<BndregsRegisters> = {
  decode: (dv, _bytes, at) => ({
    bnd: [0, 1, 2, 3].map((i) => ({ lower: dv.getBigUint64(at + 16 * i, true), upper: dv.getBigUint64(at + 16 * i + 8, true) })),
  }),
  encode: (v, dv, _bytes, at) =>
    v.bnd.forEach((b, i) => {
      dv.setBigUint64(at + 16 * i, b.lower, true);
      dv.setBigUint64(at + 16 * i + 8, b.upper, true);
    }),
  check: (v) =>
    Array.isArray(v.bnd) && v.bnd.length === 4 && v.bnd.every((b) => b && isU(b.lower, 64) && isU(b.upper, 64))
      ? []
      : ['bnd must be 4 {lower, upper} pairs of unsigned 64-bit bigints'],
};
const bndcsr: RegisterCodec<BndcsrRegisters> = {
  decode: (dv, _bytes, at) => ({ bndcfgu: dv.getBigUint64(at, true), bndstatus: dv.getBigUint64(at + 8, true) }),
  encode: (v, dv, _bytes, at) => {
    dv.setBigUint64(at, v.bndcfgu, true);
    dv.setBigUint64(at + 8, v.bndstatus, true);
  },
  check: (v) => checkFields(v, { bndcfgu: 64, bndstatus: 64 }),
};
const opmask: RegisterCodec<OpmaskRegisters> = {
  decode: (dv, _bytes, at) => ({ k: u64s(dv, at, 8) }),
  encode: (v, dv, _bytes, at) => v.k.forEach((k, i) => dv.setBigUint64(at + 8 * i, k, true)),
  check: (v) => checkU64s('k', v.k, 8),
};
const zmmHi256: RegisterCodec<ZmmHi256Registers> = {
  decode: (_dv, bytes, at) => ({ zmmHi: vectors(bytes, at, 16, 32) }),
  encode: (v, _dv, bytes, at) => putVectors(v.zmmHi, bytes, at, 32),
  check: (v) => checkVectors('zmmHi', v.zmmHi, 16, 32),
};
const hi16Zmm: RegisterCodec<Hi16ZmmRegisters> = {
  decode: (_dv, bytes, at) => ({ zmm: vectors(bytes, at, 16, 64) }),
  encode: (v, _dv, bytes, at) => putVectors(v.zmm, bytes, at, 64),
  check: (v) => checkVectors('zmm', v.zmm, 16, 64),
};
const pkru: RegisterCodec<PkruRegisters> = {
  decode: (dv, _bytes, at) => ({ pkru: dv.getUint32(at, true) }),
  encode: (v, dv, _bytes, at) => dv.setUint32(at, v.pkru, true),
  check: (v) => checkFields(v, { pkru: 32 }),
};
const xtileCfg: RegisterCodec<XtileCfgRegisters> = {
  decode: (dv, bytes, at) => ({
    palette: bytes[at]!,
    startRow: bytes[at + 1]!,
    colsb: Array.from({ length: 16 }, (_, t) => dv.getUint16(at + 16 + 2 * t, true)),
    rows: Array.from(bytes.subarray(at + 48, at + 64)),
  }),
  encode: (v, dv, bytes, at) => {
    bytes[at] = v.palette;
    bytes[at + 1] = v.startRow;
    v.colsb.forEach((c, t) => dv.setUint16(at + 16 + 2 * t, c, true));
    bytes.set(v.rows, at + 48);
  },
  check: (v) => [
    ...checkFields(v, { palette: 8, startRow: 8 }),
    ...(Array.isArray(v.colsb) && v.colsb.length === 16 && v.colsb.every((c) => isU(c, 16)) ? [] : ['colsb must be 16 u16 values']),
    ...(Array.isArray(v.rows) && v.rows.length === 16 && v.rows.every((r) => isU(r, 8)) ? [] : ['rows must be 16 u8 values']),
  ],
};
const xtileData: RegisterCodec<XtileDataRegisters> = {
  decode: (_dv, bytes, at) => ({ tmm: vectors(bytes, at, 8, 1024) }),
  encode: (v, _dv, bytes, at) => putVectors(v.tmm, bytes, at, 1024),
  check: (v) => checkVectors('tmm', v.tmm, 8, 1024),
};
const apx: RegisterCodec<ApxRegisters> = {
  decode: (dv, _bytes, at) => ({ egpr: u64s(dv, at, 16) }),
  encode: (v, dv, _bytes, at) => v.egpr.forEach((r, i) => dv.setBigUint64(at + 8 * i, r, true)),
  check: (v) => checkU64s('egpr', v.egpr, 16),
};

type Codecs = { [K in ComponentKey]-?: RegisterCodec<NonNullable<XsaveComponents[K]>> };
const CODECS: Codecs = { x87, sse, avx, bndregs, bndcsr, opmask, zmmHi256, hi16Zmm, pkru, xtileCfg, xtileData, apx };

/** Read a component's value out of a state, whatever its kind (model or opaque). */
export function componentValue(state: XsaveState, n: number): unknown {
  const key = componentInfo(n).key;
  return key ? state.components[key] : state.components.opaque?.[n];
}

function placement(host: HostCapabilities, n: number): HostComponent | undefined {
  const c = host.components.get(n);
  return c && c.offset !== undefined ? c : undefined;
}

/** Header and placement checks shared by decode and convert: every problem, by component. */
export function checkBuffer(buf: Uint8Array, host: HostCapabilities): { xstateBv: bigint; problems: string[]; components: string[] } {
  const problems: string[] = [];
  const components: string[] = [];
  if (buf.length < EXTENDED_OFFSET) return { xstateBv: 0n, problems: [`buffer of ${buf.length} bytes is shorter than the legacy area and header (576)`], components };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const xstateBv = dv.getBigUint64(HEADER.XSTATE_BV, true);
  const xcompBv = dv.getBigUint64(HEADER.XCOMP_BV, true);
  if (xcompBv !== 0n) problems.push(`XCOMP_BV is ${hex64(xcompBv)}: the KVM uAPI buffer is always in the standard (uncompacted) format`);
  for (let i = 0; i < HEADER.RESERVED_SIZE; i++) {
    if (buf[HEADER.RESERVED + i] !== 0) {
      problems.push(`reserved header byte ${HEADER.RESERVED + i} is 0x${buf[HEADER.RESERVED + i]!.toString(16)}, must be 0`);
      break;
    }
  }
  for (const n of bitsOf(xstateBv)) {
    const c = placement(host, n);
    if (!c) {
      const sup = host.components.get(n)?.kind === 'supervisor' || componentInfo(n).kind === 'supervisor';
      problems.push(
        sup
          ? `XSTATE_BV has ${componentLabel(n)}, a supervisor component, which the uAPI buffer never carries`
          : `XSTATE_BV has ${componentLabel(n)}, which host ${host.name} does not lay out (no CPUID 0xD.${n})`,
      );
      components.push(componentLabel(n));
    } else if (c.offset! + c.size > buf.length) {
      problems.push(`${componentLabel(n)} at ${c.offset}+${c.size} lies beyond the ${buf.length}-byte buffer (use KVM_GET_XSAVE2's size, ${host.uabiSize})`);
      components.push(componentLabel(n));
    }
  }
  return { xstateBv, problems, components };
}

/**
 * Decode a standard-format buffer laid out with `host`'s CPUID 0xD offsets. Throws
 * XsaveError BAD_BUFFER naming every component or header field at fault.
 */
export function decodeXsave(buf: Uint8Array, host: HostCapabilities): XsaveState {
  const { xstateBv, problems, components: bad } = checkBuffer(buf, host);
  refuse('BAD_BUFFER', `XSAVE buffer from host ${host.name}`, problems, bad);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const components: XsaveComponents = {};
  for (const n of bitsOf(xstateBv)) {
    const c = placement(host, n)!;
    const key = componentInfo(n).key;
    if (key) (components as Record<string, unknown>)[key] = CODECS[key].decode(dv, buf, c.offset!);
    else (components.opaque ??= {})[n] = buf.slice(c.offset!, c.offset! + c.size);
  }
  return {
    xstateBv,
    mxcsr: dv.getUint32(LEGACY.MXCSR, true),
    mxcsrMask: dv.getUint32(LEGACY.MXCSR_MASK, true),
    components,
  };
}

/** Problems with a state's shape: missing or extra components, bad register values. */
export function checkState(state: XsaveState): { problems: string[]; components: string[] } {
  const problems: string[] = [];
  const components: string[] = [];
  if (!isU(state.xstateBv, 64)) return { problems: ['xstateBv must be an unsigned 64-bit bigint'], components };
  if (!isU(state.mxcsr, 32)) problems.push('mxcsr must be a u32');
  if (!isU(state.mxcsrMask, 32)) problems.push('mxcsrMask must be a u32');
  const seen = new Set<number>();
  for (const n of bitsOf(state.xstateBv)) {
    seen.add(n);
    const key = componentInfo(n).key;
    const v = componentValue(state, n);
    if (v === undefined) {
      problems.push(`${componentLabel(n)} is set in XSTATE_BV but the state has no value for it`);
      components.push(componentLabel(n));
      continue;
    }
    const shape = key ? CODECS[key].check(v as never) : v instanceof Uint8Array ? [] : ['must be a byte array'];
    for (const p of shape) {
      problems.push(`${componentLabel(n)}: ${p}`);
      components.push(componentLabel(n));
    }
  }
  for (const [n, info] of [...allKeys()]) {
    if (!seen.has(n) && state.components[info] !== undefined) {
      problems.push(`${componentLabel(n)} has a value but its XSTATE_BV bit is clear (it would be in its init state)`);
      components.push(componentLabel(n));
    }
  }
  for (const k of Object.keys(state.components.opaque ?? {})) {
    const n = Number(k);
    if (!seen.has(n)) {
      problems.push(`${componentLabel(n)} has opaque bytes but its XSTATE_BV bit is clear`);
      components.push(componentLabel(n));
    } else if (componentInfo(n).key) {
      problems.push(`${componentLabel(n)} has a register model; opaque bytes are not accepted for it`);
      components.push(componentLabel(n));
    }
  }
  return { problems, components };
}

function* allKeys(): Generator<[number, ComponentKey]> {
  for (let n = 0; n < 64; n++) {
    const key = componentInfo(n).key;
    if (key) yield [n, key];
  }
}

/**
 * Encode a state into the standard format at `host`'s offsets. Writes into `out` when given
 * (it must be at least as long as every present component needs; nothing is allocated then),
 * else into a new buffer of `host.uabiSize` bytes. Throws XsaveError naming every component
 * the host cannot place (LAYOUT) or whose value is malformed (BAD_BUFFER).
 */
export function encodeXsave(state: XsaveState, host: HostCapabilities, out?: Uint8Array): Uint8Array {
  const shape = checkState(state);
  refuse('BAD_BUFFER', 'XSAVE state', shape.problems, shape.components);
  const buf = out ?? new Uint8Array(host.uabiSize);
  const problems: string[] = [];
  const bad: string[] = [];
  for (const n of bitsOf(state.xstateBv)) {
    const c = placement(host, n);
    const opaque = componentInfo(n).key ? undefined : state.components.opaque?.[n];
    let problem: string | undefined;
    if (!c) problem = `${componentLabel(n)} has no standard-format place on host ${host.name}`;
    else if (c.offset! + c.size > buf.length) problem = `${componentLabel(n)} at ${c.offset}+${c.size} does not fit the ${buf.length}-byte buffer`;
    else if (opaque && opaque.length !== c.size) problem = `${componentLabel(n)} has ${opaque.length} bytes; host ${host.name} says ${c.size}`;
    if (problem) {
      problems.push(problem);
      bad.push(componentLabel(n));
    }
  }
  if (buf.length < EXTENDED_OFFSET) problems.push(`a ${buf.length}-byte buffer cannot hold the legacy area and header`);
  refuse('LAYOUT', `cannot lay XSAVE state out for host ${host.name}`, problems, bad);
  writeState(state, host, buf);
  return buf;
}

function writeState(state: XsaveState, host: HostCapabilities, buf: Uint8Array): void {
  buf.fill(0);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const c = state.components;
  if (c.x87) x87.encode(c.x87, dv, buf, 0);
  else dv.setUint16(LEGACY.FCW, FCW_INIT, true); // the init image; everything else is zero
  dv.setUint32(LEGACY.MXCSR, state.mxcsr, true);
  dv.setUint32(LEGACY.MXCSR_MASK, state.mxcsrMask, true);
  dv.setBigUint64(HEADER.XSTATE_BV, state.xstateBv, true);
  for (const n of bitsOf(state.xstateBv)) {
    const at = placement(host, n)!.offset!;
    const key = componentInfo(n).key;
    if (n === 0) continue; // written above
    if (key) CODECS[key].encode(c[key] as never, dv, buf, at);
    else buf.set(c.opaque![n]!, at);
  }
}

/** The state of a freshly created vCPU: XSTATE_BV = 0, MXCSR 0x1F80 (arch/x86/kernel/fpu/core.c; measured on an AMD EPYC family 19h model 11h host). */
export function initState(host?: HostCapabilities): XsaveState {
  return { xstateBv: 0n, mxcsr: MXCSR_DEFAULT, mxcsrMask: host?.mxcsrMask ?? 0xffff, components: {} };
}

/** A deep copy, so a caller can change one state without touching another. */
export function cloneState(s: XsaveState): XsaveState {
  const copy = (v: unknown): unknown =>
    v instanceof Uint8Array ? v.slice() : Array.isArray(v) ? v.map(copy) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copy(x)])) : v;
  return { xstateBv: s.xstateBv, mxcsr: s.mxcsr, mxcsrMask: s.mxcsrMask, components: copy(s.components) as XsaveComponents };
}

/** Is component `n`'s bit set? */
export const hasComponent = (state: XsaveState, n: number): boolean => (state.xstateBv & bit(n)) !== 0n;
