// `pnpm changeset version` through the wrapper, in scratch copies of a minimal workspace: a root
// package.json, .changeset/config.json naming @plugvisor/release/changelog, node_modules linked to
// the repository's, and svc-trng and svc-psci copied from the repository (package.json, abi.json;
// svc-psci as released 1.0.0 with its ledger entry and CHANGELOG). Runs the built dist/ (the test
// script builds first), as the root "changeset" script does.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..', '..');
const wrapper = join(repo, 'packages', 'release', 'dist', 'changeset.js');
const changesetsBin = createRequire(join(repo, 'package.json')).resolve('@changesets/cli/bin.js');
const { canonicalJson } = (await import(join(repo, 'packages', 'core', 'dist', 'index.js'))) as typeof import('@plugvisor/core');
const { recordReleases, readPending, workspacePackages } = (await import(join(repo, 'packages', 'release', 'dist', 'index.js'))) as typeof import('../src/index.js');

type Json = Record<string, any>;
const scratches: string[] = [];
afterAll(() => {
  for (const d of scratches) rmSync(d, { recursive: true, force: true });
});

const git = (dir: string, ...args: string[]) => spawnSync('git', ['-c', 'user.email=release@test', '-c', 'user.name=release test', ...args], { cwd: dir, encoding: 'utf8' });

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-release-'));
  scratches.push(dir);
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch-workspace', private: true, type: 'module' }, null, 2) + '\n');
  writeFileSync(join(dir, 'pnpm-workspace.yaml'), 'packages:\n  - packages/*\n');
  mkdirSync(join(dir, '.changeset'));
  cpSync(join(repo, '.changeset', 'config.json'), join(dir, '.changeset', 'config.json'));
  for (const p of ['svc-trng', 'svc-psci']) {
    mkdirSync(join(dir, 'packages', p), { recursive: true });
    for (const f of ['package.json', 'abi.json']) cpSync(join(repo, 'packages', p, f), join(dir, 'packages', p, f));
  }
  // svc-trng as never released: version 0.0.0, no ledger, no CHANGELOG (whatever the repository's is now).
  const trng = join(dir, 'packages', 'svc-trng');
  writeFileSync(join(trng, 'package.json'), JSON.stringify({ ...readJson(join(trng, 'package.json')), version: '0.0.0' }, null, 2) + '\n');
  // svc-psci as released: version 1.0.0, its ledger entry, a CHANGELOG.
  const psci = join(dir, 'packages', 'svc-psci');
  const pkg = readJson(join(psci, 'package.json'));
  writeFileSync(join(psci, 'package.json'), JSON.stringify({ ...pkg, version: '1.0.0' }, null, 2) + '\n');
  mkdirSync(join(psci, 'abi', 'releases'), { recursive: true });
  writeFileSync(join(psci, 'abi', 'releases', '1.0.0.json'), canonicalJson({ ...readJson(join(psci, 'abi.json')), version: '1.0.0' }, 2) + '\n');
  writeFileSync(join(psci, 'CHANGELOG.md'), '# @plugvisor/svc-psci\n\n## 1.0.0\n\n### Major Changes\n\n- First release.\n');
  expect(git(dir, 'init', '-q').status).toBe(0);
  commit(dir);
  return dir;
}

const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8')) as Json;
const writeJson = (file: string, v: unknown) => writeFileSync(file, JSON.stringify(v, null, 2) + '\n');
const commit = (dir: string) => {
  git(dir, 'add', '-A');
  git(dir, 'commit', '-qm', 'step', '--allow-empty');
};
function changeset(dir: string, id: string, releases: Record<string, string>, summary: string) {
  const front = Object.entries(releases).map(([n, t]) => `"${n}": ${t}`);
  writeFileSync(join(dir, '.changeset', `${id}.md`), `---\n${front.join('\n')}\n---\n\n${summary}\n`);
}
const version = (dir: string, bin = wrapper) => spawnSync(process.execPath, [bin, 'version'], { cwd: dir, encoding: 'utf8' });
const pkgDir = (dir: string, p: string) => join(dir, 'packages', p);
const versionOf = (dir: string, p: string) => readJson(join(pkgDir(dir, p), 'package.json')).version as string;
const changelog = (dir: string, p: string) => readFileSync(join(pkgDir(dir, p), 'CHANGELOG.md'), 'utf8');
/** The lines of a CHANGELOG under `## version`, up to the next release. */
function release(text: string, v: string): string {
  const start = text.indexOf(`\n## ${v}\n`);
  expect(start, `no "## ${v}" heading`).toBeGreaterThanOrEqual(0);
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start + 1, end < 0 ? undefined : end);
}
/** Every file of the scratch workspace but node_modules and .git, path → text. */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      if (f === 'node_modules' || f === '.git') continue;
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}
/** abi.json's object + version (+ waivers): what the ledger entry must hold. */
const expectedEntry = (dir: string, p: string, v: string, waivers?: Record<string, string>) => ({ ...readJson(join(pkgDir(dir, p), 'abi.json')), version: v, ...(waivers ? { waivers } : {}) });
const ledger = (dir: string, p: string, v: string) => readFileSync(join(pkgDir(dir, p), 'abi', 'releases', `${v}.json`), 'utf8');

describe('pnpm changeset version (the release step)', () => {
  it('cuts a first release and a release without ABI change; a second run changes nothing', () => {
    const dir = scratch();
    changeset(dir, 'trng-first', { '@plugvisor/svc-trng': 'major' }, 'First release: the KVM/arm64 TRNG guest ABI.\nGuest ABI waiver: TRNG_VERSION: nothing earlier to waive');
    changeset(dir, 'psci-docs', { '@plugvisor/svc-psci': 'patch' }, 'README: say which PSCI versions a VMM may select.');
    commit(dir);
    const r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'svc-trng')).toBe('1.0.0');
    expect(versionOf(dir, 'svc-psci')).toBe('1.0.1');
    expect(r.stdout).toContain('@plugvisor/svc-trng 0.0.0 → 1.0.0: ledger packages/svc-trng/abi/releases/1.0.0.json');

    // Ledger entries: canonical abi.json + version, nothing else.
    expect(ledger(dir, 'svc-trng', '1.0.0')).toBe(canonicalJson(expectedEntry(dir, 'svc-trng', '1.0.0'), 2) + '\n');
    expect(ledger(dir, 'svc-psci', '1.0.1')).toBe(canonicalJson(expectedEntry(dir, 'svc-psci', '1.0.1'), 2) + '\n');

    const trng = release(changelog(dir, 'svc-trng'), '1.0.0');
    expect(trng.startsWith('## 1.0.0\n\n### Guest ABI\n\nFirst release')).toBe(true);
    expect(trng).toContain('- feature `trng`: legacy-opt-out (KVM_REG_ARM_STD_BMAP 0x6030000000160000 bit 0); calls: TRNG_VERSION (smccc 0x84000050)');
    expect(trng).toContain('TRNG_RND64 (smccc 0xc4000053)');
    expect(trng).toContain("Rollback (onto a build without this service): refused for every VM with feature 'trng' (on by default)");
    // The changeset's text, with the commit that added it (as @changesets/changelog-git writes it).
    const sha = git(dir, 'log', '--format=%h', '--abbrev=7', '-1', '--', '.changeset/trng-first.md').stdout.trim();
    expect(sha).toMatch(/^[0-9a-f]{7}$/);
    expect(trng).toContain(`### Major Changes\n\n- ${sha}: First release: the KVM/arm64 TRNG guest ABI.\n  - Guest ABI waiver: \`TRNG_VERSION\`: nothing earlier to waive`);

    const psci = changelog(dir, 'svc-psci');
    const r101 = release(psci, '1.0.1');
    expect(r101).toContain('### Guest ABI\n\nNo guest ABI change since 1.0.0.');
    expect(r101).toContain('Upgrade (VMs of 1.0.0 onto 1.0.1): every VM of the previous release restores.');
    expect(r101).toContain('Rollback (VMs of 1.0.1 onto 1.0.0): every VM of this release restores on the previous one.');
    expect(r101).toContain('README: say which PSCI versions a VMM may select.');
    expect(release(psci, '1.0.0')).not.toContain('Guest ABI'); // the older release is left as it was

    commit(dir);
    const before = tree(dir);
    const again = version(dir);
    expect(again.status, again.stderr).toBe(0);
    expect(tree(dir)).toEqual(before);
    // The after-step itself, redone for the same release (as after an interrupted run): nothing new.
    const was = workspacePackages(dir).map((p) => ({ ...p, version: p.name.endsWith('trng') ? '0.0.0' : '1.0.0' }));
    const redo = recordReleases(dir, was, readPending(dir));
    expect(redo.problems).toEqual([]);
    expect(redo.released.map((x) => [x.name, x.ledgerWritten, x.changelogWritten])).toEqual([
      ['@plugvisor/svc-psci', false, false],
      ['@plugvisor/svc-trng', false, false],
    ]);
    expect(tree(dir)).toEqual(before);
  });

  it('an opt-in feature added is a minor release; a call removed is refused as a patch, and as a major names the refused VMs', () => {
    const dir = scratch();
    const abiFile = join(pkgDir(dir, 'svc-psci'), 'abi.json');
    const abi = readJson(abiFile);
    abi.surface.features.push({ name: 'psci-extra', default: 'opt-in', description: 'a scratch opt-in feature' });
    abi.surface.calls.push({ conduit: 'smccc', feature: 'psci-extra', id: 0x8400001f, name: 'PSCI_EXTRA', signature: { results: [{ reg: 0 }] } });
    writeJson(abiFile, abi);
    changeset(dir, 'psci-extra', { '@plugvisor/svc-psci': 'minor' }, 'PSCI_EXTRA behind the opt-in feature psci-extra.');
    commit(dir);
    let r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'svc-psci')).toBe('1.1.0');
    expect(ledger(dir, 'svc-psci', '1.1.0')).toBe(canonicalJson(expectedEntry(dir, 'svc-psci', '1.1.0'), 2) + '\n');
    let notes = release(changelog(dir, 'svc-psci'), '1.1.0');
    expect(notes).toContain('Compared with 1.0.0 (its ledger entry): a minor change.');
    expect(notes).toContain("- **minor** new opt-in feature 'psci-extra' — affects: VMs with feature 'psci-extra' on");
    expect(notes).toContain("- **minor** new call PSCI_EXTRA (smccc 0x8400001f) behind new opt-in feature 'psci-extra' — affects: VMs with feature 'psci-extra' on");
    expect(notes).toContain('Upgrade (VMs of 1.0.0 onto 1.1.0): every VM of the previous release restores.');
    expect(notes).toContain("Rollback (VMs of 1.1.0 onto 1.0.0): refused for VMs with feature 'psci-extra' on (feature 'psci-extra'); VMs with feature 'psci-extra' on (call PSCI_EXTRA); every other VM restores.");
    commit(dir);

    // Remove PSCI_MIGRATE_INFO_TYPE (declaration and recorded answers).
    const next = readJson(abiFile);
    next.surface.calls = next.surface.calls.filter((c: Json) => c.name !== 'PSCI_MIGRATE_INFO_TYPE');
    for (const t of Object.values(next.behaviour as Json)) delete (t as Json).PSCI_MIGRATE_INFO_TYPE;
    writeJson(abiFile, next);
    changeset(dir, 'psci-drop', { '@plugvisor/svc-psci': 'patch' }, 'Drop PSCI_MIGRATE_INFO_TYPE.');
    commit(dir);
    const before = tree(dir);
    r = version(dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('@plugvisor/svc-psci: its pending changesets make 1.1.0 → 1.1.1 (a patch step) but abi.json changed since 1.1.0 needs a major release: major: call PSCI_MIGRATE_INFO_TYPE (smccc 0x84000006) removed');
    expect(r.stderr).toContain('nothing was written');
    expect(tree(dir)).toEqual(before);

    changeset(dir, 'psci-drop', { '@plugvisor/svc-psci': 'major' }, 'Drop PSCI_MIGRATE_INFO_TYPE.');
    commit(dir);
    r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'svc-psci')).toBe('2.0.0');
    expect(ledger(dir, 'svc-psci', '2.0.0')).toBe(canonicalJson(expectedEntry(dir, 'svc-psci', '2.0.0'), 2) + '\n');
    const text = changelog(dir, 'svc-psci');
    notes = release(text, '2.0.0');
    expect(notes).toContain("- **major** call PSCI_MIGRATE_INFO_TYPE (smccc 0x84000006) removed — affects: every VM with feature 'psci' (on by default)");
    expect(notes).toContain("Upgrade (VMs of 1.1.0 onto 2.0.0): refused for every VM with feature 'psci' (on by default) (call PSCI_MIGRATE_INFO_TYPE); every other VM restores.");
    // no VM of 2.0.0 can have the removed call: rollback refuses nobody for it
    expect(notes).toContain('Rollback (VMs of 2.0.0 onto 1.1.0): every VM of this release restores on the previous one.');
    expect(text.match(/### Guest ABI/g)).toHaveLength(2); // 2.0.0 and 1.1.0, once each
    expect(readdirSync(join(pkgDir(dir, 'svc-psci'), 'abi', 'releases')).sort()).toEqual(['1.0.0.json', '1.1.0.json', '2.0.0.json']);
  });

  it('a changed answer needs a waiver for a patch; the waiver and its reason go into the ledger and the notes', () => {
    const dir = scratch();
    const abiFile = join(pkgDir(dir, 'svc-psci'), 'abi.json');
    const abi = readJson(abiFile);
    abi.behaviour.default.PSCI_MIGRATE_INFO_TYPE['-'] = 'x0=0x1 x1=0x0 x2=0x0 x3=0x0';
    writeJson(abiFile, abi);
    changeset(dir, 'psci-fix', { '@plugvisor/svc-psci': 'patch' }, 'MIGRATE_INFO_TYPE answers as the spec says.');
    commit(dir);
    let r = version(dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('major: behaviour changed');
    expect(r.stderr).toContain('PSCI_MIGRATE_INFO_TYPE');
    expect(versionOf(dir, 'svc-psci')).toBe('1.0.0');

    const reason = 'answered 2 (MP) where the spec requires 1';
    changeset(dir, 'psci-fix', { '@plugvisor/svc-psci': 'patch' }, `MIGRATE_INFO_TYPE answers as the spec says.\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE: ${reason}`);
    commit(dir);
    r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'svc-psci')).toBe('1.0.1');
    const entry = readJson(join(pkgDir(dir, 'svc-psci'), 'abi', 'releases', '1.0.1.json'));
    expect(entry).toEqual(expectedEntry(dir, 'svc-psci', '1.0.1', { PSCI_MIGRATE_INFO_TYPE: reason }));
    expect(ledger(dir, 'svc-psci', '1.0.1')).toBe(canonicalJson(entry, 2) + '\n');
    const notes = release(changelog(dir, 'svc-psci'), '1.0.1');
    expect(notes).toMatch(/- \*\*patch\*\* waived: .*PSCI_MIGRATE_INFO_TYPE.*0x2.*→.*0x1.* — affects: every VM with feature 'psci' \(on by default\) — waived: answered 2 \(MP\) where the spec requires 1/);
    // a waiver lets the version line take a patch; restore still replays the old answers
    expect(notes).toContain("Upgrade (VMs of 1.0.0 onto 1.0.1): refused for every VM with feature 'psci' (on by default) (call PSCI_MIGRATE_INFO_TYPE); every other VM restores.");
    expect(notes).toContain("Rollback (VMs of 1.0.1 onto 1.0.0): refused for every VM with feature 'psci' (on by default) (call PSCI_MIGRATE_INFO_TYPE); every other VM restores.");
    expect(notes).toContain(`- Guest ABI waiver: \`PSCI_MIGRATE_INFO_TYPE\`: ${reason}`);
  });

  it('refuses a changeset with an empty summary, in the wrapper and in the changelog generator', () => {
    const dir = scratch();
    writeFileSync(join(dir, '.changeset', 'empty.md'), '---\n"@plugvisor/svc-psci": patch\n---\n\n');
    commit(dir);
    const before = tree(dir);
    const r = version(dir);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe('changeset version: .changeset/empty.md (@plugvisor/svc-psci): no summary: say what changed (it becomes the CHANGELOG entry)');
    expect(r.stderr).not.toMatch(/\n\s+at /); // one clear line, no stack
    expect(tree(dir)).toEqual(before);
    // changesets itself, through the generator named in config.json: it stops before writing.
    const direct = version(dir, changesetsBin);
    expect(direct.status).not.toBe(0);
    expect(direct.stdout + direct.stderr).toContain('no summary');
    expect(tree(dir)).toEqual(before);
    // A waiver without a reason is refused too.
    writeFileSync(join(dir, '.changeset', 'empty.md'), '---\n"@plugvisor/svc-psci": patch\n---\n\nFix.\nGuest ABI waiver: PSCI_VERSION:\n');
    const w = version(dir);
    expect(w.status).toBe(1);
    expect(w.stderr).toContain('the waiver for PSCI_VERSION gives no reason');
    expect(versionOf(dir, 'svc-psci')).toBe('1.0.0');
  });
});

describe('pnpm changeset version for a machine package', () => {
  it('writes the machine\'s ledger and Guest ABI notes from its declared facts, gated by the 0.x policy', () => {
    const dir = scratch();
    const m = pkgDir(dir, 'machine-arm64');
    mkdirSync(m, { recursive: true });
    // The contract for machine packages: "plugvisor": { "machine": true } and a checked-in abi.json.
    const pkg = readJson(join(repo, 'packages', 'machine-arm64', 'package.json'));
    writeJson(join(m, 'package.json'), { ...pkg, version: '0.1.0', plugvisor: { ...(pkg.plugvisor ?? {}), machine: true } });
    cpSync(join(repo, 'packages', 'machine-arm64', 'abi.json'), join(m, 'abi.json'));
    changeset(dir, 'machine-first', { '@plugvisor/machine-arm64': 'minor' }, 'Declare the board\'s guest ABI.');
    commit(dir);
    let r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'machine-arm64')).toBe('0.2.0');
    expect(ledger(dir, 'machine-arm64', '0.2.0')).toBe(canonicalJson(expectedEntry(dir, 'machine-arm64', '0.2.0'), 2) + '\n');
    const groups = Object.keys(readJson(join(m, 'abi.json')).surface).filter((k) => k !== 'description' && k !== 'affects');
    let notes = release(changelog(dir, 'machine-arm64'), '0.2.0');
    expect(notes).toContain("### Guest ABI\n\nFirst release of this machine's guest ABI");
    for (const g of groups) expect(notes).toContain(`\n- ${g}: `);
    commit(dir);

    // A new fact: compatible, so a patch step within 0.2 is enough (npm's caret reading of 0.x).
    const abiFile = join(m, 'abi.json');
    const abi = readJson(abiFile);
    abi.surface.scratchDevice = { affects: 'VMs that probe the scratch device', id: '0x1' };
    writeJson(abiFile, abi);
    changeset(dir, 'machine-fact', { '@plugvisor/machine-arm64': 'patch' }, 'Declare the scratch device id.');
    commit(dir);
    r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'machine-arm64')).toBe('0.2.1');
    notes = release(changelog(dir, 'machine-arm64'), '0.2.1');
    expect(notes).toContain('- **minor** new fact scratchDevice.id = 0x1 — affects: VMs that probe the scratch device');
    expect(notes).toContain('Rollback (VMs of 0.2.1 onto 0.2.0): refused for VMs that probe the scratch device (fact scratchDevice.id)');
    commit(dir);

    // The fact changed: a patch is refused; with a waiver it is an accepted fix, reason and all.
    abi.surface.scratchDevice.id = '0x2';
    writeJson(abiFile, abi);
    changeset(dir, 'machine-fix', { '@plugvisor/machine-arm64': 'patch' }, 'The scratch device id is 2.');
    commit(dir);
    r = version(dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('needs a major release: major: scratchDevice.id 0x1 → 0x2');
    changeset(dir, 'machine-fix', { '@plugvisor/machine-arm64': 'patch' }, 'The scratch device id is 2.\nGuest ABI waiver: scratchDevice.id: the board always decoded id 2');
    commit(dir);
    r = version(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(versionOf(dir, 'machine-arm64')).toBe('0.2.2');
    expect(readJson(join(m, 'abi', 'releases', '0.2.2.json')).waivers).toEqual({ 'scratchDevice.id': 'the board always decoded id 2' });
    notes = release(changelog(dir, 'machine-arm64'), '0.2.2');
    expect(notes).toContain('- **patch** waived: scratchDevice.id 0x1 → 0x2 — affects: VMs that probe the scratch device — waived: the board always decoded id 2');
  });
});

describe('the changelog generator as changesets loads it', () => {
  // @changesets/apply-release-plan resolves the configured name from .changeset/ and require()s it.
  const req = createRequire(join(repo, '.changeset', 'config.json'));
  const gen = req(req.resolve(readJson(join(repo, '.changeset', 'config.json')).changelog as string)) as Json;
  const fns = gen.default ?? gen;

  it('writes the summary with its commit, and the waiver lines apart', async () => {
    const line = await fns.getReleaseLine({ id: 'x', summary: 'Fix MIGRATE_INFO_TYPE.\n\nMore text.\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE: answered 2', commit: '0123456789abcdef', releases: [] }, 'patch');
    expect(line).toBe('- 0123456: Fix MIGRATE_INFO_TYPE.\n\n  More text.\n  - Guest ABI waiver: `PSCI_MIGRATE_INFO_TYPE`: answered 2');
    await expect(fns.getReleaseLine({ id: 'y', summary: '   \n', releases: [{ name: '@plugvisor/svc-trng', type: 'patch' }] }, 'patch')).rejects.toThrow(
      '.changeset/y.md (@plugvisor/svc-trng): no summary',
    );
  });

  it('lists updated dependencies as @changesets/changelog-git does', async () => {
    expect(await fns.getDependencyReleaseLine([{ summary: 's', commit: 'abcdef0123' }], [{ name: '@plugvisor/core', newVersion: '1.2.0' }])).toBe(
      '- Updated dependencies [abcdef0]\n  - @plugvisor/core@1.2.0',
    );
    expect(await fns.getDependencyReleaseLine([], [])).toBe('');
  });
});

describe('insertGuestAbi', async () => {
  const { insertGuestAbi } = (await import(join(repo, 'packages', 'release', 'dist', 'index.js'))) as typeof import('../src/index.js');
  it('puts the section right under the release heading, replaces it on a second run, and adds a missing heading', () => {
    const log = '# p\n\n## 1.1.0\n\n### Minor Changes\n\n- a\n\n## 1.0.0\n\n### Guest ABI\n\nold\n\n### Major Changes\n\n- b\n';
    const once = insertGuestAbi(log, 'p', '1.1.0', ['### Guest ABI', '', 'new']);
    expect(once).toBe('# p\n\n## 1.1.0\n\n### Guest ABI\n\nnew\n\n### Minor Changes\n\n- a\n\n## 1.0.0\n\n### Guest ABI\n\nold\n\n### Major Changes\n\n- b\n');
    expect(insertGuestAbi(once, 'p', '1.1.0', ['### Guest ABI', '', 'new'])).toBe(once);
    expect(insertGuestAbi(once, 'p', '1.1.0', ['### Guest ABI', '', 'newer'])).toBe(once.replace('\nnew\n', '\nnewer\n'));
    expect(insertGuestAbi('', 'p', '2.0.0', ['### Guest ABI', '', 'x'])).toBe('# p\n\n## 2.0.0\n\n### Guest ABI\n\nx\n');
    expect(existsSync(wrapper)).toBe(true);
  });
});
