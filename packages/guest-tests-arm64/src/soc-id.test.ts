/**
 * SMCCC_ARCH_SOC_ID found the way Linux finds it, by a real guest (guests/src/soc-id.c):
 * PSCI_VERSION → PSCI_FEATURES(SMCCC_VERSION) → SMCCC_VERSION → at 1.2 or later
 * ARCH_FEATURES(SOC_ID) → SOC_ID(0), SOC_ID(1) (drivers/firmware/psci/psci.c psci_init_smccc,
 * drivers/firmware/smccc/smccc.c arm_smccc_version_init, soc_id.c). The SMCCC version is
 * svc-smccc-arch's `smccc` selector (1.1 by default, as KVM), SOC_ID is svc-soc-id's opt-in
 * feature: a guest sees SOC_ID only when its operator asked for both.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Hypervisor, type VmOverrides } from '@plugvisor/core';
import { Arm64Machine, unicornAvailable } from '@plugvisor/machine-arm64';
import { createSocIdService, type SocIdOptions } from '@plugvisor/svc-soc-id';
import { composeBuild, guestImage, MEM_SIZE } from './harness.js';

const OPTIONS: SocIdOptions = { jep106Bank: 4, jep106Id: 0x3b, socId: 0xd0c1, revision: 0x2a }; // Arm Ltd's JEP-106 identity

/** Boots soc-id.elf on one vCPU of `hv` with `overrides`, runs it to power-off and returns what it printed. */
function probe(hv: Hypervisor, overrides: VmOverrides = {}): Map<string, string> {
  const vm = hv.createVm(overrides);
  const out: string[] = [];
  const machine = new Arm64Machine({ vcpus: 1, memSize: MEM_SIZE, console: (b) => out.push(Buffer.from(b).toString('latin1')) });
  try {
    vm.attachMachine(machine);
    machine.attach(vm);
    machine.boot(machine.loadImage(guestImage('soc-id')).entry);
    const r = machine.run();
    const text = out.join('');
    if (r.kind !== 'system-event' || r.event.kind !== 'off' || !text.endsWith('done\n')) throw new Error(`soc-id guest did not finish (${r.kind}):\n${text}`);
    return parse(text);
  } finally {
    machine.dispose();
  }
}

/** `key value…` lines; the `soc:` line keeps its whole text. */
function parse(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(' ');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

const withSocId = (options: SocIdOptions = OPTIONS) => composeBuild({ extra: [createSocIdService(options)], name: 'smccc + soc-id' });

describe.skipIf(!unicornAvailable())('SOC_ID through Linux’s probe sequence (real guest)', () => {
  it('default VM (SMCCC 1.1, soc-id off): SMCCC 1.1, SOC_ID never looked for', () => {
    const r = probe(withSocId());
    expect(r.get('psci_version')).toBe('10003');
    expect(r.get('psci_features_smccc_version')).toBe('0');
    expect(r.get('smccc_version')).toBe('10001');
    expect(r.has('arch_features_soc_id')).toBe(false);
    expect(r.get('soc:')).toBe('SMCCC below 1.2, SOC_ID not looked for');
  });

  it('soc-id on at SMCCC 1.1: the guest finds nothing, as Linux would (it never asks below 1.2)', () => {
    const r = probe(withSocId(), { features: { 'soc-id': true } });
    expect(r.get('smccc_version')).toBe('10001');
    expect(r.has('arch_features_soc_id')).toBe(false);
    expect(r.has('soc_id_version')).toBe(false);
    expect(r.get('soc:')).toBe('SMCCC below 1.2, SOC_ID not looked for');
  });

  it('SMCCC 1.2 with soc-id off: ARCH_FEATURES(SOC_ID) answers NOT_SUPPORTED, nothing is read', () => {
    const r = probe(withSocId(), { versions: { smccc: '1.2' } });
    expect(r.get('smccc_version')).toBe('10002');
    expect(r.get('arch_features_soc_id')).toBe('ffffffff');
    expect(r.has('soc_id_version')).toBe(false);
    expect(r.get('soc:')).toBe('ARCH_SOC_ID not implemented, skipping');
  });

  it('SMCCC 1.2 in a build without svc-soc-id: the same NOT_SUPPORTED (nothing but the version selector changed)', () => {
    const r = probe(composeBuild(), { versions: { smccc: '1.2' } });
    expect(r.get('smccc_version')).toBe('10002');
    expect(r.get('arch_features_soc_id')).toBe('ffffffff');
  });

  it('SMCCC 1.2 with soc-id on: reads the version and revision the options gave; the SMC64 name call is NOT_SUPPORTED and keeps x4..x17', () => {
    const r = probe(withSocId(), { features: { 'soc-id': true }, versions: { smccc: '1.2' } });
    expect(r.get('arch_features_soc_id')).toBe('0');
    expect(r.get('soc_id_version')).toBe('43bd0c1'); // bank 4 | 0x3B (odd parity already) | 0xd0c1
    expect(r.get('soc_id_revision')).toBe('2a');
    expect(r.get('soc:')).toBe('ID = jep106:043b:d0c1 Revision = 0x0000002a');
    // SOC_ID64 (0xC0000002) is not declared: x0 = −1, x1..x3 = 0, x4..x17 as the guest left them
    expect(r.get('soc_id_name')).toBe('ffffffff changed e');
    expect(r.get('soc_name:')).toBe('none');
  });

  it('the default options answer a version that names no manufacturer (jep106:0000:0000)', () => {
    const r = probe(withSocId({}), { features: { 'soc-id': true }, versions: { smccc: '1.2' } });
    expect(r.get('soc_id_version')).toBe('800000');
    expect(r.get('soc:')).toBe('ID = jep106:0000:0000 Revision = 0x00000000');
  });
});

describe.skipIf(!unicornAvailable())('plugvisor run with a build file naming svc-soc-id', () => {
  const bin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
  const elf = fileURLToPath(new URL('../guests/bin/soc-id.elf', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-soc-id-'));
  const build = join(dir, 'soc.json');
  writeFileSync(
    build,
    JSON.stringify({
      name: 'soc',
      services: ['@plugvisor/svc-smccc-arch', '@plugvisor/svc-psci', { package: '@plugvisor/svc-soc-id', options: { jep106Bank: 4, jep106Id: 59, socId: 4660, revision: 7 } }],
    }),
  );
  const plugvisor = (...args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  it('--feature soc-id=on --version smccc=1.2: the guest finds the SoC', () => {
    const r = plugvisor('run', elf, '--build', build, '--feature', 'soc-id=on', '--version', 'smccc=1.2');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('arch_features_soc_id 0\n');
    expect(r.out).toContain('soc: ID = jep106:043b:1234 Revision = 0x00000007\n');
  });

  it('the same build without the flags: SMCCC 1.1 and nothing found', () => {
    const r = plugvisor('run', elf, '--build', build);
    expect(r.code).toBe(0);
    expect(r.out).toContain('smccc_version 10001\n');
    expect(r.out).toContain('soc: SMCCC below 1.2, SOC_ID not looked for\n');
  });

  it('a snapshot taken before the probe restores onto the same build and finds the SoC; a build without svc-soc-id or with another revision is refused by name', () => {
    const snap = join(dir, 'soc.snap');
    const first = plugvisor('run', elf, '--build', build, '--feature', 'soc-id=on', '--version', 'smccc=1.2', '--snapshot-at', '4', '--snapshot-file', snap);
    expect(first.code).toBe(0);
    expect(first.out).toContain('smccc_version 10002\n');
    expect(first.out).not.toContain('soc:');
    const bare = plugvisor('restore', snap);
    expect(bare.code).toBe(3);
    expect(bare.err).toContain("feature 'soc-id' is enabled in the VM but the build has no @plugvisor/svc-soc-id");
    const other = join(dir, 'soc-rev8.json');
    writeFileSync(other, JSON.stringify({ name: 'soc-rev8', services: ['@plugvisor/svc-smccc-arch', '@plugvisor/svc-psci', { package: '@plugvisor/svc-soc-id', options: { jep106Bank: 4, jep106Id: 59, socId: 4660, revision: 8 } }] }));
    const moved = plugvisor('restore', snap, '--build', other);
    expect(moved.code).toBe(3);
    expect(moved.err).toContain('SMCCC_ARCH_SOC_ID probe [x1=0x1]: x0=0x7 x1=0x0 x2=0x0 x3=0x0 → x0=0x8 x1=0x0 x2=0x0 x3=0x0');
    const same = plugvisor('restore', snap, '--build', build);
    expect(same.code).toBe(0);
    expect(same.out).toContain('soc: ID = jep106:043b:1234 Revision = 0x00000007\n');
  });

  it('refuses a version the selector does not offer, and a bad option, in one line each', () => {
    const v = plugvisor('run', elf, '--build', build, '--version', 'smccc=1.3');
    expect(v.code).not.toBe(0);
    expect(v.err.trim().split('\n')).toHaveLength(1);
    expect(v.err).toMatch(/smccc/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ name: 'bad', services: ['@plugvisor/svc-smccc-arch', { package: '@plugvisor/svc-soc-id', options: { jep106Id: 200 } }] }));
    const o = plugvisor('run', elf, '--build', bad);
    expect(o.code).not.toBe(0);
    expect(o.err).toContain("option 'jep106Id' is 200; it takes an integer in 0..127");
    expect(o.err.trim().split('\n')).toHaveLength(1);
  });
});
