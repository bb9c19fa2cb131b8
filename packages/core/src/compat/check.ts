import { checkRecordDetailed, type AbiProblem, type AbiRecord } from '../abi/record.js';
import type { Hypervisor } from '../hypervisor.js';

/**
 * `plugvisor check A B`: is moving VMs from build A to build B safe (upgrade), and back
 * (rollback)? For one VM's ABI record, or for the VMs each build creates with defaults
 * (upgrade: A's default VMs onto B; rollback: B's default VMs onto A). Answers before anyone
 * moves a VM, from the same rules restore applies.
 */

export type Verdict = 'ok' | 'refused';

export interface CompatRow {
  readonly subject: string;
  readonly a: string;
  readonly b: string;
  readonly upgrade: Verdict;
  readonly rollback: Verdict;
  readonly reasons: readonly string[];
}

export interface CompatDirection {
  readonly safe: boolean;
  readonly problems: readonly AbiProblem[];
}

export interface CompatReport {
  readonly a: { readonly name: string; readonly hash: string };
  readonly b: { readonly name: string; readonly hash: string };
  readonly scope: 'defaults' | 'vm';
  readonly upgrade: CompatDirection;
  readonly rollback: CompatDirection;
  readonly rows: readonly CompatRow[];
}

function describe(hv: Hypervisor): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of hv.services) out.set(`service ${s.name}`, s.version);
  for (const [name, { decl }] of hv.catalog.features) {
    out.set(`feature ${name}`, decl.default === 'legacy-opt-out' ? 'on (legacy-opt-out)' : 'off (opt-in)');
  }
  for (const [name, { decl }] of hv.catalog.versions) {
    out.set(`version ${name}`, `${decl.default} of ${decl.values.map((v) => v.name).join('/')}`);
  }
  for (const r of hv.catalog.registers) {
    out.set(`register ${r.name}`, r.kind === 'constant' ? `0x${r.decl.value.toString(16)}` : r.kind);
  }
  return out;
}

export function checkBuilds(a: Hypervisor, b: Hypervisor, vm?: AbiRecord): CompatReport {
  const upgradeRecord = vm ?? a.createVm().record();
  const rollbackRecord = vm ?? b.createVm().record();
  const up = checkRecordDetailed(upgradeRecord, b.catalog, b);
  const down = checkRecordDetailed(rollbackRecord, a.catalog, a);

  const da = describe(a);
  const db = describe(b);
  const subjects = new Set([...da.keys(), ...db.keys(), ...up.map((p) => p.subject), ...down.map((p) => p.subject)]);
  const order = (s: string) => ['service', 'feature', 'version', 'register', 'record'].indexOf(s.split(' ')[0]!);
  const rows: CompatRow[] = [...subjects]
    .sort((x, y) => order(x) - order(y) || x.localeCompare(y))
    .map((subject) => {
      const u = up.filter((p) => p.subject === subject);
      const d = down.filter((p) => p.subject === subject);
      return {
        subject,
        a: da.get(subject) ?? '—',
        b: db.get(subject) ?? '—',
        upgrade: u.length ? 'refused' : 'ok',
        rollback: d.length ? 'refused' : 'ok',
        reasons: [...u.map((p) => `upgrade: ${p.message}`), ...d.map((p) => `rollback: ${p.message}`)],
      };
    });
  return {
    a: { name: a.name, hash: a.manifest().hash },
    b: { name: b.name, hash: b.manifest().hash },
    scope: vm ? 'vm' : 'defaults',
    upgrade: { safe: up.length === 0, problems: up },
    rollback: { safe: down.length === 0, problems: down },
    rows,
  };
}

/** Plain-text table for people. */
export function formatCompatReport(r: CompatReport): string {
  const head = ['subject', `A: ${r.a.name}`, `B: ${r.b.name}`, 'upgrade A→B', 'rollback B→A'];
  const body = r.rows.map((x) => [x.subject, x.a, x.b, x.upgrade === 'ok' ? 'ok' : 'REFUSED', x.rollback === 'ok' ? 'ok' : 'REFUSED']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const scope = r.scope === 'vm' ? 'for the given VM record' : "for each build's default VMs";
  const out = [
    `compatibility ${scope}`,
    `A: ${r.a.name} (manifest ${r.a.hash.slice(0, 16)})  B: ${r.b.name} (manifest ${r.b.hash.slice(0, 16)})`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    `upgrade A→B: ${r.upgrade.safe ? 'safe' : 'REFUSED'}`,
    ...r.upgrade.problems.map((p) => `  - ${p.message}`),
    `rollback B→A: ${r.rollback.safe ? 'safe' : 'REFUSED'}`,
    ...r.rollback.problems.map((p) => `  - ${p.message}`),
  ];
  return out.join('\n') + '\n';
}
