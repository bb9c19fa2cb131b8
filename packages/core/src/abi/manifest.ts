import { createHash } from 'node:crypto';
import type { ServicePlugin } from '../plugin/service.js';
import { hex, type ServiceSurface } from './surface.js';

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

export function serviceManifest(s: ServicePlugin<any>): ServiceManifest {
  return {
    name: s.name,
    version: s.version,
    ...(s.description ? { description: s.description } : {}),
    requires: [...(s.requires ?? [])].sort(),
    surface: surfaceManifest(s.surface),
  };
}

/**
 * A service's manifest without its own version: what `abi.json` holds, so the file changes
 * only when the surface does (and the version check compares it with the last release).
 */
export function serviceAbiFile(s: ServicePlugin<any>): string {
  const { version: _version, ...rest } = serviceManifest(s);
  return canonicalJson(rest, 2) + '\n';
}

export function buildManifest(name: string, services: readonly ServicePlugin<any>[]): BuildManifest {
  const list = [...services].sort((a, b) => a.name.localeCompare(b.name)).map(serviceManifest);
  return { format: 1, name, services: list, hash: sha256(canonicalJson(list)) };
}
