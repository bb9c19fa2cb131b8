import { StateReader, hexBytes } from '@plugvisor/core';
import { GicSharedState, type GicCpuInterface } from './gicc.js';

/**
 * A GICv2 distributor (Arm IHI 0048B, "ARM Generic Interrupt Controller Architecture
 * Specification, GIC architecture version 1.0 and 2.0", section 4.3) at QEMU virt's GICD address,
 * in front of the per-vCPU CPU interfaces of devices/gicc.ts. What Linux's GICv2 driver
 * (drivers/irqchip/irq-gic.c, irq-gic-common.c) programs and reads:
 *
 *   0x000 GICD_CTLR        RW  bit 0: forward interrupts to the CPU interfaces
 *   0x004 GICD_TYPER       RO  ITLinesNumber 8 (288 INTIDs: QEMU virt's num-irq = NUM_IRQS 256
 *                              + 32), CPUNumber = vCPUs - 1, no Security Extensions
 *   0x008 GICD_IIDR        RO  0x0000043B (implementer Arm, as QEMU)
 *   0x080 GICD_IGROUPRn    RAZ/WI (every interrupt is Group 0)
 *   0x100 / 0x180 GICD_IS/ICENABLERn    set/clear enable; SGIs are always enabled (RAO/WI, as
 *                              QEMU's GICv2 and the GIC-400); 0..31 banked per CPU
 *   0x200 / 0x280 GICD_IS/ICPENDRn      set/clear pending (SGI bits WI: GICD_S/CPENDSGIR)
 *   0x300 / 0x380 GICD_IS/ICACTIVERn    set/clear active
 *   0x400 GICD_IPRIORITYRn  priority byte per INTID (byte or word access); 0..31 banked
 *   0x800 GICD_ITARGETSRn   0..31 read-only, every byte the accessing CPU's own bit (Linux's
 *                              gic_get_cpumask reads them to learn its interface number);
 *                              SPIs: target CPU bits, byte or word access
 *   0xC00 GICD_ICFGRn       bit 2k+1 of each field: edge (1) or level (0). SGIs read edge, WI;
 *                              PPIs banked per CPU; SPIs configure every CPU interface
 *   0xF00 GICD_SGIR         WO  TargetListFilter 0 (list), 1 (all but self), 2 (self)
 *   0xF10 / 0xF20 GICD_CPENDSGIRn / GICD_SPENDSGIRn  per-source pending of SGIs, byte access
 *   0xFD0..0xFFC            PIDR4..7, PIDR0..3, CIDR0..3 of a GIC-400 (QEMU's gic_id_gicv2)
 *
 * Reset state, chosen so that guests written before the distributor see what they saw then:
 * GICD_CTLR enabled, every INTID enabled, every priority 0 (Linux writes all of them in
 * gic_dist_init and gic_cpu_init anyway). ITARGETSR of SPIs resets to 0.
 *
 * Routing: an SPI is forwarded to the lowest-numbered CPU of its GICD_ITARGETSR byte (Linux
 * programs exactly one, gic_set_affinity); with 1 vCPU every interrupt goes to CPU 0, as IHI 0048B
 * 4.3.12 requires of a uniprocessor GIC. A pending edge SPI with no target CPU stays latched here
 * until it gets one. Pending and active state live in the CPU interfaces; the line inputs, the
 * SPI enables, priorities and targets live here.
 *
 * Accesses are 32-bit, except GICD_IPRIORITYR, GICD_ITARGETSR and GICD_C/SPENDSGIR, which also
 * take bytes (and halfwords) (IHI 0048B 4.1.4). A narrower read of another register returns
 * the bytes of its word (distributor reads have no side effects); a narrower write to a
 * set/clear register acts on the bits written, and is ignored elsewhere. Reserved registers are
 * RAZ/WI. Nothing a guest writes throws.
 */
export const GICD_SIZE = 0x10000;
/** INTIDs the distributor implements (GICD_TYPER.ITLinesNumber 8): 0..287. */
export const GICD_LINES = 288;
/** GICD_IIDR as QEMU's GICv2: implementer 0x43B (Arm). */
export const GICD_IIDR = 0x0000043b;
/** Up to 8 CPU interfaces (GICv2: CPU targets are an 8-bit field). */
export const GICD_MAX_CPUS = 8;
const SPIS = GICD_LINES - 32;
/** PIDR4..7, PIDR0..3, CIDR0..3 at 0xFD0..0xFFC (QEMU hw/intc/arm_gic.c gic_id_gicv2; GIC-400 TRM). */
const ID_REGS = [0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

export interface GicdState {
  /** GICD_CTLR: 0 or 1. */
  ctlr: number;
  /** SPI enables, a bit per INTID 32..287 (bit 0 of byte 0 = INTID 32): 32 bytes of hex. */
  enabled: string;
  /** SPI priorities, INTID 32 first: 256 bytes of hex. */
  priority: string;
  /** SPI target CPU masks (GICD_ITARGETSR), INTID 32 first: 256 bytes of hex. */
  targets: string;
  /** SPIs whose input line is high (setSpi). */
  lines: number[];
  /** Edge SPIs pending with no target CPU. */
  latched: number[];
}

const isSpi = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 32 && v < GICD_LINES;

/** Validates a saved GicdState; throws StateError naming the field. */
export function validateGicdState(state: unknown, vcpus = GICD_MAX_CPUS, component = 'GIC distributor'): GicdState {
  const r = new StateReader(component, state);
  const ctlr = r.int('ctlr', 0, 1);
  r.bytes('enabled', SPIS / 8);
  r.bytes('priority', SPIS);
  const targets = r.bytes('targets', SPIS);
  const valid = (1 << vcpus) - 1;
  targets.forEach((t, i) => {
    if (t & ~valid) r.fail('targets', `INTID ${32 + i} targets CPU mask 0x${t.toString(16)} beyond the ${vcpus} CPU interface(s)`);
  });
  const list = (field: string): number[] => {
    const l = r.array(field);
    l.forEach((x, i) => {
      if (!isSpi(x)) r.fail(field, `entry ${i} is not an SPI INTID 32..${GICD_LINES - 1}: ${JSON.stringify(x)}`);
    });
    return l as number[];
  };
  const lines = list('lines');
  const latched = list('latched');
  return { ctlr, enabled: r.raw('enabled') as string, priority: r.raw('priority') as string, targets: r.raw('targets') as string, lines, latched };
}

export class GicDistributor {
  private readonly shared = new GicSharedState();
  private readonly targets = new Uint8Array(GICD_LINES);
  private readonly level = new Uint8Array(GICD_LINES);
  private readonly latched = new Uint8Array(GICD_LINES);
  private readonly cpuMask: number;

  /**
   * @param cpus the CPU interfaces, vCPU i's at index i (1..8); the distributor shares its
   *   state with them (GicCpuInterface.connect)
   * @param signal called with i whenever vCPU i's IRQ output (GicCpuInterface.irqAsserted) rose
   *   or fell because of a distributor access or setSpi: the machine wakes or kicks it
   */
  constructor(
    private readonly cpus: readonly GicCpuInterface[],
    private readonly signal: (vcpu: number) => void,
  ) {
    if (cpus.length < 1 || cpus.length > GICD_MAX_CPUS) throw new RangeError(`a GICv2 distributor serves 1..${GICD_MAX_CPUS} CPU interfaces, not ${cpus.length}`);
    this.cpuMask = (1 << cpus.length) - 1;
    for (const c of cpus) c.connect(this.shared);
  }

  // ---- device lines -------------------------------------------------------------------------

  /**
   * Drives SPI `intid`'s input line (32..287), as a device does. Level: pending at its target
   * while high. Edge (GICD_ICFGR): a rising edge latches pending. Repeating the current level
   * does nothing (QEMU's gic_set_irq).
   */
  setSpi(intid: number, level: boolean): void {
    if (!isSpi(intid)) throw new RangeError(`SPI INTID ${intid} is outside 32..${GICD_LINES - 1}`);
    const v = level ? 1 : 0;
    if (this.level[intid] === v) return;
    this.level[intid] = v;
    this.signalling(() => {
      const to = this.route(intid);
      if (this.isEdge(intid)) {
        if (!level) return;
        if (to >= 0) this.cpus[to]!.setLine(intid, true);
        else this.latched[intid] = 1;
      } else if (to >= 0) {
        this.cpus[to]!.setLine(intid, level);
      }
    });
  }

  /** The CPU an SPI is forwarded to, or -1 (no target). */
  route(intid: number): number {
    if (this.cpus.length === 1) return 0;
    const t = this.targets[intid]! & this.cpuMask;
    return t === 0 ? -1 : 31 - Math.clz32(t & -t);
  }

  private isEdge(intid: number): boolean {
    return this.cpus[0]!.triggerOf(intid) === 'edge';
  }

  /** Runs `change`, then signals every vCPU whose IRQ output changed. */
  private signalling(change: () => void): void {
    const before = this.cpus.map((c) => c.irqAsserted);
    change();
    for (let i = 0; i < this.cpus.length; i++) {
      this.cpus[i]!.invalidate();
      if (this.cpus[i]!.irqAsserted !== before[i]) this.signal(i);
    }
  }

  // ---- registers ----------------------------------------------------------------------------

  /** A guest read by vCPU `vcpu` of `size` bytes at `offset` in the distributor's frame. */
  read(vcpu: number, offset: number, size: number): number {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.cpus.length || offset < 0 || offset >= GICD_SIZE) return 0;
    if (size >= 4) return offset & 3 ? 0 : this.readWord(vcpu, offset);
    const bytes = size === 2 ? 2 : 1;
    if (offset & (bytes - 1)) return 0;
    const word = this.readWord(vcpu, offset & ~3);
    return (word >>> ((offset & 3) * 8)) & (bytes === 2 ? 0xffff : 0xff);
  }

  /** A guest write by vCPU `vcpu` of `size` bytes at `offset`. */
  write(vcpu: number, offset: number, size: number, value: number): void {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.cpus.length || offset < 0 || offset >= GICD_SIZE) return;
    const bytes = size >= 4 ? 4 : size === 2 ? 2 : 1;
    if (offset & (bytes - 1)) return;
    value = bytes === 4 ? value >>> 0 : value & (bytes === 2 ? 0xffff : 0xff);
    this.signalling(() => this.writeAccess(vcpu, offset, bytes, value));
  }

  private readWord(cpu: number, off: number): number {
    const c = this.cpus[cpu]!;
    if (off === 0x000) return this.shared.enabled ? 1 : 0;
    if (off === 0x004) return (GICD_LINES / 32 - 1) | ((this.cpus.length - 1) << 5);
    if (off === 0x008) return GICD_IIDR;
    if (off >= 0x100 && off < 0x400) {
      const base = ((off & 0x7f) >> 2) * 32;
      const kind = (off - 0x100) >> 8; // 0 enable, 1 pending, 2 active
      let bits = 0;
      for (let i = 0; i < 32; i++) {
        const id = base + i;
        if (id >= GICD_LINES) break;
        let on: boolean;
        if (kind === 0) on = id < 16 || (id < 32 ? c.isEnabled(id) : this.shared.spiEnabled[id] === 1);
        else if (kind === 1) on = id < 32 ? c.isPending(id) : this.latched[id] === 1 || this.cpus.some((x) => x.isPending(id));
        else on = id < 32 ? c.isActive(id) : this.cpus.some((x) => x.isActive(id));
        if (on) bits |= 1 << i;
      }
      return bits >>> 0;
    }
    if ((off >= 0x400 && off < 0xc00) || (off >= 0xf10 && off < 0xf30)) {
      let w = 0;
      for (let k = 0; k < 4; k++) w |= this.readByte(cpu, off + k) << (8 * k);
      return w >>> 0;
    }
    if (off >= 0xc00 && off < 0xd00) {
      const base = ((off - 0xc00) >> 2) * 16;
      let bits = 0;
      for (let i = 0; i < 16; i++) {
        const id = base + i;
        if (id >= GICD_LINES) break;
        if (id < 16 || c.triggerOf(id) === 'edge') bits |= 2 << (2 * i);
      }
      return bits >>> 0;
    }
    if (off >= 0xfd0 && off < 0x1000) return ID_REGS[(off - 0xfd0) >> 2]!;
    return 0;
  }

  private readByte(cpu: number, off: number): number {
    if (off >= 0xf10) return this.cpus[cpu]!.sgiSourcesOf((off - 0xf10) & 0xf);
    const id = (off - 0x400) & 0x3ff;
    if (id >= GICD_LINES) return 0;
    if (off < 0x800) return id < 32 ? this.cpus[cpu]!.priorityOf(id) : this.shared.spiPriority[id]!;
    return id < 32 ? 1 << cpu : this.targets[id]!;
  }

  private writeAccess(cpu: number, off: number, bytes: number, value: number): void {
    const c = this.cpus[cpu]!;
    // byte-accessible registers
    if ((off >= 0x400 && off < 0xc00) || (off >= 0xf10 && off < 0xf30)) {
      for (let k = 0; k < bytes; k++) this.writeByte(cpu, off + k, (value >>> (8 * k)) & 0xff);
      return;
    }
    if (off >= 0x100 && off < 0x400) {
      // set/clear registers: a narrower write acts on the bits it writes
      const word = off & ~3;
      const bits = (value << (8 * (off & 3))) >>> 0;
      const base = ((word & 0x7f) >> 2) * 32;
      const op = (word - 0x100) >> 7; // 0 ISENABLER 1 ICENABLER 2 ISPENDR 3 ICPENDR 4 ISACTIVER 5 ICACTIVER
      for (let i = 0; i < 32; i++) {
        if (!((bits >>> i) & 1)) continue;
        const id = base + i;
        if (id >= GICD_LINES) break;
        this.setClear(c, op, id);
      }
      return;
    }
    if (bytes !== 4) return;
    if (off === 0x000) {
      this.shared.enabled = (value & 1) === 1;
    } else if (off >= 0xc00 && off < 0xd00) {
      const base = ((off - 0xc00) >> 2) * 16;
      for (let i = 0; i < 16; i++) {
        const id = base + i;
        if (id < 16) continue; // SGIs are always edge
        if (id >= GICD_LINES) break;
        const trigger = (value >>> (2 * i)) & 2 ? 'edge' : 'level';
        if (id < 32) c.configure(id, trigger);
        else this.configureSpi(id, trigger);
      }
    } else if (off === 0xf00) {
      this.sendSgi(cpu, value);
    }
  }

  private setClear(c: GicCpuInterface, op: number, id: number): void {
    const banked = id < 32;
    switch (op) {
      case 0:
      case 1:
        if (banked) c.setBankEnabled(id, op === 0);
        else this.shared.spiEnabled[id] = op === 0 ? 1 : 0;
        return;
      case 2:
        if (id < 16) return; // SGIs: GICD_SPENDSGIR
        if (banked) c.setPending(id);
        else {
          const to = this.route(id);
          if (to >= 0) this.cpus[to]!.setPending(id);
          else this.latched[id] = 1;
        }
        return;
      case 3:
        if (id < 16) return; // SGIs: GICD_CPENDSGIR
        if (banked) c.clearPending(id);
        else {
          this.latched[id] = 0;
          for (const x of this.cpus) x.clearPending(id);
        }
        return;
      case 4:
        if (banked) c.setActive(id);
        else {
          const to = this.route(id);
          if (to >= 0) this.cpus[to]!.setActive(id);
        }
        return;
      default:
        if (banked) c.clearActive(id);
        else for (const x of this.cpus) x.clearActive(id);
    }
  }

  private writeByte(cpu: number, off: number, v: number): void {
    if (off >= 0xf10) {
      const sgi = (off - 0xf10) & 0xf;
      const c = this.cpus[cpu]!;
      if (off < 0xf20) c.clearSgiSources(sgi, v);
      else c.setSgiSources(sgi, v & this.cpuMask);
      return;
    }
    const id = (off - 0x400) & 0x3ff;
    if (id >= GICD_LINES) return;
    if (off < 0x800) {
      if (id < 32) this.cpus[cpu]!.setBankPriority(id, v);
      else this.shared.spiPriority[id] = v;
      return;
    }
    if (id < 32) return; // read-only
    this.retarget(id, v & this.cpuMask);
  }

  private retarget(id: number, targets: number): void {
    const from = this.route(id);
    this.targets[id] = targets;
    const to = this.route(id);
    if (from === to) return;
    const edge = this.isEdge(id);
    const high = !edge && this.level[id] === 1;
    // pending state not explained by a high level line moves with the interrupt
    let moved = this.latched[id] === 1;
    this.latched[id] = 0;
    if (from >= 0) {
      const c = this.cpus[from]!;
      if (c.pendingLatched(id) && !high) moved = true;
      if (edge) c.clearPending(id);
      else c.setLine(id, false);
    }
    if (to >= 0) {
      const c = this.cpus[to]!;
      if (high) c.setLine(id, true);
      if (moved) c.setPending(id);
    } else if (moved) {
      this.latched[id] = 1;
    }
  }

  private configureSpi(id: number, trigger: 'level' | 'edge'): void {
    if (this.cpus[0]!.triggerOf(id) === trigger) return;
    for (const c of this.cpus) c.configure(id, trigger);
    this.latched[id] = 0;
    // a level line that is high is pending at its target again
    const to = this.route(id);
    if (trigger === 'level' && this.level[id] === 1 && to >= 0) this.cpus[to]!.setLine(id, true);
  }

  private sendSgi(cpu: number, value: number): void {
    const sgi = value & 0xf;
    let targets: number;
    switch ((value >>> 24) & 3) {
      case 0:
        targets = (value >>> 16) & 0xff;
        break;
      case 1:
        targets = this.cpuMask & ~(1 << cpu);
        break;
      case 2:
        targets = 1 << cpu;
        break;
      default:
        return; // reserved
    }
    targets &= this.cpuMask;
    for (let t = 0; t < this.cpus.length; t++) if ((targets >>> t) & 1) this.cpus[t]!.sendSgi(sgi, cpu);
  }

  // ---- persistence --------------------------------------------------------------------------

  save(): GicdState {
    const enabled = new Uint8Array(SPIS / 8);
    for (let i = 0; i < SPIS; i++) if (this.shared.spiEnabled[32 + i]) enabled[i >> 3]! |= 1 << (i & 7);
    const lines: number[] = [];
    const latched: number[] = [];
    for (let id = 32; id < GICD_LINES; id++) {
      if (this.level[id]) lines.push(id);
      if (this.latched[id]) latched.push(id);
    }
    return {
      ctlr: this.shared.enabled ? 1 : 0,
      enabled: hexBytes(enabled),
      priority: hexBytes(this.shared.spiPriority.subarray(32, GICD_LINES)),
      targets: hexBytes(this.targets.subarray(32)),
      lines,
      latched,
    };
  }

  /** Validates (throwing StateError naming the field) and applies a saved state. */
  restore(state: unknown): void {
    const s = validateGicdState(state, this.cpus.length);
    const enabled = Buffer.from(s.enabled, 'hex');
    this.shared.enabled = s.ctlr === 1;
    for (let i = 0; i < SPIS; i++) this.shared.spiEnabled[32 + i] = (enabled[i >> 3]! >> (i & 7)) & 1;
    this.shared.spiPriority.set(Buffer.from(s.priority, 'hex'), 32);
    this.targets.set(Buffer.from(s.targets, 'hex'), 32);
    this.level.fill(0);
    this.latched.fill(0);
    for (const id of s.lines) this.level[id] = 1;
    for (const id of s.latched) this.latched[id] = 1;
    for (const c of this.cpus) c.invalidate();
  }
}
