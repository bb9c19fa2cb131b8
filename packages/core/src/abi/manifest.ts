import { createHash } from 'node:crypto';
import type { AbiBuild, ServiceBehaviour } from './behaviour.js';
import { hex, type CallDecl, type ServiceDecl, type ServiceSurface } from './surface.js';

/**
 * Manifests: a service's or a build's ABI surface as canonical JSON (bigints as hex strings,
 * keys sorted, lists a guest cannot order in one order: canonicalSurface), printable and
 * hashable. Service packages check theirs in as `abi.json`.
 */

export interface ServiceManifest {
  readonly name: string;
  readonly version: string;
  readonly description?: string;
  readonly requires: readonly string[];
  readonly surface: unknown;
  /**
   * What the service's calls answer, probe by probe (behaviour/transcript.ts), as the build
   * composes and configures it. For hypercalls the results are the ABI: the manifest, its
   * hash and `abi.json` change when a handler does.
   */
  readonly behaviour?: ServiceBehaviour;
}

export interface BuildManifest {
  readonly format: 1;
  readonly name: string;
  readonly services: readonly ServiceManifest[];
  readonly hash: string;
}

/** JSON with bigints as hex strings and object keys sorted, so equal surfaces hash equal. */
export function canonicalJson(value: unknown, indent = 0): string {
  const normalise = (v: unknown): unknown => {
    if (typeof v === 'bigint') return hex(v);
    if (Array.isArray(v)) return v.map(normalise);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined && typeof x !== 'function') out[k] = normalise(x);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(normalise(value), null, indent);
}

export const sha256 = (text: string | Uint8Array): string => createHash('sha256').update(text).digest('hex');

/** Code-unit order: the same on every host (String#localeCompare depends on the locale's collation). */
export const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byNumber = (a: number | bigint, b: number | bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A call's place in the canonical order: conduit, function id, then (for a sub-op) its parent,
 * selector register and selector value — a parent before its sub-ops — then the name.
 */
export function compareCalls(a: CallDecl, b: CallDecl): number {
  return (
    byCodeUnits(a.conduit, b.conduit) ||
    byNumber(a.id >>> 0, b.id >>> 0) ||
    byNumber(a.subOf ? 1 : 0, b.subOf ? 1 : 0) ||
    byCodeUnits(a.subOf?.call ?? '', b.subOf?.call ?? '') ||
    byNumber(a.subOf?.selector ?? 0, b.subOf?.selector ?? 0) ||
    byNumber((a.subOf?.value ?? 0) >>> 0, (b.subOf?.value ?? 0) >>> 0) ||
    byCodeUnits(a.name, b.name)
  );
}

const byName = <T extends { readonly name: string }>(list: readonly T[]): T[] => [...list].sort((a, b) => byCodeUnits(a.name, b.name));

/**
 * The surface with every list whose order a guest cannot see in one canonical order, so that
 * declaring the same ABI in another order gives the same manifest, abi.json and build hash:
 * calls by conduit, id, sub-op position and name; features, version selectors and constant
 * registers by name; a constant register's accepted values ascending; continuations by call.
 * Kept as declared: a version selector's `values` (oldest first: "the oldest" is what a record
 * without a selection gets) and call signatures (probes are generated in argument order).
 */
export function canonicalSurface(surface: ServiceSurface): ServiceSurface {
  return {
    ...surface,
    calls: [...surface.calls].sort(compareCalls),
    features: byName(surface.features),
    ...(surface.versions ? { versions: byName(surface.versions) } : {}),
    ...(surface.constants ? { constants: byName(surface.constants).map((c) => ({ ...c, accepts: [...c.accepts].sort(byNumber) })) } : {}),
    ...(surface.continuations
      ? {
          continuations: [...surface.continuations]
            .sort((a, b) => byCodeUnits(a.call, b.call))
            .map((k) => ({ ...k, encoding: [...k.encoding].sort((a, b) => a.reg - b.reg || a.shift - b.shift) })),
        }
      : {}),
  };
}

export function surfaceManifest(surface: ServiceSurface): unknown {
  return JSON.parse(canonicalJson(canonicalSurface(surface)));
}

/** A service's manifest; with `hv` (a build containing it) also its behaviour in that build. */
export function serviceManifest(s: ServiceDecl, hv?: AbiBuild): ServiceManifest {
  return {
    name: s.name,
    version: s.version,
    ...(s.description ? { description: s.description } : {}),
    requires: [...(s.requires ?? [])].sort(byCodeUnits),
    surface: surfaceManifest(s.surface),
    ...(hv ? { behaviour: hv.behaviour.serviceBehaviour(s) } : {}),
  };
}

/**
 * A service's manifest without its own version: what `abi.json` holds, so the file changes
 * only when the surface or the behaviour does (and lint compares it with the last release).
 * The behaviour is the service's in `hv`: a build of the service and the services it requires,
 * with its default options.
 */
export function serviceAbiFile(s: ServiceDecl, hv: AbiBuild): string {
  const { version: _version, ...rest } = serviceManifest(s, hv);
  return canonicalJson(rest, 2) + '\n';
}

/** A build's manifest: every service's surface and behaviour as this build configures it. */
export function buildManifest(hv: AbiBuild): BuildManifest {
  const list = [...hv.services].sort((a, b) => byCodeUnits(a.name, b.name)).map((s) => serviceManifest(s, hv));
  return { format: 1, name: hv.name, services: list, hash: sha256(canonicalJson(list)) };
}
