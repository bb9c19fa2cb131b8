// Writes .cache/linux/initramfs.cpio, the initrd of the Linux acceptance test: the committed
// /init (packages/machine-arm64/guests/linux/init, see its README.md), the SMCCC TRNG module
// scripts/setup.sh extracted from the same kernel package, and the mount points /dev /sys /proc.
// Uses the built @plugvisor/machine-arm64 (run after `pnpm build`; setup.sh does).
//   node scripts/make-initramfs.mjs [OUT]
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url).pathname;
const cache = join(root, '.cache/linux');
const out = process.argv[2] ?? join(cache, 'initramfs.cpio');
const { buildInitramfs } = await import(pathToFileURL(join(root, 'packages/machine-arm64/dist/loader/initramfs.js')).href);
const read = (path, what) => {
  try {
    return readFileSync(path);
  } catch {
    console.error(`make-initramfs: ${path} is missing (${what})`);
    process.exit(1);
  }
};
const cpio = buildInitramfs(
  [
    { path: '/init', mode: 0o755, data: read(join(root, 'packages/machine-arm64/guests/linux/init'), 'committed; rebuild with its build.sh') },
    { path: '/arm_smccc_trng.ko.xz', mode: 0o644, data: read(join(cache, 'arm_smccc_trng.ko.xz'), 'run scripts/setup.sh') },
  ],
  ['/dev', '/sys', '/proc'],
);
writeFileSync(`${out}.part`, cpio);
renameSync(`${out}.part`, out);
console.error(`make-initramfs: ${out} (${cpio.length} bytes)`);
