import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '@plugvisor/core';
import { createScratch, scratchClone, type Scratch } from './release-scratch.js';

/**
 * The release manager's scenarios, scripted: a scratch copy of the workspace released at 1.0.0
 * (a ledger entry per service, and per machine package, written as the release step writes them),
 * one change to a service's built declaration or code at a time, then scripts/lint.mjs. Each
 * scenario checks the verdict (the bump the change needs, with old → new and the VMs it affects),
 * that a smaller changeset fails and a large enough one passes. The same scenarios give the same
 * output in a full clone, a shallow clone and a copy without .git: lint reads the ledger, not git.
 * Needs the built dist/ of core, cli and the services (scripts/test.sh builds first).
 */

// A machine package as the contract has it: "plugvisor": { "machine": true }, an "./abi" export
// whose machineAbi() returns plain data, and abi.json = canonicalJson(machineAbi(), 2).
const machineAbi = {
  name: '@plugvisor/machine-scratch',
  description: 'A scratch board for the release lint',
  surface: {
    gic: { description: 'Interrupt trigger modes (GICD_ICFGR)', ppi: { '27': 'level', '31': 'level' } },
    traps: { hvcImmediate: { '0x0': 'smccc', '0xea1': 'xen' } },
  },
};
const machine = {
  'package.json': `${JSON.stringify(
    {
      name: '@plugvisor/machine-scratch',
      version: '1.0.0',
      type: 'module',
      plugvisor: { machine: true },
      exports: { '.': './index.js', './abi': './abi.js' },
    },
    null,
    2,
  )}\n`,
  'index.js': 'export {};\n',
  'abi.js': `export function machineAbi() {\n  return ${JSON.stringify(machineAbi)};\n}\n`,
  'abi.json': `${canonicalJson(machineAbi, 2)}\n`,
  'README.md': '# @plugvisor/machine-scratch\n\nA scratch machine package.\n',
};

// The services the scenarios edit (svc-trng, svc-psci, svc-smccc-arch; none requires another).
const SERVICES = ['svc-trng', 'svc-psci', 'svc-smccc-arch'];
let s: Scratch;
beforeAll(() => {
  s = createScratch({ release: '1.0.0', services: SERVICES });
}, 60_000);
afterEach(() => s.reset());
afterAll(() => s?.remove());

type Lint = { status: number | null; out: string };
const ok = (r: Lint) => {
  expect(r.out).toContain('lint: ok');
  expect(r.status).toBe(0);
};
const fails = (r: Lint, ...texts: (string | RegExp)[]) => {
  expect(r.status).toBe(1);
  for (const t of texts) {
    if (typeof t === 'string') expect(r.out).toContain(t);
    else expect(r.out).toMatch(t);
  }
};
const changeset = (sc: Scratch, pkg: string, bump: string, text = 'The change.') => sc.changeset(`${pkg}-${bump}`, `---\n"@plugvisor/${pkg}": ${bump}\n---\n\n${text}\n`);
/** Regenerates the manifests (`pnpm lint --fix`), then lints. */
const lintFixed = (sc: Scratch) => {
  sc.lint(['--fix']);
  return sc.lint();
};

// svc-trng's built declaration (dist/index.js).
const TRNG = 'dist/index.js';
const trngCall = (name: string) => new RegExp(`\\{ name: '${name}'[^\\n]*\\},\\n`);
/** Removes TRNG_RND32 from svc-trng: its declaration and its handler. */
const removeRnd32 = (sc: Scratch) => {
  sc.edit('svc-trng', TRNG, trngCall('TRNG_RND32'), '');
  sc.edit('svc-trng', TRNG, 'TRNG_RND32: rnd32,', '');
};

describe('release lint scenarios (scratch workspace released at 1.0.0)', () => {
  it('new call behind a new opt-in feature → minor (VMs with the feature on)', () => {
    s.edit('svc-trng', TRNG, 'features: [', "features: [\n{ name: 'trng-ext', default: 'opt-in', description: 'A TRNG extension' },");
    s.edit('svc-trng', TRNG, 'calls: [', "calls: [\n{ name: 'TRNG_EXT', conduit: 'smccc', id: 0x84000057, feature: 'trng-ext', signature: { results: results('status') } },");
    s.edit('svc-trng', TRNG, 'handlers: {', 'handlers: {\nTRNG_EXT: (v) => smcccReturn(v.regs, 0),');
    fails(
      lintFixed(s),
      "@plugvisor/svc-trng: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'minor' changeset (pending: none)",
      "minor: new opt-in feature 'trng-ext'; affects VMs with feature 'trng-ext' on",
      "minor: new call TRNG_EXT (smccc 0x84000057) behind new opt-in feature 'trng-ext'; affects VMs with feature 'trng-ext' on",
    );
    changeset(s, 'svc-trng', 'patch');
    fails(s.lint(), "needs a 'minor' changeset (pending: patch: 1.0.0 → 1.0.1 is a patch step)");
    changeset(s, 'svc-trng', 'minor');
    ok(s.lint());
  });

  it('feature default flipped from opt-in to legacy-opt-out → major (new VMs)', () => {
    s.edit('svc-psci', 'dist/index.js', /name: 'psci-system-suspend',\n(\s*)default: 'opt-in',/, "name: 'psci-system-suspend',\n$1default: 'legacy-opt-out',");
    fails(
      lintFixed(s),
      "@plugvisor/svc-psci: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)",
      "major: feature 'psci-system-suspend' default opt-in → legacy-opt-out; affects new VMs (created with defaults)",
    );
    changeset(s, 'svc-psci', 'minor');
    fails(s.lint(), "needs a 'major' changeset (pending: minor: 1.0.0 → 1.1.0 is a minor step)");
    changeset(s, 'svc-psci', 'major');
    ok(s.lint());
  });

  it('call removed → major, naming the call, its id and who used it', () => {
    removeRnd32(s);
    fails(
      lintFixed(s),
      "@plugvisor/svc-trng: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)",
      "major: call TRNG_RND32 (smccc 0x84000053) removed; affects every VM with feature 'trng' (on by default)",
    );
    changeset(s, 'svc-trng', 'major');
    ok(s.lint());
  });

  it('call id changed → major, old → new in hex', () => {
    s.edit('svc-trng', TRNG, "name: 'TRNG_GET_UUID', conduit: 'smccc', id: TRNG.GET_UUID,", "name: 'TRNG_GET_UUID', conduit: 'smccc', id: 0x84000059,");
    fails(lintFixed(s), "needs a 'major' changeset (pending: none)", /major: call TRNG_GET_UUID changed: id 0x84000052 → 0x84000059; affects every VM with feature 'trng'/);
    changeset(s, 'svc-trng', 'minor');
    expect(s.lint().status).toBe(1);
    changeset(s, 'svc-trng', 'major');
    ok(s.lint());
  });

  it('call renamed in place (same conduit and id) → no ABI change: passes with no changeset', () => {
    s.edit('svc-trng', TRNG, "name: 'TRNG_GET_UUID',", "name: 'TRNG_UUID',");
    s.edit('svc-trng', TRNG, 'TRNG_GET_UUID: (v)', 'TRNG_UUID: (v)');
    expect(s.lint().out).toContain('packages/svc-trng/abi.json is stale'); // the manifest names calls
    s.lint(['--fix']);
    const r = s.lint([], { LINT_VERBOSE: '1' });
    ok(r);
    expect(r.out).toContain('lint: @plugvisor/svc-trng 1.0.0: compared with packages/svc-trng/abi/releases/1.0.0.json: change none, pending none');
  });

  it('firmware register accepting more values → minor; fewer → major, naming the values and the VMs given them', () => {
    const arch = 'dist/index.js';
    const wa1 = /(name: 'KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1',[\s\S]*?accepts: )\[0n, 1n, 2n\]/;
    s.edit('svc-smccc-arch', arch, wa1, '$1[0n, 1n, 2n, 3n]');
    fails(
      lintFixed(s),
      "@plugvisor/svc-smccc-arch: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'minor' changeset (pending: none)",
      'minor: firmware register KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1 accepts [0x0, 0x1, 0x2] → [0x0, 0x1, 0x2, 0x3]: also 0x3; affects VMs given KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1 = 0x3',
    );
    changeset(s, 'svc-smccc-arch', 'minor');
    ok(s.lint());

    s.reset();
    s.edit('svc-smccc-arch', arch, wa1, '$1[0n, 2n]');
    fails(
      lintFixed(s),
      "@plugvisor/svc-smccc-arch: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)",
      'major: firmware register KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1 accepts [0x0, 0x1, 0x2] → [0x0, 0x2]: no longer 0x1; affects VMs given KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1 = 0x1',
    );
    changeset(s, 'svc-smccc-arch', 'minor');
    expect(s.lint().status).toBe(1);
    changeset(s, 'svc-smccc-arch', 'major');
    ok(s.lint());
  });

  it('behaviour change → major; a patch passes only with a waiver naming the call and why', () => {
    s.edit('svc-trng', TRNG, /TRNG_V1_0 = 0x1_?0000;/, 'TRNG_V1_0 = 0x10001;');
    fails(lintFixed(s), "needs a 'major' changeset (pending: none)", /major: behaviour changed: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001/);
    changeset(s, 'svc-trng', 'patch');
    fails(s.lint(), "needs a 'major' changeset (pending: patch: 1.0.0 → 1.0.1 is a patch step)");
    changeset(s, 'svc-trng', 'patch', 'Guest ABI waiver: TRNG_VERSION: DEN0098 1.1 is what this code implements');
    ok(s.lint());
  });

  it('hand-edited patch version over a major change (ledger entry copied) → fails naming both versions, the steps and the reasons', () => {
    removeRnd32(s);
    s.lint(['--fix']);
    // A release manager bumps package.json by hand and copies the manifest into the ledger.
    s.setVersion('svc-trng', '1.0.1');
    s.writeLedger('svc-trng', '1.0.1');
    fails(
      s.lint(),
      "@plugvisor/svc-trng: release 1.0.1 took a patch step from 1.0.0, but its guest ABI change needs a major step (abi/releases/1.0.0.json → 1.0.1.json)",
      "major: call TRNG_RND32 (smccc 0x84000053) removed; affects every VM with feature 'trng' (on by default)",
    );
    // Without copying the entry: a version the ledger does not know.
    s.reset();
    removeRnd32(s);
    s.lint(['--fix']);
    s.setVersion('svc-trng', '1.0.1');
    fails(s.lint(), "@plugvisor/svc-trng: released version 1.0.1 has no ledger entry (packages/svc-trng/abi/releases/1.0.1.json): versions are cut with 'pnpm changeset version'");
    // Cut as the major it is: passes.
    s.setVersion('svc-trng', '2.0.0');
    s.writeLedger('svc-trng', '2.0.0');
    ok(s.lint());
  });

  it('0.x: the policy check and restore use (npm caret): a patch number is a minor step, a minor number a major one', () => {
    const arch = 'dist/index.js';
    const wa1 = /(name: 'KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1',[\s\S]*?accepts: )\[0n, 1n, 2n\]/;
    const releasedAt03 = () => {
      s.reset();
      s.setVersion('svc-smccc-arch', '0.3.0');
      s.writeLedger('svc-smccc-arch', '0.3.0');
      s.dropLedger('svc-smccc-arch', '1.0.0');
    };
    releasedAt03();
    ok(s.lint());
    // Widened (minor): 0.3.0 → 0.3.1 is a minor step, so a patch changeset is enough.
    s.edit('svc-smccc-arch', arch, wa1, '$1[0n, 1n, 2n, 3n]');
    fails(lintFixed(s), "@plugvisor/svc-smccc-arch: guest ABI changed since 0.3.0 (abi/releases/0.3.0.json) and needs a 'patch' changeset (0.3.0 → 0.3.1: a minor step at 0.x, npm's caret reading) (pending: none)");
    changeset(s, 'svc-smccc-arch', 'patch');
    ok(s.lint());
    // Narrowed (major): 0.3.0 → 0.3.1 is not enough, 0.3.0 → 0.4.0 is.
    releasedAt03();
    s.edit('svc-smccc-arch', arch, wa1, '$1[0n, 2n]');
    fails(lintFixed(s), "needs a 'minor' changeset (0.3.0 → 0.4.0: a major step at 0.x, npm's caret reading) (pending: none)");
    changeset(s, 'svc-smccc-arch', 'patch');
    fails(s.lint(), "(pending: patch: 0.3.0 → 0.3.1 is a minor step)");
    changeset(s, 'svc-smccc-arch', 'minor');
    ok(s.lint());
    // Released by hand as 0.3.1 anyway: the ledger says it.
    s.consumeChangesets();
    s.setVersion('svc-smccc-arch', '0.3.1');
    s.writeLedger('svc-smccc-arch', '0.3.1');
    fails(s.lint(), '@plugvisor/svc-smccc-arch: release 0.3.1 took a minor step from 0.3.0, but its guest ABI change needs a major step (abi/releases/0.3.0.json → 0.3.1.json)');
  });

});

describe('release lint of a machine package (its own scratch workspace)', () => {
  let m: Scratch;
  beforeAll(() => {
    m = createScratch({ release: '1.0.0', services: ['svc-trng'], extra: { 'machine-scratch': machine } });
  }, 60_000);
  afterEach(() => m.reset());
  afterAll(() => m?.remove());

  it('machine package: abi.json generated from machineAbi(), its ledger, and its changes classified the same way', () => {
    let r = m.lint([], { LINT_VERBOSE: '1' });
    ok(r);
    expect(r.out).toContain('lint: @plugvisor/machine-scratch 1.0.0: compared with packages/machine-scratch/abi/releases/1.0.0.json: change none, pending none');
    // PPI 31 made edge-triggered: what an existing VM sees changes.
    m.edit('machine-scratch', 'abi.js', '"31":"level"', '"31":"edge"');
    fails(m.lint(), 'packages/machine-scratch/abi.json is stale or missing');
    fails(
      lintFixed(m),
      "@plugvisor/machine-scratch: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)",
      "major: gic.ppi.31 'level' → 'edge'; affects every VM on this machine",
    );
    changeset(m, 'machine-scratch', 'minor');
    expect(m.lint().status).toBe(1);
    changeset(m, 'machine-scratch', 'patch', 'Guest ABI waiver: gic.ppi.31: the timer PPI is edge-triggered on real hardware');
    ok(m.lint());

    // A new fact: minor.
    m.reset();
    m.edit('machine-scratch', 'abi.js', '"0xea1":"xen"', '"0xea1":"xen","0x1":"vendor"');
    fails(lintFixed(m), "needs a 'minor' changeset (pending: none)", "minor: new fact traps.hvcImmediate.0x1 = 'vendor'");
    // Hand-edited version: no entry.
    m.setVersion('machine-scratch', '1.0.1');
    fails(m.lint(), "@plugvisor/machine-scratch: released version 1.0.1 has no ledger entry (packages/machine-scratch/abi/releases/1.0.1.json)");
  });
});

/** One run of several scenarios: every lint output, in order. */
function scenarioOutputs(sc: Scratch): string[] {
  const outs: string[] = [];
  const run = (args: string[] = []) => {
    const r = sc.lint(args, { LINT_VERBOSE: '1' });
    outs.push(`status ${r.status}\n${r.out}`);
  };
  sc.reset();
  run();
  // Behaviour change: major, then waived.
  sc.edit('svc-psci', 'dist/index.js', 'MIGRATE_INFO_TYPE_MP = 2;', 'MIGRATE_INFO_TYPE_MP = 1;');
  run(['--fix']);
  run();
  changeset(sc, 'svc-psci', 'patch', 'Guest ABI waiver: PSCI_MIGRATE_INFO_TYPE: the spec says 1 on a UP build');
  run();
  // Hand-edited patch over a removed call, with and without a copied entry.
  sc.reset();
  removeRnd32(sc);
  sc.lint(['--fix']);
  sc.setVersion('svc-trng', '1.0.1');
  // In a clone the hand edit is committed: "the last commit that changed the version" is now it.
  if (existsSync(join(sc.dir, '.git'))) {
    const r = spawnSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'svc-trng 1.0.1'], { cwd: sc.dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  }
  run();
  sc.writeLedger('svc-trng', '1.0.1');
  run();
  sc.reset();
  return outs;
}

describe('no git: a full clone, a shallow clone and a copy without .git give the same verdicts', () => {
  it('same output, scenario by scenario', () => {
    const full = scratchClone(s);
    const shallow = scratchClone(s, 1);
    try {
      expect(existsSync(join(full.dir, '.git'))).toBe(true);
      expect(existsSync(join(shallow.dir, '.git/shallow'))).toBe(true);
      expect(existsSync(join(s.dir, '.git'))).toBe(false);
      const plain = scenarioOutputs(s);
      expect(plain.join('\n')).toContain("needs a 'major' changeset");
      expect(plain.join('\n')).toContain('has no ledger entry');
      expect(plain.join('\n')).toContain('took a patch step from 1.0.0');
      expect(scenarioOutputs(full)).toEqual(plain);
      expect(scenarioOutputs(shallow)).toEqual(plain);
    } finally {
      full.remove();
      shallow.remove();
    }
  }, 120_000);
});
