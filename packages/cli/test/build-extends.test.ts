import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

// Build files that extend another build, builds by name, `abi --service PKG --manifest` without
// --build, and `check --vm` showing the VM's own values: the CLI as operators run it.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const cliDir = fileURLToPath(new URL('..', import.meta.url));
const defaultBuild = JSON.parse(readFileSync(join(cliDir, 'builds/default.json'), 'utf8')) as { services: string[] };
const plugvisor = (args: string[], cwd?: string) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', ...(cwd ? { cwd } : {}) });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
/** One clear line on stderr, exit 2, no stack trace. */
const refused = (args: string[]) => {
  const r = plugvisor(args);
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  expect(r.err).not.toMatch(/\n\s+at |node:internal/);
  return r.err;
};
const manifestOf = (build: string) => {
  const r = plugvisor(['abi', '--json', '--build', build]);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as { name: string; hash: string; services: { name: string }[] };
};

let dir: string;
const file = (name: string, json: unknown) => {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, JSON.stringify(json));
  return path;
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'plugvisor-extends-'));
});

describe('"extends": a build plus mine', () => {
  it('removes and replaces services of the base: the same build as the list spelled out, the replacement in the base position', () => {
    const psci = { package: '@plugvisor/svc-psci', options: { maxVersion: '1.1' } };
    const mine = file('mine.json', { name: 'mine', extends: 'default', remove: ['@plugvisor/svc-trng'], services: [psci] });
    const spelled = file('spelled.json', {
      name: 'mine',
      services: defaultBuild.services.filter((s) => s !== '@plugvisor/svc-trng').map((s) => (s === psci.package ? psci : s)),
    });
    const a = manifestOf(mine);
    expect(a.hash).toBe(manifestOf(spelled).hash);
    expect(a.services.map((s) => s.name)).not.toContain('@plugvisor/svc-trng');
    // The option reached the replacing entry: the capped PSCI differs from the default build's.
    expect(manifestOf(file('uncapped.json', { name: 'mine', extends: 'default', remove: ['@plugvisor/svc-trng'] })).hash).not.toBe(a.hash);
    // Position: the services table lists them in build order, psci where the default has it.
    const order = plugvisor(['abi', '--build', mine]).out.split('\n').filter((l) => l.startsWith('@plugvisor/svc-')).map((l) => l.split(' ')[0]);
    expect(order).toEqual(defaultBuild.services.filter((s) => s !== '@plugvisor/svc-trng'));
  });

  it('chains: a file extends a path relative to itself, which extends a build by name', () => {
    const base = file('base/no-trng-2.json', { name: 'no-trng-2', extends: 'default', remove: ['@plugvisor/svc-trng'] });
    const top = file('top/again.json', { name: 'again', extends: '../base/no-trng-2.json', services: ['@plugvisor/svc-trng'] });
    // Removed by the base, added back at the end: the same services as the default build.
    const m = manifestOf(top);
    expect(m.services.map((s) => s.name).sort()).toEqual([...defaultBuild.services].sort());
    expect(manifestOf(base).services).toHaveLength(defaultBuild.services.length - 1);
    // The same ABI as the default build (another name): abi diff finds nothing, from the file or by name.
    expect(plugvisor(['abi', 'diff', 'default', top]).code).toBe(0);
  });

  it('refuses a cycle, an unknown base, and a "remove" the base does not have, each in one line (exit 2)', () => {
    const a = join(dir, 'cycle-a.json');
    const b = file('cycle-b.json', { name: 'b', extends: './cycle-a.json' });
    file('cycle-a.json', { name: 'a', extends: './cycle-b.json' });
    const cycle = refused(['abi', '--build', a]);
    expect(cycle).toContain(`build file ${a}: extends a cycle: ${a} → ${b} → ${a}`);
    const self = file('self.json', { name: 'self', extends: './self.json' });
    expect(refused(['abi', '--build', self])).toContain('extends a cycle');

    const typo = file('typo.json', { name: 'typo', extends: 'defualt' });
    const err = refused(['abi', '--build', typo]);
    expect(err).toContain(`build file ${typo}: extends "defualt": no such build`);
    expect(err).toContain('default, no-trng');
    expect(refused(['abi', '--build', file('missing.json', { name: 'm', extends: './nowhere.json' })])).toContain('extends "./nowhere.json": no such build');

    const rm = file('rm.json', { name: 'rm', extends: 'default', remove: ['@plugvisor/svc-trgn'] });
    expect(refused(['abi', '--build', rm])).toContain(`build file ${rm}: remove[0]: @plugvisor/svc-trgn is not in the build it extends`);
    expect(refused(['abi', '--build', file('rm-alone.json', { name: 'r', remove: ['x'], services: [] })])).toContain('"remove" needs "extends"');
    expect(refused(['abi', '--build', file('no-services.json', { name: 'n' })])).toContain('needs a "services" array (or "extends"');
  });

  it("names an inherited entry's fault by the base file that declares it", () => {
    const bad = file('bad-base.json', { name: 'bad', services: ['@plugvisor/svc-nosuch'] });
    const top = file('on-bad.json', { name: 'top', extends: './bad-base.json' });
    expect(refused(['abi', '--build', top])).toContain(`build file ${bad}: cannot find service package @plugvisor/svc-nosuch`);
  });
});

describe('builds by name', () => {
  it('takes a bare name wherever a build file is taken, and names an unknown one', () => {
    expect(manifestOf('no-trng').name).toBe('no-trng');
    const r = plugvisor(['check', 'default', 'no-trng']);
    expect(r.code).toBe(3); // default VMs saw TRNG
    expect(r.out).toContain('A: default');
    expect(r.out).toContain('B: no-trng');
    expect(refused(['check', 'default', 'nosuch'])).toContain("no build named 'nosuch' (the CLI's builds: default, no-trng)");
  });

  it('prefers an existing file of that name in the current directory', () => {
    const here = mkdtempSync(join(tmpdir(), 'plugvisor-named-'));
    writeFileSync(join(here, 'default'), JSON.stringify({ name: 'local-default', extends: 'no-trng' }));
    const r = plugvisor(['abi', '--json', '--build', 'default'], here);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).name).toBe('local-default');
    // A folder of that name is not a build file: the name still means the CLI's build.
    mkdirSync(join(here, 'no-trng'));
    const named = plugvisor(['abi', '--json', '--build', 'no-trng'], here);
    expect(named.code).toBe(0);
    expect(JSON.parse(named.out).name).toBe('no-trng');
    expect(plugvisor(['abi', 'diff', 'no-trng', 'no-trng'], here).code).toBe(0);
  });
});

describe('abi --service PKG --manifest', () => {
  it("without --build prints the abi.json the package checks in (composed with what it requires)", () => {
    for (const pkg of ['svc-ptp', 'svc-evtchn-fifo']) {
      const r = plugvisor(['abi', '--service', `@plugvisor/${pkg}`, '--manifest']);
      expect(r.code).toBe(0);
      expect(r.out).toBe(readFileSync(join(cliDir, '..', pkg, 'abi.json'), 'utf8'));
    }
  });

  it('loads a service the default build does not have from the current directory', () => {
    const fixtures = join(cliDir, 'test/fixtures');
    const r = plugvisor(['abi', '--service', './echo.mjs', '--manifest'], fixtures);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).name).toBe('@plugvisor/test-svc-echo');
    // The same manifest as from a build that has it.
    expect(plugvisor(['abi', '--build', join(fixtures, 'echo-full.json'), '--service', '@plugvisor/test-svc-echo', '--manifest']).out).toBe(r.out);
    expect(refused(['abi', '--service', '@acme/svc-nosuch', '--manifest'])).toContain('--service @acme/svc-nosuch: cannot find service package @acme/svc-nosuch');
    expect(refused(['abi', '--build', 'default', '--service', '@acme/svc-nosuch'])).toContain('is not in build default');
  });
});

describe('check --vm shows the VM’s own values', () => {
  it('features on/off, selected versions, register values and calls from its record, beside what each build offers', () => {
    const record = join(dir, 'vm.json');
    const demo = join(cliDir, 'guests/bin/demo.elf');
    const run = plugvisor(['run', demo, '--vcpus', '1', '--feature', 'trng=off', '--feature', 'psci-system-suspend=on', '--record', record]);
    expect(run.code).toBe(0);
    const vm = JSON.parse(readFileSync(record, 'utf8')) as { registers: Record<string, string>; versions: Record<string, { name: string }> };

    const r = plugvisor(['check', 'default', 'no-trng', '--vm', record, '--json']);
    expect(r.code).toBe(0); // TRNG is off in this VM: it moves
    const rows = JSON.parse(r.out).rows as { subject: string; vm?: string; a: string; b: string }[];
    const row = (s: string) => rows.find((x) => x.subject === s)!;
    expect(row('feature trng')).toMatchObject({ vm: 'off', a: 'on (legacy-opt-out)' });
    expect(row('feature psci-system-suspend')).toMatchObject({ vm: 'on', a: 'off (opt-in)' });
    expect(row('feature psci')).toMatchObject({ vm: 'on' });
    expect(row('call TRNG_RND64').vm).toBe('not given');
    // (Call rows are the calls that differ between the builds: TRNG's here.)
    expect(rows.filter((x) => x.subject.startsWith('call ')).every((x) => x.vm === 'not given')).toBe(true);
    expect(row('service @plugvisor/svc-trng').vm).toMatch(/^created on \d+\.\d+\.\d+$/);
    const selector = Object.keys(vm.versions)[0]!;
    expect(row(`version ${selector}`).vm).toContain(vm.versions[selector]!.name);
    // A bitmap register's value is the VM's: TRNG's bit is clear in it (the build's default sets it).
    const regRows = rows.filter((x) => x.subject.startsWith('register '));
    expect(regRows.length).toBeGreaterThan(0);
    for (const x of regRows) expect(Object.values(vm.registers)).toContain(x.vm);

    const text = plugvisor(['check', 'default', 'no-trng', '--vm', record]).out;
    expect(text).toContain('the VM (its record)');
    expect(text).toMatch(/feature trng\s+off\s+on \(legacy-opt-out\)/);
    // A VM that has TRNG on was given its calls, and is refused by the build without it.
    const withTrng = join(dir, 'vm-trng.json');
    expect(plugvisor(['run', demo, '--vcpus', '1', '--record', withTrng]).code).toBe(0);
    const on = plugvisor(['check', 'default', 'no-trng', '--vm', withTrng, '--json']);
    expect(on.code).toBe(3);
    const onRows = JSON.parse(on.out).rows as { subject: string; vm?: string }[];
    expect(onRows.find((x) => x.subject === 'call TRNG_RND64')?.vm).toBe('given (feature trng)');
    expect(onRows.find((x) => x.subject === 'feature trng')?.vm).toBe('on');
    // Without --vm the table has no VM column: the builds' default VMs.
    expect(plugvisor(['check', 'default', 'no-trng']).out).not.toContain('the VM (its record)');
  });
});
