import type { CapabilityName, GuestPages, MachineCapabilities } from '../machine/capabilities.js';
import type { Machine, SystemEvent, VcpuContext, VcpuPowerState } from '../machine/machine.js';
import { FlatGuestMemory } from '../machine/memory.js';
import { RegisterFile } from '../machine/registers.js';

/**
 * A machine with RAM and vCPU bookkeeping but no execution engine. It is for testing the
 * core's own mechanics (composition, routing, snapshots) and services' state handling;
 * guest-visible behaviour is tested with real guest code on a real backend.
 */
export class MemoryMachine implements Machine {
  readonly arch = 'arm64' as const;
  readonly memory: FlatGuestMemory;
  readonly ram: Uint8Array;
  readonly vcpus: VcpuContext[];
  readonly events: SystemEvent[] = [];
  readonly power: VcpuPowerState[];
  readonly interrupts: Array<Set<number>>;
  readonly entries: Array<{ entry: bigint; context: bigint } | undefined>;

  constructor(
    readonly vcpuCount = 1,
    readonly ramBase = 0x4000_0000n,
    ramSize = 1 << 20,
  ) {
    this.ram = new Uint8Array(ramSize);
    this.memory = new FlatGuestMemory([{ base: ramBase, bytes: this.ram }]);
    this.vcpus = Array.from({ length: vcpuCount }, (_, index) => ({ index, regs: new RegisterFile(32), machine: this, trapLength: 4 }));
    this.power = Array.from({ length: vcpuCount }, (_, i) => (i === 0 ? 'on' : 'off'));
    this.interrupts = Array.from({ length: vcpuCount }, () => new Set());
    this.entries = Array.from({ length: vcpuCount }, () => undefined);
  }

  affinityOf(vcpu: number): bigint {
    return BigInt((vcpu & 0xf) | (((vcpu >> 4) & 0xff) << 8) | (((vcpu >> 12) & 0xff) << 16));
  }

  vcpuByAffinity(affinity: bigint): number {
    for (let i = 0; i < this.vcpuCount; i++) if (this.affinityOf(i) === affinity) return i;
    return -1;
  }

  powerState(vcpu: number): VcpuPowerState {
    return this.power[vcpu]!;
  }

  powerOn(vcpu: number, entry: bigint, context: bigint): void {
    this.power[vcpu] = 'on-pending';
    this.entries[vcpu] = { entry, context };
  }

  powerOff(vcpu: number): void {
    this.power[vcpu] = 'off';
  }

  idle(_vcpu: number): void {}

  systemEvent(event: SystemEvent): void {
    this.events.push(event);
  }

  /**
   * Removed guest pages (the 'guest-pages' capability), as page numbers from ramBase. A set is
   * enough here: this machine runs no guest, so nothing faults; a removed page is zeroed so
   * that what it held cannot come back, and `add` zeroes it again, as the arm64 machine does.
   */
  readonly removed = new Set<number>();

  private readonly guestPages: GuestPages = {
    remove: (gpa, count) => this.changePages(gpa, count, true),
    add: (gpa, count) => this.changePages(gpa, count, false),
    isPresent: (gpa) => {
      const page = this.pageOf(gpa);
      return page !== undefined && !this.removed.has(page);
    },
    size: () => ({ base: this.ramBase, pages: this.ram.byteLength / 4096, present: this.ram.byteLength / 4096 - this.removed.size }),
  };

  capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    return (name === 'guest-pages' ? this.guestPages : undefined) as MachineCapabilities[K] | undefined;
  }

  private pageOf(gpa: bigint): number | undefined {
    const off = gpa - this.ramBase;
    return off < 0n || off >= BigInt(this.ram.byteLength) ? undefined : Number(off >> 12n);
  }

  private changePages(gpa: bigint, count: number, remove: boolean): number {
    const first = this.pageOf(gpa);
    if ((gpa & 0xfffn) !== 0n || first === undefined || !Number.isInteger(count) || count < 0 || first + count > this.ram.byteLength / 4096) {
      throw new Error(`guest-pages: 0x${gpa.toString(16)} + ${count} pages is not inside RAM`);
    }
    let changed = 0;
    for (let p = first; p < first + count; p++) {
      if (this.removed.has(p) === remove) continue;
      if (remove) this.removed.add(p);
      else this.removed.delete(p);
      this.ram.fill(0, p * 4096, (p + 1) * 4096);
      changed++;
    }
    return changed;
  }

  setInterrupt(vcpu: number, intid: number, level: boolean): void {
    if (level) this.interrupts[vcpu]!.add(intid);
    else this.interrupts[vcpu]!.delete(intid);
  }
}
