/**
 * Continuations: a handler ends a call as "preempted: re-issue me with these argument
 * registers". This is Xen's hypercall_create_continuation on Arm (xen/arch/arm/domain.c): the
 * argument registers are rewritten and, for a 64-bit guest, `regs->pc -= 4` so the HVC executes
 * again; between the two legs the vCPU is at the HVC like any other instruction boundary, so a
 * pending interrupt is taken first (the point of preempting) and a snapshot taken there needs
 * nothing special: the PC and the rewritten registers are the whole state.
 *
 *   handlers: { WORK(vcpu, b) {
 *     … do up to a budget of units …
 *     if (left) return continueCall(vcpu, { x0: op | (done << 6n) });   // next leg starts at `done`
 *     vcpu.regs.setU32(0, 0);
 *   } }
 *
 * Every backend rewinds the same way: it says once, in `VcpuContext.trapLength`, how many bytes
 * the trapping instruction occupies before the PC it resumes at; the compiled dispatcher returns
 * that many bytes for a preempted call and 0 for a finished one, and the backend moves the PC
 * back by what it returns and writes back the registers the call reads as well as its results.
 * The call must declare its encoding (ServiceSurface.continuations): continueCall throws, inside
 * the handler, for a call without one or for registers the call does not read, and the
 * dispatcher contains it as a ServiceFailure naming the call. Only the cases of calls with a
 * declared continuation look for one after their hook, so other calls pay nothing.
 */
import type { VcpuContext } from '../machine/machine.js';
import { requestContinuation } from './router.js';

/** Registers a continuation rewrites: `{ x0: cmd, x1: arg }` (bigint or a non-negative integer). */
export type ContinuationRegisters = { readonly [reg: `x${number}`]: bigint | number };

/**
 * Ends the running call as preempted: the given argument registers are rewritten in
 * `vcpu.regs` and the vCPU re-executes the trapping instruction. Call it from the handler, as
 * its last act (return its result: `return continueCall(vcpu, { … })`).
 */
export function continueCall(vcpu: VcpuContext, registers: ContinuationRegisters): void {
  let mask = 0;
  for (const [name, value] of Object.entries(registers)) {
    const r = /^x([0-9]|[12][0-9]|30)$/.exec(name);
    if (!r) throw new Error(`continueCall: '${name}' is not a register x0..x30`);
    const n = Number(r[1]);
    vcpu.regs.set(n, typeof value === 'bigint' ? value : BigInt(value));
    mask |= 1 << n;
  }
  requestContinuation(mask);
}
