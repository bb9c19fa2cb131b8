import { createHash, createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { SnapshotError, UsageError } from '../errors.js';

/**
 * The snapshot/migration stream: a versioned header, then typed records, each flagged
 * mandatory or optional (Xen's libxc stream rule: an unknown mandatory record refuses the
 * stream, an unknown optional one is skipped) and each with its own CRC-32, then an END
 * record holding the record count and a SHA-256 of every byte before it, so that any change
 * to the stream — a flipped bit, a cut, a reordered or repeated record — is refused whole.
 *
 *   header   "PLVSNAP\0"  u16 major  u16 minor  u32 flags(0)                      16 bytes
 *   record   u32 type  u32 flags(0)  u64 length  payload[length]  u32 crc32        20+len
 *   MAC      type 0x80000006 (optional), payload: u32 algorithm (1), 32-byte tag  [signed streams]
 *   END      type 0x7fffffff, payload: u32 records-before-end, 32-byte sha256
 *
 * All integers little-endian. Bit 31 of a record type marks it optional.
 *
 * The CRCs and the digest have no key: they catch damage, not an edit — anyone can recompute
 * them. A stream written with a key (SnapshotKey) carries a MAC record, HMAC-SHA-256 (RFC 2104,
 * node:crypto) of every byte before it, as the last record before END; a reader given the key
 * refuses a stream without one (UNSIGNED) or with a wrong one (BAD_MAC), compared in constant
 * time. The MAC record is optional, so a reader without the key (or an older build) still reads
 * a signed stream: it is then only as trustworthy as its source.
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
  MAC: 0x0006,
  END: 0x7fff_ffff,
} as const);

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(RecordType).map(([k, v]) => [v, k]));
export const recordName = (type: number): string =>
  NAMES[type & ~OPTIONAL] ?? `0x${(type >>> 0).toString(16)}${type & OPTIONAL ? ' (optional)' : ''}`;

const HEADER_SIZE = 16;
const RECORD_OVERHEAD = 20;

/** MAC algorithm 1: HMAC-SHA-256 (RFC 2104 with FIPS 180-4 SHA-256), 32-byte tag. */
const MAC_HMAC_SHA256 = 1;
const MAC_PAYLOAD = 36;
/** Shortest key accepted: RFC 2104 section 3 discourages keys shorter than the hash output; 16 bytes is the floor here. */
export const MIN_SNAPSHOT_KEY_BYTES = 16;

/** An optional key for signing (writing) and authenticating (reading) a snapshot stream. */
export interface SnapshotKey {
  /** HMAC-SHA-256 key, at least {@link MIN_SNAPSHOT_KEY_BYTES} bytes (e.g. 32 bytes from /dev/urandom). */
  readonly key?: Uint8Array;
}

function checkKey(key: Uint8Array | undefined): Uint8Array | undefined {
  if (key === undefined) return undefined;
  if (!(key instanceof Uint8Array) || key.byteLength < MIN_SNAPSHOT_KEY_BYTES) {
    const len = key instanceof Uint8Array ? `${key.byteLength} bytes` : 'not bytes';
    throw new UsageError(`snapshot key is ${len}; it must be at least ${MIN_SNAPSHOT_KEY_BYTES} bytes (32 random bytes recommended)`);
  }
  return key;
}

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
  private mac: Hmac | undefined;

  /** With `key`, finish() adds a MAC record (see the file comment). */
  constructor(options: SnapshotKey = {}) {
    const key = checkKey(options.key);
    this.mac = key ? createHmac('sha256', key) : undefined;
    const header = Buffer.alloc(HEADER_SIZE);
    MAGIC.copy(header, 0);
    header.writeUInt16LE(FORMAT_MAJOR, 8);
    header.writeUInt16LE(FORMAT_MINOR, 10);
    this.push(header);
  }

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.hash.update(bytes);
    this.mac?.update(bytes);
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
    if (this.mac) {
      const mac = Buffer.alloc(MAC_PAYLOAD);
      mac.writeUInt32LE(MAC_HMAC_SHA256, 0);
      this.mac.digest().copy(mac, 4);
      this.mac = undefined; // covers every byte before the MAC record, not the record itself
      this.record(RecordType.MAC, mac, true);
    }
    const end = Buffer.alloc(36);
    end.writeUInt32LE(this.count, 0);
    this.hash.copy().digest().copy(end, 4);
    this.record(RecordType.END, end);
    return Buffer.concat(this.chunks);
  }
}

/**
 * Parses and verifies a whole stream: header, every record's CRC, END's count and digest,
 * nothing after END, and with `key` the MAC. Returns the records in order (MAC and END
 * excluded). Throws SnapshotError.
 */
export function readStream(bytes: Uint8Array, options: SnapshotKey = {}): StreamRecord[] {
  return verifyStream(bytes, options).records;
}

/** {@link readStream}, also saying whether the stream carries a MAC (checked only when a key is given). */
export function verifyStream(bytes: Uint8Array, options: SnapshotKey = {}): { records: StreamRecord[]; signed: boolean; authenticated: boolean } {
  const key = checkKey(options.key);
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
  let seen = 0;
  let mac: { offset: number; tag: Buffer } | undefined;
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
    const isEnd = type === RecordType.END && !optional;
    if (mac && !isEnd) throw new SnapshotError('BAD_RECORD', `MAC record at byte ${mac.offset} is followed by ${recordName(rawType)}, not END: it must be the last record`);
    if (isEnd) {
      if (len !== 36) throw new SnapshotError('BAD_RECORD', `END record has ${len} bytes, expected 36`);
      const count = payload.readUInt32LE(0);
      if (count !== seen) {
        throw new SnapshotError('BAD_DIGEST', `END says ${count} records; the stream has ${seen}`);
      }
      const digest = createHash('sha256').update(buf.subarray(0, off)).digest();
      if (!digest.equals(payload.subarray(4, 36))) {
        throw new SnapshotError('BAD_DIGEST', 'stream digest mismatch: records were changed, reordered, repeated or removed');
      }
      const end = off + RECORD_OVERHEAD + len;
      if (end !== buf.length) throw new SnapshotError('BAD_RECORD', `${buf.length - end} bytes follow the END record`);
      const signedBy = mac as { offset: number; tag: Buffer } | undefined; // assigned in an earlier pass of the loop
      if (key) {
        if (!signedBy) throw new SnapshotError('UNSIGNED', 'snapshot is not signed (no MAC record) and a snapshot key was given');
        const want = createHmac('sha256', key).update(buf.subarray(0, signedBy.offset)).digest();
        if (!timingSafeEqual(want, signedBy.tag)) {
          throw new SnapshotError('BAD_MAC', `MAC record at byte ${signedBy.offset}: HMAC-SHA-256 mismatch: the snapshot was changed or signed with another key`);
        }
      }
      return { records, signed: signedBy !== undefined, authenticated: key !== undefined };
    }
    seen++;
    if (type === RecordType.MAC) {
      if (len !== MAC_PAYLOAD) throw new SnapshotError('BAD_RECORD', `MAC record at byte ${off} has ${len} bytes, expected ${MAC_PAYLOAD}`);
      const alg = payload.readUInt32LE(0);
      if (alg !== MAC_HMAC_SHA256) throw new SnapshotError('BAD_RECORD', `MAC record at byte ${off}: algorithm ${alg} is not understood (1 = HMAC-SHA-256)`);
      mac = { offset: off, tag: Buffer.from(payload.subarray(4)) };
    } else {
      records.push({ type, optional, payload, offset: off });
    }
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
