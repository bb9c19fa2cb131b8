import { Conduits, type Vm } from '@plugvisor/core';
import type { MemoryMachine } from '@plugvisor/core/testing';
import { HYPERVISOR } from '../abi.js';

/**
 * Drives Xen hypercalls the way a guest issues them: argument structs written into guest RAM,
 * x16 = hypercall, x0.. = arguments, HVC dispatched through the VM's Xen conduit, result read
 * back from x0 as a signed value. For service-logic tests on core's MemoryMachine.
 */
export class XenGuest {
  /** Scratch area for argument structs (guest-physical). */
  readonly scratch: bigint;

  constructor(
    readonly vm: Vm,
    readonly machine: MemoryMachine,
    scratch?: bigint,
  ) {
    this.scratch = scratch ?? machine.ramBase + BigInt(machine.ram.byteLength - 4096);
  }

  /** Raw hypercall: returns x0 as a signed 64-bit number. */
  hypercall(vcpu: number, op: number | bigint, ...args: Array<number | bigint>): number {
    const v = this.machine.vcpus[vcpu]!;
    const r = v.regs;
    r.set(16, BigInt(op));
    for (let i = 0; i < 5; i++) r.set(i, BigInt(args[i] ?? 0));
    this.vm.dispatch(Conduits.xen, v);
    return Number(BigInt.asIntN(64, r.get(0)));
  }

  /** Writes `bytes` at the scratch area (or `at`) and returns its address. */
  put(bytes: Uint8Array, at: bigint = this.scratch): bigint {
    this.machine.memory.write(at, bytes);
    return at;
  }

  /** A struct of little-endian fields: [offset, size (1|2|4|8), value]. */
  struct(size: number, fields: ReadonlyArray<readonly [number, 1 | 2 | 4 | 8, number | bigint]>, at: bigint = this.scratch): bigint {
    const b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    for (const [off, sz, val] of fields) {
      if (sz === 1) dv.setUint8(off, Number(val));
      else if (sz === 2) dv.setUint16(off, Number(val), true);
      else if (sz === 4) dv.setUint32(off, Number(val) >>> 0, true);
      else dv.setBigUint64(off, BigInt(val), true);
    }
    return this.put(b, at);
  }

  u32(gpa: bigint): number {
    return this.machine.memory.readU32(gpa);
  }
  u16(gpa: bigint): number {
    return this.machine.memory.readU32(gpa & ~3n) >>> (Number(gpa & 3n) * 8) & 0xffff;
  }

  /** event_channel_op(cmd, struct) with the struct at the scratch area. */
  evtchn(vcpu: number, cmd: number, size: number, fields: ReadonlyArray<readonly [number, 1 | 2 | 4 | 8, number | bigint]>): number {
    const at = this.struct(size, fields);
    return this.hypercall(vcpu, HYPERVISOR.event_channel_op, cmd, at);
  }

  // Convenience wrappers returning [rc, port].
  allocUnbound(remoteDom = 0x7ff0, vcpu = 0): [number, number] {
    const rc = this.evtchn(vcpu, 6, 8, [[0, 2, 0x7ff0], [2, 2, remoteDom]]);
    return [rc, this.u32(this.scratch + 4n)];
  }
  bindInterdomain(remoteDom: number, remotePort: number, vcpu = 0): [number, number] {
    const rc = this.evtchn(vcpu, 0, 12, [[0, 2, remoteDom], [4, 4, remotePort]]);
    return [rc, this.u32(this.scratch + 8n)];
  }
  bindIpi(target: number, vcpu = 0): [number, number] {
    const rc = this.evtchn(vcpu, 7, 8, [[0, 4, target]]);
    return [rc, this.u32(this.scratch + 4n)];
  }
  bindVirq(virq: number, target: number, vcpu = 0): [number, number] {
    const rc = this.evtchn(vcpu, 1, 12, [[0, 4, virq], [4, 4, target]]);
    return [rc, this.u32(this.scratch + 8n)];
  }
  send(port: number, vcpu = 0): number {
    return this.evtchn(vcpu, 4, 4, [[0, 4, port]]);
  }
  close(port: number, vcpu = 0): number {
    return this.evtchn(vcpu, 3, 4, [[0, 4, port]]);
  }
  unmask(port: number, vcpu = 0): number {
    return this.evtchn(vcpu, 9, 4, [[0, 4, port]]);
  }
  bindVcpu(port: number, target: number, vcpu = 0): number {
    return this.evtchn(vcpu, 8, 8, [[0, 4, port], [4, 4, target]]);
  }
  reset(dom = 0x7ff0, vcpu = 0): number {
    return this.evtchn(vcpu, 10, 2, [[0, 2, dom]]);
  }
  /** EVTCHNOP_status: [rc, status, vcpu, u16 @16, u32 @20]. */
  status(port: number, dom = 0x7ff0, vcpu = 0): [number, number, number, number, number] {
    const rc = this.evtchn(vcpu, 5, 24, [[0, 2, dom], [4, 4, port]]);
    const s = this.scratch;
    return [rc, this.u32(s + 8n), this.u32(s + 12n), this.u16(s + 16n), this.u32(s + 20n)];
  }
  /** XENMEM_add_to_physmap(shared_info, gfn). */
  mapSharedInfo(gfn: bigint, vcpu = 0): number {
    const at = this.struct(24, [[0, 2, 0x7ff0], [4, 4, 0], [8, 8, 0n], [16, 8, gfn]]);
    return this.hypercall(vcpu, HYPERVISOR.memory_op, 7, at);
  }
  /** VCPUOP_register_vcpu_info(target, {mfn, offset}). */
  registerVcpuInfo(target: number, mfn: bigint, offset: number, vcpu = 0): number {
    const at = this.struct(16, [[0, 8, mfn], [8, 4, offset]]);
    return this.hypercall(vcpu, HYPERVISOR.vcpu_op, 10, target, at);
  }
}
