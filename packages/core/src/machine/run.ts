import { PlugvisorError } from '../errors.js';
import type { SystemEvent } from './machine.js';

/**
 * What every machine backend's run loop speaks: how a run ends, the errors a machine raises,
 * and the run options. The CLI maps each outcome to its exit status without knowing which
 * backend ran the guest.
 */
export type RunResult =
  | { readonly kind: 'system-event'; readonly event: SystemEvent }
  | { readonly kind: 'fault'; readonly fault: GuestFault }
  | { readonly kind: 'hang'; readonly message: string }
  | { readonly kind: 'all-off' }
  | { readonly kind: 'paused'; readonly reason: string };

export interface RunOptions {
  /** Return { kind: 'paused' } after this many hypercall traps in this run() call. */
  pauseAfterTraps?: number;
}

export interface GuestFaultDetail {
  /** How the architecture names the program counter in messages (default `PC`; x86: `RIP`). */
  readonly register?: string;
  /** Backend-specific cause codes, e.g. KVM's exit reason and internal-error suberror. */
  readonly exitReason?: number;
  readonly suberror?: number;
}

/**
 * The guest did something the machine cannot continue from (an exception it cannot take, an
 * access outside RAM and devices, a triple fault). Names the vCPU, where, and why.
 */
export class GuestFault extends PlugvisorError {
  readonly exitReason: number | undefined;
  readonly suberror: number | undefined;
  constructor(
    readonly vcpu: number,
    readonly pc: bigint,
    readonly reason: string,
    detail: GuestFaultDetail = {},
  ) {
    super('GUEST_FAULT', `guest fault on vCPU ${vcpu} at ${detail.register ?? 'PC'} 0x${pc.toString(16)}: ${reason}`);
    this.exitReason = detail.exitReason;
    this.suberror = detail.suberror;
  }
}

/** Bad use of a machine's API by the host side (a VMM bug or bad operator input). */
export class MachineError extends PlugvisorError {
  constructor(message: string) {
    super('MACHINE', message);
  }
}

/** A vCPU snapshot blob was refused (bad magic, version, shape) or could not be applied. */
export class VcpuStateError extends PlugvisorError {
  constructor(message: string) {
    super('VCPU_STATE', message);
  }
}
