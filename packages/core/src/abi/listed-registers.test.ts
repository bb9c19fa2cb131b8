import { describe, expect, it } from 'vitest';
import { checkRecord, defineService, Hypervisor, smcccReturn, type FeatureDecl, type ServicePlugin } from '../index.js';

/**
 * A bitmap firmware register whose bits are all declared `listed: 'when-set'` is enumerated
 * (getRegList, KVM_GET_REG_LIST's firmware block) and recorded only while it reads non-zero, so
 * adding such a register to a build leaves the register list of every VM that did not turn it on
 * as it was. Linux 6.16 listed KVM_REG_ARM_VENDOR_HYP_BMAP_2 for every VM, and QEMU, which
 * migrates what the list names, could no longer move those VMs to an older kernel.
 */
/** Distinct call ids per stand-in service. */
const BIT_BASE: Record<string, number> = { '@t/base': 0, '@t/added': 0x10, '@t/mixed': 0x20 };
const OLD = 0x6030_0000_0016_0002n;
const NEW = 0x6030_0000_0016_0003n;

function service(name: string, features: Array<{ f: string; id: bigint; bit: number; listed?: 'always' | 'when-set'; dflt?: 'opt-in' | 'legacy-opt-out' }>): ServicePlugin<undefined> {
  return defineService<undefined>({
    name,
    version: '1.0.0',
    surface: {
      features: features.map(({ f, id, bit, listed, dflt }): FeatureDecl => ({
        name: f,
        default: dflt ?? 'opt-in',
        description: f,
        ...(dflt === 'legacy-opt-out' ? { legacy: 'test' } : {}),
        register: { id, name: id === OLD ? 'OLD_BMAP' : 'NEW_BMAP', bit, ...(listed ? { listed } : {}) },
      })),
      calls: features.map(({ f }, i) => ({ name: `CALL_${f}`, conduit: 'smccc', id: 0xc600_0100 + i + BIT_BASE[name]!, feature: f })),
    },
    handlers: Object.fromEntries(features.map(({ f }) => [`CALL_${f}`, (v: { regs: Parameters<typeof smcccReturn>[0] }) => smcccReturn(v.regs, 0)])),
  });
}

const base = () => service('@t/base', [{ f: 'old', id: OLD, bit: 0, dflt: 'legacy-opt-out' }]);
const added = (listed: 'always' | 'when-set' = 'when-set') =>
  service('@t/added', [
    { f: 'new-a', id: NEW, bit: 0, listed },
    { f: 'new-b', id: NEW, bit: 1, listed },
  ]);

describe("firmware registers listed 'when-set'", () => {
  it('a VM with the features off lists and records what a build without them does; on, the register is there', () => {
    const without = Hypervisor.compose([base()], { name: 'without' });
    const withNew = Hypervisor.compose([base(), added()], { name: 'with' });
    const off = withNew.createVm();
    expect(off.abi.getRegList()).toEqual(without.createVm().abi.getRegList());
    expect(off.abi.registerValues()).toEqual([[OLD, 1n]]);
    expect(Object.keys(off.record().registers)).toEqual(['0x6030000000160002']);
    // still readable and writable by id: how a VMM turns a feature on
    expect(off.abi.getOneReg(NEW)).toBe(0n);
    off.abi.setOneReg(NEW, 2n);
    expect(off.abi.getRegList()).toEqual([OLD, NEW]);
    expect(off.record().registers['0x6030000000160003']).toBe('0x2');
    off.abi.setOneReg(NEW, 0n);
    expect(off.abi.getRegList()).toEqual([OLD]);
  });

  it('a VM that has them off moves to a build without the package; one that has one on does not', () => {
    const without = Hypervisor.compose([base()], { name: 'without' });
    const withNew = Hypervisor.compose([base(), added()], { name: 'with' });
    expect(checkRecord(withNew.createVm().record(), without.catalog)).toEqual([]);
    const problems = checkRecord(withNew.createVm({ features: { 'new-b': true } }).record(), without.catalog);
    expect(problems.join('\n')).toMatch(/new-b/);
  });

  it("'always' (the default), or any bit of the register declared so, keeps it listed for every VM", () => {
    expect(Hypervisor.compose([base(), added('always')], { name: 'a' }).createVm().abi.getRegList()).toEqual([OLD, NEW]);
    const mixed = service('@t/mixed', [{ f: 'new-c', id: NEW, bit: 2 }]);
    expect(Hypervisor.compose([base(), added(), mixed], { name: 'm' }).createVm().abi.getRegList()).toEqual([OLD, NEW]);
  });
});
