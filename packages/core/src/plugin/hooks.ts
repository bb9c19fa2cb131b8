import { HookMap, SyncHook } from 'tapable';
import { ComposeError, PlugvisorError } from '../errors.js';
import type { Hypervisor } from '../hypervisor.js';
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

/**
 * Where a build keeps the hooks its plugins own: a property of the Hypervisor under a key from
 * the global symbol registry (`Symbol.for`), so every copy of @plugvisor/core finds the same one.
 */
const PLUGIN_HOOKS: unique symbol = Symbol.for('@plugvisor/core:plugin-hooks') as never;

/** What the registry keeps per key: the frozen hooks, the own keys they were made with, and each `create` already checked. */
interface RegistryEntry {
  readonly hooks: object;
  readonly keys: string;
  readonly creators: Set<() => object>;
}

const KEY = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*:[\w.-]+$/i;

/**
 * Hooks owned by a plugin, one set per build, keyed by the owning package's name and a registry
 * name (`'@plugvisor/svc-smccc-arch:features'`): webpack's getCompilationHooks pattern, with the
 * registry on the build instead of in the owning module. A module-level `WeakMap<Hypervisor, …>`
 * belongs to one copy of the module, so a package that installed its own copy of the owner would
 * tap a registry the build never calls; this one lives on the Hypervisor, found through a global
 * symbol, so every copy of the owner and of @plugvisor/core gets the same object.
 *
 * The first caller's `create` makes the hooks, which are frozen (nobody adds or replaces a hook
 * afterwards); every later caller gets them. A later caller whose `create` makes hooks of other
 * names (two copies of the owner that disagree about its hooks) is refused with a ComposeError
 * naming the key, rather than handed hooks it does not expect. Pass a module-level `create`
 * (not an arrow made per call): a lookup with a `create` already seen is two map reads and
 * allocates nothing, so handlers may call this per trap.
 */
export function pluginHooks<T extends object>(hv: Hypervisor, key: string, create: () => T): T {
  if (!KEY.test(key)) {
    throw new PlugvisorError('PLUGIN_HOOKS', `plugin hook registry key '${key}' is not '<package name>:<registry name>'`);
  }
  const holder = hv as unknown as { [PLUGIN_HOOKS]?: Map<string, RegistryEntry> };
  let registry = holder[PLUGIN_HOOKS];
  if (!registry) {
    registry = new Map();
    Object.defineProperty(hv, PLUGIN_HOOKS, { value: registry, enumerable: false });
  }
  const entry = registry.get(key);
  if (entry) {
    if (entry.creators.has(create)) return entry.hooks as T;
    const fresh = create();
    if (Object.keys(fresh).sort().join() !== entry.keys) {
      throw new ComposeError(
        `cannot compose the build: two copies of the package owning hooks '${key}' disagree about them (${entry.keys} vs ${Object.keys(fresh).sort().join()}): install one copy, shared as a peer dependency`,
      );
    }
    entry.creators.add(create);
    return entry.hooks as T;
  }
  const hooks = Object.freeze(create());
  registry.set(key, { hooks, keys: Object.keys(hooks).sort().join(), creators: new Set([create]) });
  return hooks;
}
