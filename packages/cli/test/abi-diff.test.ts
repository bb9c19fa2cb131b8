import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unicornAvailable } from '@plugvisor/machine-arm64';

// `plugvisor abi diff` as operators run it: the built binary in a child process, over real
// manifests (the checked-in abi.json of svc-trng and edited copies), real build files, the
// manifest `abi --json` prints, and the ABI record of a real aarch64 guest's snapshot.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const demo = fileURLToPath(new URL('../guests/bin/demo.elf', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const builds = (name: string) => fileURLToPath(new URL(`../builds/${name}`, import.meta.url));
const trngAbi = fileURLToPath(new URL('../../svc-trng/abi.json', import.meta.url));
const plugvisor = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const dir = mkdtempSync(join(tmpdir(), 'plugvisor-abi-diff-'));

type Obj = Record<string, any>;
const base = (): Obj => JSON.parse(readFileSync(trngAbi, 'utf8'));
/** A copy of svc-trng's abi.json, edited, written to the temp dir. */
const variant = (name: string, edit: (m: Obj) => void): string => {
  const m = base();
  edit(m);
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(m, null, 2));
  return file;
};
const call = (m: Obj, name: string): Obj => m.surface.calls.find((c: Obj) => c.name === name);
const diffJson = (...args: string[]) => {
  const r = plugvisor('abi', 'diff', ...args, '--json');
  return { code: r.code, err: r.err, report: r.out ? JSON.parse(r.out) : undefined };
};
/** Exactly one line on stderr, nothing on stdout, exit 2: bad operator input. */
const usage = (r: { code: number | null; out: string; err: string }, text: string) => {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err).toContain(text);
  expect(r.err.trim().split('\n')).toHaveLength(1);
};

describe('plugvisor abi diff: two manifests of one service', () => {
  it('a new opt-in feature with a call is a compatible change (exit 4), naming both', () => {
    const added = variant('added', (m) => {
      m.surface.features.push({ name: 'trng-extra', default: 'opt-in', description: 'an extra call' });
      m.surface.calls.push({ name: 'TRNG_EXTRA', conduit: 'smccc', id: 0x84000060, feature: 'trng-extra' });
    });
    const r = plugvisor('abi', 'diff', trngAbi, added);
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/feature 'trng-extra'\s+new opt-in feature 'trng-extra'\s+minor\s+VMs with feature 'trng-extra' on/);
    expect(r.out).toContain("new call TRNG_EXTRA (smccc 0x84000060) behind new opt-in feature 'trng-extra'");
    expect(r.out).toContain('verdict: compatible change (exit 4)');
    // Backwards, the same difference takes ABI away from VMs that turned it on.
    expect(plugvisor('abi', 'diff', added, trngAbi).code).toBe(12);
  });

  it('a call removed is incompatible (exit 12), naming the call, its id and who sees it', () => {
    const removed = variant('removed', (m) => {
      m.surface.calls = m.surface.calls.filter((c: Obj) => c.name !== 'TRNG_RND32');
    });
    const r = plugvisor('abi', 'diff', trngAbi, removed);
    expect(r.code).toBe(12);
    expect(r.out).toMatch(/call TRNG_RND32\s+call TRNG_RND32 \(smccc 0x84000053\) removed\s+major\s+every VM with feature 'trng' \(on by default\)/);
    expect(r.out).toContain('verdict: incompatible change (exit 12): 1 incompatible');
  });

  it('a rename in place is shown but harmless (exit 0); --strict counts it (exit 4)', () => {
    const renamed = variant('renamed', (m) => {
      call(m, 'TRNG_RND32').name = 'TRNG_RANDOM32';
    });
    const r = plugvisor('abi', 'diff', trngAbi, renamed);
    expect(r.code).toBe(0);
    expect(r.out).toContain('call TRNG_RND32 renamed TRNG_RANDOM32 (same conduit smccc and id 0x84000053: guests see no change)');
    expect(r.out).toMatch(/none \(harmless\)/);
    expect(r.out).toContain('verdict: identical (exit 0): 0 incompatible, 0 compatible, 1 harmless');
    expect(plugvisor('abi', 'diff', trngAbi, renamed, '--strict').code).toBe(4);
    // Identical inputs: nothing listed at all.
    const same = plugvisor('abi', 'diff', trngAbi, trngAbi);
    expect(same.code).toBe(0);
    expect(same.out).toContain('0 incompatible, 0 compatible, 0 harmless, 0 suppressed');
  });

  it('an id changed is incompatible, naming old → new in hex', () => {
    const moved = variant('id', (m) => {
      call(m, 'TRNG_RND32').id = 0x84000058;
    });
    const r = plugvisor('abi', 'diff', trngAbi, moved);
    expect(r.code).toBe(12);
    expect(r.out).toContain('call TRNG_RND32 changed: id 0x84000053 → 0x84000058');
  });

  it('recorded behaviour is compared probe by probe; a ledger entry\'s waiver is shown with its reason and still incompatible (restore replays the old answers)', () => {
    const answer = (m: Obj) => {
      const probes = m.behaviour.default.TRNG_VERSION as Record<string, string>;
      for (const k of Object.keys(probes)) probes[k] = probes[k]!.replace('x0=0x10000', 'x0=0x10001');
    };
    const changed = variant('behaviour', answer);
    const r = plugvisor('abi', 'diff', trngAbi, changed);
    expect(r.code).toBe(12);
    expect(r.out).toMatch(/behaviour changed: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);

    const old = variant('ledger-1.0.0', (m) => {
      m.version = '1.0.0';
    });
    const waived = variant('ledger-1.0.1', (m) => {
      answer(m);
      m.version = '1.0.1';
      m.waivers = { TRNG_VERSION: 'TRNG 1.1 was never released; the answer was a typo' };
    });
    const w = plugvisor('abi', 'diff', old, waived);
    expect(w.code).toBe(12);
    expect(w.out).toContain('@plugvisor/svc-trng  1.0.0 → 1.0.1 (a patch step)');
    expect(w.out).toContain('(waived: TRNG 1.1 was never released; the answer was a typo)');
    expect(w.out).toContain('verdict: incompatible change (exit 12)');
  });

  it('says when a release line understates its change (a patch step over a removed call)', () => {
    const old = variant('line-1.0.0', (m) => {
      m.version = '1.0.0';
    });
    const patch = variant('line-1.0.1', (m) => {
      m.version = '1.0.1';
      m.surface.calls = m.surface.calls.filter((c: Obj) => c.name !== 'TRNG_RND64');
    });
    const r = plugvisor('abi', 'diff', old, patch);
    expect(r.code).toBe(12);
    expect(r.out).toContain('note: 1.0.0 → 1.0.1 is a patch step; these changes need a major release');
  });

  it('refuses two different services (exit 2, naming both)', () => {
    const psci = fileURLToPath(new URL('../../svc-psci/abi.json', import.meta.url));
    usage(plugvisor('abi', 'diff', trngAbi, psci), `is service @plugvisor/svc-trng and NEW ${psci} is service @plugvisor/svc-psci`);
  });
});

describe('plugvisor abi diff: machine manifests', () => {
  const arm64 = fileURLToPath(new URL('../../machine-arm64/abi.json', import.meta.url));
  const x86 = fileURLToPath(new URL('../../machine-x86/abi.json', import.meta.url));
  it('a changed fact of the arm64 machine is incompatible, named by its path old → new; two machines are refused', () => {
    const m = JSON.parse(readFileSync(arm64, 'utf8'));
    // The first fact (a string leaf that is not a description), changed.
    const path: string[] = [];
    const change = (o: Obj): boolean => {
      for (const [k, v] of Object.entries(o)) {
        if (k === 'description' || k === 'affects') continue;
        if (typeof v === 'string') {
          o[k] = `${v}-changed`;
          path.push(k);
          return true;
        }
        if (v && typeof v === 'object' && !Array.isArray(v) && change(v as Obj)) {
          path.unshift(k);
          return true;
        }
      }
      return false;
    };
    expect(change(m.surface)).toBe(true);
    const edited = join(dir, 'machine-arm64.json');
    writeFileSync(edited, JSON.stringify(m));
    const r = plugvisor('abi', 'diff', arm64, edited);
    expect(r.code).toBe(12);
    expect(r.out).toContain(`OLD ${arm64}: machine manifest '@plugvisor/machine-arm64'`);
    expect(r.out).toContain(`-changed`);
    expect(r.out).toContain(path[path.length - 1]!);
    expect(plugvisor('abi', 'diff', arm64, arm64).code).toBe(0);
    usage(plugvisor('abi', 'diff', arm64, x86), 'OLD is machine @plugvisor/machine-arm64 and NEW is machine @plugvisor/machine-x86');
    usage(plugvisor('abi', 'diff', arm64, trngAbi), 'abi diff compares machines with machines');
  });
});

describe('plugvisor abi diff: builds', () => {
  it('a build without a service the old one had: removed, incompatible, naming who saw it', () => {
    const r = plugvisor('abi', 'diff', builds('default.json'), builds('no-trng.json'));
    expect(r.code).toBe(12);
    expect(r.out).toMatch(/@plugvisor\/svc-trng\s+[\d.]+ → —/);
    expect(r.out).toContain("every VM (feature 'trng' on by default)");
    // The other way the service is new and on by default: new VMs see it.
    const back = plugvisor('abi', 'diff', builds('no-trng.json'), builds('default.json'));
    expect(back.code).toBe(12);
    expect(back.out).toContain("gives feature 'trng' by default: VMs created with defaults see it");
  });

  it('a service added whose every feature is opt-in is a compatible change', () => {
    // A build of the same services but with an opt-in-only service more: the FIFO event channels.
    const without = join(dir, 'no-fifo.json');
    const spec = JSON.parse(readFileSync(builds('default.json'), 'utf8'));
    writeFileSync(without, JSON.stringify({ name: 'no-fifo', services: spec.services.filter((s: string) => s !== '@plugvisor/svc-evtchn-fifo') }));
    const r = plugvisor('abi', 'diff', without, builds('default.json'));
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/new service @plugvisor\/svc-evtchn-fifo@[\d.]+: every feature opt-in/);
  });

  it('`abi --json` output against the build file it came from is identical; against another build it names the behaviour change', () => {
    const saved = join(dir, 'default-manifest.json');
    writeFileSync(saved, plugvisor('abi', '--json').out);
    const same = plugvisor('abi', 'diff', saved, builds('default.json'));
    expect(same.code).toBe(0);
    expect(same.out).toContain("OLD " + saved + ": build manifest 'default'");
    expect(same.out).toContain('0 incompatible, 0 compatible, 0 harmless');
    const r = plugvisor('abi', 'diff', saved, fixture('trng-1-1.json'));
    expect(r.code).toBe(12);
    expect(r.out).toMatch(/call TRNG_VERSION\s+behaviour changed: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
  });

  it('--json: verdict, exit, both inputs and every change by service', () => {
    const { code, report } = diffJson(builds('default.json'), builds('no-trng.json'));
    expect(code).toBe(12);
    expect(report).toMatchObject({ verdict: 'incompatible change', exit: 12, old: { kind: 'build' }, new: { kind: 'build' }, suppressed: [] });
    expect(report.services).toHaveLength(1);
    expect(report.services[0]).toMatchObject({ name: '@plugvisor/svc-trng', changes: [{ bump: 'major', impact: 'incompatible', subject: 'service', affects: "every VM (feature 'trng' on by default)" }] });
    expect(report.services[0].changes[0].message).toMatch(/^service @plugvisor\/svc-trng@[\d.]+ removed/);
  });
});

describe('plugvisor abi diff --suppressions', () => {
  const removed = () =>
    variant('suppr-removed', (m) => {
      m.surface.calls = m.surface.calls.filter((c: Obj) => c.name !== 'TRNG_RND32');
      m.surface.features.push({ name: 'trng-extra', default: 'opt-in', description: 'x' });
    });
  const file = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('a matched change is listed as suppressed with its reason and does not count (12 → 4)', () => {
    const supp = file('accept.ini', ['# TRNG_RND32 goes: no guest of ours calls it', '[suppress_change]', 'label = rnd32-gone', 'service = @plugvisor/svc-trng', 'subject_regexp = ^call TRNG_RND32$', 'reason = "our guests use TRNG_RND64 only"', ''].join('\n'));
    const plain = plugvisor('abi', 'diff', trngAbi, removed());
    expect(plain.code).toBe(12);
    const r = plugvisor('abi', 'diff', trngAbi, removed(), '--suppressions', supp);
    expect(r.code).toBe(4);
    expect(r.out).toMatch(/suppressed \(1\)/);
    expect(r.out).toMatch(/call TRNG_RND32 \(smccc 0x84000053\) removed\s+major\s+our guests use TRNG_RND64 only\s+.*accept\.ini:2 \[rnd32-gone\]/);
    expect(r.out).toContain('verdict: compatible change (exit 4): 0 incompatible, 1 compatible, 0 harmless, 1 suppressed');
    const { report } = diffJson(trngAbi, removed(), '--suppressions', supp);
    expect(report.suppressed).toEqual([
      expect.objectContaining({ service: '@plugvisor/svc-trng', subject: 'call TRNG_RND32', bump: 'major', reason: 'our guests use TRNG_RND64 only', label: 'rnd32-gone', suppression: `${supp}:2` }),
    ]);
    // Every key given must match: another service's name suppresses nothing.
    const other = file('other.ini', '[suppress_change]\nservice = @plugvisor/svc-psci\nsubject_regexp = TRNG_RND32\nreason = not this one\n');
    expect(plugvisor('abi', 'diff', trngAbi, removed(), '--suppressions', other).code).toBe(12);
    // Suppressing both (two files) leaves nothing: exit 0.
    const rest = file('rest.ini', '[suppress_change]\nmessage_regexp = ^new opt-in feature\nreason = we add it on purpose\n');
    expect(plugvisor('abi', 'diff', trngAbi, removed(), '--suppressions', supp, '--suppressions', rest).code).toBe(0);
  });

  it('a malformed suppression file is bad input naming file and line', () => {
    const cases: [string, string][] = [
      ['[suppress_change]\nservice = x\nreason = y\nfoo = 1\n', ':4: unknown key \'foo\''],
      ['[suppress_change]\nsubject_regexp = (\nreason = y\n', ':2: subject_regexp is not a regular expression'],
      ['\n[suppress_change]\nservice = x\n', ':2: [suppress_change] has no reason'],
      ['[suppress_change]\nreason = y\n', ':1: [suppress_change] selects nothing'],
      ['[suppress_function]\nname = f\n', ':1: unknown section [suppress_function]'],
      ['service = x\n', ':1: service is outside a [suppress_change] section'],
      ['[suppress_change]\nbump = huge\nservice = x\nreason = y\n', ":2: bump is 'huge'"],
      ['[suppress_change]\njust words\n', ":2: 'just words' is neither"],
    ];
    for (const [i, [text, why]] of cases.entries()) {
      const f = file(`bad-${i}.ini`, text);
      usage(plugvisor('abi', 'diff', trngAbi, trngAbi, '--suppressions', f), `--suppressions ${f}${why}`);
    }
    usage(plugvisor('abi', 'diff', trngAbi, trngAbi, '--suppressions', join(dir, 'none.ini')), 'does not exist');
  });
});

describe('plugvisor abi diff: bad input', () => {
  it('exit 2 with one line for unreadable, unrecognised or mismatched inputs', () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "name": ');
    usage(plugvisor('abi', 'diff', broken, trngAbi), `OLD ${broken} is neither a snapshot nor JSON`);
    const arr = join(dir, 'array.json');
    writeFileSync(arr, '[1, 2]');
    usage(plugvisor('abi', 'diff', trngAbi, arr), `NEW ${arr}: is JSON but not an object`);
    const odd = join(dir, 'odd.json');
    writeFileSync(odd, '{ "hello": 1 }');
    usage(plugvisor('abi', 'diff', odd, trngAbi), 'is not a service manifest (abi.json, a ledger entry), a build manifest (abi --json), a build file or an ABI record');
    const badCalls = variant('bad-calls', (m) => {
      m.surface.calls = 'none';
    });
    usage(plugvisor('abi', 'diff', trngAbi, badCalls), 'surface.calls is not an array of objects');
    usage(plugvisor('abi', 'diff', trngAbi, join(dir, 'missing.json')), 'does not exist');
    usage(plugvisor('abi', 'diff', dir, trngAbi), 'is a directory');
    usage(plugvisor('abi', 'diff', trngAbi), 'only a VM record');
    usage(plugvisor('abi', 'diff', trngAbi, trngAbi, trngAbi), 'abi diff takes OLD and NEW');
    usage(plugvisor('abi', 'diff', trngAbi, trngAbi, '--frob'), "Unknown option '--frob'");
    usage(plugvisor('abi', 'diff', builds('default.json'), fixture('psci-bad-version.json')), 'psci-bad-version.json');
  });

  it('documents the exit statuses in the help', () => {
    const r = plugvisor('abi', 'diff', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('plugvisor abi diff OLD NEW');
    expect(r.out).toMatch(/0 identical .*\n.*4 compatible change .* 12 incompatible change/s);
    expect(r.out).toContain('[suppress_change]');
  });
});

describe.skipIf(!unicornAvailable())('plugvisor abi diff: a real guest\'s snapshot', () => {
  // The demo guest (guests/demo.c) probes TRNG like Linux and is snapshotted after 50 traps.
  const snap = join(dir, 'vm.snap');
  const cleared = join(dir, 'vm-no-trng.snap');
  const record = join(dir, 'vm.record.json');
  const take = () => {
    if (existsSync(snap)) return;
    expect(plugvisor('run', demo, '--vcpus', '2', '--snapshot-at', '50', '--snapshot-file', snap, '--record', record).code).toBe(0);
    expect(plugvisor('run', demo, '--vcpus', '2', '--set-reg', '0x6030000000160000=0', '--snapshot-at', '50', '--snapshot-file', cleared).code).toBe(0);
  };

  it('against a build without a service the VM uses: incompatible, naming the feature', () => {
    take();
    const r = plugvisor('abi', 'diff', snap, builds('no-trng.json'));
    expect(r.code).toBe(12);
    expect(r.out).toContain("feature 'trng' is enabled in the VM but the build has no @plugvisor/svc-trng");
    expect(r.out).toContain('this VM (restore refuses it)');
    // The same VM against the default build (the only argument): identical.
    expect(plugvisor('abi', 'diff', snap).code).toBe(0);
    // Its record as `run --record` wrote it reads the same.
    expect(plugvisor('abi', 'diff', record, builds('no-trng.json')).code).toBe(12);
    // A VM with TRNG off moves there.
    expect(plugvisor('abi', 'diff', cleared, builds('no-trng.json')).code).toBe(0);
    // A destination whose TRNG_VERSION answers otherwise: the replayed probe, old → new.
    const v = plugvisor('abi', 'diff', snap, fixture('trng-1-1.json'));
    expect(v.code).toBe(12);
    expect(v.out).toMatch(/TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
  });

  it('two records: a feature turned off is incompatible, turned on compatible; registers by meaning', () => {
    take();
    const off = diffJson(snap, cleared);
    expect(off.code).toBe(12);
    const trng = off.report.services.find((s: Obj) => s.name === '@plugvisor/svc-trng');
    expect(trng.changes).toEqual([expect.objectContaining({ bump: 'major', message: "feature 'trng' on → off" })]);
    const regs = off.report.services.find((s: Obj) => s.name === 'firmware registers');
    expect(regs.changes[0]).toMatchObject({ bump: 'none', impact: 'harmless' });
    expect(regs.changes[0].message).toContain('KVM_REG_ARM_STD_BMAP (0x6030000000160000) 0x1 → 0x0');
    expect(diffJson(cleared, snap).code).toBe(4);
    expect(plugvisor('abi', 'diff', record, snap).code).toBe(0);
  });

  it('refuses a record against anything but a composed build (exit 2, one line)', () => {
    take();
    const manifest = join(dir, 'snap-default-manifest.json');
    writeFileSync(manifest, plugvisor('abi', '--json').out);
    usage(plugvisor('abi', 'diff', snap, manifest), 'NEW must be a build file');
    usage(plugvisor('abi', 'diff', builds('default.json'), snap), 'give the VM as OLD');
    const cut = join(dir, 'cut.snap');
    writeFileSync(cut, readFileSync(snap).subarray(0, 100));
    usage(plugvisor('abi', 'diff', cut, builds('default.json')), `OLD ${cut} is a snapshot that cannot be read`);
  });
});
