import type { SyncHook } from 'tapable';
import type { AbiCatalog } from '../abi/catalog.js';
import { callExposed } from '../abi/exposure.js';
import type { CallDecl } from '../abi/surface.js';
import type { VmAbi } from '../abi/vm-abi.js';
import type { VcpuContext } from '../machine/machine.js';
import type { HypervisorHooks } from '../plugin/hooks.js';
import type { ServiceBinding } from '../plugin/service.js';
import { RegisterFile } from '../machine/registers.js';
import { HypercallTimeout, ServiceFailure, type ServiceFailurePhase } from '../errors.js';
import type { BuildConduits } from './build-conduits.js';
import type { ConduitDefinition } from './conduits.js';

type CallHook = SyncHook<[VcpuContext, ServiceBinding<any>]>;

/** Who answers a route, for a ServiceFailure: the call's declared name, its service package and version. */
interface CallSite {
  readonly name: string;
  readonly service: string;
  readonly version: string;
  /** The function id the route answers (a range call's first). */
  readonly id?: number;
  /** Not a call: a lifecycle tap or state handler of the service in flight (inService). */
  readonly phase?: Exclude<ServiceFailurePhase, 'call'>;
  /** The registers a continuation of the call may rewrite; undefined: it declares none (Route.continues). */
  readonly continues?: number;
}

/** One exposed call: the hook its service tapped, the service's per-VM binding, its register masks. */
interface Route {
  readonly hook: CallHook;
  readonly site: CallSite;
  readonly binding: ServiceBinding<any>;
  /** [read, write] (RegisterTransfer). */
  readonly masks: readonly [number, number];
  /**
   * The registers a continuation of this call may rewrite (bit n = xn: what it reads), or
   * undefined when the call declares no continuation (preempting it is a service failure).
   */
  readonly continues?: number;
}

/** An exposed sub-op: reached when its parent's selector register (u32) holds `value`. */
interface SubRoute extends Route {
  readonly value: number;
  /**
   * The parent's selector carries a continuation field this sub-op does not use: non-zero bits
   * there get `answer` (ContinuationDecl.otherSubOps), or the parent's handler without one.
   */
  readonly refuse?: { readonly lo: number; readonly hi: number; readonly answer?: { readonly reg: number; readonly value: number } };
}

/** An exposed single-id call, with its exposed sub-ops if it is a multiplexed call's parent. */
interface ExactRoute extends Route {
  readonly id: number;
  /** The selector register of the sub-ops, when there are any. */
  readonly selector?: number;
  readonly subs?: readonly SubRoute[];
  /** The selector's low-word bits that choose the sub-op (not a continuation field's). */
  readonly keep?: number;
}

interface RangeRoute extends Route {
  readonly first: number;
  readonly last: number;
}

/**
 * Which registers each call of one conduit reads and writes, for a backend that moves registers
 * between the vCPU and `vcpu.regs` per call instead of wholesale (the arm64 machine). Computed
 * once per VM, with the dispatch table, from the exposed calls' signatures:
 *
 *   const t = vm.transfer(conduit);
 *   // load t.idRegister into vcpu.regs, then:
 *   const k = t.classOf(vcpu.regs);        // a small integer, no allocation
 *   // load the registers of t.readMasks[k], dispatch, write back those of t.writeMasks[k]
 *
 * Masks: bit n = xn. A call's write mask is its declared results (default: the conduit's
 * `resultRegisters`). Its read mask is what the backend loads before dispatch: the function-id
 * register (every handler may look at its id: range calls do), the declared arguments, and the
 * declared results too — a call may leave a result register unwritten (the conformance kit
 * allows it), and the write-back must then give the guest its own value back. Ids the VM does
 * not expose get class NOT_SUPPORTED_CLASS: the id register in, the registers the conduit's
 * "not supported" answer writes out (SMCCC x0..x3, Xen x0). Calls with the same pair of masks
 * share a class, so a backend needs one prepared transfer per class, and there are few.
 *
 * Sub-ops (CallDecl.subOf) have no id of their own, so classOf, which reads only the id
 * register, cannot tell them apart: a parent's class is conservatively the union of its own
 * masks, its selector register and the masks of every sub-op exposed under it (Xen's
 * event_channel_op: x0, x1 and x16 in, x0 out, the same as each EVTCHNOP_*).
 */
export interface RegisterTransfer {
  readonly conduit: ConduitDefinition;
  /** The register that holds the function id (SMCCC x0, Xen x16): what classOf reads. */
  readonly idRegister: number;
  /**
   * The transfer class of the call whose id is in `regs` (only the id register need be loaded):
   * an index into readMasks/writeMasks. Generated like the dispatcher, with the same precedence
   * (exact ids, then ranges in order, else not supported), so it names the handler that runs.
   */
  readonly classOf: (regs: RegisterFile) => number;
  readonly readMasks: readonly number[];
  readonly writeMasks: readonly number[];
}

/** The class of ids the VM does not expose (the conduit's "not supported" answer). */
export const NOT_SUPPORTED_CLASS = 0;

const maskOf = (regs: Iterable<number>): number => {
  let m = 0;
  for (const r of regs) {
    if (!Number.isInteger(r) || r < 0 || r > 30) throw new Error(`register x${r} cannot be transferred (x0..x30)`);
    m |= 1 << r;
  }
  return m >>> 0;
};

/**
 * Registers the conduit's "not supported" answer writes, found by running it on two backgrounds
 * (a write cannot hide by matching both). It writes them whatever the call held, so nothing
 * but the id register need be loaded for it.
 */
function notSupportedMask(conduit: ConduitDefinition): number {
  let m = 0;
  for (const fill of [0n, 0xa5a5_a5a5_a5a5_a5a5n]) {
    const regs = new RegisterFile(32);
    regs.u64.fill(fill);
    conduit.notSupported(regs);
    for (let r = 0; r <= 30; r++) if (regs.u64[r] !== fill) m |= 1 << r;
  }
  return m >>> 0;
}

/** Read and write masks of one call (see RegisterTransfer). */
function callMasks(decl: CallDecl, conduit: ConduitDefinition): [number, number] {
  const idReg = conduit.functionIdWord >> 1;
  const sig = decl.signature;
  const write = maskOf(sig?.results ? sig.results.map((r) => r.reg) : conduit.resultRegisters);
  const read = (maskOf((sig?.args ?? []).map((a) => a.reg)) | (1 << idReg) | write) >>> 0;
  return [read, write];
}

/**
 * Is this call exposed to a VM with this ABI? Its feature is on, its version bounds hold and,
 * for a sub-op, its parent is exposed too (the one rule, abi/exposure.ts).
 */
export function isExposed(call: CallDecl, abi: VmAbi, catalog: AbiCatalog): boolean {
  return callExposed(call, catalog, (sel) => abi.versionValue(sel), (f) => abi.isEnabled(f));
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
 *
 * The tables are per conduit of the VM's build (BuildConduits), at the build's own indexes; a
 * conduit object is resolved by name within the build (`dispatcher` once, `dispatch` per call).
 */
export class DispatchTable {
  private readonly byConduit: Array<(vcpu: VcpuContext) => number>;
  private readonly transfers: RegisterTransfer[];
  private readonly exposed: Array<{ ids: Set<number>; ranges: Array<[number, number]> }>;
  private readonly exposedCalls = new Set<string>();

  constructor(
    private readonly conduits: BuildConduits,
    catalog: AbiCatalog,
    abi: VmAbi,
    hooks: HypervisorHooks,
    bindingOf: (service: string) => ServiceBinding<any>,
  ) {
    const list = conduits.list;
    const exact: ExactRoute[][] = list.map(() => []);
    const ranges: RangeRoute[][] = list.map(() => []);
    const subs = new Map<string, SubRoute[]>(); // parent name → exposed sub-ops
    const parents: Array<[string, number, number]> = []; // [parent name, conduit index, index in exact]
    for (const { decl, service } of catalog.calls.values()) {
      if (!isExposed(decl, abi, catalog)) continue;
      this.exposedCalls.add(decl.name);
      const conduit = conduits.get(decl.conduit)!; // the catalog checked the build has it
      const c = conduits.indexOf(conduit);
      const site: CallSite = Object.freeze({ name: decl.name, service: service.name, version: service.version });
      const masks = callMasks(decl, conduit);
      const continues = catalog.continuations.has(decl.name) ? (masks[0] | (decl.subOf ? 1 << decl.subOf.selector : 0)) >>> 0 : undefined;
      const route = { hook: hooks.call.get(decl.name)!, site, binding: bindingOf(service.name), masks, ...(continues !== undefined ? { continues } : {}) };
      if (decl.subOf) {
        const list = subs.get(decl.subOf.call) ?? [];
        const field = catalog.selectorFields.get(decl.subOf.call);
        const refuse =
          field && continues === undefined
            ? { lo: Number(field.mask & 0xffff_ffffn), hi: Number(field.mask >> 32n), ...(field.answer ? { answer: field.answer } : {}) }
            : undefined;
        list.push({ ...route, value: decl.subOf.value >>> 0, ...(refuse ? { refuse } : {}) });
        subs.set(decl.subOf.call, list);
      } else if (decl.last === undefined || decl.last === decl.id) {
        if (catalog.subOps.has(decl.name)) parents.push([decl.name, c, exact[c]!.length]);
        exact[c]!.push({ ...route, id: decl.id });
      } else ranges[c]!.push({ ...route, first: decl.id, last: decl.last });
    }
    // A parent's exposed sub-ops hang off its route; its transfer class is the union of their
    // masks and its own, plus the selector register (classOf keys on the function id only).
    for (const [name, c, i] of parents) {
      const list = (subs.get(name) ?? []).sort((a, b) => a.value - b.value);
      const selector = catalog.subOps.get(name)![0]!.decl.subOf!.selector;
      const p = exact[c]![i]!;
      let [read, write] = p.masks;
      read |= 1 << selector;
      for (const r of list) {
        read |= r.masks[0];
        write |= r.masks[1];
        if (r.refuse?.answer) write |= 1 << r.refuse.answer.reg;
      }
      const field = catalog.selectorFields.get(name);
      const keep = field ? ~Number(field.mask & 0xffff_ffffn) >>> 0 : 0xffff_ffff;
      exact[c]![i] = { ...p, selector, subs: list, keep, masks: [read >>> 0, write >>> 0] };
    }
    this.byConduit = list.map((conduit, c) => compileConduit(conduit, exact[c]!, ranges[c]!));
    this.transfers = list.map((conduit, c) => compileTransfer(conduit, exact[c]!, ranges[c]!));
    this.exposed = list.map((_, c) => ({
      ids: new Set(exact[c]!.map((r) => r.id)),
      ranges: ranges[c]!.map((r) => [r.first, r.last] as [number, number]),
    }));
  }

  /**
   * Route one trapped call; `vcpu.regs` holds the guest's registers and receives results.
   * Returns 0 when the call finished, or, when its handler preempted it (continueCall), the
   * bytes to move the PC back (`vcpu.trapLength`) so the vCPU re-executes the trapping
   * instruction with the rewritten registers (router/continuation.ts).
   */
  dispatch(conduit: ConduitDefinition, vcpu: VcpuContext): number {
    return this.byConduit[this.conduits.indexOf(conduit)]!(vcpu);
  }

  /** The compiled dispatcher of one conduit, for a backend's trap path to call directly (returns as `dispatch`). */
  dispatcher(conduit: ConduitDefinition): (vcpu: VcpuContext) => number {
    return this.byConduit[this.conduits.indexOf(conduit)]!;
  }

  /** Which registers each call of a conduit reads and writes (see RegisterTransfer). */
  transfer(conduit: ConduitDefinition): RegisterTransfer {
    return this.transfers[this.conduits.indexOf(conduit)]!;
  }

  /** True if the declared call (a sub-op too) is exposed (for diagnostics and tests). */
  hasCall(name: string): boolean {
    return this.exposedCalls.has(name);
  }

  /** True if a call with this id is exposed on the conduit (for diagnostics and tests). */
  has(conduit: ConduitDefinition, id: number): boolean {
    if (!this.conduits.has(conduit.name)) return false;
    const e = this.exposed[this.conduits.indexOf(conduit)]!;
    return e.ids.has(id) || e.ranges.some(([first, last]) => id >= first && id <= last);
  }
}

// ---- service containment ---------------------------------------------------------------------
//
// A handler is service code: whatever it throws (an Error, a TypeError, a string, undefined) is
// caught where the dispatcher calls it and becomes a ServiceFailure naming the service package
// and version, the call (id and name) and the vCPU; the machine owner adds the PC and stops the
// VM. A handler that never returns cannot be caught on this thread: the dispatcher keeps a
// heartbeat in shared memory that a watchdog thread of the process owner watches (the CLI's
// watchdog.ts), and the call in flight, which `callInFlight` turns into the same failure.
//
// Per dispatch this costs a load and three int32 stores into shared memory (the sequence number,
// the call's site number, "idle" after it) and a try/catch, which V8's optimising compiler keeps
// in optimised code while nothing throws. What a failure report needs beyond that is found when
// it is needed: on a throw the catch block has the vCPU and the function id at hand; a watchdog
// gets the vCPU from the machine (which knows which one runs) and the id from the call's site.
// (Storing the vCPU's index, or a range call's id, per call measured +2.5 ns on a 6 ns dispatch.)

/**
 * The hypercall heartbeat, one per process, as plain int32 stores (no object store, so no
 * write barrier): [0] a sequence number bumped as every dispatch starts, [1] the site number
 * (SITES) of the call whose handler runs now, -1 when none does. In a SharedArrayBuffer: a watchdog thread reads [0] and [1]
 * (Atomics.load; racy, which is enough to see the same call busy for seconds on end).
 */
const HEARTBEAT = new Int32Array(new SharedArrayBuffer(8));
/**
 * The continuation requested by the handler now running, as plain int stores (the trap path
 * allocates nothing): [0] 1 when it called continueCall. Read after the hook only by the cases of
 * calls that declare a continuation (continueCall refuses the others while their handler runs).
 */
export const CONTINUATION = new Int32Array(1);
const BEAT_SEQ = 0;
const BEAT_SITE = 1;
HEARTBEAT[BEAT_SITE] = -1;

/** The shared heartbeat words (see HEARTBEAT), for a watchdog thread: pass `.buffer` to a worker. */
export function hypercallHeartbeat(): Int32Array {
  return HEARTBEAT;
}

/** Every call site of every compiled table, numbered once per service, version, call and id (bounded). */
const SITES: CallSite[] = [];
const SITE_NUMBERS = new Map<string, number>();
function siteNumber(site: CallSite): number {
  const key = `${site.service}@${site.version}:${site.phase ?? 'call'}:${site.name}:${site.id ?? '*'}:${site.continues ?? '-'}`;
  let n = SITE_NUMBERS.get(key);
  if (n === undefined) {
    n = SITES.length;
    SITES.push(site);
    SITE_NUMBERS.set(key, n);
  }
  return n;
}

/**
 * The call whose handler is running now on `vcpu` (the machine says which vCPU runs), as the
 * ServiceFailure a watchdog reports (cause: a HypercallTimeout of `seconds`), or undefined when
 * no handler runs. Call it on the dispatching thread (e.g. from a debugger pause of it).
 */
export function callInFlight(seconds: number, vcpu: number): ServiceFailure | undefined {
  const site = SITES[HEARTBEAT[BEAT_SITE]!];
  if (!site) return undefined;
  return failureOf(site, site.id ?? 0, vcpu, new HypercallTimeout(seconds));
}

function failureOf(site: CallSite, id: number, vcpu: number, cause: unknown): ServiceFailure {
  if (site.phase) return new ServiceFailure({ service: site.service, version: site.version, phase: site.phase }, cause);
  return new ServiceFailure({ service: site.service, version: site.version, phase: 'call', call: { id, name: site.name }, vcpu }, cause);
}

/**
 * Runs `fn`, a service's lifecycle tap or state handler (not on the trap path), with the
 * heartbeat showing it in flight, so a watchdog stops one that never returns as it stops a call
 * (callInFlight names the service and the phase). What was in flight before (a call whose
 * handler led here) is in flight again after.
 */
export function inService<T>(service: string, version: string, phase: Exclude<ServiceFailurePhase, 'call'>, fn: () => T): T {
  const outer = HEARTBEAT[BEAT_SITE]!;
  HEARTBEAT[BEAT_SEQ] = (HEARTBEAT[BEAT_SEQ]! + 1) | 0;
  HEARTBEAT[BEAT_SITE] = siteNumber({ name: phase, service, version, phase });
  try {
    return fn();
  } finally {
    HEARTBEAT[BEAT_SITE] = outer;
  }
}

/** The dispatcher's catch: the handler of the call in flight threw `e` (a failure from a nested boundary passes through). */
function contain(e: unknown, vcpu: VcpuContext, id: number): never {
  const site = SITES[HEARTBEAT[BEAT_SITE]!];
  HEARTBEAT[BEAT_SITE] = -1;
  CONTINUATION[0] = 0; // a handler that threw after continueCall: no leg is left pending
  if (e instanceof ServiceFailure || !site) throw e;
  throw failureOf(site, id >>> 0, vcpu.index, e);
}

/**
 * continueCall's check, while the handler runs (so a throw is contained as its call's failure):
 * the call in flight must declare a continuation and the continuation may rewrite only registers
 * the call reads (`rewritten`: bit n = xn). Then the dispatcher's case sees CONTINUATION[0].
 */
export function requestContinuation(rewritten: number): void {
  const site = SITES[HEARTBEAT[BEAT_SITE]!];
  if (!site || site.phase) throw new Error('continueCall outside a call handler');
  if (site.continues === undefined) throw new Error('preempted a call that declares no continuation (ServiceSurface.continuations): the guest could not re-issue it compatibly');
  const stray = (rewritten & ~site.continues) >>> 0;
  if (stray !== 0) {
    const regs = [...Array(31).keys()].filter((r) => stray & (1 << r)).map((r) => `x${r}`);
    throw new Error(`continuation rewrites ${regs.join(', ')}, which the call does not read`);
  }
  CONTINUATION[0] = 1;
}

/**
 * The dispatcher's path for a preempted call (the call's site is still in flight, so a throw
 * here is contained as that call's failure): the backend must be able to rewind. Returns the
 * bytes the backend moves the PC back.
 */
function preempted(vcpu: VcpuContext): number {
  CONTINUATION[0] = 0;
  const length = vcpu.trapLength;
  if (length === undefined || !(length > 0)) throw new Error('preempted a call on a machine that cannot re-execute the trapping instruction (no trapLength)');
  HEARTBEAT[BEAT_SITE] = -1;
  return length;
}

/**
 * Generates `function (vcpu) { switch (id) { case N: hN.call(vcpu, bN); return; ... } }`, inside
 * the service boundary: the sequence number is bumped first, each case records its call's site
 * number before calling its hook and clears it after, and a throw goes to `contain` (see
 * "service containment" above). A
 * parent with exposed sub-ops gets a nested switch on its selector register's low word:
 * `case 32: switch (vcpu.regs.u32[0]) { case 4: hS.call(vcpu, bS); return; ... } hP.call(vcpu, bP); return;`
 * — the registers are not touched and nothing is re-entered; a selector value no exposed sub-op
 * has falls through to the parent's own handler (its `default:` case).
 */
function compileConduit(conduit: ConduitDefinition, exact: readonly ExactRoute[], ranges: readonly RangeRoute[]) {
  const subRoutes = exact.flatMap((r) => r.subs ?? []);
  const routes: Route[] = [...exact, ...ranges, ...subRoutes];
  const subIndex = new Map<SubRoute, number>(subRoutes.map((r, k) => [r, exact.length + ranges.length + k]));
  const word = conduit.functionIdWord;
  if (!Number.isInteger(word) || word < 0) throw new Error(`conduit ${conduit.name}: bad functionIdWord`);
  // One const per route: V8 then knows each case's call target and can inline it.
  // `call(i)`: record the call's site, run its hook, clear busy (see "service containment" above).
  // A site knows its function id: an exact call's own, a sub-op's parent's; a range call's site
  // names its range (a watchdog reports its first id; a throw reports the id the guest passed).
  const siteOf = (i: number): CallSite => {
    const r = routes[i]!;
    const k = r.continues !== undefined ? { continues: r.continues } : {};
    if (i < exact.length) return { ...r.site, ...k, id: (r as ExactRoute).id >>> 0 };
    if (i < exact.length + ranges.length) {
      const { first, last } = r as RangeRoute;
      return { ...r.site, ...k, id: first >>> 0, name: `${r.site.name} (0x${(first >>> 0).toString(16)}..0x${(last >>> 0).toString(16)})` };
    }
    const parent = exact.find((p) => p.subs?.includes(r as SubRoute))!;
    return { ...r.site, ...k, id: parent.id >>> 0 };
  };
  // After the hook: a handler that called continueCall (cont[0] set) goes to `preempted`, which
  // returns the bytes to rewind; a finished call returns 0 (router/continuation.ts).
  // Only a call that declares a continuation can have one (continueCall checks while its handler
  // runs), so only its case looks: the others pay nothing.
  const call = (i: number) =>
    `beat[${BEAT_SITE}] = ${siteNumber(siteOf(i))}; h${i}.call(vcpu, b${i}); ${routes[i]!.continues !== undefined ? 'if (cont[0] !== 0) return preempted(vcpu); ' : ''}beat[${BEAT_SITE}] = -1; return 0;`;
  const lines = [
    '"use strict";',
    ...routes.map((_, i) => `const h${i} = h[${i}], b${i} = b[${i}];`),
    'return function dispatch(vcpu) {',
    `  const id = vcpu.regs.u32[${word}];`,
    `  beat[${BEAT_SEQ}] = (beat[${BEAT_SEQ}] + 1) | 0;`,
    '  try {',
  ];
  const notSupportedCall = 'notSupported(vcpu.regs); return 0;'; // core code: no site
  const high = conduit.functionIdHighWord;
  if (high !== undefined) {
    if (!Number.isInteger(high) || high < 0) throw new Error(`conduit ${conduit.name}: bad functionIdHighWord`);
    lines.push(`  if (vcpu.regs.u32[${high}] !== 0) { ${notSupportedCall} }`);
  }
  if (exact.length) {
    lines.push('  switch (id) {');
    exact.forEach((r, i) => {
      if (!r.subs?.length) return void lines.push(`    case ${r.id >>> 0}: ${call(i)}`);
      const sel = r.selector! * 2;
      const keep = r.keep ?? 0xffff_ffff;
      lines.push(`    case ${r.id >>> 0}:`, `      switch (${keep === 0xffff_ffff ? `vcpu.regs.u32[${sel}]` : `(vcpu.regs.u32[${sel}] & ${keep}) >>> 0`}) {`);
      for (const sr of r.subs) {
        const f = sr.refuse;
        // A sub-op that does not use its parent's continuation field refuses a non-zero one (Xen's
        // do_memory_op: -EINVAL), so giving it a meaning later stays compatible (core README).
        const refuse = !f
          ? ''
          : `if (((vcpu.regs.u32[${sel}] & ${f.lo >>> 0}) | (vcpu.regs.u32[${sel + 1}] & ${f.hi >>> 0})) !== 0) { ${
              f.answer ? `vcpu.regs.setSigned(${f.answer.reg | 0}, ${f.answer.value | 0}); return 0;` : 'break;'
            } } `;
        lines.push(`        case ${sr.value >>> 0}: ${refuse}${call(subIndex.get(sr)!)}`);
      }
      lines.push('      }', `      ${call(i)}`);
    });
    lines.push('  }');
  }
  ranges.forEach((r, j) => {
    lines.push(`  if (id >= ${r.first >>> 0} && id <= ${r.last >>> 0}) { ${call(exact.length + j)} }`);
  });
  lines.push(`  ${notSupportedCall}`, '  } catch (e) {', '    contain(e, vcpu, id);', '  }', '};');
  // Objects reach the generated code as arguments, never as source text: only integers are inlined.
  const factory = new Function('notSupported', 'h', 'b', 'beat', 'contain', 'cont', 'preempted', lines.join('\n')) as (
    notSupported: ConduitDefinition['notSupported'],
    h: readonly CallHook[],
    b: readonly ServiceBinding<any>[],
    beat: Int32Array,
    containFn: typeof contain,
    cont: Int32Array,
    preemptedFn: typeof preempted,
  ) => (vcpu: VcpuContext) => number;
  return factory(
    conduit.notSupported,
    routes.map((r) => r.hook),
    routes.map((r) => r.binding),
    HEARTBEAT,
    contain,
    CONTINUATION,
    preempted,
  );
}

/**
 * Generates the transfer classifier of one conduit: the dispatcher's switch, returning a class
 * number instead of calling a hook (`switch (id) { case N: return k; ... }`, ranges, else 0).
 */
function compileTransfer(conduit: ConduitDefinition, exact: readonly ExactRoute[], ranges: readonly RangeRoute[]): RegisterTransfer {
  const idRegister = conduit.functionIdWord >> 1;
  const readMasks = [(1 << idRegister) >>> 0];
  const writeMasks = [notSupportedMask(conduit)];
  const classes = new Map<string, number>([[`${readMasks[0]}:${writeMasks[0]}`, NOT_SUPPORTED_CLASS]]);
  const classOfRoute = (r: Route): number => {
    const [read, write] = r.masks;
    const key = `${read}:${write}`;
    let k = classes.get(key);
    if (k === undefined) {
      k = readMasks.length;
      readMasks.push(read);
      writeMasks.push(write);
      classes.set(key, k);
    }
    return k;
  };
  const word = conduit.functionIdWord;
  const high = conduit.functionIdHighWord;
  const lines = ['"use strict";', 'return function classOf(regs) {', `  const id = regs.u32[${word}];`];
  if (high !== undefined) lines.push(`  if (regs.u32[${high}] !== 0) return ${NOT_SUPPORTED_CLASS};`);
  if (exact.length) {
    lines.push('  switch (id) {');
    for (const r of exact) lines.push(`    case ${r.id >>> 0}: return ${classOfRoute(r)};`);
    lines.push('  }');
  }
  for (const r of ranges) lines.push(`  if (id >= ${r.first >>> 0} && id <= ${r.last >>> 0}) return ${classOfRoute(r)};`);
  lines.push(`  return ${NOT_SUPPORTED_CLASS};`, '};');
  const classOf = new Function(lines.join('\n'))() as (regs: RegisterFile) => number;
  return Object.freeze({ conduit, idRegister, classOf, readMasks: Object.freeze(readMasks), writeMasks: Object.freeze(writeMasks) });
}
