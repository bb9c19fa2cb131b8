/**
 * Register transfer for traps: how a call's registers move between the engine and `ctx.regs`,
 * prepared once per conduit when the router starts, from the core's RegisterTransfer (which
 * registers each call class reads and writes; the classes come from the calls' signatures).
 *
 * Two transports, chosen per vCPU:
 *  - the register window (ffi/unicorn.ts): the engine's x0..x30 as a typed array. The moves are
 *    generated code: one function per conduit, a `switch` over the transfer classes whose cases
 *    copy exactly the class's registers (unrolled), call the dispatcher, and copy its results
 *    back. One call target for every class, no loop, no allocation (~3 ns of copies for an
 *    SMCCC call with the default x0..x3 results, against ~15 ns with loops over register lists).
 *  - FFI batches: one uc_reg_read_batch / uc_reg_write_batch per mask, made once per distinct
 *    mask (a few exist), used by `Vcpu.route` when there is no window.
 */
import type { RegisterFile, RegisterTransfer, VcpuContext } from '@plugvisor/core';

/** The registers a mask names (bit n = xn), ascending. */
export function maskRegisters(mask: number): number[] {
  const out: number[] = [];
  for (let r = 0; r <= 30; r++) if (mask & (1 << r)) out.push(r);
  return out;
}

/**
 * One conduit's moves through a register window `w` (x_n at u32 [2n, 2n+1], as in a
 * RegisterFile `r`):
 *  - `route(w, r, ctx, k)`: the id register is already in `r`; loads class k's other read
 *    registers, dispatches, stores class k's write registers; returns what the dispatcher
 *    returned: 0, or for a preempted call (core continueCall) the bytes to rewind, after storing
 *    the registers the class reads too (a continuation rewrites argument registers);
 *  - `zero(r, k)`: zeroes the registers class k touches (read, write, id) in `r`.
 */
export interface WindowRoute {
  readonly route: (w: Uint32Array, r: Uint32Array, ctx: VcpuContext, k: number) => number;
  readonly zero: (r: Uint32Array, k: number) => void;
}

const move = (regs: readonly number[], from: string, to: string): string =>
  regs.map((n) => `${to}[${2 * n}] = ${from}[${2 * n}]; ${to}[${2 * n + 1}] = ${from}[${2 * n + 1}];`).join(' ');

/** Generates the WindowRoute of one conduit. Only integers reach the source text. */
export function compileWindowRoute(t: RegisterTransfer, dispatch: (vcpu: VcpuContext) => number): WindowRoute {
  const idBit = 1 << t.idRegister;
  const route = ['"use strict";', 'return function route(w, r, ctx, k) {', '  switch (k) {'];
  const zero = ['"use strict";', 'return function zero(r, k) {', '  switch (k) {'];
  t.readMasks.forEach((read, k) => {
    const write = t.writeMasks[k]!;
    if (!Number.isInteger(read) || !Number.isInteger(write)) throw new Error(`transfer class ${k}: bad masks`);
    const back = maskRegisters(read & ~write);
    route.push(
      `    case ${k}: { ${move(maskRegisters(read & ~idBit), 'w', 'r')} const back = dispatch(ctx); ${move(maskRegisters(write), 'r', 'w')} ` +
        `if (back !== 0) { ${move(back, 'r', 'w')} } return back; }`,
    );
    zero.push(`    case ${k}: ${maskRegisters(read | write | idBit).map((n) => `r[${2 * n}] = 0; r[${2 * n + 1}] = 0;`).join(' ')} return;`);
  });
  // A class number the transfer never returns cannot happen; refuse loudly rather than skip a call.
  route.push('  }', '  throw new Error(`no transfer class ${k}`);', '};');
  zero.push('  }', '};');
  return {
    route: new Function('dispatch', route.join('\n'))(dispatch) as WindowRoute['route'],
    zero: new Function(zero.join('\n'))() as WindowRoute['zero'],
  };
}
