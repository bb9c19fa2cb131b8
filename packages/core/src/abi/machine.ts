/**
 * Guest ABI that lives in a machine package rather than a service: the board's memory map, its
 * interrupt controller's identification and trigger modes, how a trapping instruction reaches a
 * conduit, the CPU identification a guest reads. A machine package declares these facts as plain
 * data (`machineAbi()` from its `./abi` export, checked in as `abi.json`), and this module says
 * what a change to them means for the machine's version line, with the rule services follow:
 * anything an existing VM would see differently is major, new ABI is minor, documentation patch
 * (semver.org §6–§8; the model for a generic, path-addressed report is libabigail's `abidiff`,
 * which names each changed entity and its old and new value).
 *
 * The manifest's `surface` is a tree of facts. Classification flattens it to paths:
 *
 * - an object is a grouping: each key is a path segment (`gic.distributor.GICD_IIDR`);
 * - every other value (number, string, boolean, null, array) is one fact, compared whole (an
 *   array is an ordered value, such as a device-tree `compatible` list);
 * - `description` at any level documents the facts under it: a change to it alone is a patch;
 * - `affects` at any level (a string) says which VMs see the facts under it, nearest first
 *   ("VMs booted from a Linux Image"); without one a fact concerns every VM on the machine.
 *
 * A fact removed or changed is major (an existing VM reads something else, or loses something
 * it used); a fact added is minor (declared ABI the previous release did not promise); a
 * description, `affects` text or the machine's name alone is a patch. A waiver (path or path
 * prefix → reason, as a changeset's "Guest ABI waiver" line) turns a change under that path into
 * an accepted bug fix: a patch carrying the reason.
 */

import { maxBump, type AbiChange, type AbiChangeEntry, type AbiChangeKind, type Bump } from './diff.js';

/** What a machine package's `./abi` export returns (`machineAbi()`), and its abi.json. */
export interface MachineAbi {
  /** The package, e.g. `@plugvisor/machine-arm64`. */
  readonly name: string;
  readonly description?: string;
  /** The facts: plain JSON data, grouped by objects (see the module comment). */
  readonly surface: Readonly<Record<string, unknown>>;
}

export interface ClassifyMachineOptions {
  /**
   * Fact path (or a prefix of paths, ending at a segment) → reason: a removed or changed fact
   * there is an accepted bug fix, a patch, and the reason goes into the notes.
   */
  readonly waivers?: ReadonlyMap<string, string>;
}

/** A flattened fact: its value, the VMs it concerns. */
export interface MachineFact {
  readonly value: unknown;
  readonly affects: string;
}

/** The audience of a fact that names none. */
export const EVERY_MACHINE_VM = 'every VM on this machine';

const RESERVED = new Set(['description', 'affects']);
type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A path segment: bare when it is a plain word, else JSON-quoted in brackets. */
const segment = (key: string): string => (/^[A-Za-z0-9_:#+@/,-]+$/.test(key) ? key : `[${JSON.stringify(key)}]`);
const join = (path: string, key: string): string => {
  const s = segment(key);
  return path === '' ? s : s.startsWith('[') ? path + s : `${path}.${s}`;
};

/**
 * The facts of a machine surface by path, and the documentation (`description` and `affects`
 * texts) by the path of the object holding it.
 */
export function flattenMachineFacts(surface: unknown): { facts: Map<string, MachineFact>; docs: Map<string, string> } {
  const facts = new Map<string, MachineFact>();
  const docs = new Map<string, string>();
  const walk = (node: Obj, path: string, affects: string) => {
    const here = typeof node.affects === 'string' ? node.affects : affects;
    for (const k of ['description', 'affects']) {
      if (node[k] !== undefined) docs.set(path === '' ? k : `${path}.${k}`, typeof node[k] === 'string' ? (node[k] as string) : JSON.stringify(node[k]));
    }
    for (const key of Object.keys(node).sort()) {
      if (RESERVED.has(key)) continue;
      const v = node[key];
      if (v === undefined) continue;
      const p = join(path, key);
      if (isObject(v) && Object.keys(v).some((k) => !RESERVED.has(k))) walk(v, p, here);
      else if (isObject(v)) {
        // only documentation: an empty group is a fact of its own ({}), documented
        walk(v, p, here);
        facts.set(p, { value: {}, affects: typeof v.affects === 'string' ? v.affects : here });
      } else facts.set(p, { value: v, affects: here });
    }
  };
  if (isObject(surface)) walk(surface, '', EVERY_MACHINE_VM);
  return { facts, docs };
}

/** A fact's value as a message shows it: integers in hex, hex strings as they are, other strings quoted. */
export function showFact(v: unknown): string {
  if (v === undefined) return 'none';
  if (typeof v === 'number' && Number.isInteger(v)) return v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
  if (typeof v === 'string') return /^-?0x[0-9a-f]+$/i.test(v) ? v : `'${v}'`;
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && Number.isInteger(x) ? showFact(x) : x));
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The waiver covering `path`: one for the path itself or for a group above it (longest first). */
function waiverFor(path: string, waivers: ReadonlyMap<string, string> | undefined): string | undefined {
  if (!waivers) return undefined;
  let best: string | undefined;
  for (const k of waivers.keys()) {
    const covers = k === path || path.startsWith(`${k}.`) || path.startsWith(`${k}[`);
    if (covers && (best === undefined || k.length > best.length)) best = k;
  }
  return best === undefined ? undefined : waivers.get(best);
}

/**
 * Classifies old → new (two machine manifests: `machineAbi()` values, abi.json files or ledger
 * entries; `version` and `waivers` of a ledger entry are ignored). Same shape as
 * classifyAbiChange: every difference an entry naming the fact's path, old → new, and the VMs
 * that see it; `bump` the largest.
 */
export function classifyMachineAbiChange(oldM: MachineAbi, newM: MachineAbi, options: ClassifyMachineOptions = {}): AbiChange {
  const changes: AbiChangeEntry[] = [];
  const note = (bump: Bump, kind: AbiChangeKind, subject: string, message: string, affects: string, waiver?: string) => {
    changes.push({ bump, kind, subject, message, affects, ...(waiver ? { waiver } : {}) });
  };
  const was = flattenMachineFacts(oldM.surface);
  const now = flattenMachineFacts(newM.surface);
  const paths = [...new Set([...was.facts.keys(), ...now.facts.keys()])].sort();
  for (const path of paths) {
    const a = was.facts.get(path);
    const b = now.facts.get(path);
    const subject = `fact ${path}`;
    if (a && b && same(a.value, b.value)) continue;
    if (!b) {
      const w = waiverFor(path, options.waivers);
      const message = `${path} removed (was ${showFact(a!.value)})`;
      if (w) note('patch', 'removed', subject, `waived: ${message}`, a!.affects, w);
      else note('major', 'removed', subject, message, a!.affects);
    } else if (!a) {
      note('minor', 'added', subject, `new fact ${path} = ${showFact(b.value)}`, b.affects);
    } else {
      const w = waiverFor(path, options.waivers);
      const message = `${path} ${showFact(a.value)} → ${showFact(b.value)}`;
      if (w) note('patch', 'changed', subject, `waived: ${message}`, a.affects, w);
      else note('major', 'changed', subject, message, a.affects);
    }
  }
  const docPaths = [...new Set([...was.docs.keys(), ...now.docs.keys()])].sort();
  for (const path of docPaths) {
    const a = was.docs.get(path);
    const b = now.docs.get(path);
    if (a === b) continue;
    note('patch', 'changed', `documentation ${path}`, `${path} ${a === undefined ? 'added' : b === undefined ? 'removed' : 'changed'}`, 'none');
  }
  const meta = (m: MachineAbi) => {
    const { surface: _s, version: _v, waivers: _w, ...rest } = m as MachineAbi & { version?: unknown; waivers?: unknown };
    return rest as Obj;
  };
  const restOld = meta(oldM);
  const restNew = meta(newM);
  for (const k of [...new Set([...Object.keys(restOld), ...Object.keys(restNew)])].sort()) {
    if (same(restOld[k], restNew[k])) continue;
    const message = k === 'description' ? 'machine description changed' : `machine ${k} ${showFact(restOld[k])} → ${showFact(restNew[k])}`;
    note('patch', 'changed', 'package', message, 'none');
  }
  let bump: Bump = 'none';
  for (const c of changes) bump = maxBump(bump, c.bump);
  const reasons = changes.filter((c) => c.bump !== 'none').map((c) => `${c.bump}: ${c.message}${c.waiver ? ` (${c.waiver})` : ''}`);
  return { bump, reasons, changes };
}
