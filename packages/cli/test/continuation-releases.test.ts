import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

/**
 * Two real releases of @plugvisor/svc-xen whose memory reservation continuation differs from the
 * workspace's, packed from this repository by fixtures/releases/make.mjs (releases-svc-xen.json):
 *
 *   2.0.0  the continuation of XENMEM_increase_reservation, decrease_reservation and
 *          populate_physmap moved from x0[63:6] to x0[63:8] start extent (svc-xen-2.0.0.patch)
 *   3.0.0  2.0.0 with those ops not preemptible: one leg, no continuation (svc-xen-3.0.0.patch)
 *
 * installed side by side as npm aliases would install them (node_modules/svc-xen-<v>, with
 * svc-xen's own dependency `tapable` beside them, as npm would hoist it) and pinned by build
 * files, as an operator meets them. A VM on the workspace's svc-xen (unpinned) with the opt-in
 * feature `memory-reservation` on records the x0[63:6] encoding: restore and `plugvisor check`
 * refuse both releases naming each call and both encodings, whether or not a vCPU is mid-call
 * (the demo guest never issues memory_op; the balloon guest is snapshotted with a continuation
 * held in a descheduled task's saved registers). A VM with the feature off recorded no encoding
 * and moves to both.
 *
 * The install folder and the build files are made once for the whole file (`install`, `builds`,
 * `snapshot`), so further describes (a guest snapshotted mid-continuation) reuse them. Builds
 * hold the services the demo guest needs (SMCCC arch, PSCI) and svc-xen: every snapshot and
 * check records behaviour transcripts of the whole build, so a small build keeps this fast.
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const releasesDir = join(here, 'fixtures/releases');
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const coreDir = fileURLToPath(new URL('../../core/', import.meta.url));
const workspaceXen = fileURLToPath(new URL('../../svc-xen/', import.meta.url));
const SVC_XEN = '@plugvisor/svc-xen';
const BASE_SERVICES = ['@plugvisor/svc-smccc-arch', '@plugvisor/svc-psci'];
const VERSIONS = ['2.0.0', '3.0.0'] as const;
type Release = (typeof VERSIONS)[number];

/** The preemptible calls, their memory_op sub-op (XENMEM_*), and the encodings core names. */
const PREEMPTIBLE = [
  ['XENMEM_increase_reservation', 0],
  ['XENMEM_decrease_reservation', 1],
  ['XENMEM_populate_physmap', 6],
] as const;
const OTHERS = 'other sub-ops answer -22 in x0';
const ENCODING: Record<'workspace' | Release, string> = {
  workspace: `x0[63:6] start extent; ${OTHERS}`,
  '2.0.0': `x0[63:8] start extent; ${OTHERS}`,
  '3.0.0': 'not preemptible',
};
/** Core's refusal for one call (abi/record.ts): the call, its wire id, the destination, old → new. */
const refusal = (call: string, op: number, to: Release) =>
  `call ${call} (xen:0xc/0x${op.toString(16)}) of ${SVC_XEN}@${to} continues differently than the VM's: ${ENCODING.workspace} → ${ENCODING[to]}`;

const plugvisor = (cwd: string, ...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** The install folder: the releases and tapable in its node_modules, the build files beside. */
const install = { dir: '', releaseDir: (v: Release) => join(install.dir, 'node_modules', `svc-xen-${v}`) };
/** Build files: the workspace's svc-xen unpinned (`default`), and one per release pinned exactly. */
const builds = { default: '', '2.0.0': '', '3.0.0': '' } as Record<'default' | Release, string>;

const writeBuild = (name: string, xen: string | { package: string; version: string }) => {
  const file = join(install.dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, services: [...BASE_SERVICES, xen] }));
  return file;
};

/** A run of the demo guest on `build` (2 vCPUs) snapshotted after 15000 traps into `name`. */
const snapshot = (build: string, name: string, ...extra: string[]) => {
  const file = join(install.dir, name);
  const r = plugvisor(install.dir, 'run', demo, '--vcpus', '2', '--build', build, '--snapshot-at', '15000', '--snapshot-file', file, ...extra);
  expect(r.code, r.err).toBe(0);
  expect(r.err).toContain('snapshot after 15000 hypercall traps written to');
  return { file, out: r.out };
};

beforeAll(() => {
  install.dir = mkdtempSync(join(releasesDir, 'installed-xen-'));
  for (const v of VERSIONS) {
    const to = install.releaseDir(v);
    mkdirSync(to, { recursive: true });
    const tar = spawnSync('tar', ['xzf', join(releasesDir, `plugvisor-svc-xen-${v}.tgz`), '-C', to, '--strip-components=1'], { encoding: 'utf8' });
    expect(tar.status, tar.stderr).toBe(0);
  }
  // tapable, the copy core resolves (the one npm would install once beside the releases).
  let tapable = dirname(createRequire(join(coreDir, 'package.json')).resolve('tapable'));
  while (!existsSync(join(tapable, 'package.json'))) tapable = dirname(tapable);
  symlinkSync(realpathSync(tapable), join(install.dir, 'node_modules', 'tapable'), 'dir');
  builds.default = writeBuild('default', SVC_XEN);
  for (const v of VERSIONS) builds[v] = writeBuild(`xen-${v}`, { package: SVC_XEN, version: v });
});
afterAll(() => {
  if (install.dir) rmSync(install.dir, { recursive: true, force: true });
});

/**
 * What a build of one svc-xen does with a preempted XENMEM_decrease_reservation, run in a fresh
 * Node process on core's MemoryMachine (the release's own code, its own tapable and core
 * resolution): 300 one-page extents, the first leg's [rewind, x0, pages removed so far]; that
 * leg's x0 re-issued; and, on a fresh VM, the workspace's first-leg continuation (x0[63:6], start
 * extent 256) issued instead. Plus what the packed abi.json
 * says against the abi.json regenerated from the packed code (no change if it tells the truth).
 */
const releaseFacts = (pkgDir: string) => {
  const script = `
    import { pathToFileURL } from 'node:url';
    import { readFileSync } from 'node:fs';
    const [coreDir, pkgDir] = process.argv.slice(1);
    const core = await import(pathToFileURL(coreDir + 'dist/index.js').href);
    const { MemoryMachine } = await import(pathToFileURL(coreDir + 'dist/testing/index.js').href);
    const plugin = (await import(pathToFileURL(pkgDir + '/dist/index.js').href)).default();
    const fresh = JSON.parse(core.serviceAbiFile(plugin, core.Hypervisor.compose([plugin], { name: plugin.name })));
    const packed = JSON.parse(readFileSync(pkgDir + '/abi.json', 'utf8'));
    const changes = core.classifyAbiChange(packed, fresh).changes.filter((c) => c.bump !== 'none').map((c) => c.message);
    const RAM = 0x4000_0000n, RESV = RAM + 0x1000n, LIST = RAM + 0x2000n, N = 300;
    const vmWith = () => {
      const vm = core.Hypervisor.compose([plugin], { name: 'resv' }).createVm({ features: { 'memory-reservation': true } });
      const m = new MemoryMachine(1, RAM, 1024 * 4096);
      vm.attachMachine(m);
      vm.start();
      m.memory.writeU64(RESV, LIST);
      m.memory.writeU64(RESV + 8n, BigInt(N));
      m.memory.writeU32(RESV + 16n, 0); // extent_order
      m.memory.writeU32(RESV + 20n, 0); // mem_flags
      m.memory.writeU32(RESV + 24n, 0x7ff0); // domid DOMID_SELF (u16) and padding
      for (let i = 0; i < N; i++) m.memory.writeU64(LIST + BigInt(i) * 8n, (RAM >> 12n) + 300n + BigInt(i));
      const removed = () => 1024 - core.capabilityOf(m, 'guest-pages').size().present;
      const leg = (x0) => {
        const v = m.vcpus[0];
        v.regs.set(16, 12n); // __HYPERVISOR_memory_op
        v.regs.set(0, x0);
        v.regs.set(1, RESV);
        const back = vm.dispatch(core.Conduits.xen, v);
        return [back, '0x' + BigInt.asUintN(64, v.regs.get(0)).toString(16), removed()];
      };
      return leg;
    };
    const leg = vmWith();
    const first = leg(1n);
    const next = first[0] ? leg(BigInt(first[1])) : null;
    const old = vmWith()(1n | (256n << 6n));
    console.log(JSON.stringify({ name: plugin.name, version: plugin.version, changes, continuations: packed.surface.continuations ?? [], first, next, old }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, coreDir, pkgDir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    name: string;
    version: string;
    changes: string[];
    continuations: { call: string; encoding: { reg: number; shift: number; width: number }[] }[];
    first: [number, string, number];
    next: [number, string, number] | null;
    old: [number, string, number];
  };
};

describe('packed releases of svc-xen (fixtures/releases)', () => {
  it('each tarball is the release releases-svc-xen.json names, and its abi.json is what its own code declares', () => {
    const manifest = JSON.parse(readFileSync(join(releasesDir, 'releases-svc-xen.json'), 'utf8')) as {
      package: string;
      releases: { version: string; tarball: string; sha256: string }[];
    };
    expect(manifest.package).toBe(SVC_XEN);
    expect(manifest.releases.map((r) => r.version)).toEqual([...VERSIONS]);
    for (const r of manifest.releases) {
      expect(createHash('sha256').update(readFileSync(join(releasesDir, r.tarball))).digest('hex'), r.tarball).toBe(r.sha256);
      const pkgDir = install.releaseDir(r.version as Release);
      const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { name: string; version: string; dependencies: Record<string, string> };
      expect([pkg.name, pkg.version]).toEqual([SVC_XEN, r.version]);
      expect(Object.keys(pkg.dependencies).sort()).toEqual(['@plugvisor/core', 'tapable']);
      const packed = JSON.parse(readFileSync(join(pkgDir, 'abi.json'), 'utf8'));
      const ledger = JSON.parse(readFileSync(join(releasesDir, 'ledger', 'svc-xen', `${r.version}.json`), 'utf8'));
      expect(ledger).toEqual({ ...packed, version: r.version });
    }
  });

  it('the workspace continues at x0[63:6], 2.0.0 at x0[63:8] (declared and done), 3.0.0 not at all', () => {
    const workspace = releaseFacts(workspaceXen);
    const [v2, v3] = VERSIONS.map((v) => releaseFacts(install.releaseDir(v)));
    expect([v2!.version, v3!.version, v2!.changes, v3!.changes]).toEqual(['2.0.0', '3.0.0', [], []]);
    const fields = (f: typeof workspace) => f.continuations.map((k) => [k.call, k.encoding.map((e) => [e.reg, e.shift, e.width])]);
    const calls = PREEMPTIBLE.map(([c]) => c).sort();
    expect(fields(workspace)).toEqual(calls.map((c) => [c, [[0, 6, 58]]]));
    expect(fields(v2!)).toEqual(calls.map((c) => [c, [[0, 8, 56]]]));
    expect(v3!.continuations).toEqual([]);
    // A decrease of 300 pages: the first leg stops after 256 and rewinds the HVC (4) with the
    // start extent where each release puts it; the re-issued registers finish the call.
    expect([workspace.first, workspace.next]).toEqual([[4, `0x${(1 | (256 << 6)).toString(16)}`, 256], [0, '0x12c', 300]]);
    expect([v2!.first, v2!.next]).toEqual([[4, `0x${(1 | (256 << 8)).toString(16)}`, 256], [0, '0x12c', 300]]);
    expect([v3!.first, v3!.next]).toEqual([[0, '0x12c', 300], null]);
    // The workspace's continuation (0x4001), as a guest task would re-issue it after a move: the
    // workspace resumes at extent 256 (44 pages); 2.0.0 silently reads start extent 64 (236
    // pages: what restore's refusal prevents); 3.0.0 routes it nowhere (-ENOSYS, none).
    expect(workspace.old).toEqual([0, '0x12c', 44]);
    expect(v2!.old).toEqual([0, '0x12c', 236]);
    expect(v3!.old).toEqual([0, '0xffffffffffffffda', 0]);
  });
});

describe.skipIf(!unicornAvailable())('a VM with memory-reservation on meets releases that continue differently', () => {
  let whole = '';
  let on = { file: '', out: '' };
  let off = { file: '', out: '' };
  beforeAll(() => {
    const r = plugvisor(install.dir, 'run', demo, '--vcpus', '2', '--build', builds.default);
    expect(r.code, r.err).toBe(0);
    whole = r.out;
    expect(whole).toContain('total 108049000');
    on = snapshot(builds.default, 'on.snap', '--feature', 'memory-reservation=on');
    off = snapshot(builds.default, 'off.snap');
  });

  it.each(VERSIONS)('restore onto %s is refused naming every preemptible call and both encodings (exit 3); nothing is touched', (v) => {
    const before = readFileSync(on.file);
    const r = plugvisor(install.dir, 'restore', on.file, '--build', builds[v]);
    expect(r.code, r.err).toBe(3);
    expect(r.out).toBe('');
    expect(r.err).toContain(`plugvisor restore: ${on.file} refused: snapshot refused: this build cannot reproduce the VM:`);
    for (const [call, op] of PREEMPTIBLE) expect(r.err).toContain(`  - ${refusal(call, op, v)}\n`);
    // The three calls are all it names: the other sub-ops do not continue.
    expect(r.err.match(/continues differently/g)).toHaveLength(PREEMPTIBLE.length);
    expect(readFileSync(on.file).equals(before)).toBe(true);
  });

  it('the same VM restores on the build it came from and finishes as an uninterrupted run', () => {
    const r = plugvisor(install.dir, 'restore', on.file, '--build', builds.default);
    expect(r.code, r.err).toBe(0);
    expect(on.out + r.out).toBe(whole);
  });

  it.each(VERSIONS)('plugvisor check default → %s --vm says the same before any move (exit 3, text and --json)', (v) => {
    const text = plugvisor(install.dir, 'check', builds.default, builds[v], '--vm', on.file);
    expect(text.code, text.err).toBe(3);
    const upgrade = text.out.slice(text.out.indexOf('upgrade A→B: REFUSED'), text.out.indexOf('rollback B→A:'));
    for (const [call, op] of PREEMPTIBLE) {
      expect(upgrade).toContain(`  - ${refusal(call, op, v)}`);
      // The VM's own column first: it was given the call (its feature is on).
      expect(text.out).toMatch(new RegExp(`\\ncall ${call} +given \\(feature memory-reservation\\) +xen 0xc/0x${op} +xen 0xc/0x${op} +REFUSED +ok +major\\n`));
    }
    const json = plugvisor(install.dir, 'check', builds.default, builds[v], '--vm', on.file, '--json');
    expect(json.code, json.err).toBe(3);
    const report = JSON.parse(json.out) as {
      upgrade: { safe: boolean; problems: { subject: string; message: string; service: string }[] };
      rollback: { safe: boolean };
      rows: { subject: string; upgrade: string; reasons: string[] }[];
    };
    expect(report.upgrade.safe).toBe(false);
    expect(report.upgrade.problems).toEqual(
      PREEMPTIBLE.map(([call, op]) => ({ subject: `call ${call}`, message: refusal(call, op, v), service: SVC_XEN })),
    );
    expect(report.rollback.safe).toBe(true); // back onto the build it was made on
    for (const [call, op] of PREEMPTIBLE) {
      const row = report.rows.find((r) => r.subject === `call ${call}`);
      expect(row).toMatchObject({ upgrade: 'refused', reasons: [`upgrade: ${refusal(call, op, v)}`] });
    }
    for (const call of ['XENMEM_current_reservation', 'XENMEM_maximum_reservation']) {
      expect(report.rows.find((r) => r.subject === `call ${call}`)?.upgrade).toBe('ok');
    }
  });

  it.each(VERSIONS)('a VM with memory-reservation off recorded no encoding: it moves to %s and finishes (exit 0)', (v) => {
    const checked = plugvisor(install.dir, 'check', builds.default, builds[v], '--vm', off.file);
    expect(checked.code, checked.out).toBe(0);
    expect(checked.out).toContain('upgrade A→B: safe');
    const r = plugvisor(install.dir, 'restore', off.file, '--build', builds[v]);
    expect(r.code, r.err).toBe(0);
    expect(off.out + r.out).toBe(whole);
  });
});

/**
 * The balloon guest (packages/guest-tests-xen/guests/src/balloon.c) snapshotted while task A is
 * descheduled in the middle of its XENMEM_decrease_reservation: the continuation (op | done << 6)
 * is in task A's registers saved in guest memory, not in any vCPU. Both releases would misread or
 * refuse it, and both are refused by name; on its own build it finishes with every extent done
 * once.
 */
describe.skipIf(!unicornAvailable())('the balloon guest, snapshotted with a continuation held in a descheduled task', () => {
  const balloon = fileURLToPath(new URL('../../guest-tests-xen/guests/bin/balloon.elf', import.meta.url));
  let mid = { file: '', out: '' };
  beforeAll(() => {
    const file = join(install.dir, 'balloon-mid.snap');
    const r = plugvisor(install.dir, 'run', balloon, '--build', builds.default, '--feature', 'memory-reservation=on', '--snapshot-on-output', 'task B running', '--snapshot-file', file);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^balloon: cpu 0: task A descheduled in XENMEM_decrease_reservation, \d+ of 1024 extents done; task B running$/m);
    mid = { file, out: r.out };
  });

  it.each(VERSIONS)('restore onto %s and plugvisor check both refuse it, naming each preemptible call and both encodings', (v) => {
    const r = plugvisor(install.dir, 'restore', mid.file, '--build', builds[v]);
    expect(r.code, r.err).toBe(3);
    expect(r.out).toBe('');
    for (const [call, op] of PREEMPTIBLE) expect(r.err).toContain(`  - ${refusal(call, op, v)}\n`);
    const checked = plugvisor(install.dir, 'check', builds.default, builds[v], '--vm', mid.file);
    expect(checked.code, checked.err).toBe(3);
    for (const [call, op] of PREEMPTIBLE) expect(checked.out).toContain(`  - ${refusal(call, op, v)}`);
  });

  it('on the build it came from, task A resumes and its call completes with every extent done once', () => {
    const done = Number(/task A descheduled in XENMEM_decrease_reservation, (\d+) of 1024/.exec(mid.out)![1]);
    const r = plugvisor(install.dir, 'restore', mid.file, '--build', builds.default);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toContain(`balloon: cpu 0: task B saw ${done} pages gone, ${1024 - done} intact; resuming task A`);
    expect(r.out).toContain('balloon: cpu 0: task A resumed: 1024 of 1024 extents done, 1024 pages gone');
    expect(r.out.trimEnd().split('\n').at(-1)).toBe('balloon: ok');
  });
});

describe('plugvisor abi diff: the workspace svc-xen against each release', () => {
  const workspaceManifest = join(workspaceXen, 'abi.json');
  const released = (v: Release) => join(install.releaseDir(v), 'abi.json');

  it.each(VERSIONS)('workspace abi.json → %s: incompatible (12), naming each changed continuation old → new', (v) => {
    const r = plugvisor(install.dir, 'abi', 'diff', workspaceManifest, released(v));
    expect(r.code, r.out + r.err).toBe(12);
    for (const [call] of PREEMPTIBLE) {
      expect(r.out).toMatch(new RegExp(`continuation ${call} +continuation of ${call}: ${ENCODING.workspace.replace(/[[\]]/g, '\\$&')} → ${ENCODING[v].replace(/[[\]]/g, '\\$&')} +major`));
    }
    const json = JSON.parse(plugvisor(install.dir, 'abi', 'diff', workspaceManifest, released(v), '--json').out) as {
      exit: number;
      services: { changes: { bump: string; subject: string; message: string }[] }[];
    };
    expect(json.exit).toBe(12);
    const continuations = json.services[0]!.changes.filter((c) => c.subject.startsWith('continuation '));
    expect(continuations.map((c) => [c.bump, c.message]).sort()).toEqual(
      PREEMPTIBLE.map(([call]) => ['major', `continuation of ${call}: ${ENCODING.workspace} → ${ENCODING[v]}`]).sort(),
    );
  });

  it('ledger 2.0.0 → 3.0.0 and the pinned build files are incompatible too (12)', () => {
    const ledger = (v: Release) => join(releasesDir, 'ledger', 'svc-xen', `${v}.json`);
    const r = plugvisor(install.dir, 'abi', 'diff', ledger('2.0.0'), ledger('3.0.0'));
    expect(r.code, r.out + r.err).toBe(12);
    expect(r.out).toContain(`continuation of XENMEM_decrease_reservation: ${ENCODING['2.0.0']} → not preemptible`);
    expect(plugvisor(install.dir, 'abi', 'diff', builds.default, builds['2.0.0']).code).toBe(12);
    expect(plugvisor(install.dir, 'abi', 'diff', ledger('2.0.0'), released('2.0.0')).code).toBe(0);
  });
});
