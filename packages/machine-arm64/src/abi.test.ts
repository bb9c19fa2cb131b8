import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalJson, classifyMachineAbiChange, flattenMachineFacts, rolloutVerdicts, type MachineAbi } from '@plugvisor/core';
import { MACHINE_PACKAGE, machineAbi } from './abi.js';

const ABI_JSON = new URL('../abi.json', import.meta.url);

describe('the machine ABI manifest', () => {
  it('the checked-in abi.json is canonicalJson(machineAbi(), 2) + newline', () => {
    const onDisk = existsSync(ABI_JSON) ? readFileSync(ABI_JSON, 'utf8') : '';
    expect(onDisk, "abi.json is stale or missing: run 'pnpm lint --fix' and add a changeset").toBe(canonicalJson(machineAbi(), 2) + '\n');
  });

  it('names this package and is plain JSON data', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; plugvisor?: { machine?: boolean } };
    const abi = machineAbi();
    expect(abi.name).toBe(MACHINE_PACKAGE);
    expect(pkg.name).toBe(MACHINE_PACKAGE);
    expect(pkg.plugvisor?.machine).toBe(true);
    expect(JSON.parse(JSON.stringify(abi))).toEqual(abi);
    expect(JSON.stringify(machineAbi())).toBe(JSON.stringify(abi));
  });

  it('declares the facts the guest depends on, read from the device models', () => {
    const { facts } = flattenMachineFacts(machineAbi().surface);
    const v = (p: string) => facts.get(p)?.value;
    expect(v('gic.architecture')).toBe('GICv2');
    expect(v('gic.distributor.GICD_TYPER.1vcpu')).toBe('0x8');
    expect(v('gic.distributor.GICD_TYPER.2vcpu')).toBe('0x28');
    expect(v('gic.distributor.GICD_IIDR')).toBe('0x43b');
    expect(v('gic.cpuInterface.GICC_IIDR')).toBe('0x202143b');
    expect(v('gic.interrupts.27.trigger')).toBe('level');
    expect(v('gic.interrupts.30.trigger')).toBe('level');
    expect(v('gic.interrupts.31.trigger')).toBe('edge');
    expect(v('gic.interrupts.33.trigger')).toBe('level');
    expect(v('traps.hvc.0x0')).toBe('smccc');
    expect(v('traps.hvc.0xea1.kvm-xen')).toBe('xen');
    expect(v('traps.hvc.0xea1.kvm')).toBe('smccc');
    expect(v('traps.hvc.0xea1.legacy.conduit')).toBe('xen');
    expect(v('traps.hvc.other.kvm')).toBe('smccc');
    expect(v('traps.hvc.other.xen.ESR_EL1')).toBe('0x2000000');
    expect(v('traps.hvc.other.xen.ELR_EL1')).toBe('past the HVC');
    expect(v('traps.hvc.other.legacy.ELR_EL1')).toBe('the HVC instruction');
    expect(facts.get('traps.hvc.other.legacy.ELR_EL1')?.affects).toMatch(/snapshots whose machine description has no hvcImmediates/);
    expect(facts.get('traps.hvc.other.kvm')?.affects).toBe('every VM on this machine');
    expect(v('traps.smc.other.x0')).toBe('0xffffffffffffffff');
    expect(v('cpu.MPIDR_EL1.byVcpu.vcpu16')).toBe('0x80000100');
    expect(v('cpu.idRegisters.sanitised.ID_AA64PFR0_EL1.clears')).toBe('0xf00000000');
    expect(v('deviceTree.nodes./psci.method')).toBe('hvc');
    expect(facts.get('deviceTree.nodes./psci.method')?.affects).toMatch(/Linux Image/);
    expect(facts.get('gic.interrupts.31.trigger')?.affects).toBe('every VM on this machine');
  });

  it('gates a change of this manifest: PPI 31 made level is major for every VM, a PSCI method change only for Linux Image VMs', () => {
    const was = JSON.parse(readFileSync(ABI_JSON, 'utf8')) as MachineAbi;
    const now = JSON.parse(JSON.stringify(machineAbi())) as MachineAbi & { surface: any };
    now.surface.gic.interrupts['31'].trigger = 'level';
    now.surface.gic.distributor.resetState.GICD_ICFGR1 = '0x0';
    now.surface.deviceTree.nodes['/psci'].method = 'smc';
    const r = classifyMachineAbiChange(was, now);
    expect(r.bump).toBe('major');
    expect(r.changes.map((c) => [c.bump, c.message, c.affects])).toEqual([
      ['major', "deviceTree.nodes./psci.method 'hvc' → 'smc'", 'VMs booted from a Linux Image (the device tree is passed in x0)'],
      ['major', 'gic.distributor.resetState.GICD_ICFGR1 0x80000000 → 0x0', 'every VM on this machine'],
      ['major', "gic.interrupts.31.trigger 'edge' → 'level'", 'every VM on this machine'],
    ]);
    expect(rolloutVerdicts(r).upgrade).toContain('every VM on this machine (fact gic.interrupts.31.trigger)');
    expect(classifyMachineAbiChange(was, machineAbi()).bump).toBe('none');
  });
});
