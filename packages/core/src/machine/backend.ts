import type { ConduitDefinition } from '../router/conduits.js';
import type { StateValue } from '../plugin/service.js';
import type { MachineImage, RestorePlan, SavedMemory } from '../snapshot/snapshot.js';
import type { Vm } from '../vm.js';
import type { LoadedImage } from './image.js';
import type { Arch, Machine } from './machine.js';
import type { RunOptions, RunResult } from './run.js';

/**
 * A machine package's backend descriptor: what a tool (the CLI) needs to pick, create and
 * restore machines without knowing any backend by name — it iterates the descriptors it was
 * given (like crosvm's hypervisor backends behind one `Hypervisor` trait).
 */

/** A machine a tool can boot, run, snapshot and dispose of. */
export interface RunnableMachine extends Machine {
  loadImage(bytes: Uint8Array, rawAddress?: bigint): LoadedImage;
  boot(entry: bigint, context?: bigint): void;
  attach(router: Vm): void;
  run(options?: RunOptions): RunResult;
  requestPause(reason?: string): void;
  image(): MachineImage;
  dispose(): void;
}

export interface MachineCreateOptions {
  readonly vcpus: number;
  readonly memSize: number;
  readonly console: (bytes: Uint8Array) => void;
  /** Backend-specific settings (x86: `xsave`, the VM's XSAVE policy). */
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** What a backend reports about the host it runs on (`plugvisor hosts`). */
export interface HostReport {
  /**
   * The host's capabilities as JSON-able data, named (x86: @plugvisor/xsave's host capability
   * dump, format 1, which `plugvisor check --hosts` reads).
   */
  readonly dump: { readonly name: string };
  /** The same for people, one line each. */
  readonly lines: readonly string[];
}

export interface MachineBackend {
  readonly arch: Arch;
  /** One line for help and errors, e.g. "arm64 on Unicorn". */
  readonly description: string;
  /** The ELF e_machine this backend runs. */
  readonly elfMachine: number;
  /** The calling conventions its traps reach: pass them to `Hypervisor.compose(services, { conduits })`. */
  readonly conduits: readonly ConduitDefinition[];
  /** Why this host cannot run the backend, or undefined when it can. */
  unavailable(): string | undefined;
  /**
   * This host's capabilities for pool baselines, when the backend has any to report (x86: KVM
   * and XSAVE); `name` overrides the host's name. Call only when `unavailable()` is undefined.
   */
  hostReport?(name?: string): HostReport;
  create(options: MachineCreateOptions): RunnableMachine;
  /** planRestore's checkMachine: every problem with a snapshot's machine part, before anything is built. */
  checkSnapshot(description: StateValue, vcpus: readonly Uint8Array[], memory: readonly SavedMemory[]): string[];
  /** Builds the machine for a verified restore plan, attached to the plan's VM, ready to run. */
  rebuild(plan: RestorePlan, options: { readonly console?: (bytes: Uint8Array) => void }): RunnableMachine;
}

/** The backend for `arch` among `backends`. */
export function backendFor(backends: readonly MachineBackend[], arch: string): MachineBackend | undefined {
  return backends.find((b) => b.arch === arch);
}
