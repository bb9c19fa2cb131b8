/**
 * What the x86 machine does with a KVM exit its slice does not handle in place: port I/O to
 * COM1 and the exit port, and the exits that go back to the machine runtime as its VcpuExit
 * (HLT, system events, faults). KVM_EXIT_* meanings: Documentation/virt/kvm/api.rst, "The
 * kvm_run structure".
 */
import type { MachineRuntime, SystemEventKind, VcpuExit } from '@plugvisor/core';
import { HALT } from '@plugvisor/core';
import { EXIT_NAME, type KvmExit } from './ffi/kvm.js';
import type { X86Vcpu } from './cpu/vcpu.js';
import type { Serial } from './devices/serial.js';
import { GuestFault } from './errors.js';
import { Ports } from './traps.js';

/** A port I/O exit that is not a hypercall: COM1, the exit port, or an unclaimed port. */
export function portIo(io: Extract<KvmExit, { kind: 'io' }>, bytes: Uint8Array, serial: Serial, runtime: MachineRuntime, vcpu: number): void {
  const { out, size, count, port, dataOffset: data } = io;
  if (port >= Ports.COM1 && port <= Ports.COM1_END) {
    for (let i = 0; i < count; i++) {
      const at = data + i * size;
      if (out) serial.write(port - Ports.COM1, bytes[at]!);
      else {
        bytes[at] = serial.read(port - Ports.COM1);
        for (let j = 1; j < size; j++) bytes[at + j] = 0;
      }
    }
    return;
  }
  if (port === Ports.EXIT && out) {
    let value = 0;
    for (let j = size - 1; j >= 0; j--) value = value * 256 + bytes[data + j]!;
    const kinds: SystemEventKind[] = ['off', 'reset', 'crash'];
    runtime.systemEvent({ kind: kinds[value & 0xff] ?? 'crash', vcpu, data: [BigInt(value)] });
    return;
  }
  // Unclaimed ports: reads return zeros (as Firecracker's bus), writes are dropped.
  if (!out) bytes.fill(0, data, data + count * size);
}

/** The runtime's view of an exit that ends the slice. */
export function exitToRuntime(v: X86Vcpu, exit: Exclude<KvmExit, { kind: 'io' | 'interrupted' }>): VcpuExit {
  const reason = v.kvm.exitReason;
  const fault = (why: string, suberror?: number): VcpuExit => ({
    kind: 'fault',
    fault: new GuestFault(v.index, v.rip(), why, { register: 'RIP', exitReason: reason, ...(suberror !== undefined ? { suberror } : {}) }),
  });
  switch (exit.kind) {
    case 'hlt':
      // Only without the in-kernel irqchip (with it, HLT waits inside KVM for an interrupt).
      return HALT;
    case 'system-event': {
      // KVM_SYSTEM_EVENT_SHUTDOWN 1, RESET 2, CRASH 3
      const kind: SystemEventKind = exit.type === 2 ? 'reset' : exit.type === 3 ? 'crash' : 'off';
      return { kind: 'system-event', event: { kind, vcpu: v.index, data: [BigInt(exit.type)] } };
    }
    case 'mmio':
      return fault(`${exit.write ? 'write to' : 'read from'} 0x${exit.address.toString(16)} (${exit.length} bytes): outside RAM and devices`);
    case 'shutdown':
      return fault('triple fault (KVM_EXIT_SHUTDOWN): an exception the guest could not handle');
    case 'internal-error': {
      const sub = exit.suberror;
      const data = exit.data.map((d) => `0x${d.toString(16)}`);
      const what = ['', 'emulation failure', 'exception while delivering an exception', 'delivery of an event failed', 'unexpected exit reason'][sub] ?? `suberror ${sub}`;
      return fault(`KVM internal error: ${what}${data.length ? ` (data ${data.join(' ')})` : ''}`, sub);
    }
    case 'fail-entry':
      return fault(`VM entry failed (hardware reason 0x${exit.hardwareReason.toString(16)})`);
    case 'other':
      return fault(`unexpected KVM exit ${EXIT_NAME[exit.reason] ?? exit.reason}`);
  }
}
