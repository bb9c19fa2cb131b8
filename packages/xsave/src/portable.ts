/**
 * A host-independent JSON form of XsaveState for the snapshot stream (the raw kvm_xsave
 * blob follows the source host's CPUID 0xD, so it is not a migration format; QEMU saves per
 * register too, target/i386/machine.c). Byte registers are lowercase hex strings
 * (little-endian memory order, as XSAVE stores them), 64-bit registers are "0x…" strings,
 * narrower registers are numbers. `stateFromJson` validates everything and refuses the whole
 * record (XsaveError BAD_BUFFER) on any problem.
 */
import type { ComponentKey } from './components.js';
import { bitsOf, componentInfo, componentLabel } from './components.js';
import { checkState, type XsaveComponents, type XsaveState } from './codec.js';
import { refuse } from './errors.js';

export interface XsaveStateJson {
  readonly format: 1;
  readonly xstateBv: string;
  readonly mxcsr: number;
  readonly mxcsrMask: number;
  /** Keyed by component name (`opmask`, `zmm_hi256`, …); opaque components by `bit<N>` → hex. */
  readonly components: { readonly [name: string]: unknown };
}

type Kind = 'n' | 'u64' | 'bytes' | 'u64[]' | 'bytes[]' | 'n[]' | 'bnd[]';
const SCHEMA: { [K in ComponentKey]: Record<string, Kind> } = {
  x87: { fcw: 'n', fsw: 'n', ftw: 'n', fop: 'n', fip: 'u64', fdp: 'u64', st: 'bytes[]' },
  sse: { xmm: 'bytes[]' },
  avx: { ymmHi: 'bytes[]' },
  bndregs: { bnd: 'bnd[]' },
  bndcsr: { bndcfgu: 'u64', bndstatus: 'u64' },
  opmask: { k: 'u64[]' },
  zmmHi256: { zmmHi: 'bytes[]' },
  hi16Zmm: { zmm: 'bytes[]' },
  pkru: { pkru: 'n' },
  xtileCfg: { palette: 'n', startRow: 'n', colsb: 'n[]', rows: 'n[]' },
  xtileData: { tmm: 'bytes[]' },
  apx: { egpr: 'u64[]' },
};

const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const u64 = (v: bigint): string => '0x' + v.toString(16);

function out(kind: Kind, v: unknown): unknown {
  switch (kind) {
    case 'n':
      return v;
    case 'u64':
      return u64(v as bigint);
    case 'bytes':
      return toHex(v as Uint8Array);
    case 'u64[]':
      return (v as bigint[]).map(u64);
    case 'bytes[]':
      return (v as Uint8Array[]).map(toHex);
    case 'n[]':
      return [...(v as number[])];
    case 'bnd[]':
      return (v as { lower: bigint; upper: bigint }[]).map((b) => ({ lower: u64(b.lower), upper: u64(b.upper) }));
  }
}

class Bad extends Error {}
const hexBytes = (s: unknown): Uint8Array => {
  if (typeof s !== 'string' || s.length % 2 || !/^[0-9a-f]*$/.test(s)) throw new Bad('not a lowercase hex byte string');
  return new Uint8Array(Buffer.from(s, 'hex'));
};
const hexU64 = (s: unknown): bigint => {
  if (typeof s !== 'string' || !/^0x[0-9a-f]{1,16}$/.test(s)) throw new Bad('not a 0x-prefixed 64-bit hex string');
  return BigInt(s);
};
const arr = (v: unknown): unknown[] => {
  if (!Array.isArray(v)) throw new Bad('not an array');
  return v;
};

function back(kind: Kind, v: unknown): unknown {
  switch (kind) {
    case 'n':
      return v; // range-checked by checkState
    case 'u64':
      return hexU64(v);
    case 'bytes':
      return hexBytes(v);
    case 'u64[]':
      return arr(v).map(hexU64);
    case 'bytes[]':
      return arr(v).map(hexBytes);
    case 'n[]':
      return [...arr(v)];
    case 'bnd[]':
      return arr(v).map((b) => ({ lower: hexU64((b as { lower: unknown })?.lower), upper: hexU64((b as { upper: unknown })?.upper) }));
  }
}

export function stateToJson(state: XsaveState): XsaveStateJson {
  const components: Record<string, unknown> = {};
  for (const n of bitsOf(state.xstateBv)) {
    const info = componentInfo(n);
    if (info.key) {
      const v = state.components[info.key] as unknown as Record<string, unknown>;
      components[info.name] = Object.fromEntries(Object.entries(SCHEMA[info.key]).map(([f, k]) => [f, out(k, v[f])]));
    } else {
      components[`bit${n}`] = toHex(state.components.opaque![n]!);
    }
  }
  return { format: 1, xstateBv: u64(state.xstateBv), mxcsr: state.mxcsr, mxcsrMask: state.mxcsrMask, components };
}

export function stateFromJson(json: unknown): XsaveState {
  const j = json as XsaveStateJson;
  const problems: string[] = [];
  const bad: string[] = [];
  if (!j || typeof j !== 'object' || j.format !== 1) refuse('BAD_BUFFER', 'XSAVE state record', ['is not a format-1 XSAVE state record']);
  let xstateBv = 0n;
  try {
    xstateBv = hexU64(j.xstateBv);
  } catch {
    refuse('BAD_BUFFER', 'XSAVE state record', [`xstateBv '${String(j.xstateBv)}' is not a 64-bit hex string`]);
  }
  const comps: XsaveComponents = {};
  const given = new Set(Object.keys(j.components ?? {}));
  for (const n of bitsOf(xstateBv)) {
    const info = componentInfo(n);
    const name = info.key ? info.name : `bit${n}`;
    given.delete(name);
    const raw = j.components?.[name];
    try {
      if (raw === undefined) throw new Bad('is set in xstateBv but missing');
      if (info.key) {
        if (!raw || typeof raw !== 'object') throw new Bad('is not an object');
        const value = Object.fromEntries(Object.entries(SCHEMA[info.key]).map(([f, k]) => {
          try {
            return [f, back(k, (raw as Record<string, unknown>)[f])];
          } catch (e) {
            throw new Bad(`${f}: ${(e as Error).message}`);
          }
        }));
        (comps as Record<string, unknown>)[info.key] = value;
      } else {
        (comps.opaque ??= {})[n] = hexBytes(raw);
      }
    } catch (e) {
      if (!(e instanceof Bad)) throw e;
      problems.push(`${componentLabel(n)}: ${e.message}`);
      bad.push(componentLabel(n));
    }
  }
  for (const name of given) problems.push(`component '${name}' is present but its XSTATE_BV bit is clear`);
  const state: XsaveState = { xstateBv, mxcsr: j.mxcsr, mxcsrMask: j.mxcsrMask, components: comps };
  if (!problems.length) {
    const shape = checkState(state);
    problems.push(...shape.problems);
    bad.push(...shape.components);
  }
  refuse('BAD_BUFFER', 'XSAVE state record', problems, bad);
  return state;
}
