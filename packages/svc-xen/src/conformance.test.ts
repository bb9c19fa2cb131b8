import { beforeAll, describe, expect, it } from 'vitest';
import { Hypervisor, MAX_PROBES_PER_CALL, probesFor, serviceBehaviour, Conduits, type CallHandler, type CallSignature, type ServicePlugin, type Transcript } from '@plugvisor/core';
import { checkServiceConformance, withHandler, withSignature } from '@plugvisor/core/testing';
import { createXenService, XENVER, type XenDomain } from './index.js';

/**
 * svc-xen against core's conformance kit: its probe corpus (generated from the call
 * signatures) runs without a throw, every call reads and writes only the registers it
 * declares, and the kit catches the mistakes a Xen personality is prone to. Each broken
 * variant wraps the real plugin; none edits the real code.
 */

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
    // Every argument-struct sample runs under every cmd, and no call's probes reach core's cap
    // (at the cap, the later probes — memory of ones, upper halves — would be dropped).
    expect(labels).toContain('x0=0x6 x1=0x40001000 @0x40001000:f07ff07f00000000');
    expect(labels).toContain('x0=0x9 x1=0x40001000 @0x40001000:0100000001000000');
    for (const c of xen.surface.calls) expect(probesFor(c, Conduits.xen).length, c.name).toBeLessThan(MAX_PROBES_PER_CALL);
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
    expect(t.HYPERVISOR_vcpu_op!['x0=0xa x1=0x2 x2=0x40001000']).toBe('x0=0xfffffffffffffffe'); // vCPU 2 of 2: -ENOENT
    expect(t.HYPERVISOR_vcpu_op!['x0=0xa x1=0x1 x2=0x40001000']).toBe('x0=0xffffffffffffffea'); // vCPU 1 exists; gfn 0 is not RAM: -EINVAL
    // A sub-op is probed as a guest reaches it: x16 = event_channel_op, its cmd in x0 (in every
    // label), its own struct at x1 — answering as event_channel_op does for that cmd.
    const send = t.EVTCHNOP_send!;
    expect(Object.keys(send).every((l) => /^x0=0x(a5a5a5a50000000)?4 /.test(l))).toBe(true);
    expect(send['x0=0x4 x1=0x40001000']).toBe(evtchn['x0=0x4 x1=0x40001000']); // port 0 is not bound: -EINVAL
    expect(send['x0=0x4 x1=0x40001000']).toBe('x0=0xffffffffffffffea');
    expect(send['x0=0x4 x1=0x40010000']).toBe('x0=0xfffffffffffffff2'); // past RAM: -EFAULT
    expect(send['x0=0xa5a5a5a500000004 x1=0x40001000']).toBe(send['x0=0x4 x1=0x40001000']); // cmd is an int: w0
  });
});

describe("svc-xen: the transcript records each sub-op's successful path (argument-struct samples)", () => {
  // Labels spell the structs out (little-endian, Xen's public headers): a fresh domain's first call each.
  // (FIFO's init_control sample, answered with FIFO in the build, is in svc-evtchn-fifo's test.)
  let t: Transcript;
  beforeAll(() => {
    const xen = createXenService();
    t = serviceBehaviour(Hypervisor.compose([xen], { name: 'xen' }), xen).default!;
  });
  const at = (bytes: string) => `@0x40001000:${bytes}`;

  it('memory_op: add_to_physmap(DOMID_SELF, shared_info, idx 0, gpfn 0x40002) maps it; idx 1 is -EINVAL', () => {
    //                          domid size space    idx              gpfn
    const map = (idx: string) => at(`f07f 0000 00000000 ${idx} 0200040000000000`.replace(/ /g, ''));
    const m = t.HYPERVISOR_memory_op!;
    expect(m[`x0=0x7 x1=0x40001000 ${map('0000000000000000')}`]).toBe('x0=0x0');
    expect(m[`x0=0x47 x1=0x40001000 ${map('0000000000000000')}`]).toBe('x0=0x0'); // start extent 1: ignored for shared_info
    expect(m[`x0=0x7 x1=0x40001000 ${map('0100000000000000')}`]).toBe('x0=0xffffffffffffffea');
    expect(m[`x0=0x0 x1=0x40001000 ${map('0000000000000000')}`]).toBe('x0=0xffffffffffffffda'); // increase_reservation: -ENOSYS
  });

  it('vcpu_op: register_vcpu_info(gfn 0x40003, offset 0x40) places vcpu_info and raises the upcall; off its page -ENXIO', () => {
    const v = t.HYPERVISOR_vcpu_op!;
    //                                           mfn              offset   rsvd
    expect(v[`x0=0xa x1=0x0 x2=0x40001000 ${at('0300040000000000' + '40000000' + '00000000')}`]).toBe(
      'x0=0x0 | irq(0,31,1) | mem+0x3040=01 mem+0x3048=ffffffffffffffff', // upcall_pending, evtchn_pending_sel
    );
    expect(v[`x0=0xa x1=0x0 x2=0x40001000 ${at('0300040000000000' + 'e00f0000' + '00000000')}`]).toBe('x0=0xfffffffffffffffa');
  });

  it('event_channel_op: alloc_unbound, status, unmask and bind_virq/bind_ipi on vCPU 1 succeed; close/send/bind_vcpu on closed port 1 fail', () => {
    const e = t.HYPERVISOR_event_channel_op!;
    const unbound = at('f07f' + 'f07f' + '00000000'); // {dom DOMID_SELF, remote_dom DOMID_SELF, OUT port}
    const status1 = at('f07f' + '0000' + '01000000' + '00'.repeat(16)); // {dom DOMID_SELF, _pad0, port 1, OUT ...}
    const port1vcpu1 = at('01000000' + '01000000'); // bind_vcpu {port 1, vcpu 1}
    expect(e[`x0=0x6 x1=0x40001000 ${unbound}`]).toBe('x0=0x0 | mem+0x1004=01'); // port 1 copied out
    expect(e[`x0=0xa x1=0x40001000 ${unbound}`]).toBe('x0=0x0'); // reset {DOMID_SELF}
    expect(e[`x0=0x5 x1=0x40001000 ${status1}`]).toBe('x0=0x0'); // EVTCHNSTAT_closed, vCPU 0
    expect(e[`x0=0x8 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0xffffffffffffffea'); // bind_vcpu: port 1 closed
    expect(e[`x0=0x3 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0xffffffffffffffea'); // close {port 1}
    expect(e[`x0=0x4 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0xffffffffffffffea'); // send {port 1}
    expect(e[`x0=0x9 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0x0'); // unmask {port 1}: the port exists
    expect(e[`x0=0x1 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0x0 | mem+0x1008=01'); // bind_virq {VIRQ_DEBUG, vCPU 1} → port 1
    expect(e[`x0=0x7 x1=0x40001000 ${port1vcpu1}`]).toBe('x0=0x0'); // bind_ipi {vCPU 1} → port 1, over the 1 already there
  });

  it('xen_version: get_features(submap 0) copies submap 0 out; without FIFO, init_control is -ENOSYS', () => {
    expect(t.HYPERVISOR_xen_version![`x0=0x6 x1=0x40001000 ${at('00000000' + '00000000')}`]).toBe('x0=0x0 | mem+0x1004=054001');
    //               control_gfn          offset       vcpu         link_bits + _pad[7]
    const init = at('0400040000000000' + '00000000' + '00000000' + '00'.repeat(8));
    expect(t.HYPERVISOR_event_channel_op![`x0=0xb x1=0x40001000 ${init}`]).toBe('x0=0xffffffffffffffda');
  });
});

describe('svc-xen: the kit catches Xen mistakes', () => {
  const real = () => createXenService();

  it('a handler that also returns a value in x1 (Xen returns in x0 only)', () => {
    const broken = withHandler<XenDomain>(real(), 'HYPERVISOR_xen_version', (h) => (v, b) => {
      h(v, b);
      v.regs.setU32(1, 16); // e.g. the length of the string it copied out, beside rc
    });
    expect(checkServiceConformance(broken)).toContainEqual(
      expect.stringMatching(/^call HYPERVISOR_xen_version writes x1, which its signature does not declare as a result/),
    );
  });

  it("a debug Xen's clobbering of unused argument registers, copied without declaring them", () => {
    // xen/arch/arm/traps.c (debug builds): registers past the hypercall's arguments get 0xDEADBEEF.
    const broken = withHandler<XenDomain>(real(), 'HYPERVISOR_vcpu_op', (h) => (v, b) => {
      h(v, b);
      v.regs.set(3, 0xdeadbeefn);
      v.regs.set(4, 0xdeadbeefn);
    });
    const problems = checkServiceConformance(broken);
    expect(problems).toContainEqual(expect.stringMatching(/^call HYPERVISOR_vcpu_op writes x3, which its signature does not declare/));
    expect(problems).toContainEqual(expect.stringMatching(/^call HYPERVISOR_vcpu_op writes x4, which its signature does not declare/));
  });

  it('a guest struct read without a range check: a host exception instead of -EFAULT', () => {
    const broken = withHandler<XenDomain>(real(), 'HYPERVISOR_xen_version', (h) => (v, b) => {
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
