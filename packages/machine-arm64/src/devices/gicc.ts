import { StateReader } from '@plugvisor/core';
/**
 * A minimal, per-vCPU interrupt controller CPU interface at QEMU virt's GICv2 GICC address.
 * It is NOT a GIC (no distributor, no priorities, no SGI generation): it is just enough for a
 * guest to learn which interrupt it was sent, with GICv2's register offsets and semantics:
 *
 *   0x000 GICC_CTLR   RW, stored (bit 0 = enable, not enforced)
 *   0x004 GICC_PMR    RW, stored (not enforced)
 *   0x00C GICC_IAR    RO: acknowledge: returns the lowest pending INTID and makes it active
 *                      (1023 = spurious: nothing pending, or an interrupt is already active)
 *   0x010 GICC_EOIR   WO: end of interrupt for the INTID written; a level interrupt whose line
 *                      is still high becomes pending again
 *   0x018 GICC_HPPIR  RO: the INTID IAR would return, without acknowledging
 *   0x0FC GICC_IIDR   RO: 0x0 (no product id)
 *
 * The vCPU's IRQ signal is "some INTID pending and none active" (no preemption). INTIDs are
 * 0..1019 (SGI 0-15, PPI 16-31, SPI 32+).
 *
 * Trigger mode, per INTID (GICD_ICFGR's job on a real GIC; here `configure`):
 *   level (default)  Machine.setInterrupt(vcpu, intid, level) drives the line: pending while
 *                    high; EOIR re-pends it if still high; lowering it clears pending.
 *   edge             setInterrupt(.., true) is a rising edge: it latches pending, also while
 *                    the INTID is active (active+pending: taken again after EOIR);
 *                    setInterrupt(.., false) does nothing; IAR consumes the latch. This is KVM's
 *                    vgic for an edge IRQ (pending_latch set on level=1, line_level ignored).
 * On this board PPI 31 (GUEST_EVTCHN_PPI, Xen's event-channel upcall) is edge by default, as
 * Xen's vGIC configures it: Xen raises it once per evtchn_upcall_pending 0→1 and never lowers it.
 */
export const SPURIOUS_INTID = 1023;
export const MAX_INTID = 1019;

const LINE = 1;
const PENDING = 2;
const ACTIVE = 4;
/** Configuration bit (not state): the INTID is edge-triggered. */
const EDGE = 8;

export type InterruptTrigger = 'level' | 'edge';

/** INTIDs that are edge-triggered at reset on this board: PPI 31, Xen's event-channel PPI. */
export const DEFAULT_EDGE_INTIDS: readonly number[] = Object.freeze([31]);

export interface GiccState {
  ctlr: number;
  pmr: number;
  /** [intid, state bits] for every INTID with a non-zero state. */
  lines: [number, number][];
  /** Edge-triggered INTIDs (absent in blobs from before trigger modes: the board default). */
  edge?: number[];
}

/** Validates a saved GiccState (vm-superio's from_state); throws StateError naming the field. */
export function validateGiccState(state: unknown, component = 'GIC CPU interface'): GiccState {
  const r = new StateReader(component, state);
  const ctlr = r.int('ctlr', 0, 1);
  const pmr = r.int('pmr', 0, 0xff);
  const lines = r.array('lines');
  lines.forEach((l, i) => {
    if (!Array.isArray(l) || l.length !== 2 || !isIntIn(l[0], 0, MAX_INTID) || !isIntIn(l[1], 1, LINE | PENDING | ACTIVE)) {
      r.fail('lines', `entry ${i} is not [INTID 0..${MAX_INTID}, state bits 1..7]: ${JSON.stringify(l)}`);
    }
  });
  const edge = r.raw('edge') === undefined ? undefined : r.array('edge');
  if (edge && !edge.every((x) => isIntIn(x, 0, MAX_INTID))) r.fail('edge', `is not a list of INTIDs 0..${MAX_INTID}`);
  return { ctlr, pmr, lines: lines as [number, number][], ...(edge ? { edge: edge as number[] } : {}) };
}

const isIntIn = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function checkIntid(intid: number): void {
  if (!Number.isInteger(intid) || intid < 0 || intid > MAX_INTID) {
    throw new RangeError(`INTID ${intid} is outside 0..${MAX_INTID}`);
  }
}

export class GicCpuInterface {
  private readonly st = new Uint8Array(MAX_INTID + 1);
  private pendingCount = 0;
  private activeCount = 0;
  ctlr = 0;
  pmr = 0;

  constructor(edge: readonly number[] = DEFAULT_EDGE_INTIDS) {
    for (const id of edge) this.configure(id, 'edge');
  }

  /** True when the vCPU's IRQ input is asserted. */
  get irqAsserted(): boolean {
    return this.pendingCount > 0 && this.activeCount === 0;
  }

  /**
   * Sets an INTID's trigger mode. Switching drops a latched edge or a high line (as
   * reprogramming GICD_ICFGR on a real GIC is only defined while the interrupt is disabled);
   * an active interrupt stays active.
   */
  configure(intid: number, trigger: InterruptTrigger): void {
    checkIntid(intid);
    const s = this.st[intid]!;
    if (((s & EDGE) !== 0) === (trigger === 'edge')) return;
    this.set(intid, (s & ACTIVE) | (trigger === 'edge' ? EDGE : 0));
  }

  triggerOf(intid: number): InterruptTrigger {
    checkIntid(intid);
    return this.st[intid]! & EDGE ? 'edge' : 'level';
  }

  setLine(intid: number, level: boolean): void {
    checkIntid(intid);
    const s = this.st[intid]!;
    if (s & EDGE) {
      if (level) this.set(intid, s | PENDING); // a rising edge latches, even while active
      return;
    }
    if (level) {
      this.set(intid, s | LINE | ((s & ACTIVE) === 0 ? PENDING : 0));
    } else {
      this.set(intid, s & ~(LINE | PENDING));
    }
  }

  private set(intid: number, next: number): void {
    const prev = this.st[intid]!;
    if ((prev & PENDING) !== (next & PENDING)) this.pendingCount += next & PENDING ? 1 : -1;
    if ((prev & ACTIVE) !== (next & ACTIVE)) this.activeCount += next & ACTIVE ? 1 : -1;
    this.st[intid] = next;
  }

  private highestPending(): number {
    if (this.pendingCount === 0 || this.activeCount !== 0) return SPURIOUS_INTID;
    for (let i = 0; i <= MAX_INTID; i++) if (this.st[i]! & PENDING) return i;
    return SPURIOUS_INTID;
  }

  read(offset: number): number {
    switch (offset) {
      case 0x000:
        return this.ctlr;
      case 0x004:
        return this.pmr;
      case 0x00c: {
        const id = this.highestPending();
        if (id !== SPURIOUS_INTID) this.set(id, (this.st[id]! & ~PENDING) | ACTIVE);
        return id;
      }
      case 0x018:
        return this.highestPending();
      default:
        return 0;
    }
  }

  write(offset: number, value: number): void {
    switch (offset) {
      case 0x000:
        this.ctlr = value & 1;
        return;
      case 0x004:
        this.pmr = value & 0xff;
        return;
      case 0x010: {
        const id = value & 0x3ff;
        if (id > MAX_INTID) return;
        const s = this.st[id]!;
        if (!(s & ACTIVE)) return;
        // level: pending again while the line is high; edge: a latched edge stays pending
        this.set(id, s & EDGE ? s & ~ACTIVE : (s & ~ACTIVE) | (s & LINE ? PENDING : 0));
        return;
      }
      default:
        return;
    }
  }

  save(): GiccState {
    const lines: [number, number][] = [];
    const edge: number[] = [];
    for (let i = 0; i <= MAX_INTID; i++) {
      const st = this.st[i]!;
      if (st & EDGE) edge.push(i);
      if (st & ~EDGE) lines.push([i, st & ~EDGE]);
    }
    return { ctlr: this.ctlr, pmr: this.pmr, lines, edge };
  }

  /** Validates (throwing StateError naming the field) and applies a saved state. */
  restore(state: unknown): void {
    const s = validateGiccState(state);
    const edge = new Set(s.edge ?? DEFAULT_EDGE_INTIDS);
    for (let i = 0; i <= MAX_INTID; i++) this.set(i, edge.has(i) ? EDGE : 0);
    for (const [id, bits] of s.lines) {
      const e = this.st[id]! & EDGE;
      // an edge INTID has no line level: a LINE bit from an older (all-level) blob means pending
      this.set(id, e ? e | (bits & (PENDING | ACTIVE)) | (bits & LINE && !(bits & ACTIVE) ? PENDING : 0) : bits & (LINE | PENDING | ACTIVE));
    }
    this.ctlr = s.ctlr;
    this.pmr = s.pmr;
  }
}
