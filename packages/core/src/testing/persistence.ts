import { isDeepStrictEqual } from 'node:util';
import { StateError } from '../runtime/persist.js';

/**
 * Persistence conformance for a machine component (a vCPU's run state, a device, VM-level
 * state): what Firecracker's `Persist` and vm-superio's `from_state` promise, checked.
 *
 * - every sample restores, saves JSON-safe (a JSON round trip changes nothing), and restoring
 *   that save into a fresh component saves the same value again;
 * - each corruption (a field path set to a bad value) is refused with a StateError whose
 *   field names it.
 */
export interface PersistentComponent<S> {
  save(): S;
  restore(state: unknown): void;
}

export interface PersistenceCheck<S> {
  /** Makes a fresh component (in its reset state). */
  readonly make: () => PersistentComponent<S>;
  /** States to round-trip (e.g. saved from components driven into interesting states). */
  readonly samples: readonly S[];
  /** Field paths (dot-separated) and bad values each to be refused naming the field. */
  readonly corruptions?: readonly { readonly path: string; readonly value: unknown }[];
  /**
   * How the state is serialised (default JSON). States holding bigints pass the core's
   * snapshot codec: `{ encode: encodeJson, decode: (b) => decodeJson(b, 'state') }`.
   */
  readonly codec?: { readonly encode: (v: unknown) => Uint8Array | string; readonly decode: (b: Uint8Array) => unknown };
  /** Called once at the end with every component `make` returned (e.g. to free engines). */
  readonly dispose?: (components: readonly PersistentComponent<S>[]) => void;
}

/** Runs the check; returns one sentence per problem (empty: the component conforms). */
export function checkPersistence<S>(check: PersistenceCheck<S>): string[] {
  const made: PersistentComponent<S>[] = [];
  const make = () => {
    const c = check.make();
    made.push(c);
    return c;
  };
  try {
    return run({ ...check, make });
  } finally {
    check.dispose?.(made);
  }
}

function roundTrip(check: PersistenceCheck<unknown>, v: unknown): unknown {
  if (!check.codec) return JSON.parse(JSON.stringify(v));
  const out = check.codec.encode(v);
  return check.codec.decode(typeof out === 'string' ? new TextEncoder().encode(out) : out);
}

function run<S>(check: PersistenceCheck<S>): string[] {
  const problems: string[] = [];
  check.samples.forEach((sample, n) => {
    const what = `sample ${n}`;
    let saved: S;
    try {
      const a = check.make();
      a.restore(structuredClone(sample));
      saved = a.save();
    } catch (e) {
      problems.push(`${what}: restore refused a valid state: ${(e as Error).message}`);
      return;
    }
    if (!isDeepStrictEqual(saved, sample)) problems.push(`${what}: save after restore differs from the sample`);
    let json: unknown;
    try {
      json = roundTrip(check as PersistenceCheck<unknown>, saved);
    } catch (e) {
      problems.push(`${what}: saved state is not ${check.codec ? 'serialisable by its codec' : 'JSON-safe'}: ${(e as Error).message}`);
      return;
    }
    if (!isDeepStrictEqual(json, saved)) problems.push(`${what}: saved state changes in a ${check.codec ? 'codec' : 'JSON'} round trip`);
    try {
      const b = check.make();
      b.restore(json);
      if (!isDeepStrictEqual(b.save(), saved)) problems.push(`${what}: restore(save()) saves a different state`);
    } catch (e) {
      problems.push(`${what}: restore refused its own JSON save: ${(e as Error).message}`);
    }
  });
  const base = check.samples[0];
  for (const { path, value } of check.corruptions ?? []) {
    if (base === undefined) break;
    const bad = setPath(structuredClone(base), path, value);
    try {
      check.make().restore(bad);
      problems.push(`${path} = ${JSON.stringify(value)}: accepted`);
    } catch (e) {
      const leaf = path.split('.').pop()!;
      if (!(e instanceof StateError)) problems.push(`${path}: refused with ${(e as Error).name}, not a StateError: ${(e as Error).message}`);
      else if (e.field !== leaf && !e.message.includes(leaf)) problems.push(`${path}: the refusal does not name the field: ${e.message}`);
    }
  }
  return problems;
}

function setPath(root: unknown, path: string, value: unknown): unknown {
  const keys = path.split('.');
  let o = root as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[keys[keys.length - 1]!] = value;
  return root;
}
