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
 * architected "not supported".
 *
 * Like tapable, which compiles each hook's call into a specialised function, the table is
 * compiled into one function per conduit: read the function id from the conduit's register
 * word, a `switch` over the exposed ids (V8 turns it into a jump table or binary search),
 * then the range calls, then "not supported". Each case calls its hook's compiled `call`
 * with the service's per-VM binding. No allocation, no Map lookup, nothing tapped.
 */
export class DispatchTable {
  private readonly byConduit: Array<(vcpu: VcpuContext) => void>;
  private readonly exposed: Array<{ ids: Set<number>; ranges: Array<[number, number]> }>;

  constructor(
    catalog: AbiCatalog,
    abi: VmAbi,
    hooks: HypervisorHooks,
    bindingOf: (service: string) => ServiceBinding<any>,
  ) {
    const conduits = Conduits.all();
    const exact: Array<Array<Route & { id: number }>> = conduits.map(() => []);
    const ranges: RangeRoute[][] = conduits.map(() => []);
    for (const { decl, service } of catalog.calls.values()) {
      if (!isExposed(decl, abi, catalog)) continue;
      const conduit = Conduits.get(decl.conduit)!;
      const route = { hook: hooks.call.get(decl.name)!, binding: bindingOf(service.name) };
      if (decl.last === undefined || decl.last === decl.id) exact[conduit.index]!.push({ ...route, id: decl.id });
      else ranges[conduit.index]!.push({ ...route, first: decl.id, last: decl.last });
    }
    this.byConduit = conduits.map((c) => compileConduit(c, exact[c.index]!, ranges[c.index]!));
    this.exposed = conduits.map((c) => ({
      ids: new Set(exact[c.index]!.map((r) => r.id)),
      ranges: ranges[c.index]!.map((r) => [r.first, r.last] as [number, number]),
    }));
  }

  /** Route one trapped call; `vcpu.regs` holds the guest's registers and receives results. */
  dispatch(conduit: Conduit, vcpu: VcpuContext): void {
    this.byConduit[conduit.index]!(vcpu);
  }

  /** The compiled dispatcher of one conduit, for a backend's trap path to call directly. */
  dispatcher(conduit: Conduit): (vcpu: VcpuContext) => void {
    return this.byConduit[conduit.index]!;
  }

  /** True if a call with this id is exposed on the conduit (for diagnostics and tests). */
  has(conduit: Conduit, id: number): boolean {
    const e = this.exposed[conduit.index]!;
    return e.ids.has(id) || e.ranges.some(([first, last]) => id >= first && id <= last);
  }
}

/** Generates `function (vcpu) { switch (id) { case N: hN.call(vcpu, bN); return; ... } }`. */
function compileConduit(conduit: Conduit, exact: ReadonlyArray<Route & { id: number }>, ranges: readonly RangeRoute[]) {
  const routes: Route[] = [...exact, ...ranges];
  const word = conduit.functionIdWord;
  if (!Number.isInteger(word) || word < 0) throw new Error(`conduit ${conduit.name}: bad functionIdWord`);
  // One const per route: V8 then knows each case's call target and can inline it.
  const lines = ['"use strict";', ...routes.map((_, i) => `const h${i} = h[${i}], b${i} = b[${i}];`), 'return function dispatch(vcpu) {', `  const id = vcpu.regs.u32[${word}];`];
  const high = conduit.functionIdHighWord;
  if (high !== undefined) {
    if (!Number.isInteger(high) || high < 0) throw new Error(`conduit ${conduit.name}: bad functionIdHighWord`);
    lines.push(`  if (vcpu.regs.u32[${high}] !== 0) { notSupported(vcpu.regs); return; }`);
  }
  if (exact.length) {
    lines.push('  switch (id) {');
    exact.forEach((r, i) => lines.push(`    case ${r.id >>> 0}: h${i}.call(vcpu, b${i}); return;`));
    lines.push('  }');
  }
  ranges.forEach((r, j) => {
    const i = exact.length + j;
    lines.push(`  if (id >= ${r.first >>> 0} && id <= ${r.last >>> 0}) { h${i}.call(vcpu, b${i}); return; }`);
  });
  lines.push('  notSupported(vcpu.regs);', '};');
  // Objects reach the generated code as arguments, never as source text: only integers are inlined.
  const factory = new Function('notSupported', 'h', 'b', lines.join('\n')) as (
    notSupported: Conduit['notSupported'],
    h: readonly CallHook[],
    b: readonly ServiceBinding<any>[],
  ) => (vcpu: VcpuContext) => void;
  return factory(
    conduit.notSupported,
    routes.map((r) => r.hook),
    routes.map((r) => r.binding),
  );
}

