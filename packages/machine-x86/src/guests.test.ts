import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GUEST_BIN_DIR } from './testing/guests.js';

const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));
const haveGcc = process.arch === 'x64' && spawnSync('gcc', ['--version']).status === 0 && spawnSync('ld', ['--version']).status === 0;

describe('committed x86-64 test-guest images', () => {
  it.skipIf(!haveGcc)('rebuild byte-for-byte from source with the host gcc/as/ld (x86-64 host)', () => {
    const out = mkdtempSync(join(tmpdir(), 'plugvisor-x86-guests-'));
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
