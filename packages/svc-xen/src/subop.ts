import type { RegisterFile, ServiceBinding, Vm } from '@plugvisor/core';
import type { XenDomain } from './domain.js';

const NAME = '@plugvisor/svc-xen';

/** Writes a Xen result (0, a positive value, or a negative errno) to x0. */
export const ret = (r: RegisterFile, value: number): void => r.setSigned(0, value);

/**
 * Xen compares the whole of x16 with NR_hypercalls; the router keys on its low word. A set
 * high word is therefore an unknown hypercall (-ENOSYS), checked by every top-level handler.
 */
export function highBitsSet(r: RegisterFile): boolean {
  return r.hi(16) !== 0;
}

/** The svc-xen domain behind a binding of any package in the build. */
export function xenDomainOf(b: ServiceBinding<unknown> | Vm): XenDomain {
  const vm = 'vm' in b ? b.vm : b;
  const d = vm.stateOf<XenDomain>(NAME);
  d.sync();
  return d;
}
