import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { SnapshotError } from '../errors.js';

/**
 * The snapshot/migration stream: a versioned header, then typed records, each flagged
 * mandatory or optional (Xen's libxc stream rule: an unknown mandatory record refuses the
 * stream, an unknown optional one is skipped) and each with its own CRC-32, then an END
 * record holding the record count and a SHA-256 of every byte before it, so that any change
 * to the stream — a flipped bit, a cut, a reordered or repeated record — is refused whole.
 *
 *   header   "PLVSNAP\0"  u16 major  u16 minor  u32 flags(0)                      16 bytes
 *   record   u32 type  u32 flags(0)  u64 length  payload[length]  u32 crc32        20+len
 *   END      type 0x7fffffff, payload: u32 records-before-end, 32-byte sha256
 *
 * All integers little-endian. Bit 31 of a record type marks it optional.
 */

export const MAGIC = Buffer.from('PLVSNAP\0', 'latin1');
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
export const OPTIONAL = 0x8000_0000;

export const RecordType = Object.freeze({
  ABI: 0x0001,
  MACHINE: 0x0002,
  SERVICE_STATE: 0x0003,
  VCPU: 0x0004,
  MEMORY: 0x0005,
  END: 0x7fff_ffff,
} as const);

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(RecordType).map(([k, v]) => [v, k]));
export const recordName = (type: number): string =>
  NAMES[type & ~OPTIONAL] ?? `0x${(type >>> 0).toString(16)}${type & OPTIONAL ? ' (optional)' : ''}`;

const HEADER_SIZE = 16;
const RECORD_OVERHEAD = 20;

export interface StreamRecord {
  /** Type without the optional bit. */
  readonly type: number;
  readonly optional: boolean;
  readonly payload: Uint8Array;
  /** Byte offset of the record in the stream, for messages. */
  readonly offset: number;
}

export class StreamWriter {
  private readonly chunks: Uint8Array[] = [];
  private count = 0;
  private readonly hash = createHash('sha256');

  constructor() {
    const header = Buffer.alloc(HEADER_SIZE);
    MAGIC.copy(header, 0);
    header.writeUInt16LE(FORMAT_MAJOR, 8);
    header.writeUInt16LE(FORMAT_MINOR, 10);
    this.push(header);
  }

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.hash.update(bytes);
  }

  record(type: number, payload: Uint8Array, optional = false): void {
    const head = Buffer.alloc(16);
    head.writeUInt32LE((type | (optional ? OPTIONAL : 0)) >>> 0, 0);
    head.writeBigUInt64LE(BigInt(payload.byteLength), 8);
    const crc = crc32(payload, crc32(head));
    const tail = Buffer.alloc(4);
    tail.writeUInt32LE(crc >>> 0, 0);
    this.push(head);
    this.push(payload);
    this.push(tail);
    this.count++;
  }

  /** Appends END and returns the whole stream. */
  finish(): Uint8Array {
    const end = Buffer.alloc(36);
    end.writeUInt32LE(this.count, 0);
    this.hash.copy().digest().copy(end, 4);
    this.record(RecordType.END, end);
    return Buffer.concat(this.chunks);
  }
}

/**
 * Parses and verifies a whole stream: header, every record's CRC, END's count and digest,
 * nothing after END. Returns the records in order (END excluded). Throws SnapshotError.
 */
export function readStream(bytes: Uint8Array): StreamRecord[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER_SIZE) throw new SnapshotError('TRUNCATED', `stream is ${buf.length} bytes: shorter than its header`);
  if (!buf.subarray(0, 8).equals(MAGIC)) throw new SnapshotError('BAD_MAGIC', 'not a Plugvisor snapshot (bad magic)');
  const major = buf.readUInt16LE(8);
  const minor = buf.readUInt16LE(10);
  if (major !== FORMAT_MAJOR) {
    throw new SnapshotError('BAD_VERSION', `snapshot format ${major}.${minor} is not readable by format ${FORMAT_MAJOR}.${FORMAT_MINOR}`);
  }
  if (buf.readUInt32LE(12) !== 0) throw new SnapshotError('BAD_VERSION', 'snapshot header carries unknown flags');

  const records: StreamRecord[] = [];
  let off = HEADER_SIZE;
  for (;;) {
    if (off + 16 > buf.length) throw new SnapshotError('TRUNCATED', `stream ends at byte ${buf.length} inside a record header (no END record)`);
    const rawType = buf.readUInt32LE(off);
    const flags = buf.readUInt32LE(off + 4);
    const length = buf.readBigUInt64LE(off + 8);
    if (length > BigInt(buf.length - off - RECORD_OVERHEAD)) {
      throw new SnapshotError('TRUNCATED', `record ${recordName(rawType)} at byte ${off} claims ${length} bytes; the stream ends first`);
    }
    const len = Number(length);
    const payload = buf.subarray(off + 16, off + 16 + len);
    const stored = buf.readUInt32LE(off + 16 + len);
    const crc = crc32(payload, crc32(buf.subarray(off, off + 16))) >>> 0;
    if (crc !== stored) throw new SnapshotError('BAD_CHECKSUM', `record ${recordName(rawType)} at byte ${off} fails its CRC-32`);
    if (flags !== 0) throw new SnapshotError('BAD_RECORD', `record ${recordName(rawType)} at byte ${off} has unknown flags`);
    const type = rawType & ~OPTIONAL;
    const optional = (rawType & OPTIONAL) !== 0;
    if (type === RecordType.END && !optional) {
      if (len !== 36) throw new SnapshotError('BAD_RECORD', `END record has ${len} bytes, expected 36`);
      const count = payload.readUInt32LE(0);
      if (count !== records.length) {
        throw new SnapshotError('BAD_DIGEST', `END says ${count} records; the stream has ${records.length}`);
      }
      const digest = createHash('sha256').update(buf.subarray(0, off)).digest();
      if (!digest.equals(payload.subarray(4, 36))) {
        throw new SnapshotError('BAD_DIGEST', 'stream digest mismatch: records were changed, reordered, repeated or removed');
      }
      const end = off + RECORD_OVERHEAD + len;
      if (end !== buf.length) throw new SnapshotError('BAD_RECORD', `${buf.length - end} bytes follow the END record`);
      return records;
    }
    records.push({ type, optional, payload, offset: off });
    off += RECORD_OVERHEAD + len;
  }
}

// ---- JSON payloads with lossless bigints ---------------------------------------------------

const BIGINT_TAG = '$bigint';

export function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(
    JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? { [BIGINT_TAG]: v.toString(16) } : v)),
    'utf8',
  );
}

export function decodeJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'), (_k, v) => {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const keys = Object.keys(v);
        if (keys.length === 1 && keys[0] === BIGINT_TAG && typeof v[BIGINT_TAG] === 'string' && /^[0-9a-f]+$/.test(v[BIGINT_TAG])) {
          return BigInt('0x' + v[BIGINT_TAG]);
        }
      }
      return v;
    });
  } catch (e) {
    throw new SnapshotError('BAD_RECORD', `${what} record is not valid JSON: ${(e as Error).message}`);
  }
}
