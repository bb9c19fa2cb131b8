import { abiFromRecord, checkRecord, servicesInUse, type AbiRecord } from '../abi/record.js';
import { PlugvisorError, ServiceFailure, SnapshotError, describeThrown, type SnapshotErrorCode } from '../errors.js';
import type { Hypervisor } from '../hypervisor.js';
import type { Arch, Machine } from '../machine/machine.js';
import type { MemoryRegion } from '../machine/memory.js';
import type { StateValue } from '../plugin/service.js';
import { Vm, type SavedServiceState } from '../vm.js';
import { StateReader } from '../runtime/persist.js';
import { StreamWriter, decodeJson, encodeJson, recordName, RecordType, verifyStream, type SnapshotKey, type StreamRecord } from './stream.js';

/**
 * Saving a VM into the stream, and restoring one: integrity first, then structure, then the
 * ABI against the destination build, then every service's state — all before anything is
 * changed. A refusal lists every problem; on success the caller gets a ready VM and the
 * machine's part (description, vCPU blobs, memory) to rebuild the backend from.
 */

export const PAGE_SIZE = 4096;

/** What a machine backend contributes to a snapshot. */
export interface MachineImage {
  readonly arch: Arch;
  /** Backend-defined JSON: board, devices, vCPU count, backend state schema version. */
  readonly description: StateValue;
  /** One opaque, backend-versioned blob per vCPU, index order. */
  readonly vcpus: readonly Uint8Array[];
  readonly memory: readonly MemoryRegion[];
}

interface AbiPayload {
  readonly build: { readonly name: string; readonly hash: string };
  readonly started: boolean;
  readonly record: AbiRecord;
}

/** Writes the VM and its machine as a stream; with `options.key`, signed (a MAC record: stream.ts). */
export function saveSnapshot(vm: Vm, machine: MachineImage, options: SnapshotKey = {}): Uint8Array {
  const w = new StreamWriter(options);
  const payload: AbiPayload = {
    build: { name: vm.hv.name, hash: vm.hv.manifest().hash },
    started: vm.started,
    record: vm.record(),
  };
  w.record(RecordType.ABI, encodeJson(payload));
  const layout = machine.memory.map((r) => ({ gpa: r.base, size: r.bytes.byteLength }));
  w.record(RecordType.MACHINE, encodeJson({ arch: machine.arch, vcpus: machine.vcpus.length, memory: layout, description: machine.description }));
  for (const s of vm.saveServiceStates()) {
    const optional = vm.hv.catalog.services.get(s.service)?.surface.state?.mandatory === false;
    w.record(RecordType.SERVICE_STATE, encodeJson(s), optional);
  }
  machine.vcpus.forEach((blob, index) => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(index, 0);
    w.record(RecordType.VCPU, Buffer.concat([head, blob]));
  });
  for (const region of machine.memory) w.record(RecordType.MEMORY, encodeMemory(region));
  return w.finish();
}

// ---- memory records: zero pages elided -------------------------------------------------------
//   u64 gpa  u64 size  u32 page size  u32 stored pages  bitmap[ceil(pages/8)]  pages...

function encodeMemory(region: MemoryRegion): Uint8Array {
  const { bytes } = region;
  const pages = Math.ceil(bytes.byteLength / PAGE_SIZE);
  const bitmap = Buffer.alloc(Math.ceil(pages / 8));
  const stored: Uint8Array[] = [];
  const words = bytes.byteOffset % 8 === 0 ? new BigUint64Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / 8)) : undefined;
  for (let p = 0; p < pages; p++) {
    const start = p * PAGE_SIZE;
    const end = Math.min(start + PAGE_SIZE, bytes.byteLength);
    let zero = true;
    if (words && end - start === PAGE_SIZE) {
      for (let i = start / 8; i < end / 8; i++) if (words[i] !== 0n) { zero = false; break; }
    } else {
      for (let i = start; i < end; i++) if (bytes[i] !== 0) { zero = false; break; }
    }
    if (zero) continue;
    bitmap[p >> 3]! |= 1 << (p & 7);
    const page = Buffer.alloc(PAGE_SIZE);
    page.set(bytes.subarray(start, end));
    stored.push(page);
  }
  const head = Buffer.alloc(24);
  head.writeBigUInt64LE(region.base, 0);
  head.writeBigUInt64LE(BigInt(bytes.byteLength), 8);
  head.writeUInt32LE(PAGE_SIZE, 16);
  head.writeUInt32LE(stored.length, 20);
  return Buffer.concat([head, bitmap, ...stored]);
}

/** A memory region from a snapshot, verified; `restoreInto` fills a RAM buffer of `size`. */
export interface SavedMemory {
  readonly gpa: bigint;
  readonly size: number;
  readonly storedPages: number;
  restoreInto(target: Uint8Array): void;
}

function decodeMemory(rec: StreamRecord): SavedMemory {
  const p = Buffer.from(rec.payload.buffer, rec.payload.byteOffset, rec.payload.byteLength);
  const bad = (why: string) => new SnapshotError('BAD_RECORD', `MEMORY record at byte ${rec.offset}: ${why}`);
  if (p.length < 24) throw bad('too short');
  const gpa = p.readBigUInt64LE(0);
  const size64 = p.readBigUInt64LE(8);
  if (p.readUInt32LE(16) !== PAGE_SIZE) throw bad(`page size ${p.readUInt32LE(16)} is not ${PAGE_SIZE}`);
  if (size64 === 0n || size64 > 1n << 40n) throw bad(`region size ${size64} is not plausible`);
  const size = Number(size64);
  const pages = Math.ceil(size / PAGE_SIZE);
  const storedPages = p.readUInt32LE(20);
  const bitmapLen = Math.ceil(pages / 8);
  if (p.length !== 24 + bitmapLen + storedPages * PAGE_SIZE) throw bad('length does not match its page count');
  const bitmap = p.subarray(24, 24 + bitmapLen);
  let set = 0;
  for (let i = 0; i < pages; i++) if (bitmap[i >> 3]! & (1 << (i & 7))) set++;
  for (let i = pages; i < bitmapLen * 8; i++) if (bitmap[i >> 3]! & (1 << (i & 7))) throw bad('bitmap marks pages past the region');
  if (set !== storedPages) throw bad(`bitmap marks ${set} pages, record stores ${storedPages}`);
  const data = p.subarray(24 + bitmapLen);
  return {
    gpa,
    size,
    storedPages,
    restoreInto(target: Uint8Array) {
      if (target.byteLength !== size) {
        throw new PlugvisorError('MEMORY_SIZE', `memory at 0x${gpa.toString(16)} is ${size} bytes; target has ${target.byteLength}`);
      }
      target.fill(0);
      let k = 0;
      for (let i = 0; i < pages; i++) {
        if (!(bitmap[i >> 3]! & (1 << (i & 7)))) continue;
        const start = i * PAGE_SIZE;
        const len = Math.min(PAGE_SIZE, size - start);
        target.set(data.subarray(k * PAGE_SIZE, k * PAGE_SIZE + len), start);
        k++;
      }
    },
  };
}

// ---- restore ------------------------------------------------------------------------------

export interface RestorePlan {
  /** A ready VM: ABI from the record, every service state loaded; not yet attached. */
  readonly vm: Vm;
  readonly started: boolean;
  readonly arch: Arch;
  readonly description: StateValue;
  readonly vcpus: readonly Uint8Array[];
  readonly memory: readonly SavedMemory[];
  /** Where the snapshot came from. */
  readonly source: { readonly build: string; readonly hash: string };
  /** Optional records this build did not know and skipped, and states it set aside. */
  readonly notes: readonly string[];
}

export interface RestoreOptions extends SnapshotKey {
  /** The destination backend's architecture: a different one is refused. */
  readonly arch?: Arch;
  /**
   * Backend check of its own part (description, vCPU blobs, memory layout); returns problems.
   * (`key`, when given, must have signed the stream: an unsigned or mis-signed one is refused.)
   */
  readonly checkMachine?: (description: StateValue, vcpus: readonly Uint8Array[], memory: readonly SavedMemory[]) => string[];
}

class Problems {
  readonly list: string[] = [];
  code: SnapshotErrorCode | undefined;
  add(code: SnapshotErrorCode, message: string): void {
    this.code ??= code;
    this.list.push(message);
  }
  throwIfAny(headline: string): void {
    if (this.list.length === 0) return;
    throw new SnapshotError(this.code!, `${headline}:\n  - ${this.list.join('\n  - ')}`, this.list);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** At most this many characters in a name, hash or id string of a structural record. */
const MAX_NAME = 256;
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_NAME;
/** A u64 as the ABI record writes it: 0x and 1..16 lowercase hex digits. */
const U64_HEX = /^0x[0-9a-f]{1,16}$/;

function parseAbiPayload(v: unknown): AbiPayload | string {
  if (!isObject(v)) return 'ABI record is not an object';
  if (!isObject(v.build)) return `ABI record: build must be an object, got ${show(v.build)}`;
  if (!isName(v.build.name)) return `ABI record: build.name must be a string of 1..${MAX_NAME} characters, got ${show(v.build.name)}`;
  if (typeof v.build.hash !== 'string' || !/^[0-9a-f]{1,128}$/.test(v.build.hash)) return `ABI record: build.hash must be a lowercase hex string, got ${show(v.build.hash)}`;
  if (typeof v.started !== 'boolean') return `ABI record: started must be a boolean, got ${show(v.started)}`;
  if (!isObject(v.record)) return `ABI record: record must be an object, got ${show(v.record)}`;
  const checked = validateAbiRecord(v.record);
  return typeof checked === 'string' ? checked : (v as unknown as AbiPayload);
}

function show(v: unknown): string {
  const s = typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/** Structural check of an ABI record read from a file or stream: the record, or what is wrong (naming the field). */
export function validateAbiRecord(r: unknown): AbiRecord | string {
  if (!isObject(r)) return 'ABI record is not an object';
  if (r.format !== 1) return `ABI record format ${show(r.format)} is not understood`;
  for (const k of ['services', 'features', 'versions', 'registers'] as const) {
    if (!isObject(r[k])) return `ABI record: ${k} must be an object, got ${show(r[k])}`;
  }
  for (const [name, f] of Object.entries(r.features as Record<string, unknown>)) {
    const ok = isObject(f) && isName(f.service) && typeof f.enabled === 'boolean' && Array.isArray(f.calls) && f.calls.every(isName);
    if (!ok) return `ABI record: features.${name} must be { service, enabled, calls: [names] }, got ${show(f)}`;
  }
  for (const [name, s] of Object.entries(r.versions as Record<string, unknown>)) {
    const ok = isObject(s) && isName(s.service) && isName(s.name) && typeof s.value === 'number' && Number.isInteger(s.value) && s.value >= 0 && s.value <= 0xffff_ffff;
    if (!ok) return `ABI record: versions.${name} must be { service, name, value: u32 }, got ${show(s)}`;
  }
  for (const [name, s] of Object.entries(r.services as Record<string, unknown>)) {
    let ok = isObject(s) && isName(s.version);
    if (ok && (s as Record<string, unknown>).state !== undefined) {
      const st = (s as Record<string, unknown>).state;
      ok = isObject(st) && isName(st.id) && Number.isInteger(st.version) && (st.version as number) >= 0 && (st.version as number) <= 0x7fff_ffff;
    }
    if (!ok) return `ABI record: services.${name} must be { version, state?: { id, version } }, got ${show(s)}`;
  }
  for (const [id, val] of Object.entries(r.registers as Record<string, unknown>)) {
    if (!U64_HEX.test(id)) return `ABI record: registers key ${show(id)} is not a u64 register id (0x and 1..16 hex digits)`;
    if (typeof val !== 'string' || !U64_HEX.test(val)) return `ABI record: registers.${id} must be a u64 (0x and 1..16 hex digits), got ${show(val)}`;
  }
  if (r.behaviour !== undefined) {
    if (!isObject(r.behaviour)) return `ABI record: behaviour must be an object, got ${show(r.behaviour)}`;
    for (const [name, b] of Object.entries(r.behaviour)) {
      const ok =
        isObject(b) &&
        typeof b.digest === 'string' &&
        isObject(b.calls) &&
        Object.values(b.calls).every((c) => isObject(c) && Object.values(c).every((o) => typeof o === 'string')) &&
        (b.ids === undefined || (isObject(b.ids) && Object.values(b.ids).every(isName))); // call → callId; older records lack it
      if (!ok) return `ABI record: behaviour.${name} must be { digest, calls: { call: { input: output } }, ids?: { call: id } }, got ${show(b)}`;
    }
  }
  if (r.continuations !== undefined) {
    if (!isObject(r.continuations)) return `ABI record: continuations must be an object, got ${show(r.continuations)}`;
    const int = (x: unknown, lo: number, hi: number) => Number.isInteger(x) && (x as number) >= lo && (x as number) <= hi;
    for (const [id, c] of Object.entries(r.continuations)) {
      const k = c as Record<string, unknown>;
      const fieldOk = (f: unknown) => isObject(f) && isName(f.name) && int(f.reg, 0, 30) && int(f.shift, 0, 63) && int(f.width, 1, 64 - Number(f.shift));
      const other = k?.otherSubOps as Record<string, unknown> | undefined;
      const ok =
        isObject(k) && isName(k.call) && isName(k.feature) && Array.isArray(k.encoding) && k.encoding.length > 0 && k.encoding.length <= 64 && k.encoding.every(fieldOk) &&
        (other === undefined || (isObject(other) && int(other.reg, 0, 30) && int(other.value, -0x8000_0000, 0x7fff_ffff)));
      if (!ok) return `ABI record: continuations.${id} must be { call, feature, encoding: [{ name, reg, shift, width }], otherSubOps?: { reg, value } }, got ${show(c)}`;
    }
  }
  return r as unknown as AbiRecord;
}

/** A SERVICE_STATE record's frame (the service validates `data` itself, in its `load`). */
function parseServiceState(v: unknown, where: string): SavedServiceState {
  const r = new StateReader(where, v);
  if (!isName(r.raw('service'))) r.fail('service', `must be a package name of 1..${MAX_NAME} characters, got ${show(r.raw('service'))}`);
  if (!isName(r.raw('stateId'))) r.fail('stateId', `must be a state id of 1..${MAX_NAME} characters, got ${show(r.raw('stateId'))}`);
  r.int('schema', 0, 0x7fff_ffff);
  if (r.raw('data') === undefined) r.fail('data', 'is missing');
  return v as unknown as SavedServiceState;
}

interface MachinePayload {
  arch: Arch;
  vcpus: number;
  memory: Array<{ gpa: bigint; size: number }>;
  description: StateValue;
}

/**
 * The MACHINE record, field by field; counts are bounded by what the stream holds before any
 * loop runs over them (`vcpus` by its VCPU records, `memory` by its MEMORY records).
 */
function parseMachine(v: unknown, where: string, vcpuRecords: number, memoryRecords: number): MachinePayload {
  const r = new StateReader(where, v);
  const arch = r.oneOf('arch', ['arm64', 'x86_64'] as const);
  const vcpus = r.int('vcpus', 1, 0xffff_ffff);
  if (vcpus !== vcpuRecords) r.fail('vcpus', `is ${vcpus} but the stream has ${vcpuRecords} VCPU records`);
  const memory = r.array('memory');
  if (memory.length !== memoryRecords) r.fail('memory', `lists ${memory.length} RAM regions but the stream has ${memoryRecords} MEMORY records`);
  const layout = memory.map((m, i) => {
    const e = new StateReader(`${where} memory[${i}]`, m);
    return { gpa: e.bigint('gpa'), size: e.int('size', 1, 2 ** 40) };
  });
  if (!isObject(r.raw('description'))) r.fail('description', `must be an object, got ${show(r.raw('description'))}`);
  return { arch, vcpus, memory: layout, description: r.raw('description') as StateValue };
}

/** Verifies a snapshot against the destination build and returns a ready plan, or refuses. */
export function planRestore(bytes: Uint8Array, hv: Hypervisor, options: RestoreOptions = {}): RestorePlan {
  // integrity (and with a key, authenticity): throws on the first broken byte
  const { records, signed } = verifyStream(bytes, { key: options.key });
  const problems = new Problems();
  const notes: string[] = [];
  if (signed && !options.key) notes.push('the snapshot is signed (MAC record); no key was given, so its MAC was not checked');
  const vcpuRecords = records.filter((r) => r.type === RecordType.VCPU).length;
  const memoryRecords = records.filter((r) => r.type === RecordType.MEMORY).length;
  const seen = new Set<number>();

  let abi: AbiPayload | undefined;
  let machine: MachinePayload | undefined;
  const states = new Map<string, SavedServiceState>();
  const vcpus = new Map<number, Uint8Array>();
  const memory: SavedMemory[] = [];

  for (const rec of records) {
    const where = `${recordName(rec.type)} record at byte ${rec.offset}`;
    const once = rec.type === RecordType.ABI || rec.type === RecordType.MACHINE;
    if (once && seen.has(rec.type)) { problems.add('DUPLICATE', `second ${where}`); continue; }
    seen.add(rec.type);
    switch (rec.type) {
      case RecordType.ABI: {
        const json = jsonOf(rec, problems);
        if (json === NOT_JSON) break;
        const parsed = parseAbiPayload(json);
        if (typeof parsed === 'string') problems.add('BAD_RECORD', `${parsed} (${where})`);
        else abi = parsed;
        break;
      }
      case RecordType.MACHINE: {
        const json = jsonOf(rec, problems);
        if (json === NOT_JSON) break;
        try {
          machine = parseMachine(json, where, vcpuRecords, memoryRecords);
        } catch (e) {
          problems.add('BAD_RECORD', (e as Error).message);
        }
        break;
      }
      case RecordType.SERVICE_STATE: {
        let s: SavedServiceState;
        const json = jsonOf(rec, problems);
        if (json === NOT_JSON) break;
        try {
          s = parseServiceState(json, where);
        } catch (e) {
          problems.add('BAD_RECORD', (e as Error).message);
          break;
        }
        if (states.has(s.service)) problems.add('DUPLICATE', `second state record for ${s.service}`);
        else states.set(s.service, s);
        break;
      }
      case RecordType.VCPU: {
        if (rec.payload.byteLength < 8) { problems.add('BAD_RECORD', `${where} is too short`); break; }
        const dv = new DataView(rec.payload.buffer, rec.payload.byteOffset, rec.payload.byteLength);
        const index = dv.getUint32(0, true);
        if (dv.getUint32(4, true) !== 0) { problems.add('BAD_RECORD', `${where}: reserved head bytes 4..7 are 0x${dv.getUint32(4, true).toString(16)}; they must be 0`); break; }
        if (vcpus.has(index)) problems.add('DUPLICATE', `second VCPU record for vCPU ${index}`);
        else vcpus.set(index, rec.payload.subarray(8));
        break;
      }
      case RecordType.MEMORY: {
        try {
          memory.push(decodeMemory(rec));
        } catch (e) {
          problems.add('BAD_RECORD', (e as Error).message);
        }
        break;
      }
      default:
        if (rec.optional) notes.push(`skipped unknown optional ${where}`);
        else problems.add('UNKNOWN_MANDATORY', `unknown mandatory ${where}: written by a newer build?`);
    }
  }
  if (!seen.has(RecordType.ABI)) problems.add('MISSING', 'no ABI record');
  if (!seen.has(RecordType.MACHINE)) problems.add('MISSING', 'no MACHINE record');
  if (machine) {
    // machine.vcpus equals the number of VCPU records (parseMachine): bounded by the file
    for (let i = 0; i < machine.vcpus; i++) if (!vcpus.has(i)) problems.add('MISSING', `no VCPU record for vCPU ${i}`);
    for (const i of vcpus.keys()) if (i >= machine.vcpus) problems.add('BAD_RECORD', `VCPU record for vCPU ${i} of a ${machine.vcpus}-vCPU machine`);
  }
  if (machine) {
    // every region the machine had, and nothing else
    const want = machine.memory.map((r) => `0x${r.gpa.toString(16)}+${r.size}`).sort();
    const have = memory.map((r) => `0x${r.gpa.toString(16)}+${r.size}`).sort();
    for (const r of want) if (!have.includes(r)) problems.add('MISSING', `MACHINE record: memory lists RAM region ${r} (gpa+size); no MEMORY record holds it`);
    for (const r of have) if (!want.includes(r)) problems.add('BAD_RECORD', `MEMORY record ${r} (gpa+size) is not a RAM region the MACHINE record's memory lists`);
  }
  const sorted = [...memory].sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.gpa + BigInt(sorted[i - 1]!.size) > sorted[i]!.gpa) problems.add('BAD_RECORD', 'MEMORY records overlap');
  }
  problems.throwIfAny('snapshot refused: the stream is malformed');

  // ABI: can this build reproduce the VM's view exactly?
  const record = abi!.record;
  for (const p of checkRecord(record, hv.catalog, hv)) problems.add('INCOMPATIBLE', p);
  if (options.arch && options.arch !== machine!.arch) {
    problems.add('INCOMPATIBLE', `snapshot is of an ${machine!.arch} machine; this backend runs ${options.arch}`);
  }
  problems.throwIfAny('snapshot refused: this build cannot reproduce the VM');

  // Service states: load every one into a VM object nobody has seen yet.
  const vm = new Vm(hv, abiFromRecord(record, hv.catalog));
  const used = servicesInUse(record);
  const loaded = new Map<string, unknown>();
  for (const service of hv.services) {
    const decl = service.surface.state;
    if (!decl || !service.state) continue;
    const saved = states.get(service.name);
    if (!saved) {
      const wasThere = record.services[service.name]?.state;
      if (wasThere && used.has(service.name) && decl.mandatory !== false)
        problems.add('MISSING', `no SERVICE_STATE record with service ${service.name} (state '${decl.id}')`);
      else loaded.set(service.name, service.state.create(vm)); // new to this VM, and off for it
      continue;
    }
    if (saved.stateId !== decl.id) {
      problems.add('INCOMPATIBLE', `SERVICE_STATE record of ${service.name}: stateId '${saved.stateId}' is not the '${decl.id}' this version keeps`);
      continue;
    }
    if (saved.schema > decl.version || saved.schema < (decl.minReadable ?? decl.version)) {
      problems.add('INCOMPATIBLE', `SERVICE_STATE record of ${service.name}: schema ${saved.schema} not readable (reads ${decl.minReadable ?? decl.version}..${decl.version})`);
      continue;
    }
    try {
      loaded.set(service.name, service.state.load(saved.data, saved.schema, vm));
    } catch (e) {
      // A load refuses a state it cannot accept by throwing a PlugvisorError (StateError,
      // AbiError): the snapshot is refused. Anything else (a TypeError, a thrown string) is the
      // service's own failure, named as such rather than blamed on the file.
      if (!(e instanceof PlugvisorError)) throw new ServiceFailure({ service: service.name, version: service.version, phase: 'state load' }, e);
      problems.add('BAD_RECORD', `SERVICE_STATE record of ${service.name}: state refused: ${messageOf(e)}`);
    }
  }
  for (const name of states.keys()) {
    if (hv.catalog.services.has(name)) continue;
    if (used.has(name)) continue; // already reported as a missing service
    notes.push(`set aside the state of ${name}: not in this build, and the VM does not use it`);
  }
  const vcpuList = [...vcpus.entries()].sort((a, b) => a[0] - b[0]).map(([, blob]) => blob);
  let machineProblems: string[] = [];
  try {
    machineProblems = options.checkMachine?.(machine!.description, vcpuList, memory) ?? [];
  } catch (e) {
    // a backend check must return its problems; one that throws is still a refusal, not a crash
    machineProblems = [`machine check failed: ${messageOf(e)}`];
  }
  for (const p of machineProblems) problems.add('INCOMPATIBLE', p);
  problems.throwIfAny('snapshot refused');

  vm.adoptStates(loaded, abi!.started);
  return {
    vm,
    started: abi!.started,
    arch: machine!.arch,
    description: machine!.description,
    vcpus: vcpuList,
    memory,
    source: { build: abi!.build.name, hash: abi!.build.hash },
    notes,
  };
}

const NOT_JSON = Symbol('not JSON');

/** A record's JSON payload, or NOT_JSON (and a problem) if it is not JSON. */
function jsonOf(rec: StreamRecord, problems: Problems): unknown {
  try {
    return decodeJson(rec.payload, `${recordName(rec.type)} record at byte ${rec.offset}:`);
  } catch (e) {
    problems.add('BAD_RECORD', (e as Error).message);
    return NOT_JSON;
  }
}

function messageOf(e: unknown): string {
  if (e instanceof PlugvisorError) return e.message; // StateError, AbiError… already say where
  return describeThrown(e);
}

/** A machine a restore plan can finish: the core's Machine plus the backend's router hookup. */
export interface RestorableMachine extends Machine {
  attach(router: Vm): void;
}

/**
 * The last step of a restore, the same for every backend: fill the freshly built machine's RAM
 * from the verified plan (each saved region into the region at the same address and size) and
 * bind the VM and the machine to each other. The caller disposes the machine if this throws.
 */
export function finishRestore(plan: RestorePlan, machine: RestorableMachine): void {
  const regions = machine.memory.regions();
  for (const saved of plan.memory) {
    const region = regions.find((r) => r.base === saved.gpa && r.bytes.byteLength === saved.size);
    if (!region) {
      throw new PlugvisorError('MEMORY_LAYOUT', `the machine has no RAM region of ${saved.size} bytes at 0x${saved.gpa.toString(16)} for the snapshot's memory`);
    }
    saved.restoreInto(region.bytes);
  }
  plan.vm.attachMachine(machine);
  machine.attach(plan.vm);
}

/** Reads only the ABI record of a snapshot (for `plugvisor check --vm SNAPSHOT`); with a key, authenticated first. */
export function readAbiRecord(bytes: Uint8Array, options: SnapshotKey = {}): AbiRecord {
  for (const rec of verifyStream(bytes, options).records) {
    if (rec.type !== RecordType.ABI) continue;
    const parsed = parseAbiPayload(decodeJson(rec.payload, 'ABI'));
    if (typeof parsed === 'string') throw new SnapshotError('BAD_RECORD', parsed);
    return parsed.record;
  }
  throw new SnapshotError('MISSING', 'no ABI record');
}
