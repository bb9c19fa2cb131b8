import { describe, expect, it } from 'vitest';
import { GicCpuInterface, SPURIOUS_INTID } from './gicc.js';

const IAR = 0x0c, EOIR = 0x10, HPPIR = 0x18;

describe('GIC CPU interface: trigger modes', () => {
  it('PPI 31 is edge at reset, everything else level', () => {
    const g = new GicCpuInterface();
    expect(g.triggerOf(31)).toBe('edge');
    expect(g.triggerOf(30)).toBe('level');
    expect(g.triggerOf(40)).toBe('level');
  });

  it('edge: a raise latches once, IAR consumes it, no re-pend after EOIR without a new edge', () => {
    const g = new GicCpuInterface();
    g.setLine(31, true);
    expect(g.irqAsserted).toBe(true);
    g.setLine(31, true); // a second edge before the ack is the same pending interrupt
    expect(g.read(IAR)).toBe(31);
    expect(g.irqAsserted).toBe(false);
    g.write(EOIR, 31);
    expect(g.irqAsserted).toBe(false); // the line was never lowered, and nothing re-pends it
    expect(g.read(IAR)).toBe(SPURIOUS_INTID);
    g.setLine(31, false); // lowering an edge INTID does nothing
    expect(g.irqAsserted).toBe(false);
  });

  it('edge: a new edge while active makes it active+pending, taken again after EOIR', () => {
    const g = new GicCpuInterface();
    g.setLine(31, true);
    expect(g.read(IAR)).toBe(31);
    g.setLine(31, true);
    expect(g.irqAsserted).toBe(false); // no preemption while active
    expect(g.read(HPPIR)).toBe(SPURIOUS_INTID);
    g.write(EOIR, 31);
    expect(g.irqAsserted).toBe(true);
    expect(g.read(IAR)).toBe(31);
    g.write(EOIR, 31);
    expect(g.irqAsserted).toBe(false);
  });

  it('level (unchanged): a line left high re-pends after EOIR; lowering it clears pending', () => {
    const g = new GicCpuInterface();
    g.setLine(40, true);
    expect(g.read(IAR)).toBe(40);
    g.write(EOIR, 40);
    expect(g.irqAsserted).toBe(true);
    g.setLine(40, false);
    expect(g.irqAsserted).toBe(false);
  });

  it('is configurable per INTID and the configuration survives save/restore', () => {
    const g = new GicCpuInterface();
    g.configure(31, 'level');
    g.configure(27, 'edge');
    g.setLine(27, true);
    const s = g.save();
    expect(s.edge).toEqual([27]);
    const h = new GicCpuInterface();
    h.restore(JSON.parse(JSON.stringify(s)));
    expect(h.triggerOf(31)).toBe('level');
    expect(h.triggerOf(27)).toBe('edge');
    expect(h.read(IAR)).toBe(27);
    expect(() => g.configure(1020, 'edge')).toThrow(RangeError);
  });

  it('restores a blob from before trigger modes with the board default (a high 31 becomes pending)', () => {
    const h = new GicCpuInterface();
    h.restore({ ctlr: 1, pmr: 0xff, lines: [[31, 1 /* LINE */]] });
    expect(h.triggerOf(31)).toBe('edge');
    expect(h.read(IAR)).toBe(31);
    h.write(EOIR, 31);
    expect(h.irqAsserted).toBe(false);
  });
});

/**
 * The CPU interface as it was before the distributor (no enables, priorities, PMR or CTLR
 * enforcement: the lowest pending INTID, while nothing is active), kept as the reference a guest
 * that never programs the GIC must see no difference from.
 */
class BeforeDistributor {
  readonly st = new Uint8Array(1020);
  constructor() {
    this.st[31] = 8;
  }
  get irqAsserted(): boolean {
    return this.st.some((s) => (s & 2) !== 0) && !this.st.some((s) => (s & 4) !== 0);
  }
  configure(id: number, t: 'level' | 'edge'): void {
    const s = this.st[id]!;
    if (((s & 8) !== 0) === (t === 'edge')) return;
    this.st[id] = (s & 4) | (t === 'edge' ? 8 : 0);
  }
  setLine(id: number, level: boolean): void {
    const s = this.st[id]!;
    if (s & 8) {
      if (level) this.st[id] = s | 2;
    } else this.st[id] = level ? s | 1 | (s & 4 ? 0 : 2) : s & ~3;
  }
  private highest(): number {
    if (this.st.some((s) => (s & 4) !== 0)) return SPURIOUS_INTID;
    const i = this.st.findIndex((s) => (s & 2) !== 0);
    return i < 0 ? SPURIOUS_INTID : i;
  }
  iar(): number {
    const id = this.highest();
    if (id !== SPURIOUS_INTID) this.st[id] = (this.st[id]! & ~2) | 4;
    return id;
  }
  hppir(): number {
    return this.highest();
  }
  eoir(v: number): void {
    const id = v & 0x3ff;
    if (id > 1019) return;
    const s = this.st[id]!;
    if (!(s & 4)) return;
    this.st[id] = s & 8 ? s & ~4 : (s & ~4) | (s & 1 ? 2 : 0);
  }
  save() {
    const lines: [number, number][] = [];
    const edge: number[] = [];
    this.st.forEach((s, i) => {
      if (s & 8) edge.push(i);
      if (s & ~8) lines.push([i, s & ~8]);
    });
    return { ctlr: 0, pmr: 0, lines, edge };
  }
}

describe('GIC CPU interface: a guest that never programs the GIC sees what it saw before the distributor', () => {
  it('10 000 random line changes, trigger changes, IAR/HPPIR/EOIR and save/restores: same answers, same saved state', () => {
    let seed = 13;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const ids = [0, 1, 5, 16, 27, 30, 31, 33, 40, 287, 1019];
    const before = new BeforeDistributor();
    let now = new GicCpuInterface();
    const acked: number[] = [];
    for (let step = 0; step < 10_000; step++) {
      const id = ids[rnd(ids.length)]!;
      const at = `step ${step}`;
      switch (rnd(8)) {
        case 0:
        case 1: {
          const level = rnd(2) === 0;
          before.setLine(id, level);
          now.setLine(id, level);
          break;
        }
        case 2:
          if (rnd(4) === 0) {
            const t = rnd(2) ? 'edge' : 'level';
            before.configure(id, t);
            now.configure(id, t);
          }
          break;
        case 3: {
          const a = before.iar();
          expect(now.read(IAR), at).toBe(a);
          if (a !== SPURIOUS_INTID) acked.push(a);
          break;
        }
        case 4:
          expect(now.read(HPPIR), at).toBe(before.hppir());
          break;
        case 5: {
          const v = rnd(3) === 0 ? id : (acked.pop() ?? SPURIOUS_INTID);
          before.eoir(v);
          now.write(EOIR, v);
          break;
        }
        case 6:
          if (rnd(10) === 0) {
            // an old blob restores into a fresh interface; the new one saves the same state
            expect(now.save(), at).toEqual(before.save());
            now = new GicCpuInterface();
            now.restore(JSON.parse(JSON.stringify(before.save())));
          }
          break;
        default:
          break;
      }
      expect(now.irqAsserted, at).toBe(before.irqAsserted);
    }
  });
});

describe('GIC CPU interface: GICv2 registers', () => {
  const BPR = 0x08, RPR = 0x14, ABPR = 0x1c, AIAR = 0x20, AEOIR = 0x24, AHPPIR = 0x28, APR0 = 0xd0, IIDR = 0xfc, DIR = 0x1000;

  it('IIDR of a GIC-400; ABPR at least 1; Group 1 aliases empty; BPR 0..7; RPR idle 0xff', () => {
    const g = new GicCpuInterface();
    expect(g.read(IIDR)).toBe(0x0202143b);
    expect(g.read(ABPR)).toBe(1);
    g.write(ABPR, 0);
    expect(g.read(ABPR)).toBe(1);
    g.write(BPR, 0xf3);
    expect(g.read(BPR)).toBe(3);
    expect(g.read(RPR)).toBe(0xff);
    g.setLine(40, true);
    expect(g.read(AIAR)).toBe(SPURIOUS_INTID);
    expect(g.read(AHPPIR)).toBe(SPURIOUS_INTID);
    g.write(AEOIR, 40);
    expect(g.read(IAR)).toBe(40);
    expect(g.read(APR0)).toBe(1); // priority 0: preemption level 0
    g.write(APR0, 0); // writes ignored
    expect(g.read(APR0)).toBe(1);
  });

  it('CTLR keeps EnableGrp0 and EOImode only; DIR without EOImode is ignored', () => {
    const g = new GicCpuInterface();
    g.write(0x0, 0xffffffff);
    expect(g.ctlr).toBe(0x201);
    g.write(0x4, 0xff);
    g.write(0x0, 1);
    g.setLine(40, true);
    expect(g.read(IAR)).toBe(40);
    g.setLine(40, false);
    g.write(DIR, 40);
    expect(g.read(RPR)).toBe(0); // still running: DIR is UNPREDICTABLE with EOImode 0
    g.write(EOIR, 40);
    expect(g.read(RPR)).toBe(0xff);
  });
});
