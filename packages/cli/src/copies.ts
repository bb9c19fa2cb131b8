import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, type ServicePlugin } from '@plugvisor/core';

/**
 * One copy of @plugvisor/core, and of every service another service taps, per build.
 *
 * A service package that installed its own copy of @plugvisor/core, or of a service whose hooks
 * it taps (svc-smccc-arch's ARCH_FEATURES, svc-xen's event-channel hooks), runs against other
 * classes and other module-level state than the build's: nothing says so, and the guest sees
 * the difference. Both are peer dependencies of a service (docs.npmjs.com, package.json
 * "peerDependencies": the host provides them), so a second copy is an installation mistake, and
 * the build is refused naming the service and both folders before it is composed.
 *
 * "Which copy" is the folder Node would load for a bare specifier from the service's module:
 * the first `node_modules/<name>` on the path from its folder up (nodejs.org/api/modules.html,
 * "Loading from node_modules folders"; ESM resolution walks the same folders), realpath'd, so a
 * pnpm or `npm link` symlink to one folder is one copy.
 */

/** The package folder (realpath) Node loads `name` from when `fromFile` imports it, or undefined if none. */
export function packageDirFrom(fromFile: string, name: string): string | undefined {
  for (const nm of createRequire(fromFile).resolve.paths(name) ?? []) {
    const dir = join(nm, name);
    if (existsSync(join(dir, 'package.json'))) {
      try {
        return realpathSync(dir);
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

interface PackageJson {
  readonly name?: unknown;
  readonly version?: unknown;
  readonly dependencies?: unknown;
  readonly peerDependencies?: unknown;
  readonly optionalDependencies?: unknown;
}

function readJson(file: string): PackageJson | undefined {
  try {
    const json = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return json && typeof json === 'object' ? (json as PackageJson) : undefined;
  } catch {
    return undefined;
  }
}

/** The nearest package.json at or above the module's folder (realpath): its folder and contents. */
function owningPackage(file: string): { dir: string; json: PackageJson } | undefined {
  let dir: string;
  try {
    dir = dirname(realpathSync(file));
  } catch {
    return undefined;
  }
  for (;;) {
    const json = readJson(join(dir, 'package.json'));
    if (json) return { dir, json };
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The packages a service's package.json lets it import from another package: dependencies, peer and optional. */
function declaredImports(json: PackageJson): Set<string> {
  const names = new Set<string>();
  for (const section of [json.dependencies, json.peerDependencies, json.optionalDependencies]) {
    if (section && typeof section === 'object') for (const n of Object.keys(section)) names.add(n);
  }
  return names;
}

const versionAt = (dir: string) => {
  const v = readJson(join(dir, 'package.json'))?.version;
  return typeof v === 'string' ? v : '?';
};

const CORE = '@plugvisor/core';
let cliCore: string | undefined | null = null;
/** The folder of the @plugvisor/core this CLI runs on. */
function cliCoreDir(): string | undefined {
  if (cliCore === null) cliCore = packageDirFrom(fileURLToPath(import.meta.url), CORE);
  return cliCore;
}

/** Where each loaded service came from: its module file and the folder of its package. */
const loadedFrom = new WeakMap<ServicePlugin<any>, { file: string; dir: string | undefined; imports: Set<string> }>();

/**
 * Called for each service of a build as it is loaded, with the services loaded before it. Refuses (UsageError, BAD_BUILD_FILE: exit 2) a
 * service that would load another @plugvisor/core than the CLI's, and two services of which one
 * would load another copy of the other than the build loads. `at` names the build file and entry.
 */
export function checkCopies(at: string, file: string, plugin: ServicePlugin<any>, earlier: readonly ServicePlugin<any>[]): void {
  const pkg = owningPackage(file);
  const imports = pkg ? declaredImports(pkg.json) : new Set<string>();
  const self = { file, dir: pkg && pkg.json.name === plugin.name ? pkg.dir : undefined, imports };

  const core = packageDirFrom(file, CORE);
  const mine = cliCoreDir();
  if (core !== undefined && mine !== undefined && core !== mine) {
    throw new UsageError(
      `${at} uses its own copy of ${CORE} at ${core} (${versionAt(core)}); the CLI's is ${mine} (${versionAt(mine)}): ` +
        `install the service so that it shares the CLI's (${CORE} is a peer dependency of services: remove the copy in the service's node_modules)`,
      'BAD_BUILD_FILE',
    );
  }

  const refuse = (user: string, owner: string, theirs: string, loaded: string) =>
    new UsageError(
      `${at}: ${user} uses its own copy of ${owner} at ${theirs} (${versionAt(theirs)}); the build loads ${owner} from ${loaded} (${versionAt(loaded)}): ` +
        `install one copy that both share (${owner} is a peer dependency of the services that tap its hooks)`,
      'BAD_BUILD_FILE',
    );
  for (const other of earlier) {
    const seen = loadedFrom.get(other);
    if (!seen) continue;
    // this service imports an earlier one: does it reach the copy the build loaded?
    if (seen.dir !== undefined && imports.has(other.name)) {
      const theirs = packageDirFrom(file, other.name);
      if (theirs !== undefined && theirs !== seen.dir) throw refuse(plugin.name, other.name, theirs, seen.dir);
    }
    // an earlier service imports this one
    if (self.dir !== undefined && seen.imports.has(plugin.name)) {
      const theirs = packageDirFrom(seen.file, plugin.name);
      if (theirs !== undefined && theirs !== self.dir) throw refuse(other.name, plugin.name, theirs, self.dir);
    }
  }
  loadedFrom.set(plugin, self);
}
