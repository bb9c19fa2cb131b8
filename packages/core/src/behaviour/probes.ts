import type { CallDecl } from '../abi/surface.js';
import type { ArgDecl } from '../abi/signature.js';
import type { ConduitDefinition } from '../router/conduits.js';
import { PROBE_RAM_BASE, PROBE_RAM_SIZE } from './probe-machine.js';

/**
 * Probes: the inputs a call's behaviour is recorded for, generated from its signature. Each
 * probe is a replayable label — `x1=0x60 x2=0x0`, plus `id=0x…` for a call in a range,
 * `smc` for the SMC conduit, `@0x40001000+24=ff` for argument memory filled before the call —
 * so a transcript written by one build can be replayed on any other, whatever its signatures.
 *
 * Per call: every argument at its first (valid) value; declared argument-memory samples; the
 * first enumerated argument (a command, a selector) against each other argument's values while
 * small; then one argument at a time through its boundary and representative values (enumerated
 * values and invalid neighbours; range ends and one past them; u32 arguments with the upper half
 * of the register set; pointers inside RAM, at its last bytes, straddling its end, outside it);
 * argument memory filled with ones; the function id with the upper half of its register set; SMC.
 *
 * A sub-op (CallDecl.subOf) is probed as a guest reaches it: its parent's function id in the id
 * register and its selector value in the selector register, which every label then shows
 * (`x0=0xb x1=0x40001000` for Xen's EVTCHNOP_init_control); one more probe sets the selector's
 * upper half, which the router ignores (it compares the low 32 bits, a C `int cmd`).
 */

export interface Probe {
  readonly label: string;
  /** The function id placed in the conduit's id register. */
  readonly id: number;
  /** Registers set besides the id (the rest are zero). An entry for the id register replaces it whole. */
  readonly regs: ReadonlyArray<readonly [number, bigint]>;
  readonly smc: boolean;
  /** Argument memory set before the call: `size` bytes of `byte`, or `bytes` (a declared sample). */
  readonly fill?: { readonly gpa: bigint; readonly size: number; readonly byte: number; readonly bytes?: string };
}

/** At most this many probes per call: transcripts stay small and lint stays fast. */
export const MAX_PROBES_PER_CALL = 96;

const U32_MAX = 0xffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Garbage for the upper half of a u32 argument: a call that truncates must ignore it. */
const UPPER_GARBAGE = 0xa5a5_a5a5_0000_0000n;
const RAM_END = PROBE_RAM_BASE + BigInt(PROBE_RAM_SIZE);

const widthMax = (a: ArgDecl) => (a.width === 'u32' ? U32_MAX : U64_MAX);

/** An argument's probe values, the first one valid (the value other arguments are probed with). */
export function argValues(a: ArgDecl): bigint[] {
  const max = widthMax(a);
  const out: bigint[] = [];
  const add = (v: bigint) => {
    if (v >= 0n && v <= max && !out.includes(v)) out.push(v);
  };
  switch (a.kind) {
    case 'enum': {
      const vals = a.values.map((v) => BigInt(v));
      vals.forEach(add);
      const top = vals.reduce((x, y) => (y > x ? y : x), 0n);
      add(top + 1n);
      add(0n);
      add(max);
      break;
    }
    case 'range': {
      const lo = BigInt(a.min);
      const hi = BigInt(a.max);
      add(lo);
      add(hi);
      add((lo + hi) / 2n);
      add(lo - 1n);
      add(hi + 1n);
      add(max);
      break;
    }
    case 'pointer': {
      const size = BigInt(a.size);
      add(PROBE_RAM_BASE + 0x1000n); // a page inside RAM
      add(PROBE_RAM_BASE); // first byte of RAM
      add(RAM_END - size); // the last bytes of RAM
      add(RAM_END - size + 1n); // straddles the end of RAM
      add(RAM_END); // just past RAM
      add(0n);
      add(max);
      if ((a.align ?? 1) > 1) add(PROBE_RAM_BASE + 0x1000n + 1n);
      break;
    }
    case 'opaque':
      add(0n);
      add(1n);
      add(a.width === 'u32' ? 0x5a5a_5a5an : 0x5a5a_5a5a_5a5a_5a5an);
      add(max);
      break;
  }
  return out;
}

export const hexOf = (v: bigint): string => `0x${v.toString(16)}`;

function labelOf(p: Omit<Probe, 'label'>, isRange: boolean): string {
  const parts: string[] = [];
  if (isRange) parts.push(`id=${hexOf(BigInt(p.id >>> 0))}`);
  for (const [r, v] of [...p.regs].sort((x, y) => x[0] - y[0])) parts.push(`x${r}=${hexOf(v)}`);
  if (p.fill?.bytes !== undefined) parts.push(`@${hexOf(p.fill.gpa)}:${p.fill.bytes}`);
  else if (p.fill) parts.push(`@${hexOf(p.fill.gpa)}+${p.fill.size}=${p.fill.byte.toString(16).padStart(2, '0')}`);
  if (p.smc) parts.push('smc');
  return parts.length ? parts.join(' ') : '-';
}

/** The register that holds a conduit's function id (x0 for SMCCC, x16 for Xen). */
export const idRegister = (conduit: ConduitDefinition): number => conduit.functionIdWord >> 1;

/** Every probe for one call, at most MAX_PROBES_PER_CALL, in a fixed order. */
export function probesFor(call: CallDecl, conduit: ConduitDefinition): Probe[] {
  const args = call.signature?.args ?? [];
  const isRange = call.last !== undefined && call.last !== call.id;
  const ids = isRange ? [call.id, call.last!, Math.floor((call.id + call.last!) / 2)].map((x) => x >>> 0) : [call.id >>> 0];
  const values = args.map(argValues);
  const base = values.map((v) => v[0]!);
  const out = new Map<string, Probe>();
  const sub = call.subOf;
  const add = (id: number, vals: readonly bigint[], extra: Partial<Pick<Probe, 'smc' | 'fill'>> & { idReg?: bigint; selector?: bigint } = {}) => {
    if (out.size >= MAX_PROBES_PER_CALL) return;
    const regs: Array<readonly [number, bigint]> = args.map((a, i) => [a.reg, vals[i]!] as const);
    if (sub && !args.some((a) => a.reg === sub.selector)) regs.push([sub.selector, extra.selector ?? BigInt(sub.value >>> 0)]);
    if (extra.idReg !== undefined) regs.push([idRegister(conduit), extra.idReg]);
    const p = { id, regs, smc: extra.smc ?? false, ...(extra.fill ? { fill: extra.fill } : {}) };
    const label = labelOf(p, isRange);
    if (!out.has(label)) out.set(label, { ...p, label });
  };

  for (const id of ids) add(id, base);
  const id0 = ids[0]!;
  // Declared argument memory: each sample at the valid pointer (the calls' successful paths).
  args.forEach((a, i) => {
    if (a.kind !== 'pointer') return;
    for (const bytes of a.samples ?? []) add(id0, base, { fill: { gpa: base[i]!, size: bytes.length / 2, byte: 0, bytes } });
  });
  // The first enumerated argument (often a command or a selector) against every value of each
  // other argument, while that stays small: a multiplexed call's sub-commands each see edge inputs.
  const first = args.findIndex((a) => a.kind === 'enum');
  if (first >= 0) {
    args.forEach((a, j) => {
      // pointers: inside RAM, its first bytes, its last bytes, straddling its end
      const others = a.kind === 'pointer' ? values[j]!.slice(0, 4) : values[j]!;
      if (j === first || values[first]!.length * others.length > 64) return;
      for (const vi of values[first]!) for (const vj of others) add(id0, base.map((b, k) => (k === first ? vi : k === j ? vj : b)));
    });
    args.forEach((a, j) => {
      if (j === first || a.kind !== 'pointer') return;
      for (const vi of values[first]!.slice(0, 16)) for (const bytes of a.samples ?? []) add(id0, base.map((b, k) => (k === first ? vi : b)), { fill: { gpa: base[j]!, size: bytes.length / 2, byte: 0, bytes } });
    });
  }
  // One argument at a time through its values.
  args.forEach((a, i) => {
    for (const v of values[i]!.slice(1)) add(id0, base.map((b, k) => (k === i ? v : b)));
  });
  // u32 arguments: the same values with the upper half set, which the call must ignore.
  args.forEach((a, i) => {
    if (a.width !== 'u32') return;
    for (const v of values[i]!.slice(0, 2)) add(id0, base.map((b, k) => (k === i ? v | UPPER_GARBAGE : b)));
  });
  // Argument memory full of ones (every field at its maximum).
  args.forEach((a, i) => {
    if (a.kind !== 'pointer') return;
    const gpa = base[i]!;
    if (gpa >= PROBE_RAM_BASE && gpa + BigInt(a.size) <= RAM_END) add(id0, base, { fill: { gpa, size: a.size, byte: 0xff } });
  });
  // A sub-op's selector with the upper half of its register set (the router reads its low word).
  if (sub) add(id0, base, { selector: UPPER_GARBAGE | BigInt(sub.value >>> 0) });
  // The function id with the upper half of its register set (SMCCC reads w0 only).
  if (conduit.functionIdHighWord === undefined) add(id0, base, { idReg: UPPER_GARBAGE | BigInt(id0) });
  if (conduit.name === 'smccc') add(id0, base, { smc: true });
  return [...out.values()];
}

/** Parses a probe label back into a probe (the inverse of the label format above). */
export function parseProbe(label: string, call: CallDecl): Probe {
  let id = call.id >>> 0;
  const regs: Array<readonly [number, bigint]> = [];
  let smc = false;
  let fill: Probe['fill'];
  if (label !== '-') {
    for (const tok of label.split(' ')) {
      let m: RegExpExecArray | null;
      if (tok === 'smc') smc = true;
      else if ((m = /^id=(0x[0-9a-f]+)$/.exec(tok))) id = Number(BigInt(m[1]!));
      else if ((m = /^x(\d+)=(0x[0-9a-f]+)$/.exec(tok))) regs.push([Number(m[1]), BigInt(m[2]!)]);
      else if ((m = /^@(0x[0-9a-f]+)\+(\d+)=([0-9a-f]{2})$/.exec(tok))) fill = { gpa: BigInt(m[1]!), size: Number(m[2]), byte: parseInt(m[3]!, 16) };
      else if ((m = /^@(0x[0-9a-f]+):((?:[0-9a-f]{2})*)$/.exec(tok))) fill = { gpa: BigInt(m[1]!), size: m[2]!.length / 2, byte: 0, bytes: m[2]! };
      else throw new Error(`probe label '${label}': cannot read '${tok}'`);
    }
  }
  // A sub-op is reached through its selector: a label that does not set it selects this sub-op.
  const sub = call.subOf;
  if (sub && !regs.some(([r]) => r === sub.selector)) regs.push([sub.selector, BigInt(sub.value >>> 0)]);
  return { label, id, regs, smc, ...(fill ? { fill } : {}) };
}
