import { describe, expect, it } from 'vitest';
import { StateError } from '@plugvisor/core';
import { checkPersistence } from '@plugvisor/core/testing';
import { GicCpuInterface, SPURIOUS_INTID } from './gicc.js';
import { GicDistributor, validateGicdState } from './gicd.js';

// GICD (IHI 0048B table 4-1) and GICC (table 4-2) offsets
const CTLR = 0x000, TYPER = 0x004, IIDR = 0x008, ISENABLER = 0x100, ICENABLER = 0x180, ISPENDR = 0x200, ICPENDR = 0x280;
const ISACTIVER = 0x300, ICACTIVER = 0x380, IPRIORITYR = 0x400, ITARGETSR = 0x800, ICFGR = 0xc00, SGIR = 0xf00;
const CPENDSGIR = 0xf10, SPENDSGIR = 0xf20;
const C_CTLR = 0x00, PMR = 0x04, BPR = 0x08, IAR = 0x0c, EOIR = 0x10, RPR = 0x14, HPPIR = 0x18, AIAR = 0x20, APR0 = 0xd0, C_IIDR = 0xfc, DIR = 0x1000;

function gic(n: number) {
  const cpus = Array.from({ length: n }, () => new GicCpuInterface());
  const signals: number[] = [];
  const d = new GicDistributor(cpus, (i) => signals.push(i));
  const rd = (vcpu: number, off: number, size = 4) => d.read(vcpu, off, size);
  const wr = (vcpu: number, off: number, value: number, size = 4) => d.write(vcpu, off, size, value);
  return { cpus, d, signals, rd, wr };
}

/** What Linux 6.12's drivers/irqchip/irq-gic.c does at boot: gic_dist_init on CPU 0, gic_cpu_init on each CPU. */
function linuxInit(g: ReturnType<typeof gic>) {
  const { rd, wr, cpus } = g;
  const lines = ((rd(0, TYPER) & 0x1f) + 1) * 32;
  wr(0, CTLR, 0);
  let mask = 0;
  for (let i = 0; i < 32 && !mask; i += 4) {
    mask = rd(0, ITARGETSR + i);
    mask |= mask >>> 16;
    mask |= mask >>> 8;
    mask &= 0xff;
  }
  const x4 = (mask | (mask << 8) | (mask << 16) | (mask << 24)) >>> 0;
  for (let i = 32; i < lines; i += 4) wr(0, ITARGETSR + i, x4);
  for (let i = 32; i < lines; i += 16) wr(0, ICFGR + i / 4, 0); // level
  for (let i = 32; i < lines; i += 4) wr(0, IPRIORITYR + i, 0xa0a0a0a0);
  for (let i = 32; i < lines; i += 32) {
    wr(0, ICACTIVER + i / 8, 0xffffffff);
    wr(0, ICENABLER + i / 8, 0xffffffff);
  }
  wr(0, CTLR, 1);
  cpus.forEach((c, cpu) => {
    // gic_cpu_config: SGIs/PPIs deactivated, PPIs disabled, SGIs enabled, priorities 0xa0
    wr(cpu, ICACTIVER, 0xffffffff);
    wr(cpu, ICENABLER, 0xffff0000);
    wr(cpu, ISENABLER, 0x0000ffff);
    for (let i = 0; i < 32; i += 4) wr(cpu, IPRIORITYR + i, 0xa0a0a0a0);
    c.write(PMR, 0xf0);
    expect(c.read(C_IIDR) & 0xff0fff).toBe(0x02043b); // gic_check_gicv2
    for (let i = 0; i < 4; i++) c.write(APR0 + 4 * i, 0);
    c.write(C_CTLR, (c.read(C_CTLR) & 0x1e0) | 1);
  });
}

describe('GICv2 distributor: identification', () => {
  it('TYPER, IIDR and the GIC-400 ID registers, as QEMU virt gives them', () => {
    expect(gic(1).rd(0, TYPER)).toBe(0x08); // 288 INTIDs, 1 CPU
    const { rd } = gic(2);
    expect(rd(1, TYPER)).toBe(0x28);
    expect(rd(0, IIDR)).toBe(0x43b);
    expect([0xfe0, 0xfe4, 0xfe8, 0xfec, 0xfd0].map((o) => rd(0, o))).toEqual([0x90, 0xb4, 0x2b, 0x00, 0x04]);
    expect([0xff0, 0xff4, 0xff8, 0xffc].map((o) => rd(0, o))).toEqual([0x0d, 0xf0, 0x05, 0xb1]);
    expect(rd(0, 0x80)).toBe(0); // IGROUPR RAZ
    expect(rd(0, 0x1000)).toBe(0);
  });

  it('ITARGETSR0..7 read the accessing CPU\'s own bit in every byte and ignore writes', () => {
    const { rd, wr } = gic(2);
    expect(rd(0, ITARGETSR)).toBe(0x01010101);
    expect(rd(1, ITARGETSR + 28)).toBe(0x02020202);
    expect(rd(1, ITARGETSR + 31, 1)).toBe(0x02);
    wr(1, ITARGETSR, 0x03030303);
    expect(rd(1, ITARGETSR)).toBe(0x02020202);
  });
});

describe('GICv2 distributor: guest input never throws', () => {
  it('20 000 random accesses of every size at every offset from every vCPU; state still saves and restores', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const g = gic(3);
    for (let i = 0; i < 20_000; i++) {
      const cpu = rnd(4) - (rnd(50) === 0 ? 1 : 0); // now and then a vCPU that does not exist
      const off = rnd(8) === 0 ? rnd(0x11000) : rnd(0x1000);
      const size = [1, 2, 4, 8, 3][rnd(5)]!;
      const value = (rnd(0x10000) << 16) | rnd(0x10000);
      if (rnd(2)) g.wr(cpu, off, value, size);
      else expect(Number.isInteger(g.rd(cpu, off, size))).toBe(true);
      if (rnd(10) === 0) g.d.setSpi(32 + rnd(256), rnd(2) === 0);
      if (rnd(10) === 0) g.cpus[rnd(3)]!.read(0x0c);
      if (rnd(10) === 0) g.cpus[rnd(3)]!.write(0x10, rnd(1024));
    }
    const h = gic(3);
    h.d.restore(JSON.parse(JSON.stringify(g.d.save())));
    g.cpus.forEach((c, i) => h.cpus[i]!.restore(JSON.parse(JSON.stringify(c.save()))));
    expect(h.d.save()).toEqual(g.d.save());
    expect(h.cpus.map((c) => c.save())).toEqual(g.cpus.map((c) => c.save()));
    expect(h.cpus.map((c) => c.irqAsserted)).toEqual(g.cpus.map((c) => c.irqAsserted));
  });

  it('serves 1..8 CPU interfaces', () => {
    expect(() => new GicDistributor([], () => {})).toThrow(RangeError);
    expect(() => new GicDistributor(Array.from({ length: 9 }, () => new GicCpuInterface()), () => {})).toThrow(RangeError);
    expect(gic(8).rd(7, TYPER)).toBe(0xe8);
  });
});

describe('GICv2 distributor: compatibility with guests that never program it', () => {
  it('at reset every INTID is enabled and priority 0: the lowest pending INTID is taken, one at a time', () => {
    const { cpus, rd } = gic(1);
    const c = cpus[0]!;
    expect(rd(0, CTLR)).toBe(1);
    expect(rd(0, ISENABLER)).toBe(0xffffffff);
    expect(rd(0, ISENABLER + 4)).toBe(0xffffffff);
    c.setLine(40, true);
    c.setLine(27, true);
    expect(c.irqAsserted).toBe(true); // PMR 0 and CTLR 0 never written: not applied
    expect(c.read(IAR)).toBe(27);
    expect(c.irqAsserted).toBe(false); // nothing preempts priority 0
    expect(c.read(IAR)).toBe(SPURIOUS_INTID);
    c.setLine(27, false);
    c.write(EOIR, 27);
    expect(c.read(IAR)).toBe(40);
  });

  it('the first write to GICC_PMR or GICC_CTLR makes both apply', () => {
    const { cpus } = gic(1);
    const c = cpus[0]!;
    c.setLine(27, true);
    c.write(PMR, 0xff);
    expect(c.irqAsserted).toBe(false); // CTLR.EnableGrp0 is 0
    c.write(C_CTLR, 1);
    expect(c.irqAsserted).toBe(true);
    c.write(PMR, 0);
    expect(c.irqAsserted).toBe(false); // priority 0 is not below PMR 0
    expect(c.read(IAR)).toBe(SPURIOUS_INTID);
  });

  it('a saved state from before the distributor restores to the old behaviour: an active INTID blocks all', () => {
    const c = new GicCpuInterface();
    c.restore({ ctlr: 1, pmr: 0xf0, lines: [[40, 1 | 4], [41, 1 | 2]] });
    expect(c.irqAsserted).toBe(false); // 40 active: nothing else is taken
    expect(c.read(RPR)).toBe(0);
    c.write(EOIR, 40);
    expect(c.read(IAR)).toBe(40); // its line is still high: pending again, and the lowest
    expect(c.save()).toEqual({ ctlr: 1, pmr: 0xf0, lines: [[40, 1 | 4], [41, 1 | 2]], edge: [31] });
  });
});

describe('GICv2 distributor: enables, priorities, masking', () => {
  it('ICENABLER/ISENABLER gate PPIs per CPU and SPIs globally; GICD_CTLR gates all; SGIs stay enabled', () => {
    const { cpus, rd, wr, signals } = gic(2);
    const c = cpus[1]!;
    wr(1, ICENABLER, 1 << 27);
    expect(rd(1, ISENABLER) >>> 27 & 1).toBe(0);
    expect(rd(0, ISENABLER) >>> 27 & 1).toBe(1); // banked
    c.setLine(27, true);
    expect(c.irqAsserted).toBe(false);
    expect(rd(1, ISPENDR) >>> 27 & 1).toBe(1); // pending while disabled
    wr(1, ISENABLER, 1 << 27);
    expect(c.irqAsserted).toBe(true);
    expect(signals).toEqual([1]);
    wr(0, CTLR, 0);
    expect(c.irqAsserted).toBe(false);
    expect(signals).toEqual([1, 1]);
    wr(0, CTLR, 1);
    wr(0, ICENABLER, 0xffff);
    expect(rd(0, ISENABLER) & 0xffff).toBe(0xffff);
  });

  it('the highest priority wins over the lowest INTID; PMR masks by priority; byte and word IPRIORITYR', () => {
    const { cpus, rd, wr } = gic(1);
    const c = cpus[0]!;
    wr(0, IPRIORITYR + 24, 0xa0a0a0a0);
    wr(0, IPRIORITYR + 40, 0x80, 1);
    expect(rd(0, IPRIORITYR + 40, 1)).toBe(0x80);
    expect(rd(0, IPRIORITYR + 40)).toBe(0x80);
    expect(rd(0, IPRIORITYR + 24)).toBe(0xa0a0a0a0);
    c.write(PMR, 0x90);
    c.write(C_CTLR, 1);
    c.setLine(27, true);
    expect(c.irqAsserted).toBe(false); // 0xa0 is not below 0x90
    c.setLine(40, true);
    expect(c.read(HPPIR)).toBe(40);
    c.write(PMR, 0xf0);
    expect(c.read(IAR)).toBe(40); // 0x80 beats 0xa0 although 27 < 40
    expect(c.read(RPR)).toBe(0x80);
    // preemption level 0x80 >> 1 = 64: bit 0 of APR2
    expect(c.read(APR0 + 8)).toBe(1);
    expect(c.read(APR0)).toBe(0);
    c.setLine(40, false);
    c.write(EOIR, 40);
    expect(c.read(RPR)).toBe(0xff);
    expect(c.read(IAR)).toBe(27);
  });

  it('preemption: a higher group priority is signalled while another is active; BPR widens the groups', () => {
    const { cpus, wr } = gic(1);
    const c = cpus[0]!;
    wr(0, IPRIORITYR + 40, 0x00a08000); // 40: 0x00, 41: 0x80, 42: 0xa0
    c.write(PMR, 0xff);
    c.write(C_CTLR, 1);
    c.setLine(42, true);
    expect(c.read(IAR)).toBe(42);
    c.setLine(41, true);
    expect(c.irqAsserted).toBe(true); // 0x80 preempts 0xa0
    expect(c.read(IAR)).toBe(41);
    expect(c.read(RPR)).toBe(0x80);
    c.write(EOIR, 41);
    c.write(EOIR, 42);
    expect(c.read(RPR)).toBe(0xff);
    c.setLine(41, false);
    c.write(BPR, 6); // group priority = bit 7 only: 0x80 and 0xa0 are one group
    expect(c.read(BPR)).toBe(6);
    expect(c.read(IAR)).toBe(42);
    expect(c.read(RPR)).toBe(0x80);
    c.setLine(41, true);
    expect(c.irqAsserted).toBe(false); // same group priority: no preemption
    c.setLine(40, true);
    expect(c.read(IAR)).toBe(40); // group 0x00 preempts
    c.write(EOIR, 40);
    c.write(EOIR, 42);
    expect(c.read(AIAR)).toBe(SPURIOUS_INTID); // no Group 1 interrupts
  });
});

describe('GICv2 distributor: SPI routing and trigger modes', () => {
  it('ITARGETSR routes an SPI to vCPU 1, signals it, and moves a high level line when retargeted', () => {
    const { cpus, rd, wr, d, signals } = gic(2);
    d.setSpi(33, true); // no target yet: not forwarded
    expect(cpus.map((c) => c.irqAsserted)).toEqual([false, false]);
    expect(signals).toEqual([]);
    wr(0, ITARGETSR + 33, 0x02, 1);
    expect(rd(1, ITARGETSR + 32)).toBe(0x0200);
    expect(cpus.map((c) => c.irqAsserted)).toEqual([false, true]);
    expect(signals).toEqual([1]);
    expect(rd(0, ISPENDR + 4) & 2).toBe(2); // pending, seen from any CPU
    // gic_set_affinity: read-modify-write of the word
    wr(0, ITARGETSR + 32, (rd(0, ITARGETSR + 32) & ~0xff00) | 0x0100);
    expect(cpus.map((c) => c.irqAsserted)).toEqual([true, false]);
    expect(signals).toEqual([1, 0, 1]);
    expect(cpus[0]!.read(IAR)).toBe(33);
    expect(rd(1, ISACTIVER + 4) & 2).toBe(2);
    d.setSpi(33, false);
    cpus[0]!.write(EOIR, 33);
    expect(cpus[0]!.irqAsserted).toBe(false);
    wr(0, ITARGETSR + 32, 0xfc, 1); // bits of CPUs that do not exist are RAZ/WI
    expect(rd(0, ITARGETSR + 32, 1)).toBe(0);
    expect(() => d.setSpi(288, true)).toThrow(RangeError);
    expect(() => d.setSpi(31, true)).toThrow(RangeError);
  });

  it('on 1 vCPU every SPI goes to CPU 0 whatever ITARGETSR holds', () => {
    const { cpus, d } = gic(1);
    d.setSpi(100, true);
    expect(cpus[0]!.read(IAR)).toBe(100);
  });

  it('level SPI: pending while high, again after EOIR while high; edge SPI: latched once per rising edge', () => {
    const { cpus, rd, wr, d } = gic(2);
    const c = cpus[1]!;
    wr(0, ITARGETSR + 32, 0x02020202);
    wr(0, ICFGR + 8, 2 << 2); // INTID 33 edge, 32/34/35 level
    expect(rd(1, ICFGR + 8)).toBe(8);
    expect(rd(0, ICFGR)).toBe(0xaaaaaaaa); // SGIs: edge
    expect(c.triggerOf(33)).toBe('edge');
    expect(cpus[0]!.triggerOf(33)).toBe('edge');
    d.setSpi(32, true);
    expect(c.read(IAR)).toBe(32);
    c.write(EOIR, 32);
    expect(c.read(IAR)).toBe(32); // still high
    d.setSpi(32, false);
    c.write(EOIR, 32);
    expect(c.irqAsserted).toBe(false);
    d.setSpi(33, true);
    d.setSpi(33, true); // no new edge
    expect(c.read(IAR)).toBe(33);
    c.write(EOIR, 33);
    expect(c.irqAsserted).toBe(false); // the line stays high, but only an edge latches
    d.setSpi(33, false);
    d.setSpi(33, true);
    expect(c.read(IAR)).toBe(33);
    c.write(EOIR, 33);
  });

  it('ISPENDR/ICPENDR and ISACTIVER/ICACTIVER on SPIs and PPIs', () => {
    const { cpus, rd, wr } = gic(2);
    wr(0, ITARGETSR + 40, 0x02, 1);
    wr(0, ISPENDR + 4, 1 << 8); // INTID 40
    expect(cpus[1]!.read(HPPIR)).toBe(40);
    wr(1, ICPENDR + 4, 1 << 8);
    expect(cpus[1]!.irqAsserted).toBe(false);
    wr(0, ISPENDR, 1 << 3); // an SGI: WI (GICD_SPENDSGIR sets them)
    expect(rd(0, ISPENDR)).toBe(0);
    wr(1, ISPENDR + 2, 1 << 4, 1); // byte write to bits 16..23: PPI 20
    expect(rd(1, ISPENDR)).toBe(1 << 20);
    expect(rd(0, ISPENDR)).toBe(0);
    expect(cpus[1]!.read(IAR)).toBe(20);
    expect(rd(1, ISACTIVER)).toBe(1 << 20);
    wr(1, ICACTIVER, 1 << 20);
    expect(rd(1, ISACTIVER)).toBe(0);
  });
});

describe('GICv2 distributor: SGIs', () => {
  it('SGIR filters: a target list, all but self, self; IAR gives the source CPU in bits 12:10', () => {
    const { cpus, wr, signals } = gic(2);
    wr(0, SGIR, (0 << 24) | (0x02 << 16) | 5); // list: CPU 1
    expect(cpus.map((c) => c.irqAsserted)).toEqual([false, true]);
    expect(signals).toEqual([1]);
    const iar = cpus[1]!.read(IAR);
    expect(iar).toBe(5 | (0 << 10));
    cpus[1]!.write(EOIR, iar);
    wr(1, SGIR, (1 << 24) | 3); // all but self: CPU 0, from CPU 1
    expect(cpus.map((c) => c.irqAsserted)).toEqual([true, false]);
    expect(cpus[0]!.read(IAR)).toBe(3 | (1 << 10));
    cpus[0]!.write(EOIR, 3 | (1 << 10));
    wr(1, SGIR, (2 << 24) | 7); // self
    expect(cpus[1]!.read(IAR)).toBe(7 | (1 << 10));
    cpus[1]!.write(EOIR, 7 | (1 << 10));
    wr(0, SGIR, (3 << 24) | 0xff0001); // reserved filter: nothing
    expect(cpus.map((c) => c.irqAsserted)).toEqual([false, false]);
  });

  it('an SGI pending from two CPUs is taken twice, once per source, lowest first', () => {
    const { cpus, rd, wr } = gic(3);
    wr(2, SGIR, (0x01 << 16) | 1);
    wr(1, SGIR, (0x01 << 16) | 1);
    expect(rd(0, SPENDSGIR, 4)).toBe(0x0600);
    expect(rd(0, SPENDSGIR + 1, 1)).toBe(0x06);
    expect(cpus[0]!.read(IAR)).toBe(1 | (1 << 10));
    expect(cpus[0]!.irqAsserted).toBe(false); // active: not preempted by itself
    cpus[0]!.write(EOIR, 1 | (1 << 10));
    expect(cpus[0]!.read(IAR)).toBe(1 | (2 << 10));
    cpus[0]!.write(EOIR, 1 | (2 << 10));
    expect(cpus[0]!.read(IAR)).toBe(SPURIOUS_INTID);
    wr(0, SPENDSGIR + 4, 0x04, 1); // SGI 4 from CPU 2
    expect(cpus[0]!.read(HPPIR)).toBe(4 | (2 << 10));
    wr(0, CPENDSGIR + 4, 0x04, 1);
    expect(cpus[0]!.irqAsserted).toBe(false);
  });
});

describe('GICv2 CPU interface: EOImode 1 and GICC_DIR', () => {
  it('EOIR only drops the priority; DIR deactivates', () => {
    const { cpus, rd, wr, d } = gic(1);
    const c = cpus[0]!;
    c.write(PMR, 0xff);
    c.write(C_CTLR, 1 | (1 << 9));
    wr(0, IPRIORITYR + 48, 0x80, 1);
    d.setSpi(48, true);
    expect(c.read(IAR)).toBe(48);
    d.setSpi(48, false);
    c.write(EOIR, 48);
    expect(c.read(RPR)).toBe(0xff);
    expect(rd(0, ISACTIVER + 4)).toBe(1 << 16);
    c.write(DIR, 48);
    expect(rd(0, ISACTIVER + 4)).toBe(0);
  });
});

describe('Linux 6.12 irq-gic.c on 2 vCPUs', () => {
  it('boot programming, a timer PPI per CPU, an IPI and a device SPI moved between CPUs', () => {
    const g = gic(2);
    const { cpus, wr, rd, d } = g;
    linuxInit(g);
    /** gic_handle_irq: acknowledge until spurious, EOI each (EOImode 0). */
    const handle = (cpu: number) => {
      const taken: number[] = [];
      for (;;) {
        const iar = cpus[cpu]!.read(IAR);
        if ((iar & 0x3ff) >= 1020) return taken;
        taken.push(iar);
        if (iar === 33) d.setSpi(33, false); // the PL011 driver clears its interrupt
        cpus[cpu]!.write(EOIR, iar);
      }
    };
    cpus[1]!.setLine(27, true); // the virtual timer fires before Linux enables PPI 27
    expect(cpus[1]!.irqAsserted).toBe(false);
    wr(1, ISENABLER, 1 << 27); // enable_percpu_irq on CPU 1
    expect(cpus[1]!.irqAsserted).toBe(true);
    cpus[1]!.setLine(27, false);
    expect(handle(1)).toEqual([]);
    // IPI: gic_ipi_send_mask
    wr(0, SGIR, (0x02 << 16) | 1);
    expect(g.signals.at(-1)).toBe(1);
    expect(handle(1)).toEqual([1]);
    // the PL011's SPI 1 (INTID 33): routed to CPU 0 by gic_dist_init, enabled by request_irq
    expect(rd(0, ITARGETSR + 32)).toBe(0x01010101);
    wr(0, ISENABLER + 4, 1 << 1);
    d.setSpi(33, true);
    expect(cpus[0]!.irqAsserted).toBe(true);
    d.setSpi(33, false);
    expect(cpus[0]!.irqAsserted).toBe(false);
    wr(0, ITARGETSR + 32, (rd(0, ITARGETSR + 32) & ~0xff00) | 0x0200); // irq_set_affinity to CPU 1
    d.setSpi(33, true);
    expect(cpus.map((c) => c.irqAsserted)).toEqual([false, true]);
    expect(handle(1)).toEqual([33]);
    expect(handle(0)).toEqual([]);
  });
});

describe('GICv2 distributor: save/restore', () => {
  const driven = () => {
    const g = gic(2);
    linuxInit(g);
    g.wr(0, ITARGETSR + 36, 0x02, 1);
    g.wr(0, ISENABLER + 4, 0xff);
    g.wr(0, ICFGR + 8, 2 << 6);
    g.d.setSpi(36, true);
    g.wr(0, ITARGETSR + 37, 0x00, 1);
    g.wr(0, ISPENDR + 4, 1 << 5); // no target: latched
    g.wr(1, SGIR, (0x01 << 16) | 2);
    g.cpus[0]!.write(BPR, 2);
    expect(g.cpus[1]!.read(IAR)).toBe(36);
    return g;
  };

  it('distributor state round-trips and refuses damaged fields by name', () => {
    const g = driven();
    expect(g.d.save().latched).toEqual([37]);
    const problems = checkPersistence({
      make: () => gic(2).d,
      samples: [g.d.save(), gic(2).d.save(), gic(1).d.save()],
      corruptions: [
        { path: 'ctlr', value: 2 },
        { path: 'enabled', value: 'zz' },
        { path: 'priority', value: '00' },
        { path: 'targets', value: '04'.repeat(256) },
        { path: 'lines', value: [31] },
        { path: 'latched', value: ['33'] },
      ],
    });
    expect(problems).toEqual([]);
  });

  it('CPU interface state with the newer fields round-trips; damaged ones are refused by name', () => {
    const g = driven();
    const samples = [...g.cpus.map((c) => c.save()), new GicCpuInterface().save()];
    expect(samples[0]).toMatchObject({ programmed: true, bpr: 2, enabled: 0x0000ffff, sgi: [[2, 2]] });
    expect(samples[1]).toMatchObject({ running: [[36, 0xa0]] });
    const problems = checkPersistence({
      make: () => new GicCpuInterface(),
      samples,
      corruptions: [
        { path: 'ctlr', value: 2 },
        { path: 'programmed', value: 1 },
        { path: 'bpr', value: 8 },
        { path: 'abpr', value: 0 },
        { path: 'enabled', value: 0xffff0000 },
        { path: 'priority', value: 'a0' },
        { path: 'sgi', value: [[16, 1]] },
        { path: 'sgi', value: [[3, 1]] }, // SGI 3 is not pending
        { path: 'running', value: [[40, 0], [40, 0]] },
      ],
    });
    expect(problems).toEqual([]);
  });

  it('a restored pair (distributor + interfaces) behaves as the original', () => {
    const a = driven();
    const b = gic(2);
    b.d.restore(JSON.parse(JSON.stringify(a.d.save())));
    a.cpus.forEach((c, i) => b.cpus[i]!.restore(JSON.parse(JSON.stringify(c.save()))));
    for (const g of [a, b]) {
      expect(g.cpus.map((c) => c.irqAsserted)).toEqual([true, false]); // SGI 2 at CPU 0; CPU 1 runs 36
      g.wr(0, ITARGETSR + 37, 0x01, 1); // the latched SPI reaches CPU 0
    }
    const run = (g: ReturnType<typeof gic>) => {
      const out: number[] = [];
      for (let i = 0; i < 4; i++) out.push(g.cpus[0]!.read(IAR));
      g.cpus[1]!.write(EOIR, 36);
      out.push(g.cpus[1]!.read(IAR));
      return out;
    };
    expect(run(b)).toEqual(run(a));
  });

  it('validateGicdState names the component and the field', () => {
    let err: unknown;
    try {
      validateGicdState({ ...gic(2).d.save(), targets: '04'.repeat(256) }, 2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateError);
    expect((err as StateError).component).toBe('GIC distributor');
    expect((err as StateError).field).toBe('targets');
  });
});
