import { describe, expect, it } from 'vitest';
import { boot, MEM_SIZE, runGuest, xenBuild } from './harness.js';

// guests/src/badinput.c
const TAG = { FAIL: 0xdead, CASE: 1, BEGIN: 2, END: 3, RANGE: 4 };
const E = { ENOENT: 2, ESRCH: 3, ENXIO: 6, EACCES: 13, EFAULT: 14, EBUSY: 16, EINVAL: 22, ENOSYS: 38, EOPNOTSUPP: 95 };

/** id → [what, Xen's answer]. */
const CASES: Record<number, [string, number]> = {
  1: ['add_to_physmap: gfn not RAM', -E.EINVAL],
  2: ['add_to_physmap: first frame past RAM', -E.EINVAL],
  3: ['add_to_physmap: argument not in RAM', -E.EFAULT],
  4: ['add_to_physmap: argument straddles the end of RAM', -E.EFAULT],
  5: ['add_to_physmap: idx != 0', -E.EINVAL],
  6: ['add_to_physmap: another map space', -E.ENOSYS],
  7: ['add_to_physmap: unknown domain', -E.ESRCH],
  8: ['add_to_physmap: argument in the GIC (MMIO)', -E.EFAULT],
  9: ['memory_op: another sub-op', -E.ENOSYS],
  20: ['register_vcpu_info: vCPU 7', -E.ENOENT],
  21: ['register_vcpu_info: vCPU 0xffffffff', -E.ENOENT],
  22: ['register_vcpu_info: frame not RAM', -E.EINVAL],
  23: ['register_vcpu_info: crosses the page', -E.ENXIO],
  24: ['register_vcpu_info: offset not 8-aligned', -E.ENXIO],
  25: ['register_vcpu_info: argument at 0x8', -E.EFAULT],
  26: ['register_vcpu_info: mfn beyond any RAM', -E.EINVAL],
  27: ['vcpu_op: another cmd (Arm)', -E.EINVAL],
  40: ['send: argument at 0', -E.EFAULT],
  41: ['send: argument straddles the end of RAM', -E.EFAULT],
  42: ['send: argument in the UART (MMIO)', -E.EFAULT],
  43: ['send: port 0 (reserved)', -E.EINVAL],
  44: ['send: port 5000', -E.EINVAL],
  45: ['send: port 0xffffffff', -E.EINVAL],
  46: ['close: port 0', -E.EINVAL],
  47: ['close: free port 63', -E.EINVAL],
  48: ['unmask: free but valid port 63', 0],
  49: ['unmask: port 64 (no bucket)', -E.EINVAL],
  50: ['bind_ipi: vCPU 1 of 1', -E.ENOENT],
  51: ['bind_virq: virq 24', -E.EINVAL],
  52: ['bind_virq: TIMER on vCPU 3', -E.ENOENT],
  53: ['bind_interdomain: unknown domain', -E.ESRCH],
  54: ['bind_interdomain: self, remote port not unbound', -E.EINVAL],
  55: ['alloc_unbound: unknown domain', -E.ESRCH],
  56: ['status: unknown domain', -E.ESRCH],
  57: ['status: port 5000', -E.EINVAL],
  58: ['bind_vcpu: vCPU 2', -E.ENOENT],
  59: ['event_channel_op: cmd 99', -E.ENOSYS],
  60: ['reset_cont with no reset in progress', -E.EBUSY],
  61: ['x16 with high bits set', -E.ENOSYS],
  62: ['hypercall 99', -E.ENOSYS],
  80: ['init_control: vCPU 3', -E.ENOENT],
  81: ['init_control: offset 4025', -E.EINVAL],
  82: ['init_control: offset 4', -E.EINVAL],
  83: ['init_control: gfn not RAM', -E.EINVAL],
  84: ['init_control: gfn (u64)-2 (XSA-188)', -E.EINVAL],
  85: ['expand_array after failed inits (XSA-188)', -E.EOPNOTSUPP],
  86: ['init_control: argument straddles the end of RAM', -E.EFAULT],
  87: ['set_priority while 2-level', -E.ENOSYS],
  100: ['init_control: vCPU already has a block', -E.EINVAL],
  101: ['expand_array: gfn not RAM', -E.EINVAL],
  102: ['expand_array: first frame past RAM', -E.EINVAL],
  103: ['set_priority: port 5000', -E.EINVAL],
  104: ['set_priority: free port', -E.EACCES],
  105: ['set_priority: argument straddles the end of RAM', -E.EFAULT],
  106: ['expand_array: argument in the GIC (MMIO)', -E.EFAULT],
  107: ['set_priority: priority 16', -E.EINVAL],
  108: ['send: port 5000 under FIFO', -E.EINVAL],
};

describe('bad guest input from real guest code (FIFO domain)', () => {
  it("gets Xen's errno for every case, no host exception, and RAM outside the guest's own data unchanged", () => {
    const run = boot(xenBuild({ fifo: true }), 'badinput', { features: { 'evtchn-fifo': true } });
    const { m, t } = run;
    const ram = m.memory.regions()[0]!.bytes;
    ram.fill(0xa5, MEM_SIZE - 0x10000); // a canary at the end of RAM, where the bad pointers aim
    let range: [number, number] = [0, 0];
    let snap: Uint8Array | undefined;
    let windows = 0;
    const stray: string[] = [];
    t.onSync = (tag) => {
      if (tag === TAG.BEGIN) {
        // the RANGE report came first: the guest's bss and stacks, as RAM offsets
        const rr = t.tagged(TAG.RANGE)[0]!;
        range = [Number(rr.a) - 0x4000_0000, Number(rr.b) - 0x4000_0000];
        snap = Uint8Array.from(ram);
      }
      if (tag === TAG.END) {
        windows++;
        for (let i = 0; i < ram.length; i++) {
          if (ram[i] === snap![i] || (i >= range[0] && i < range[1])) continue;
          if (stray.length < 5) stray.push(`0x${(0x4000_0000 + i).toString(16)}: ${snap![i]} -> ${ram[i]}`);
        }
      }
      return 0;
    };
    const r = runGuest(m, () => {});
    expect(range[1] - range[0]).toBeGreaterThan(0x10000); // bss + 4 stacks of 16 KiB, nothing more
    expect(range[1] - range[0]).toBeLessThan(0x20000);
    expect(t.tagged(TAG.FAIL), run.console()).toEqual([]);
    expect(r).toMatchObject({ kind: 'system-event', event: { kind: 'off' } });
    expect(run.console()).toBe('badinput: done\n');
    const got = Object.fromEntries(t.tagged(TAG.CASE).map((c) => [Number(c.a), Number(BigInt.asIntN(64, c.b))]));
    const want = Object.fromEntries(Object.entries(CASES).map(([id, [, rc]]) => [id, rc]));
    const named = (o: Record<string, number>) => Object.entries(o).map(([id, rc]) => `${id} ${CASES[Number(id)]?.[0] ?? '?'}: ${rc}`);
    expect(named(got)).toEqual(named(want));
    expect(windows).toBe(2); // before and after a successful init_control
    expect(stray).toEqual([]);
    expect(ram.subarray(MEM_SIZE - 0x10000).every((b) => b === 0xa5)).toBe(true);
    m.dispose();
  });
});
