/**
 * What a changeset's text says, read the same way by the changelog generator (loaded by
 * @changesets/apply-release-plan with `require`, hence CommonJS) and by the `version` wrapper.
 *
 * A changeset is a Markdown file with YAML front matter naming packages and bump types
 * (github.com/changesets/changesets, docs/adding-a-changeset.md); its body is the summary that
 * becomes the CHANGELOG entry. A line of the body
 *
 *     Guest ABI waiver: CALL_NAME: why (the bug it fixes)
 *
 * accepts a changed answer of CALL_NAME as a bug fix (a patch) and carries the reason into the
 * release's Guest ABI notes and its ledger entry.
 */

/** One "Guest ABI waiver: CALL: why" line. */
export interface Waiver {
  readonly call: string;
  readonly reason: string;
}

export interface ParsedSummary {
  /** The summary without its waiver lines, trailing blanks trimmed. */
  readonly text: string;
  readonly waivers: readonly Waiver[];
  /** What is wrong with it: an empty summary, a waiver without a reason. */
  readonly problems: readonly string[];
}

/** The waiver line, as scripts/lint.mjs reads it (a list marker in front is allowed). */
export const WAIVER_LINE = /^[\s*-]*Guest ABI waiver:\s*([\w.-]+)\s*:\s*(.*)$/;

export function parseSummary(summary: string): ParsedSummary {
  const lines = summary.split('\n').map((l) => l.trimEnd());
  const waivers: Waiver[] = [];
  const problems: string[] = [];
  const rest: string[] = [];
  for (const line of lines) {
    const m = WAIVER_LINE.exec(line);
    if (!m) {
      rest.push(line);
      continue;
    }
    const reason = (m[2] ?? '').trim();
    if (!reason) problems.push(`the waiver for ${m[1]} gives no reason (write "Guest ABI waiver: ${m[1]}: the bug it fixes")`);
    else waivers.push({ call: m[1] as string, reason });
  }
  const text = rest.join('\n').trim();
  if (!text && waivers.length === 0) problems.push('no summary: say what changed (it becomes the CHANGELOG entry)');
  return { text, waivers, problems };
}

export type BumpType = 'major' | 'minor' | 'patch' | 'none';

/** A pending changeset file: its id (file name without .md), packages → bump, and its summary. */
export interface PendingChangeset {
  readonly id: string;
  readonly releases: ReadonlyMap<string, BumpType>;
  readonly summary: string;
}

/**
 * Parses one changeset file's text. The front matter is the flat YAML map changesets writes
 * (`"@scope/name": major`); anything else in it is reported, not guessed at.
 */
export function parseChangesetFile(id: string, text: string): PendingChangeset | { id: string; error: string } {
  const front = /^\s*---\r?\n([\s\S]*?)\r?\n?---\r?\n?/.exec(text);
  if (!front) return { id, error: 'no front matter (a changeset starts with --- and the packages it bumps)' };
  const releases = new Map<string, BumpType>();
  for (const line of (front[1] ?? '').split(/\r?\n/)) {
    if (!line.trim()) continue;
    const m = /^\s*["']?([^"':]+)["']?\s*:\s*["']?(major|minor|patch|none)["']?\s*$/.exec(line);
    if (!m) return { id, error: `front matter line not understood: ${line.trim()}` };
    releases.set(m[1] as string, m[2] as BumpType);
  }
  return { id, releases, summary: text.slice(front[0].length).trim() };
}
