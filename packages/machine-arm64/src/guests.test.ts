import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { rebuildGuestImages } from '@plugvisor/core/testing';
import { GUEST_BIN_DIR } from './testing/guests.js';

const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));
const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;

describe('committed test-guest images', () => {
  it.skipIf(!haveCross)('rebuild byte-for-byte from source with aarch64-linux-gnu-gcc', () => {
    const r = rebuildGuestImages(join(GUESTS_DIR, 'build.sh'), GUEST_BIN_DIR);
    expect(r.built).toEqual(r.committed);
    expect(r.differing).toEqual([]);
  });
});
