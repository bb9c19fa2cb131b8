import { parseArgs } from 'node:util';
import { canonicalJson, describeSignature, hex, serviceAbiFile, UsageError, type Hypervisor } from '@plugvisor/core';
import { loadBuild } from '../build-file.js';
import { table } from '../format.js';
import { abiDiffCommand, abiDiffHelp } from './abi-diff.js';

export const abiHelp = `plugvisor abi [--build FILE] [--json] [--service PKG --manifest]
plugvisor abi diff OLD NEW [--json] [--suppressions FILE]... [--strict]

Prints the guest ABI of a build: every service with its version, every call (conduit, id,
gating feature, version bounds), every feature with its default, every version selector and
every firmware register with its default value.
  --build FILE     build file (default: the default build)
  --json           the build manifest as canonical JSON, with its hash
  --service PKG    only this service; with --manifest, print the abi.json it checks in

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

export async function abiCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'diff') return abiDiffCommand(argv.slice(1));
  const { values } = parseArgs({
    args: argv,
    options: { build: { type: 'string' }, json: { type: 'boolean' }, service: { type: 'string' }, manifest: { type: 'boolean' } },
    strict: true,
  });
  const { hv } = await loadBuild(values.build);
  if (values.service) {
    const s = hv.catalog.services.get(values.service);
    if (!s) throw new UsageError(`service ${values.service} is not in build ${hv.name}`);
    process.stdout.write(values.manifest ? serviceAbiFile(s, hv) : canonicalJson(hv.manifest().services.find((x) => x.name === s.name), 2) + '\n');
    return 0;
  }
  if (values.manifest) throw new UsageError('--manifest needs --service PKG');
  process.stdout.write(values.json ? canonicalJson(hv.manifest(), 2) + '\n' : formatAbi(hv));
  return 0;
}
