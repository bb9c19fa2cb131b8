/**
 * The KVM vendor-hypervisor service (arch/arm64/kvm/hypercalls.c, Documentation/virt/kvm/arm/hypercalls.rst), probed the way Linux's kvm_guest.c and
 * ptp_kvm_arm.c do (CALL_UID, then KVM_FEATURES, then PTP), and PTP's clock sample checked
 * against the guest's own counter reads.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Fid, JUNK, KVM_UID, Reg } from './abi.js';
import { expectCall } from './expect.js';
import { GuestSession, NOT_SUPPORTED, Script } from './harness.js';

let session: GuestSession | undefined;
afterEach(() => {
  session?.dispose();
  session = undefined;
});

function linuxProbe(): Script {
  return new Script()
    .call('CALL_UID', Fid.VENDOR_CALL_UID, ...JUNK)
    .call('KVM_FEATURES', Fid.KVM_FEATURES, ...JUNK)
    .timed('PTP virtual', 'virtual', Fid.KVM_PTP, 0, ...JUNK.slice(1))
    .timed('PTP physical', 'physical', Fid.KVM_PTP, 1, ...JUNK.slice(1))
    .timed('PTP virtual, x1 upper half set', 'virtual', Fid.KVM_PTP, 1n << 32n)
    .timed('PTP selector 2', 'virtual', Fid.KVM_PTP, 2, ...JUNK.slice(1))
    .timed('PTP selector 0xffffffff', 'virtual', Fid.KVM_PTP, 0xffff_ffff);
}

function run(script: Script, vendorBitmap?: bigint) {
  session = GuestSession.boot({ script, ...(vendorBitmap !== undefined ? { overrides: { registers: [[Reg.VENDOR_HYP_BMAP, vendorBitmap]] } } : {}) });
  const wallBefore = BigInt(Date.now()) * 1_000_000n;
  session.runToEnd();
  const wallAfter = BigInt(Date.now()) * 1_000_000n;
  return { results: session.results(), wallBefore, wallAfter };
}

/** PTP (Documentation/virt/kvm/arm/ptp_kvm.rst): x0:x1 = wall clock ns, x2:x3 = the counter, all four 32-bit values. */
function expectPtp(r: { x: readonly bigint[]; counter?: { before: bigint; after: bigint } }, wallBefore: bigint, wallAfter: bigint) {
  for (const v of r.x) expect(v).toBeLessThanOrEqual(0xffff_ffffn);
  expect(r.x[0]! < 0x8000_0000n, '(int)x0 >= 0: the guest treats a negative x0 as failure').toBe(true);
  const ns = (r.x[0]! << 32n) | r.x[1]!;
  const cycles = (r.x[2]! << 32n) | r.x[3]!;
  // the counter is what the guest itself reads from the register at that instant
  expect(cycles).toBeGreaterThanOrEqual(r.counter!.before);
  expect(cycles).toBeLessThanOrEqual(r.counter!.after);
  // CLOCK_REALTIME, within a few seconds of the host's Date.now() around the run
  expect(ns).toBeGreaterThan(wallBefore - 5_000_000_000n);
  expect(ns).toBeLessThan(wallAfter + 5_000_000_000n);
  return { ns, cycles };
}

describe('KVM vendor services: CALL_UID, KVM_FEATURES, PTP', () => {
  it('default VM: KVM UID words, FEATURES x0 = 0x3, PTP samples wall clock and counter together', () => {
    const { results, wallBefore, wallAfter } = run(linuxProbe());
    expectCall(results, 'CALL_UID', KVM_UID);
    expectCall(results, 'KVM_FEATURES', [0x3n, 0n, 0n, 0n]);
    const v = expectPtp(expectCall(results, 'PTP virtual', () => {}), wallBefore, wallAfter);
    const p = expectPtp(expectCall(results, 'PTP physical', () => {}), wallBefore, wallAfter);
    // x1 is the selector as a u32 (arch/arm64/kvm/hypercalls.c, kvm_ptp_get_time): 1<<32 selects the virtual counter
    expectPtp(expectCall(results, 'PTP virtual, x1 upper half set', () => {}), wallBefore, wallAfter);
    // the two samples are in order, on both clocks
    expect(p.ns).toBeGreaterThan(v.ns);
    expect(p.cycles).toBeGreaterThan(v.cycles);
    expectCall(results, 'PTP selector 2', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectCall(results, 'PTP selector 0xffffffff', [NOT_SUPPORTED, 0n, 0n, 0n]);
  });

  it('the PTP wall clock advances with the guest counter at the counter frequency', () => {
    const s = new Script().timed('a', 'virtual', Fid.KVM_PTP, 0);
    for (let i = 0; i < 200; i++) s.call(`spin ${i}`, Fid.SMCCC_VERSION);
    s.timed('b', 'virtual', Fid.KVM_PTP, 0);
    const { results } = run(s);
    const a = results.get('a')!.x;
    const b = results.get('b')!.x;
    const dNs = Number(((b[0]! << 32n) | b[1]!) - ((a[0]! << 32n) | a[1]!));
    const dCycles = Number(((b[2]! << 32n) | b[3]!) - ((a[2]! << 32n) | a[3]!));
    // the board's counter runs at 62.5 MHz (16 ns per tick); allow for the gap between samples
    expect(dNs).toBeGreaterThan(0);
    expect(Math.abs(dCycles * 16 - dNs)).toBeLessThan(200_000 + dNs * 0.01);
  });

  it('VENDOR_HYP_BMAP = 0x1 (PTP cleared): FEATURES x0 = 0x1 and PTP → −1, UID unchanged', () => {
    const { results } = run(linuxProbe(), 0x1n);
    expectCall(results, 'CALL_UID', KVM_UID);
    expectCall(results, 'KVM_FEATURES', [0x1n, 0n, 0n, 0n]);
    for (const n of ['PTP virtual', 'PTP physical', 'PTP virtual, x1 upper half set', 'PTP selector 2']) expectCall(results, n, [NOT_SUPPORTED, 0n, 0n, 0n]);
  });

  it('VENDOR_HYP_BMAP = 0x2 (FUNC_FEAT cleared): CALL_UID and FEATURES → −1, PTP still answers', () => {
    const { results, wallBefore, wallAfter } = run(linuxProbe(), 0x2n);
    expectCall(results, 'CALL_UID', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectCall(results, 'KVM_FEATURES', [NOT_SUPPORTED, 0n, 0n, 0n]);
    expectPtp(expectCall(results, 'PTP virtual', () => {}), wallBefore, wallAfter);
  });

  it('VENDOR_HYP_BMAP = 0: every vendor call → −1', () => {
    const { results } = run(linuxProbe(), 0n);
    for (const n of ['CALL_UID', 'KVM_FEATURES', 'PTP virtual', 'PTP physical', 'PTP selector 2']) expectCall(results, n, [NOT_SUPPORTED, 0n, 0n, 0n]);
  });
});
