import { PlugvisorError } from '../errors.js';

/**
 * The persistence contract every machine component follows (Firecracker's `Persist`:
 * `save(&self) -> State`, `restore(args, &State) -> Result<Self>`; vm-superio's validating
 * `from_state`): a component saves a plain, JSON-safe state value, and is rebuilt by a function
 * that validates that value and throws a {@link StateError} naming the component and the field.
 * A restore check is a dry run of the same function.
 */
export interface Persist<S> {
  /** Component name used in errors, e.g. `vCPU 1 power`. */
  readonly component: string;
  save(): S;
  /** Validates `state` (throwing StateError) and applies it. */
  restore(state: unknown): void;
}

/** A saved component state was refused: names the component, the field and why. */
export class StateError extends PlugvisorError {
  constructor(
    readonly component: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super('STATE', `${component}: ${field} ${problem}`);
  }
}

/** Field readers that throw StateError naming `component` and the field. */
export class StateReader {
  constructor(
    readonly component: string,
    private readonly value: unknown,
  ) {
    if (!isRecord(value)) throw new StateError(component, 'state', 'is not an object');
  }

  private get(field: string): unknown {
    return (this.value as Record<string, unknown>)[field];
  }

  fail(field: string, problem: string): never {
    throw new StateError(this.component, field, problem);
  }

  int(field: string, min: number, max: number): number {
    const v = this.get(field);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(field, `must be an integer in ${min}..${max}, got ${show(v)}`);
    return v;
  }

  bool(field: string): boolean {
    const v = this.get(field);
    if (typeof v !== 'boolean') this.fail(field, `must be a boolean, got ${show(v)}`);
    return v;
  }

  oneOf<T extends string>(field: string, values: readonly T[]): T {
    const v = this.get(field);
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) this.fail(field, `must be one of ${values.join(', ')}, got ${show(v)}`);
    return v as T;
  }

  /** A u64 saved as a `0x…` hex string (JSON-safe). */
  u64(field: string): bigint {
    const v = this.get(field);
    if (typeof v !== 'string' || !/^0x[0-9a-f]{1,16}$/.test(v)) this.fail(field, `must be a u64 as a 0x-prefixed hex string, got ${show(v)}`);
    return BigInt(v);
  }

  /** A list of u64s saved as `0x…` hex strings; `length` exact, or at most `max`. */
  u64List(field: string, length?: number, max = Infinity): bigint[] {
    const v = this.get(field);
    if (!Array.isArray(v) || (length !== undefined && v.length !== length) || v.length > max) {
      this.fail(field, `must be an array of ${length ?? `at most ${max}`} u64 hex strings, got ${show(v)}`);
    }
    return v.map((x, i) => {
      if (typeof x !== 'string' || !/^0x[0-9a-f]{1,16}$/.test(x)) this.fail(field, `entry ${i} must be a u64 as a 0x-prefixed hex string, got ${show(x)}`);
      return BigInt(x);
    });
  }

  /** A u64 kept as a bigint (states stored with the core's encodeJson, which tags bigints). */
  bigint(field: string): bigint {
    const v = this.get(field);
    if (typeof v !== 'bigint' || v < 0n || v >= 1n << 64n) this.fail(field, `must be a u64 (bigint), got ${show(v)}`);
    return v;
  }

  /** Exactly `length` bytes saved as lowercase hex. */
  bytes(field: string, length: number): Uint8Array {
    const v = this.get(field);
    if (typeof v !== 'string' || v.length !== length * 2 || !/^[0-9a-f]*$/.test(v)) this.fail(field, `must be ${length} bytes of lowercase hex, got ${show(typeof v === 'string' && v.length > 40 ? `${v.slice(0, 40)}…` : v)}`);
    return new Uint8Array(Buffer.from(v, 'hex'));
  }

  /** A nested object (or null when `nullable`), read with its own reader. */
  object(field: string): StateReader;
  object(field: string, nullable: true): StateReader | null;
  object(field: string, nullable = false): StateReader | null {
    const v = this.get(field);
    if (v === null && nullable) return null;
    if (!isRecord(v)) this.fail(field, nullable ? `must be an object or null, got ${show(v)}` : `must be an object, got ${show(v)}`);
    return new StateReader(`${this.component} ${field}`, v);
  }

  array(field: string, length?: number): unknown[] {
    const v = this.get(field);
    if (!Array.isArray(v) || (length !== undefined && v.length !== length)) this.fail(field, `must be an array${length !== undefined ? ` of ${length}` : ''}, got ${show(v)}`);
    return v;
  }

  raw(field: string): unknown {
    return this.get(field);
  }
}

export const hex64 = (v: bigint): string => `0x${v.toString(16)}`;

/** Bytes as lowercase hex (the form {@link StateReader.bytes} reads). */
export const hexBytes = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function isRecord(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
