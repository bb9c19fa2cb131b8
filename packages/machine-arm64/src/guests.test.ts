import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GUEST_BIN_DIR } from './testing/guests.js';

const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));
const haveCross = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;

describe('committed test-guest images', () => {
  it.skipIf(!haveCross)('rebuild byte-for-byte from source with aarch64-linux-gnu-gcc', () => {
    const out = mkdtempSync(join(tmpdir(), 'plugvisor-guests-'));
    try {
      execFileSync('bash', [join(GUESTS_DIR, 'build.sh'), out], { stdio: 'pipe' });
      const built = readdirSync(out).filter((f) => f.endsWith('.elf')).sort();
      const committed = readdirSync(GUEST_BIN_DIR).filter((f) => f.endsWith('.elf')).sort();
      expect(built).toEqual(committed);
      for (const f of built) {
        expect(Buffer.compare(readFileSync(join(out, f)), readFileSync(join(GUEST_BIN_DIR, f))), f).toBe(0);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
