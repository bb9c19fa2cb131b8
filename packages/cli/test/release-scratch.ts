import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson } from '@plugvisor/core';

/**
 * A scratch copy of the workspace for the release lint (scripts/lint.mjs): the scripts, the
 * changesets config, core and cli linked (lint loads their built dist/), and every service
 * package copied, so its built code can be edited without touching the repository. Its
 * "release" is a ledger entry per service written the way the release step writes one
 * (`pnpm changeset version`): the package's abi.json plus "version", in abi/releases/<version>.json.
 * Needs the built dist/ of core, cli and the services (scripts/test.sh builds first).
 */
export interface Scratch {
  readonly dir: string;
  /** Runs scripts/lint.mjs in the copy: exit status and stdout+stderr. */
  lint(args?: readonly string[], env?: Record<string, string>): { status: number | null; out: string };
  changeset(name: string, text: string): void;
  /** Deletes every pending changeset, as `changeset version` consumes them. */
  consumeChangesets(): void;
  /** Replaces `from` in a file of a copied package (it must be there). */
  edit(pkg: string, file: string, from: RegExp | string, to: string): void;
  setVersion(pkg: string, version: string): void;
  /** Writes the ledger entry of `version` from the package's abi.json, as the release step does. */
  writeLedger(pkg: string, version: string, waivers?: Record<string, string>): void;
  /** Deletes a ledger entry. */
  dropLedger(pkg: string, version: string): void;
  /** A ledger entry of the copy, parsed. */
  ledger(pkg: string, version: string): Record<string, unknown>;
  /** Back to the release: packages as they were copied, no changesets. */
  reset(): void;
  /** Deletes the copy. */
  remove(): void;
}

const repo = new URL('../../..', import.meta.url).pathname;

const SCRATCH_LINKED = ['core', 'cli', 'release'];

export interface ScratchOptions {
  /** The version every service is released at (its ledger entry). */
  readonly release: string;
  /**
   * The service package folders to copy (with the services they require), default every one:
   * fewer services, faster lint runs.
   */
  readonly services?: readonly string[];
  /** Extra packages to add (folder → file → text), e.g. a machine package; released like the services. */
  readonly extra?: Record<string, Record<string, string>>;
}

/** Builds a scratch copy (no .git) whose release every reset returns to. */
export function createScratch(options: ScratchOptions): Scratch {
  const base = mkdtempSync(join(tmpdir(), 'plugvisor-lint-'));
  const template = join(base, 'release');
  mkdirSync(template);
  cpSync(join(repo, 'scripts'), join(template, 'scripts'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(template, 'package.json'));
  mkdirSync(join(template, '.changeset'));
  cpSync(join(repo, '.changeset/config.json'), join(template, '.changeset/config.json'));
  symlinkSync(join(repo, 'node_modules'), join(template, 'node_modules'));
  mkdirSync(join(template, 'packages'));
  type Pkg = { name: string; plugvisor?: { service?: boolean; machine?: boolean }; dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
  const all = new Map<string, Pkg>();
  for (const dir of readdirSync(join(repo, 'packages'))) {
    if (existsSync(join(repo, 'packages', dir, 'package.json'))) all.set(dir, JSON.parse(readFileSync(join(repo, 'packages', dir, 'package.json'), 'utf8')) as Pkg);
  }
  // The services asked for and every service package they depend on (a hook owner they tap is a peer).
  const wanted = new Set<string>();
  const want = (dir: string) => {
    if (wanted.has(dir) || !all.get(dir)?.plugvisor?.service) return;
    wanted.add(dir);
    const pkg = all.get(dir);
    for (const dep of Object.keys({ ...pkg?.dependencies, ...pkg?.peerDependencies })) for (const [d, p] of all) if (p.name === dep) want(d);
  };
  for (const [dir, pkg] of all) if (pkg.plugvisor?.service && (!options.services || options.services.includes(dir))) want(dir);
  const services: string[] = [];
  for (const dir of all.keys()) {
    const src = join(repo, 'packages', dir);
    if (wanted.has(dir)) {
      cpSync(src, join(template, 'packages', dir), {
        recursive: true,
        verbatimSymlinks: true,
        // The scratch release is this code: whatever the repository's own ledger says is not it.
        filter: (from) => from !== join(src, 'abi') && !from.startsWith(`${join(src, 'abi')}/`),
      });
      services.push(dir);
    } else if (SCRATCH_LINKED.includes(dir)) symlinkSync(src, join(template, 'packages', dir));
  }
  for (const [dir, files] of Object.entries(options.extra ?? {})) {
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(template, 'packages', dir, file, '..'), { recursive: true });
      writeFileSync(join(template, 'packages', dir, file), text);
    }
    const pkg = JSON.parse(files['package.json'] ?? '{}') as { plugvisor?: { service?: boolean; machine?: boolean } };
    if (pkg.plugvisor?.service || pkg.plugvisor?.machine) services.push(dir);
  }
  const scratch = makeScratch(join(base, 'work'), template, () => rmSync(base, { recursive: true, force: true }));
  // The release is the current code: its manifests regenerated (`pnpm lint --fix`), then every
  // service (and machine package) at options.release with its ledger entry.
  scratch.lint(['--fix']);
  for (const dir of services) {
    scratch.setVersion(dir, options.release);
    scratch.writeLedger(dir, options.release);
  }
  rmSync(template, { recursive: true, force: true });
  cpSync(scratch.dir, template, { recursive: true, verbatimSymlinks: true });
  return scratch;
}

function makeScratch(dir: string, template: string, cleanup: () => void): Scratch {
  const copyTemplate = () => {
    rmSync(dir, { recursive: true, force: true });
    cpSync(template, dir, { recursive: true, verbatimSymlinks: true });
  };
  copyTemplate();
  const pkgFile = (pkg: string) => join(dir, 'packages', pkg, 'package.json');
  const self: Scratch = {
    dir,
    lint(args = [], env = {}) {
      const r = spawnSync(process.execPath, [join(dir, 'scripts/lint.mjs'), ...args], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, LINT_VERBOSE: '', LINT_TIMING: '', ...env },
      });
      return { status: r.status, out: `${r.stdout}${r.stderr}` };
    },
    changeset(name, text) {
      writeFileSync(join(dir, '.changeset', `${name}.md`), text);
    },
    consumeChangesets() {
      for (const f of readdirSync(join(dir, '.changeset'))) if (f.endsWith('.md')) unlinkSync(join(dir, '.changeset', f));
    },
    edit(pkg, file, from, to) {
      const path = join(dir, 'packages', pkg, file);
      const text = readFileSync(path, 'utf8');
      const found = typeof from === 'string' ? text.includes(from) : from.test(text);
      if (!found) throw new Error(`packages/${pkg}/${file} has no ${String(from)}`);
      writeFileSync(path, text.replace(from, to));
    },
    setVersion(pkg, version) {
      const json = JSON.parse(readFileSync(pkgFile(pkg), 'utf8')) as Record<string, unknown>;
      writeFileSync(pkgFile(pkg), `${JSON.stringify({ ...json, version }, null, 2)}\n`);
    },
    writeLedger(pkg, version, waivers) {
      const abi = JSON.parse(readFileSync(join(dir, 'packages', pkg, 'abi.json'), 'utf8')) as Record<string, unknown>;
      const entry = { ...abi, version, ...(waivers ? { waivers } : {}) };
      mkdirSync(join(dir, 'packages', pkg, 'abi/releases'), { recursive: true });
      writeFileSync(join(dir, 'packages', pkg, 'abi/releases', `${version}.json`), `${canonicalJson(entry, 2)}\n`);
    },
    dropLedger(pkg, version) {
      unlinkSync(join(dir, 'packages', pkg, 'abi/releases', `${version}.json`));
    },
    ledger(pkg, version) {
      return JSON.parse(readFileSync(join(dir, 'packages', pkg, 'abi/releases', `${version}.json`), 'utf8')) as Record<string, unknown>;
    },
    reset() {
      copyTemplate();
      self.consumeChangesets();
    },
    remove: cleanup,
  };
  return self;
}

/**
 * The release tree of `s` as a git repository elsewhere: a clone of a repository whose one commit
 * is that tree, full or shallow (`--depth 1`). Lint reads no git, so each gives the verdicts the
 * copy without .git gives.
 */
export function scratchClone(s: Scratch, depth?: number): Scratch {
  const base = mkdtempSync(join(tmpdir(), 'plugvisor-lint-clone-'));
  const template = join(base, 'release');
  const origin = join(base, 'origin');
  s.reset();
  cpSync(s.dir, origin, { recursive: true, verbatimSymlinks: true });
  const git = (cwd: string, ...args: string[]) => {
    const r = spawnSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  };
  git(origin, 'init', '-q');
  git(origin, 'add', '-A', '-f');
  git(origin, 'commit', '-qm', 'release');
  git(base, 'clone', '-q', ...(depth ? ['--depth', String(depth)] : []), `file://${origin}`, template);
  if (!existsSync(join(template, '.git'))) throw new Error('clone has no .git');
  return makeScratch(join(base, 'work'), template, () => rmSync(base, { recursive: true, force: true }));
}
