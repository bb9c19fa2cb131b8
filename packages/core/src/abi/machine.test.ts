import { describe, expect, it } from 'vitest';
import { classifyMachineAbiChange, flattenMachineFacts, type MachineAbi } from './machine.js';
import { rolloutVerdicts } from './versioning.js';

type Mutable = { name: string; description?: string; surface: Record<string, any> };
const base = (): Mutable => ({
  name: '@plugvisor/machine-test',
  description: 'a test board',
  surface: {
    memory: { ram: { base: '0x40000000' }, uart: { base: '0x9000000', size: '0x1000' } },
    gic: {
      description: 'a GICv2',
      distributor: { GICD_IIDR: '0x43b', spis: 256 },
      interrupts: { '27': { trigger: 'level' }, '31': { trigger: 'edge' } },
    },
    deviceTree: {
      affects: 'VMs booted from a Linux Image',
      psci: { compatible: ['arm,psci-1.0', 'arm,psci-0.2'], method: 'hvc' },
    },
  },
});
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe('flattenMachineFacts', () => {
  it('flattens groups to paths, keeps arrays whole, inherits affects, keeps documentation apart', () => {
    const { facts, docs } = flattenMachineFacts(base().surface);
    expect([...facts.keys()]).toEqual([
      'deviceTree.psci.compatible',
      'deviceTree.psci.method',
      'gic.distributor.GICD_IIDR',
      'gic.distributor.spis',
      'gic.interrupts.27.trigger',
      'gic.interrupts.31.trigger',
      'memory.ram.base',
      'memory.uart.base',
      'memory.uart.size',
    ]);
    expect(facts.get('deviceTree.psci.method')).toEqual({ value: 'hvc', affects: 'VMs booted from a Linux Image' });
    expect(facts.get('gic.distributor.spis')).toEqual({ value: 256, affects: 'every VM on this machine' });
    expect(docs.get('gic.description')).toBe('a GICv2');
    expect(docs.get('deviceTree.affects')).toBe('VMs booted from a Linux Image');
  });

  it('quotes a key that is not a plain word', () => {
    const { facts } = flattenMachineFacts({ regs: { 'SVE [35:32]': 0, 'a.b': 1 } });
    expect([...facts.keys()]).toEqual(['regs["SVE [35:32]"]', 'regs["a.b"]']);
  });
});

describe('classifyMachineAbiChange', () => {
  it('identical manifests (and ledger fields version/waivers) are no change', () => {
    const r = classifyMachineAbiChange({ ...base(), version: '1.0.0' } as MachineAbi, { ...base(), version: '1.1.0', waivers: {} } as MachineAbi);
    expect(r).toEqual({ bump: 'none', reasons: [], changes: [] });
  });

  it('a changed fact is major, naming the path and old → new in hex, affecting every VM', () => {
    const n = clone(base());
    n.surface.gic.distributor.spis = 224;
    const r = classifyMachineAbiChange(base(), n);
    expect(r.bump).toBe('major');
    expect(r.changes).toEqual([
      { bump: 'major', kind: 'changed', subject: 'fact gic.distributor.spis', message: 'gic.distributor.spis 0x100 → 0xe0', affects: 'every VM on this machine' },
    ]);
    expect(r.reasons).toEqual(['major: gic.distributor.spis 0x100 → 0xe0']);
  });

  it('a trigger mode flipped (PPI 31 made level) is major', () => {
    const n = clone(base());
    n.surface.gic.interrupts['31'].trigger = 'level';
    const r = classifyMachineAbiChange(base(), n);
    expect(r.reasons).toEqual(["major: gic.interrupts.31.trigger 'edge' → 'level'"]);
  });

  it('a removed fact is major and names the VMs its group declares', () => {
    const n = clone(base());
    delete n.surface.deviceTree.psci.method;
    const r = classifyMachineAbiChange(base(), n);
    expect(r.changes).toEqual([
      { bump: 'major', kind: 'removed', subject: 'fact deviceTree.psci.method', message: "deviceTree.psci.method removed (was 'hvc')", affects: 'VMs booted from a Linux Image' },
    ]);
  });

  it('an array fact is compared whole: a compatible string appended is a change', () => {
    const n = clone(base());
    n.surface.deviceTree.psci.compatible = ['arm,psci-1.0', 'arm,psci-0.2', 'arm,psci'];
    const r = classifyMachineAbiChange(base(), n);
    expect(r.bump).toBe('major');
    expect(r.changes[0]!.message).toBe('deviceTree.psci.compatible ["arm,psci-1.0","arm,psci-0.2"] → ["arm,psci-1.0","arm,psci-0.2","arm,psci"]');
  });

  it('an added fact is minor; the rollback verdict refuses the VMs it concerns', () => {
    const n = clone(base());
    n.surface.memory.rtc = { base: '0x9010000' };
    const r = classifyMachineAbiChange(base(), n);
    expect(r.bump).toBe('minor');
    expect(r.changes).toEqual([{ bump: 'minor', kind: 'added', subject: 'fact memory.rtc.base', message: 'new fact memory.rtc.base = 0x9010000', affects: 'every VM on this machine' }]);
    const v = rolloutVerdicts(r);
    expect(v.upgrade).toBe('every VM of the previous release restores');
    expect(v.rollback).toContain('every VM on this machine (fact memory.rtc.base)');
  });

  it('description, affects text and the name alone are patches', () => {
    const n = clone(base());
    n.description = 'the test board';
    n.surface.gic.description = 'a GICv2 (IHI 0048B)';
    n.surface.deviceTree.affects = 'VMs given a device tree';
    n.name = '@plugvisor/machine-test2';
    const r = classifyMachineAbiChange(base(), n);
    expect(r.bump).toBe('patch');
    expect(r.reasons).toEqual([
      'patch: deviceTree.affects changed',
      'patch: gic.description changed',
      'patch: machine description changed',
      "patch: machine name '@plugvisor/machine-test' → '@plugvisor/machine-test2'",
    ]);
  });

  it('a waiver on a path or a group above it makes a change a patch carrying the reason', () => {
    const n = clone(base());
    n.surface.gic.interrupts['31'].trigger = 'level';
    n.surface.memory.uart.size = '0x2000';
    const r = classifyMachineAbiChange(base(), n, { waivers: new Map([['gic.interrupts', 'Xen raises it as a level']]) });
    expect(r.bump).toBe('major');
    expect(r.changes.map((c) => [c.bump, c.subject, c.waiver])).toEqual([
      ['patch', 'fact gic.interrupts.31.trigger', 'Xen raises it as a level'],
      ['major', 'fact memory.uart.size', undefined],
    ]);
    // a waiver for a sibling path does not cover
    const s = classifyMachineAbiChange(base(), n, { waivers: new Map([['gic.interrupt', 'x'], ['memory.uart.size', 'the PL011 frame is 4 KiB']]) });
    expect(s.changes.map((c) => c.bump)).toEqual(['major', 'patch']);
  });

  it('a fact split into a group is the old fact removed (major) and new facts (minor)', () => {
    const n = clone(base());
    n.surface.memory.ram.base = { address: '0x40000000', alignment: '0x200000' };
    const r = classifyMachineAbiChange(base(), n);
    expect(r.changes.map((c) => `${c.bump} ${c.subject}`)).toEqual(['major fact memory.ram.base', 'minor fact memory.ram.base.address', 'minor fact memory.ram.base.alignment']);
  });
});
