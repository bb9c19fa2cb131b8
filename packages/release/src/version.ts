/**
 * `pnpm changeset …`: every command goes to the changesets CLI unchanged; `version` also cuts the
 * release ledger and the Guest ABI notes, which changesets cannot (its changelog generator is
 * told no package name: docs/modifying-changelog-format.md).
 *
 * `version`:
 *  1. before: reads the pending changesets (.changeset/*.md) — refuses, before anything is
 *     written, a changeset naming packages with an empty summary, a waiver without a reason, or a
 *     service whose pending bump is smaller than the change its abi.json makes since its current
 *     release's ledger entry (the same classification lint applies); collects each package's
 *     "Guest ABI waiver: CALL: why" lines;
 *  2. runs `changeset version` (bumps, CHANGELOG entries through @plugvisor/release/changelog);
 *  3. after: for every service and machine package whose version changed, writes the ledger entry
 *     abi/releases/<new>.json (abi.json + version + waivers) and puts a "### Guest ABI" section
 *     right under the new "## <version>" heading of its CHANGELOG.md.
 * Steps 1 and 3 write nothing that is already there: a second run changes nothing.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import * as core from '@plugvisor/core';
import { bumpAtLeast, classifyAbiChange, releaseStep, type AbiChange, type Bump } from '@plugvisor/core';
import { ledgerEntry, ledgerPath, previousLedgerEntry, readLedgerEntry, writeLedgerEntry, type LedgerEntry } from './ledger.js';
import { guestAbiSection, insertGuestAbi, type Classifier } from './notes.js';
import { parseChangesetFile, parseSummary, type BumpType, type PendingChangeset } from './summary.cjs';

export type PackageKind = 'service' | 'machine' | 'other';

export interface WorkspacePackage {
  readonly name: string;
  readonly dir: string;
  readonly version: string;
  readonly kind: PackageKind;
}

/** The workspace root: the nearest directory up from `from` holding .changeset/config.json. */
export function findRoot(from: string): string | undefined {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, '.changeset', 'config.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** packages/<dir>/package.json of the workspace (pnpm-workspace.yaml: packages/*). */
export function workspacePackages(root: string): WorkspacePackage[] {
  const base = join(root, 'packages');
  if (!existsSync(base)) return [];
  const out: WorkspacePackage[] = [];
  for (const d of readdirSync(base).sort()) {
    const file = join(base, d, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string; plugvisor?: { service?: boolean; machine?: boolean } };
    if (!pkg.name) continue;
    const kind: PackageKind = pkg.plugvisor?.service ? 'service' : pkg.plugvisor?.machine ? 'machine' : 'other';
    out.push({ name: pkg.name, dir: join(base, d), version: String(pkg.version ?? ''), kind });
  }
  return out;
}

export interface Pending {
  readonly changesets: readonly PendingChangeset[];
  /** package → call → reason, from every pending changeset naming the package. */
  readonly waivers: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /** package → highest bump its changesets name. */
  readonly bumps: ReadonlyMap<string, BumpType>;
  /** One line each: what makes the release impossible. */
  readonly problems: readonly string[];
}

const RANK: Record<BumpType, number> = { none: 0, patch: 1, minor: 2, major: 3 };

/** The pending changesets of the workspace, as changesets will apply them. */
export function readPending(root: string): Pending {
  const dir = join(root, '.changeset');
  const changesets: PendingChangeset[] = [];
  const problems: string[] = [];
  const waivers = new Map<string, Map<string, string>>();
  const bumps = new Map<string, BumpType>();
  for (const f of existsSync(dir) ? readdirSync(dir).sort() : []) {
    if (!f.endsWith('.md') || f === 'README.md') continue;
    const parsed = parseChangesetFile(f.slice(0, -3), readFileSync(join(dir, f), 'utf8'));
    if ('error' in parsed) {
      problems.push(`.changeset/${f}: ${parsed.error}`);
      continue;
    }
    changesets.push(parsed);
    const named = [...parsed.releases].filter(([, t]) => t !== 'none').map(([n]) => n);
    if (named.length === 0) continue; // an empty changeset (`changeset --empty`) releases nothing
    const summary = parseSummary(parsed.summary);
    for (const p of summary.problems) problems.push(`.changeset/${f} (${named.join(', ')}): ${p}`);
    for (const [name, type] of parsed.releases) {
      if (RANK[type] > RANK[bumps.get(name) ?? 'none']) bumps.set(name, type);
      for (const w of summary.waivers) {
        if (!waivers.has(name)) waivers.set(name, new Map());
        waivers.get(name)!.set(w.call, w.reason);
      }
    }
  }
  return { changesets, waivers, bumps, problems };
}

/** The version changesets makes of `v` for a bump (node-semver's inc for a release). */
export function bumped(v: string, type: BumpType): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(v);
  if (!m || type === 'none') return v;
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (type === 'major') return `${a + 1}.0.0`;
  if (type === 'minor') return `${a}.${b + 1}.0`;
  return `${a}.${b}.${c + 1}`;
}

function readAbi(pkg: WorkspacePackage): Record<string, unknown> | undefined {
  const file = join(pkg.dir, 'abi.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
}

/** How a package's ledger entries are compared: services by classifyAbiChange, machines by core's machine classifier. */
export function classifierFor(kind: PackageKind): Classifier | undefined {
  if (kind === 'service') return (a, b, o) => classifyAbiChange(a as never, b as never, o.waivers ? { waivers: o.waivers } : {});
  const machine = (core as Record<string, unknown>).classifyMachineAbiChange;
  if (kind === 'machine' && typeof machine === 'function') {
    return (a, b, o) => (machine as (x: unknown, y: unknown, o: unknown) => AbiChange)(a, b, o.waivers ? { waivers: o.waivers } : {});
  }
  return undefined;
}

/** What would refuse the release: a service's pending bump smaller than its ABI change since its current release. */
export function checkPendingBumps(packages: readonly WorkspacePackage[], pending: Pending): string[] {
  const problems: string[] = [];
  for (const pkg of packages) {
    const type = pending.bumps.get(pkg.name);
    if (pkg.kind === 'other' || !type || type === 'none') continue;
    const abi = readAbi(pkg);
    const where = relative(dirname(dirname(pkg.dir)), pkg.dir);
    if (!abi) {
      problems.push(`${where}: a ${pkg.kind} package needs its abi.json to be released`);
      continue;
    }
    const previous = readLedgerEntry(pkg.dir, pkg.version);
    const classify = classifierFor(pkg.kind);
    if (!previous || !classify) continue;
    const next = bumped(pkg.version, type);
    const waivers = pending.waivers.get(pkg.name) ?? new Map<string, string>();
    const change = classify(previous, ledgerEntry(abi, next, waivers), { waivers });
    const step: Bump = releaseStep(pkg.version, next) ?? 'none';
    if (!bumpAtLeast(step, change.bump)) {
      problems.push(
        `${pkg.name}: its pending changesets make ${pkg.version} → ${next} (a ${step} step) but abi.json changed since ${pkg.version} needs a ${change.bump} release: ${change.reasons.join('; ')}`,
      );
    }
  }
  return problems;
}

export interface Released {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly ledger: string;
  readonly ledgerWritten: boolean;
  readonly changelogWritten: boolean;
}

/** Step 3: ledger entries and Guest ABI sections for every service/machine whose version changed. */
export function recordReleases(root: string, before: readonly WorkspacePackage[], pending: Pending): { released: Released[]; problems: string[] } {
  const was = new Map(before.map((p) => [p.name, p.version]));
  const released: Released[] = [];
  const problems: string[] = [];
  for (const pkg of workspacePackages(root)) {
    const from = was.get(pkg.name);
    if (pkg.kind === 'other' || from === undefined || from === pkg.version) continue;
    const abi = readAbi(pkg);
    if (!abi) {
      problems.push(`${pkg.name}: released as ${pkg.version} without an abi.json: no ledger entry written`);
      continue;
    }
    const classify = classifierFor(pkg.kind);
    if (!classify) {
      problems.push(`${pkg.name}: @plugvisor/core has no classifier for ${pkg.kind} packages: no ledger entry written`);
      continue;
    }
    const previous = previousLedgerEntry(pkg.dir, from, pkg.version);
    // A first release has nothing earlier to differ from: no waiver is accepted by it.
    const waivers = previous ? (pending.waivers.get(pkg.name) ?? new Map<string, string>()) : new Map<string, string>();
    const entry: LedgerEntry = ledgerEntry(abi, pkg.version, waivers);
    const section = guestAbiSection({ kind: pkg.kind, entry, waivers, classify, ...(previous ? { previous } : {}) });
    const ledgerWritten = writeLedgerEntry(pkg.dir, entry);
    const changelogFile = join(pkg.dir, 'CHANGELOG.md');
    const old = existsSync(changelogFile) ? readFileSync(changelogFile, 'utf8') : '';
    const text = insertGuestAbi(old, pkg.name, pkg.version, section);
    if (text !== old) writeFileSync(changelogFile, text);
    if (previous) {
      const change = classify(previous, entry, { waivers });
      const step: Bump = releaseStep(previous.version, pkg.version) ?? 'none';
      if (!bumpAtLeast(step, change.bump)) problems.push(`${pkg.name}: ${previous.version} → ${pkg.version} is a ${step} step but its ABI change is ${change.bump}: ${change.reasons.join('; ')}`);
    }
    released.push({ name: pkg.name, from, to: pkg.version, ledger: relative(root, ledgerPath(pkg.dir, pkg.version)), ledgerWritten, changelogWritten: text !== old });
  }
  return { released, problems };
}

/** The changesets CLI installed at the workspace root. */
function changesetsBin(root: string): string | undefined {
  try {
    return createRequire(join(root, 'package.json')).resolve('@changesets/cli/bin.js');
  } catch {
    return undefined;
  }
}

export interface RunOptions {
  readonly cwd: string;
  readonly out?: (line: string) => void;
  readonly err?: (line: string) => void;
}

/** The wrapper: returns the exit status. */
export function run(argv: readonly string[], options: RunOptions): number {
  const out = options.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = options.err ?? ((l: string) => process.stderr.write(l + '\n'));
  const root = findRoot(options.cwd);
  if (!root) {
    err(`changeset: no .changeset/config.json in ${options.cwd} or above (run it in the workspace)`);
    return 1;
  }
  const bin = changesetsBin(root);
  if (!bin) {
    err(`changeset: @changesets/cli is not installed in ${root} (pnpm install)`);
    return 1;
  }
  const changesets = () => spawnSync(process.execPath, [bin, ...argv], { cwd: options.cwd, stdio: 'inherit' }).status ?? 1;
  // `version --snapshot` makes throwaway versions (changesets docs/snapshot-releases.md): no ledger.
  if (argv[0] !== 'version' || argv.includes('--snapshot')) return changesets();

  const before = workspacePackages(root);
  const pending = readPending(root);
  const refused = [...pending.problems, ...checkPendingBumps(before, pending)];
  if (refused.length) {
    for (const p of refused) err(`changeset version: ${p}`);
    err('changeset version: nothing was written');
    return 1;
  }
  const status = changesets();
  if (status !== 0) return status;
  const { released, problems } = recordReleases(root, before, pending);
  for (const r of released) {
    const did = [r.ledgerWritten ? `ledger ${r.ledger}` : `ledger ${r.ledger} (already there)`, r.changelogWritten ? 'CHANGELOG Guest ABI' : 'CHANGELOG (unchanged)'];
    out(`${r.name} ${r.from} → ${r.to}: ${did.join(', ')}`);
  }
  for (const p of problems) err(`changeset version: ${p}`);
  return problems.length ? 1 : 0;
}
