/**
 * KVM's DISCOVER_IMPL_VER / DISCOVER_IMPL_CPUS found the way Linux finds them, by a real guest
 * (guests/src/impl-cpus.c: drivers/firmware/smccc/kvm_guest.c kvm_init_hyp_services, then
 * kvm_arm_target_impl_cpu_init). They are svc-kvm-impl's two opt-in features, bits 0 and 1 of
 * KVM_REG_ARM_VENDOR_HYP_BMAP_2 (0x6030000000160003), which svc-kvm-vendor's KVM_FEATURES reports
 * in x2. A VM without them keeps the 7 firmware registers a build without the package lists.
 */
import { describe, expect, it } from 'vitest';
import { AbiError, Hypervisor, type VmOverrides } from '@plugvisor/core';
import { Arm64Machine } from '@plugvisor/machine-arm64';
import createKvmImplFactory, { createKvmImplService, type KvmImplOptions } from '@plugvisor/svc-kvm-impl';
import { composeBuild, guestImage, MEM_SIZE } from './harness.js';

const BMAP_2 = 0x6030_0000_0016_0003n;
const BOTH: VmOverrides = { features: { 'kvm-discover-impl-ver': true, 'kvm-discover-impl-cpus': true } };
/** Two implementations an operator moves VMs across: Neoverse N1 r3p1 and Neoverse V1 r1p1 (MIDR_EL1 values). */
const LIST = '0x413fd0c1:0x0:0x0,0x411fd401:0x1:0x2';

/** Boots impl-cpus.elf on one vCPU, runs it to power-off and returns what it printed, plus the VM's register list. */
function probe(hv: Hypervisor, overrides: VmOverrides = {}): { lines: string[]; regList: bigint[] } {
  const vm = hv.createVm(overrides);
  const regList = vm.abi.getRegList();
  const out: string[] = [];
  const machine = new Arm64Machine({ vcpus: 1, memSize: MEM_SIZE, console: (b) => out.push(Buffer.from(b).toString('latin1')) });
  try {
    vm.attachMachine(machine);
    machine.attach(vm);
    machine.boot(machine.loadImage(guestImage('impl-cpus')).entry);
    const r = machine.run();
    const text = out.join('');
    if (r.kind !== 'system-event' || r.event.kind !== 'off' || !text.endsWith('done\n')) throw new Error(`impl-cpus guest did not finish (${r.kind}):\n${text}`);
    return { lines: text.split('\n').filter((l) => l !== ''), regList };
  } finally {
    machine.dispose();
  }
}

const withImpl = (options: KvmImplOptions = {}) => composeBuild({ extra: [createKvmImplService(options)], name: 'smccc + kvm-impl' });
const field = (lines: string[], key: string) => lines.find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

describe('DISCOVER_IMPL_VER / DISCOVER_IMPL_CPUS: Linux kvm_arm_target_impl_cpu_init on a real guest', () => {
  it('a build without the package and a VM with the features off: the guest finds nothing, 7 firmware registers', () => {
    const plain = probe(composeBuild());
    const off = probe(withImpl({ implementations: LIST }));
    for (const { lines, regList } of [plain, off]) {
      expect(field(lines, 'uid_ok')).toBe('1');
      expect(field(lines, 'features')).toBe('3 0 0 0'); // FUNC_FEAT and PTP, nothing in x2
      expect(field(lines, 'impl:')).toBe('not available');
      expect(lines.some((l) => l.startsWith('impl_ver'))).toBe(false);
      expect(regList).toHaveLength(7);
      expect(regList).not.toContain(BMAP_2);
    }
    expect(off.regList).toEqual(plain.regList);
  });

  it('both on, the operator’s list: version 1.0, the count, each MIDR/REVIDR/AIDR, INVALID_PARAMETER past the end; BMAP_2 listed', () => {
    const { lines, regList } = probe(withImpl({ implementations: LIST }), BOTH);
    expect(field(lines, 'features')).toBe('3 0 3 0'); // functions 64 and 65 in x2
    expect(field(lines, 'impl_ver')).toBe('0 10000 2 0');
    expect(lines.filter((l) => l.startsWith('impl_cpu '))).toEqual([
      'impl_cpu 0 0 413fd0c1 0 0',
      'impl_cpu 1 0 411fd401 1 2',
      `impl_cpu 2 ${(-3n & ((1n << 64n) - 1n)).toString(16)} 0 0 0`,
    ]);
    expect(field(lines, 'impl:')).toBe('Number of target implementation CPUs is 2');
    expect(regList).toHaveLength(8);
    expect(regList).toContain(BMAP_2);
  });

  it('both on, no list: the machine’s own CPU, as the guest reads MIDR_EL1, REVIDR_EL1 and AIDR_EL1 itself', () => {
    const { lines } = probe(withImpl(), BOTH);
    expect(field(lines, 'impl_ver')).toBe('0 10000 1 0');
    const [midr, revidr, aidr] = field(lines, 'own')!.split(' ');
    expect(BigInt(`0x${midr}`)).not.toBe(0n); // a real MIDR: implementer and part number
    expect(lines.filter((l) => l.startsWith('impl_cpu '))[0]).toBe(`impl_cpu 0 0 ${midr} ${revidr} ${aidr}`);
    expect(field(lines, 'impl:')).toBe('Number of target implementation CPUs is 1');
  });

  it('only one of the two on: Linux needs both, so it finds nothing (and KVM_FEATURES says which)', () => {
    const { lines, regList } = probe(withImpl({ implementations: LIST }), { features: { 'kvm-discover-impl-ver': true } });
    expect(field(lines, 'features')).toBe('3 0 1 0');
    expect(field(lines, 'impl:')).toBe('not available');
    expect(regList).toContain(BMAP_2);
  });

  it('BMAP_2 by ONE_REG: reset 0, bits 0 and 1 writable (turning the features on), others EINVAL, frozen after the run', () => {
    const vm = withImpl({ implementations: LIST }).createVm();
    expect(vm.abi.getOneReg(BMAP_2)).toBe(0n);
    const errno = (f: () => void) => {
      try {
        f();
        return 'ok';
      } catch (e) {
        if (e instanceof AbiError) return e.errnoName;
        throw e;
      }
    };
    expect(errno(() => vm.abi.setOneReg(BMAP_2, 0x4n))).toBe('EINVAL');
    expect(vm.abi.getRegList()).not.toContain(BMAP_2);
    vm.abi.setOneReg(BMAP_2, 0x3n);
    expect(vm.abi.isEnabled('kvm-discover-impl-ver') && vm.abi.isEnabled('kvm-discover-impl-cpus')).toBe(true);
    expect(vm.abi.getRegList()).toContain(BMAP_2);
    expect(vm.record().registers['0x6030000000160003']).toBe('0x3');
    vm.abi.freeze();
    expect(errno(() => vm.abi.setOneReg(BMAP_2, 0x1n))).toBe('EBUSY');
    expect(errno(() => vm.abi.setOneReg(BMAP_2, 0x3n))).toBe('ok');
    // a build without the package: ENOENT, as before
    expect(errno(() => composeBuild().createVm().abi.getOneReg(BMAP_2))).toBe('ENOENT');
  });

  it('a count of 0 is refused when the build is made, with one line naming the option', () => {
    expect(() => createKvmImplFactory({ implementations: '' })).toThrow(/implementations: at least one CPU implementation is needed/);
    expect(() => createKvmImplFactory({ implementations: '0x413fd0c1:0' })).toThrow(/entry 0 '0x413fd0c1:0' is not midr:revidr:aidr/);
    expect(() => createKvmImplService({ implementations: [] })).toThrow(/at least one/);
  });
});
