import { HookMap, SyncHook } from 'tapable';
import type { VcpuContext } from '../machine/machine.js';
import type { Vm } from '../vm.js';
import type { ServiceBinding } from './service.js';

/**
 * The build's hooks, created once and frozen (webpack's Compiler.hooks model): services tap
 * them in `apply`, nobody adds or replaces a hook. Taps happen while composing a build, never
 * on the hot path; tapable compiles each hook's call function the first time it runs.
 */
export interface HypervisorHooks {
  /** One hook per declared call name; the declaring service taps its handler here. */
  readonly call: HookMap<SyncHook<[VcpuContext, ServiceBinding<any>]>>;
  /** A VM was created (its ABI is configurable until first run). */
  readonly vmCreate: SyncHook<[Vm]>;
  /** The VM's first vCPU is about to run: its ABI is now frozen. */
  readonly firstRun: SyncHook<[Vm]>;
  /** A vCPU was reset (power-on, system reset). */
  readonly vcpuReset: SyncHook<[Vm, number]>;
  /** A snapshot of the VM is about to be taken (services settle their state). */
  readonly snapshotSave: SyncHook<[Vm]>;
  /** The VM was restored from a snapshot (all service state loaded). */
  readonly snapshotRestore: SyncHook<[Vm]>;
}

export function createHooks(): HypervisorHooks {
  return Object.freeze({
    call: new HookMap(() => new SyncHook<[VcpuContext, ServiceBinding<any>]>(['vcpu', 'binding'])),
    vmCreate: new SyncHook<[Vm]>(['vm']),
    firstRun: new SyncHook<[Vm]>(['vm']),
    vcpuReset: new SyncHook<[Vm, number]>(['vm', 'vcpu']),
    snapshotSave: new SyncHook<[Vm]>(['vm']),
    snapshotRestore: new SyncHook<[Vm]>(['vm']),
  });
}
