import { createHash } from 'node:crypto';
import type { AbiBuild, ServiceBehaviour } from './behaviour.js';
import { hex, type ServiceDecl, type ServiceSurface } from './surface.js';

/**
 * Manifests: a service's or a build's ABI surface as canonical JSON (bigints as hex strings,
 * keys sorted), printable and hashable. Service packages check theirs in as `abi.json`.
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

export function surfaceManifest(surface: ServiceSurface): unknown {
  return JSON.parse(canonicalJson(surface));
}

/** A service's manifest; with `hv` (a build containing it) also its behaviour in that build. */
export function serviceManifest(s: ServiceDecl, hv?: AbiBuild): ServiceManifest {
  return {
    name: s.name,
    version: s.version,
    ...(s.description ? { description: s.description } : {}),
    requires: [...(s.requires ?? [])].sort(),
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
  const list = [...hv.services].sort((a, b) => a.name.localeCompare(b.name)).map((s) => serviceManifest(s, hv));
  return { format: 1, name: hv.name, services: list, hash: sha256(canonicalJson(list)) };
}
