import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rebuildGuestImages } from '@plugvisor/core/testing';
import { GUEST_BIN_DIR, GUESTS_DIR } from './harness.js';

const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;

describe('committed test-guest image', () => {
  it.skipIf(!haveCross)('rebuilds byte-for-byte from source (with machine-arm64 guest runtime)', () => {
    const r = rebuildGuestImages(join(GUESTS_DIR, 'build.sh'), GUEST_BIN_DIR);
    expect(r.built).toEqual(r.committed);
    expect(r.differing).toEqual([]);
  });
});
