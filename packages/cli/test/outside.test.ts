import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * Packages that work outside the repository, as an outside author meets them: the CLI, core, the
 * machine and every service of the default build packed with `pnpm pack` (which rewrites
 * `workspace:^` to the version, pnpm.io/cli/pack), an outside author's own service package packed
 * with `npm pack`, all installed by `npm install <tarball>…` (docs.npmjs.com "npm install": a
 * tarball file) into a folder under os.tmpdir() — outside this workspace, so nothing resolves
 * through it — and the installed `plugvisor` running a guest on a build file there that
 * `extends: default` plus the author's service. The same install runs the SOC_ID example
 * (packages/svc-soc-id) on a build extending the default, with a guest that finds it the way
 * Linux does (SMCCC_VERSION >= 1.2, then ARCH_FEATURES), and refuses that build, naming both
 * folders, once the service carries its own copy of core.
 *
 * The helpers are parameterised so more outside packages (and guests) can be added:
 * `packWorkspacePackage(name)` and `packFolder(dir)` give tarballs (cached for the run),
 * `installTarballs(tarballs)` an install folder with its `plugvisor`.
 */

const root = fileURLToPath(new URL('../../..', import.meta.url));
const packagesDir = join(root, 'packages');
const packDir = mkdtempSync(join(tmpdir(), 'plugvisor-packed-'));
const tarballs = new Map<string, string>();
/** npm run as an operator would: without the npm_config_* settings pnpm exports to the test. */
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)));

interface WorkspacePackage {
  readonly dir: string;
  readonly json: { name: string; version: string; dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
}
const workspace = new Map<string, WorkspacePackage>(
  readdirSync(packagesDir)
    .filter((d) => existsSync(join(packagesDir, d, 'package.json')))
    .map((d) => {
      const json = JSON.parse(readFileSync(join(packagesDir, d, 'package.json'), 'utf8')) as WorkspacePackage['json'];
      return [json.name, { dir: join(packagesDir, d), json }];
    }),
);

/** A workspace package and every @plugvisor/* package it depends on (dependencies and peers), transitively. */
export function withWorkspaceDeps(names: readonly string[]): string[] {
  const out = new Set<string>();
  const visit = (name: string) => {
    if (out.has(name)) return;
    const p = workspace.get(name);
    if (!p) throw new Error(`${name} is not a package of this workspace`);
    out.add(name);
    for (const dep of Object.keys({ ...p.json.dependencies, ...p.json.peerDependencies })) if (workspace.has(dep)) visit(dep);
  };
  names.forEach(visit);
  return [...out];
}

/** `pnpm pack` of a workspace package (built: its dist is what is packed); cached for the run. */
export function packWorkspacePackage(name: string): string {
  const cached = tarballs.get(name);
  if (cached) return cached;
  const p = workspace.get(name)!;
  const out = execFileSync('pnpm', ['pack', '--pack-destination', packDir], { cwd: p.dir, encoding: 'utf8', env: { ...process.env, COREPACK_ENABLE_DOWNLOAD_PROMPT: '0' } });
  const file = out.trim().split('\n').map((l) => l.trim()).reverse().find((l) => l.endsWith('.tgz'))!;
  const path = file.startsWith('/') ? file : join(packDir, file);
  expect(existsSync(path), `pnpm pack of ${name} wrote ${path}`).toBe(true);
  tarballs.set(name, path);
  return path;
}

/** `npm pack` of a package folder outside the workspace (an outside author's); cached for the run. */
export function packFolder(dir: string): string {
  const cached = tarballs.get(dir);
  if (cached) return cached;
  const out = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: dir, encoding: 'utf8', env: npmEnv })) as { filename: string }[];
  const path = join(packDir, out[0]!.filename);
  tarballs.set(dir, path);
  return path;
}

/** A folder under os.tmpdir() with these tarballs installed by npm; its `plugvisor` runs the installed CLI. */
export function installTarballs(files: readonly string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-outside-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'outside-operator', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...files], { cwd: dir, encoding: 'utf8', env: npmEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const bin = join(dir, 'node_modules', '@plugvisor', 'cli', 'dist', 'bin.js');
  const plugvisor = (...args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  return { dir, bin, plugvisor };
}

/** The outside author's package and what to run on it (the lead's further packages go beside it). */
const author = {
  dir: fileURLToPath(new URL('./fixtures/outside-author', import.meta.url)),
  name: '@acme/svc-hello',
  feature: 'hello',
  call: 'HELLO',
  /** A real aarch64 guest calling the author's call (its source and build.sh beside it). */
  guest: fileURLToPath(new URL('./fixtures/outside-author/guest/bin/hello.elf', import.meta.url)),
  /** What the guest prints with the feature on, and with it off (SMCCC NOT_SUPPORTED). */
  on: ['HELLO(0): x0=6869 x1=0', 'HELLO(1): x0=686579 x1=0', 'HELLO(2): x0=796f x1=0', 'HELLO(3): x0=fffffffffffffffe x1=0', 'hello: done'],
  off: ['HELLO(0): x0=ffffffffffffffff x1=0', 'HELLO(3): x0=ffffffffffffffff x1=0', 'hello: done'],
};

/** The SOC_ID probe guest (packages/guest-tests-arm64/guests/src/soc-id.c: Linux's smccc.c sequence). */
const socGuest = join(root, 'packages/guest-tests-arm64/guests/bin/soc-id.elf');

describe('packages installed outside the workspace', () => {
  let installed: ReturnType<typeof installTarballs>;

  beforeAll(() => {
    // The CLI and everything @plugvisor/* it depends on: core, the machines, the default build's services.
    const packed = withWorkspaceDeps(['@plugvisor/cli']).map(packWorkspacePackage);
    installed = installTarballs([...packed, packFolder(author.dir)]);
  }, 600_000);

  it('installs from tarballs with workspace: ranges rewritten, nothing resolving into the workspace', () => {
    expect(relative(root, installed.dir).startsWith('..')).toBe(true);
    const cli = JSON.parse(readFileSync(join(installed.dir, 'node_modules/@plugvisor/cli/package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.values(cli.dependencies).some((r) => r.startsWith('workspace:'))).toBe(false);
    const core = readFileSync(join(installed.dir, 'node_modules/@plugvisor/core/package.json'), 'utf8');
    expect(JSON.parse(core).version).toBe(workspace.get('@plugvisor/core')!.json.version);
    // One copy of core: the author's peer dependency and the CLI's are the same folder.
    expect(existsSync(join(installed.dir, 'node_modules/@acme/svc-hello/node_modules/@plugvisor/core'))).toBe(false);
  });

  it("runs a guest on a build file there that extends the default build with the author's service", () => {
    const build = join(installed.dir, 'mine.json');
    writeFileSync(build, JSON.stringify({ name: 'mine', extends: 'default', services: [author.name] }));
    const abi = installed.plugvisor('abi', '--build', build);
    expect(abi.err).toBe('');
    expect(abi.code).toBe(0);
    expect(abi.out).toContain(author.name);
    expect(abi.out).toContain(author.call);
    for (const s of JSON.parse(readFileSync(join(installed.dir, 'node_modules/@plugvisor/cli/builds/default.json'), 'utf8')).services as string[]) expect(abi.out).toContain(s);

    // The author's guest calls the author's call: answered with the feature on, NOT_SUPPORTED without.
    const record = join(installed.dir, 'vm.json');
    const run = installed.plugvisor('run', author.guest, '--build', build, '--vcpus', '1', '--feature', `${author.feature}=on`, '--record', record);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    for (const line of author.on) expect(run.out).toContain(`${line}\n`);
    const off = installed.plugvisor('run', author.guest, '--build', build, '--vcpus', '1');
    expect(off.code).toBe(0);
    for (const line of author.off) expect(off.out).toContain(`${line}\n`);
    // The CLI's own demo guest runs on the extended build too.
    const demo = installed.plugvisor('run', join(installed.dir, 'node_modules/@plugvisor/cli/guests/bin/demo.elf'), '--build', build, '--vcpus', '2');
    expect(demo.err).toBe('');
    expect(demo.code).toBe(0);
    const vm = JSON.parse(readFileSync(record, 'utf8')) as { features: Record<string, { enabled: boolean; service: string }> };
    expect(vm.features[author.feature]).toMatchObject({ enabled: true, service: author.name });

    // check by name and by file: the VM that has the feature on cannot go back to the default build.
    const check = installed.plugvisor('check', build, 'default', '--vm', record);
    expect(check.code).toBe(3);
    expect(check.out).toContain(`feature ${author.feature}`);
    expect(installed.plugvisor('check', 'default', build).code).toBe(0); // an opt-in feature added: default VMs move both ways
  });

  it('a build extending the default with the SOC_ID example: a guest following Linux finds it through SMCCC_VERSION >= 1.2 and ARCH_FEATURES', () => {
    // The SOC_ID example package (packages/svc-soc-id) came in packed with the CLI's dependencies.
    expect(existsSync(join(installed.dir, 'node_modules/@plugvisor/svc-soc-id/package.json'))).toBe(true);
    const build = join(installed.dir, 'soc.json');
    writeFileSync(
      build,
      JSON.stringify({ name: 'soc', extends: 'default', services: [{ package: '@plugvisor/svc-soc-id', options: { jep106Bank: 4, jep106Id: 59, socId: 4660, revision: 7 } }] }),
    );
    const found = installed.plugvisor('run', socGuest, '--build', build, '--feature', 'soc-id=on', '--version', 'smccc=1.2');
    expect(found.err).toBe('');
    expect(found.code).toBe(0);
    expect(found.out).toContain('smccc_version 10002\n');
    expect(found.out).toContain('arch_features_soc_id 0\n');
    expect(found.out).toContain('soc: ID = jep106:043b:1234 Revision = 0x00000007\n');
    // At the default SMCCC 1.1 a guest following Linux does not look (the operator must ask for 1.2).
    const v11 = installed.plugvisor('run', socGuest, '--build', build, '--feature', 'soc-id=on');
    expect(v11.code).toBe(0);
    expect(v11.out).toContain('soc: SMCCC below 1.2, SOC_ID not looked for\n');
  });

  it('a second copy of core in that build is refused by name, naming both folders (exit 2)', () => {
    // As npm leaves it when a service pins a core the CLI's does not satisfy: a nested copy.
    const nested = join(installed.dir, 'node_modules/@plugvisor/svc-soc-id/node_modules/@plugvisor/core');
    const shared = join(installed.dir, 'node_modules/@plugvisor/core');
    cpSync(shared, nested, { recursive: true, dereference: true });
    try {
      const build = join(installed.dir, 'soc-two-cores.json');
      writeFileSync(build, JSON.stringify({ name: 'soc-two-cores', extends: 'default', services: ['@plugvisor/svc-soc-id'] }));
      const r = installed.plugvisor('run', socGuest, '--build', build);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      const lines = r.err.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(r.err).toContain('@plugvisor/svc-soc-id');
      expect(r.err).toContain(realpathSync(nested));
      expect(r.err).toContain(realpathSync(shared));
    } finally {
      rmSync(join(installed.dir, 'node_modules/@plugvisor/svc-soc-id/node_modules'), { recursive: true, force: true });
    }
  });

  it("prints the author's abi.json from the install folder without --build, as the package checks it in", () => {
    const r = installed.plugvisor('abi', '--service', author.name, '--manifest');
    expect(r.err).toBe('');
    expect(r.out).toBe(readFileSync(join(author.dir, 'abi.json'), 'utf8'));
  });

  it("runs the author's unit tests (handler and conformance kit) against the installed packages", () => {
    copyFileSync(join(author.dir, 'hello.test.js'), join(installed.dir, 'hello.test.js'));
    const r = spawnSync(process.execPath, ['--test', 'hello.test.js'], { cwd: installed.dir, encoding: 'utf8' });
    expect(r.stdout).toContain('# pass 3');
    expect(r.status).toBe(0);
  });
});

describe("the outside author's guest", () => {
  // The committed image is what its source builds (when the cross compiler is here).
  const hasCompiler = spawnSync('aarch64-linux-gnu-gcc', ['--version']).status === 0;
  it.skipIf(!hasCompiler)('rebuilds byte for byte', () => {
    const out = mkdtempSync(join(tmpdir(), 'plugvisor-hello-guest-'));
    execFileSync('bash', [join(author.dir, 'guest/build.sh'), out], { stdio: 'ignore' });
    expect(readFileSync(join(out, 'hello.elf')).equals(readFileSync(author.guest))).toBe(true);
  });
});

describe('docs/authoring.md', () => {
  // Its code blocks named by a file are this fixture's files, which the tests above install and run.
  it("shows the outside author's files exactly as they are tested", () => {
    const doc = readFileSync(join(root, 'docs/authoring.md'), 'utf8');
    const named = [...doc.matchAll(/<!-- file: (\S+) -->\n```\w*\n([\s\S]*?)```/g)];
    expect(named.map((m) => m[1])).toEqual(expect.arrayContaining(['package.json', 'index.js', 'greeting.js', 'hello.test.js']));
    for (const [, name, body] of named) expect(body, name).toBe(readFileSync(join(author.dir, name!), 'utf8'));
  });
});
