/**
 * Moving a KVM uAPI buffer from one host's layout to another's (offsets: CPUID 0xD, Intel SDM Vol. 1 ch. 13; the
 * approach: QEMU's target/i386/xsave_helper.c).
 *
 * Intel and AMD put the same component at different standard offsets (opmask 0x440 vs 0x340,
 * PKRU 0xA80 vs 0x980), and KVM's buffer follows the host's CPUID 0xD. A raw blob saved on one
 * host is therefore garbage on the other; QEMU re-lays state out per register for this reason.
 * `convertXsave` copies component by component: every byte of every present component lands at
 * the destination's offset, so every register value is preserved.
 */
import { EXTENDED_OFFSET, LEGACY, HEADER, bitsOf, componentLabel, MASK } from './components.js';
import { checkBuffer } from './codec.js';
import { refuse } from './errors.js';
import type { HostCapabilities } from './host.js';

/** How component placement differs between two hosts, for the components of `mask`. */
export interface LayoutDifference {
  readonly bit: number;
  readonly component: string;
  /** `missing`: the destination cannot place it; `size`: sizes differ; `moved`: same size, other offset. */
  readonly kind: 'missing' | 'size' | 'moved';
  readonly message: string;
}

export function layoutDifferences(from: HostCapabilities, to: HostCapabilities, mask: bigint): LayoutDifference[] {
  const out: LayoutDifference[] = [];
  for (const n of bitsOf(mask & ~MASK.FPSSE)) {
    const a = from.components.get(n);
    const b = to.components.get(n);
    const component = componentLabel(n);
    if (!a) continue; // not the source's: nothing to move
    if (!b || b.kind !== a.kind) out.push({ bit: n, component, kind: 'missing', message: `${component}: host ${to.name} does not have it` });
    else if (a.size !== b.size) out.push({ bit: n, component, kind: 'size', message: `${component}: ${a.size} bytes on ${from.name}, ${b.size} on ${to.name}` });
    else if (a.offset !== b.offset) out.push({ bit: n, component, kind: 'moved', message: `${component}: offset 0x${a.offset?.toString(16)} on ${from.name}, 0x${b.offset?.toString(16)} on ${to.name}` });
  }
  return out;
}

/**
 * Re-lay a standard-format buffer saved on `from` out for `to`. Writes into `out` if given,
 * else into a new `to.uabiSize`-byte buffer. Refuses (XsaveError BAD_BUFFER or LAYOUT, naming
 * every component) a malformed buffer, or a component the destination lacks or sizes
 * differently: nothing is dropped silently.
 */
export function convertXsave(buf: Uint8Array, from: HostCapabilities, to: HostCapabilities, out?: Uint8Array): Uint8Array {
  const { xstateBv, problems, components } = checkBuffer(buf, from);
  refuse('BAD_BUFFER', `XSAVE buffer from host ${from.name}`, problems, components);
  const dest = out ?? new Uint8Array(to.uabiSize);
  const bad = layoutDifferences(from, to, xstateBv).filter((d) => d.kind !== 'moved');
  const fit: string[] = [];
  for (const n of bitsOf(xstateBv)) {
    const c = to.components.get(n);
    if (c?.offset !== undefined && c.offset + c.size > dest.length) fit.push(`${componentLabel(n)} at ${c.offset}+${c.size} does not fit the ${dest.length}-byte buffer`);
  }
  refuse(
    'LAYOUT',
    `cannot move XSAVE state from host ${from.name} to host ${to.name}`,
    [...bad.map((d) => d.message), ...fit, ...(dest.length < EXTENDED_OFFSET ? [`a ${dest.length}-byte buffer cannot hold the legacy area and header`] : [])],
    bad.map((d) => d.component),
  );

  dest.fill(0);
  dest.set(buf.subarray(0, LEGACY.XMM_END), 0); // x87, MXCSR, XMM: fixed places on every host
  dest.set(buf.subarray(HEADER.XSTATE_BV, HEADER.XSTATE_BV + 8), HEADER.XSTATE_BV); // XCOMP_BV and reserved stay 0
  for (const n of bitsOf(xstateBv & ~MASK.FPSSE)) {
    const a = from.components.get(n)!;
    const b = to.components.get(n)!;
    dest.set(buf.subarray(a.offset!, a.offset! + a.size), b.offset!);
  }
  return dest;
}

/** Would `convertXsave` move a buffer with these components without loss? (No buffer needed.) */
export const canConvert = (from: HostCapabilities, to: HostCapabilities, mask: bigint): boolean =>
  bitsOf(mask).every((n) => from.components.get(n)?.offset !== undefined) && layoutDifferences(from, to, mask).every((d) => d.kind === 'moved');
