import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

// A failing service stops the VM with exit 14 and one line naming service package@version, the
// call (id and name), the vCPU and the PC — never a stack trace; build-loading failures exit 2
// naming the build file and the entry. The guest is the real demo guest; the faulty service is
// the real svc-trng with a bug injected (fixtures/faulty-trng.mjs) in TRNG_RND64, which the
// guest calls from `smccc_hvc` (its HVC #0 at 0x400006f8).
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
/** The faulty fixture services call themselves svc-trng at the version its package.json has. */
const TRNG = `@plugvisor/svc-trng@${(JSON.parse(readFileSync(fileURLToPath(new URL('../../svc-trng/package.json', import.meta.url)), 'utf8')) as { version: string }).version}`;
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-svcfail-'));
const CALL = 'call 0xc4000053 TRNG_RND64 on vCPU 0 at PC 0x400006f8: ';

/** Exit `code`, one line on stderr containing `naming`, no stack trace. */
const oneLine = (r: { code: number | null; err: string }, code: number, naming: string) => {
  expect(r.err.trimEnd().split('\n')).toHaveLength(1);
  expect(r.err).toContain(naming);
  expect(r.err).not.toMatch(/^ {4}at /m);
  expect(r.code).toBe(code);
};

describe.skipIf(!unicornAvailable())('service failures during a run (exit 14)', () => {
  it('a handler that throws a TypeError, a string or undefined', () => {
    for (const [bug, what] of [
      ['type-error', "TypeError: Cannot read properties of undefined (reading 'bytes')"],
      ['string', 'threw the string "boom"'],
      ['undefined', 'threw undefined'],
    ]) {
      const r = plugvisor('run', demo, '--build', fixture(`faulty-${bug}.json`));
      oneLine(r, 14, `plugvisor: service failure: service ${TRNG} failed in ${CALL}${what}`);
      expect(r.out).toContain('SMCCC: version 1.1'); // the guest ran up to the call
    }
  });

  it('PLUGVISOR_DEBUG=1 adds the handler\'s stack for developers', () => {
    const r = spawnSync(process.execPath, [bin, 'run', demo, '--build', fixture('faulty-type-error.json')], { encoding: 'utf8', env: { ...process.env, PLUGVISOR_DEBUG: '1' } });
    expect(r.status).toBe(14);
    expect(r.stderr).toMatch(/faulty-trng\.mjs:\d+/);
  });

  it('a handler that never returns is stopped by the watchdog', () => {
    const t = Date.now();
    const r = plugvisor('run', demo, '--build', fixture('faulty-spin.json'), '--hypercall-timeout', '1');
    oneLine(r, 14, `${CALL}HypercallTimeout: the handler did not return within 1 s (hypercall watchdog)`);
    expect(Date.now() - t).toBeLessThan(15_000);
  });

  it('a lifecycle tap that never returns (snapshotSave) is stopped by the watchdog too', () => {
    const snap = join(dir, 'never.snap');
    const r = plugvisor('run', demo, '--build', fixture('faulty-snapshot-save-spin.json'), '--snapshot-at', '5', '--snapshot-file', snap, '--hypercall-timeout', '1');
    oneLine(r, 14, `plugvisor: service failure: service ${TRNG} failed in its snapshotSave hook: HypercallTimeout: the handler did not return within 1 s`);
    expect(existsSync(snap)).toBe(false);
  });

  it('--snapshot-on-failure: the VM before the failing call restores on the fixed build and finishes', () => {
    const whole = plugvisor('run', demo, '--vcpus', '2');
    expect(whole.code).toBe(0);
    for (const [bug, extra] of [['type-error', []], ['spin', ['--hypercall-timeout', '1']]] as const) {
      const snap = join(dir, `${bug}.snap`);
      const failed = plugvisor('run', demo, '--vcpus', '2', '--build', fixture(`faulty-${bug}.json`), '--snapshot-on-failure', snap, ...extra);
      oneLine(failed, 14, `the VM as before the call is in ${snap}`);
      // On the buggy build the call fails again, the same way.
      const again = plugvisor('restore', snap, '--build', fixture(`faulty-${bug}.json`), ...extra);
      oneLine(again, 14, CALL);
      // On the default build (the real svc-trng), the guest re-executes the HVC and finishes
      // exactly as an uninterrupted run does.
      const fixed = plugvisor('restore', snap);
      expect(fixed.code).toBe(0);
      expect(failed.out + fixed.out).toBe(whole.out);
    }
  });

  it('a snapshotSave tap that throws: named, and no snapshot file (no partial file either)', () => {
    const snap = join(dir, 'save.snap');
    const r = plugvisor('run', demo, '--build', fixture('faulty-snapshot-save.json'), '--snapshot-at', '100', '--snapshot-file', snap);
    oneLine(r, 14, `service ${TRNG} failed in its snapshotSave hook: RangeError: faulty-trng: entropy pool size -1`);
    expect(existsSync(snap)).toBe(false);
    const onFailure = join(dir, 'save-on-failure.snap');
    const both = plugvisor('run', demo, '--build', fixture('faulty-snapshot-save.json'), '--snapshot-on-failure', onFailure, '--snapshot-at', '100', '--snapshot-file', snap);
    oneLine(both, 14, 'snapshotSave hook');
    expect(existsSync(onFailure)).toBe(false);
  });

  it('a snapshotRestore tap that throws', () => {
    const snap = join(dir, 'ok.snap');
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '100', '--snapshot-file', snap).code).toBe(0);
    const r = plugvisor('restore', snap, '--build', fixture('faulty-snapshot-restore.json'));
    oneLine(r, 14, `plugvisor restore: service failure: service ${TRNG} failed in its snapshotRestore hook: threw the string "restore: pool missing"`);
    expect(r.out).toBe('');
  });

  it('refuses a bad --hypercall-timeout and an unwritable --snapshot-on-failure (exit 2)', () => {
    oneLine(plugvisor('run', demo, '--hypercall-timeout', 'soon'), 2, "--hypercall-timeout takes seconds from 0 (off) to 86400, got 'soon'");
    oneLine(plugvisor('run', demo, '--snapshot-on-failure', dir), 2, `--snapshot-on-failure ${dir} is a directory`);
  });
});

describe('build loading failures name the build file and the entry (exit 2)', () => {
  const at = (file: string, i: number, service: string) => `build file ${fixture(file)}: services[${i}]: service ${service}`;
  it('a factory that throws, apply() that throws, a factory returning no surface', () => {
    oneLine(plugvisor('abi', '--build', fixture('faulty-factory.json')), 2, `${at('faulty-factory.json', 2, './faulty-trng.mjs')} refused its options {"bug":"factory"}: Cannot read properties of undefined`);
    oneLine(plugvisor('abi', '--build', fixture('faulty-apply.json')), 2, `build file ${fixture('faulty-apply.json')}: cannot compose the build: ${TRNG}: apply() failed: Error: faulty-trng: apply failed`);
    oneLine(plugvisor('abi', '--build', fixture('faulty-no-surface.json')), 2, `${at('faulty-no-surface.json', 2, './faulty-trng.mjs')} is not a valid service: the plugin has no "surface"`);
  });

  it('a module with a syntax error, a JSON file, a directory, a Node built-in, options the service refuses', () => {
    oneLine(plugvisor('abi', '--build', fixture('build-syntax-error.json')), 2, `${at('build-syntax-error.json', 1, './syntax-error.mjs')} failed to load: SyntaxError`);
    oneLine(plugvisor('abi', '--build', fixture('build-not-a-module.json')), 2, `${at('build-not-a-module.json', 1, './not-a-module.json')} failed to load: TypeError`);
    const build = join(dir, 'dir-build.json');
    mkdirSync(join(dir, 'svc.mjs'), { recursive: true });
    writeFileSync(build, JSON.stringify({ name: 'dir', services: [{ module: './svc.mjs' }] }));
    oneLine(plugvisor('abi', '--build', build), 2, `build file ${build}: services[0]: service ./svc.mjs: ${join(dir, 'svc.mjs')} is a directory, not a module`);
    oneLine(plugvisor('abi', '--build', fixture('build-builtin.json')), 2, 'fs is a Node.js built-in module, not a service package');
    oneLine(plugvisor('abi', '--build', fixture('psci-bad-number.json')), 2, "service @plugvisor/svc-psci: option 'maxVersion' is 1.1; it takes one of 0.2, 1.0, 1.1, 1.2, 1.3");
    oneLine(plugvisor('abi', '--build', fixture('psci-bad-version.json')), 2, "service @plugvisor/svc-psci: option 'maxVersion' is \"9.9\"");
  });
});
