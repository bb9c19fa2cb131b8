import { describe, expect, it } from 'vitest';
import { Hypervisor, probesFor, serviceBehaviour, Conduits, type CallHandler, type CallSignature, type ServicePlugin } from '@plugvisor/core';
import { checkServiceConformance } from '@plugvisor/core/testing';
import { createXenService, XENVER, type XenDomain } from './index.js';

/**
 * svc-xen against core's conformance kit: its probe corpus (generated from the call
 * signatures) runs without a throw, every call reads and writes only the registers it
 * declares, and the kit catches the mistakes a Xen personality is prone to. Each broken
 * variant wraps the real plugin; none edits the real code.
 */

/** The real plugin with one call's handler wrapped (a tapable register interceptor on its hook). */
function wrapHandler<S>(real: ServicePlugin<S>, call: string, wrap: (h: CallHandler<S>) => CallHandler<S>): ServicePlugin<S> {
  return Object.freeze({
    ...real,
    apply(hv: Hypervisor) {
      real.apply(hv);
      hv.hooks.call.for(call).intercept({ register: (tap) => ({ ...tap, fn: wrap(tap.fn as CallHandler<S>) }) });
    },
  });
}

/** The real plugin with one call's signature rewritten. */
function withSignature<S>(real: ServicePlugin<S>, call: string, edit: (s: CallSignature) => CallSignature): ServicePlugin<S> {
  const calls = real.surface.calls.map((c) => (c.name === call ? { ...c, signature: edit(c.signature!) } : c));
  return Object.freeze({ ...real, surface: { ...real.surface, calls } });
}

describe('svc-xen: conformance kit', () => {
  it('conforms: no probe throws, every call keeps to its signature', () => {
    expect(checkServiceConformance(createXenService())).toEqual([]);
  });

  it('declares a signature for every call; the multiplexed hypercalls probe every cmd', () => {
    const xen = createXenService();
    for (const c of xen.surface.calls) expect(c.signature, c.name).toBeDefined();
    const call = (name: string) => xen.surface.calls.find((c) => c.name === name)!;
    const labels = probesFor(call('HYPERVISOR_event_channel_op'), Conduits.xen).map((p) => p.label);
    for (let cmd = 0; cmd <= 14; cmd++) expect(labels).toContain(`x0=0x${cmd.toString(16)} x1=0x40001000`);
    expect(labels).toContain('x0=0xa5a5a5a500000001 x1=0x40001000'); // int cmd: the upper half is garbage
    expect(probesFor(call('HYPERVISOR_memory_op'), Conduits.xen).length).toBeLessThanOrEqual(64);
  });

  it('records what Xen answers: copy-outs, -EFAULT for struct not wholly in RAM, -EDOM, -ENOENT', () => {
    const xen = createXenService();
    const t = serviceBehaviour(Hypervisor.compose([xen], { name: 'xen' }), xen).default!;
    const evtchn = t.HYPERVISOR_event_channel_op!;
    expect(evtchn['x0=0x1 x1=0x40001000']).toBe('x0=0x0 | mem+0x1008=01'); // bind_virq(VIRQ_TIMER, 0) → port 1
    expect(evtchn['x0=0x7 x1=0x40001000']).toBe('x0=0x0 | mem+0x1004=01'); // bind_ipi(0) → port 1
    expect(evtchn['x0=0x2 x1=0x40001000']).toBe('x0=0xffffffffffffffa1'); // bind_pirq: -EOPNOTSUPP (Arm)
    expect(evtchn['x0=0xb x1=0x40001000']).toBe('x0=0xffffffffffffffda'); // init_control: no FIFO here
    expect(evtchn['x0=0x1 x1=0x40010000']).toBe('x0=0xfffffffffffffff2'); // past RAM: -EFAULT
    expect(evtchn['x0=0xa5a5a5a500000001 x1=0x40001000']).toBe(evtchn['x0=0x1 x1=0x40001000']);
    expect(t.HYPERVISOR_memory_op!['x0=0x400007 x1=0x40001000']).toBe('x0=0xffffffffffffffdf'); // -EDOM
    expect(t.HYPERVISOR_xen_version!['x0=0x0 x1=0x40001000']).toBe('x0=0x40013');
    expect(t.HYPERVISOR_xen_version!['x0=0x6 x1=0x40001000']).toBe('x0=0x0 | mem+0x1004=054001'); // XENFEAT submap 0
    expect(t.HYPERVISOR_vcpu_op!['x0=0xa x1=0x80 x2=0x40001000']).toBe('x0=0xfffffffffffffffe'); // -ENOENT
    // A sub-op id put in x16 directly is no hypercall.
    expect(new Set(Object.values(t.EVTCHNOP_send!))).toEqual(new Set(['x0=0xffffffffffffffda']));
  });
});

describe('svc-xen: the kit catches Xen mistakes', () => {
  const real = () => createXenService();

  it('a handler that also returns a value in x1 (Xen returns in x0 only)', () => {
    const broken = wrapHandler<XenDomain>(real(), 'HYPERVISOR_xen_version', (h) => (v, b) => {
      h(v, b);
      v.regs.setU32(1, 16); // e.g. the length of the string it copied out, beside rc
    });
    expect(checkServiceConformance(broken)).toContainEqual(
      expect.stringMatching(/^call HYPERVISOR_xen_version writes x1, which its signature does not declare as a result/),
    );
  });

  it("a debug Xen's clobbering of unused argument registers, copied without declaring them", () => {
    // xen/arch/arm/traps.c (debug builds): registers past the hypercall's arguments get 0xDEADBEEF.
    const broken = wrapHandler<XenDomain>(real(), 'HYPERVISOR_vcpu_op', (h) => (v, b) => {
      h(v, b);
      v.regs.set(3, 0xdeadbeefn);
      v.regs.set(4, 0xdeadbeefn);
    });
    const problems = checkServiceConformance(broken);
    expect(problems).toContainEqual(expect.stringMatching(/^call HYPERVISOR_vcpu_op writes x3, which its signature does not declare/));
    expect(problems).toContainEqual(expect.stringMatching(/^call HYPERVISOR_vcpu_op writes x4, which its signature does not declare/));
  });

  it('a guest struct read without a range check: a host exception instead of -EFAULT', () => {
    const broken = wrapHandler<XenDomain>(real(), 'HYPERVISOR_xen_version', (h) => (v, b) => {
      if (v.regs.lo(0) === XENVER.get_features) v.machine.memory.readU32(v.regs.get(1)); // copy_from_guest, unchecked
      h(v, b);
    });
    const problems = checkServiceConformance(broken);
    expect(problems).toContainEqual(expect.stringMatching(/^call HYPERVISOR_xen_version probe \[x0=0x6 x1=0x40010000\] threw: GuestMemoryError/));
  });

  it('a signature that omits an argument the handler reads (vcpu_op without vcpuid)', () => {
    const broken = withSignature(real(), 'HYPERVISOR_vcpu_op', (s) => ({ ...s, args: s.args!.filter((a) => a.name !== 'vcpuid') }));
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call HYPERVISOR_vcpu_op reads a register its signature does not name: x0 differs with garbage in undeclared registers/));
  });

  it('memory_op cmd declared as an int: Xen reads the whole unsigned long (the start extent lives above bit 6)', () => {
    const broken = withSignature(real(), 'HYPERVISOR_memory_op', (s) => ({ ...s, args: s.args!.map((a) => (a.name === 'cmd' ? { ...a, width: 'u32' as const } : a)) }));
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^call HYPERVISOR_memory_op reads the upper half of x0 \(cmd\), declared u32/));
  });

  it('an on-by-default feature without a legacy reason', () => {
    const xen = real();
    const features = xen.surface.features.map((f) => (f.name === 'evtchn-2l' ? { ...f, legacy: undefined } : f));
    const broken = Object.freeze({ ...xen, surface: { ...xen.surface, features } });
    expect(checkServiceConformance(broken)).toContainEqual(expect.stringMatching(/^feature 'evtchn-2l' is on by default but declares no 'legacy' reason/));
  });
});
