import { classifyAbiChange, maxBump, type AbiChange, type AbiChangeEntry, type Bump } from '../abi/diff.js';
import { byCodeUnits, type ServiceManifest } from '../abi/manifest.js';
import { callId, checkRecordDetailed, type AbiProblem, type AbiRecord } from '../abi/record.js';
import { hex, type CallDecl } from '../abi/surface.js';
import type { Hypervisor } from '../hypervisor.js';

/**
 * `plugvisor check A B`: is moving VMs from build A to build B safe (upgrade), and back
 * (rollback)? For one VM's ABI record, or for the VMs each build creates with defaults
 * (upgrade: A's default VMs onto B; rollback: B's default VMs onto A). Answers before anyone
 * moves a VM, from the same rules restore applies — the ABI the VM recorded, never version
 * numbers — and lists, per service in either build, every classified change between the two
 * builds' manifests of it (abi/diff.ts: subject, old → new, which VMs it affects), so a change
 * the checked VMs do not see (a narrowed register, a removed opt-in feature) is still shown.
 */

export type Verdict = 'ok' | 'refused';

export interface CompatRow {
  readonly subject: string;
  readonly a: string;
  readonly b: string;
  /**
   * With a VM record (scope 'vm'): the VM's own value on this subject, from its record — a
   * feature on or off, the version it selected, a register's value, the release of a service it
   * was created on, whether it was given a call — where `a` and `b` say what each build offers.
   */
  readonly vm?: string;
  /** What the checker says for the VMs in scope (each build's default VMs, or the --vm record). */
  readonly upgrade: Verdict;
  readonly rollback: Verdict;
  readonly reasons: readonly string[];
  /** The largest classified change A → B on this subject ('none': nothing changed, or only a rename or a description). */
  readonly change: Bump;
  /** The classified changes on this subject (for a service row: every change of the service). */
  readonly changes: readonly AbiChangeEntry[];
  /** `ok` only when the VMs in scope move both ways and nothing any VM could see changed here. */
  readonly status: 'ok' | 'changed' | 'refused';
}

export interface CompatDirection {
  readonly safe: boolean;
  readonly problems: readonly AbiProblem[];
}

/** One service present in either build: its classified changes A → B and what they mean for VMs. */
export interface ServiceCompat {
  readonly service: string;
  /** Its version in A and in B (null: not in that build). */
  readonly a: string | null;
  readonly b: string | null;
  /** The largest change, as a release of it would need (abi/diff.ts). */
  readonly bump: Bump;
  readonly changes: readonly AbiChangeEntry[];
  /** The checker's verdicts for the VMs in scope: the problems belonging to this service. */
  readonly upgrade: CompatDirection;
  readonly rollback: CompatDirection;
}

export interface CompatReport {
  readonly a: { readonly name: string; readonly hash: string };
  readonly b: { readonly name: string; readonly hash: string };
  readonly scope: 'defaults' | 'vm';
  readonly upgrade: CompatDirection;
  readonly rollback: CompatDirection;
  readonly rows: readonly CompatRow[];
  /** Every service of either build, by name. */
  readonly services: readonly ServiceCompat[];
}

const callAt = (c: CallDecl) => {
  const id = callId(c);
  return `${c.conduit} ${id.slice(id.indexOf(':') + 1)}`;
};

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
    out.set(
      `register ${r.name}`,
      r.kind === 'constant'
        ? `${hex(r.decl.value)} (accepts ${[...r.decl.accepts].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)).map((v) => hex(v)).join(', ')})`
        : r.kind === 'bitmap'
          ? `bitmap (${[...r.bits].sort(([x], [y]) => x - y).map(([bit, f]) => `bit ${bit} ${f}`).join(', ')})`
          : `version (${r.version})`,
    );
  }
  return out;
}

/** A call row's cell: where the call is in this build, by name, else by the wire identity it had in the other build. */
function describeCall(hv: Hypervisor, name: string, other: Hypervisor): string {
  const here = hv.catalog.calls.get(name)?.decl;
  if (here) return callAt(here);
  const there = other.catalog.calls.get(name)?.decl;
  if (!there) return '—';
  const id = callId(there);
  const same = [...hv.catalog.calls.values()].find(({ decl }) => callId(decl) === id)?.decl;
  return same ? `${callAt(same)} as ${same.name}` : '—';
}

/** A classified change's subject as the table names it (`feature 'x'` → `feature x`); state and package changes go to the service's row. */
function rowSubject(entry: AbiChangeEntry, service: string): string {
  const s = entry.subject;
  let m: RegExpExecArray | null;
  if ((m = /^feature '(.+)'$/.exec(s))) return `feature ${m[1]}`;
  if ((m = /^firmware register (.+)$/.exec(s))) return `register ${m[1]}`;
  if (/^(call|version) /.test(s)) return s;
  return `service ${service}`;
}

/** A change some VM could see (not a rename, a description or a signature's wording). */
const visible = (c: AbiChangeEntry) => c.bump !== 'none' && c.affects !== 'none';

/** A service's manifest with nothing in it: the other side of a service only one build has. */
const emptyLike = (m: ServiceManifest): ServiceManifest => ({
  name: m.name,
  version: m.version,
  ...(m.description ? { description: m.description } : {}),
  requires: m.requires,
  surface: { calls: [], features: [] },
});

/** Every service of either build: its manifests' classified changes A → B (A's behaviour replayed on B). */
function classifyServices(a: Hypervisor, b: Hypervisor): Map<string, { a?: ServiceManifest; b?: ServiceManifest; change: AbiChange }> {
  const ma = new Map(a.manifest().services.map((m) => [m.name, m]));
  const mb = new Map(b.manifest().services.map((m) => [m.name, m]));
  const out = new Map<string, { a?: ServiceManifest; b?: ServiceManifest; change: AbiChange }>();
  for (const name of [...new Set([...ma.keys(), ...mb.keys()])].sort(byCodeUnits)) {
    const x = ma.get(name);
    const y = mb.get(name);
    const oldM = (x ?? emptyLike(y!)) as unknown as Parameters<typeof classifyAbiChange>[0];
    const newM = (y ?? emptyLike(x!)) as unknown as Parameters<typeof classifyAbiChange>[1];
    out.set(name, { a: x, b: y, change: classifyAbiChange(oldM, newM, y ? { hv: b } : {}) });
  }
  return out;
}

/** The VM's own value on a row's subject, from its ABI record (registers and calls named through either build). */
function recordCell(record: AbiRecord, subject: string, a: Hypervisor, b: Hypervisor): string {
  const space = subject.indexOf(' ');
  const kind = subject.slice(0, space);
  const name = subject.slice(space + 1);
  switch (kind) {
    case 'service':
      return record.services[name] ? `created on ${record.services[name]!.version}` : 'not in the VM';
    case 'feature': {
      const f = record.features[name];
      return f ? (f.enabled ? 'on' : 'off') : 'off (not recorded)';
    }
    case 'version': {
      const v = record.versions[name];
      return v ? `${v.name} (${hex(v.value)})` : 'not recorded';
    }
    case 'register': {
      const r = a.catalog.registers.find((x) => x.name === name) ?? b.catalog.registers.find((x) => x.name === name);
      const value = r ? record.registers[hex(r.id)] : undefined;
      return value ?? 'not recorded';
    }
    case 'call': {
      const decl = a.catalog.calls.get(name)?.decl ?? b.catalog.calls.get(name)?.decl;
      if (!decl) return '—';
      const id = callId(decl);
      const by = Object.entries(record.features).find(([, f]) => f.enabled && f.calls.includes(id));
      return by ? `given (feature ${by[0]})` : 'not given';
    }
    default:
      return '—';
  }
}

export function checkBuilds(a: Hypervisor, b: Hypervisor, vm?: AbiRecord): CompatReport {
  const upgradeRecord = vm ?? a.createVm().record();
  const rollbackRecord = vm ?? b.createVm().record();
  const up = checkRecordDetailed(upgradeRecord, b.catalog, b);
  const down = checkRecordDetailed(rollbackRecord, a.catalog, a);
  const classified = classifyServices(a, b);

  const da = describe(a);
  const db = describe(b);
  const entriesBySubject = new Map<string, AbiChangeEntry[]>();
  for (const [service, { change }] of classified) {
    entriesBySubject.set(`service ${service}`, [...change.changes]);
    for (const c of change.changes) {
      const subject = rowSubject(c, service);
      if (subject === `service ${service}`) continue; // already listed on the service's row
      entriesBySubject.set(subject, [...(entriesBySubject.get(subject) ?? []), c]);
    }
  }
  for (const subject of entriesBySubject.keys()) {
    const call = /^call (.+)$/.exec(subject)?.[1];
    if (call !== undefined) {
      da.set(subject, describeCall(a, call, b));
      db.set(subject, describeCall(b, call, a));
    }
  }
  const subjects = new Set([...da.keys(), ...db.keys(), ...entriesBySubject.keys(), ...up.map((p) => p.subject), ...down.map((p) => p.subject)]);
  const order = (s: string) => ['service', 'feature', 'call', 'version', 'register', 'record'].indexOf(s.split(' ')[0]!);
  const rows: CompatRow[] = [...subjects]
    .sort((x, y) => order(x) - order(y) || byCodeUnits(x, y))
    .map((subject) => {
      const u = up.filter((p) => p.subject === subject);
      const d = down.filter((p) => p.subject === subject);
      const changes = entriesBySubject.get(subject) ?? [];
      const refused = u.length > 0 || d.length > 0;
      return {
        subject,
        a: da.get(subject) ?? '—',
        b: db.get(subject) ?? '—',
        ...(vm ? { vm: recordCell(vm, subject, a, b) } : {}),
        upgrade: u.length ? 'refused' : 'ok',
        rollback: d.length ? 'refused' : 'ok',
        reasons: [...u.map((p) => `upgrade: ${p.message}`), ...d.map((p) => `rollback: ${p.message}`)],
        change: changes.reduce<Bump>((m, c) => maxBump(m, c.bump), 'none'),
        changes,
        status: refused ? 'refused' : changes.some(visible) ? 'changed' : 'ok',
      };
    });

  const services: ServiceCompat[] = [...classified].map(([service, { a: x, b: y, change }]) => {
    const u = up.filter((p) => p.service === service);
    const d = down.filter((p) => p.service === service);
    return {
      service,
      a: x?.version ?? null,
      b: y?.version ?? null,
      bump: change.bump,
      changes: change.changes,
      upgrade: { safe: u.length === 0, problems: u },
      rollback: { safe: d.length === 0, problems: d },
    };
  });

  return {
    a: { name: a.name, hash: a.manifest().hash },
    b: { name: b.name, hash: b.manifest().hash },
    scope: vm ? 'vm' : 'defaults',
    upgrade: { safe: up.length === 0, problems: up },
    rollback: { safe: down.length === 0, problems: down },
    rows,
    services,
  };
}

/** Plain-text table for people, then every classified change per service, then the verdicts. */
export function formatCompatReport(r: CompatReport): string {
  // With a VM record, its own values come first; A and B say what each build offers.
  const vmColumn = r.scope === 'vm';
  const head = ['subject', ...(vmColumn ? ['the VM (its record)'] : []), `A: ${r.a.name}`, `B: ${r.b.name}`, 'upgrade A→B', 'rollback B→A', 'ABI change'];
  const body = r.rows.map((x) => [x.subject, ...(vmColumn ? [x.vm ?? '—'] : []), x.a, x.b, x.upgrade === 'ok' ? 'ok' : 'REFUSED', x.rollback === 'ok' ? 'ok' : 'REFUSED', x.change]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const scope = r.scope === 'vm' ? 'for the given VM record' : "for each build's default VMs";
  const vms = r.scope === 'vm' ? 'the given VM' : 'default VMs';
  const perService: string[] = [];
  for (const s of r.services) {
    const versions = `${s.a ?? 'not in A'} → ${s.b ?? 'not in B'}`;
    if (!s.changes.length) {
      perService.push(`${s.service} ${versions}: no ABI change`);
      continue;
    }
    perService.push(`${s.service} ${versions}: ${s.bump}`);
    for (const c of s.changes) {
      perService.push(`  - ${c.bump}: ${c.message} (${c.affects === 'none' ? 'no VM sees it' : `affects ${c.affects}`})${c.waiver ? ` (waived: ${c.waiver})` : ''}`);
    }
    const verdict = (d: CompatDirection) => (d.safe ? 'moves' : `REFUSED (${d.problems.length} problem${d.problems.length === 1 ? '' : 's'}, below)`);
    perService.push(`  ${vms}: upgrade A→B ${verdict(s.upgrade)}; rollback B→A ${verdict(s.rollback)}`);
  }
  const out = [
    `compatibility ${scope}`,
    `A: ${r.a.name} (manifest ${r.a.hash.slice(0, 16)})  B: ${r.b.name} (manifest ${r.b.hash.slice(0, 16)})`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    'ABI changes A → B, per service:',
    ...perService.map((l) => `  ${l}`),
    '',
    `upgrade A→B: ${r.upgrade.safe ? 'safe' : 'REFUSED'}`,
    ...r.upgrade.problems.map((p) => `  - ${p.message}`),
    `rollback B→A: ${r.rollback.safe ? 'safe' : 'REFUSED'}`,
    ...r.rollback.problems.map((p) => `  - ${p.message}`),
  ];
  return out.join('\n') + '\n';
}
