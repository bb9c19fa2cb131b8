import { Conduits, type RegisterFile, type ServiceBinding, type VcpuContext, type Vm } from '@plugvisor/core';
import { XEN_ERRNO, xenSubOpId } from './abi.js';
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

/**
 * Forwards a multiplexed hypercall (`hypercall(cmd, arg)`) to the call declared for
 * (hypercall, cmd): x16's low word becomes the sub-op id for the nested dispatch and is put
 * back after. A sub-op nobody exposes to this VM gets the router's -ENOSYS.
 */
export function forwardSubOp(vm: Vm, domain: XenDomain, vcpu: VcpuContext, hypercall: number, cmd: number): void {
  const r = vcpu.regs;
  if (cmd > 0xffff) return ret(r, -XEN_ERRNO.ENOSYS);
  const saved = r.u32[32]!;
  r.u32[32] = xenSubOpId(hypercall, cmd);
  domain.forwarding = vcpu;
  try {
    vm.dispatch(Conduits.xen, vcpu);
  } finally {
    domain.forwarding = null;
    r.u32[32] = saved;
  }
}

/**
 * A sub-op handler's first line: true when this call came through `forwardSubOp` for this
 * vCPU. A guest that put a sub-op id in x16 itself gets -ENOSYS, as Xen gives for any
 * hypercall number past its table.
 */
export function enterSubOp(vm: Vm, vcpu: VcpuContext): boolean {
  const domain = vm.stateOf<XenDomain>(NAME);
  if (domain.forwarding !== vcpu) {
    ret(vcpu.regs, -XEN_ERRNO.ENOSYS);
    return false;
  }
  domain.forwarding = null;
  return true;
}

/** The svc-xen domain behind a binding of any package in the build. */
export function xenDomainOf(b: ServiceBinding<unknown> | Vm): XenDomain {
  const vm = 'vm' in b ? b.vm : b;
  const d = vm.stateOf<XenDomain>(NAME);
  d.sync();
  return d;
}
