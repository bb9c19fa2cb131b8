import type { ServicePlugin } from './plugin/service.js';

/**
 * Declared service options. A service whose factory takes options says which, as plain data,
 * so a build-file loader can check what an operator wrote before the factory runs:
 *
 *   export default defineServiceFactory({
 *     options: { maxVersion: { type: 'enum', values: ['1.0', '1.1'], description: 'highest version offered' } },
 *     create: createMyService,
 *   });
 *
 * A factory without a declared schema takes no options; so does a plain plugin.
 */
export type OptionSpec =
  | { readonly type: 'enum'; readonly values: readonly string[]; readonly description: string }
  | { readonly type: 'boolean'; readonly description: string }
  | { readonly type: 'integer'; readonly min?: number; readonly max?: number; readonly description: string }
  | { readonly type: 'string'; readonly description: string };

export type OptionsSchema = Readonly<Record<string, OptionSpec>>;

/** A service factory carrying its options schema (`factory.options`). */
export interface ServiceFactory<O extends object = Record<string, unknown>, S = unknown> {
  (options?: O): ServicePlugin<S>;
  readonly options: OptionsSchema;
}

/**
 * Attaches `options` (one entry for every key of `O`, no more) to a factory. The returned
 * function calls `create` unchanged; checking is the loader's job (`checkServiceOptions`).
 */
export function defineServiceFactory<O extends object, S>(def: {
  readonly options: { readonly [K in keyof O]-?: OptionSpec };
  readonly create: (options?: O) => ServicePlugin<S>;
}): ServiceFactory<O, S> {
  const create = def.create;
  const options: OptionsSchema = Object.freeze(Object.fromEntries(Object.entries(def.options).map(([k, v]) => [k, Object.freeze({ ...(v as OptionSpec) })])));
  return Object.assign((o?: O) => create(o), { options });
}

/** The schema a build file's default export declares: `{}` (no options) unless it is a declared factory. */
export function optionsSchemaOf(exported: unknown): OptionsSchema {
  const o = typeof exported === 'function' ? (exported as { options?: unknown }).options : undefined;
  return o && typeof o === 'object' ? (o as OptionsSchema) : {};
}

/** What a spec accepts, in words: `one of 1.0, 1.1`, `a boolean`, `an integer in 1..2`, `a string`. */
export function describeOptionSpec(spec: OptionSpec): string {
  switch (spec.type) {
    case 'enum':
      return `one of ${spec.values.join(', ')}`;
    case 'boolean':
      return 'true or false';
    case 'integer':
      return spec.min !== undefined && spec.max !== undefined
        ? `an integer in ${spec.min}..${spec.max}`
        : spec.min !== undefined
          ? `an integer ≥ ${spec.min}`
          : spec.max !== undefined
            ? `an integer ≤ ${spec.max}`
            : 'an integer';
    case 'string':
      return 'a string';
  }
}

export interface OptionProblem {
  /** The option key at fault. */
  readonly key: string;
  /** One line: what is wrong and what is accepted. */
  readonly message: string;
}

/** Checks `options` against `schema`: the first unknown key or refused value, or undefined. */
export function checkServiceOptions(schema: OptionsSchema, options: Readonly<Record<string, unknown>>): OptionProblem | undefined {
  const known = Object.keys(schema);
  for (const [key, value] of Object.entries(options)) {
    const spec = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (!spec) {
      const accepted = known.length ? `options: ${known.join(', ')}` : 'it takes no options';
      return { key, message: `unknown option '${key}' (${accepted})` };
    }
    const ok =
      spec.type === 'enum'
        ? typeof value === 'string' && spec.values.includes(value)
        : spec.type === 'boolean'
          ? typeof value === 'boolean'
          : spec.type === 'integer'
            ? Number.isSafeInteger(value) && (spec.min === undefined || (value as number) >= spec.min) && (spec.max === undefined || (value as number) <= spec.max)
            : typeof value === 'string';
    if (!ok) return { key, message: `option '${key}' is ${JSON.stringify(value)}; it takes ${describeOptionSpec(spec)}` };
  }
  return undefined;
}
