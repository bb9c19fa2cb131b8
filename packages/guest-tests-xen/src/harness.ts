/**
 * Runs this package's aarch64 Xen test guests (guests/src/*.c) on the arm64 machine with a VM
 * composed from real services — svc-psci (CPU_ON, SYSTEM_OFF), svc-xen, optionally
 * svc-evtchn-fifo, and the test service — and gives the test the VM, the machine, the guest's
 * console and its reports.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hypervisor, type ServicePlugin, type Vm } from '@plugvisor/core';
import { Arm64Machine, Layout, type RunResult } from '@plugvisor/machine-arm64';
import { createEvtchnFifoService } from '@plugvisor/svc-evtchn-fifo';
import { createPsciService } from '@plugvisor/svc-psci';
import { createXenService } from '@plugvisor/svc-xen';
import { GUEST_TEST, createGuestTestService, type GuestTestState } from './service.js';

export const GUEST_BIN_DIR = fileURLToPath(new URL('../guests/bin/', import.meta.url));
export const GUESTS_DIR = fileURLToPath(new URL('../guests/', import.meta.url));

export function guestImage(name: string): Uint8Array {
  return readFileSync(`${GUEST_BIN_DIR}${name}.elf`);
}

export const MEM_SIZE = 16 << 20;
export const RAM_BASE = Layout.RAM_BASE;
/** The guests' fixed pages (guests/src/xen.h). */
export const GPA = Object.freeze({
  SHINFO: RAM_BASE + 0x80_0000n,
  VCPU_INFO: RAM_BASE + 0x80_1000n,
  CONTROL: RAM_BASE + 0x80_2000n,
  ARRAY: RAM_BASE + 0x81_0000n,
});

/** A build: PSCI, svc-xen, the test service, and svc-evtchn-fifo when `fifo`. */
export function xenBuild(opts: { fifo: boolean; name?: string }): Hypervisor {
  const services: ServicePlugin<any>[] = [createPsciService(), createXenService(), createGuestTestService()];
  if (opts.fifo) services.push(createEvtchnFifoService());
  return Hypervisor.compose(services, { name: opts.name ?? (opts.fifo ? 'xen+fifo' : 'xen') });
}

export interface GuestRun {
  readonly vm: Vm;
  readonly m: Arm64Machine;
  readonly t: GuestTestState;
  console(): string;
}

/** Wires a VM and a machine together and captures the console. */
export function attach(vm: Vm, m: Arm64Machine, out: string[]): GuestRun {
  vm.attachMachine(m);
  m.attach(vm);
  return { vm, m, t: vm.stateOf<GuestTestState>(GUEST_TEST), console: () => out.join('') };
}

export function consoleSink(out: string[]) {
  return (b: Uint8Array) => void out.push(Buffer.from(b).toString('latin1'));
}

/** A VM (test calls on, plus `features`) on a fresh machine with `guest` loaded and booted. */
export function boot(
  hv: Hypervisor,
  guest: string,
  opts: { features?: Record<string, boolean>; vcpus?: number; params?: Array<bigint | number> } = {},
): GuestRun {
  const vm = hv.createVm({ features: { 'guest-test': true, ...opts.features } });
  const out: string[] = [];
  const m = new Arm64Machine({ vcpus: opts.vcpus ?? 1, memSize: MEM_SIZE, console: consoleSink(out) });
  const run = attach(vm, m, out);
  run.t.params = (opts.params ?? []).map((x) => BigInt(x));
  m.boot(m.loadImage(guestImage(guest)).entry);
  return run;
}

/**
 * Runs until the machine stops for something other than a pause; `onPause` is called at every
 * pause (the test raises events there) and decides whether to go on.
 */
export function runGuest(m: Arm64Machine, onPause: (reason: string) => void = () => {}): RunResult {
  for (;;) {
    const r = m.run();
    if (r.kind !== 'paused') return r;
    onPause(r.reason);
  }
}

/** A deterministic PRNG (mulberry32) so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
