import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createScratch, type Scratch } from './release-scratch.js';

/**
 * The release gate against the release ledger: in a scratch copy of the workspace whose release
 * is a ledger entry per service (abi/releases/1.0.0.json, written the way the release step writes
 * it), each case edits the built code or declaration of a service and runs scripts/lint.mjs.
 * The verdict must be the bump the change needs, with the reasons (old → new, which VMs), and a
 * changeset at least that large makes it pass. Scenarios of surface changes live in
 * release-lint-scenarios.test.ts. Needs the built dist/ (scripts/test.sh builds first).
 */
const repo = new URL('../../..', import.meta.url).pathname;
let s: Scratch;

beforeAll(() => {
  s = createScratch({ release: '1.0.0', services: ['svc-trng', 'svc-psci', 'svc-pvtime', 'svc-ptp', 'svc-kvm-vendor'] });
}, 60_000);
afterEach(() => s.reset());
afterAll(() => s?.remove());

const ok = (r: { status: number | null; out: string }) => {
  expect(r.out).toContain('lint: ok');
  expect(r.status).toBe(0);
};

describe('pnpm lint against the release ledger (scratch copy of the workspace)', () => {
  it('is clean at the release, and says which ledger entry it compared with', () => {
    ok(s.lint());
    const r = s.lint([], { LINT_VERBOSE: '1' });
    ok(r);
    expect(r.out).toContain('lint: @plugvisor/svc-trng 1.0.0: compared with packages/svc-trng/abi/releases/1.0.0.json: change none, pending none');
    expect(r.out).toContain('lint: @plugvisor/svc-psci 1.0.0: compared with packages/svc-psci/abi/releases/1.0.0.json');
  });

  it('TRNG_VERSION answering 1.1: major, naming package, call, probe, old → new and the VMs; a major changeset passes', () => {
    s.edit('svc-trng', 'dist/index.js', /TRNG_V1_0 = 0x1_?0000;/, 'TRNG_V1_0 = 0x10001;');
    let r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('packages/svc-trng/abi.json is stale');
    expect(r.out).toContain("@plugvisor/svc-trng: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)");
    expect(r.out).toMatch(
      /major: behaviour changed: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001 x1=0x0 x2=0x0 x3=0x0; affects every VM with feature 'trng' \(on by default\)/,
    );

    expect(s.lint(['--fix']).out).not.toContain('abi.json is stale');
    expect(s.lint().status).toBe(1); // the manifest is fresh now, but the change still needs its bump

    s.changeset('trng-minor', '---\n"@plugvisor/svc-trng": minor\n---\n\nTRNG 1.1.\n');
    r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain("needs a 'major' changeset (pending: minor: 1.0.0 → 1.1.0 is a minor step)");
    s.changeset('trng-major', '---\n"@plugvisor/svc-trng": major\n---\n\nTRNG_VERSION answers 1.1.\n');
    ok(s.lint());
  });

  it('the tree right after the release step passes: version bumped, changeset consumed, ledger entry written', () => {
    s.edit('svc-trng', 'dist/index.js', /TRNG_V1_0 = 0x1_?0000;/, 'TRNG_V1_0 = 0x10001;');
    s.lint(['--fix']);
    s.changeset('trng-major', '---\n"@plugvisor/svc-trng": major\n---\n\nTRNG_VERSION answers 1.1.\n');
    ok(s.lint());
    // What `pnpm changeset version` does to the package: 1.0.0 → 2.0.0, its entry, no changeset.
    s.setVersion('svc-trng', '2.0.0');
    s.writeLedger('svc-trng', '2.0.0');
    s.consumeChangesets();
    const r = s.lint([], { LINT_VERBOSE: '1' });
    ok(r);
    expect(r.out).toContain('lint: @plugvisor/svc-trng 2.0.0: compared with packages/svc-trng/abi/releases/2.0.0.json (ledger 1.0.0 → 2.0.0): change none, pending none');
  });

  it('MIGRATE_INFO_TYPE answering 1: major, unless a waiver names the call with a reason; the released waiver keeps the ledger valid', () => {
    s.edit('svc-psci', 'dist/index.js', 'MIGRATE_INFO_TYPE_MP = 2;', 'MIGRATE_INFO_TYPE_MP = 1;');
    s.lint(['--fix']);
    let r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain("@plugvisor/svc-psci: guest ABI changed since 1.0.0 (abi/releases/1.0.0.json) and needs a 'major' changeset (pending: none)");
    expect(r.out).toMatch(/major: behaviour changed: PSCI_MIGRATE_INFO_TYPE probe \[[^\]]+\]: x0=0x2 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0/);

    s.changeset('psci-fix', '---\n"@plugvisor/svc-psci": patch\n---\n\nMIGRATE_INFO_TYPE.\n');
    expect(s.lint().status).toBe(1); // a patch without a waiver is not enough
    const reason = 'answered 2 (MP) on a UP build; the spec says 1';
    s.changeset('psci-fix', `---\n"@plugvisor/svc-psci": patch\n---\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE: ${reason}\n`);
    ok(s.lint());
    s.changeset('psci-fix', '---\n"@plugvisor/svc-psci": patch\n---\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE:\n');
    expect(s.lint().out).toContain('the waiver for PSCI_MIGRATE_INFO_TYPE gives no reason');

    // Released as 1.0.1 with its waiver recorded in the entry: the ledger's 1.0.0 → 1.0.1 is a patch
    // step for a waived change, so it passes; an entry that lost the waiver is a major change
    // shipped as a patch.
    s.setVersion('svc-psci', '1.0.1');
    s.consumeChangesets();
    s.writeLedger('svc-psci', '1.0.1', { PSCI_MIGRATE_INFO_TYPE: reason });
    ok(s.lint());
    s.writeLedger('svc-psci', '1.0.1');
    r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('@plugvisor/svc-psci: release 1.0.1 took a patch step from 1.0.0, but its guest ABI change needs a major step (abi/releases/1.0.0.json → 1.0.1.json)');
    expect(r.out).toMatch(/major: behaviour changed: PSCI_MIGRATE_INFO_TYPE probe \[[^\]]+\]: x0=0x2 x1=0x0 x2=0x0 x3=0x0 → x0=0x1/);
  });

  it('refuses a changeset without a summary, naming the file and the package', () => {
    s.changeset('empty', '---\n"@plugvisor/svc-pvtime": patch\n---\n\n  \n');
    const r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('.changeset/empty.md (@plugvisor/svc-pvtime): no summary: say what changed (it becomes the CHANGELOG entry)');
    s.changeset('empty', '---\n"@plugvisor/svc-pvtime": patch\n---\n\nStolen-time records are written once per run.\n');
    ok(s.lint());
  });

  it('a released version must have its ledger entry, and the entry must be the package at that version', () => {
    s.setVersion('svc-pvtime', '1.0.1');
    let r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain(
      "@plugvisor/svc-pvtime: released version 1.0.1 has no ledger entry (packages/svc-pvtime/abi/releases/1.0.1.json): versions are cut with 'pnpm changeset version'",
    );
    s.writeLedger('svc-pvtime', '1.0.1');
    ok(s.lint());
    s.edit('svc-pvtime', 'abi/releases/1.0.1.json', '"version": "1.0.1"', '"version": "1.0.2"');
    r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('packages/svc-pvtime/abi/releases/1.0.1.json: not the ledger entry of @plugvisor/svc-pvtime 1.0.1');
  });

  it('a ledger entry newer than the package version fails', () => {
    s.writeLedger('svc-ptp', '1.1.0');
    const r = s.lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain("@plugvisor/svc-ptp: ledger entry packages/svc-ptp/abi/releases/1.1.0.json is newer than the package's version 1.0.0");
  });
});

describe("the tree right after the workspace's `pnpm changeset version` passes lint", () => {
  const wrapper = join(repo, 'packages/release/dist/changeset.js');
  let v: Scratch;
  beforeAll(() => {
    v = createScratch({ release: '1.0.0', services: ['svc-trng', 'svc-psci'] });
  }, 60_000);
  afterAll(() => v?.remove());

  it('a minor and a waived patch are cut: versions, ledger entries with the waiver, no changesets; lint: ok', () => {
    // The workspace the release step sees: the scratch's service packages.
    writeFileSync(join(v.dir, 'pnpm-workspace.yaml'), 'packages:\n  - packages/svc-*\n');
    // svc-trng: a new opt-in feature and call (minor); svc-psci: an answer fixed under a waiver (patch).
    v.edit('svc-trng', 'dist/index.js', 'features: [', "features: [\n{ name: 'trng-ext', default: 'opt-in', description: 'A TRNG extension' },");
    v.edit('svc-trng', 'dist/index.js', 'calls: [', "calls: [\n{ name: 'TRNG_EXT', conduit: 'smccc', id: 0x84000057, feature: 'trng-ext', signature: { results: results('status') } },");
    v.edit('svc-trng', 'dist/index.js', 'handlers: {', 'handlers: {\nTRNG_EXT: (v) => smcccReturn(v.regs, 0),');
    v.edit('svc-psci', 'dist/index.js', 'MIGRATE_INFO_TYPE_MP = 2;', 'MIGRATE_INFO_TYPE_MP = 1;');
    v.lint(['--fix']);
    v.changeset('trng-ext', '---\n"@plugvisor/svc-trng": minor\n---\n\nTRNG_EXT behind the opt-in feature trng-ext.\n');
    const reason = 'answered 2 (MP) on a UP build; the spec says 1';
    v.changeset('psci-fix', `---\n"@plugvisor/svc-psci": patch\n---\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE: ${reason}\n`);
    ok(v.lint());

    const r = spawnSync(process.execPath, [wrapper, 'version'], { cwd: v.dir, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/^\s*at /m);
    expect(r.status).toBe(0);
    expect(v.ledger('svc-trng', '1.1.0')).toMatchObject({ name: '@plugvisor/svc-trng', version: '1.1.0' });
    expect(v.ledger('svc-psci', '1.0.1')).toMatchObject({ version: '1.0.1', waivers: { PSCI_MIGRATE_INFO_TYPE: reason } });
    expect(readdirSync(join(v.dir, '.changeset')).filter((f) => f.endsWith('.md'))).toEqual([]);

    const after = v.lint([], { LINT_VERBOSE: '1' });
    ok(after);
    expect(after.out).toContain('lint: @plugvisor/svc-trng 1.1.0: compared with packages/svc-trng/abi/releases/1.1.0.json (ledger 1.0.0 → 1.1.0): change none, pending none');
    expect(after.out).toContain('lint: @plugvisor/svc-psci 1.0.1: compared with packages/svc-psci/abi/releases/1.0.1.json (ledger 1.0.0 → 1.0.1): change none, pending none');
  });
});
