import { BuildConduits, continuationText, describeSignature, hex, type ServicePlugin } from '@plugvisor/core';
import { BACKEND_CONDUITS } from './backends.js';

/**
 * A service's ABI as Markdown tables, generated from its declaration: what each package README
 * carries between the ABI markers (`pnpm lint --fix` rewrites it; `pnpm lint` checks it), so
 * the documented defaults are always the declared ones.
 */
export const ABI_BEGIN = '<!-- BEGIN ABI: generated from the declaration by `pnpm lint --fix`; do not edit -->';
export const ABI_END = '<!-- END ABI -->';

const row = (cells: readonly string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
const tableMd = (head: readonly string[], rows: readonly (readonly string[])[]) =>
  [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');

/**
 * `conduits`: where the service's calls' conduits are looked up (their default result
 * registers); by default every conduit the CLI's backends declare.
 */
export function serviceAbiMarkdown(s: ServicePlugin<any>, conduits: BuildConduits = new BuildConduits(BACKEND_CONDUITS)): string {
  const out: string[] = [ABI_BEGIN, ''];
  const { surface } = s;
  out.push('**Features**', '');
  out.push(
    tableMd(
      ['feature', 'default', 'firmware register bit', 'what it gates'],
      surface.features.map((f) => [
        `\`${f.name}\``,
        f.default === 'legacy-opt-out' ? 'on (legacy-opt-out)' : 'off (opt-in)',
        f.register ? `${f.register.name} (${hex(f.register.id)}) bit ${f.register.bit}` : '—',
        f.description,
      ]),
    ),
  );
  out.push('', '**Calls**', '');
  out.push(
    tableMd(
      ['call', 'conduit', 'function id', 'feature', 'versions', 'signature'],
      [...surface.calls]
        .sort((a, b) => a.id - b.id || (a.subOf ? a.subOf.value + 1 : 0) - (b.subOf ? b.subOf.value + 1 : 0))
        .map((c) => [
          c.name,
          c.conduit,
          // A sub-op (CallDecl.subOf): its parent's id and the selector value that reaches it.
          c.subOf
            ? `${hex(c.id, 8)} x${c.subOf.selector}=${hex(c.subOf.value)}`
            : c.last !== undefined && c.last !== c.id
              ? `${hex(c.id, 8)}..${hex(c.last, 8)}`
              : hex(c.id, 8),
          `\`${c.feature}\``,
          [c.since && `${c.since.version} ≥ ${c.since.minimum}`, c.until && `${c.until.version} ≤ ${c.until.maximum}`].filter(Boolean).join(', ') || 'all',
          describeSignature(c.signature, conduits.get(c.conduit)?.resultRegisters ?? []),
        ]),
    ),
  );
  for (const v of surface.versions ?? []) {
    out.push('', `**Version selector \`${v.name}\`** — ${v.description}; default ${v.default}${v.register ? `; register ${v.register.name} (${hex(v.register.id)})` : ''}`, '');
    out.push(tableMd(['version', 'value'], v.values.map((x) => [x.name, hex(x.value)])));
  }
  if (surface.constants?.length) {
    out.push('', '**Fixed firmware registers**', '');
    out.push(tableMd(['register', 'id', 'value', 'accepted writes', 'meaning'], surface.constants.map((c) => [c.name, hex(c.id), hex(c.value), c.accepts.map((v) => hex(v)).join(', '), c.description])));
  }
  if (surface.state) out.push('', `**Per-VM state**: \`${surface.state.id}\`, schema ${surface.state.version} (reads ${surface.state.minReadable ?? surface.state.version}–${surface.state.version})`);
  for (const c of surface.continuations ?? []) out.push('', `**Continuation** of ${c.call}: ${continuationText(c)} — ${c.description}`);
  if (s.requires?.length) out.push('', `**Requires**: ${s.requires.join(', ')}`);
  out.push('', ABI_END);
  return out.join('\n');
}
