import { readFileSync, statSync } from 'node:fs';
import { UsageError } from '@plugvisor/core';

/**
 * Suppression files for `plugvisor abi diff --suppressions FILE`, modelled on libabigail's
 * suppression specifications (sourceware.org/libabigail/manual/libabigail-concepts.html,
 * "Suppression specifications"): an INI file of sections, each naming which changes it
 * suppresses by properties that must all match. Ours has one section type:
 *
 *   # why we accept it, for the people who read this file
 *   [suppress_change]
 *   label = psci-0.2-dropped
 *   service = @plugvisor/svc-psci
 *   subject_regexp = ^version psci$
 *   message_regexp = versions removed: 0\.2
 *   bump = major
 *   reason = no guest of ours asks for PSCI 0.2
 *
 * Keys: `label` (optional, shown with what it suppressed); `service` (a package name, exactly)
 * or `service_regexp`; `subject_regexp` (on the change's subject: `call X`, `feature 'x'`,
 * `version psci`, `firmware register X`, `state`, `package`, `service`); `message_regexp` (on
 * the change's text, old → new); `bump` (only changes of that bump: none, patch, minor, major);
 * `reason` (mandatory: a suppression without a reason is refused).
 *
 * At least one of service, service_regexp, subject_regexp, message_regexp must be given:
 * libabigail silently drops a section with no property that selects something, which hides the
 * mistake; here it is refused. Regular expressions are JavaScript's (ECMAScript), searched anywhere in
 * the text unless anchored, as libabigail's `*_regexp` properties search. Lines starting with
 * `#` or `;` are comments; a value may be put in double quotes. Anything else — an unknown
 * section or key, a key outside a section, a bad regular expression, a missing reason — is bad
 * operator input naming the file and line.
 */

export interface Suppression {
  /** `FILE:LINE` of the section header. */
  readonly where: string;
  readonly label?: string;
  readonly reason: string;
  readonly service?: string;
  readonly serviceRegexp?: RegExp;
  readonly subjectRegexp?: RegExp;
  readonly messageRegexp?: RegExp;
  readonly bump?: string;
}

const KEYS = ['label', 'reason', 'service', 'service_regexp', 'subject_regexp', 'message_regexp', 'bump'] as const;
type Key = (typeof KEYS)[number];
const SELECTORS: readonly Key[] = ['service', 'service_regexp', 'subject_regexp', 'message_regexp'];
const BUMPS = ['none', 'patch', 'minor', 'major'];

export function readSuppressions(path: string): Suppression[] {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`--suppressions ${path} does not exist`, 'BAD_INPUT_FILE');
  if (!st.isFile()) throw new UsageError(`--suppressions ${path} is not a regular file`, 'BAD_INPUT_FILE');
  return parseSuppressions(readFileSync(path, 'utf8'), path);
}

export function parseSuppressions(text: string, path: string): Suppression[] {
  const out: Suppression[] = [];
  let section: { line: number; props: Map<Key, { value: string; line: number }> } | undefined;
  const bad = (line: number, why: string) => new UsageError(`--suppressions ${path}:${line}: ${why}`, 'BAD_INPUT_FILE');
  const close = () => {
    if (!section) return;
    const { line, props } = section;
    const get = (k: Key) => props.get(k)?.value;
    const regexp = (k: Key) => {
      const p = props.get(k);
      if (!p) return undefined;
      try {
        return new RegExp(p.value);
      } catch (e) {
        throw bad(p.line, `${k} is not a regular expression: ${(e as Error).message}`);
      }
    };
    if (!get('reason')) throw bad(line, '[suppress_change] has no reason (say why this change is accepted)');
    if (!SELECTORS.some((k) => props.has(k))) throw bad(line, `[suppress_change] selects nothing: give at least one of ${SELECTORS.join(', ')}`);
    const bump = get('bump');
    if (bump !== undefined && !BUMPS.includes(bump)) throw bad(props.get('bump')!.line, `bump is '${bump}'; it takes one of ${BUMPS.join(', ')}`);
    out.push({
      where: `${path}:${line}`,
      reason: get('reason')!,
      ...(get('label') !== undefined ? { label: get('label') } : {}),
      ...(get('service') !== undefined ? { service: get('service') } : {}),
      ...(props.has('service_regexp') ? { serviceRegexp: regexp('service_regexp') } : {}),
      ...(props.has('subject_regexp') ? { subjectRegexp: regexp('subject_regexp') } : {}),
      ...(props.has('message_regexp') ? { messageRegexp: regexp('message_regexp') } : {}),
      ...(bump !== undefined ? { bump } : {}),
    });
    section = undefined;
  };
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) return;
    const header = /^\[([^\]]*)\]$/.exec(line);
    if (header) {
      close();
      const name = header[1]!.trim();
      if (name !== 'suppress_change') throw bad(n, `unknown section [${name}]; the one section is [suppress_change]`);
      section = { line: n, props: new Map() };
      return;
    }
    const prop = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!prop) throw bad(n, `'${line}' is neither a [section], a key = value line nor a comment`);
    const key = prop[1]! as Key;
    let value = prop[2]!.trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!section) throw bad(n, `${key} is outside a [suppress_change] section`);
    if (!KEYS.includes(key)) throw bad(n, `unknown key '${key}'; [suppress_change] takes ${KEYS.join(', ')}`);
    if (section.props.has(key)) throw bad(n, `${key} given twice in the section of line ${section.line}`);
    if (!value) throw bad(n, `${key} has no value`);
    section.props.set(key, { value, line: n });
  });
  close();
  if (!out.length) throw new UsageError(`--suppressions ${path} has no [suppress_change] section`, 'BAD_INPUT_FILE');
  return out;
}

/** The first suppression matching a change of `service`, or undefined. */
export function suppressionFor(
  list: readonly Suppression[],
  service: string,
  change: { readonly subject: string; readonly message: string; readonly bump: string },
): Suppression | undefined {
  return list.find(
    (s) =>
      (s.service === undefined || s.service === service) &&
      (s.serviceRegexp === undefined || s.serviceRegexp.test(service)) &&
      (s.subjectRegexp === undefined || s.subjectRegexp.test(change.subject)) &&
      (s.messageRegexp === undefined || s.messageRegexp.test(change.message)) &&
      (s.bump === undefined || s.bump === change.bump),
  );
}
