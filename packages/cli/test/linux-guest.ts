/**
 * Debian's stock arm64 kernel and the project's initramfs (scripts/setup.sh puts both in
 * .cache/linux: the kernel pinned by version and hash, /init from
 * packages/machine-arm64/guests/linux) run through `plugvisor run` / `restore` as an operator
 * runs them: the built binary, a child process per run.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
export const kernel = fileURLToPath(new URL('../../../.cache/linux/Image', import.meta.url));
export const initramfs = fileURLToPath(new URL('../../../.cache/linux/initramfs.cpio', import.meta.url));
export const haveLinux = existsSync(kernel) && existsSync(initramfs);
export const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** The kernel command line of every boot: the PL011 console; a panic resets at once (no hang). */
export const APPEND = 'console=ttyAMA0 panic=-1';

/** The arguments that boot the kernel with the initramfs on `vcpus` vCPUs and 512 MiB. */
export const linuxArgs = (vcpus = 1, ...more: string[]) => ['run', '--kernel', kernel, '--initrd', initramfs, '--mem', '512M', '--vcpus', String(vcpus), '--append', APPEND, ...more];

export interface Run {
  readonly code: number | null;
  /** stdout: the guest's console. */
  readonly out: string;
  /** stderr: plugvisor's own lines. */
  readonly err: string;
  readonly seconds: number;
}

/** Runs `plugvisor ARGS` to its end (killed after `seconds`: a boot that hangs fails, it does not stall the suite). */
export function plugvisor(args: string[], seconds = 150): Promise<Run> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('latin1')));
    const timer = setTimeout(() => {
      err += `\n(test: killed after ${seconds} s)`;
      child.kill('SIGKILL');
    }, seconds * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/** The `init: ` lines of a console, without the prefix. */
export const initLines = (out: string) => out.split('\n').filter((l) => l.startsWith('init: ')).map((l) => l.slice(6).trimEnd());

/** For an assertion message: the end of a run's output. */
export const tail = (r: Run) => `exit ${r.code} after ${r.seconds.toFixed(1)} s\n--- console (end) ---\n${r.out.slice(-3000)}\n--- stderr ---\n${r.err.slice(-1500)}`;

/** The hwrng lines' bytes (hex) in order. */
export const hwrngReads = (out: string) => initLines(out).flatMap((l) => (l.startsWith('hwrng read 32 bytes ') ? [l.slice(20)] : []));
