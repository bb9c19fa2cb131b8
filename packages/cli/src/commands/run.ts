import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AbiError, Hypervisor, ImageError, UsageError, backendFor, elfMachine, type RunnableMachine, type Vm, type VmOverrides } from '@plugvisor/core';
import { poolBaseline } from '@plugvisor/xsave';
import { Arm64Machine, bootLinuxImage, parseArm64ImageHeader } from '@plugvisor/machine-arm64';
import { BACKENDS } from '../backends.js';
import { readHostDumps } from './check.js';
import { loadBuild } from '../build-file.js';
import { checkWritable, consoleWatch, failureOptions, failureOptionsHelp, parseHypercallTimeout, parseSize, readInputFile, readSnapshotKey, runExitHelp, runToEnd } from './guest-run.js';

export const runHelp = `plugvisor run IMAGE [options]
plugvisor run --kernel Image [--initrd FILE] [--append "ARGS"] [--dtb-out FILE] [options]

Boots an image on the machine of its architecture, taken from the ELF header (e_machine):
aarch64 on the arm64 machine (Unicorn) — vCPU 0 starts at the entry point at EL1 with the MMU
off, the others wait for PSCI CPU_ON, the console is the PL011 — and x86-64 on the x86 machine
(/dev/kvm) — vCPU 0 starts in 64-bit long mode at CPL0, the console is COM1 (0x3f8),
hypercalls are OUT to port 0x600, port 0x604 powers off. Console output goes to stdout.
  --kernel Image         arm64: boot a Linux Image (Documentation/arch/arm64/booting.rst)
                         instead of IMAGE: loaded at RAM + text_offset, vCPU 0 enters it
                         at EL1, MMU off, x0 = a generated device tree (QEMU virt's:
                         memory, cpus, psci over hvc, PL011, GICv2, timer, /chosen)
  --initrd FILE          with --kernel: an initrd, placed above the tree and named in /chosen
  --append "ARGS"        with --kernel: the kernel command line (/chosen/bootargs)
  --dtb-out FILE         with --kernel: also write the generated device tree (DTB) to FILE
  --arch arm64|x86_64    the architecture of a raw image (default arm64)
  --hosts DUMP[,DUMP]    x86: create the VM with the XSAVE baseline of these hosts (dumps from
                         'plugvisor hosts --json'), so it can move among them
  --vcpus N              vCPUs (default 1)
  --mem SIZE             RAM: bytes or with K/M/G (default 128M)
  --build FILE           build file (default: the default build)
  --feature NAME=on|off  turn a feature on or off (repeatable)
  --version SEL=VER      select a version, e.g. psci=1.1 (repeatable)
  --set-reg ID=VALUE     write a firmware register (KVM ONE_REG id and value, hex) before the
                         first run, under KVM's rules; a rejected write stops with its errno
  --raw ADDR             IMAGE is a raw binary loaded (and entered) at ADDR
  --snapshot-at N        after N hypercall traps, write a snapshot and stop
  --snapshot-on-output TEXT
                         when the guest's console first prints TEXT, write a snapshot and stop
  --snapshot-at-time S   arm64: when the guest's clock (its virtual counter: 0 at boot, carried
                         across restores) reaches S seconds, write a snapshot and stop
  --snapshot-file FILE   where the snapshot goes (default plugvisor.snap)
  --record FILE          write the VM's ABI record (JSON) before it runs (for 'plugvisor check --vm')
${failureOptionsHelp}
${runExitHelp}`;

/** The largest RAM every machine the CLI ships supports (arm64 and x86: 3 GiB). */
const MAX_MEM = 3 * 2 ** 30;

const num = (text: string, what: string): bigint => {
  try {
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(text)) throw new Error();
  } catch {
    throw new UsageError(`${what}: '${text}' is not a number (use 0x… for hex)`);
  }
  const n = BigInt(text);
  if (n >= 1n << 64n) throw new UsageError(`${what}: '${text}' is wider than 64 bits`);
  return n;
};

function overridesFrom(values: { feature?: string[]; version?: string[]; 'set-reg'?: string[] }): VmOverrides {
  const features: Record<string, boolean> = {};
  for (const f of values.feature ?? []) {
    try {
      const [name, on] = Hypervisor.parseFeatureFlag(f);
      features[name] = on;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const versions: Record<string, string> = {};
  for (const v of values.version ?? []) {
    const m = /^([\w.-]+)=([\w.]+)$/.exec(v);
    if (!m) throw new UsageError(`--version takes SELECTOR=VERSION, got '${v}'`);
    versions[m[1]!] = m[2]!;
  }
  const registers: Array<[bigint, bigint]> = [];
  for (const r of values['set-reg'] ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(r);
    if (!m) throw new UsageError(`--set-reg takes ID=VALUE, got '${r}'`);
    registers.push([num(m[1]!, '--set-reg id'), num(m[2]!, '--set-reg value')]);
  }
  return { features, versions, registers };
}

export const snapshotOptions = {
  'snapshot-at': { type: 'string' },
  'snapshot-on-output': { type: 'string' },
  'snapshot-at-time': { type: 'string' },
  'snapshot-file': { type: 'string' },
} as const;

export function parseSnapshotAt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--snapshot-at takes a positive number of traps, got '${text}'`);
  return n;
}

export function parseSnapshotOnOutput(text: string | undefined, snapshotAt: number | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (text === '') throw new UsageError('--snapshot-on-output takes the console text to wait for, got an empty string');
  if (snapshotAt !== undefined) throw new UsageError('--snapshot-at and --snapshot-on-output are two triggers for one snapshot: give one');
  return text;
}

/** --snapshot-at-time S: guest seconds, positive; one trigger only. */
export function parseSnapshotAtTime(text: string | undefined, others: readonly unknown[]): number | undefined {
  if (text === undefined) return undefined;
  const s = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(s > 0) || s > 1e9) throw new UsageError(`--snapshot-at-time takes the guest's time in seconds (e.g. 2.5), got '${text}'`);
  if (others.some((o) => o !== undefined)) throw new UsageError('--snapshot-at-time, --snapshot-at and --snapshot-on-output are triggers for one snapshot: give one');
  return s;
}

/** Arms --snapshot-at-time on a machine that keeps a guest clock (arm64), or refuses it. */
export function armGuestTime(machine: object, seconds: number | undefined): void {
  if (seconds === undefined) return;
  const m = machine as { pauseAtGuestTime?: (s: number) => void; dispose?: () => void };
  if (typeof m.pauseAtGuestTime !== 'function') {
    m.dispose?.();
    throw new UsageError('--snapshot-at-time needs the arm64 machine (its guest clock is the generic timer\'s virtual counter)');
  }
  m.pauseAtGuestTime(seconds);
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      vcpus: { type: 'string' },
      mem: { type: 'string' },
      build: { type: 'string' },
      feature: { type: 'string', multiple: true },
      version: { type: 'string', multiple: true },
      'set-reg': { type: 'string', multiple: true },
      raw: { type: 'string' },
      arch: { type: 'string' },
      hosts: { type: 'string', multiple: true },
      record: { type: 'string' },
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      append: { type: 'string' },
      'dtb-out': { type: 'string' },
      ...snapshotOptions,
      ...failureOptions,
    },
    allowPositionals: true,
    strict: true,
  });
  const kernelPath = values.kernel;
  if (kernelPath === undefined) {
    for (const f of ['initrd', 'append', 'dtb-out'] as const) if (values[f] !== undefined) throw new UsageError(`--${f} goes with --kernel`);
    if (positionals.length !== 1) throw new UsageError('run takes one image: plugvisor run IMAGE [options]');
  } else {
    if (positionals.length !== 0) throw new UsageError('--kernel replaces IMAGE: plugvisor run --kernel Image [options]');
    if (values.raw !== undefined) throw new UsageError('--raw is for raw images, not a --kernel Image');
    if (values.arch !== undefined && values.arch !== 'arm64') throw new UsageError('--kernel boots an arm64 Linux Image; --arch must be arm64');
    if (values.hosts) throw new UsageError('--hosts applies to x86-64 images only');
  }
  const imagePath = kernelPath ?? positionals[0]!;
  const vcpus = values.vcpus === undefined ? 1 : Number(values.vcpus);
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus takes 1..64, got '${values.vcpus}'`);
  const mem = values.mem === undefined ? 128 << 20 : parseSize(values.mem);
  if (!mem || mem % 4096 !== 0) throw new UsageError(`--mem takes a size in whole 4 KiB pages (e.g. 128M), got '${values.mem}'`);
  if (mem > MAX_MEM) throw new UsageError(`--mem ${values.mem} is more than the machine supports (at most 3G, i.e. 3072M)`);
  const snapshotAt = parseSnapshotAt(values['snapshot-at']);
  const snapshotOnOutput = parseSnapshotOnOutput(values['snapshot-on-output'], snapshotAt);
  const snapshotAtTime = parseSnapshotAtTime(values['snapshot-at-time'], [snapshotAt, snapshotOnOutput]);
  if (values.arch !== undefined && !backendFor(BACKENDS, values.arch)) throw new UsageError(`--arch takes ${BACKENDS.map((b) => b.arch).join(' or ')}, got '${values.arch}'`);
  const image = readInputFile(imagePath, kernelPath !== undefined ? 'kernel' : 'image');
  const initrd = values.initrd !== undefined ? readInputFile(values.initrd, 'initrd') : undefined;
  if (kernelPath !== undefined) {
    try {
      parseArm64ImageHeader(image);
    } catch (e) {
      if (e instanceof ImageError) throw new UsageError(`kernel ${kernelPath}: ${e.message}`, 'BAD_INPUT_FILE');
      throw e;
    }
  }
  if (values['dtb-out'] !== undefined) checkWritable(values['dtb-out'], '--dtb-out');
  if (values['snapshot-file'] !== undefined) checkWritable(values['snapshot-file'], '--snapshot-file');
  if (values.record !== undefined) checkWritable(values.record, '--record');
  if (values['snapshot-on-failure'] !== undefined) checkWritable(values['snapshot-on-failure'], '--snapshot-on-failure');
  const hypercallTimeout = parseHypercallTimeout(values['hypercall-timeout']);
  const snapshotKey = readSnapshotKey(values['snapshot-key']);
  const em = kernelPath !== undefined ? undefined : elfMachine(image);
  // An ELF image names its backend (e_machine); a raw image takes --arch, default the first
  // backend. An ELF for no backend goes to the default, whose loader names the mismatch.
  const backend = (em !== undefined ? BACKENDS.find((b) => b.elfMachine === em) : backendFor(BACKENDS, values.arch ?? BACKENDS[0]!.arch)) ?? BACKENDS[0]!;
  if (values.hosts && backend.arch !== 'x86_64') throw new UsageError('--hosts applies to x86-64 images only');
  if (em !== undefined && values.arch !== undefined) throw new UsageError('--arch is for raw images; an ELF image says its architecture');

  const { hv } = await loadBuild(values.build);
  const overrides = overridesFrom(values);
  // The VM and every operator override first: a rejected one stops before any guest code runs.
  let vm: Vm;
  try {
    vm = hv.createVm({ features: overrides.features, versions: overrides.versions });
    for (const [id, value] of overrides.registers ?? []) {
      try {
        vm.abi.setOneReg(id, value);
      } catch (e) {
        if (e instanceof AbiError) throw new UsageError(`--set-reg 0x${id.toString(16)}=0x${value.toString(16)} rejected: ${e.errnoName}: ${e.message}`);
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof AbiError) throw new UsageError(`${e.errnoName}: ${e.message}`);
    throw e;
  }
  if (values.record) writeFileSync(values.record, JSON.stringify(vm.record(), null, 2) + '\n');

  const why = backend.unavailable();
  if (why) throw new UsageError(why, 'HOST_UNAVAILABLE');
  const hostFiles = (values.hosts ?? []).flatMap((h) => h.split(',')).filter(Boolean);
  const xsave = hostFiles.length ? poolBaseline(readHostDumps(hostFiles)).policy : undefined;
  const watch = consoleWatch(snapshotOnOutput);
  const machine: RunnableMachine = backend.create({ vcpus, memSize: mem, console: watch.sink, ...(xsave ? { extra: { xsave } } : {}) });
  watch.attach(machine);
  armGuestTime(machine, snapshotAtTime);
  try {
    if (kernelPath !== undefined) {
      if (!(machine instanceof Arm64Machine)) throw new UsageError('--kernel needs the arm64 machine');
      const plan = bootLinuxImage(machine, { kernel: image, bootargs: values.append ?? '', ...(initrd ? { initrd } : {}) });
      if (values['dtb-out'] !== undefined) writeFileSync(values['dtb-out'], plan.dtbBytes);
    } else {
      const loaded = values.raw !== undefined ? machine.loadImage(image, num(values.raw, '--raw')) : machine.loadImage(image);
      machine.boot(loaded.entry);
    }
  } catch (e) {
    machine.dispose();
    if (e instanceof ImageError) throw new UsageError(`${kernelPath !== undefined ? 'kernel' : 'image'} ${imagePath}: ${e.message}`, 'BAD_INPUT_FILE');
    throw e;
  }
  vm.attachMachine(machine);
  machine.attach(vm);
  return runToEnd(vm, machine, { snapshotAt, snapshotOnOutput, snapshotAtTime, snapshotFile: values['snapshot-file'], snapshotOnFailure: values['snapshot-on-failure'], hypercallTimeout, snapshotKey: snapshotKey.key });
}
