import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GuestImageRebuild {
  /** ELF images the build script produced, sorted. */
  readonly built: string[];
  /** ELF images committed in the images folder, sorted. */
  readonly committed: string[];
  /** Images whose rebuilt bytes differ from the committed ones. */
  readonly differing: string[];
}

/**
 * Runs a guest folder's reproducible `build.sh OUTDIR` into a temporary folder and compares
 * every produced `.elf` with the committed image of the same name: what each package's
 * "committed images match their sources" test asserts on (when the cross compiler is present).
 */
export function rebuildGuestImages(buildScript: string, committedDir: string): GuestImageRebuild {
  const out = mkdtempSync(join(tmpdir(), 'plugvisor-guest-rebuild-'));
  try {
    execFileSync('bash', [buildScript, out], { stdio: 'pipe' });
    const elves = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.elf')).sort();
    const built = elves(out);
    const committed = elves(committedDir);
    const differing = built.filter(
      (f) => committed.includes(f) && Buffer.compare(readFileSync(join(out, f)), readFileSync(join(committedDir, f))) !== 0,
    );
    return { built, committed, differing };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
