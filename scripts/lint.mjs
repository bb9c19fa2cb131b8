// pnpm lint: the rules CI enforces beyond types and tests.
//  1. every package: package.json basics (name, version, ESM, exports) and a README.md;
//  2. every service package (package.json "plugvisor": { "service": true }): its checked-in
//     abi.json equals the manifest generated from its declaration (`pnpm lint --fix` rewrites);
//     and its README's ABI section equals the one generated from the declaration;
//  3. a service whose abi.json changed since its last release (the last commit that changed its
//     version) has a pending changeset bumping it at least as much as the change requires:
//     new opt-in ABI = minor, anything an existing VM would see = major (core's classifyAbiChange).
//     Behaviour counts: every probe the released abi.json recorded is replayed on the new code, and
//     a changed answer is major unless a pending changeset for the package carries a waiver line
//        Guest ABI waiver: CALL_NAME: why (the bug it fixes)
//     which makes it a patch and goes into the CHANGELOG with the changeset's text.
// abi.json holds the service's behaviour transcript in a build of the service and the services it
// requires (default options): `pnpm lint --fix` regenerates it. Set LINT_TIMING=1 to print how
// long the transcripts took.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url).pathname;
const fix = process.argv.includes('--fix');
const problems = [];
const core = await import(pathToFileURL(join(root, 'packages/core/dist/index.js')).href);
const cli = await import(pathToFileURL(join(root, 'packages/cli/dist/index.js')).href);

const git = (...args) => {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
};

/** Pending changesets: package name → highest bump named; package name → call → waiver reason. */
function pendingBumps() {
  const dir = join(root, '.changeset');
  const bumps = new Map();
  const waivers = new Map();
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!f.endsWith('.md') || f === 'README.md') continue;
    const text = readFileSync(join(dir, f), 'utf8');
    const front = /^---\n([\s\S]*?)\n---/.exec(text);
    if (!front) {
      problems.push(`.changeset/${f}: no front matter`);
      continue;
    }
    const named = [];
    for (const line of front[1].split('\n')) {
      const m = /^\s*["']?([^"':]+)["']?\s*:\s*(major|minor|patch)\s*$/.exec(line);
      if (m) {
        bumps.set(m[1], core.maxBump(bumps.get(m[1]) ?? 'none', m[2]));
        named.push(m[1]);
      }
    }
    const body = text.slice(front[0].length);
    // The summary is what the CHANGELOG says of the release: a changeset without one records a
    // bump nobody can read (`- 93da681:` and nothing after it).
    if (named.length > 0 && body.trim() === '') problems.push(`.changeset/${f}: no summary: say what changed for ${named.join(', ')} (it becomes the CHANGELOG entry)`);
    for (const m of body.matchAll(/^[\s*-]*Guest ABI waiver:\s*([\w.-]+)\s*:\s*(.*)$/gm)) {
      if (!m[2].trim()) {
        problems.push(`.changeset/${f}: the waiver for ${m[1]} gives no reason`);
        continue;
      }
      for (const pkg of named) {
        if (!waivers.has(pkg)) waivers.set(pkg, new Map());
        waivers.get(pkg).set(m[1], m[2].trim());
      }
    }
  }
  return { bumps, waivers };
}

const { bumps, waivers } = pendingBumps();

/** Every service package of the workspace by name: its folder and loaded plugin (default options). */
const servicesByName = new Map();
for (const dir of readdirSync(join(root, 'packages'))) {
  const pkgFile = join(root, 'packages', dir, 'package.json');
  if (!existsSync(pkgFile)) continue;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  if (!pkg.plugvisor?.service || !pkg.exports?.['.']?.default) continue;
  servicesByName.set(pkg.name, { dir, pkg });
}
const loaded = new Map();
async function pluginOf(name) {
  if (!loaded.has(name)) {
    const entry = servicesByName.get(name);
    if (!entry) return undefined;
    const mod = await import(pathToFileURL(join(root, 'packages', entry.dir, entry.pkg.exports['.'].default)).href);
    loaded.set(name, typeof mod.default === 'function' ? mod.default({}) : mod.default);
  }
  return loaded.get(name);
}
/** The service and everything it requires, transitively: the build its abi.json describes. */
async function standaloneBuild(plugin) {
  const list = [];
  const visit = async (p) => {
    if (list.includes(p)) return;
    for (const dep of p.requires ?? []) {
      const d = await pluginOf(dep);
      if (!d) throw new Error(`${p.name} requires ${dep}, which is not a service package of this workspace`);
      await visit(d);
    }
    list.push(p);
  };
  await visit(plugin);
  return core.Hypervisor.compose(list, { name: plugin.name });
}
let transcriptMs = 0;
for (const dir of readdirSync(join(root, 'packages'))) {
  const pkgDir = join(root, 'packages', dir);
  const pkgFile = join(pkgDir, 'package.json');
  if (!existsSync(pkgFile)) continue;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const where = `packages/${dir}`;
  if (!pkg.name?.startsWith('@plugvisor/')) problems.push(`${where}: package name must be @plugvisor/*`);
  if (!/^\d+\.\d+\.\d+/.test(pkg.version ?? '')) problems.push(`${where}: no semver version`);
  if (pkg.type !== 'module') problems.push(`${where}: must be "type": "module"`);
  if (!pkg.exports?.['.']) problems.push(`${where}: needs an "exports" map`);
  if (!existsSync(join(pkgDir, 'README.md'))) problems.push(`${where}: no README.md`);
  if (!pkg.plugvisor?.service) continue;

  const plugin = await pluginOf(pkg.name);
  if (!plugin || plugin.name !== pkg.name) {
    problems.push(`${where}: default export is not the service ${pkg.name}`);
    continue;
  }
  if (plugin.version !== pkg.version) problems.push(`${where}: service reports version ${plugin.version}, package.json says ${pkg.version}`);
  let hv;
  try {
    hv = await standaloneBuild(plugin);
  } catch (e) {
    problems.push(`${where}: ${e.message}`);
    continue;
  }
  const t0 = performance.now();
  const generated = core.serviceAbiFile(plugin, hv);
  transcriptMs += performance.now() - t0;
  const abiPath = join(pkgDir, 'abi.json');
  const onDisk = existsSync(abiPath) ? readFileSync(abiPath, 'utf8') : '';
  if (onDisk !== generated) {
    if (fix) writeFileSync(abiPath, generated);
    else problems.push(`${where}/abi.json is stale or missing: run 'pnpm lint --fix' and add a changeset`);
  }

  // The README's ABI section is generated from the declaration.
  const readmePath = join(pkgDir, 'README.md');
  if (existsSync(readmePath)) {
    const readme = readFileSync(readmePath, 'utf8');
    const a = readme.indexOf(cli.ABI_BEGIN);
    const b = readme.indexOf(cli.ABI_END);
    if (a < 0 || b < a) problems.push(`${where}/README.md: no generated ABI section (add the ABI markers, then 'pnpm lint --fix')`);
    else {
      const fresh = readme.slice(0, a) + cli.serviceAbiMarkdown(plugin) + readme.slice(b + cli.ABI_END.length);
      if (fresh !== readme) {
        if (fix) writeFileSync(readmePath, fresh);
        else problems.push(`${where}/README.md: ABI section is stale: run 'pnpm lint --fix'`);
      }
    }
  }

  // Compare with the manifest at the package's last release.
  const release = git('log', '-n1', '--format=%H', '-G"version"', '--', `${where}/package.json`);
  const released = release ? git('show', `${release}:${where}/abi.json`) : '';
  if (!released) continue; // never released: its first release is whatever it is
  const change = core.classifyAbiChange(JSON.parse(released), JSON.parse(generated), { hv, waivers: waivers.get(pkg.name) });
  const have = bumps.get(pkg.name) ?? 'none';
  if (!core.bumpAtLeast(have, change.bump)) {
    problems.push(
      `${pkg.name}: guest ABI changed since ${pkg.version} and needs a '${change.bump}' changeset (pending: ${have}):\n    ${change.reasons.join('\n    ')}`,
    );
  }
}

if (process.env.LINT_TIMING) console.log(`lint: behaviour transcripts of every service took ${transcriptMs.toFixed(0)} ms`);
if (problems.length) {
  console.error(`lint: ${problems.length} problem(s)\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.log('lint: ok');
