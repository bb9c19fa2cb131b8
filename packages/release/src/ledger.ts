/**
 * The release ledger: `packages/<pkg>/abi/releases/<version>.json` holds what a released version
 * of a service (or machine) declared — its abi.json object plus `"version"` and, when the release
 * accepted waived behaviour changes, `"waivers": { CALL: reason }` — as canonical JSON
 * (`canonicalJson(entry, 2) + "\n"`). Only the release step writes it; lint, `plugvisor abi diff`
 * and the release notes read it.
 */

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '@plugvisor/core';

export type LedgerEntry = Record<string, unknown> & { readonly version: string; readonly surface: unknown; readonly waivers?: Record<string, string> };

export const ledgerDir = (pkgDir: string) => join(pkgDir, 'abi', 'releases');
export const ledgerPath = (pkgDir: string, version: string) => join(ledgerDir(pkgDir), `${version}.json`);

/** The entry for a release: abi.json's object, the version, and the waivers it accepted (if any). */
export function ledgerEntry(abi: Record<string, unknown>, version: string, waivers?: ReadonlyMap<string, string>): LedgerEntry {
  const { version: _v, waivers: _w, ...rest } = abi;
  const entry: Record<string, unknown> = { ...rest, version };
  if (waivers && waivers.size) entry.waivers = Object.fromEntries([...waivers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return entry as LedgerEntry;
}

export const ledgerText = (entry: LedgerEntry) => canonicalJson(entry, 2) + '\n';

export function readLedgerEntry(pkgDir: string, version: string): LedgerEntry | undefined {
  const file = ledgerPath(pkgDir, version);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as LedgerEntry;
}

/** Writes the entry; false when the file already holds exactly it (so a second run changes nothing). */
export function writeLedgerEntry(pkgDir: string, entry: LedgerEntry): boolean {
  const file = ledgerPath(pkgDir, entry.version);
  const text = ledgerText(entry);
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return false;
  mkdirSync(ledgerDir(pkgDir), { recursive: true });
  writeFileSync(file, text);
  return true;
}

/** x.y.z[-pre] as numbers and prerelease identifiers (semver.org items 2, 9 and 11). */
function parseVersion(v: string): { core: [number, number, number]; pre: string[] } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$/.exec(v);
  return m ? { core: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split('.') : [] } : undefined;
}

/** Semver precedence (semver.org item 11): negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  if (!x || !y) return a < b ? -1 : a > b ? 1 : 0;
  for (let i = 0; i < 3; i++) if (x.core[i] !== y.core[i]) return (x.core[i] as number) - (y.core[i] as number);
  if (!x.pre.length || !y.pre.length) return y.pre.length - x.pre.length; // a release ranks above its prereleases
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn) return Number(p) - Number(q);
    if (pn !== qn) return pn ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

/** Released versions with a ledger entry, lowest first. */
export function ledgerVersions(pkgDir: string): string[] {
  const dir = ledgerDir(pkgDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter((v) => parseVersion(v))
    .sort(compareVersions);
}

/**
 * The release a new version follows: the ledger entry of the version the package had before the
 * release step, or else the newest entry below the new version; undefined for a first release.
 */
export function previousLedgerEntry(pkgDir: string, oldVersion: string, newVersion: string): LedgerEntry | undefined {
  const own = readLedgerEntry(pkgDir, oldVersion);
  if (own) return own;
  const below = ledgerVersions(pkgDir).filter((v) => compareVersions(v, newVersion) < 0);
  const last = below[below.length - 1];
  return last === undefined ? undefined : readLedgerEntry(pkgDir, last);
}
