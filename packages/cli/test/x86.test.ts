import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kvmUnavailable } from '@plugvisor/machine-x86';
import { EXAMPLE_HOSTS, parseHostDump } from '@plugvisor/xsave';

// `plugvisor run` / `restore` / `hosts` / `check --hosts` with x86-64 guests on /dev/kvm.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const guest = (name: string) => fileURLToPath(new URL(`../../machine-x86/guests/bin/${name}.elf`, import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-x86-'));
const fixture = (name: string) => {
  const f = join(dir, `${name}.json`);
  writeFileSync(f, JSON.stringify(EXAMPLE_HOSTS.find((h) => h.name === name)));
  return f;
};
const noKvm = kvmUnavailable();

describe.skipIf(!!noKvm)(`plugvisor with x86-64 guests (/dev/kvm)${noKvm ? ` — skipped: ${noKvm}` : ''}`, () => {
  it('runs an x86-64 ELF on the x86 machine (architecture from e_machine); hypercalls nothing exposes get -ENOSYS', () => {
    const r = plugvisor('run', guest('hello'), '--mem', '4M');
    expect(r.code).toBe(0);
    expect(r.out).toBe('hello from x86-64 long mode\nhypercall 0x100 -> ffffffffffffffda\n');
  });

  it('runs a raw x86-64 image with --raw ADDR --arch x86_64, and refuses --arch for an ELF', () => {
    const raw = join(dir, 'off.bin');
    writeFileSync(raw, Uint8Array.from([0x66, 0xba, 0x04, 0x06, 0x31, 0xc0, 0xef])); // mov dx,0x604; xor eax,eax; out dx,eax
    expect(plugvisor('run', raw, '--raw', '0x200000', '--arch', 'x86_64', '--mem', '4M').code).toBe(0);
    const both = plugvisor('run', guest('hello'), '--arch', 'x86_64');
    expect(both.code).toBe(2);
    expect(both.err).toContain('--arch is for raw images');
  });

  it('reports a triple fault with exit 10, naming vCPU and RIP', () => {
    const r = plugvisor('run', guest('triple'), '--mem', '4M');
    expect(r.code).toBe(10);
    expect(r.err).toMatch(/guest fault: .*vCPU 0 at RIP 0x[0-9a-f]+: triple fault/);
  });

  it('snapshots the integer loop mid-run and restores it in a new process with the uninterrupted result', () => {
    const whole = plugvisor('run', guest('loop'), '--mem', '4M');
    expect(whole.code).toBe(0);
    expect(whole.out).toMatch(/^loop: start\nresult [0-9a-f]{16}\n$/);
    const snap = join(dir, 'loop.snap');
    const first = plugvisor('run', guest('loop'), '--mem', '4M', '--snapshot-at', '123', '--snapshot-file', snap);
    expect(first.code).toBe(0);
    expect(first.err).toContain(`snapshot after 123 hypercall traps written to ${snap}`);
    const rest = plugvisor('restore', snap);
    expect(rest.code).toBe(0);
    expect(first.out + rest.out).toBe(whole.out);
  });

  it('plugvisor hosts dumps this host in the xsave dump format', () => {
    const j = plugvisor('hosts', '--json', '--name', 'this-host');
    expect(j.code).toBe(0);
    const caps = parseHostDump(JSON.parse(j.out));
    expect(caps.name).toBe('this-host');
    expect(caps.kvmXcr0 & 3n).toBe(3n);
    const text = plugvisor('hosts');
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/XSAVE for guests: XCR0 0x[0-9a-f]+ \(x87 \(bit 0\), sse \(bit 1\)/);
  });

  it('check --hosts prints the pool baseline and refuses, naming each xfeature, a VM that cannot move; run --hosts makes one that can', () => {
    const here = join(dir, 'here.json');
    expect(plugvisor('hosts', '--name', 'here', '--out', here).code).toBe(0);
    const broadwell = fixture('intel-broadwell');
    const snap = join(dir, 'default.snap');
    expect(plugvisor('run', guest('loop'), '--mem', '4M', '--snapshot-at', '5', '--snapshot-file', snap).code).toBe(0);
    const hereCaps = parseHostDump(JSON.parse(readFileSync(here, 'utf8')));
    const r = plugvisor('check', '--hosts', `${here},${broadwell}`, '--vm', snap);
    expect(r.out).toContain('pool baseline of 2 host(s): here, intel-broadwell');
    expect(r.out).toMatch(/xfeatures: XCR0 0x7 /);
    if (hereCaps.kvmXcr0 & ~7n) {
      // This host gives a default VM more than Broadwell has: refused, by name.
      expect(r.code).toBe(3);
      expect(r.out).toContain('-> intel-broadwell: REFUSED');
      expect(r.out).toMatch(/xfeature \w+: .*host intel-broadwell lacks it/);
    }
    const moving = join(dir, 'baseline.snap');
    expect(plugvisor('run', guest('loop'), '--mem', '4M', '--hosts', here, '--hosts', broadwell, '--snapshot-at', '5', '--snapshot-file', moving).code).toBe(0);
    const ok = plugvisor('check', '--hosts', `${here},${broadwell}`, '--vm', moving);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('-> intel-broadwell: can move');
    expect(ok.out).toContain('(the baseline)');
    const rest = plugvisor('restore', moving);
    expect(rest.code).toBe(0);
    expect(rest.out).toMatch(/result [0-9a-f]{16}\n$/);
  });

  it('restore refuses, in a new process and before anything runs, a VM whose xfeatures this host lacks, naming each', async () => {
    const { saveSnapshot } = await import('@plugvisor/core');
    const { INTEL_SKYLAKE_SP, xsaveAbiOf } = await import('@plugvisor/xsave');
    const { X86Machine } = await import('@plugvisor/machine-x86');
    const { loadBuild } = await import('../src/build-file.js');
    const { hv } = await loadBuild();
    const vm = hv.createVm();
    const m = new X86Machine({ memSize: 4 << 20, console: () => {} });
    m.boot(m.loadImage(readFileSync(guest('loop'))).entry);
    vm.attachMachine(m);
    m.attach(vm);
    expect(m.run({ pauseAfterTraps: 3 }).kind).toBe('paused');
    const image = m.image(); // its memory views are live until dispose
    // The same VM as if it had been created on a Skylake-SP host: MPX and PKRU in its xsave ABI.
    const sky = parseHostDump(INTEL_SKYLAKE_SP);
    const description = { ...(image.description as object), xsave: xsaveAbiOf({ xcr0: sky.kvmXcr0 }, sky) };
    const snap = join(dir, 'foreign.snap');
    writeFileSync(snap, saveSnapshot(vm, { ...image, description: description as never }));
    m.dispose();
    const r = plugvisor('restore', snap);
    expect(r.code).toBe(3);
    expect(r.out).toBe('');
    expect(r.err).toContain(`${snap} refused`);
    expect(r.err).toMatch(/xfeature pkru: pkru \(bit 9\)/);
    expect(r.err).toMatch(/xfeature bndregs: bndregs \(bit 3\)/);
  });

  it('check --hosts refuses a bad dump as bad input', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ format: 1, name: 'x', cpuid0d: [] }));
    const r = plugvisor('check', '--hosts', bad);
    expect(r.code).toBe(2);
    expect(r.err).toContain('sub-leaf 0');
  });
});
