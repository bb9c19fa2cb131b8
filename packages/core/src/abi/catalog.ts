import { ComposeError } from '../errors.js';
import {
  hex,
  continuationMask,
  type CallDecl,
  type ConstantRegisterDecl,
  type ContinuationDecl,
  type FeatureDecl,
  type ServiceDecl,
  type VersionDecl,
} from './surface.js';

/**
 * The union of every service's surface in a build, indexed, with every rule a composed
 * build must satisfy checked once, up front. A conflict names both packages.
 */

export interface Owned<T, S extends ServiceDecl = ServiceDecl> {
  readonly decl: T;
  readonly service: S;
}

export type RegisterEntry =
  | {
      readonly kind: 'bitmap';
      readonly id: bigint;
      readonly name: string;
      /** bit number → feature name */
      readonly bits: ReadonlyMap<number, string>;
      readonly mask: bigint;
      /** Enumerated only while non-zero: every bit declared `listed: 'when-set'` (surface.ts). */
      readonly listedWhenSet: boolean;
    }
  | { readonly kind: 'version'; readonly id: bigint; readonly name: string; readonly version: string }
  | { readonly kind: 'constant'; readonly id: bigint; readonly name: string; readonly decl: ConstantRegisterDecl };

/** What the catalog needs of the build's conduits: a call's conduit by name (undefined: the build lacks it). */
export interface CatalogConduits {
  conduit(name: string): { readonly name: string; readonly functionIdWord: number } | undefined;
}

export class AbiCatalog<S extends ServiceDecl = ServiceDecl> {
  readonly services: ReadonlyMap<string, S>;
  readonly features: ReadonlyMap<string, Owned<FeatureDecl, S>>;
  readonly versions: ReadonlyMap<string, Owned<VersionDecl, S>>;
  readonly calls: ReadonlyMap<string, Owned<CallDecl, S>>;
  /** Parent call name → its sub-ops (CallDecl.subOf), in declaration order. */
  readonly subOps: ReadonlyMap<string, ReadonlyArray<Owned<CallDecl, S>>>;
  /** Sorted ascending by id: KVM_GET_REG_LIST order for the firmware block. */
  readonly registers: readonly RegisterEntry[];
  readonly registerById: ReadonlyMap<bigint, RegisterEntry>;
  /** Preemptible call name → its continuation encoding (ServiceSurface.continuations). */
  readonly continuations: ReadonlyMap<string, Owned<ContinuationDecl, S>>;
  /**
   * Parent call name → the continuation bits in its sub-ops' selector register (a 64-bit mask)
   * and what a sub-op without a continuation answers when they are non-zero (ContinuationDecl).
   */
  readonly selectorFields: ReadonlyMap<string, { readonly mask: bigint; readonly answer?: { readonly reg: number; readonly value: number } }>;

  /** `conduits`: the build's conduits (Hypervisor.conduits), passed in as data. */
  constructor(plugins: readonly S[], conduits: CatalogConduits) {
    const problems: string[] = [];
    const services = new Map<string, S>();
    const features = new Map<string, Owned<FeatureDecl, S>>();
    const versions = new Map<string, Owned<VersionDecl, S>>();
    const calls = new Map<string, Owned<CallDecl, S>>();
    const subOps = new Map<string, Owned<CallDecl, S>[]>();
    const registerOwners = new Map<bigint, { entry: RegisterEntry; owners: string[] }>();
    const bitOwners = new Map<string, string>(); // `${id}:${bit}` → package

    for (const p of plugins) {
      const prev = services.get(p.name);
      if (prev) {
        problems.push(`service ${p.name} is in the build twice (${prev.version} and ${p.version})`);
        continue;
      }
      services.set(p.name, p);
    }

    const claim = <T extends { name: string }>(
      map: Map<string, Owned<T, S>>,
      kind: string,
      decl: T,
      service: S,
    ) => {
      const prev = map.get(decl.name);
      if (prev) {
        problems.push(`${kind} '${decl.name}' is declared by both ${prev.service.name} and ${service.name}`);
        return;
      }
      map.set(decl.name, { decl, service });
    };

    const claimRegister = (id: bigint, name: string, service: string, entry: RegisterEntry) => {
      const prev = registerOwners.get(id);
      if (!prev) {
        registerOwners.set(id, { entry, owners: [service] });
        return;
      }
      // Several services may contribute bits to one bitmap register; nothing else is shared.
      if (prev.entry.kind === 'bitmap' && entry.kind === 'bitmap' && prev.entry.name === name) {
        prev.owners.push(service);
        return;
      }
      problems.push(
        `firmware register ${hex(id)} (${name}) is declared by both ${prev.owners.join(', ')} and ${service}`,
      );
    };

    for (const p of services.values()) {
      const s = p.surface;
      for (const f of s.features) {
        claim(features, 'feature', f, p);
        if (f.register) {
          const { id, name, bit } = f.register;
          if (!Number.isInteger(bit) || bit < 0 || bit > 63) {
            problems.push(`${p.name}: feature '${f.name}' maps to invalid bit ${bit} of ${name}`);
            continue;
          }
          const key = `${id}:${bit}`;
          const owner = bitOwners.get(key);
          if (owner) {
            problems.push(`bit ${bit} of ${name} (${hex(id)}) is claimed by both ${owner} and ${p.name}`);
            continue;
          }
          bitOwners.set(key, p.name);
          claimRegister(id, name, p.name, { kind: 'bitmap', id, name, bits: new Map(), mask: 0n, listedWhenSet: true });
        }
      }
      for (const v of s.versions ?? []) {
        claim(versions, 'version selector', v, p);
        if (v.values.length === 0 || !v.values.some((x) => x.name === v.default)) {
          problems.push(`${p.name}: version selector '${v.name}' has no value named '${v.default}' (its default)`);
        }
        for (let i = 1; i < v.values.length; i++) {
          if (v.values[i]!.value <= v.values[i - 1]!.value) {
            problems.push(`${p.name}: version selector '${v.name}' values are not in ascending order`);
          }
        }
        if (v.register) {
          claimRegister(v.register.id, v.register.name, p.name, {
            kind: 'version',
            id: v.register.id,
            name: v.register.name,
            version: v.name,
          });
        }
      }
      for (const c of s.constants ?? []) {
        if (!c.accepts.includes(c.value)) {
          problems.push(`${p.name}: constant register ${c.name} does not accept its own value ${hex(c.value)}`);
        }
        claimRegister(c.id, c.name, p.name, { kind: 'constant', id: c.id, name: c.name, decl: c });
      }
      for (const c of s.calls) claim(calls, 'call', c, p);
    }

    // Calls: conduit known, gating feature and version bounds declared by the same service.
    const byConduit = new Map<string, Owned<CallDecl, S>[]>();
    for (const owned of calls.values()) {
      const { decl: c, service } = owned;
      if (!conduits.conduit(c.conduit)) problems.push(`${service.name}: call ${c.name} uses unknown conduit '${c.conduit}'`);
      const f = features.get(c.feature);
      if (!f) problems.push(`${service.name}: call ${c.name} is gated by undeclared feature '${c.feature}'`);
      else if (f.service !== service)
        problems.push(`${service.name}: call ${c.name} is gated by feature '${c.feature}' of ${f.service.name}`);
      for (const bound of [c.since && { v: c.since.version, x: c.since.minimum }, c.until && { v: c.until.version, x: c.until.maximum }]) {
        if (!bound) continue;
        const v = versions.get(bound.v);
        if (!v || v.service !== service) problems.push(`${service.name}: call ${c.name} names unknown version selector '${bound.v}'`);
        else if (!v.decl.values.some((x) => x.name === bound.x))
          problems.push(`${service.name}: call ${c.name} names unknown ${bound.v} version '${bound.x}'`);
      }
      const last = c.last ?? c.id;
      if (!(c.id >= 0 && last <= 0xffff_ffff && last >= c.id))
        problems.push(`${service.name}: call ${c.name} has an invalid id range ${hex(c.id)}..${hex(last)}`);
      if (c.subOf) {
        // A sub-op has no function id of its own: checked against its parent, not the conduit's ids.
        const list = subOps.get(c.subOf.call) ?? [];
        list.push(owned);
        subOps.set(c.subOf.call, list);
        continue;
      }
      const list = byConduit.get(c.conduit) ?? [];
      list.push(owned);
      byConduit.set(c.conduit, list);
    }
    // Sub-ops: the parent exists on the same conduit (a single id, not itself a sub-op), the
    // sub-op carries its id, one selector register per parent, selector values unique per parent.
    for (const [parentName, list] of subOps) {
      const parent = calls.get(parentName);
      const selectors = new Map<number, string>();
      const values = new Map<number, string>();
      for (const { decl: c, service } of list) {
        const sub = c.subOf!;
        const who = `${service.name}: sub-op ${c.name}`;
        if (!parent) {
          problems.push(`${who} names parent call '${parentName}', which no service in the build declares`);
          continue;
        }
        const p = parent.decl;
        if (p.subOf) problems.push(`${who} names ${p.name}, itself a sub-op of ${p.subOf.call} (one level only)`);
        if (p.conduit !== c.conduit) problems.push(`${who} is on conduit '${c.conduit}' but its parent ${p.name} (${parent.service.name}) is on '${p.conduit}'`);
        if (p.last !== undefined && p.last !== p.id) problems.push(`${who}: its parent ${p.name} is an id range`);
        if (c.id !== p.id || (c.last !== undefined && c.last !== c.id))
          problems.push(`${who} must carry its parent's id ${hex(p.id)} (it has ${hex(c.id)}${c.last !== undefined ? `..${hex(c.last)}` : ''})`);
        const conduit = conduits.conduit(c.conduit);
        if (!Number.isInteger(sub.selector) || sub.selector < 0 || sub.selector > 30 || (conduit && sub.selector === conduit.functionIdWord >> 1))
          problems.push(`${who} selects on x${sub.selector}, which cannot be a selector register`);
        selectors.set(sub.selector, selectors.has(sub.selector) ? selectors.get(sub.selector)! : c.name);
        if (!Number.isInteger(sub.value) || sub.value < 0 || sub.value > 0xffff_ffff)
          problems.push(`${who} has selector value ${sub.value}, not a u32`);
        const prev = values.get(sub.value >>> 0);
        if (prev !== undefined) problems.push(`sub-op ${hex(sub.value)} of ${parentName} is claimed by ${prev} and ${c.name}`);
        else values.set(sub.value >>> 0, c.name);
      }
      if (selectors.size > 1)
        problems.push(`sub-ops of ${parentName} disagree on the selector register: ${[...selectors].map(([r, n]) => `x${r} (${n})`).join(', ')}`);
    }
    // Two calls on one conduit must not overlap; report each overlapping pair once.
    for (const [conduit, list] of byConduit) {
      const sorted = [...list].sort((a, b) => a.decl.id - b.decl.id);
      for (let i = 0; i < sorted.length; i++) {
        const a = sorted[i]!;
        for (let j = i + 1; j < sorted.length && sorted[j]!.decl.id <= (a.decl.last ?? a.decl.id); j++) {
          const b = sorted[j]!;
          const who = a.service === b.service ? `${a.service.name} (twice)` : `${a.service.name} and ${b.service.name}`;
          problems.push(
            `${conduit} call id ${hex(b.decl.id)} is claimed by ${a.decl.name} and ${b.decl.name}: ${who}`,
          );
        }
      }
    }

    // Continuations: one per call, declared by the call's own service, fields inside x0..x30 and
    // 64 bits, not overlapping; a field in a sub-op's selector register must leave the selector
    // values' bits alone, and every such sub-op of one parent must agree on it.
    const continuations = new Map<string, Owned<ContinuationDecl, S>>();
    const selectorFields = new Map<string, { mask: bigint; answer?: { reg: number; value: number }; by: string }>();
    for (const p of services.values()) {
      for (const k of p.surface.continuations ?? []) {
        const who = `${p.name}: continuation of ${k.call}`;
        const call = calls.get(k.call);
        if (!call) {
          problems.push(`${who} names a call no service in the build declares`);
          continue;
        }
        if (call.service !== p) problems.push(`${who} belongs to ${call.service.name}, which declares the call`);
        if (continuations.has(k.call)) problems.push(`${who} is declared twice`);
        continuations.set(k.call, { decl: k, service: p });
        if (!Array.isArray(k.encoding) || k.encoding.length === 0) {
          problems.push(`${who} has no encoding fields`);
          continue;
        }
        const used = new Map<number, bigint>();
        for (const f of k.encoding) {
          const ok = Number.isInteger(f.reg) && f.reg >= 0 && f.reg <= 30 && Number.isInteger(f.shift) && f.shift >= 0 && Number.isInteger(f.width) && f.width >= 1 && f.shift + f.width <= 64;
          if (!ok) {
            problems.push(`${who}: field '${f.name}' must be x0..x30 bits within 0..63 (x${f.reg}, shift ${f.shift}, width ${f.width})`);
            continue;
          }
          const bits = continuationMask([f], f.reg);
          if ((used.get(f.reg) ?? 0n) & bits) problems.push(`${who}: field '${f.name}' overlaps another field of x${f.reg}`);
          used.set(f.reg, (used.get(f.reg) ?? 0n) | bits);
        }
        const sub = call.decl.subOf;
        if (!sub) continue;
        const mask = used.get(sub.selector) ?? 0n;
        if (mask === 0n) continue;
        if ((BigInt(sub.value >>> 0) & mask) !== 0n) problems.push(`${who}: its field in x${sub.selector} overlaps the selector value ${hex(sub.value)}`);
        const prev = selectorFields.get(sub.call);
        const answer = k.otherSubOps;
        if (prev && (prev.mask !== mask || JSON.stringify(prev.answer) !== JSON.stringify(answer))) {
          problems.push(`${who}: its field in the selector x${sub.selector} of ${sub.call} differs from ${prev.by}'s`);
        } else selectorFields.set(sub.call, { mask, ...(answer ? { answer } : {}), by: k.call });
      }
    }
    for (const [parent, { mask }] of selectorFields) {
      for (const c of subOps.get(parent) ?? []) {
        if ((BigInt(c.decl.subOf!.value >>> 0) & mask) !== 0n) problems.push(`sub-op ${c.decl.name} of ${parent}: selector value ${hex(c.decl.subOf!.value)} overlaps the continuation field of the selector`);
      }
    }

    for (const p of services.values()) {
      for (const r of p.requires ?? []) {
        if (!services.has(r)) problems.push(`${p.name} requires ${r}, which is not in the build`);
      }
    }

    if (problems.length) {
      throw new ComposeError(`cannot compose the build:\n  - ${problems.join('\n  - ')}`, problems);
    }

    // Fill bitmap registers' bit maps now that every claim is known to be unique.
    for (const { decl } of features.values()) {
      if (!decl.register) continue;
      const entry = registerOwners.get(decl.register.id)!.entry as Extract<RegisterEntry, { kind: 'bitmap' }>;
      (entry.bits as Map<number, string>).set(decl.register.bit, decl.name);
      (entry as { mask: bigint }).mask = entry.mask | (1n << BigInt(decl.register.bit));
      if (decl.register.listed !== 'when-set') (entry as { listedWhenSet: boolean }).listedWhenSet = false;
    }

    this.services = services;
    this.features = features;
    this.versions = versions;
    this.calls = calls;
    this.subOps = subOps;
    this.continuations = continuations;
    this.selectorFields = new Map([...selectorFields].map(([k, { mask, answer }]) => [k, answer ? { mask, answer } : { mask }]));
    this.registers = [...registerOwners.values()].map((o) => o.entry).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.registerById = new Map(this.registers.map((r) => [r.id, r]));
  }

  /** Numeric value of a named version of a selector. */
  versionValue(selector: string, name: string): number | undefined {
    return this.versions.get(selector)?.decl.values.find((v) => v.name === name)?.value;
  }
}
