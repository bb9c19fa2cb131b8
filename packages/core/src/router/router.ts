import type { SyncHook } from 'tapable';
import type { AbiCatalog } from '../abi/catalog.js';
import type { CallDecl } from '../abi/surface.js';
import type { VmAbi } from '../abi/vm-abi.js';
import type { VcpuContext } from '../machine/machine.js';
import type { HypervisorHooks } from '../plugin/hooks.js';
import type { ServiceBinding } from '../plugin/service.js';
import { Conduits, type Conduit } from './conduits.js';

type CallHook = SyncHook<[VcpuContext, ServiceBinding<any>]>;

/** One exposed call: the hook its service tapped and the service's per-VM binding. */
interface Route {
  readonly hook: CallHook;
  readonly binding: ServiceBinding<any>;
}

interface RangeRoute extends Route {
  readonly first: number;
  readonly last: number;
}

/** Is this call exposed to a VM with this ABI? Its feature is on and its version bounds hold. */
export function isExposed(call: CallDecl, abi: VmAbi, catalog: AbiCatalog): boolean {
  if (!abi.isEnabled(call.feature)) return false;
  if (call.since) {
    const min = catalog.versionValue(call.since.version, call.since.minimum)!;
    if (abi.versionValue(call.since.version) < min) return false;
  }
  if (call.until) {
    const max = catalog.versionValue(call.until.version, call.until.maximum)!;
    if (abi.versionValue(call.until.version) > max) return false;
  }
  return true;
}

/**
 * A VM's dispatch table, compiled once when the VM first runs (its ABI is frozen then, so
 * the table never changes). Only exposed calls are in it; anything else gets the conduit's
 * architected "not supported". Dispatch allocates nothing: one Map lookup keyed by the
 * function id, a short scan of range calls on a miss, and the hook's compiled call.
 */
export class DispatchTable {
  private readonly exact: Map<number, Route>[];
  private readonly ranges: RangeRoute[][];

  constructor(
    catalog: AbiCatalog,
    abi: VmAbi,
    hooks: HypervisorHooks,
    bindingOf: (service: string) => ServiceBinding<any>,
  ) {
    const conduitCount = Conduits.all().length;
    this.exact = Array.from({ length: conduitCount }, () => new Map());
    this.ranges = Array.from({ length: conduitCount }, () => []);
    for (const { decl, service } of catalog.calls.values()) {
      if (!isExposed(decl, abi, catalog)) continue;
      const conduit = Conduits.get(decl.conduit)!;
      const hook = hooks.call.get(decl.name)!;
      const route = { hook, binding: bindingOf(service.name) };
      if (decl.last === undefined || decl.last === decl.id) this.exact[conduit.index]!.set(decl.id, route);
      else this.ranges[conduit.index]!.push({ ...route, first: decl.id, last: decl.last });
    }
  }

  /** Route one trapped call; `vcpu.regs` holds the guest's registers and receives results. */
  dispatch(conduit: Conduit, vcpu: VcpuContext): void {
    const id = conduit.functionId(vcpu.regs);
    let route: Route | undefined = this.exact[conduit.index]!.get(id);
    if (route === undefined) {
      const ranges = this.ranges[conduit.index]!;
      for (let i = 0; i < ranges.length; i++) {
        const r = ranges[i]!;
        if (id >= r.first && id <= r.last) {
          route = r;
          break;
        }
      }
      if (route === undefined) {
        conduit.notSupported(vcpu.regs);
        return;
      }
    }
    route.hook.call(vcpu, route.binding);
  }

  /** True if a call with this id is exposed on the conduit (for diagnostics and tests). */
  has(conduit: Conduit, id: number): boolean {
    return this.exact[conduit.index]!.has(id) || this.ranges[conduit.index]!.some((r) => id >= r.first && id <= r.last);
  }
}
