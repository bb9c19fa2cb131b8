/**
 * The workspace's changesets changelog generator, named in .changeset/config.json
 * ("changelog": "@plugvisor/release/changelog"). @changesets/apply-release-plan resolves the name
 * from .changeset/ and loads it with `require`, then calls
 *   getReleaseLine(changeset, type, options)               once per changeset and package
 *   getDependencyReleaseLine(changesets, deps, options)    once per package
 * (changesets docs/modifying-changelog-format.md). Both behave as the stock
 * @changesets/changelog-git (a changeset's commit, when git knows it, as a 7-digit prefix or
 * link), and getReleaseLine also refuses an empty summary and sets a changeset's
 * "Guest ABI waiver" lines apart. The per-service "### Guest ABI" section is not written here —
 * changesets gives the generator no package name — but by the `version` wrapper (version.ts).
 */

import { parseSummary } from './summary.cjs';

interface ChangesetLike {
  readonly id?: string;
  readonly summary: string;
  readonly commit?: string;
  readonly releases?: readonly { readonly name: string; readonly type: string }[];
}
interface DependencyLike {
  readonly name: string;
  readonly newVersion: string;
}

export async function getReleaseLine(changeset: ChangesetLike, _type: string, _options?: unknown): Promise<string> {
  const parsed = parseSummary(changeset.summary ?? '');
  if (parsed.problems.length) {
    const who = (changeset.releases ?? []).map((r) => r.name).join(', ');
    throw new Error(`.changeset/${changeset.id ?? '?'}.md${who ? ` (${who})` : ''}: ${parsed.problems.join('; ')}`);
  }
  const [first = '', ...more] = parsed.text ? parsed.text.split('\n') : [];
  const prefix = changeset.commit ? `${changeset.commit.slice(0, 7)}: ` : '';
  const lines: string[] = [];
  if (parsed.text) {
    lines.push(`- ${prefix}${first}`);
    for (const l of more) lines.push(l ? `  ${l}` : '');
    for (const w of parsed.waivers) lines.push(`  - Guest ABI waiver: \`${w.call}\`: ${w.reason}`);
  } else {
    // Only waiver lines: each is the entry.
    parsed.waivers.forEach((w, i) => lines.push(`${i === 0 ? `- ${prefix}` : '  - '}Guest ABI waiver: \`${w.call}\`: ${w.reason}`));
  }
  return lines.join('\n');
}

export async function getDependencyReleaseLine(changesets: readonly ChangesetLike[], dependenciesUpdated: readonly DependencyLike[], _options?: unknown): Promise<string> {
  if (dependenciesUpdated.length === 0) return '';
  const links = changesets.map((c) => `- Updated dependencies${c.commit ? ` [${c.commit.slice(0, 7)}]` : ''}`);
  const list = dependenciesUpdated.map((d) => `  - ${d.name}@${d.newVersion}`);
  return [...links, ...list].join('\n');
}

const generator = { getReleaseLine, getDependencyReleaseLine };
export default generator;
