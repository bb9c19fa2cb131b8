import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GUEST_BIN_DIR, GUESTS_DIR } from './harness.js';

const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;

describe('committed Xen test-guest images', () => {
  it.skipIf(!haveCross)('rebuild byte-for-byte from source with aarch64-linux-gnu-gcc', () => {
    const out = mkdtempSync(join(tmpdir(), 'plugvisor-xen-guests-'));
    try {
      execFileSync('bash', [join(GUESTS_DIR, 'build.sh'), out], { stdio: 'pipe' });
      const built = readdirSync(out).filter((f) => f.endsWith('.elf')).sort();
      const committed = readdirSync(GUEST_BIN_DIR).filter((f) => f.endsWith('.elf')).sort();
      expect(built).toEqual(committed);
      for (const f of built) expect(Buffer.compare(readFileSync(join(out, f)), readFileSync(join(GUEST_BIN_DIR, f))), f).toBe(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
