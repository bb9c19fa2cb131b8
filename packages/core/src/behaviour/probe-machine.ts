import { FlatGuestPages, type CapabilityName, type MachineCapabilities } from '../machine/capabilities.js';
import type { Machine, SystemEvent, VcpuContext, VcpuPowerState } from '../machine/machine.js';
import { FlatGuestMemory } from '../machine/memory.js';
import { RegisterFile } from '../machine/registers.js';

/**
 * The machine behaviour probes run on: RAM and vCPU bookkeeping with no execution engine, whose
 * every source of nondeterminism is fixed (entropy reads as all ones, so a random result shows
 * exactly which bits may be random; the clocks read fixed values) and which logs every side
 * effect a call has on the machine (power, events, interrupts, idling), because those are
 * guest-visible too.
 *
 * Two vCPUs, the second off, so calls that target another CPU have one to find.
 */
export const PROBE_RAM_BASE = 0x4000_0000n;
/** Small on purpose: probes diff RAM after every call. 16 pages is room for Xen's shared pages. */
export const PROBE_RAM_SIZE = 64 * 1024;
export const PROBE_WALL_CLOCK_NS = 1_700_000_000_123_456_789n;
export const PROBE_COUNTER = 0x0123_4567_89ab_cdefn;

export class ProbeMachine implements Machine {
  readonly arch = 'arm64' as const;
  readonly vcpuCount = 2;
  readonly ram = new Uint8Array(PROBE_RAM_SIZE);
  readonly memory = new FlatGuestMemory([{ base: PROBE_RAM_BASE, bytes: this.ram }]);
  readonly vcpus: VcpuContext[];
  /** Side effects of the current probe, in order, as canonical text. */
  readonly effects: string[] = [];
  private power: VcpuPowerState[] = ['on', 'off'];

  constructor() {
    this.vcpus = [0, 1].map((index) => ({ index, regs: new RegisterFile(32), machine: this, viaSmc: false, trapLength: 4 }));
  }

  /** Back to the state every probe starts from. */
  reset(): void {
    this.ram.fill(0);
    this.effects.length = 0;
    this.power = ['on', 'off'];
    this.pages.clear();
    for (const v of this.vcpus) v.regs.u64.fill(0n);
  }

  affinityOf(vcpu: number): bigint {
    return BigInt(vcpu); // KVM's MPIDR for vCPUs 0..15: Aff0 = index
  }

  vcpuByAffinity(affinity: bigint): number {
    return affinity >= 0n && affinity < BigInt(this.vcpuCount) ? Number(affinity) : -1;
  }

  powerState(vcpu: number): VcpuPowerState {
    return this.power[vcpu]!;
  }

  powerOn(vcpu: number, entry: bigint, context: bigint): void {
    this.power[vcpu] = 'on-pending';
    this.effects.push(`power-on(${vcpu},0x${entry.toString(16)},0x${context.toString(16)})`);
  }

  powerOff(vcpu: number): void {
    this.power[vcpu] = 'off';
    this.effects.push(`power-off(${vcpu})`);
  }

  idle(vcpu: number): void {
    this.effects.push(`idle(${vcpu})`);
  }

  systemEvent(event: SystemEvent): void {
    this.effects.push(`event(${event.kind},${event.vcpu}${event.data.map((d) => `,0x${d.toString(16)}`).join('')})`);
  }

  setInterrupt(vcpu: number, intid: number, level: boolean): void {
    this.effects.push(`irq(${vcpu},${intid},${level ? 1 : 0})`);
  }

  /** Removed guest pages ('guest-pages'); every probe starts with none, and each change is logged as an effect. */
  private readonly pages = new FlatGuestPages(this.ram, PROBE_RAM_BASE, (gpa, count, removed) =>
    this.effects.push(`${removed ? 'page-remove' : 'page-add'}(0x${gpa.toString(16)},${count})`),
  );

  /** Fixed clocks, entropy reading as ones, interrupt configuration logged as an effect, no interrupt pending, page removals logged, a CPU identity of zeros, pointers taken as physical. */
  private readonly capabilities: MachineCapabilities = Object.freeze({
    'counter-clock': { sample: () => ({ wallClockNs: PROBE_WALL_CLOCK_NS, counter: PROBE_COUNTER }) },
    'interrupt-config': { configure: (intid: number, trigger: 'level' | 'edge') => void this.effects.push(`irq-config(${intid},${trigger})`) },
    entropy: { fill: (out: Uint32Array) => void out.fill(0xffff_ffff) },
    // Never an interrupt pending: a probe's legs end on their budget only, so transcripts are deterministic.
    'interrupt-pending': { pending: () => false },
    'guest-pages': this.pages,
    // A CPU identity of zeros: results that read it are declared `host` and recorded by kind.
    'cpu-identity': { read: () => ({ midr: 0n, revidr: 0n, aidr: 0n }) },
    // The MMU off: a pointer is its own guest-physical address, as on every machine without stage 1.
    'guest-virtual': { translate: (_vcpu: number, va: bigint) => va },
  });

  capability<K extends CapabilityName>(name: K): MachineCapabilities[K] | undefined {
    return this.capabilities[name];
  }
}
