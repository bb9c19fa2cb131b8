import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import semver from 'semver';
import { checkServiceOptions, ComposeError, describeThrown, Hypervisor, optionsSchemaOf, UsageError, type ServicePlugin } from '@plugvisor/core';
import { BACKEND_CONDUITS } from './backends.js';
import { checkCopies } from './copies.js';

/**
 * Build files: which service packages (and options) make up a hypervisor build.
 *
 *   { "name": "capped",
 *     "services": [ "@plugvisor/svc-trng",
 *                   { "package": "@plugvisor/svc-psci", "options": { "maxVersion": "1.1" } },
 *                   { "package": "@plugvisor/svc-pvtime", "version": "^1.0.0" },
 *                   { "module": "./my-service.js" } ] }
 *
 * A service module's default export is a ServicePlugin or a factory `(options) => plugin`.
 * Packages resolve from the build file's folder first, then from the CLI's own dependencies.
 *
 * A package entry with "version" (a semver range, npm's syntax: docs.npmjs.com "semver") pins a
 * release: the highest installed release satisfying it, among every node_modules folder Node
 * would search from the build file and from the CLI (`require.resolve.paths`), each holding the
 * package under its own name or under an npm alias (`npm install <alias>@npm:<name>@<version>`,
 * docs.npmjs.com "npm install": a folder `node_modules/<alias>` whose package.json "name" is the
 * package). No release satisfying it, or a release that reports another name or version than its
 * package.json, is a UsageError (BAD_BUILD_FILE) listing what is installed.
 *
 * A build file may extend another ("extends": a build name — the CLI's builds/<name>.json — or a
 * path relative to the file), remove services of it ("remove": package names, or module paths
 * relative to the file) and replace one by listing it again (with other options or another
 * version range): the replacing entry takes the base's position; a service the base does not
 * have is added after the base's. Chains are allowed; a cycle, an unknown base or a "remove" the
 * base does not have is a UsageError (BAD_BUILD_FILE), one line. Every entry resolves from the
 * file that declares it (packages from that file's folder, modules relative to it), so a base
 * keeps meaning what it meant on its own.
 *
 * Options are checked before the factory runs, against the schema the factory declares
 * (`defineServiceFactory` in @plugvisor/core: per key an enum, boolean, integer range or
 * string). A factory that declares none, and a plain plugin, take no options. An unknown key,
 * a refused value, or a factory that throws anyway is a UsageError (BAD_OPTION): one line
 * naming the build file, the service and the key.
 */
export interface ServiceRef {
  readonly package?: string;
  readonly module?: string;
  /** With "package": a semver range the loaded release must satisfy (the highest installed one that does is taken). */
  readonly version?: string;
  readonly options?: Record<string, unknown>;
}

/** One installed release of a package: its version, its folder, and the name it is installed under (the package's own or an npm alias). */
export interface InstalledRelease {
  readonly package: string;
  readonly version: string;
  readonly dir: string;
  readonly installedAs: string;
}

/** A pinned build entry and the release it resolved to. */
export interface PinnedService {
  /** The build file that declares the entry (the one given, or a build it extends) and the entry's index there. */
  readonly file: string;
  readonly index: number;
  readonly range: string;
  readonly release: InstalledRelease;
}

export interface BuildSpec {
  readonly name: string;
  readonly description?: string;
  /** A build name (the CLI's builds/<name>.json) or a path relative to this file. */
  readonly extends?: string;
  /** With "extends": services of the base to leave out (package names, or module paths relative to this file). */
  readonly remove?: readonly string[];
  /** Without "extends": the whole build; with it, services added or (listed again) replaced. */
  readonly services: ReadonlyArray<string | ServiceRef>;
}

/** The folder of the builds the CLI ships, nameable by their file name without ".json". */
export const BUILDS_DIR = fileURLToPath(new URL('../builds/', import.meta.url));
export const DEFAULT_BUILD = join(BUILDS_DIR, 'default.json');

/** The names of the builds the CLI ships (builds/<name>.json). */
export function buildNames(): string[] {
  try {
    return readdirSync(BUILDS_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).sort();
  } catch {
    return [];
  }
}

/** A name rather than a path: no folder separator, no ".json", not "." or "..". */
const isBareName = (s: string) => s !== '' && s !== '.' && s !== '..' && !/[\\/]/.test(s) && !s.endsWith('.json');

/** The CLI's build of that name, or undefined. */
function namedBuild(name: string): string | undefined {
  if (!isBareName(name)) return undefined;
  const file = join(BUILDS_DIR, `${name}.json`);
  return existsSync(file) ? file : undefined;
}

/**
 * Where a build argument points (`--build X`, `check A B`, `abi diff`): an existing file as
 * given (for a bare name, a file rather than a folder); else a bare name (no '/', no ".json") of a build the CLI ships, builds/<name>.json; else
 * the path as given (which then does not exist, and says so).
 */
export function resolveBuildArg(arg: string): string {
  const abs = resolve(arg);
  if (existsSync(abs) && !(isBareName(arg) && statSync(abs).isDirectory())) return abs; // a folder named like a build is not one
  const named = namedBuild(arg);
  if (named) return named;
  if (isBareName(arg)) throw new UsageError(`no build file ${abs} and no build named '${arg}' (the CLI's builds: ${buildNames().join(', ') || 'none'})`, 'BAD_BUILD_FILE');
  return abs;
}

/** One service entry of a composed build, with the build file that declares it and its index there. */
interface BuildEntry {
  readonly ref: ServiceRef;
  readonly file: string;
  readonly index: number;
  /** How messages name the entry when no build file declares it (a service named on the command line). */
  readonly where?: string;
}

/** What an entry (or a "remove" item) names: a package, or a module file by its absolute path. */
const entryKey = (ref: ServiceRef, file: string) => (ref.module !== undefined ? `module ${resolve(dirname(file), ref.module)}` : `package ${ref.package}`);
const removeKey = (item: string, file: string) => (/^\.{0,2}\//.test(item) ? `module ${resolve(dirname(file), item)}` : `package ${item}`);

/** The base a build file extends: a path relative to it if that exists, else a build the CLI ships. */
function resolveExtends(file: string, base: string): string {
  const relative = resolve(dirname(file), base);
  if (existsSync(relative) && !statSync(relative).isDirectory()) return relative;
  const named = namedBuild(base);
  if (named) return named;
  throw new UsageError(
    `build file ${file}: extends ${JSON.stringify(base)}: no such build (no file ${relative}${isBareName(base) ? `, and the CLI's builds are ${buildNames().join(', ') || 'none'}` : ''})`,
    'BAD_BUILD_FILE',
  );
}

/** A build file with everything it extends folded in: its own spec and the service entries in order. */
function flattenBuild(path: string, chain: readonly string[] = []): { spec: BuildSpec; entries: BuildEntry[]; files: string[] } {
  const real = (f: string) => (existsSync(f) ? realpathSync(f) : f); // a symlinked base is the same file
  const seen = chain.findIndex((f) => real(f) === real(path));
  if (seen >= 0) {
    const cycle = [...chain.slice(seen), path].join(' → ');
    throw new UsageError(`build file ${chain[0]}: extends a cycle: ${cycle}`, 'BAD_BUILD_FILE');
  }
  const spec = parseSpec(path);
  const own = spec.services.map((s, index): BuildEntry => ({ ref: typeof s === 'string' ? { package: s } : s, file: path, index }));
  if (spec.extends === undefined) return { spec, entries: own, files: [path] };
  const basePath = resolveExtends(path, spec.extends);
  const base = flattenBuild(basePath, [...chain, path]);
  const entries = [...base.entries];
  (spec.remove ?? []).forEach((item, i) => {
    const at = entries.findIndex((e) => entryKey(e.ref, e.file) === removeKey(item, path));
    if (at < 0) throw new UsageError(`build file ${path}: remove[${i}]: ${item} is not in the build it extends (${basePath})`, 'BAD_BUILD_FILE');
    entries.splice(at, 1);
  });
  // Listed again: the entry replaces the base's in its position; anything else is added after it.
  const baseKeys = entries.map((e) => entryKey(e.ref, e.file));
  for (const e of own) {
    const at = baseKeys.indexOf(entryKey(e.ref, e.file));
    if (at >= 0) entries[at] = e;
    else entries.push(e);
  }
  return { spec, entries, files: [path, ...base.files] };
}

export interface LoadedBuild {
  readonly hv: Hypervisor;
  readonly path: string;
  /** The build as composed: its own name and description, every service entry (extended ones folded in, module paths absolute). */
  readonly spec: BuildSpec;
  /** The build file and every build it extends, nearest first. */
  readonly files: readonly string[];
  /** The entries that pinned a version, with the release each one loaded. */
  readonly pinned: readonly PinnedService[];
}

function parseSpec(path: string): BuildSpec {
  if (!existsSync(path)) throw new UsageError(`build file ${path} does not exist`, 'BAD_BUILD_FILE');
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`build file ${path} is not valid JSON: ${(e as Error).message}`, 'BAD_BUILD_FILE');
  }
  const raw = json as Partial<BuildSpec>;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw) || typeof raw.name !== 'string') throw new UsageError(`build file ${path} needs a "name" string`, 'BAD_BUILD_FILE');
  if (raw.extends !== undefined && (typeof raw.extends !== 'string' || raw.extends === '')) {
    throw new UsageError(`build file ${path}: "extends" must be a build name or a path to a build file`, 'BAD_BUILD_FILE');
  }
  if (raw.extends === undefined && !Array.isArray(raw.services)) throw new UsageError(`build file ${path} needs a "services" array (or "extends": a build to start from)`, 'BAD_BUILD_FILE');
  if (raw.services !== undefined && !Array.isArray(raw.services)) throw new UsageError(`build file ${path}: "services" must be an array`, 'BAD_BUILD_FILE');
  if (raw.remove !== undefined) {
    if (raw.extends === undefined) throw new UsageError(`build file ${path}: "remove" needs "extends" (the build to remove services from)`, 'BAD_BUILD_FILE');
    if (!Array.isArray(raw.remove) || !raw.remove.every((r) => typeof r === 'string' && r !== '')) {
      throw new UsageError(`build file ${path}: "remove" must be an array of package names (or module paths)`, 'BAD_BUILD_FILE');
    }
  }
  const spec = { ...raw, services: raw.services ?? [] } as BuildSpec;
  spec.services.forEach((s, i) => {
    const ok =
      typeof s === 'string' ||
      (s &&
        typeof s === 'object' &&
        (typeof s.package === 'string') !== (typeof s.module === 'string') &&
        (s.version === undefined || (typeof s.version === 'string' && typeof s.package === 'string')) &&
        (s.options === undefined || (!!s.options && typeof s.options === 'object' && !Array.isArray(s.options))));
    if (!ok) {
      throw new UsageError(
        `build file ${path}: services[${i}] must be a package name, { "package", "version"?: "RANGE", "options"?: {...} } or { "module", "options"?: {...} }`,
        'BAD_BUILD_FILE',
      );
    }
    if (typeof s === 'object' && s.version !== undefined && (s.version.trim() === '' || semver.validRange(s.version) === null)) {
      throw new UsageError(
        `build file ${path}: services[${i}]: version ${JSON.stringify(s.version)} of ${s.package} is not a semver range (e.g. "1.0.0", "^1.1.0", "~1.2", ">=1.0.0 <2.0.0")`,
        'BAD_BUILD_FILE',
      );
    }
  });
  return spec;
}

/**
 * The node_modules folders Node searches for a bare specifier from `file` (nearest first:
 * `<dir>/node_modules` for the file's folder and each one above it), the same list `require`
 * walks (nodejs.org/api/modules.html, "Loading from node_modules folders").
 */
function nodeModulesFrom(file: string): string[] {
  return (createRequire(file).resolve.paths('x') ?? []).filter((d) => basename(d) === 'node_modules');
}

function readPackageJson(dir: string): { name?: unknown; version?: unknown } | undefined {
  try {
    const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as unknown;
    return json && typeof json === 'object' ? (json as { name?: unknown; version?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every installed release of `pkg` reachable from these files (a build file, the CLI): in each
 * node_modules folder Node would search from them, nearest first, the package under its own name
 * and under any npm alias — `npm install svc-psci-1@npm:@plugvisor/svc-psci@1.0.0` installs it as
 * `node_modules/svc-psci-1`, whose package.json keeps the real "name" (docs.npmjs.com, "npm
 * install": `npm install <alias>@npm:<name>`). A folder reached twice (a symlink) counts once.
 */
export function installedReleases(pkg: string, fromFiles: readonly string[]): InstalledRelease[] {
  const out: InstalledRelease[] = [];
  const seenDirs = new Set<string>();
  const seenReal = new Set<string>();
  for (const nm of fromFiles.flatMap(nodeModulesFrom)) {
    if (seenDirs.has(nm)) continue;
    seenDirs.add(nm);
    let names: string[];
    try {
      names = readdirSync(nm).filter((n) => !n.startsWith('.'));
    } catch {
      continue; // no such folder
    }
    // The package's own name first, then every other folder (and scope) that may be an alias.
    const scoped = (scope: string): string[] => {
      try {
        return readdirSync(join(nm, scope)).filter((m) => !m.startsWith('.')).map((m) => `${scope}/${m}`);
      } catch {
        return [];
      }
    };
    const candidates = new Set([pkg, ...names.flatMap((n) => (n.startsWith('@') ? scoped(n) : [n]))]);
    for (const installedAs of candidates) {
      const dir = join(nm, installedAs);
      const json = readPackageJson(dir);
      if (!json || json.name !== pkg || typeof json.version !== 'string' || semver.valid(json.version) === null) continue;
      let real: string;
      try {
        real = realpathSync(dir);
      } catch {
        continue;
      }
      if (seenReal.has(real)) continue;
      seenReal.add(real);
      out.push({ package: pkg, version: json.version, dir, installedAs });
    }
  }
  return out;
}

/** The highest installed release satisfying `range` (the nearest of equal versions), or a UsageError listing what is installed. */
function pinRelease(path: string, index: number, pkg: string, range: string): InstalledRelease {
  const releases = installedReleases(pkg, [path, fileURLToPath(import.meta.url)]);
  const best = semver.maxSatisfying(releases.map((r) => r.version), range);
  const release = best === null ? undefined : releases.find((r) => r.version === best);
  if (!release) {
    const installed = [...releases].sort((a, b) => semver.compare(a.version, b.version)).map((r) => `${r.version} at ${r.dir}`);
    throw new UsageError(
      `build file ${path}: services[${index}]: no installed release of ${pkg} satisfies ${range} (installed: ${installed.length ? installed.join(', ') : 'none'})`,
      'BAD_BUILD_FILE',
    );
  }
  return release;
}

/** The module file of an installed release: its "exports" (or "main") as Node resolves the name it is installed under. */
function releaseEntry(path: string, index: number, release: InstalledRelease): string {
  try {
    // A require from a file in that node_modules folder looks in that folder first.
    const nodeModules = join(release.dir, ...release.installedAs.split('/').map(() => '..'));
    return createRequire(join(nodeModules, 'index.js')).resolve(release.installedAs);
  } catch (e) {
    throw new UsageError(`build file ${path}: services[${index}]: ${release.package}@${release.version} at ${release.dir} has no loadable entry: ${oneLine(e)}`, 'BAD_BUILD_FILE');
  }
}

function resolveFrom(path: string, ref: ServiceRef, label = `build file ${path}`): string {
  if (ref.module) {
    const file = resolve(dirname(path), ref.module);
    if (!existsSync(file)) throw new UsageError(`${label}: module ${ref.module} does not exist`, 'BAD_BUILD_FILE');
    return file;
  }
  if (isBuiltin(ref.package!)) throw new UsageError(`${label}: ${ref.package} is a Node.js built-in module, not a service package`, 'BAD_BUILD_FILE');
  for (const base of [path, fileURLToPath(import.meta.url)]) {
    try {
      return createRequire(base).resolve(ref.package!);
    } catch {
      // try the next place
    }
  }
  throw new UsageError(`${label}: cannot find service package ${ref.package} (is it installed?)`, 'BAD_BUILD_FILE');
}

/** An error's message on one line (a factory's own message may span several). */
const oneLine = (e: unknown) => (e instanceof Error ? e.message : describeThrown(e)).replace(/\s*\n\s*/g, '; ');

const isPlugin = (v: unknown): v is ServicePlugin =>
  !!v && typeof v === 'object' && typeof (v as ServicePlugin).name === 'string' && typeof (v as ServicePlugin).apply === 'function';

/** What is missing from a plugin's plain data (ServiceDecl), or undefined: checked before composing. */
function declarationProblem(p: ServicePlugin): string | undefined {
  if (typeof p.version !== 'string') return 'has no "version" string';
  const surface = (p as { surface?: unknown }).surface;
  if (!surface || typeof surface !== 'object') return 'has no "surface" (its declared calls, features and versions)';
  for (const key of ['calls', 'features'] as const) {
    const v = (surface as Record<string, unknown>)[key];
    if (v !== undefined && !Array.isArray(v)) return `surface.${key} is not an array`;
  }
  return undefined;
}

/**
 * Loads and composes a build file. The build is composed with the conduits of every backend
 * this CLI ships (BACKEND_CONDUITS): a service may call on any of them (smccc, xen, x86-port),
 * and a conduit no backend declares is a BAD_BUILD_FILE naming the service and the call.
 */
export async function loadBuild(path: string = DEFAULT_BUILD): Promise<LoadedBuild> {
  const abs = resolveBuildArg(path);
  const { spec, entries, files } = flattenBuild(abs);
  return composeEntries(abs, spec, entries, files);
}

/**
 * A build plus one service named on the command line (`plugvisor abi --service PKG` for a
 * package the build does not have): PKG is a package name resolved from `dir` as a build file
 * there would resolve it (its node_modules folders, or the package `dir` belongs to, by its own
 * name: nodejs.org/api/packages.html "Self-referencing a package using its name"), or a path
 * to a module file.
 */
export async function loadBuildWithService(pkg: string, path: string = DEFAULT_BUILD, dir: string = process.cwd()): Promise<LoadedBuild> {
  const abs = resolveBuildArg(path);
  const { spec, entries, files } = flattenBuild(abs);
  const ref: ServiceRef = /^\.{0,2}\//.test(pkg) ? { module: pkg } : { package: pkg };
  const extra: BuildEntry = { ref, file: join(resolve(dir), 'package.json'), index: 0, where: `--service ${pkg}` };
  return composeEntries(abs, { ...spec, name: `${spec.name}+${pkg}` }, [...entries, extra], files);
}

async function composeEntries(abs: string, spec: BuildSpec, entries: readonly BuildEntry[], files: readonly string[]): Promise<LoadedBuild> {
  const plugins: ServicePlugin<any>[] = [];
  const pinned: PinnedService[] = [];
  for (const { ref, file: declaredIn, index: i, where } of entries) {
    const service = ref.package ?? ref.module!;
    // Every message names the build file that declares the entry, the entry's index there and what it names.
    const at = where ?? `build file ${declaredIn}: services[${i}]: service ${service}`;
    if (ref.version !== undefined && isBuiltin(ref.package!)) throw new UsageError(`build file ${declaredIn}: ${ref.package} is a Node.js built-in module, not a service package`, 'BAD_BUILD_FILE');
    const release = ref.version !== undefined ? pinRelease(declaredIn, i, ref.package!, ref.version) : undefined;
    const file = release ? releaseEntry(declaredIn, i, release) : resolveFrom(declaredIn, ref, where);
    if (statSync(file, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`${at}: ${file} is a directory, not a module`, 'BAD_BUILD_FILE');
    let mod: { default?: unknown };
    try {
      mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    } catch (e) {
      throw new UsageError(`${at} failed to load: ${describeThrown(e)}`, 'BAD_BUILD_FILE');
    }
    const exported = mod.default;
    const notAService = (why = 'does not export a service (default export: plugin or factory)') => new UsageError(`${at} ${why}`, 'BAD_BUILD_FILE');
    if (typeof exported !== 'function' && !isPlugin(exported)) throw notAService();
    const options = ref.options ?? {};
    let problem;
    try {
      problem = checkServiceOptions(optionsSchemaOf(exported), options);
    } catch (e) {
      throw notAService(`declares an options schema that cannot be read: ${describeThrown(e)}`);
    }
    if (problem) throw new UsageError(`${at}: ${problem.message}`, 'BAD_OPTION');
    let plugin: unknown = exported;
    if (typeof exported === 'function') {
      try {
        plugin = (exported as (o?: unknown) => unknown)(options);
      } catch (e) {
        throw new UsageError(`${at} refused its options ${JSON.stringify(options)}: ${oneLine(e)}`, 'BAD_OPTION');
      }
    }
    if (!isPlugin(plugin)) throw notAService(typeof exported === 'function' ? 'has a factory that returned no plugin (an object with "name" and "apply")' : undefined);
    const bad = declarationProblem(plugin);
    if (bad) throw notAService(`is not a valid service: the plugin ${bad}`);
    if (release) {
      // A pinned release is what its package.json says it is: the version a VM's record carries
      // and the one the operator pinned must be the same.
      if (plugin.name !== release.package || plugin.version !== release.version) {
        throw new UsageError(
          `${at}: the release at ${release.dir} reports itself as ${plugin.name}@${String(plugin.version)}, its package.json says ${release.package}@${release.version}`,
          'BAD_BUILD_FILE',
        );
      }
      pinned.push({ file: declaredIn, index: i, range: ref.version!, release });
    }
    checkCopies(at, file, plugin, plugins); // one @plugvisor/core, one copy of each hook owner
    plugins.push(plugin);
  }
  try {
    const composedSpec: BuildSpec = {
      name: spec.name,
      ...(spec.description !== undefined ? { description: spec.description } : {}),
      services: entries.map(({ ref, file }) => (ref.module !== undefined ? { ...ref, module: resolve(dirname(file), ref.module) } : ref)),
    };
    return { hv: Hypervisor.compose(plugins, { name: spec.name, conduits: BACKEND_CONDUITS }), path: abs, spec: composedSpec, files, pinned };
  } catch (e) {
    if (e instanceof ComposeError) throw new UsageError(`build file ${abs}: ${e.message}`, 'BAD_BUILD_FILE');
    throw e;
  }
}
