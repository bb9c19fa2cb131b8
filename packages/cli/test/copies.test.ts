import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, defineService } from '@plugvisor/core';
import { MemoryMachine } from '@plugvisor/core/testing';
import { createSmcccArchService, smcccArchHooks } from '@plugvisor/svc-smccc-arch';

/**
 * Two copies in one build. A service package may carry its own copy of @plugvisor/core or of a
 * service whose hooks it taps (in its own node_modules): hooks live in the build's registry, so
 * a tap through another copy of svc-smccc-arch still answers the guest, and the CLI refuses a
 * build whose services would load a second copy, naming both folders (exit 2, one line).
 */

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const packages = fileURLToPath(new URL('../../', import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const refused = (r: { code: number | null; err: string }, ...naming: string[]) => {
  expect(r.code, r.err).toBe(2);
  expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  expect(r.err).not.toMatch(/^ {4}at /m);
  for (const n of naming) expect(r.err).toContain(n);
};

const tapable = dirname(realpathSync(createRequire(join(packages, 'core', 'package.json')).resolve('tapable/package.json')));

/**
 * A copy of a workspace package as npm would install it: package.json and dist, in
 * `nodeModules`, its exports without the workspace's source condition (vitest's loader asks for it).
 */
function copyPackage(nodeModules: string, pkg: string): string {
  const dir = join(nodeModules, '@plugvisor', pkg);
  mkdirSync(dir, { recursive: true });
  const json = JSON.parse(readFileSync(join(packages, pkg, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
  for (const target of Object.values(json.exports)) if (target && typeof target === 'object') delete (target as Record<string, unknown>)['plugvisor-source'];
  writeFileSync(join(dir, 'package.json'), JSON.stringify(json));
  cpSync(join(packages, pkg, 'dist'), join(dir, 'dist'), { recursive: true });
  return dir;
}

/** `nodeModules/@plugvisor/<pkg>` linked to the workspace's own package (the one the CLI loads). */
function linkPackage(nodeModules: string, pkg: string): void {
  mkdirSync(join(nodeModules, '@plugvisor'), { recursive: true });
  symlinkSync(join(packages, pkg), join(nodeModules, '@plugvisor', pkg), 'dir');
}

const SOC_ID = 0xc700_0077; // a vendor call id of this test's own service

/**
 * An outside author's service package `@acme/svc-<name>` in `<root>/node_modules`: it declares a
 * vendor call and answers ARCH_FEATURES for it through svc-smccc-arch's hooks.
 */
function acmeService(root: string, name: string): { dir: string; nodeModules: string } {
  const dir = join(root, 'node_modules', '@acme', `svc-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: `@acme/svc-${name}`,
      version: '1.0.0',
      type: 'module',
      exports: './index.js',
      peerDependencies: { '@plugvisor/core': '^1.0.0', '@plugvisor/svc-smccc-arch': '^1.0.0' },
    }),
  );
  writeFileSync(
    join(dir, 'index.js'),
    `import { defineService, smcccReturn } from '@plugvisor/core';
import { smcccArchHooks } from '@plugvisor/svc-smccc-arch';
export default () => defineService({
  name: '@acme/svc-${name}', version: '1.0.0',
  surface: {
    features: [{ name: 'acme-${name}', default: 'opt-in', description: 'one vendor call' }],
    calls: [{ name: 'ACME_${name.toUpperCase()}', conduit: 'smccc', id: ${SOC_ID}, feature: 'acme-${name}', signature: { results: [{ reg: 0 }] } }],
  },
  handlers: { ACME_${name.toUpperCase()}: (vcpu) => smcccReturn(vcpu.regs, 7) },
  apply(hv, self) {
    smcccArchHooks(hv).features.for(${SOC_ID}).tap(self.name, (vm) => (vm.abi.isEnabled('acme-${name}') ? 0 : undefined));
  },
});
`,
  );
  return { dir, nodeModules: join(dir, 'node_modules') };
}

function buildFile(root: string, services: string[]): string {
  const file = join(root, 'build.json');
  writeFileSync(file, JSON.stringify({ name: 'copies', services }));
  return file;
}

const root = () => {
  const r = realpathSync(mkdtempSync(join(tmpdir(), 'plugvisor-copies-')));
  mkdirSync(join(r, 'node_modules'));
  symlinkSync(tapable, join(r, 'node_modules', 'tapable'), 'dir');
  return r;
};

describe('hooks across copies of a hook-owning service', () => {
  it('a tap through a second copy of svc-smccc-arch answers ARCH_FEATURES in the build', async () => {
    // the second copy: svc-smccc-arch's dist installed in a temporary node_modules, beside core
    const r = root();
    const copy = copyPackage(join(r, 'node_modules'), 'svc-smccc-arch');
    copyPackage(join(r, 'node_modules'), 'core'); // and, under vitest, another core too (dist beside src)
    const second = (await import(pathToFileURL(join(copy, 'dist', 'index.js')).href)) as typeof import('@plugvisor/svc-smccc-arch');
    expect(second.smcccArchHooks).not.toBe(smcccArchHooks); // really another module instance

    const tapper = defineService({
      name: '@acme/tapper',
      version: '1.0.0',
      surface: { features: [{ name: 'acme', default: 'opt-in', description: 'x' }], calls: [] },
      handlers: {},
      apply: (hv, self) => second.smcccArchHooks(hv).features.for(SOC_ID).tap(self.name, (vm) => (vm.abi.isEnabled('acme') ? 0 : undefined)),
    });
    const hv = Hypervisor.compose([createSmcccArchService(), tapper]);
    expect(second.smcccArchHooks(hv)).toBe(smcccArchHooks(hv));
    const archFeatures = (features: Record<string, boolean>, id: number) => {
      const vm = hv.createVm({ features });
      const m = new MemoryMachine();
      vm.attachMachine(m);
      vm.start();
      const v = m.vcpus[0]!;
      v.regs.set(0, 0x8000_0001n); // SMCCC_ARCH_FEATURES
      v.regs.set(1, BigInt(id));
      vm.dispatch(Conduits.smccc, v);
      return BigInt.asIntN(64, v.regs.get(0));
    };
    expect(archFeatures({ acme: true }, SOC_ID)).toBe(0n); // the copy's tap, called by the build's copy
    expect(archFeatures({ acme: false }, SOC_ID)).toBe(-1n);
    expect(archFeatures({ acme: true }, SOC_ID + 1)).toBe(-1n);
  });
});

describe('plugvisor refuses two copies in one build', () => {
  it('a service with its own copy of @plugvisor/core: exit 2 naming the service and both folders', () => {
    const r = root();
    const svc = acmeService(r, 'hello');
    const ownCore = copyPackage(svc.nodeModules, 'core');
    linkPackage(svc.nodeModules, 'svc-smccc-arch');
    const build = buildFile(r, ['@plugvisor/svc-smccc-arch', '@acme/svc-hello']);
    refused(
      plugvisor('abi', '--build', build),
      `build file ${build}: services[1]: service @acme/svc-hello uses its own copy of @plugvisor/core at ${ownCore} (1.0.0); the CLI's is ${realpathSync(join(packages, 'core'))} (1.0.0)`,
      'peer dependency',
    );
  });

  it('a service with its own copy of the svc-smccc-arch it taps, in either order: exit 2 naming both folders', () => {
    const r = root();
    const svc = acmeService(r, 'soc');
    linkPackage(svc.nodeModules, 'core');
    const ownArch = copyPackage(svc.nodeModules, 'svc-smccc-arch');
    const loaded = realpathSync(join(packages, 'svc-smccc-arch'));
    const expected = `@acme/svc-soc uses its own copy of @plugvisor/svc-smccc-arch at ${ownArch} (1.0.0); the build loads @plugvisor/svc-smccc-arch from ${loaded}`;
    refused(plugvisor('abi', '--build', buildFile(r, ['@plugvisor/svc-smccc-arch', '@acme/svc-soc'])), expected);
    refused(plugvisor('abi', '--build', buildFile(r, ['@acme/svc-soc', '@plugvisor/svc-smccc-arch'])), expected);
  });

  it('accepts the service once it shares the CLI’s core and svc-smccc-arch (linked, as a peer dependency is installed)', () => {
    const r = root();
    const svc = acmeService(r, 'soc');
    linkPackage(svc.nodeModules, 'core');
    linkPackage(svc.nodeModules, 'svc-smccc-arch');
    const res = plugvisor('abi', '--build', buildFile(r, ['@plugvisor/svc-smccc-arch', '@acme/svc-soc']));
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    expect(res.out).toContain('@acme/svc-soc');
  });
});
