import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkServiceOptions, ComposeError, Hypervisor, optionsSchemaOf, UsageError, type ServicePlugin } from '@plugvisor/core';
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
const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, '; ');

const isPlugin = (v: unknown): v is ServicePlugin =>
  !!v && typeof v === 'object' && typeof (v as ServicePlugin).name === 'string' && typeof (v as ServicePlugin).apply === 'function';

/**
 * Loads and composes a build file. The build is composed with the conduits of every backend
 * this CLI ships (BACKEND_CONDUITS): a service may call on any of them (smccc, xen, x86-port),
 * and a conduit no backend declares is a BAD_BUILD_FILE naming the service and the call.
 */
export async function loadBuild(path: string = DEFAULT_BUILD): Promise<LoadedBuild> {
  const abs = resolve(path);
  const spec = parseSpec(abs);
  const plugins: ServicePlugin<any>[] = [];
  for (const entry of spec.services) {
    const ref: ServiceRef = typeof entry === 'string' ? { package: entry } : entry;
    const service = ref.package ?? ref.module!;
    const file = resolveFrom(abs, ref);
    let mod: { default?: unknown };
    try {
      mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    } catch (e) {
      throw new UsageError(`build file ${abs}: service ${service} failed to load: ${oneLine(e)}`, 'BAD_BUILD_FILE');
    }
    const exported = mod.default;
    const notAService = () => new UsageError(`build file ${abs}: ${service} does not export a service (default export: plugin or factory)`, 'BAD_BUILD_FILE');
    if (typeof exported !== 'function' && !isPlugin(exported)) throw notAService();
    const options = ref.options ?? {};
    const problem = checkServiceOptions(optionsSchemaOf(exported), options);
    if (problem) throw new UsageError(`build file ${abs}: service ${service}: ${problem.message}`, 'BAD_OPTION');
    let plugin: unknown = exported;
    if (typeof exported === 'function') {
      try {
        plugin = (exported as (o?: unknown) => unknown)(options);
      } catch (e) {
        throw new UsageError(`build file ${abs}: service ${service} refused its options ${JSON.stringify(options)}: ${oneLine(e)}`, 'BAD_OPTION');
      }
    }
    if (!isPlugin(plugin)) throw notAService();
    plugins.push(plugin);
  }
  try {
    return { hv: Hypervisor.compose(plugins, { name: spec.name, conduits: BACKEND_CONDUITS }), path: abs, spec };
  } catch (e) {
    if (e instanceof ComposeError) throw new UsageError(`build file ${abs}: ${e.message}`, 'BAD_BUILD_FILE');
    throw e;
  }
}
