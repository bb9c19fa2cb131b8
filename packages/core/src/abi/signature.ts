/**
 * Call signatures: what a call reads and what it writes, as data. For a hypercall the values
 * it returns *are* the ABI, so a signature is what lets the core generate probes for a call,
 * record what it answers (its behaviour transcript), transfer only the registers it uses, and
 * check a service's discovery answers against what the VM really has.
 *
 * Registers are numbered as the conduit's register file: on arm64 `n` is xn (w0 is the low half
 * of x0). A call without a signature gets its conduit's default: no arguments, the conduit's
 * result registers, all deterministic (SMCCC_VERSION, TRNG_VERSION, ... need nothing more).
 */

/**
 * How much of an argument register the call reads. `u32`: only the low half (SMC32 calls, and
 * SMC64 calls that take a 32-bit value); probes also set the upper half to garbage, so a change
 * in how a call truncates is seen. `u64`: the whole register.
 */
export type ArgWidth = 'u32' | 'u64';

interface ArgBase {
  /** Short name people read in transcripts and reports (`counter`, `target_cpu`). */
  readonly name: string;
  /** Register number (xN). */
  readonly reg: number;
  readonly width: ArgWidth;
}

/** One of a set of meaningful values (a function id, a counter selector); probes also try invalid ones. */
export interface EnumArg extends ArgBase {
  readonly kind: 'enum';
  readonly values: readonly (number | bigint)[];
}

/** An integer in [min, max]; probes try both ends, one past each, and a middle value. */
export interface RangeArg extends ArgBase {
  readonly kind: 'range';
  readonly min: number | bigint;
  readonly max: number | bigint;
}

/** A guest-physical address of `size` bytes the call reads or writes. */
export interface PointerArg extends ArgBase {
  readonly kind: 'pointer';
  readonly size: number;
  /** Alignment the call requires, if any (probes try one misaligned address). */
  readonly align?: number;
  /**
   * Meaningful contents of the memory it points to (hex bytes, at most `size`): a probe runs with
   * each, so the transcript records the call's successful paths too, not only zeros and ones.
   */
  readonly samples?: readonly string[];
}

/** Any value (an entry address, a cookie): probes try 0, 1, a pattern and all-ones. */
export interface OpaqueArg extends ArgBase {
  readonly kind: 'opaque';
}

export type ArgDecl = EnumArg | RangeArg | PointerArg | OpaqueArg;

/**
 * What a result register holds. `deterministic`: a function of the inputs, the VM's ABI and its
 * state. The others come from outside the VM and are recorded by property, not value:
 * `random` (entropy: the transcript keeps which bits may be set), `time` (clocks), `host`
 * (depends on the host machine).
 */
export type ResultKind = 'deterministic' | 'random' | 'time' | 'host';

export interface ResultDecl {
  readonly reg: number;
  readonly name?: string;
  readonly kind?: ResultKind;
}

/**
 * A discovery call answers "is that supported?" for other calls; the conformance kit checks the
 * answer against what the VM really has exposed.
 *  - `query`: the function id asked about is in register `arg` (u32); x0 ≥ 0 means supported.
 *    `mustAnswer` lists ids for which an exposed call must be reported as supported; for every
 *    other id a "supported" answer is checked to be true (never claim an unexposed call).
 *  - `bitmap`: bit n of the result words (32 bits each, in `words` order) says whether the call
 *    `base + n` is exposed (KVM_FEATURES).
 */
export type DiscoveryDecl =
  | { readonly kind: 'query'; readonly arg: number; readonly mustAnswer?: readonly number[] }
  | { readonly kind: 'bitmap'; readonly base: number; readonly words: readonly number[] };

export interface CallSignature {
  readonly args?: readonly ArgDecl[];
  /** Registers the call writes. Default: the conduit's result registers. */
  readonly results?: readonly ResultDecl[];
  readonly discovery?: DiscoveryDecl;
}

/** Bitmask of a set of register numbers (bit n = xn); registers above 31 are not representable. */
export const registerMask = (regs: Iterable<number>): number => {
  let m = 0;
  for (const r of regs) m |= 1 << r;
  return m >>> 0;
};

/** Problems with a signature as declared (names the call); empty = well formed. */
export function checkSignature(call: string, sig: CallSignature | undefined, reserved: readonly number[]): string[] {
  if (!sig) return [];
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const a of sig.args ?? []) {
    if (!Number.isInteger(a.reg) || a.reg < 0 || a.reg > 30) problems.push(`call ${call}: argument ${a.name} is in register ${a.reg} (x0..x30)`);
    if (seen.has(a.reg)) problems.push(`call ${call}: two arguments in x${a.reg}`);
    if (reserved.includes(a.reg) && a.kind !== 'enum') problems.push(`call ${call}: argument ${a.name} is in x${a.reg}, which holds the function id`);
    seen.add(a.reg);
    if (a.kind === 'enum' && a.values.length === 0) problems.push(`call ${call}: argument ${a.name} has no values`);
    if (a.kind === 'range' && BigInt(a.min) > BigInt(a.max)) problems.push(`call ${call}: argument ${a.name} has min > max`);
    if (a.kind === 'pointer' && !(a.size > 0)) problems.push(`call ${call}: pointer ${a.name} needs a size`);
    if (a.kind === 'pointer') {
      for (const x of a.samples ?? []) {
        if (!/^([0-9a-f]{2})*$/.test(x) || x.length / 2 > a.size) problems.push(`call ${call}: pointer ${a.name} sample '${x}' is not lower-case hex of at most ${a.size} bytes`);
      }
    }
  }
  const d = sig.discovery;
  if (d?.kind === 'query' && !(sig.args ?? []).some((a) => a.reg === d.arg)) {
    problems.push(`call ${call}: discovers the id in x${d.arg} but declares no argument there`);
  }
  const out = new Set<number>();
  for (const r of sig.results ?? []) {
    if (!Number.isInteger(r.reg) || r.reg < 0 || r.reg > 30) problems.push(`call ${call}: result in register ${r.reg} (x0..x30)`);
    if (out.has(r.reg)) problems.push(`call ${call}: result x${r.reg} declared twice`);
    out.add(r.reg);
  }
  return problems;
}

const num = (v: number | bigint) => {
  const b = BigInt(v);
  return b > 9n ? `0x${b.toString(16)}` : b.toString();
};

/**
 * One line for people (`plugvisor abi`, the README tables): `(n: x1 u32 0..96) → x0, x1..x3 random`.
 * `defaultResults` names the conduit's result registers, used when the call declares none.
 */
export function describeSignature(sig: CallSignature | undefined, defaultResults: readonly number[]): string {
  const args = (sig?.args ?? []).map((a) => {
    const what =
      a.kind === 'enum'
        ? `{${a.values.length > 8 ? `${a.values.slice(0, 6).map(num).join(', ')}, … ${a.values.length} values` : a.values.map(num).join(', ')}}`
        : a.kind === 'range'
          ? `${num(a.min)}..${num(a.max)}`
          : a.kind === 'pointer'
            ? `*${a.size}B`
            : 'any';
    return `${a.name}: x${a.reg} ${a.width} ${what}`;
  });
  const results = sig?.results ?? defaultResults.map((reg) => ({ reg, kind: 'deterministic' as const }));
  const outs = results.map((r) => `x${r.reg}${r.kind && r.kind !== 'deterministic' ? ` ${r.kind}` : ''}`);
  const disc = sig?.discovery ? `; discovers ${sig.discovery.kind === 'query' ? `the id in x${sig.discovery.arg}` : `calls 0x${(sig.discovery.base >>> 0).toString(16)}+n by bit`}` : '';
  return `(${args.join(', ')}) → ${outs.length ? outs.join(', ') : 'nothing'}${disc}`;
}
