import { GuestMemoryError } from '../errors.js';
import type { ContinuationDecl } from '../abi/surface.js';
import { defineService, type ServicePlugin } from '../plugin/service.js';
import { continueCall } from '../router/continuation.js';
import type { VcpuContext } from '../machine/machine.js';
import { capabilityOf } from '../machine/capabilities.js';

/**
 * A test-only preemptible service, shaped like Xen's memory_op (xen/common/memory.c
 * do_memory_op): a multiplexed Xen-conduit hypercall whose command in x0 carries a start unit
 * above bit 6 (MEMOP_EXTENT_SHIFT), the command in the bits below.
 *
 *   WORK_OP (x16 = 0x31), x0 = cmd | start << 6
 *     PREEMPT_MARK (cmd 1): x1 = guest address of a byte array, x2 = n units (0..64). Adds 1 to
 *       byte i for every unit i from `start`, at most `budget` units per leg; then, with units
 *       left, continues with x0 = 1 | i << 6 (the vCPU re-executes the HVC); also after any unit
 *       while the machine says an interrupt is pending ('interrupt-pending'). Answers x0 = n, or,
 *       as Xen's reservation ops, the unit it stopped at (a bad start, an address outside RAM).
 *       Every unit done exactly once leaves every byte at its old value + 1.
 *     PREEMPT_PLAIN (cmd 2): x0 = 42; it uses no continuation, so a non-zero start gets -EINVAL
 *       without its handler running (Xen: `if ( unlikely(start_extent) ) return -EINVAL;`).
 *     any other cmd: -ENOSYS (the parent's own handler).
 *
 * Not part of any build; core tests and machine-arm64's guest test compose it.
 */
export const PREEMPT = Object.freeze({
  XEN_OP: 0x31,
  CMD_MARK: 1,
  CMD_PLAIN: 2,
  SHIFT: 6,
  MAX_UNITS: 64,
});

const EINVAL = 22;
const ENOSYS = 38;

export interface PreemptOptions {
  readonly name?: string;
  readonly version?: string;
  /** Units per leg (default 3). */
  readonly budget?: number;
  /** The continuation as declared: a different encoding for the restore tests (default: the start unit in x0[63:6]). */
  readonly continuation?: ContinuationDecl | null;
  /** Declare the continuation but never preempt (a build where the call finishes in one leg is another declaration). */
  readonly neverPreempt?: boolean;
  /** Called as a leg ends preempted, with the next start unit (a test raises an interrupt here). */
  readonly onPreempt?: (vcpu: VcpuContext, next: bigint) => void;
}

export function createPreemptService(options: PreemptOptions = {}): ServicePlugin<undefined> {
  const budget = options.budget ?? 3;
  const shift = BigInt(PREEMPT.SHIFT);
  const continuation: ContinuationDecl | null =
    options.continuation === undefined
      ? {
          call: 'PREEMPT_MARK',
          description: 'the next unit to do, in cmd above the command (as Xen MEMOP_EXTENT_SHIFT)',
          encoding: [{ name: 'start unit', reg: 0, shift: PREEMPT.SHIFT, width: 64 - PREEMPT.SHIFT }],
          otherSubOps: { reg: 0, value: -EINVAL },
        }
      : options.continuation;
  return defineService({
    name: options.name ?? '@plugvisor/test-preempt',
    version: options.version ?? '1.0.0',
    surface: {
      features: [{ name: 'preempt', default: 'opt-in', description: 'test-only preemptible work hypercall' }],
      calls: [
        {
          name: 'WORK_OP',
          conduit: 'xen',
          id: PREEMPT.XEN_OP,
          feature: 'preempt',
          signature: { args: [{ name: 'cmd', reg: 0, width: 'u64', kind: 'enum', values: [0, 3, 1n << 6n] }], results: [{ reg: 0 }] },
        },
        {
          name: 'PREEMPT_MARK',
          conduit: 'xen',
          id: PREEMPT.XEN_OP,
          feature: 'preempt',
          subOf: { call: 'WORK_OP', selector: 0, value: PREEMPT.CMD_MARK },
          signature: {
            args: [
              { name: 'start', reg: 0, width: 'u64', kind: 'enum', values: [PREEMPT.CMD_MARK, PREEMPT.CMD_MARK | (2 << PREEMPT.SHIFT), PREEMPT.CMD_MARK | (64 << PREEMPT.SHIFT)] },
              { name: 'units', reg: 1, width: 'u64', kind: 'pointer', size: PREEMPT.MAX_UNITS },
              { name: 'n', reg: 2, width: 'u32', kind: 'range', min: 0, max: PREEMPT.MAX_UNITS },
            ],
            results: [{ reg: 0 }],
          },
        },
        {
          name: 'PREEMPT_PLAIN',
          conduit: 'xen',
          id: PREEMPT.XEN_OP,
          feature: 'preempt',
          subOf: { call: 'WORK_OP', selector: 0, value: PREEMPT.CMD_PLAIN },
          signature: { args: [], results: [{ reg: 0 }] },
        },
      ],
      ...(continuation ? { continuations: [continuation] } : {}),
    },
    handlers: {
      WORK_OP(vcpu) {
        vcpu.regs.setSigned(0, -ENOSYS);
      },
      PREEMPT_PLAIN(vcpu) {
        vcpu.regs.setU32(0, 42);
      },
      PREEMPT_MARK(vcpu) {
        const regs = vcpu.regs;
        const start = regs.get(0) >> shift;
        const base = regs.get(1);
        const n = BigInt(regs.lo(2));
        if (n > BigInt(PREEMPT.MAX_UNITS) || start >= n) return regs.set(0, start);
        const byte = new Uint8Array(1);
        const pending = capabilityOf(vcpu.machine, 'interrupt-pending');
        let done = 0;
        for (let i = start; i < n; i++) {
          // Preempted after its budget, or as soon as an interrupt is pending once a unit is done
          // (Xen: hypercall_preempt_check() between extents).
          if (!options.neverPreempt && (done === budget || (done > 0 && pending?.pending(vcpu.index)))) {
            options.onPreempt?.(vcpu, i);
            return continueCall(vcpu, { x0: BigInt(PREEMPT.CMD_MARK) | (i << shift) });
          }
          try {
            vcpu.machine.memory.read(base + i, byte);
            byte[0] = (byte[0]! + 1) & 0xff;
            vcpu.machine.memory.write(base + i, byte);
          } catch (e) {
            if (!(e instanceof GuestMemoryError)) throw e;
            return regs.set(0, i);
          }
          done++;
        }
        regs.set(0, n);
      },
    },
  });
}
