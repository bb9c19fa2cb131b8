import { FlatGuestPages, type CapabilityName, type MachineCapabilities } from '../machine/capabilities.js';
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
  /** The 'guest-pages' capability: removed pages zeroed, nothing faults (no guest runs here). */
  private readonly guestPages: FlatGuestPages;

  constructor(
    readonly vcpuCount = 1,
    readonly ramBase = 0x4000_0000n,
    ramSize = 1 << 20,
  ) {
    this.ram = new Uint8Array(ramSize);
    this.memory = new FlatGuestMemory([{ base: ramBase, bytes: this.ram }]);
    this.guestPages = new FlatGuestPages(this.ram, ramBase);
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

  capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    return (name === 'guest-pages' ? this.guestPages : undefined) as MachineCapabilities[K] | undefined;
  }

  setInterrupt(vcpu: number, intid: number, level: boolean): void {
    if (level) this.interrupts[vcpu]!.add(intid);
    else this.interrupts[vcpu]!.delete(intid);
  }
}
