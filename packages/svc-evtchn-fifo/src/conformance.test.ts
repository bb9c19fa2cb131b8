import { describe, expect, it } from 'vitest';
import { Hypervisor, serviceBehaviour, type CallHandler, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance, withHandler } from '@plugvisor/core/testing';
import { createXenService } from '@plugvisor/svc-xen';
import { createEvtchnFifoService, type FifoDomain } from './index.js';

/**
 * svc-evtchn-fifo against core's conformance kit. Its three calls are sub-ops of svc-xen's
 * HYPERVISOR_event_channel_op: probed as a guest makes them (x16 = 32, cmd in x0, the struct at
 * x1) in the configuration with `evtchn-fifo` on, and also through event_channel_op's own
 * probes, which try every EVTCHNOP cmd. Broken variants wrap the real plugin.
 */

describe('svc-evtchn-fifo: conformance kit', () => {
  it('conforms beside svc-xen', () => {
    expect(checkServiceConformance(createEvtchnFifoService(), { companions: [createXenService()] })).toEqual([]);
  });

  it('svc-xen still conforms with FIFO in the build (its event_channel_op probes reach the FIFO ops)', () => {
    expect(checkServiceConformance(createXenService(), { companions: [createEvtchnFifoService()] })).toEqual([]);
  });

  it("records the FIFO ops' answers through event_channel_op when the VM opted in", () => {
    const xen = createXenService();
    const hv = Hypervisor.compose([xen, createEvtchnFifoService()], { name: 'fifo' });
    const b = serviceBehaviour(hv, xen);
    expect(b.default!.HYPERVISOR_event_channel_op!['x0=0xb x1=0x40001000']).toBe('x0=0xffffffffffffffda'); // not opted in: -ENOSYS
    const on = b['evtchn-fifo=on']!.HYPERVISOR_event_channel_op!;
    expect(on['x0=0xb x1=0x40001000']).toBe('x0=0xffffffffffffffea'); // init_control, control_gfn 0 is not RAM: -EINVAL
    expect(on['x0=0xc x1=0x40001000']).toBe('x0=0xffffffffffffffa1'); // expand_array before init_control: -EOPNOTSUPP
  });

  it("records init_control's successful path from svc-xen's evtchn_init_control sample", () => {
    const xen = createXenService();
    const hv = Hypervisor.compose([xen, createEvtchnFifoService()], { name: 'fifo' });
    const b = serviceBehaviour(hv, xen);
    // {control_gfn 0x40004 (a page of the probe machine's RAM), offset 0, vcpu 0, OUT link_bits, _pad[7]}
    const init = '@0x40001000:' + '0400040000000000' + '00000000' + '00000000' + '00' + '00'.repeat(7);
    expect(b.default!.HYPERVISOR_event_channel_op![`x0=0xb x1=0x40001000 ${init}`]).toBe('x0=0xffffffffffffffda'); // not opted in: -ENOSYS
    const on = b['evtchn-fifo=on']!.HYPERVISOR_event_channel_op!;
    expect(on[`x0=0xb x1=0x40001000 ${init}`]).toBe('x0=0x0 | mem+0x1010=11'); // FIFO on; link_bits = 17 copied out
    expect(on[`x0=0xc x1=0x40001000 ${init}`]).toBe('x0=0xffffffffffffffa1'); // as expand_array {array_gfn}: a fresh domain is not FIFO yet
  });
});

describe('svc-evtchn-fifo: the kit catches FIFO mistakes', () => {
  it('an argument struct read without a range check: a host exception instead of -EFAULT', () => {
    const broken = withHandler<FifoDomain>(createEvtchnFifoService(), 'EVTCHNOP_expand_array', (h) => (v, b) => {
      v.machine.memory.readU64(v.regs.get(1)); // array_gfn, copy_from_guest without the range check
      h(v, b);
    });
    expect(checkServiceConformance(broken, { companions: [createXenService()] })).toContainEqual(
      expect.stringMatching(/^call EVTCHNOP_expand_array probe \[x0=0xc x1=0x40010000\] \(evtchn-fifo=on\) threw: GuestMemoryError/),
    );
  });

  it('a handler that writes x1 (a sub-op answers in x0 only, its OUT fields go to the struct)', () => {
    const broken = withHandler<FifoDomain>(createEvtchnFifoService(), 'EVTCHNOP_init_control', (h) => (v, b) => {
      h(v, b);
      v.regs.setU32(1, 17); // link_bits in a register instead of evtchn_init_control.link_bits
    });
    expect(checkServiceConformance(broken, { companions: [createXenService()] })).toContainEqual(
      expect.stringMatching(/^call EVTCHNOP_init_control writes x1, which its signature does not declare as a result/),
    );
  });

  it('FIFO (Xen 4.4 ABI) turned on by default without a legacy reason', () => {
    const fifo = createEvtchnFifoService();
    const features = fifo.surface.features.map((f) => ({ ...f, default: 'legacy-opt-out' as const }));
    const broken = Object.freeze({ ...fifo, surface: { ...fifo.surface, features } });
    expect(checkServiceConformance(broken, { companions: [createXenService()] })).toContainEqual(
      expect.stringMatching(/^feature 'evtchn-fifo' is on by default but declares no 'legacy' reason/),
    );
  });
});
