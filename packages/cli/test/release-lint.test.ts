import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

/**
 * The release gate sees behaviour: in a scratch copy of the workspace whose last commit is the
 * "release", a service's built code is edited so that one call answers differently while every
 * declaration stays the same. `pnpm lint` (scripts/lint.mjs) must fail naming the package, the
 * call, the probe, old → new and "major"; a major changeset, or a patch with a waiver naming
 * the call, makes it pass. Needs the built dist/ (scripts/test.sh builds first).
 */
const repo = new URL('../../..', import.meta.url).pathname;
let scratch = '';

const git = (...args: string[]) => {
  const r = spawnSync('git', args, { cwd: scratch, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
};
const lint = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(scratch, 'scripts/lint.mjs'), ...args], { cwd: scratch, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};
const changeset = (name: string, text: string) => writeFileSync(join(scratch, '.changeset', `${name}.md`), text);
const dropChangesets = () => {
  for (const f of readdirSync(join(scratch, '.changeset'))) if (f.endsWith('.md') && f !== 'README.md') unlinkSync(join(scratch, '.changeset', f));
};
/** Edits the built code of a scratch service package: the handler's answer, nothing declared. */
const editDist = (pkg: string, from: RegExp, to: string) => {
  const file = join(scratch, 'packages', pkg, 'dist/index.js');
  const text = readFileSync(file, 'utf8');
  expect(text).toMatch(from);
  writeFileSync(file, text.replace(from, to));
};

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'plugvisor-lint-'));
  cpSync(join(repo, 'scripts'), join(scratch, 'scripts'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(scratch, 'package.json'));
  mkdirSync(join(scratch, '.changeset'));
  cpSync(join(repo, '.changeset/config.json'), join(scratch, '.changeset/config.json'));
  symlinkSync(join(repo, 'node_modules'), join(scratch, 'node_modules'));
  mkdirSync(join(scratch, 'packages'));
  for (const dir of readdirSync(join(repo, 'packages'))) {
    const src = join(repo, 'packages', dir);
    if (!existsSync(join(src, 'package.json'))) continue;
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as { plugvisor?: { service?: boolean } };
    // Service packages are copied (their built code gets edited); the rest are linked.
    if (pkg.plugvisor?.service) cpSync(src, join(scratch, 'packages', dir), { recursive: true, verbatimSymlinks: true });
    else symlinkSync(src, join(scratch, 'packages', dir));
  }
  git('init', '-q');
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'add', '-A');
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'release');
}, 60_000);

// Each case starts from the release again: edited code, regenerated manifests and changesets go.
afterEach(() => {
  git('checkout', '-q', '--', '.');
  dropChangesets();
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('pnpm lint sees behaviour (scratch copy of the workspace)', () => {
  it('is clean at the release', () => {
    const r = lint();
    expect(r.out).toContain('lint: ok');
    expect(r.status).toBe(0);
  });

  it('TRNG_VERSION answering 1.1: fails naming package, call, probe, old → new and major; a major changeset passes', () => {
    editDist('svc-trng', /TRNG_V1_0 = 0x1_?0000;/, 'TRNG_V1_0 = 0x10001;');
    let r = lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('packages/svc-trng/abi.json is stale');
    expect(r.out).toMatch(/@plugvisor\/svc-trng: guest ABI changed since [\d.]+ and needs a 'major' changeset/);
    expect(r.out).toMatch(/major: behaviour changed: TRNG_VERSION probe \[[^\]]+\]: x0=0x10000 x1=0x0 x2=0x0 x3=0x0 → x0=0x10001 x1=0x0 x2=0x0 x3=0x0/);

    expect(lint('--fix').out).not.toContain('abi.json is stale');
    r = lint();
    expect(r.status).toBe(1); // the manifest is fresh now, but the change still needs its bump

    changeset('trng-minor', '---\n"@plugvisor/svc-trng": minor\n---\n\nTRNG 1.1.\n');
    expect(lint().status).toBe(1);
    changeset('trng-major', '---\n"@plugvisor/svc-trng": major\n---\n\nTRNG_VERSION answers 1.1.\n');
    r = lint();
    expect(r.out).toContain('lint: ok');
    expect(r.status).toBe(0);
  });

  it('MIGRATE_INFO_TYPE answering 1: major, unless a waiver names the call with a reason', () => {
    editDist('svc-psci', /MIGRATE_INFO_TYPE_MP = 2;/, 'MIGRATE_INFO_TYPE_MP = 1;');
    lint('--fix');
    let r = lint();
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/@plugvisor\/svc-psci: guest ABI changed since [\d.]+ and needs a 'major' changeset \(pending: none\)/);
    expect(r.out).toMatch(/major: behaviour changed: PSCI_MIGRATE_INFO_TYPE probe \[[^\]]+\]: x0=0x2 x1=0x0 x2=0x0 x3=0x0 → x0=0x1 x1=0x0 x2=0x0 x3=0x0/);

    changeset('psci-fix', '---\n"@plugvisor/svc-psci": patch\n---\n\nMIGRATE_INFO_TYPE.\n');
    expect(lint().status).toBe(1); // a patch without a waiver is not enough
    changeset('psci-fix', '---\n"@plugvisor/svc-psci": patch\n---\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE: answered 2 (MP) on a UP build; the spec says 1\n');
    r = lint();
    expect(r.out).toContain('lint: ok');
    expect(r.status).toBe(0);
    changeset('psci-fix', '---\n"@plugvisor/svc-psci": patch\n---\n\nGuest ABI waiver: PSCI_MIGRATE_INFO_TYPE:\n');
    expect(lint().out).toContain('the waiver for PSCI_MIGRATE_INFO_TYPE gives no reason');
  });

  it('refuses a changeset without a summary, naming the file and the package', () => {
    changeset('empty', '---\n"@plugvisor/svc-pvtime": patch\n---\n\n  \n');
    const r = lint();
    expect(r.status).toBe(1);
    expect(r.out).toContain('.changeset/empty.md: no summary: say what changed for @plugvisor/svc-pvtime');
    changeset('empty', '---\n"@plugvisor/svc-pvtime": patch\n---\n\nStolen-time records are written once per run.\n');
    expect(lint().out).toContain('lint: ok');
  });
});
