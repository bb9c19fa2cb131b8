import { StateReader } from '@plugvisor/core';
/**
 * A GICv2 CPU interface (Arm IHI 0048B, "ARM Generic Interrupt Controller Architecture
 * Specification, GIC architecture version 1.0 and 2.0", chapter 4.4), one per vCPU, at QEMU virt's
 * GICC address. Register offsets and semantics as IHI 0048B table 4-2:
 *
 *   0x000 GICC_CTLR   RW  bit 0 EnableGrp0, bit 9 EOImode (every other bit RAZ/WI: every
 *                         interrupt is Group 0, GICD_IGROUPR is RAZ/WI, so there is no Group 1,
 *                         no FIQ and no bypass to configure)
 *   0x004 GICC_PMR    RW  priority mask: an interrupt is signalled only if its priority < PMR
 *   0x008 GICC_BPR    RW  binary point (0..7): group priority = priority bits [7:BPR+1]
 *   0x00C GICC_IAR    RO  acknowledge: the highest-priority signalled INTID becomes active
 *                         (an SGI's source CPU in bits 12:10); 1023 = spurious
 *   0x010 GICC_EOIR   WO  priority drop, and deactivation when EOImode is 0
 *   0x014 GICC_RPR    RO  running priority (0xff when idle)
 *   0x018 GICC_HPPIR  RO  the INTID IAR would return, without acknowledging it
 *   0x01C GICC_ABPR   RW  aliased (Group 1) binary point, 1..7, stored
 *   0x020/24/28 GICC_AIAR/AEOIR/AHPPIR: the Group 1 aliases; no interrupt is Group 1, so
 *                         AIAR and AHPPIR read 1023 and AEOIR is ignored
 *   0x0D0..0x0DC GICC_APR0..3  active priorities (one bit per preemption level, QEMU's layout
 *                         with 128 levels: bit n of APR(n / 32) = group priority n << 1); writes
 *                         ignored (Linux's gic_cpu_if_up writes 0 with nothing active)
 *   0x0E0..0x0EC GICC_NSAPR RAZ/WI
 *   0x0FC GICC_IIDR   RO  0x0202143B: GIC-400 r0p1, architecture v2 (Linux's gic_check_gicv2
 *                         matches (IIDR & 0xff0fff) == 0x02043b)
 *   0x1000 GICC_DIR   WO  deactivate (only with EOImode 1; UNPREDICTABLE otherwise, ignored as QEMU)
 *
 * Signalling (IHI 0048B 3.2.2, 3.3): the highest-priority pending interrupt that is enabled
 * (GICD_CTLR and its GICD_ISENABLER bit) is signalled if its priority is below PMR, GICC_CTLR
 * enables the interface, and its group priority is higher than the running priority (the
 * highest group priority acknowledged and not yet dropped by EOIR: preemption). Ties go to the
 * lowest INTID. Priorities have 8 bits (as QEMU's GIC), so BPR's minimum is 0.
 *
 * Compatibility rule (guests written before the distributor): a CPU interface the guest never
 * programmed — no write to GICC_CTLR or GICC_PMR since reset — does not apply GICC_CTLR's enable
 * or PMR (both reset to 0, which would mask everything). The first write to either makes the
 * interface architectural from then on (Linux's gic_cpu_init writes PMR = 0xf0, then CTLR).
 * The distributor resets enabled, with every INTID enabled and every priority 0, so a guest that
 * never touches it sees exactly what it saw before: the lowest pending INTID is signalled while
 * nothing is active. Saved states without the newer fields restore to that behaviour.
 *
 * Trigger mode, per INTID (GICD_ICFGR, or the machine's `configure`):
 *   level (default)  Machine.setInterrupt(vcpu, intid, level) drives the line: pending while
 *                    high; EOIR re-pends it if still high; lowering it clears pending.
 *   edge             setInterrupt(.., true) is a rising edge: it latches pending, also while
 *                    the INTID is active (active+pending: taken again after EOIR);
 *                    setInterrupt(.., false) does nothing; IAR consumes the latch. This is KVM's
 *                    vgic for an edge IRQ (pending_latch set on level=1, line_level ignored).
 * On this board PPI 31 (GUEST_EVTCHN_PPI, Xen's event-channel upcall) is edge by default, as
 * Xen's vGIC configures it: Xen raises it once per evtchn_upcall_pending 0→1 and never lowers it.
 *
 * SGIs sent through GICD_SGIR are pending per source CPU (IHI 0048B 3.2.3): IAR returns the
 * lowest source, and the SGI stays pending while other sources remain (QEMU's sgi_pending).
 *
 * INTIDs are 0..1019 (SGI 0-15, PPI 16-31, SPI 32+). The enable and priority of INTIDs 0..31 are
 * banked here; those of SPIs belong to the distributor (devices/gicd.ts), which shares them with
 * every interface through `connect`.
 */
export const SPURIOUS_INTID = 1023;
export const MAX_INTID = 1019;

const LINE = 1;
const PENDING = 2;
const ACTIVE = 4;
/** Configuration bit (not state): the INTID is edge-triggered. */
const EDGE = 8;

/** GICC_CTLR bits this interface implements. */
export const GICC_CTLR_ENABLE = 1;
export const GICC_CTLR_EOIMODE = 1 << 9;
const CTLR_MASK = GICC_CTLR_ENABLE | GICC_CTLR_EOIMODE;
/** GICC_IIDR: ProductID 0x020, ArchitectureVersion 2, Revision 1, Implementer 0x43B (Arm): a GIC-400. */
export const GICC_IIDR = 0x0202143b;
const IDLE_PRIORITY = 0x100;
/** The banked INTIDs: SGIs 0..15 and PPIs 16..31. */
const BANKED = 32;
const ALL_BANKED_ENABLED = 0xffffffff;
const SGI_BITS = 0xffff;

export type InterruptTrigger = 'level' | 'edge';

/** INTIDs that are edge-triggered at reset on this board: PPI 31, Xen's event-channel PPI. */
export const DEFAULT_EDGE_INTIDS: readonly number[] = Object.freeze([31]);

/**
 * The distributor's side of an interface's view: GICD_CTLR's enable and the enable and
 * priority of INTIDs 32..1019 (indexes 0..31 unused). One object, shared by the distributor and
 * every interface; an interface made alone has its own, at the distributor's reset values.
 */
export class GicSharedState {
  enabled = true;
  readonly spiEnabled = new Uint8Array(MAX_INTID + 1).fill(1);
  readonly spiPriority = new Uint8Array(MAX_INTID + 1);
}

export interface GiccState {
  /** GICC_CTLR: bit 0 EnableGrp0, bit 9 EOImode. */
  ctlr: number;
  pmr: number;
  /** [intid, state bits] for every INTID with a non-zero state (1 line high, 2 pending, 4 active). */
  lines: [number, number][];
  /** Edge-triggered INTIDs (absent in blobs from before trigger modes: the board default). */
  edge?: number[];
  // Absent in blobs from before the distributor: the reset values, which behave as before.
  /** The guest has written GICC_CTLR or GICC_PMR since reset: both are applied. */
  programmed?: boolean;
  bpr?: number;
  abpr?: number;
  /** GICD_ISENABLER0 of this CPU: bit n = INTID n enabled (SGIs 0..15 always are). */
  enabled?: number;
  /** GICD_IPRIORITYR0..7 of this CPU: 32 bytes of hex, INTID 0 first. */
  priority?: string;
  /** [SGI, source CPU mask] for every SGI pending from GICD_SGIR/SPENDSGIR. */
  sgi?: [number, number][];
  /** Acknowledged, priority not yet dropped: [intid, group priority], oldest first. */
  running?: [number, number][];
}

const isIntIn = (v: unknown, min: number, max: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function pairs(r: StateReader, field: string, what: string, ok: (a: unknown, b: unknown) => boolean): [number, number][] {
  const list = r.array(field);
  const seen = new Set<number>();
  list.forEach((l, i) => {
    if (!Array.isArray(l) || l.length !== 2 || !ok(l[0], l[1])) r.fail(field, `entry ${i} is not ${what}: ${JSON.stringify(l)}`);
    if (seen.has(l[0] as number)) r.fail(field, `entry ${i} repeats INTID ${String(l[0])}`);
    seen.add(l[0] as number);
  });
  return list as [number, number][];
}

/** Validates a saved GiccState (vm-superio's from_state); throws StateError naming the field. */
export function validateGiccState(state: unknown, component = 'GIC CPU interface'): GiccState {
  const r = new StateReader(component, state);
  const ctlr = r.int('ctlr', 0, CTLR_MASK);
  if (ctlr & ~CTLR_MASK) r.fail('ctlr', `has bits outside EnableGrp0 (bit 0) and EOImode (bit 9): 0x${ctlr.toString(16)}`);
  const pmr = r.int('pmr', 0, 0xff);
  const lines = r.array('lines');
  lines.forEach((l, i) => {
    if (!Array.isArray(l) || l.length !== 2 || !isIntIn(l[0], 0, MAX_INTID) || !isIntIn(l[1], 1, LINE | PENDING | ACTIVE)) {
      r.fail('lines', `entry ${i} is not [INTID 0..${MAX_INTID}, state bits 1..7]: ${JSON.stringify(l)}`);
    }
  });
  const edge = r.raw('edge') === undefined ? undefined : r.array('edge');
  if (edge && !edge.every((x) => isIntIn(x, 0, MAX_INTID))) r.fail('edge', `is not a list of INTIDs 0..${MAX_INTID}`);
  const out: GiccState = { ctlr, pmr, lines: lines as [number, number][], ...(edge ? { edge: edge as number[] } : {}) };
  const has = (f: string) => r.raw(f) !== undefined;
  if (has('programmed')) out.programmed = r.bool('programmed');
  if (has('bpr')) out.bpr = r.int('bpr', 0, 7);
  if (has('abpr')) out.abpr = r.int('abpr', 1, 7);
  if (has('enabled')) {
    out.enabled = r.int('enabled', 0, ALL_BANKED_ENABLED);
    if ((out.enabled & SGI_BITS) !== SGI_BITS) r.fail('enabled', 'must have the SGI bits 0..15 set (SGIs are always enabled)');
  }
  if (has('priority')) {
    r.bytes('priority', BANKED);
    out.priority = r.raw('priority') as string;
  }
  if (has('sgi')) {
    out.sgi = pairs(r, 'sgi', '[SGI 0..15, source CPU mask 1..255]', (a, b) => isIntIn(a, 0, 15) && isIntIn(b, 1, 0xff));
    const pending = new Set(lines.filter((l) => ((l as [number, number])[1] & PENDING) !== 0).map((l) => (l as [number, number])[0]));
    for (const [id] of out.sgi) if (!pending.has(id)) r.fail('sgi', `SGI ${id} has sources but is not pending in lines`);
  }
  if (has('running')) out.running = pairs(r, 'running', `[INTID 0..${MAX_INTID}, group priority 0..255]`, (a, b) => isIntIn(a, 0, MAX_INTID) && isIntIn(b, 0, 0xff));
  return out;
}

function checkIntid(intid: number): void {
  if (!Number.isInteger(intid) || intid < 0 || intid > MAX_INTID) {
    throw new RangeError(`INTID ${intid} is outside 0..${MAX_INTID}`);
  }
}

const lowestBit = (mask: number): number => 31 - Math.clz32(mask & -mask);

export class GicCpuInterface {
  private readonly st = new Uint8Array(MAX_INTID + 1);
  private pendingCount = 0;
  private ctlrValue = 0;
  private pmrValue = 0;
  private programmed = false;
  private bpr = 0;
  private abpr = 1;
  /** GICD_ISENABLER0 (banked): bit n = INTID n enabled. */
  private bankEnabled = ALL_BANKED_ENABLED;
  private readonly bankPriority = new Uint8Array(BANKED);
  /** Per SGI, the CPUs it is pending from (GICD_SGIR, GICD_SPENDSGIR). */
  private readonly sgiSources = new Uint8Array(16);
  /** Acknowledged interrupts whose priority is not yet dropped: INTID and group priority, oldest first. */
  private running: [number, number][] = [];
  private runningPriority = IDLE_PRIORITY;
  private shared = new GicSharedState();
  /** The INTID the interface signals (SPURIOUS_INTID: none), valid while !dirty. */
  private signalled = SPURIOUS_INTID;
  private dirty = false;

  constructor(edge: readonly number[] = DEFAULT_EDGE_INTIDS) {
    for (const id of edge) this.configure(id, 'edge');
  }

  /** GICC_CTLR. */
  get ctlr(): number {
    return this.ctlrValue;
  }

  /** GICC_PMR. */
  get pmr(): number {
    return this.pmrValue;
  }

  /** True when the vCPU's IRQ input is asserted. */
  get irqAsserted(): boolean {
    return this.pendingCount > 0 && this.highestSignalled() !== SPURIOUS_INTID;
  }

  /** Shares the distributor's state (GICD_CTLR, SPI enables and priorities); devices/gicd.ts calls it. */
  connect(shared: GicSharedState): void {
    this.shared = shared;
    this.dirty = true;
  }

  /** The distributor changed shared state: recompute the output. */
  invalidate(): void {
    this.dirty = true;
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

  // ---- the distributor's per-INTID view (devices/gicd.ts) -------------------------------------

  /** Enabled: SGIs always; PPIs by this CPU's GICD_ISENABLER0; SPIs by the distributor. */
  isEnabled(intid: number): boolean {
    return intid < BANKED ? ((this.bankEnabled >>> intid) & 1) === 1 : this.shared.spiEnabled[intid] === 1;
  }

  /** Sets a banked (0..31) enable; SGI enables are RAO/WI (as QEMU's GICv2 and the GIC-400). */
  setBankEnabled(intid: number, on: boolean): void {
    if (intid < 16 || intid >= BANKED) return;
    this.bankEnabled = on ? (this.bankEnabled | (1 << intid)) >>> 0 : (this.bankEnabled & ~(1 << intid)) >>> 0;
    this.dirty = true;
  }

  priorityOf(intid: number): number {
    return intid < BANKED ? this.bankPriority[intid]! : this.shared.spiPriority[intid]!;
  }

  setBankPriority(intid: number, priority: number): void {
    if (intid < 0 || intid >= BANKED) return;
    this.bankPriority[intid] = priority & 0xff;
    this.dirty = true;
  }

  /** Pending (GICD_ISPENDR's view): latched, or a level line that is high. */
  isPending(intid: number): boolean {
    const s = this.st[intid]!;
    return (s & PENDING) !== 0 || ((s & (EDGE | LINE)) === LINE && (s & ACTIVE) !== 0);
  }

  /** The PENDING bit alone (not a high level line while active). */
  pendingLatched(intid: number): boolean {
    return (this.st[intid]! & PENDING) !== 0;
  }

  isActive(intid: number): boolean {
    return (this.st[intid]! & ACTIVE) !== 0;
  }

  /** GICD_ISPENDR: makes the INTID pending. */
  setPending(intid: number): void {
    this.set(intid, this.st[intid]! | PENDING);
  }

  /** GICD_ICPENDR: clears pending; a level interrupt whose line is high stays pending (IHI 0048B 4.3.8). */
  clearPending(intid: number): void {
    const s = this.st[intid]!;
    if (intid < 16) this.sgiSources[intid] = 0;
    this.set(intid, (s & (EDGE | LINE)) === LINE && !(s & ACTIVE) ? s : s & ~PENDING);
  }

  /** GICD_ISACTIVER: makes the INTID active (the running priority is not changed). */
  setActive(intid: number): void {
    this.set(intid, this.st[intid]! | ACTIVE);
  }

  /** GICD_ICACTIVER: deactivates (a level line still high is pending again). */
  clearActive(intid: number): void {
    this.deactivate(intid);
  }

  /** GICD_SGIR: SGI `intid` (0..15) from CPU `source` becomes pending. */
  sendSgi(intid: number, source: number): void {
    this.setSgiSources(intid, 1 << source);
  }

  sgiSourcesOf(intid: number): number {
    return this.sgiSources[intid]!;
  }

  /** GICD_SPENDSGIR: adds source CPUs to a pending SGI. */
  setSgiSources(intid: number, mask: number): void {
    mask &= 0xff;
    if (intid < 0 || intid > 15 || mask === 0) return;
    this.sgiSources[intid]! |= mask;
    this.set(intid, this.st[intid]! | PENDING);
  }

  /** GICD_CPENDSGIR: removes source CPUs; the SGI stops pending when none is left. */
  clearSgiSources(intid: number, mask: number): void {
    mask &= 0xff;
    if (intid < 0 || intid > 15 || mask === 0 || this.sgiSources[intid] === 0) return;
    this.sgiSources[intid]! &= ~mask;
    if (this.sgiSources[intid] === 0) this.set(intid, this.st[intid]! & ~PENDING);
  }

  // ---- signalling -----------------------------------------------------------------------------

  private set(intid: number, next: number): void {
    const prev = this.st[intid]!;
    if ((prev & PENDING) !== (next & PENDING)) this.pendingCount += next & PENDING ? 1 : -1;
    this.st[intid] = next;
    this.dirty = true;
  }

  private groupMask(): number {
    return (0xff << (this.bpr + 1)) & 0xff;
  }

  /** The highest-priority enabled pending INTID and its priority, or SPURIOUS_INTID. */
  private highestPending(): [number, number] {
    let best = SPURIOUS_INTID;
    let bestPriority = IDLE_PRIORITY;
    if (this.pendingCount === 0) return [best, bestPriority];
    for (let i = 0; i <= MAX_INTID; i++) {
      if (!(this.st[i]! & PENDING) || !this.isEnabled(i)) continue;
      const p = this.priorityOf(i);
      if (p < bestPriority) {
        best = i;
        bestPriority = p;
        if (p === 0) break; // nothing beats it; ties go to the lowest INTID
      }
    }
    return [best, bestPriority];
  }

  /** The INTID the interface signals to the vCPU (and IAR would acknowledge), or SPURIOUS_INTID. */
  private highestSignalled(): number {
    if (!this.dirty) return this.signalled;
    this.dirty = false;
    const [id, priority] = this.highestPending();
    let out = id;
    if (id === SPURIOUS_INTID || !this.shared.enabled) out = SPURIOUS_INTID;
    else if (this.programmed && (!(this.ctlrValue & GICC_CTLR_ENABLE) || priority >= this.pmrValue)) out = SPURIOUS_INTID;
    else if ((priority & this.groupMask()) >= this.runningPriority) out = SPURIOUS_INTID;
    this.signalled = out;
    return out;
  }

  private updateRunning(): void {
    let p = IDLE_PRIORITY;
    for (const [, g] of this.running) if (g < p) p = g;
    this.runningPriority = p;
    this.dirty = true;
  }

  private acknowledge(): number {
    const id = this.highestSignalled();
    if (id === SPURIOUS_INTID) return SPURIOUS_INTID;
    const s = this.st[id]!;
    let source = 0;
    let stillPending = false;
    if (id < 16 && this.sgiSources[id] !== 0) {
      source = lowestBit(this.sgiSources[id]!);
      this.sgiSources[id]! &= ~(1 << source);
      stillPending = this.sgiSources[id] !== 0;
    }
    this.set(id, (s & ~PENDING) | ACTIVE | (stillPending ? PENDING : 0));
    this.running.push([id, this.priorityOf(id) & this.groupMask()]);
    this.updateRunning();
    return id | (source << 10);
  }

  private deactivate(id: number): void {
    const s = this.st[id]!;
    if (!(s & ACTIVE)) return;
    // level: pending again while the line is high; edge (or SGI): a latched pending stays
    this.set(id, s & EDGE ? s & ~ACTIVE : (s & ~ACTIVE) | (s & LINE ? PENDING : 0));
  }

  private endOfInterrupt(value: number): void {
    const id = value & 0x3ff;
    if (id > MAX_INTID) return; // 1020..1023: ignored (IHI 0048B 4.4.5)
    let at = -1;
    for (let i = this.running.length - 1; i >= 0; i--) {
      if (this.running[i]![0] === id) {
        at = i;
        break;
      }
    }
    if (at >= 0) {
      this.running.splice(at, 1);
      this.updateRunning();
    } else if (!(this.st[id]! & ACTIVE)) {
      return; // not acknowledged: ignored
    }
    if (!(this.ctlrValue & GICC_CTLR_EOIMODE)) this.deactivate(id);
  }

  private activePriorities(n: number): number {
    let bits = 0;
    for (const [, g] of this.running) {
      const level = g >> 1;
      if (level >> 5 === n) bits |= 1 << (level & 31);
    }
    return bits >>> 0;
  }

  read(offset: number): number {
    switch (offset) {
      case 0x000:
        return this.ctlrValue;
      case 0x004:
        return this.pmrValue;
      case 0x008:
        return this.bpr;
      case 0x00c:
        return this.acknowledge();
      case 0x014:
        return this.runningPriority === IDLE_PRIORITY ? 0xff : this.runningPriority;
      case 0x018: {
        const id = this.highestSignalled();
        return id < 16 && this.sgiSources[id] ? id | (lowestBit(this.sgiSources[id]!) << 10) : id;
      }
      case 0x01c:
        return this.abpr;
      case 0x020:
      case 0x028:
        return SPURIOUS_INTID;
      case 0x0d0:
      case 0x0d4:
      case 0x0d8:
      case 0x0dc:
        return this.activePriorities((offset - 0x0d0) >> 2);
      case 0x0fc:
        return GICC_IIDR;
      default:
        return 0;
    }
  }

  write(offset: number, value: number): void {
    switch (offset) {
      case 0x000:
        this.ctlrValue = value & CTLR_MASK;
        this.programmed = true;
        this.dirty = true;
        return;
      case 0x004:
        this.pmrValue = value & 0xff;
        this.programmed = true;
        this.dirty = true;
        return;
      case 0x008:
        this.bpr = value & 7;
        this.dirty = true;
        return;
      case 0x010:
        this.endOfInterrupt(value);
        return;
      case 0x01c:
        this.abpr = Math.max(value & 7, 1);
        return;
      case 0x1000:
        if (this.ctlrValue & GICC_CTLR_EOIMODE && (value & 0x3ff) <= MAX_INTID) this.deactivate(value & 0x3ff);
        return;
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
    const out: GiccState = { ctlr: this.ctlrValue, pmr: this.pmrValue, lines, edge };
    // The newer fields only when they differ from what restore assumes in their absence, so a
    // state that never used them saves the same bytes as before the distributor.
    if (this.programmed) out.programmed = true;
    if (this.bpr !== 0) out.bpr = this.bpr;
    if (this.abpr !== 1) out.abpr = this.abpr;
    if (this.bankEnabled !== ALL_BANKED_ENABLED) out.enabled = this.bankEnabled;
    if (this.bankPriority.some((p) => p !== 0)) out.priority = Buffer.from(this.bankPriority).toString('hex');
    const sgi: [number, number][] = [];
    this.sgiSources.forEach((m, i) => m && sgi.push([i, m]));
    if (sgi.length) out.sgi = sgi;
    const implied = lines.filter(([, bits]) => bits & ACTIVE).map(([id]) => id);
    const legacy = this.running.length === implied.length && this.running.every(([id, g], i) => g === 0 && id === implied[i]);
    if (!legacy) out.running = this.running.map(([id, g]) => [id, g]);
    return out;
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
    this.ctlrValue = s.ctlr;
    this.pmrValue = s.pmr;
    this.programmed = s.programmed ?? false;
    this.bpr = s.bpr ?? 0;
    this.abpr = s.abpr ?? 1;
    this.bankEnabled = s.enabled ?? ALL_BANKED_ENABLED;
    this.bankPriority.set(s.priority === undefined ? new Uint8Array(BANKED) : Buffer.from(s.priority, 'hex'));
    this.sgiSources.fill(0);
    for (const [id, m] of s.sgi ?? []) this.sgiSources[id] = m;
    // Before the distributor, "nothing active" gated the output: every active INTID runs at
    // priority 0, which nothing preempts.
    this.running = s.running ? s.running.map(([id, g]) => [id, g]) : s.lines.filter(([, bits]) => bits & ACTIVE).map(([id]): [number, number] => [id, 0]);
    this.updateRunning();
  }
}
