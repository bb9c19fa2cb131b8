import { recordOf, type AbiRecord } from './abi/record.js';
import type { VmAbi } from './abi/vm-abi.js';
import { PlugvisorError, ServiceFailure, type ServiceFailurePhase } from './errors.js';
import type { SyncHook } from 'tapable';
import type { Hypervisor } from './hypervisor.js';
import type { Machine, VcpuContext } from './machine/machine.js';
import type { ServiceBinding, ServicePlugin, StateValue } from './plugin/service.js';
import type { ConduitDefinition } from './router/conduits.js';
import { DispatchTable, inService, type RegisterTransfer } from './router/router.js';

/** A service's saved per-VM state, as it travels in a snapshot. */
export interface SavedServiceState {
  readonly service: string;
  readonly stateId: string;
  readonly schema: number;
  readonly data: StateValue;
}

/**
 * One virtual machine as the core sees it: its ABI, each service's per-VM state, and the
 * dispatch table compiled at first run. The machine backend owns vCPUs and RAM and attaches
 * itself; the VM never reaches into the backend except through the Machine interface.
 */
export class Vm {
  private readonly bindings = new Map<string, ServiceBinding<any>>();
  private table: DispatchTable | undefined;
  private attached: Machine | undefined;

  /** @internal use Hypervisor.createVm / restore */
  constructor(
    readonly hv: Hypervisor,
    readonly abi: VmAbi,
  ) {
    for (const service of hv.services) {
      const binding: ServiceBinding<any> = { vm: this, service, state: undefined };
      this.bindings.set(service.name, binding);
    }
  }

  /** Creates every service's fresh per-VM state and runs the vmCreate hook (ServiceFailure if a service throws). */
  initialiseServices(): void {
    for (const b of this.bindings.values()) {
      try {
        const handler = b.service.state;
        b.state = handler ? inService(b.service.name, b.service.version, 'state create', () => handler.create(this)) : undefined;
      } catch (e) {
        throw this.failure(b.service.name, 'state create', e);
      }
    }
    this.runHook(this.hv.hooks.vmCreate, 'vmCreate', [this]);
  }

  /**
   * Runs a lifecycle hook's taps in order (the order tapable's `call` runs them), each inside the
   * service boundary: whatever a tap throws becomes a ServiceFailure naming the tap's service.
   * Lifecycle hooks are not on the trap path; calls are contained in the dispatcher (router.ts).
   */
  private runHook<A extends unknown[]>(hook: SyncHook<A>, phase: ServiceFailurePhase, args: A, vcpu?: number): void {
    for (const tap of hook.taps) {
      try {
        const version = this.bindings.get(tap.name)?.service.version ?? '?';
        inService(tap.name, version, phase as Exclude<ServiceFailurePhase, 'call'>, () => (tap.fn as (...a: A) => void)(...args));
      } catch (e) {
        throw this.failure(tap.name, phase, e, vcpu);
      }
    }
  }

  /** A ServiceFailure of service `name` (a tap's name: the service that tapped) in `phase`. */
  private failure(name: string, phase: ServiceFailurePhase, cause: unknown, vcpu?: number): ServiceFailure {
    if (cause instanceof ServiceFailure) return cause;
    const version = this.bindings.get(name)?.service.version ?? '?';
    return new ServiceFailure({ service: name, version, phase, ...(vcpu !== undefined ? { vcpu } : {}) }, cause);
  }

  get machine(): Machine {
    if (!this.attached) throw new PlugvisorError('NO_MACHINE', 'the VM has no machine attached yet');
    return this.attached;
  }

  get hasMachine(): boolean {
    return this.attached !== undefined;
  }

  attachMachine(machine: Machine): void {
    if (this.attached && this.attached !== machine) {
      throw new PlugvisorError('MACHINE_ATTACHED', 'the VM already has a machine');
    }
    this.attached = machine;
  }

  get started(): boolean {
    return this.table !== undefined;
  }

  /**
   * The first vCPU is about to run: freeze the ABI and compile the dispatch table. Idempotent.
   */
  start(): void {
    if (this.table) return;
    this.compile();
    this.runHook(this.hv.hooks.firstRun, 'firstRun', [this]);
  }

  private compile(): void {
    this.abi.freeze();
    this.table = new DispatchTable(this.hv.conduits, this.hv.catalog, this.abi, this.hv.hooks, (name) => this.bindings.get(name)!);
  }

  /**
   * Routes one trapped call. The backend has loaded `vcpu.regs` and writes results back; it
   * returns 0, or for a call its handler preempted (continueCall) the bytes the backend moves the
   * PC back so the trapping instruction runs again with the rewritten registers. The
   * conduit is resolved by name within the VM's build (hv.conduits): a conduit the build was
   * not composed with throws (PlugvisorError NO_CONDUIT).
   */
  dispatch(conduit: ConduitDefinition, vcpu: VcpuContext): number {
    const table = this.table;
    if (table === undefined) throw new PlugvisorError('NOT_STARTED', 'dispatch before Vm.start(): the ABI is not frozen');
    return table.dispatch(conduit, vcpu);
  }

  /**
   * The compiled dispatcher for one conduit: what a backend's trap path calls, after start,
   * instead of `dispatch` (one call less per trap). Same behaviour, same return: 0 for a finished
   * call, else the bytes to move the PC back (a preempted call: router/continuation.ts).
   */
  dispatcher(conduit: ConduitDefinition): (vcpu: VcpuContext) => number {
    const table = this.table;
    if (table === undefined) throw new PlugvisorError('NOT_STARTED', 'dispatcher before Vm.start(): the ABI is not frozen');
    return table.dispatcher(conduit);
  }

  /**
   * Which registers each call of a conduit reads and writes (after start): a backend loads only
   * a call's id, declared arguments and declared results, and writes back only its declared
   * results (router.ts, RegisterTransfer). Computed once, with the dispatch table; the
   * classifier allocates nothing.
   */
  transfer(conduit: ConduitDefinition): RegisterTransfer {
    const table = this.table;
    if (table === undefined) throw new PlugvisorError('NOT_STARTED', 'transfer before Vm.start(): the ABI is not frozen');
    return table.transfer(conduit);
  }

  /**
   * Is this function id exposed on this conduit (after start)? A sub-op has no id of its own
   * (its parent's answers here): ask `exposesCall` for it.
   */
  exposes(conduit: ConduitDefinition, id: number): boolean {
    return this.table?.has(conduit, id) ?? false;
  }

  /** Is this declared call (a sub-op too) exposed to this VM (after start)? */
  exposesCall(name: string): boolean {
    return this.table?.hasCall(name) ?? false;
  }

  vcpuReset(vcpu: number): void {
    this.runHook(this.hv.hooks.vcpuReset, 'vcpuReset', [this, vcpu], vcpu);
  }

  binding<S>(service: ServicePlugin<S> | string): ServiceBinding<S> {
    const name = typeof service === 'string' ? service : service.name;
    const b = this.bindings.get(name);
    if (!b) throw new PlugvisorError('NO_SERVICE', `service ${name} is not in this build`);
    return b as ServiceBinding<S>;
  }

  stateOf<S>(service: ServicePlugin<S> | string): S {
    return this.binding<S>(service).state;
  }

  record(): AbiRecord {
    return recordOf(this.abi, this.hv);
  }

  /**
   * Every stateful service's state, for the snapshot stream. A snapshotSave tap or a state
   * handler's `save` that throws is a ServiceFailure: nothing is returned, so no stream is written.
   */
  saveServiceStates(): SavedServiceState[] {
    this.runHook(this.hv.hooks.snapshotSave, 'snapshotSave', [this]);
    const out: SavedServiceState[] = [];
    for (const { service, state } of this.bindings.values()) {
      const decl = service.surface.state;
      if (!decl || !service.state) continue;
      let data: StateValue;
      try {
        const handler = service.state;
        data = inService(service.name, service.version, 'state save', () => handler.save(state, this));
      } catch (e) {
        throw this.failure(service.name, 'state save', e);
      }
      out.push({ service: service.name, stateId: decl.id, schema: decl.version, data });
    }
    return out;
  }

  /** @internal restore path: states were all loaded (and validated) before any is applied. */
  adoptStates(states: ReadonlyMap<string, unknown>, started: boolean): void {
    for (const [name, state] of states) this.bindings.get(name)!.state = state;
    // A VM that had run resumes frozen; its first run already happened on the source.
    if (started) this.compile();
    this.runHook(this.hv.hooks.snapshotRestore, 'snapshotRestore', [this]);
  }
}
