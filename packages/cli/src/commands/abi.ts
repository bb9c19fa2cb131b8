import { parseArgs } from 'node:util';
import { canonicalJson, describeSignature, hex, Hypervisor, serviceAbiFile, UsageError, type ServicePlugin } from '@plugvisor/core';
import { BACKEND_CONDUITS } from '../backends.js';
import { loadBuild, loadBuildWithService } from '../build-file.js';
import { table } from '../format.js';
import { abiDiffCommand, abiDiffHelp } from './abi-diff.js';

export const abiHelp = `plugvisor abi [--build FILE] [--json] [--service PKG --manifest]
plugvisor abi diff OLD NEW [--json] [--suppressions FILE]... [--strict]

Prints the guest ABI of a build: every service with its version, every call (conduit, id,
gating feature, version bounds), every feature with its default, every version selector and
every firmware register with its default value.
  --build FILE     build file, or the name of a build the CLI ships (default: the default build)
  --json           the build manifest as canonical JSON, with its hash
  --service PKG    only this service; with --manifest, print its abi.json: the service as the
                   build configures it, composed with what it requires (as the conformance kit
                   checks it with those as companions). Without --build, a package the default
                   build does not have is loaded from the current directory (its node_modules,
                   or the package you are in, by its own name) beside the default build

${abiDiffHelp}`;

export function formatAbi(hv: Hypervisor): string {
  const vm = hv.createVm();
  const out: string[] = [];
  const m = hv.manifest();
  out.push(`build ${hv.name}  (manifest sha256 ${m.hash.slice(0, 16)}…)`, '');
  out.push('services');
  out.push(table(['package', 'version', 'requires', 'state'], hv.services.map((s) => [s.name, s.version, (s.requires ?? []).join(', ') || '—', s.surface.state ? `${s.surface.state.id} v${s.surface.state.version}` : '—'])));
  out.push('', 'features');
  out.push(
    table(
      ['feature', 'service', 'default', 'register bit', 'description'],
      [...hv.catalog.features].map(([name, { decl, service }]) => [
        name,
        service.name,
        decl.default === 'legacy-opt-out' ? 'on  (legacy-opt-out)' : 'off (opt-in)',
        decl.register ? `${decl.register.name}[${decl.register.bit}]` : '—',
        decl.description,
      ]),
    ),
  );
  out.push('', 'calls');
  out.push(
    table(
      ['call', 'conduit', 'function id', 'feature', 'versions', 'signature'],
      [...hv.catalog.calls.values()]
        .sort((a, b) => a.decl.conduit.localeCompare(b.decl.conduit) || a.decl.id - b.decl.id)
        .map(({ decl: c }) => [
          c.name,
          c.conduit,
          c.last !== undefined && c.last !== c.id ? `${hex(c.id, 8)}..${hex(c.last, 8)}` : hex(c.id, 8),
          c.feature,
          [c.since && `${c.since.version} >= ${c.since.minimum}`, c.until && `${c.until.version} <= ${c.until.maximum}`].filter(Boolean).join(', ') || 'all',
          describeSignature(c.signature, hv.conduits.get(c.conduit)?.resultRegisters ?? []),
        ]),
    ),
  );
  if (hv.catalog.versions.size) {
    out.push('', 'version selectors');
    out.push(
      table(
        ['selector', 'service', 'default', 'offered'],
        [...hv.catalog.versions].map(([name, { decl, service }]) => [name, service.name, decl.default, decl.values.map((v) => `${v.name} (${hex(v.value)})`).join(', ')]),
      ),
    );
  }
  out.push('', 'firmware registers (KVM ONE_REG ids, KVM_GET_REG_LIST order)');
  out.push(
    table(
      ['id', 'name', 'kind', 'default value', 'meaning'],
      hv.catalog.registers.map((r) => [
        hex(r.id, 16),
        r.name,
        r.kind,
        hex(vm.abi.getOneReg(r.id)),
        r.kind === 'bitmap'
          ? [...r.bits].sort((a, b) => a[0] - b[0]).map(([bit, f]) => `bit ${bit}: ${f}`).join('; ')
          : r.kind === 'version'
            ? `selects ${r.version} version`
            : `fixed; accepts ${r.decl.accepts.map((v) => hex(v)).join(', ')}`,
      ]),
    ),
  );
  if (hv.services.length === 0) out.push('', '(this build has no services: every hypercall gets its conduit\'s "not supported")');
  return out.join('\n') + '\n';
}

/**
 * The build a service's abi.json describes: the service (as this build configured it) and what
 * it requires, transitively, from the same build — what the repository's lint composes, and
 * what the conformance kit composes when those are its `companions`.
 */
function standalone(hv: Hypervisor, service: ServicePlugin<any>): Hypervisor {
  const list: ServicePlugin<any>[] = [];
  const visit = (p: ServicePlugin<any>) => {
    if (list.includes(p)) return;
    for (const dep of p.requires ?? []) {
      const d = hv.catalog.services.get(dep);
      if (d) visit(d); // composing reports a requirement the build does not have
    }
    list.push(p);
  };
  visit(service);
  return Hypervisor.compose(list, { name: service.name, conduits: BACKEND_CONDUITS });
}

export async function abiCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'diff') return abiDiffCommand(argv.slice(1));
  const { values } = parseArgs({
    args: argv,
    options: { build: { type: 'string' }, json: { type: 'boolean' }, service: { type: 'string' }, manifest: { type: 'boolean' } },
    strict: true,
  });
  let { hv } = await loadBuild(values.build);
  if (values.service) {
    let s = hv.catalog.services.get(values.service);
    if (!s) {
      if (values.build !== undefined) throw new UsageError(`service ${values.service} is not in build ${hv.name} (${values.build}); without --build it is loaded from the current directory`);
      hv = (await loadBuildWithService(values.service)).hv;
      s = hv.catalog.services.get(values.service) ?? hv.services[hv.services.length - 1];
    }
    process.stdout.write(values.manifest ? serviceAbiFile(s!, standalone(hv, s!)) : canonicalJson(hv.manifest().services.find((x) => x.name === s!.name), 2) + '\n');
    return 0;
  }
  if (values.manifest) throw new UsageError('--manifest needs --service PKG');
  process.stdout.write(values.json ? canonicalJson(hv.manifest(), 2) + '\n' : formatAbi(hv));
  return 0;
}
