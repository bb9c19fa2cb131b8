import { ImageError } from '@plugvisor/core';

// An initramfs is a cpio archive in the "newc" (SVR4, no CRC) format, which the kernel unpacks
// into its rootfs before running /init: Linux Documentation/driver-api/early-userspace/
// buffer-format.rst (the grammar, the 110-byte header of 13 8-digit hex fields, 4-byte
// alignment of name and data, the "TRAILER!!!" end) and init/initramfs.c (the parser: it creates
// directories with mkdir, regular files with O_CREAT in their parent, which must already exist).
// Output is deterministic: inode numbers in archive order, uid/gid 0, mtime 0.

/** A regular file: `path` inside the initramfs (leading `/` optional), permission bits only. */
export interface InitramfsFile {
  readonly path: string;
  readonly mode: number;
  readonly data: Uint8Array;
}

/** A directory entry as read back by `parseInitramfs`. */
export interface InitramfsEntry {
  readonly name: string;
  /** Full st_mode: file type and permission bits. */
  readonly mode: number;
  readonly ino: number;
  readonly nlink: number;
  readonly data: Uint8Array;
}

export const CPIO_NEWC_MAGIC = '070701';
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
const HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';
const DIR_MODE = 0o755;

/** `path` without its leading slashes; an ImageError for anything the kernel would not create. */
function entryName(path: string): string {
  const name = path.replace(/^\/+/, '');
  const parts = name.split('/');
  if (name === '' || name.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new ImageError(`initramfs: bad path ${JSON.stringify(path)} (want a/b/c: no empty, "." or ".." parts)`);
  }
  if (name === TRAILER) throw new ImageError(`initramfs: ${TRAILER} is the archive's end marker, not a file name`);
  return name;
}

function parentsOf(name: string): string[] {
  const parts = name.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

const align4 = (n: number) => (n + 3) & ~3;

function header(fields: { ino: number; mode: number; nlink: number; filesize: number; namesize: number }): string {
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  // c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_maj c_min c_rmaj c_rmin c_namesize c_chksum
  return (
    CPIO_NEWC_MAGIC +
    [fields.ino, fields.mode, 0, 0, fields.nlink, 0, fields.filesize, 0, 0, 0, 0, fields.namesize, 0].map(hex).join('')
  );
}

/**
 * A newc cpio archive holding `dirs` (mode 0755) and `files`, for use as an initrd. Directories
 * come first, parents before children; a file's parent directories are added if not listed.
 * Throws an ImageError for a bad or duplicate path, a mode with more than permission bits, or a
 * file of 4 GiB or more (newc sizes are 32-bit).
 */
export function buildInitramfs(files: readonly InitramfsFile[], dirs: readonly string[] = []): Uint8Array {
  const dirNames = new Set<string>();
  const addDir = (name: string) => {
    for (const p of parentsOf(name)) dirNames.add(p);
    dirNames.add(name);
  };
  for (const d of dirs) addDir(entryName(d));
  const fileNames = new Set<string>();
  for (const f of files) {
    const name = entryName(f.path);
    if (!Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o7777) {
      throw new ImageError(`initramfs: ${name}: mode 0o${f.mode.toString(8)} is not permission bits (0..0o7777)`);
    }
    if (f.data.length > 0xffff_ffff) throw new ImageError(`initramfs: ${name}: ${f.data.length} bytes is over newc's 32-bit size`);
    if (fileNames.has(name) || dirNames.has(name)) throw new ImageError(`initramfs: ${name} is listed twice`);
    fileNames.add(name);
    for (const p of parentsOf(name)) dirNames.add(p);
  }
  for (const d of dirNames) if (fileNames.has(d)) throw new ImageError(`initramfs: ${d} is both a file and a directory`);

  // Sorted by depth then name, so every parent precedes its children.
  const depth = (n: string) => n.split('/').length;
  const sortedDirs = [...dirNames].sort((a, b) => depth(a) - depth(b) || (a < b ? -1 : a > b ? 1 : 0));
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let ino = 1;
  const entry = (name: string, mode: number, nlink: number, data: Uint8Array) => {
    const nameBytes = enc.encode(name);
    const head = enc.encode(header({ ino: ino++, mode, nlink, filesize: data.length, namesize: nameBytes.length + 1 }));
    const nameBlock = new Uint8Array(align4(HEADER_SIZE + nameBytes.length + 1) - HEADER_SIZE);
    nameBlock.set(nameBytes);
    chunks.push(head, nameBlock, data, new Uint8Array(align4(data.length) - data.length));
  };
  for (const d of sortedDirs) entry(d, S_IFDIR | DIR_MODE, 2, new Uint8Array(0));
  for (const f of files) entry(entryName(f.path), S_IFREG | f.mode, 1, f.data);
  ino = 0;
  entry(TRAILER, 0, 1, new Uint8Array(0));

  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(align4(total));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Reads a newc cpio archive up to its trailer (the inverse of `buildInitramfs`; the kernel's
 * rules: magic 070701 or 070702, 4-byte alignment, NUL-terminated names). ImageError on
 * anything malformed or truncated.
 */
export function parseInitramfs(bytes: Uint8Array): InitramfsEntry[] {
  const dec = new TextDecoder('latin1');
  const out: InitramfsEntry[] = [];
  let at = 0;
  for (;;) {
    if (at + HEADER_SIZE > bytes.length) throw new ImageError(`initramfs: truncated header at offset ${at}`);
    const head = dec.decode(bytes.subarray(at, at + HEADER_SIZE));
    const magic = head.slice(0, 6);
    if (magic !== CPIO_NEWC_MAGIC && magic !== '070702') {
      throw new ImageError(`initramfs: bad magic ${JSON.stringify(magic)} at offset ${at} (want ${CPIO_NEWC_MAGIC})`);
    }
    const field = (i: number) => {
      const text = head.slice(6 + i * 8, 14 + i * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(text)) throw new ImageError(`initramfs: bad header field ${i} at offset ${at}`);
      return parseInt(text, 16);
    };
    const [ino, mode, nlink, filesize, namesize] = [field(0), field(1), field(4), field(6), field(11)];
    const nameEnd = at + HEADER_SIZE + namesize;
    const dataStart = align4(nameEnd);
    if (namesize < 1 || dataStart + filesize > bytes.length || bytes[nameEnd - 1] !== 0) {
      throw new ImageError(`initramfs: truncated or unterminated entry at offset ${at}`);
    }
    const name = dec.decode(bytes.subarray(at + HEADER_SIZE, nameEnd - 1));
    if (name === TRAILER) return out;
    out.push({ name, mode, ino, nlink, data: bytes.slice(dataStart, dataStart + filesize) });
    at = align4(dataStart + filesize);
  }
}
