import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Hypervisor } from '@plugvisor/core';
import { createEchoService } from '@plugvisor/core/testing';

// The CLI as operators run it: the built binary in a child process (pnpm test builds first).
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('plugvisor abi', () => {
  it('prints every call, feature with its default, version selector and register', () => {
    const { code, out } = plugvisor('abi', '--build', fixture('echo-full.json'));
    expect(code).toBe(0);
    for (const s of ['ECHO_COUNT', '0xc7000002', 'echo-counter', 'off (opt-in)', 'on  (legacy-opt-out)', 'TEST_ECHO_BMAP[1]', '0x603000000016007f', '1.0 (0x10000), 1.1 (0x10001), 2.0 (0x20000)', 'ECHO_RANGE', '0xc7000100..0xc70001ff', 'fixed; accepts 0x0, 0x1, 0x2', 'echo >= 2.0']) {
      expect(out).toContain(s);
    }
  });

  it('prints a hashable manifest and a service abi.json', () => {
    const a = JSON.parse(plugvisor('abi', '--json', '--build', fixture('echo-full.json')).out);
    const b = JSON.parse(plugvisor('abi', '--json', '--build', fixture('echo-no-counter.json')).out);
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(a.hash).not.toBe(b.hash);
    const manifest = plugvisor('abi', '--build', fixture('echo-full.json'), '--service', '@plugvisor/test-svc-echo', '--manifest').out;
    expect(JSON.parse(manifest).surface.features[1].default).toBe('opt-in');
    expect(manifest).not.toContain('"version": "1.0.0"');
  });

  it('reports bad operator input with a clear message and exit 2', () => {
    expect(plugvisor('abi', '--build', '/nonexistent.json')).toMatchObject({ code: 2, err: expect.stringContaining('does not exist') });
    expect(plugvisor('abi', '--bogus')).toMatchObject({ code: 2, err: expect.stringContaining("Unknown option '--bogus'") });
    expect(plugvisor('frobnicate').code).toBe(2);
    const dup = plugvisor('abi', '--build', fixture('duplicate.json'));
    expect(dup.code).toBe(2);
    expect(dup.err).toContain('@plugvisor/test-svc-echo is in the build twice (1.0.0 and 1.1.0)');
  });
  it("composes a build file with every backend's conduits: a service may call on x86-port; an unknown conduit is named", () => {
    const { code, out } = plugvisor('abi', '--build', fixture('x86-hello.json'));
    expect(code).toBe(0);
    expect(out).toMatch(/X86_HELLO\s+x86-port\s+0x00004242/);
    const bad = plugvisor('abi', '--build', fixture('nosuch-conduit.json'));
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("@plugvisor/test-svc-nosuch-conduit: call NOSUCH_CALL uses unknown conduit 'nosuch-trap'");
  });
});

describe('build-file service options', () => {
  // One line on stderr, naming the build file, the service and the key; exit 2; no stack trace.
  const refused = (file: string) => {
    const r = plugvisor('abi', '--build', fixture(file));
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.err).not.toMatch(/\n\s+at |node:internal|Error:/);
    expect(r.err).toContain(`build file ${fixture(file)}`);
    return r.err;
  };

  it('accepts the options a service declares', () => {
    expect(plugvisor('abi', '--build', fixture('echo-capped.json')).code).toBe(0);
    expect(plugvisor('abi', '--build', fixture('echo-no-counter.json')).code).toBe(0);
    expect(plugvisor('abi', '--build', fixture('echo-bias.json')).code).toBe(0);
  });

  it('refuses an unknown key, listing the options the service has', () => {
    const err = refused('echo-bad-key.json');
    expect(err).toContain("service ./echo.mjs: unknown option 'maxVersoin' (options: name, version, maxVersion, withoutCounter, stateVersion, extraEchoCall, bias, echoName, reorder, maxLevel, minLevel)");
  });

  it('refuses any option to a service that declares none', () => {
    expect(refused('trng-options.json')).toContain("service @plugvisor/svc-trng: unknown option 'fast' (it takes no options)");
  });

  it('refuses a value outside an enum, naming the accepted values', () => {
    expect(refused('psci-bad-version.json')).toContain("service @plugvisor/svc-psci: option 'maxVersion' is \"9.9\"; it takes one of 0.2, 1.0, 1.1, 1.2, 1.3");
  });

  it('refuses a value of the wrong type', () => {
    expect(refused('echo-bad-type.json')).toContain("service ./echo.mjs: option 'bias' is \"1\"; it takes an integer in");
  });

  it('reports a factory that throws at creation as one line', () => {
    const err = refused('throwing.json');
    expect(err).toContain('service ./throwing.mjs refused its options {"level":3}: throwing-service: level 3 is not supported on this host; (a second line the CLI must fold)');
  });
});

describe('plugvisor check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-check-'));
  const recordFile = (overrides: object) => {
    const hv = Hypervisor.compose([createEchoService()], { name: 'echo-full' });
    const file = join(dir, `${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(hv.createVm(overrides).record()));
    return file;
  };

  it('says default VMs move both ways when only an opt-in feature differs', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-no-counter.json'));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/upgrade A→B: safe/);
    expect(r.out).toMatch(/rollback B→A: safe/);
    expect(r.out).toMatch(/feature echo-counter\s+off \(opt-in\)\s+—\s+ok\s+ok/);
    // ... and still shows what changed: the row's ABI change, and every classified change of the service
    expect(r.out).toMatch(/feature echo-counter\s+off \(opt-in\)\s+—\s+ok\s+ok\s+major\n/);
    expect(r.out).toMatch(/call ECHO_COUNT\s+smccc 0xc7000002\s+—\s+ok\s+ok\s+major\n/);
    expect(r.out).toContain(
      [
        '  @plugvisor/test-svc-echo 1.0.0 → 1.0.0: major',
        "    - major: feature 'echo-counter' removed (affects VMs with feature 'echo-counter' on)",
        "    - major: call ECHO_COUNT (smccc 0xc7000002) removed (affects VMs with feature 'echo-counter' on)",
        '    default VMs: upgrade A→B moves; rollback B→A moves',
      ].join('\n'),
    );
    const json = JSON.parse(plugvisor('check', fixture('echo-full.json'), fixture('echo-no-counter.json'), '--json').out);
    const row = json.rows.find((x: { subject: string }) => x.subject === 'feature echo-counter');
    expect(row).toMatchObject({ upgrade: 'ok', rollback: 'ok', change: 'major', status: 'changed' });
    expect(json.services).toEqual([
      expect.objectContaining({
        service: '@plugvisor/test-svc-echo',
        a: '1.0.0',
        b: '1.0.0',
        bump: 'major',
        changes: [
          { bump: 'major', kind: 'removed', subject: "feature 'echo-counter'", message: "feature 'echo-counter' removed", affects: "VMs with feature 'echo-counter' on" },
          { bump: 'major', kind: 'removed', subject: 'call ECHO_COUNT', message: 'call ECHO_COUNT (smccc 0xc7000002) removed', affects: "VMs with feature 'echo-counter' on" },
        ],
        upgrade: { safe: true, problems: [] },
        rollback: { safe: true, problems: [] },
      }),
    ]);
    expect(json.rows.find((x: { subject: string }) => x.subject === 'feature echo')).toMatchObject({ change: 'none', status: 'ok' });
  });

  it('shows a register whose accepted values narrowed, though default VMs still move', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-level-narrowed.json'));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/register TEST_ECHO_LEVEL\s+0x2 \(accepts 0x0, 0x1, 0x2\)\s+0x2 \(accepts 0x1, 0x2\)\s+ok\s+ok\s+major\n/);
    expect(r.out).toContain('    - major: firmware register TEST_ECHO_LEVEL accepts [0x0, 0x1, 0x2] → [0x1, 0x2]: no longer 0x0 (affects VMs given TEST_ECHO_LEVEL = 0x0)');
    const json = JSON.parse(plugvisor('check', fixture('echo-full.json'), fixture('echo-level-narrowed.json'), '--json').out);
    expect(json.rows.find((x: { subject: string }) => x.subject === 'register TEST_ECHO_LEVEL')).toMatchObject({ upgrade: 'ok', rollback: 'ok', change: 'major', status: 'changed' });
    // the other way it widened: minor, shown too
    const back = JSON.parse(plugvisor('check', fixture('echo-level-narrowed.json'), fixture('echo-full.json'), '--json').out);
    expect(back.services[0].changes).toEqual([
      expect.objectContaining({ bump: 'minor', message: 'firmware register TEST_ECHO_LEVEL accepts [0x1, 0x2] → [0x0, 0x1, 0x2]: also 0x0' }),
    ]);
  });

  it('refuses default VMs whose register value the other build no longer provides, naming it old → new', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-level-lowered.json'));
    expect(r.code).toBe(3);
    expect(r.out).toMatch(/register TEST_ECHO_LEVEL\s+0x2 \(accepts 0x0, 0x1, 0x2\)\s+0x1 \(accepts 0x0, 0x1\)\s+REFUSED\s+ok\s+major\n/);
    expect(r.out).toContain('    - major: firmware register TEST_ECHO_LEVEL changed: value 0x2 → 0x1 (affects every VM)');
    expect(r.out).toContain('upgrade A→B: REFUSED\n  - TEST_ECHO_LEVEL (0x603000000014007e) = 0x2 cannot be provided by this build (it provides 0x1; accepts 0x0, 0x1)\nrollback B→A: safe');
  });

  it('a call renamed in place is no change: default VMs and a recorded VM move both ways', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-renamed.json'));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/call ECHO\s+smccc 0xc7000000\s+smccc 0xc7000000 as ECHO_SUM\s+ok\s+ok\s+none\n/);
    expect(r.out).toContain('    - none: call ECHO renamed ECHO_SUM (same conduit smccc and id 0xc7000000: guests see no change) (no VM sees it)');
    const vm = recordFile({ features: { 'echo-counter': true } });
    expect(plugvisor('check', fixture('echo-full.json'), fixture('echo-renamed.json'), '--vm', vm).code).toBe(0);
    expect(plugvisor('check', fixture('echo-renamed.json'), fixture('echo-full.json'), '--vm', vm).code).toBe(0);
  });

  it('the same ABI declared in another order: the same manifest hash, no change', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-reordered.json'));
    expect(r.code).toBe(0);
    const [, ha, hb] = /A: echo-full \(manifest ([0-9a-f]+)\)\s+B: echo-reordered \(manifest ([0-9a-f]+)\)/.exec(r.out)!;
    expect(hb).toBe(ha);
    expect(r.out).toContain('  @plugvisor/test-svc-echo 1.0.0 → 1.0.0: no ABI change');
    expect(r.out).not.toMatch(/\s(minor|major|patch)\n/);
  });

  it('refuses a VM that enabled the feature, naming it, in table and JSON', () => {
    const vm = recordFile({ features: { 'echo-counter': true } });
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-no-counter.json'), '--vm', vm);
    expect(r.code).toBe(3);
    expect(r.out).toMatch(/feature echo-counter .*REFUSED/);
    expect(r.out).toContain("feature 'echo-counter' is enabled in the VM but @plugvisor/test-svc-echo@1.0.0 does not offer it");
    const json = JSON.parse(plugvisor('check', fixture('echo-full.json'), fixture('echo-no-counter.json'), '--vm', vm, '--json').out);
    expect(json.upgrade.safe).toBe(false);
    expect(json.rows.find((x: { subject: string }) => x.subject === 'feature echo-counter').upgrade).toBe('refused');
  });

  it('refuses a version the other build caps below', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-capped.json'), '--vm', recordFile({ versions: { echo: '2.0' } }));
    expect(r.code).toBe(3);
    expect(r.out).toContain('echo version 2.0 (0x20000) is not offered by @plugvisor/test-svc-echo@1.0.0 (offers 1.0, 1.1; maximum 1.1)');
  });

  it('refuses moving default VMs to a build without the service', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('empty.json'));
    expect(r.code).toBe(3);
    expect(r.out).toContain("upgrade: feature 'echo' is enabled in the VM but the build has no @plugvisor/test-svc-echo".replace('upgrade: ', ''));
    expect(r.out).toMatch(/rollback B→A: safe/);
  });

  it('tells apart builds that differ only in an option changing what a call answers, naming call and probe', () => {
    const r = plugvisor('check', fixture('echo-full.json'), fixture('echo-bias.json'));
    expect(r.code).toBe(3);
    const [, ha, hb] = /A: echo-full \(manifest ([0-9a-f]+)\)\s+B: echo-bias \(manifest ([0-9a-f]+)\)/.exec(r.out)!;
    expect(ha).not.toBe(hb);
    expect(r.out).toMatch(/upgrade A→B: REFUSED\n  - feature 'echo' of @plugvisor\/test-svc-echo@1\.0\.0 answers differently than the VM saw: ECHO probe \[[^\]]+\]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 /);
    expect(r.out).toMatch(/rollback B→A: REFUSED\n  - feature 'echo' .*: ECHO probe \[[^\]]+\]: x0=0x1 .* → x0=0x0 /);
    // the behaviour change is classified on the call's row and listed with the VMs it affects
    expect(r.out).toMatch(/call ECHO\s+smccc 0xc7000000\s+smccc 0xc7000000\s+REFUSED\s+REFUSED\s+major\n/);
    expect(r.out).toContain("    - major: behaviour changed: ECHO probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0 (affects every VM with feature 'echo' (on by default))");
    expect(r.out).toContain('    default VMs: upgrade A→B REFUSED (1 problem, below); rollback B→A REFUSED (1 problem, below)');
    // the same build file twice: same manifest, safe
    const same = plugvisor('check', fixture('echo-full.json'), fixture('echo-full.json'));
    expect(same.code).toBe(0);
  });

  it('rejects a malformed record file', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"format": 1}');
    expect(plugvisor('check', fixture('echo-full.json'), fixture('empty.json'), '--vm', bad)).toMatchObject({ code: 2, err: expect.stringContaining(`--vm ${bad}: ABI record: services must be an object`) });
  });
});
