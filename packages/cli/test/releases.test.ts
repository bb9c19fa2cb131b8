import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

/**
 * Three real releases of @plugvisor/svc-trng, packed from this repository by
 * fixtures/releases/make.mjs (1.0.0: the repo's code; 1.1.0: an opt-in feature `trng-limits`
 * with one new call; 2.0.0: TRNG_VERSION answers 0x10001), installed side by side as npm
 * aliases would install them (`npm install svc-trng-1.0.0@npm:@plugvisor/svc-trng@1.0.0`:
 * node_modules/svc-trng-1.0.0 with the real name in its package.json), pinned by build files,
 * and a real aarch64 guest (the demo guest: it probes TRNG like Linux and prints what it got)
 * snapshotted on one release and restored on another, in both directions.
 *
 * The install folder is under packages/cli/test/ so the releases' `@plugvisor/core` resolves
 * through packages/cli/node_modules, as it would beside an installed CLI. The builds hold the
 * services the demo guest needs (SMCCC arch, PSCI) and svc-trng: every snapshot and check
 * records behaviour transcripts of the whole build, so a small build keeps this file fast.
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const releasesDir = join(here, 'fixtures/releases');
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const coreDist = fileURLToPath(new URL('../../core/dist/index.js', import.meta.url));
const GUEST_SERVICES = ['@plugvisor/svc-smccc-arch', '@plugvisor/svc-psci', '@plugvisor/svc-trng'];
const VERSIONS = ['1.0.0', '1.1.0', '2.0.0'] as const;

const plugvisor = (cwd: string, ...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

let dir = '';
/** A build file in the install folder with svc-trng pinned to `range` (and, for guests, what the demo guest needs). */
const pinnedBuild = (name: string, range: string, { at = dir, services = GUEST_SERVICES } = {}) => {
  const file = join(at, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, services: services.map((s) => (s === '@plugvisor/svc-trng' ? { package: s, version: range } : s)) }));
  return file;
};
/** The svc-trng version a build pinning `range` loads (a build of svc-trng alone). */
let builds = 0;
const loadedTrngVersion = (range: string) => {
  const r = plugvisor(dir, 'abi', '--build', pinnedBuild(`trng-only-${++builds}`, range, { services: ['@plugvisor/svc-trng'] }), '--json');
  expect(r.code, r.err).toBe(0);
  return (JSON.parse(r.out) as { services: { name: string; version: string }[] }).services.find((s) => s.name === '@plugvisor/svc-trng')?.version;
};

/**
 * Loads a packed release in a fresh Node process (its own `@plugvisor/core` resolution, as the
 * CLI loads it), regenerates its abi.json from the packed code and classifies the packed one
 * against it: what the release reports, and every change found (none if abi.json is true).
 */
const packedTruth = (pkgDir: string) => {
  const script = `
    import { pathToFileURL } from 'node:url';
    import { readFileSync } from 'node:fs';
    const [coreDist, pkgDir] = process.argv.slice(1);
    const core = await import(pathToFileURL(coreDist).href);
    const plugin = (await import(pathToFileURL(pkgDir + '/dist/index.js').href)).default();
    const fresh = JSON.parse(core.serviceAbiFile(plugin, core.Hypervisor.compose([plugin], { name: plugin.name })));
    const packed = JSON.parse(readFileSync(pkgDir + '/abi.json', 'utf8'));
    const change = core.classifyAbiChange(packed, fresh);
    console.log(JSON.stringify({ name: plugin.name, version: plugin.version, changes: change.changes.filter((c) => c.bump !== 'none').map((c) => c.message) }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, coreDist, pkgDir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { name: string; version: string; changes: string[] };
};

beforeAll(() => {
  dir = mkdtempSync(join(releasesDir, 'installed-'));
  for (const v of VERSIONS) {
    const to = join(dir, 'node_modules', `svc-trng-${v}`);
    mkdirSync(to, { recursive: true });
    const tar = spawnSync('tar', ['xzf', join(releasesDir, `plugvisor-svc-trng-${v}.tgz`), '-C', to, '--strip-components=1'], { encoding: 'utf8' });
    expect(tar.status, tar.stderr).toBe(0);
  }
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('packed releases of svc-trng (fixtures/releases)', () => {
  it('each tarball is the release its name says, and its abi.json is what its own code declares and answers', () => {
    const entries = JSON.parse(readFileSync(join(releasesDir, 'releases.json'), 'utf8')) as { releases: { version: string; tarball: string }[] };
    expect(entries.releases.map((r) => r.version)).toEqual([...VERSIONS]);
    for (const v of VERSIONS) {
      const pkgDir = join(dir, 'node_modules', `svc-trng-${v}`);
      const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { name: string; version: string };
      expect([pkg.name, pkg.version]).toEqual(['@plugvisor/svc-trng', v]);
      // Regenerated from the packed code now, classified against the packed abi.json: nothing
      // differs (surface or any probe's answer), so the packed manifest tells the truth.
      expect(packedTruth(pkgDir)).toEqual({ name: '@plugvisor/svc-trng', version: v, changes: [] });
      const packed = JSON.parse(readFileSync(join(pkgDir, 'abi.json'), 'utf8'));
      const ledger = JSON.parse(readFileSync(join(releasesDir, 'ledger', `${v}.json`), 'utf8'));
      expect(ledger).toEqual({ ...packed, version: v });
    }
  });
});

describe('build files pin service versions among installed releases', () => {
  it('takes the highest installed release satisfying the range, wherever it is installed', () => {
    expect(loadedTrngVersion('1.0.0')).toBe('1.0.0');
    expect(loadedTrngVersion('~1.0.0')).toBe('1.0.0');
    expect(loadedTrngVersion('^1.0.0')).toBe('1.1.0');
    expect(loadedTrngVersion('>=1.0.0')).toBe('2.0.0');
    // The guest sees the release it was pinned to.
    expect(plugvisor(dir, 'run', demo, '--vcpus', '2', '--build', pinnedBuild('b2', '2.0.0')).out).toContain('TRNG: version 1.1, RND64 yes');
  });

  it('refuses a range nothing installed satisfies, listing every installed release with its folder (exit 2)', () => {
    const file = pinnedBuild('none', '^3.0.0');
    const r = plugvisor(dir, 'run', demo, '--build', file);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toContain(`build file ${file}: services[2]: no installed release of @plugvisor/svc-trng satisfies ^3.0.0 (installed: `);
    for (const v of VERSIONS) expect(r.err).toContain(`${v} at ${join(dir, 'node_modules', `svc-trng-${v}`)}`);
    // Listed in version order.
    const listed = [...r.err.matchAll(/(\d+\.\d+\.\d+) at /g)].map((m) => m[1]!);
    expect(listed).toEqual([...listed].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })));
  });

  it('refuses a version that is not a semver range, and a version on a module entry (exit 2, one line)', () => {
    const bad = pinnedBuild('bad-range', 'one point oh');
    const r = plugvisor(dir, 'abi', '--build', bad);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^plugvisor abi: build file .*bad-range\.json: services\[2\]: version "one point oh" of @plugvisor\/svc-trng is not a semver range/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    const onModule = join(dir, 'on-module.json');
    writeFileSync(onModule, JSON.stringify({ name: 'm', services: [{ module: './x.mjs', version: '1.0.0' }] }));
    const m = plugvisor(dir, 'abi', '--build', onModule);
    expect(m.code).toBe(2);
    expect(m.err).toContain('services[0] must be a package name, { "package", "version"?: "RANGE", "options"?: {...} } or { "module", "options"?: {...} }');
  });

  it('refuses a release whose service reports another version than its package.json', () => {
    // A folder that says it is svc-trng 1.0.5 but loads the 1.0.0 release's code.
    const nested = join(dir, 'liar');
    const fake = join(nested, 'node_modules', 'svc-trng-fake');
    mkdirSync(fake, { recursive: true });
    writeFileSync(join(fake, 'package.json'), JSON.stringify({ name: '@plugvisor/svc-trng', version: '1.0.5', type: 'module', exports: { '.': './index.js' } }));
    writeFileSync(join(fake, 'index.js'), "export { default } from '../../../node_modules/svc-trng-1.0.0/dist/index.js';\n");
    const r = plugvisor(dir, 'abi', '--build', pinnedBuild('liar', '1.0.5', { at: nested }));
    expect(r.code).toBe(2);
    expect(r.err).toContain(`the release at ${fake} reports itself as @plugvisor/svc-trng@1.0.0, its package.json says @plugvisor/svc-trng@1.0.5`);
  });
});

describe.skipIf(!unicornAvailable())('a real guest across releases: snapshot on one, restore on another', () => {
  let n = '';
  let n1 = '';
  let n2 = '';
  let whole = '';
  beforeAll(() => {
    n = pinnedBuild('svc-trng-1.0.0', '1.0.0');
    n1 = pinnedBuild('svc-trng-1.1', '^1.1.0');
    n2 = pinnedBuild('svc-trng-2', '2.0.0');
    const r = plugvisor(dir, 'run', demo, '--vcpus', '2', '--build', n);
    expect(r.code, r.err).toBe(0);
    whole = r.out;
    expect(whole).toContain('TRNG: version 1.0, RND64 yes');
    expect(whole).toContain('total 108049000');
    expect(loadedTrngVersion('^1.1.0')).toBe('1.1.0');
  });
  const snapshot = (build: string, name: string, ...extra: string[]) => {
    const file = join(dir, name);
    const r = plugvisor(dir, 'run', demo, '--vcpus', '2', '--build', build, '--snapshot-at', '15000', '--snapshot-file', file, ...extra);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('snapshot after 15000 hypercall traps written to');
    return { file, out: r.out };
  };

  it('1.0.0 → 1.1.0 (opt-in addition): restores and finishes with the output of an uninterrupted run', () => {
    const first = snapshot(n, 'n.snap');
    const second = plugvisor(dir, 'restore', first.file, '--build', n1);
    expect(second.code, second.err).toBe(0);
    expect(first.out + second.out).toBe(whole);
  });

  it('1.1.0 → 1.0.0 (rollback): a VM that left the new feature off restores', () => {
    const first = snapshot(n1, 'n1.snap');
    expect(first.out).toContain('TRNG: version 1.0, RND64 yes');
    const second = plugvisor(dir, 'restore', first.file, '--build', n);
    expect(second.code, second.err).toBe(0);
    expect(first.out + second.out).toBe(whole);
  });

  it('1.1.0 → 1.0.0 with the new opt-in feature on: refused, naming the feature (exit 3); check says so too', () => {
    const on = snapshot(n1, 'n1-limits.snap', '--feature', 'trng-limits=on');
    const refused = plugvisor(dir, 'restore', on.file, '--build', n);
    expect(refused.code).toBe(3);
    expect(refused.out).toBe('');
    expect(refused.err).toContain("feature 'trng-limits' is enabled in the VM but @plugvisor/svc-trng@1.0.0 does not offer it");
    // The same VM carries on where it came from.
    const back = plugvisor(dir, 'restore', on.file, '--build', n1);
    expect(back.code, back.err).toBe(0);
    expect(on.out + back.out).toBe(whole);

    const checked = plugvisor(dir, 'check', n1, n, '--vm', on.file);
    expect(checked.code).toBe(3);
    expect(checked.out).toMatch(/upgrade A→B: REFUSED\n {2}- feature 'trng-limits' is enabled in the VM but @plugvisor\/svc-trng@1\.0\.0 does not offer it/);
  });

  it('1.0.0 → 2.0.0 (a change existing VMs see): refused, naming the call and old → new (exit 3)', () => {
    const first = snapshot(n, 'n-for-2.snap');
    const refused = plugvisor(dir, 'restore', first.file, '--build', n2);
    expect(refused.code).toBe(3);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/feature 'trng' of @plugvisor\/svc-trng@2\.0\.0 answers differently than the VM saw: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
  });

  it('plugvisor check across the pinned builds, both directions', () => {
    // 1.0.0 ⇄ 1.1.0: every default VM moves both ways (upgrade A→B and rollback B→A).
    const minor = plugvisor(dir, 'check', n, n1);
    expect(minor.code, minor.out).toBe(0);
    expect(minor.out).toContain('upgrade A→B: safe');
    expect(minor.out).toContain('rollback B→A: safe');
    // 1.0.0 ⇄ 2.0.0: refused both ways, naming the call and old → new in each direction.
    const major = plugvisor(dir, 'check', n, n2);
    expect(major.code, major.out).toBe(3);
    const upgrade = major.out.slice(major.out.indexOf('upgrade A→B: REFUSED'), major.out.indexOf('rollback B→A:'));
    const rollback = major.out.slice(major.out.indexOf('rollback B→A: REFUSED'));
    expect(upgrade).toMatch(/TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
    expect(rollback).toMatch(/TRNG_VERSION probe \[[^\]]+\]: x0=0x10001 x1=0x0 x2=0x0 x3=0x0 → x0=0x10000/);
  });
});

describe('plugvisor abi diff across the releases', () => {
  const ledger = (v: string) => join(releasesDir, 'ledger', `${v}.json`);
  const packedAbi = (v: string) => join(dir, 'node_modules', `svc-trng-${v}`, 'abi.json');

  it('1.0.0 → 1.1.0 is a compatible change (4); 1.0.0 → 2.0.0 an incompatible one (12), naming TRNG_VERSION old → new', () => {
    // Ledger entries.
    const minor = plugvisor(dir, 'abi', 'diff', ledger('1.0.0'), ledger('1.1.0'));
    expect(minor.code, minor.out + minor.err).toBe(4);
    expect(minor.out).toContain('trng-limits');
    const major = plugvisor(dir, 'abi', 'diff', ledger('1.0.0'), ledger('2.0.0'));
    expect(major.code, major.out + major.err).toBe(12);
    expect(major.out).toMatch(/TRNG_VERSION[^\n]*x0=0x10000[^\n]*→[^\n]*x0=0x10001/);
    expect(plugvisor(dir, 'abi', 'diff', ledger('1.1.0'), ledger('1.1.0')).code).toBe(0);
    // The abi.json each packed release carries.
    expect(plugvisor(dir, 'abi', 'diff', packedAbi('1.0.0'), packedAbi('1.1.0')).code).toBe(4);
    expect(plugvisor(dir, 'abi', 'diff', packedAbi('1.0.0'), packedAbi('2.0.0')).code).toBe(12);
    // Over the pinned build files, composed.
    expect(plugvisor(dir, 'abi', 'diff', pinnedBuild('d-1.0.0', '1.0.0'), pinnedBuild('d-1.1', '^1.1.0')).code).toBe(4);
    expect(plugvisor(dir, 'abi', 'diff', pinnedBuild('d-1.0.0', '1.0.0'), pinnedBuild('d-2', '2.0.0')).code).toBe(12);
  });
});
