import { parseArgs } from 'node:util';
import * as core from '@plugvisor/core';
import {
  canonicalJson,
  checkRecordDetailed,
  classifyAbiChange,
  hex,
  PlugvisorError,
  readAbiRecord,
  releaseStep,
  servicesInUse,
  ServiceFailure,
  SnapshotError,
  UsageError,
  validateAbiRecord,
  bumpAtLeast,
  type AbiChange,
  type AbiChangeEntry,
  type AbiRecord,
  type Bump,
  type Hypervisor,
} from '@plugvisor/core';
import { loadBuild, DEFAULT_BUILD, resolveBuildArg } from '../build-file.js';
import { existsSync, statSync } from 'node:fs';
import { table } from '../format.js';
import { readSuppressions, suppressionFor, type Suppression } from '../abi-suppressions.js';
import { readInputFile, readSnapshotKey } from './guest-run.js';

/**
 * `plugvisor abi diff OLD NEW`: what a guest would see differently, modelled on libabigail's
 * abidiff (sourceware.org/libabigail/manual/abidiff.html, "Return values"): the exit status is
 * abidiff's bit field — 1 ABIDIFF_ERROR, 2 ABIDIFF_USAGE_ERROR, 4 ABIDIFF_ABI_CHANGE,
 * 8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE (set only with 4) — so 0 identical, 4 a compatible change,
 * 12 an incompatible one. Two departures: a usage error is 2 alone (the CLI's USAGE status;
 * abidiff sets 1 with it, which would read as the CLI's 3, REFUSED), and a service that fails
 * while a build is composed is an error (1), not the CLI's 14, which would read as 8|4|2.
 *
 * Harmless changes (a rename in place, a description, a signature annotation, a package version:
 * bump 'none' or 'patch' without a waiver) are listed, as abidiff's --harmless lists them, but do
 * not set a bit unless --strict. A waived behaviour change (a ledger entry's "waivers": a bug fix
 * the release manager accepted as a patch) is still something a guest sees, and restore refuses
 * the VMs that recorded the old answers: an incompatible change, shown with its reason (accept it
 * here with a suppression).
 */
export const AbiDiffExit = Object.freeze({ IDENTICAL: 0, ERROR: 1, USAGE: 2, ABI_CHANGE: 4, INCOMPATIBLE: 8 });

export const abiDiffHelp = `plugvisor abi diff OLD NEW [--json] [--suppressions FILE]... [--strict] [--snapshot-key FILE]
plugvisor abi diff RECORD               (a VM against the default build)

What a guest would see differently going from OLD to NEW. Each is recognised by its content:
  service manifest  a service's abi.json, a release ledger entry (abi/releases/<version>.json),
                    or 'plugvisor abi --service PKG [--manifest]' output
  build manifest    'plugvisor abi --json' output
  build file        {"name", "services": [...]} (composed, as --build takes it)
  VM ABI record     a snapshot file, or 'plugvisor run --record' JSON
  machine manifest  a machine package's abi.json or ledger entry (compared with its own kind)
Service vs service (one service, two manifests): every classified change, old → new, with the
VMs it affects; recorded behaviour is compared probe by probe; NEW's waivers apply. Build vs
build (manifests or files; a service manifest counts as a build of that one service): per service,
and a service added (compatible when all its features are opt-in) or removed (incompatible).
A VM record vs a build file (NEW; the default build when only RECORD is given): the restore
checker on that build, every problem incompatible. Record vs record: features on/off, the calls
each gives, versions, registers and recorded behaviour.

  --json               { verdict, exit, old, new, services: [{ name, changes }], suppressed }
  --suppressions FILE  accepted differences (repeatable): INI sections, each matched changes are
                       listed as suppressed with the reason and do not count:
                         [suppress_change]
                         service = @plugvisor/svc-psci      (or service_regexp = REGEX)
                         subject_regexp = ^version psci$    (call X, feature 'x', version s, ...)
                         message_regexp = REGEX             (on the old → new text)
                         bump = major                       (optional: none|patch|minor|major)
                         label = NAME                       (optional)
                         reason = why it is accepted        (mandatory)
                       every key given must match; # or ; starts a comment line
  --strict             harmless differences count as an ABI change (exit 4)
  --snapshot-key FILE  refuse a snapshot not signed with this key

Exit status (libabigail abidiff's bits): 0 identical (harmless differences are shown but do not
count), 4 compatible change (new opt-in ABI), 12 incompatible change (4|8: an existing VM would
see something else — a waived fix too: restore refuses the VMs that saw the old answers), 1 error,
2 bad input (one line).`;

type Obj = Record<string, unknown>;
interface ServiceManifestLike {
  readonly name: string;
  readonly version?: string;
  readonly requires?: readonly string[];
  readonly surface: Obj;
  readonly behaviour?: Obj;
  readonly waivers?: Record<string, string>;
  readonly [k: string]: unknown;
}
interface BuildLike {
  readonly name: string;
  readonly services: readonly ServiceManifestLike[];
  readonly hash?: string;
}

type Input =
  | { readonly kind: 'service'; readonly path: string; readonly what: string; readonly manifest: ServiceManifestLike }
  | { readonly kind: 'build'; readonly path: string; readonly what: string; readonly build: BuildLike; readonly hv?: Hypervisor }
  | { readonly kind: 'record'; readonly path: string; readonly what: string; readonly record: AbiRecord }
  | { readonly kind: 'machine'; readonly path: string; readonly what: string; readonly manifest: Obj };

/** One group of the report: a service (or `machine X`, `firmware registers`). */
interface Group {
  readonly name: string;
  readonly old?: string;
  readonly new?: string;
  /** The release step old → new version (abi/versioning.ts), and what the changes need. */
  readonly step?: Bump;
  readonly needs?: Bump;
  readonly changes: AbiChangeEntry[];
}

/** How a change counts toward the exit status (abidiff's harmless / ABI change / incompatible change). */
type Impact = 'incompatible' | 'compatible' | 'harmless';
const impactOf = (c: AbiChangeEntry): Impact => (c.bump === 'major' || c.waiver ? 'incompatible' : c.bump === 'minor' ? 'compatible' : 'harmless');

/**
 * Keys sorted, bigints in hex, as a file on disk holds it: a manifest composed here and one read
 * from a file then compare field by field, never by the order their keys were written in.
 */
const canonical = (v: unknown): unknown => JSON.parse(canonicalJson(v));

const isObj = (v: unknown): v is Obj => !!v && typeof v === 'object' && !Array.isArray(v);
const oneLine = (s: string) => s.replace(/\s*\n\s*/g, '; ');

/** What is wrong with a service manifest's shape (so classification never meets a surprise), or undefined. */
function serviceShapeProblem(m: Obj): string | undefined {
  if (typeof m.name !== 'string') return 'has no "name" string';
  if (!isObj(m.surface)) return `${m.name}: "surface" is not an object`;
  for (const key of ['calls', 'features', 'versions', 'constants', 'continuations']) {
    const v = m.surface[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every(isObj)) return `${m.name}: surface.${key} is not an array of objects`;
    if (key !== 'continuations' && !v.every((x) => typeof x.name === 'string')) return `${m.name}: an entry of surface.${key} has no "name"`;
  }
  if (m.surface.state !== undefined && !isObj(m.surface.state)) return `${m.name}: surface.state is not an object`;
  for (const v of (m.surface.versions as Obj[] | undefined) ?? []) if (!Array.isArray(v.values) || !v.values.every(isObj)) return `${m.name}: version ${String(v.name)} has no "values" array`;
  for (const c of (m.surface.constants as Obj[] | undefined) ?? []) if (c.accepts !== undefined && !Array.isArray(c.accepts)) return `${m.name}: register ${String(c.name)} "accepts" is not an array`;
  if (m.behaviour !== undefined && !(isObj(m.behaviour) && Object.values(m.behaviour).every((t) => isObj(t) && Object.values(t).every(isObj)))) {
    return `${m.name}: "behaviour" is not a transcript (configuration → call → probe → answer)`;
  }
  if (m.waivers !== undefined && !(isObj(m.waivers) && Object.values(m.waivers).every((w) => typeof w === 'string'))) return `${m.name}: "waivers" is not an object of call → reason`;
  if (m.version !== undefined && typeof m.version !== 'string') return `${m.name}: "version" is not a string`;
  if (m.requires !== undefined && !(Array.isArray(m.requires) && m.requires.every((r) => typeof r === 'string'))) return `${m.name}: "requires" is not an array of package names`;
  return undefined;
}

const isBuildFileEntry = (s: unknown) => typeof s === 'string' || (isObj(s) && !('surface' in s) && (typeof s.package === 'string' || typeof s.module === 'string'));

/** Reads OLD or NEW and recognises it by its content. */
async function readInput(path: string, which: 'OLD' | 'NEW', key: { key?: Uint8Array }): Promise<Input> {
  const bytes = readInputFile(path, which);
  if (bytes.subarray(0, 8).toString('latin1') === 'PLVSNAP\0') {
    try {
      return { kind: 'record', path, what: "a snapshot's ABI record", record: readAbiRecord(bytes, key) };
    } catch (e) {
      if (e instanceof SnapshotError) throw new UsageError(`${which} ${path} is a snapshot that cannot be read: ${oneLine(e.message)}`, 'BAD_INPUT_FILE');
      throw e;
    }
  }
  let json: unknown;
  try {
    json = canonical(JSON.parse(bytes.toString('utf8')));
  } catch (e) {
    throw new UsageError(`${which} ${path} is neither a snapshot nor JSON: ${(e as Error).message}`, 'BAD_INPUT_FILE');
  }
  const bad = (why: string) => new UsageError(`${which} ${path}: ${why}`, 'BAD_INPUT_FILE');
  if (!isObj(json)) throw bad('is JSON but not an object (a service manifest, build manifest, build file or ABI record)');

  // A VM's ABI record: `plugvisor run --record` writes it bare; a wrapper { record } is accepted too.
  if (isObj(json.record) || (json.format !== undefined && isObj(json.services) && isObj(json.features))) {
    const record = validateAbiRecord(isObj(json.record) ? json.record : json);
    if (typeof record === 'string') throw bad(record);
    return { kind: 'record', path, what: 'a VM ABI record', record };
  }
  if (typeof json.extends === 'string' && json.services === undefined) {
    // A build file that extends another ("extends": a build name or a path).
    const { hv, spec, manifest } = await composed(path);
    return { kind: 'build', path, what: `build file '${spec.name}'`, build: manifest, hv };
  }
  if (Array.isArray(json.services)) {
    const list = json.services as unknown[];
    const manifests = list.length ? list.every((s) => isObj(s) && 'surface' in s) : json.format === 1 && typeof json.hash === 'string';
    if (manifests) {
      if (json.format !== 1) throw bad(`build manifest format ${JSON.stringify(json.format)} is not understood (this CLI reads format 1)`);
      if (typeof json.name !== 'string') throw bad('build manifest has no "name" string');
      for (const [i, s] of list.entries()) {
        const p = serviceShapeProblem(s as Obj);
        if (p) throw bad(`services[${i}] ${p}`);
      }
      const build = json as unknown as BuildLike;
      return { kind: 'build', path, what: `build manifest '${build.name}'${build.hash ? ` (sha256 ${build.hash.slice(0, 16)}…)` : ''}`, build };
    }
    if (list.every(isBuildFileEntry)) {
      const { hv, spec, manifest } = await composed(path);
      return { kind: 'build', path, what: `build file '${spec.name}'`, build: manifest, hv };
    }
    throw bad('has a "services" array that is neither a build manifest\'s (service manifests) nor a build file\'s (package names, { package | module })');
  }
  if (isObj(json.surface)) {
    if (json.requires === undefined && !('behaviour' in json)) {
      // A machine's ABI manifest (machineAbi(): { name, description?, surface }) or its ledger entry.
      if (typeof json.name !== 'string') throw bad('machine manifest has no "name" string');
      return { kind: 'machine', path, what: `machine manifest '${json.name}'${typeof json.version === 'string' ? ` ${json.version}` : ''}`, manifest: json };
    }
    const p = serviceShapeProblem(json);
    if (p) throw bad(`service manifest ${p}`);
    const m = json as unknown as ServiceManifestLike;
    return { kind: 'service', path, what: `service manifest ${m.name}${m.version ? `@${m.version}` : ''}${m.waivers ? ` (waivers: ${Object.keys(m.waivers).join(', ')})` : ''}`, manifest: m };
  }
  throw bad('is not a service manifest (abi.json, a ledger entry), a build manifest (abi --json), a build file or an ABI record');
}

/** Composes a build file; a service failing while it is probed is an error (1), never the CLI's 14 (see AbiDiffExit). */
async function composed(path: string) {
  try {
    const built = await loadBuild(path);
    // The manifest runs every service's probes (its behaviour transcript).
    return { ...built, manifest: canonical(built.hv.manifest()) as BuildLike };
  } catch (e) {
    if (e instanceof ServiceFailure) throw new PlugvisorError('SERVICE_FAILURE', `build file ${path}: service failure: ${e.message}`);
    throw e;
  }
}

/** Which VMs see a service at all: by its features' defaults. */
function serviceAudience(m: ServiceManifestLike): string {
  const features = (m.surface.features as Obj[] | undefined) ?? [];
  const on = features.filter((f) => f.default !== 'opt-in').map((f) => `'${String(f.name)}'`);
  if (on.length || !features.length) return on.length ? `every VM (feature ${on.join(', ')} on by default)` : 'every VM';
  return `VMs with feature ${features.map((f) => `'${String(f.name)}'`).join(' or ')} on`;
}

function serviceGroup(o: ServiceManifestLike, n: ServiceManifestLike): Group {
  const waivers = n.waivers ? new Map(Object.entries(n.waivers)) : undefined;
  let change: AbiChange;
  try {
    change = classifyAbiChange(o as never, n as never, waivers ? { waivers } : {});
  } catch (e) {
    // The shapes were checked; anything left is a manifest this CLI cannot read.
    throw new UsageError(`${n.name}: the manifests cannot be compared: ${oneLine((e as Error).message)}`, 'BAD_INPUT_FILE');
  }
  const step = o.version && n.version ? releaseStep(o.version, n.version) : undefined;
  return { name: n.name, ...(o.version ? { old: o.version } : {}), ...(n.version ? { new: n.version } : {}), ...(step && step !== 'none' ? { step } : {}), needs: change.bump, changes: [...change.changes] };
}

function addedService(n: ServiceManifestLike): Group {
  const features = (n.surface.features as Obj[] | undefined) ?? [];
  const optIn = new Set(features.filter((f) => f.default === 'opt-in').map((f) => String(f.name)));
  const calls = (n.surface.calls as Obj[] | undefined) ?? [];
  const onByDefault = features.filter((f) => f.default !== 'opt-in').map((f) => `'${String(f.name)}'`);
  const ungated = calls.filter((c) => !optIn.has(String(c.feature))).map((c) => String(c.name));
  const at = `${n.name}${n.version ? `@${n.version}` : ''}`;
  const entry: AbiChangeEntry =
    features.length && !onByDefault.length && !ungated.length
      ? { bump: 'minor', kind: 'added', subject: 'service', message: `new service ${at}: every feature opt-in (${[...optIn].map((f) => `'${f}'`).join(', ')})`, affects: serviceAudience(n) }
      : {
          bump: 'major',
          kind: 'added',
          subject: 'service',
          message: `new service ${at} ${onByDefault.length ? `gives feature ${onByDefault.join(', ')} by default` : `answers ${ungated.join(', ')} without an opt-in feature`}: VMs created with defaults see it`,
          affects: 'new VMs (created with defaults)',
        };
  return { name: n.name, ...(n.version ? { new: n.version } : {}), needs: entry.bump, changes: [entry] };
}

function removedService(o: ServiceManifestLike): Group {
  const at = `${o.name}${o.version ? `@${o.version}` : ''}`;
  const entry: AbiChangeEntry = { bump: 'major', kind: 'removed', subject: 'service', message: `service ${at} removed: its calls get their conduit's "not supported"`, affects: serviceAudience(o) };
  return { name: o.name, ...(o.version ? { old: o.version } : {}), needs: 'major', changes: [entry] };
}

function diffBuilds(o: BuildLike, n: BuildLike, only?: string): Group[] {
  const oldBy = new Map(o.services.map((s) => [s.name, s]));
  const newBy = new Map(n.services.map((s) => [s.name, s]));
  const names = only ? [only] : [...new Set([...oldBy.keys(), ...newBy.keys()])].sort();
  const out: Group[] = [];
  for (const name of names) {
    const a = oldBy.get(name);
    const b = newBy.get(name);
    if (a && b) out.push(serviceGroup(a, b));
    else if (a) out.push(removedService(a));
    else if (b) out.push(addedService(b));
  }
  return out;
}

/** A VM's record against a composed build: the restore checker (core's checkRecordDetailed), every problem incompatible. */
function diffRecordBuild(record: AbiRecord, hv: Hypervisor): Group[] {
  const groups = new Map<string, AbiChangeEntry[]>();
  const constOwner = new Map<string, string>();
  for (const s of hv.services) for (const c of ((s.surface as { constants?: { name: string }[] }).constants ?? [])) constOwner.set(c.name, s.name);
  for (const p of checkRecordDetailed(record, hv.catalog, hv)) {
    const [kind, ...rest] = p.subject.split(' ');
    const name = rest.join(' ');
    const service =
      p.service ??
      (kind === 'feature'
        ? (record.features[name]?.service ?? 'VM')
        : kind === 'version'
          ? (record.versions[name]?.service ?? 'VM')
          : kind === 'service'
            ? name
            : kind === 'register'
              ? (constOwner.get(name) ?? 'firmware registers')
              : 'VM');
    const list = groups.get(service) ?? [];
    list.push({ bump: 'major', kind: 'changed', subject: p.subject, message: p.message, affects: 'this VM (restore refuses it)' });
    groups.set(service, list);
  }
  return [...groups].sort((a, b) => a[0].localeCompare(b[0])).map(([name, changes]) => ({ name, old: record.services[name]?.version, new: hv.catalog.services.get(name)?.version, needs: 'major' as Bump, changes }));
}

/**
 * Two VMs' records: what a guest of OLD would see differently as NEW. A feature it had on that is
 * off, absent or answers other calls or probes is incompatible; one turned on is compatible (new
 * ABI); what concerns only features it has off is harmless. Register values are compared by
 * meaning where a register of the default build names it (bitmaps and version selectors are the
 * features and versions above); any other register whose value changed is incompatible.
 */
async function diffRecords(a: AbiRecord, b: AbiRecord): Promise<Group[]> {
  const groups = new Map<string, AbiChangeEntry[]>();
  const add = (service: string, bump: Bump, subject: string, message: string, affects = 'this VM') => {
    const list = groups.get(service) ?? [];
    // off → on is ABI only NEW gives; on → off (or absent) only OLD had
    const kind = / off → on$/.test(message) ? 'added' : / on → (off|absent)/.test(message) ? 'removed' : 'changed';
    list.push({ bump, kind, subject, message, affects });
    groups.set(service, list);
  };
  const usedA = servicesInUse(a);
  for (const [name, f] of Object.entries(a.features)) {
    const g = b.features[name];
    const subject = `feature '${name}'`;
    if (!f.enabled) {
      if (g?.enabled) add(g.service, 'minor', subject, `feature '${name}' off → on`);
      else if (!g) add(f.service, 'none', subject, `feature '${name}' (off) not in NEW's build`);
      continue;
    }
    if (!g || !g.enabled) {
      add(f.service, 'major', subject, `feature '${name}' on → ${g ? 'off' : `absent (NEW has no ${f.service})`}`);
      continue;
    }
    const added = g.calls.filter((c) => !f.calls.includes(c));
    const removed = f.calls.filter((c) => !g.calls.includes(c));
    if (added.length || removed.length) add(f.service, 'major', subject, `feature '${name}' calls [${f.calls.join(', ')}] → [${g.calls.join(', ')}]`);
    const was = a.behaviour?.[name];
    const now = b.behaviour?.[name];
    if (was && now && was.digest !== now.digest) {
      for (const [call, probes] of Object.entries(was.calls)) {
        const there = now.calls[call];
        if (!there) continue;
        const diff = Object.entries(probes).find(([probe, out]) => there[probe] !== undefined && there[probe] !== out);
        if (diff) add(f.service, 'major', `call ${call}`, `behaviour changed: ${call} probe [${diff[0]}]: ${diff[1]} → ${there[diff[0]]}`, `this VM (feature '${name}' on)`);
      }
    }
  }
  for (const [name, g] of Object.entries(b.features)) {
    if (a.features[name]) continue;
    add(g.service, g.enabled ? 'minor' : 'none', `feature '${name}'`, g.enabled ? `new feature '${name}' on` : `new feature '${name}' (off)`);
  }
  for (const [sel, v] of Object.entries(a.versions)) {
    const w = b.versions[sel];
    const inUse = usedA.has(v.service);
    const subject = `version ${sel}`;
    if (!w) add(v.service, inUse ? 'major' : 'none', subject, `${sel} version ${v.name} (${hex(v.value)}) → none`);
    else if (w.name !== v.name || w.value !== v.value) add(v.service, inUse ? 'major' : 'none', subject, `${sel} version ${v.name} (${hex(v.value)}) → ${w.name} (${hex(w.value)})`);
  }
  for (const [sel, w] of Object.entries(b.versions)) if (!a.versions[sel]) add(w.service, 'none', `version ${sel}`, `new ${sel} version selector at ${w.name} (${hex(w.value)})`);
  for (const [pkg, s] of Object.entries(a.services)) {
    const t = b.services[pkg];
    if (!t) continue; // its features say what the VM loses
    if (t.version !== s.version) add(pkg, 'none', 'package', `version ${s.version} → ${t.version}`, 'none');
    const st = (x: typeof s.state) => (x ? `${x.id} v${x.version}` : 'none');
    if (st(s.state) !== st(t.state)) add(pkg, usedA.has(pkg) ? 'major' : 'none', 'state', `per-VM state ${st(s.state)} → ${st(t.state)}`);
  }
  const ids = [...new Set([...Object.keys(a.registers), ...Object.keys(b.registers)])];
  if (ids.some((id) => a.registers[id] !== b.registers[id])) {
    const catalog = (await composed(DEFAULT_BUILD)).hv.catalog;
    for (const id of ids.sort()) {
      const x = a.registers[id];
      const y = b.registers[id];
      if (x === y) continue;
      let entry;
      try {
        entry = catalog.registerById.get(BigInt(id));
      } catch {
        entry = undefined;
      }
      const name = entry ? `${entry.name} (${id})` : id;
      const byMeaning = entry && entry.kind !== 'constant';
      const bump: Bump = byMeaning ? 'none' : x === undefined ? 'minor' : 'major';
      const why = byMeaning ? ` (a ${entry!.kind === 'bitmap' ? 'feature bitmap' : 'version selector'}: see the features and versions)` : '';
      add('firmware registers', bump, `firmware register ${entry?.name ?? id}`, `${name} ${x ?? 'none'} → ${y ?? 'none'}${why}`);
    }
  }
  return [...groups].sort((p, q) => p[0].localeCompare(q[0])).map(([name, changes]) => ({
    name,
    ...(a.services[name] ? { old: a.services[name]!.version } : {}),
    ...(b.services[name] ? { new: b.services[name]!.version } : {}),
    needs: changes.reduce<Bump>((m, c) => (bumpAtLeast(m, c.bump) ? m : c.bump), 'none'),
    changes,
  }));
}

/**
 * Machine manifests (a machine package's abi.json or ledger entry) through core's
 * classifyMachineAbiChange, NEW's waivers (fact path → reason) applied. Looked up at run time so
 * this CLI still reads every other input with a core that predates machine manifests.
 */
function diffMachines(a: Obj, b: Obj): Group[] {
  type Classify = (x: Obj, y: Obj, o?: { waivers?: ReadonlyMap<string, string> }) => AbiChange;
  const classify = (core as Record<string, unknown>).classifyMachineAbiChange as Classify | undefined;
  if (typeof classify !== 'function') throw new UsageError('machine ABI manifests are not understood by this @plugvisor/core (no classifyMachineAbiChange)', 'BAD_INPUT_FILE');
  if (a.name !== b.name) throw new UsageError(`OLD is machine ${String(a.name)} and NEW is machine ${String(b.name)}: abi diff compares two manifests of one machine`);
  if (b.waivers !== undefined && !(isObj(b.waivers) && Object.values(b.waivers).every((w) => typeof w === 'string'))) {
    throw new UsageError(`NEW machine manifest ${String(b.name)}: "waivers" is not an object of fact path → reason`, 'BAD_INPUT_FILE');
  }
  const waivers = isObj(b.waivers) ? new Map(Object.entries(b.waivers as Record<string, string>)) : undefined;
  let change: AbiChange;
  try {
    change = classify(a, b, waivers ? { waivers } : {});
  } catch (e) {
    throw new UsageError(`${String(b.name)}: the machine manifests cannot be compared: ${oneLine((e as Error).message)}`, 'BAD_INPUT_FILE');
  }
  const ver = (x: Obj) => (typeof x.version === 'string' ? x.version : undefined);
  const step = ver(a) && ver(b) ? releaseStep(ver(a)!, ver(b)!) : undefined;
  return [{ name: String(a.name), ...(ver(a) ? { old: ver(a) } : {}), ...(ver(b) ? { new: ver(b) } : {}), ...(step && step !== 'none' ? { step } : {}), needs: change.bump, changes: [...change.changes] }];
}

const asBuild = (m: ServiceManifestLike): BuildLike => ({ name: m.name, services: [m] });

async function compare(o: Input, n: Input): Promise<Group[]> {
  if (o.kind === 'record' || n.kind === 'record') {
    if (o.kind === 'record' && n.kind === 'record') return diffRecords(o.record, n.record);
    if (o.kind === 'record' && n.kind === 'build' && n.hv) return diffRecordBuild(o.record, n.hv);
    if (o.kind === 'record') throw new UsageError(`OLD ${o.path} is a VM's ABI record: NEW must be a build file (the restore checker needs composed services); NEW ${n.path} is a ${n.what}`);
    throw new UsageError(`NEW ${n.path} is a VM's ABI record: give the VM as OLD and the build it would move to as NEW (plugvisor abi diff RECORD BUILD)`);
  }
  if (o.kind === 'machine' || n.kind === 'machine') {
    if (o.kind === 'machine' && n.kind === 'machine') return diffMachines(o.manifest, n.manifest);
    throw new UsageError(`one of OLD and NEW is a machine manifest and the other a ${o.kind === 'machine' ? n.what : o.what}: abi diff compares machines with machines`);
  }
  if (o.kind === 'service' && n.kind === 'service') {
    if (o.manifest.name !== n.manifest.name) {
      throw new UsageError(`OLD ${o.path} is service ${o.manifest.name} and NEW ${n.path} is service ${n.manifest.name}: abi diff compares two manifests of one service`);
    }
    return [serviceGroup(o.manifest, n.manifest)];
  }
  // A build against a build; a single service manifest counts as a build of that one service, and
  // only that service is compared.
  const only = o.kind === 'service' ? o.manifest.name : n.kind === 'service' ? n.manifest.name : undefined;
  return diffBuilds(o.kind === 'service' ? asBuild(o.manifest) : o.build, n.kind === 'service' ? asBuild(n.manifest) : n.build, only);
}

interface Suppressed extends AbiChangeEntry {
  readonly service: string;
  readonly impact: Impact;
  readonly reason: string;
  readonly label?: string;
  readonly suppression: string;
}

export async function abiDiffCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, suppressions: { type: 'string', multiple: true }, strict: { type: 'boolean' }, 'snapshot-key': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError('abi diff takes OLD and NEW: plugvisor abi diff OLD NEW (see plugvisor abi --help)');
  const suppressions: Suppression[] = (values.suppressions ?? []).flatMap((f) => readSuppressions(f));
  const key = readSnapshotKey(values['snapshot-key']);
  // A bare name that is no file here is a build the CLI ships (builds/<name>.json).
  const arg = (p: string) => (/[\\/]/.test(p) || p.endsWith('.json') || (existsSync(p) && statSync(p).isFile()) ? p : resolveBuildArg(p));
  const old = await readInput(arg(positionals[0]!), 'OLD', key);
  let neu: Input;
  if (positionals.length === 2) neu = await readInput(arg(positionals[1]!), 'NEW', key);
  else {
    if (old.kind !== 'record') throw new UsageError('abi diff takes OLD and NEW; only a VM record (a snapshot or run --record JSON) may be given alone, against the default build');
    const { hv, spec, manifest } = await composed(DEFAULT_BUILD);
    neu = { kind: 'build', path: DEFAULT_BUILD, what: `build file '${spec.name}' (the default build)`, build: manifest, hv };
  }

  let groups: Group[];
  try {
    groups = await compare(old, neu);
  } catch (e) {
    // Replaying a record's probes runs the destination's handlers: a failure there is an error (1).
    if (e instanceof ServiceFailure) throw new PlugvisorError('SERVICE_FAILURE', `service failure: ${e.message}`);
    throw e;
  }
  const suppressed: Suppressed[] = [];
  const services = groups
    .map((g) => {
      const kept: (AbiChangeEntry & { impact: Impact })[] = [];
      for (const c of g.changes) {
        const s = suppressionFor(suppressions, g.name, c);
        if (s) suppressed.push({ service: g.name, ...c, impact: impactOf(c), reason: s.reason, ...(s.label ? { label: s.label } : {}), suppression: s.where });
        else kept.push({ ...c, impact: impactOf(c) });
      }
      return { ...g, changes: kept };
    })
    .filter((g) => g.changes.length);
  const counted = services.flatMap((g) => g.changes);
  const count = (k: Impact) => counted.filter((c) => c.impact === k).length;
  let exit: number = AbiDiffExit.IDENTICAL;
  if (count('compatible') || (values.strict && count('harmless'))) exit |= AbiDiffExit.ABI_CHANGE;
  if (count('incompatible')) exit |= AbiDiffExit.ABI_CHANGE | AbiDiffExit.INCOMPATIBLE;
  const verdict = exit & AbiDiffExit.INCOMPATIBLE ? 'incompatible change' : exit & AbiDiffExit.ABI_CHANGE ? 'compatible change' : 'identical';

  if (values.json) {
    const side = (x: Input) => ({ path: x.path, kind: x.kind, what: x.what });
    process.stdout.write(JSON.stringify({ verdict, exit, old: side(old), new: side(neu), services, suppressed }, null, 2) + '\n');
    return exit;
  }
  const out: string[] = [`OLD ${old.path}: ${old.what}`, `NEW ${neu.path}: ${neu.what}`];
  for (const g of services) {
    const versions = g.old !== undefined || g.new !== undefined ? `  ${g.old ?? '—'} → ${g.new ?? '—'}${g.step ? ` (a ${g.step} step${older(g.old, g.new) ? ' back' : ''})` : ''}` : '';
    out.push('', `${g.name}${versions}`);
    out.push(indent(table(['subject', 'change (old → new)', 'bump', 'affects'], g.changes.map((c) => [c.subject, c.waiver ? `${c.message} (waived: ${c.waiver})` : c.message, c.impact === 'harmless' ? `${c.bump} (harmless)` : c.bump, c.affects]))));
    // A release line that understates its change (semver.org item 8; abi/versioning.ts).
    if (g.step && g.needs && !older(g.old, g.new) && !bumpAtLeast(g.step, g.needs)) {
      out.push(`  note: ${g.old} → ${g.new} is a ${g.step} step; these changes need a ${g.needs} release`);
    }
  }
  if (suppressed.length) {
    out.push('', `suppressed (${suppressed.length})`);
    out.push(indent(table(['service', 'subject', 'change (old → new)', 'bump', 'reason', 'by'], suppressed.map((s) => [s.service, s.subject, s.message, s.bump, s.reason, `${s.suppression}${s.label ? ` [${s.label}]` : ''}`]))));
  }
  const tally = [`${count('incompatible')} incompatible`, `${count('compatible')} compatible`, `${count('harmless')} harmless`, `${suppressed.length} suppressed`].join(', ');
  out.push('', `verdict: ${verdict} (exit ${exit}): ${tally}`);
  process.stdout.write(out.join('\n') + '\n');
  return exit;
}

/** True when `b` is an earlier release than `a` (plain x.y.z; anything else is not ordered here). */
function older(a: string | undefined, b: string | undefined): boolean {
  const p = (v: string | undefined) => /^(\d+)\.(\d+)\.(\d+)$/.exec(v ?? '')?.slice(1).map(Number);
  const x = p(a);
  const y = p(b);
  if (!x || !y) return false;
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return y[i]! < x[i]!;
  return false;
}

const indent = (text: string) => text.split('\n').map((l) => `  ${l}`).join('\n');
