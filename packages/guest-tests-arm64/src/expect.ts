/** Assertions shared by the test files. */
import { expect } from 'vitest';
import { probe, type Exposure } from './abi.js';
import type { CallResult } from './harness.js';

export const hex = (v: bigint) => `0x${v.toString(16)}`;
const show = (x: readonly bigint[]) => x.map(hex).join(' ');

/** x0..x3 as expected, and x4..x17 untouched (SMCCC 1.1: only the result registers change). */
export function expectCall(results: ReadonlyMap<string, CallResult>, name: string, want: readonly bigint[] | ((r: CallResult) => void)): CallResult {
  const r = results.get(name);
  expect(r, `no result for ${name}`).toBeDefined();
  if (typeof want === 'function') want(r!);
  else expect(show(r!.x), name).toBe(show(want));
  expect(r!.changed & ~0xf, `${name}: changed registers beyond x0..x3 (mask 0x${r!.changed.toString(16)})`).toBe(0);
  return r!;
}

/** Every probe call (abi.ts) answered as KVM answers it for exposure `e`. */
export function expectProbe(results: ReadonlyMap<string, CallResult>, e: Exposure, options: { prefix?: string; viaSmc?: boolean } = {}): void {
  const prefix = options.prefix ?? '';
  for (const c of probe(e)) {
    let want = c.expect;
    // via SMC the WORKAROUND ids are not default-allowed (arch/arm64/kvm/hypercalls.c): NOT_SUPPORTED, x1..x3 = 0
    if (options.viaSmc && c.name.startsWith('ARCH_WORKAROUND_')) want = [BigInt.asUintN(64, -1n), 0n, 0n, 0n];
    expectCall(results, prefix + c.name, want);
  }
}
