import { describe, expect, it } from 'vitest';
import {
  checkRecord,
  classifyAbiChange,
  Conduits,
  defineService,
  Hypervisor,
  planRestore,
  saveSnapshot,
  serviceAbiFile,
  SnapshotError,
  smcccReturn,
  type CallDecl,
  type ServicePlugin,
} from '../index.js';
import { checkServiceConformance, createEchoService, ECHO, MemoryMachine, type EchoOptions } from '../testing/index.js';
import { argValues, parseProbe, probesFor } from './probes.js';
import { PROBE_RAM_BASE, PROBE_RAM_SIZE } from './probe-machine.js';
import { checkBuilds } from '../compat/check.js';

const build = (opts: EchoOptions = {}, name = 'b') => Hypervisor.compose([createEchoService(opts)], { name });
const echoCall = (name: string): CallDecl => createEchoService().surface.calls.find((c) => c.name === name)!;

describe('probes generated from signatures', () => {
  it('enumerated values with invalid neighbours, range ends and one past them, u32 upper halves', () => {
    expect(argValues({ name: 'sel', reg: 1, width: 'u32', kind: 'enum', values: [0, 1] })).toEqual([0n, 1n, 2n, 0xffff_ffffn]);
    expect(argValues({ name: 'n', reg: 1, width: 'u32', kind: 'range', min: 1, max: 96 })).toEqual([1n, 96n, 48n, 0n, 97n, 0xffff_ffffn]);
    const labels = probesFor(echoCall('ECHO'), Conduits.smccc).map((p) => p.label);
    expect(labels).toContain('x1=0x0 x2=0xffff x3=0x0'); // range end
    expect(labels).toContain('x1=0x0 x2=0x10000 x3=0x0'); // one past it
    expect(labels).toContain('x1=0x0 x2=0xa5a5a5a500000000 x3=0x0'); // u32 with the upper half set
    expect(labels).toContain('x0=0xa5a5a5a5c7000000 x1=0x0 x2=0x0 x3=0x0'); // w0 only
    expect(labels).toContain('x1=0x0 x2=0x0 x3=0x0 smc');
  });

  it('pointers inside RAM, at its last bytes, straddling its end, outside it; memory filled', () => {
    const labels = probesFor(echoCall('ECHO_PEEK_POKE'), Conduits.smccc).map((p) => p.label);
    const end = PROBE_RAM_BASE + BigInt(PROBE_RAM_SIZE);
    for (const gpa of [PROBE_RAM_BASE + 0x1000n, PROBE_RAM_BASE, end - 8n, end - 7n, end, 0n]) {
      expect(labels).toContain(`x1=0x${gpa.toString(16)} x2=0x0`);
    }
    expect(labels).toContain(`x1=0x${(PROBE_RAM_BASE + 0x1000n).toString(16)} x2=0x0 @0x${(PROBE_RAM_BASE + 0x1000n).toString(16)}+8=ff`);
  });

  it('labels parse back into the same probe (transcripts replay on any build)', () => {
    const call = echoCall('ECHO_RANGE');
    for (const p of probesFor(call, Conduits.smccc)) expect(parseProbe(p.label, call)).toEqual(p);
  });
});

describe('behaviour transcripts', () => {
  it('record results, memory written and guest-visible values', () => {
    const m = build().manifest().services[0]!;
    const t = m.behaviour!.default!;
    expect(t.ECHO!['x1=0x1 x2=0x0 x3=0x0']).toBe('x0=0x1 x1=0x0 x2=0x1 x3=0x0');
    const peek = t.ECHO_PEEK_POKE!['x1=0x40001000 x2=0x5a5a5a5a5a5a5a5a'];
    expect(peek).toBe('x0=0x0 x1=0x0 x2=0x0 x3=0x0 | mem+0x1000=5a5a5a5a5a5a5a5a');
    expect(t.ECHO_PEEK_POKE!['x1=0x40010000 x2=0x0']).toBe('x0=0xfffffffffffffffd x1=0x0 x2=0x0 x3=0x0'); // past RAM
    // a declared sample of the argument memory: the successful path, reading it back
    expect(t.ECHO_PEEK_POKE!['x1=0x40001000 x2=0x0 @0x40001000:0102030405060708']).toBe('x0=0x0 x1=0x807060504030201 x2=0x0 x3=0x0 | mem+0x1000=0000000000000000');
    // a version that adds a call shows up as its own configuration
    expect(Object.keys(m.behaviour!)).toContain('echo=2.0');
    expect(m.behaviour!['echo=2.0']!.ECHO_V2).toBeDefined();
  });

  it('two builds differing only in an option that changes an answer hash differently', () => {
    const a = build({}, 'x');
    const b = build({ bias: 1 }, 'x');
    expect(JSON.stringify(a.manifest().services[0]!.surface)).toBe(JSON.stringify(b.manifest().services[0]!.surface));
    expect(a.manifest().hash).not.toBe(b.manifest().hash);
    expect(build({}, 'x').manifest().hash).toBe(a.manifest().hash);
  });

  it('generating a transcript is fast', () => {
    const t0 = performance.now();
    build({ bias: 7 }).manifest();
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('the classifier sees behaviour', () => {
  const abiOf = (o: EchoOptions) => {
    const s = createEchoService(o);
    return JSON.parse(serviceAbiFile(s, Hypervisor.compose([s])));
  };

  it('a changed answer with an unchanged declaration is major, naming call, probe, old → new', () => {
    const change = classifyAbiChange(abiOf({}), abiOf({ bias: 1 }), { hv: build({ bias: 1 }) });
    expect(change.bump).toBe('major');
    expect(change.reasons[0]).toMatch(/^major: behaviour changed: ECHO probe \[x\d=0x[0-9a-f]+ .*\]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0$/);
    // without the new build, the answers both manifests recorded are compared: the same verdict
    const recorded = classifyAbiChange(abiOf({}), abiOf({ bias: 1 }));
    expect(recorded.bump).toBe('major');
    expect(recorded.reasons[0]).toBe(change.reasons[0]);
  });

  it('a waiver naming the call makes it a patch, with the reason', () => {
    const change = classifyAbiChange(abiOf({}), abiOf({ bias: 1 }), { hv: build({ bias: 1 }), waivers: new Map([['ECHO', 'sum was off by one']]) });
    expect(change.bump).toBe('patch');
    expect(change.reasons[0]).toMatch(/^patch: waived: ECHO probe .* \(sum was off by one\)$/);
  });

  it('a new version with new answers is minor; old VMs keep the old answers', () => {
    const change = classifyAbiChange(abiOf({ maxVersion: '1.1' }), abiOf({}), { hv: build() });
    expect(change.bump).toBe('minor');
  });
});

describe('check and restore see behaviour', () => {
  it('a VM record carries per-feature digests and transcripts', () => {
    const r = build().createVm().record();
    expect(Object.keys(r.behaviour!)).toEqual(['echo']); // echo-counter is off
    expect(r.behaviour!.echo!.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(r.behaviour!.echo!.calls).sort()).toEqual(['ECHO', 'ECHO_PEEK_POKE', 'ECHO_RANGE', 'ECHO_XEN']);
  });

  it('a destination that answers a call differently is refused, naming the call and the probe', () => {
    const record = build().createVm().record();
    expect(checkRecord(record, build().catalog, build())).toEqual([]);
    const other = build({ bias: 1 });
    const problems = checkRecord(record, other.catalog, other);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toBe(
      "feature 'echo' of @plugvisor/test-svc-echo@1.0.0 answers differently than the VM saw: ECHO probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0",
    );
  });

  it('plugvisor check names the first differing probe both ways', () => {
    const r = checkBuilds(build({}, 'A'), build({ bias: 1 }, 'B'));
    expect(r.upgrade.safe).toBe(false);
    expect(r.rollback.safe).toBe(false);
    expect(r.upgrade.problems[0]!.message).toContain('ECHO probe [x1=0x0 x2=0x0 x3=0x0]: x0=0x0 x1=0x0 x2=0x0 x3=0x0 → x0=0x1');
    expect(r.rollback.problems[0]!.message).toContain('→ x0=0x0');
    expect(checkBuilds(build({}, 'A'), build({}, 'B')).upgrade.safe).toBe(true);
  });

  it('restore refuses a snapshot whose calls the destination answers differently, before changing anything', () => {
    const hv = build();
    const vm = hv.createVm();
    const m = new MemoryMachine(1, 0x4000_0000n, 4 * 4096);
    vm.attachMachine(m);
    vm.start();
    const bytes = saveSnapshot(vm, { arch: 'arm64', description: {}, vcpus: [Uint8Array.of(1)], memory: m.memory.regions() });
    expect(() => planRestore(bytes, build(), { arch: 'arm64' })).not.toThrow();
    let err: unknown;
    try {
      planRestore(bytes, build({ bias: 1 }), { arch: 'arm64' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).message).toContain('ECHO probe [x1=0x0 x2=0x0 x3=0x0]');
  });
});

/** A small service with a discovery call, to break on purpose. */
function discoveryService(opts: { lie?: boolean; undeclaredWrite?: boolean; undeclaredRead?: boolean; readsUpper?: boolean; noLegacy?: boolean } = {}): ServicePlugin {
  const QUERY = 0xc700_1000;
  const EXTRA = 0xc700_1001;
  const calls: CallDecl[] = [
    { name: 'D_FEATURES', conduit: 'smccc', id: QUERY, feature: 'd', signature: { args: [{ name: 'id', reg: 1, width: 'u32', kind: 'enum', values: [QUERY, EXTRA] }], discovery: { kind: 'query', arg: 1, mustAnswer: [QUERY, EXTRA] } } },
    { name: 'D_EXTRA', conduit: 'smccc', id: EXTRA, feature: 'd-extra', signature: { args: [{ name: 'n', reg: 1, width: 'u32', kind: 'range', min: 0, max: 3 }] } },
  ];
  return defineService({
    name: '@plugvisor/test-svc-discovery',
    version: '1.0.0',
    surface: {
      features: [
        { name: 'd', default: 'legacy-opt-out', description: 'discovery', ...(opts.noLegacy ? {} : { legacy: 'test fixture' }) },
        { name: 'd-extra', default: 'opt-in', description: 'an extra call' },
      ],
      calls,
    },
    handlers: {
      D_FEATURES(v, b) {
        const id = opts.readsUpper ? Number(v.regs.get(1) & 0xffff_ffff_ffffn) : v.regs.lo(1);
        const has = id === QUERY || (id === EXTRA && b.vm.abi.isEnabled('d-extra'));
        smcccReturn(v.regs, has || (opts.lie && id === EXTRA) ? 0 : -1);
      },
      D_EXTRA(v) {
        smcccReturn(v.regs, v.regs.lo(1) + (opts.undeclaredRead ? v.regs.lo(5) : 0));
        if (opts.undeclaredWrite) v.regs.set(4, 7n);
      },
    },
  });
}

describe('the conformance kit runs the corpus', () => {
  it('passes a truthful service', () => {
    expect(checkServiceConformance(discoveryService())).toEqual([]);
  });

  it('fails discovery that says "supported" for a call the VM does not expose', () => {
    expect(checkServiceConformance(discoveryService({ lie: true }))).toContain('D_FEATURES answers 0 ("supported") for D_EXTRA, which the VM does not expose');
  });

  it('fails a call that writes or reads registers its signature does not name', () => {
    expect(checkServiceConformance(discoveryService({ undeclaredWrite: true })).join('\n')).toContain('call D_EXTRA writes x4, which its signature does not declare as a result');
    expect(checkServiceConformance(discoveryService({ undeclaredRead: true })).join('\n')).toContain('call D_EXTRA reads a register its signature does not name');
  });

  it('fails a u32 argument whose upper half is read', () => {
    expect(checkServiceConformance(discoveryService({ readsUpper: true })).join('\n')).toContain('reads the upper half of x1 (id), declared u32');
  });

  it('fails a feature on by default with no legacy reason', () => {
    expect(checkServiceConformance(discoveryService({ noLegacy: true }))).toContain("feature 'd' is on by default but declares no 'legacy' reason: new ABI must be opt-in");
  });

  it('fails a handler that throws on some probe', () => {
    const s = createEchoService();
    const broken = defineService({ name: s.name, version: s.version, surface: s.surface, state: s.state, handlers: { ECHO: () => { throw new Error('boom'); }, ECHO_PEEK_POKE: () => {}, ECHO_RANGE: () => {}, ECHO_XEN: () => {}, ECHO_V2: () => {}, ECHO_COUNT: () => {} } } as never);
    expect(checkServiceConformance(broken).join('\n')).toContain('call ECHO probe [x1=0x0 x2=0x0 x3=0x0] threw: Error: boom');
  });

  it('uses the real router: ECHO answers through dispatch on the probe machine', () => {
    const hv = build();
    const vm = hv.createVm();
    const m = new MemoryMachine();
    vm.attachMachine(m);
    vm.start();
    m.vcpus[0]!.regs.set(0, BigInt(ECHO.CALL_ECHO));
    m.vcpus[0]!.regs.set(1, 2n);
    vm.dispatch(Conduits.smccc, m.vcpus[0]!);
    expect(m.vcpus[0]!.regs.get(0)).toBe(2n);
  });
});
