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
