import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkServiceOptions, ComposeError, describeThrown, Hypervisor, optionsSchemaOf, UsageError, type ServicePlugin } from '@plugvisor/core';
import { BACKEND_CONDUITS } from './backends.js';

/**
 * Build files: which service packages (and options) make up a hypervisor build.
 *
 *   { "name": "capped",
 *     "services": [ "@plugvisor/svc-trng",
 *                   { "package": "@plugvisor/svc-psci", "options": { "maxVersion": "1.1" } },
 *                   { "module": "./my-service.js" } ] }
 *
 * A service module's default export is a ServicePlugin or a factory `(options) => plugin`.
 * Packages resolve from the build file's folder first, then from the CLI's own dependencies.
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
  readonly options?: Record<string, unknown>;
}

export interface BuildSpec {
  readonly name: string;
  readonly description?: string;
  readonly services: ReadonlyArray<string | ServiceRef>;
}

export const DEFAULT_BUILD = fileURLToPath(new URL('../builds/default.json', import.meta.url));

export interface LoadedBuild {
  readonly hv: Hypervisor;
  readonly path: string;
  readonly spec: BuildSpec;
}

function parseSpec(path: string): BuildSpec {
  if (!existsSync(path)) throw new UsageError(`build file ${path} does not exist`, 'BAD_BUILD_FILE');
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`build file ${path} is not valid JSON: ${(e as Error).message}`, 'BAD_BUILD_FILE');
  }
  const spec = json as Partial<BuildSpec>;
  if (!spec || typeof spec !== 'object' || typeof spec.name !== 'string' || !Array.isArray(spec.services)) {
    throw new UsageError(`build file ${path} needs a "name" string and a "services" array`, 'BAD_BUILD_FILE');
  }
  spec.services.forEach((s, i) => {
    const ok =
      typeof s === 'string' ||
      (s && typeof s === 'object' && (typeof s.package === 'string') !== (typeof s.module === 'string') && (s.options === undefined || (!!s.options && typeof s.options === 'object' && !Array.isArray(s.options))));
    if (!ok) throw new UsageError(`build file ${path}: services[${i}] must be a package name or { "package" | "module", "options"?: {...} }`, 'BAD_BUILD_FILE');
  });
  return spec as BuildSpec;
}

function resolveFrom(path: string, ref: ServiceRef): string {
  if (ref.module) {
    const file = resolve(dirname(path), ref.module);
    if (!existsSync(file)) throw new UsageError(`build file ${path}: module ${ref.module} does not exist`, 'BAD_BUILD_FILE');
    return file;
  }
  if (isBuiltin(ref.package!)) throw new UsageError(`build file ${path}: ${ref.package} is a Node.js built-in module, not a service package`, 'BAD_BUILD_FILE');
  for (const base of [path, fileURLToPath(import.meta.url)]) {
    try {
      return createRequire(base).resolve(ref.package!);
    } catch {
      // try the next place
    }
  }
  throw new UsageError(`build file ${path}: cannot find service package ${ref.package} (is it installed?)`, 'BAD_BUILD_FILE');
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
  const abs = resolve(path);
  const spec = parseSpec(abs);
  const plugins: ServicePlugin<any>[] = [];
  for (const [i, entry] of spec.services.entries()) {
    const ref: ServiceRef = typeof entry === 'string' ? { package: entry } : entry;
    const service = ref.package ?? ref.module!;
    // Every message names the build file and the entry (its index and what it names).
    const at = `build file ${abs}: services[${i}]: service ${service}`;
    const file = resolveFrom(abs, ref);
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
    plugins.push(plugin);
  }
  try {
    return { hv: Hypervisor.compose(plugins, { name: spec.name, conduits: BACKEND_CONDUITS }), path: abs, spec };
  } catch (e) {
    if (e instanceof ComposeError) throw new UsageError(`build file ${abs}: ${e.message}`, 'BAD_BUILD_FILE');
    throw e;
  }
}
