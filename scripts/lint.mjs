// pnpm lint: the rules CI enforces beyond types and tests.
//  1. every package: package.json basics (name, version, ESM, exports) and a README.md;
//  2. every service package (package.json "plugvisor": { "service": true }): its checked-in
//     abi.json equals the manifest generated from its declaration (`pnpm lint --fix` rewrites);
//     and its README's ABI section equals the one generated from the declaration. Every machine
//     package ("plugvisor": { "machine": true }) likewise checks in abi.json =
//     canonicalJson(machineAbi(), 2), machineAbi() being what its "./abi" export returns;
//  3. the release ledger: a service or machine package at version V has released V only if
//     abi/releases/V.json exists (the released abi.json plus "version", and "waivers" when the
//     release accepted waived behaviour changes), written by the release step
//     (`pnpm changeset version`) and never by hand. Lint reads only files: no git, so a shallow
//     clone, a tarball and a full clone give the same verdicts.
//     a) V = 0.0.0 and no ledger: never released, nothing to compare (the first release is
//        whatever it is);
//     b) otherwise abi/releases/V.json must exist: a version edited by hand has none;
//     c) the ledger's entries, in semver order, each took a release step at least as large as
//        the change from the entry before it (core's releaseStep and classifyAbiChange, comparing
//        the behaviour both entries recorded; the later entry's waivers apply): a major ABI change
//        shipped as a patch version fails, naming both versions;
//     d) the working manifest (generated from the code) against the entry of V: the pending
//        changesets' bump applied to V (semver's inc, as `changeset version` does — a 'major' at
//        0.x gives 1.0.0) must be a release step at least as large as the change:
//        new opt-in ABI = minor, anything an existing VM would see = major. The step follows
//        semver.org with npm's caret reading of 0.x (core/src/abi/versioning.ts): at 0.y a patch
//        number is a minor step and a minor number a major one. Behaviour counts: every probe the
//        ledger entry recorded is replayed on the new code, and a changed answer is major unless a
//        pending changeset for the package carries a waiver line
//           Guest ABI waiver: CALL_NAME: why (the bug it fixes)
//        which makes it a patch and goes into the CHANGELOG with the changeset's text.
//     Right after `pnpm changeset version` (changesets consumed, versions bumped, ledger entries
//     written) the tree passes: the new entry equals the working manifest and took its step.
//  4. every changeset names its packages and has a summary (it becomes the CHANGELOG entry), and
//     a waiver line gives its reason.
// abi.json holds the service's behaviour transcript in a build of the service and the services it
// requires (default options): `pnpm lint --fix` regenerates it. Set LINT_TIMING=1 to print how
// long the transcripts took, LINT_VERBOSE=1 to print which ledger entry each package was
// compared with.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url).pathname;
const fix = process.argv.includes('--fix');
const problems = [];
const core = await import(pathToFileURL(join(root, 'packages/core/dist/index.js')).href);
const cli = await import(pathToFileURL(join(root, 'packages/cli/dist/index.js')).href);

const verbose = Boolean(process.env.LINT_VERBOSE);

// semver 7 (semver.org; node-semver): the workspace's own if it declares one, otherwise the one
// @changesets/cli depends on — the code that bumps versions in `changeset version`
// (@changesets/assemble-release-plan computes a release's version with semver's inc).
const semver = (() => {
  const fromRoot = createRequire(join(root, 'package.json'));
  try {
    return fromRoot('semver');
  } catch {
    return createRequire(fromRoot.resolve('@changesets/cli/package.json'))('semver');
  }
})();

// Pending changesets, read as the release step reads them (@plugvisor/release): package → highest
// bump, package → call → waiver reason, and what is wrong with any (no front matter, an empty
// summary — it would become an empty CHANGELOG entry — or a waiver without a reason).
const release = await import(pathToFileURL(join(root, 'packages/release/dist/index.js')).href);
const pending = release.readPending(root);
problems.push(...pending.problems);
const { bumps, waivers } = pending;

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

  let plugin;
  try {
    plugin = await pluginOf(pkg.name);
  } catch (e) {
    problems.push(`${where}: cannot load the service (build it first?): ${String(e.message).split('\n')[0]}`);
    continue;
  }
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

  // The release ledger: the working manifest against the entry of the current version.
  const working = JSON.parse(generated);
  checkLedger(pkg, pkgDir, where, (released) => core.classifyAbiChange(released, working, { hv, waivers: waivers.get(pkg.name) }));
}

// Machine packages: guest-visible behaviour of the board (interrupt trigger modes, how a trap
// routes) declared by the package's "./abi" export and gated the same way as a service's.
for (const dir of readdirSync(join(root, 'packages'))) {
  const pkgDir = join(root, 'packages', dir);
  const pkgFile = join(pkgDir, 'package.json');
  if (!existsSync(pkgFile)) continue;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  if (!pkg.plugvisor?.machine) continue;
  const where = `packages/${dir}`;
  const exported = pkg.exports?.['./abi'];
  const target = typeof exported === 'string' ? exported : (exported?.default ?? exported?.import);
  if (!target) {
    problems.push(`${where}: a machine package needs an "./abi" export whose module exports machineAbi()`);
    continue;
  }
  if (!existsSync(join(pkgDir, target))) {
    problems.push(`${where}: "./abi" export ${target} does not exist (build the package first)`);
    continue;
  }
  let generated;
  try {
    const mod = await import(pathToFileURL(join(pkgDir, target)).href);
    if (typeof mod.machineAbi !== 'function') {
      problems.push(`${where}: ${target} does not export machineAbi()`);
      continue;
    }
    generated = core.canonicalJson(mod.machineAbi(), 2) + '\n';
  } catch (e) {
    problems.push(`${where}: cannot load machineAbi() from ${target}: ${String(e.message).split('\n')[0]}`);
    continue;
  }
  const abiPath = join(pkgDir, 'abi.json');
  const onDisk = existsSync(abiPath) ? readFileSync(abiPath, 'utf8') : '';
  if (onDisk !== generated) {
    if (fix) writeFileSync(abiPath, generated);
    else problems.push(`${where}/abi.json is stale or missing: run 'pnpm lint --fix' and add a changeset`);
  }
  if (typeof core.classifyMachineAbiChange !== 'function') {
    problems.push(`${where}: @plugvisor/core has no classifyMachineAbiChange (build @plugvisor/core)`);
    continue;
  }
  const working = JSON.parse(generated);
  checkLedger(pkg, pkgDir, where, (released) => core.classifyMachineAbiChange(released, working, { waivers: waivers.get(pkg.name) }), (a, b) =>
    core.classifyMachineAbiChange(a, b, { waivers: waiverMap(b.waivers) }),
  );
}

/**
 * Rule 3 for one package at version V = pkg.version: the ledger must hold V (unless 0.0.0 and
 * never released), its entries must each take a large enough step, and the pending changesets
 * must take one large enough from V's entry to the working manifest (`classifyWorking`).
 * `classifyEntries` compares two ledger entries without code (default: classifyAbiChange, which
 * then compares the behaviour both recorded).
 */
function checkLedger(pkg, pkgDir, where, classifyWorking, classifyEntries = (a, b) => core.classifyAbiChange(a, b, { waivers: waiverMap(b.waivers) })) {
  const version = pkg.version;
  if (!semver.valid(version)) return; // rule 1 names it
  const ledgerDir = join(pkgDir, 'abi', 'releases');
  const ledger = readLedger(pkg, ledgerDir, where);
  if (!ledger) return;
  if (ledger.length === 0 && version === '0.0.0') {
    if (verbose) console.log(`lint: ${pkg.name} 0.0.0: never released (no ledger entries): nothing to compare`);
    return;
  }
  for (const e of ledger) {
    if (semver.gt(e.version, version)) problems.push(`${pkg.name}: ledger entry ${where}/abi/releases/${e.version}.json is newer than the package's version ${version}`);
  }
  const current = ledger.find((e) => e.version === version);
  if (!current) {
    problems.push(`${pkg.name}: released version ${version} has no ledger entry (${where}/abi/releases/${version}.json): versions are cut with 'pnpm changeset version'`);
    return;
  }

  // c) the chain: every release took at least the step its change needed.
  for (let i = 1; i < ledger.length; i++) {
    const p = ledger[i - 1];
    const q = ledger[i];
    const change = classifyEntries(p.entry, q.entry);
    const step = core.releaseStep(p.version, q.version);
    if (!core.bumpAtLeast(step, change.bump)) {
      problems.push(
        `${pkg.name}: release ${q.version} took a ${step} step from ${p.version}, but its guest ABI change needs a ${change.bump} step (abi/releases/${p.version}.json → ${q.version}.json):\n    ${explain(change)}`,
      );
    }
  }

  // d) the working manifest against the entry of V, with the pending changesets' bump.
  const change = classifyWorking(current.entry);
  const have = bumps.get(pkg.name) ?? 'none';
  const next = have === 'none' ? version : semver.inc(version, have);
  const step = core.releaseStep(version, next);
  if (verbose) {
    const chain = ledger.length > 1 ? ` (ledger ${ledger.map((e) => e.version).join(' → ')})` : '';
    console.log(`lint: ${pkg.name} ${version}: compared with ${where}/abi/releases/${version}.json${chain}: change ${change.bump}, pending ${have}${have === 'none' ? '' : ` → ${next} (a ${step} step)`}`);
  }
  if (!core.bumpAtLeast(step, change.bump)) {
    const need = ['patch', 'minor', 'major'].find((b) => core.bumpAtLeast(core.releaseStep(version, semver.inc(version, b)), change.bump));
    const pending = have === 'none' ? 'none' : `${have}: ${version} → ${next} is a ${step} step`;
    const atZero = need !== change.bump ? ` (${version} → ${semver.inc(version, need)}: a ${change.bump} step at 0.x, npm's caret reading)` : '';
    problems.push(
      `${pkg.name}: guest ABI changed since ${version} (abi/releases/${version}.json) and needs a '${need}' changeset${atZero} (pending: ${pending}):\n    ${explain(change)}`,
    );
  }
}

/** Each change that needs a bump: its reason and which VMs see it. */
function explain(change) {
  return change.changes
    .filter((c) => c.bump !== 'none')
    .map((c) => `${c.bump}: ${c.message}${c.waiver ? ` (waived: ${c.waiver})` : ''}; affects ${c.affects}`)
    .join('\n    ');
}

/** A ledger entry's "waivers" (call → reason) as classifyAbiChange takes them. */
function waiverMap(w) {
  return w && typeof w === 'object' ? new Map(Object.entries(w)) : undefined;
}

/** The package's ledger entries sorted by version, or undefined after reporting a broken entry. */
function readLedger(pkg, dir, where) {
  if (!existsSync(dir)) return [];
  const out = [];
  let ok = true;
  for (const f of readdirSync(dir)) {
    const file = `${where}/abi/releases/${f}`;
    const version = f.replace(/\.json$/, '');
    if (!f.endsWith('.json') || !semver.valid(version) || semver.clean(version) !== version) {
      problems.push(`${file}: not a ledger entry (abi/releases/<version>.json)`);
      ok = false;
      continue;
    }
    let entry;
    try {
      entry = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    } catch (e) {
      problems.push(`${file}: not JSON (${e.message})`);
      ok = false;
      continue;
    }
    if (entry?.version !== version || entry?.name !== pkg.name || typeof entry?.surface !== 'object') {
      problems.push(`${file}: not the ledger entry of ${pkg.name} ${version} (needs "name": "${pkg.name}", "version": "${version}" and the released "surface")`);
      ok = false;
      continue;
    }
    out.push({ version, entry });
  }
  return ok ? out.sort((a, b) => semver.compare(a.version, b.version)) : undefined;
}

if (process.env.LINT_TIMING) console.log(`lint: behaviour transcripts of every service took ${transcriptMs.toFixed(0)} ms`);
if (problems.length) {
  console.error(`lint: ${problems.length} problem(s)\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.log('lint: ok');
