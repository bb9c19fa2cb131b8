import { describe, expect, it } from 'vitest';
import { Conduits, Hypervisor, planRestore, saveSnapshot, SnapshotError, validateAbiRecord, type AbiRecord, type Vm } from '../index.js';
import { createEchoService, ECHO, MemoryMachine, type EchoOptions } from '../testing/index.js';
import { canonicalSurface, compareCalls, serviceAbiFile } from './manifest.js';
import { checkRecordDetailed } from './record.js';
import type { CallDecl } from './surface.js';

const build = (opts: EchoOptions = {}, name = 'b') => Hypervisor.compose([createEchoService(opts)], { name });
const echoPkg = '@plugvisor/test-svc-echo';

/** A VM that ran on `hv`, snapshotted (its ABI record travels in the snapshot). */
function snapshot(hv: Hypervisor, overrides = {}): Uint8Array {
  const vm: Vm = hv.createVm(overrides);
  const m = new MemoryMachine(1, 0x4000_0000n, 16 * 4096);
  vm.attachMachine(m);
  vm.start();
  m.vcpus[0]!.regs.set(0, BigInt(ECHO.CALL_ECHO));
  vm.dispatch(Conduits.smccc, m.vcpus[0]!);
  return saveSnapshot(vm, { arch: 'arm64', description: {}, vcpus: [Uint8Array.of(0)], memory: m.memory.regions() });
}

const refusal = (bytes: Uint8Array, hv: Hypervisor): readonly string[] => {
  try {
    planRestore(bytes, hv, { arch: 'arm64' });
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    return (e as SnapshotError).problems;
  }
  throw new Error('restore was accepted');
};

/** A record as a file holds it: JSON out, JSON in, validated. */
const roundTrip = (r: AbiRecord): AbiRecord => {
  const back = validateAbiRecord(JSON.parse(JSON.stringify(r)));
  if (typeof back === 'string') throw new Error(back);
  return back;
};

/** The record as a build before records carried call ids wrote it. */
const withoutIds = (r: AbiRecord): AbiRecord =>
  roundTrip({ ...r, behaviour: Object.fromEntries(Object.entries(r.behaviour ?? {}).map(([f, b]) => [f, { digest: b.digest, calls: b.calls }])) });

describe('canonical order: the same ABI declared in another order is the same ABI', () => {
  it('abi.json, the build hash and VM records are byte-identical', () => {
    const a = createEchoService();
    const b = createEchoService({ reorder: true });
    // the declarations really differ in order
    expect(a.surface.calls.map((c) => c.name)).not.toEqual(b.surface.calls.map((c) => c.name));
    expect(a.surface.features[0]!.name).not.toBe(b.surface.features[0]!.name);
    expect(a.surface.constants![0]!.accepts).not.toEqual(b.surface.constants![0]!.accepts);
    const ha = Hypervisor.compose([a], { name: 'x' });
    const hb = Hypervisor.compose([b], { name: 'x' });
    expect(serviceAbiFile(b, hb)).toBe(serviceAbiFile(a, ha));
    expect(hb.manifest().hash).toBe(ha.manifest().hash);
    for (const overrides of [{}, { features: { 'echo-counter': true }, versions: { echo: '2.0' } }]) {
      expect(JSON.stringify(hb.createVm(overrides).record())).toBe(JSON.stringify(ha.createVm(overrides).record()));
    }
  });

  it('the manifest lists calls by conduit, id, sub-op position, name; the rest by name; accepted values ascending', () => {
    const file = JSON.parse(serviceAbiFile(createEchoService({ reorder: true }), build({ reorder: true })));
    expect(file.surface.calls.map((c: CallDecl) => c.name)).toEqual(['ECHO', 'ECHO_V2', 'ECHO_COUNT', 'ECHO_PEEK_POKE', 'ECHO_RANGE', 'ECHO_XEN']);
    expect(file.surface.features.map((f: { name: string }) => f.name)).toEqual(['echo', 'echo-counter']);
    expect(file.surface.constants[0].accepts).toEqual(['0x0', '0x1', '0x2']);
  });

  it('sub-ops follow their parent, by selector value; version values keep their (oldest-first) order', () => {
    const parent: CallDecl = { name: 'op', conduit: 'xen', id: 32, feature: 'f' };
    const sub = (name: string, value: number): CallDecl => ({ name, conduit: 'xen', id: 32, feature: 'f', subOf: { call: 'op', selector: 0, value } });
    const smc: CallDecl = { name: 'A', conduit: 'smccc', id: 0x8400_0000, feature: 'f' };
    const list = [sub('send', 4), smc, sub('close', 3), parent, { ...sub('fifo', 0xb), name: 'init_control' }];
    expect([...list].sort(compareCalls).map((c) => c.name)).toEqual(['A', 'op', 'close', 'send', 'init_control']);
    const values = [{ name: '1.1', value: 0x10001 }, { name: '0.2', value: 2 }];
    const surface = canonicalSurface({ calls: [], features: [], versions: [{ name: 'v', description: '', values, default: '1.1' }] });
    expect(surface.versions![0]!.values).toEqual(values);
  });
});

describe('a call renamed in place is the same call, for VMs too', () => {
  const renamed = (o: EchoOptions = {}) => build({ echoName: 'ECHO_SUM', ...o });

  it('a record carries each transcript call with its wire id', () => {
    const r = build().createVm().record();
    expect(r.behaviour!.echo!.ids).toEqual({ ECHO: 'smccc:0xc7000000', ECHO_PEEK_POKE: 'smccc:0xc7000003', ECHO_RANGE: 'smccc:0xc7000100..0xc70001ff', ECHO_XEN: 'xen:0x30' });
  });

  it('restores on a build that renamed ECHO, and back; the record round-trips through a file', () => {
    const record = roundTrip(build().createVm().record());
    expect(checkRecordDetailed(record, renamed().catalog, renamed())).toEqual([]);
    expect(planRestore(snapshot(build()), renamed(), { arch: 'arm64' }).vm.abi.isEnabled('echo')).toBe(true);
    expect(planRestore(snapshot(renamed()), build(), { arch: 'arm64' }).vm.abi.isEnabled('echo')).toBe(true);
  });

  it('replays the renamed call under its new name: a changed answer there is still refused, naming it', () => {
    // Before records matched calls by id, the renamed call was not replayed at all.
    const record = roundTrip(build().createVm().record());
    const dest = renamed({ bias: 1 });
    const problems = checkRecordDetailed(record, dest.catalog, dest);
    expect(problems.map((p) => p.message)).toEqual([
      `feature 'echo' of ${echoPkg}@1.0.0 answers differently than the VM saw: ECHO_SUM probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0`,
    ]);
    expect(refusal(snapshot(build()), dest)[0]).toContain('ECHO_SUM probe');
  });

  it('a record written before records kept call ids is read and checked the same', () => {
    const old = withoutIds(build().createVm().record());
    expect(old.behaviour!.echo!.ids).toBeUndefined();
    expect(checkRecordDetailed(old, build().catalog, build())).toEqual([]);
    expect(checkRecordDetailed(old, renamed().catalog, renamed())).toEqual([]);
    const dest = renamed({ bias: 1 });
    expect(checkRecordDetailed(old, dest.catalog, dest).map((p) => p.message)).toEqual([expect.stringContaining('ECHO_SUM probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0')]);
    const biased = build({ bias: 1 });
    expect(checkRecordDetailed(old, biased.catalog, biased).map((p) => p.message)).toEqual([expect.stringContaining('ECHO probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0')]);
  });

  it('an old record whose missing name cannot be told apart is refused, not skipped', () => {
    const r = build().createVm().record();
    const b = r.behaviour!.echo!;
    // Two calls the destination does not know by these names, no ids: which is which is unknowable.
    const calls = { ...b.calls, GONE_A: b.calls.ECHO!, GONE_B: b.calls.ECHO_RANGE! };
    delete (calls as Record<string, unknown>).ECHO;
    delete (calls as Record<string, unknown>).ECHO_RANGE;
    const old = roundTrip({ ...r, behaviour: { echo: { digest: 'stale', calls } } });
    expect(checkRecordDetailed(old, build().catalog, build()).map((p) => p.message)).toEqual([
      "feature 'echo': the VM's record names GONE_A, GONE_B, which this build does not have, without call ids (a record from an older build): cannot tell which of ECHO, ECHO_RANGE they are",
    ]);
  });
});

describe('restore decides by the recorded ABI, never by version numbers', () => {
  it('the same ABI under a major, a 0.x minor or any other version number restores both ways', () => {
    for (const [from, to] of [['1.0.0', '2.0.0'], ['0.1.0', '0.2.0'], ['1.4.0', '1.0.0']] as const) {
      const a = build({ version: from });
      const b = build({ version: to });
      expect(planRestore(snapshot(a, { features: { 'echo-counter': true } }), b, { arch: 'arm64' }).vm.abi.isEnabled('echo-counter')).toBe(true);
      expect(planRestore(snapshot(b), a, { arch: 'arm64' }).vm.abi.isEnabled('echo')).toBe(true);
    }
  });

  // Each case a version bump used to stand for is refused by what changed, at a patch version.
  const at = (o: EchoOptions) => build({ version: '1.0.1', ...o });

  it('a call removed from a feature the VM has on: named, with its id', () => {
    const problems = refusal(snapshot(build({ extraEchoCall: true })), at({}));
    expect(problems).toEqual([`feature 'echo' of ${echoPkg}@1.0.1 answers different calls than the VM saw; lacks ECHO_EXTRA (smccc:0xc7000004)`]);
  });

  it('a behaviour change: the call, the probe, old → new', () => {
    expect(refusal(snapshot(build()), at({ bias: 1 }))).toEqual([
      `feature 'echo' of ${echoPkg}@1.0.1 answers differently than the VM saw: ECHO probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0`,
    ]);
  });

  it('a register value narrowed: the register, the VM value and what the build provides and accepts', () => {
    expect(refusal(snapshot(build()), at({ maxLevel: 1 }))).toEqual([
      'TEST_ECHO_LEVEL (0x603000000014007e) = 0x2 cannot be provided by this build (it provides 0x1; accepts 0x0, 0x1)',
    ]);
    // the other way the level widened: VMs that read 1 are given 1
    expect(planRestore(snapshot(at({ maxLevel: 1 })), build(), { arch: 'arm64' }).vm.abi.isEnabled('echo')).toBe(true);
  });

  it('a state schema the destination cannot read: the state, its schema and what is readable', () => {
    const problems = refusal(snapshot(build()), at({ stateVersion: 1 }));
    expect(problems).toEqual([`service ${echoPkg}@1.0.1 reads echo-counter state schema 1..1; the VM's is 2`]);
  });

  it('a feature moved to another bit of its firmware bitmap: the register, old → new value', () => {
    const r = build().createVm({ features: { 'echo-counter': true } }).record();
    const reg = '0x603000000016007f';
    expect(r.registers[reg]).toBe('0x3');
    // as if the VM's build had echo-counter on bit 0 and echo on bit 1, and the VM only echo-counter on
    const moved = { ...r, registers: { ...r.registers, [reg]: '0x1' }, features: { ...r.features, echo: { ...r.features.echo!, enabled: false } } };
    expect(checkRecordDetailed(moved, build().catalog).map((p) => p.message)).toEqual([
      `TEST_ECHO_BMAP (${reg}) = 0x1 in the VM → 0x2 on this build for the same features (here bit 0 is 'echo', bit 1 is 'echo-counter')`,
    ]);
  });
});
