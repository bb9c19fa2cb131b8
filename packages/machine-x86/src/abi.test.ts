import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalJson, flattenMachineFacts } from '@plugvisor/core';
import { MACHINE_PACKAGE, machineAbi } from './abi.js';

const ABI_JSON = new URL('../abi.json', import.meta.url);

describe('the machine ABI manifest', () => {
  it('the checked-in abi.json is canonicalJson(machineAbi(), 2) + newline', () => {
    const onDisk = existsSync(ABI_JSON) ? readFileSync(ABI_JSON, 'utf8') : '';
    expect(onDisk, "abi.json is stale or missing: run 'pnpm lint --fix' and add a changeset").toBe(canonicalJson(machineAbi(), 2) + '\n');
  });

  it('names this package, which declares itself a machine, and is plain JSON data', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; plugvisor?: { machine?: boolean } };
    const abi = machineAbi();
    expect(abi.name).toBe(MACHINE_PACKAGE);
    expect(pkg.name).toBe(MACHINE_PACKAGE);
    expect(pkg.plugvisor?.machine).toBe(true);
    expect(JSON.parse(JSON.stringify(abi))).toEqual(abi);
  });

  it('declares the conduit, the ports and the CPUID rules, read from the code', () => {
    const { facts } = flattenMachineFacts(machineAbi().surface);
    const v = (p: string) => facts.get(p)?.value;
    expect(v('ports.hypercall.port')).toBe('0x600');
    expect(v('ports.hypercall.conduit')).toBe('x86-port');
    expect(v('ports.hypercall.notSupported')).toBe('0xffffffffffffffda');
    expect(v('ports.exit.events.0x0')).toBe('off');
    expect(v('ports.exit.events.0x1')).toBe('reset');
    expect(v('ports.exit.events.0x2')).toBe('crash');
    expect(v('ports.com1.LSR')).toBe('0x60');
    expect(v('ports.com1.IIR')).toBe('0xc1');
    expect(v('ports.unclaimed.read')).toBe('0x0');
    expect(v('entry.cr0')).toBe('0x80050033');
    expect(v('entry.efer')).toBe('0x500');
    // AVX (leaf 1 ECX bit 28), FMA 12, F16C 29 and AVX2 (leaf 7 EBX bit 5) need YMM; PKU/OSPKE need PKRU
    expect(v('cpuid.clearedWithoutComponent.YMM["0x1.0 ecx"]')).toBe('0x30001000');
    expect(v('cpuid.clearedWithoutComponent.PKRU["0x7.0 ecx"]')).toBe('0x18');
    expect(v('cpuid.leavesDropped.always')).toEqual(['0x40000000.0', '0x40000001.0', '0x4fffffff.0']);
    expect(v('cpuid.leavesDropped.withoutXTILE')).toEqual(['0x1d.0', '0x1e.0']);
    expect(v('cpuid.apicIdIn["0x1.0 ebx"]')).toBe('0xff000000');
  });
});
