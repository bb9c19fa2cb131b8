import { describe, expect, it } from 'vitest';
import { releaseLine, releaseStep, rolloutVerdicts } from './versioning.js';

describe('one version policy (semver with npm caret reading of 0.x)', () => {
  it('classifies release steps', () => {
    expect(releaseStep('1.2.3', '2.0.0')).toBe('major');
    expect(releaseStep('1.2.3', '1.3.0')).toBe('minor');
    expect(releaseStep('1.2.3', '1.2.4')).toBe('patch');
    expect(releaseStep('1.2.3', '1.2.3')).toBe('none');
    expect(releaseStep('0.1.0', '0.2.0')).toBe('major');
    expect(releaseStep('0.1.0', '0.1.1')).toBe('minor');
    expect(releaseStep('0.3.1', '1.0.0')).toBe('major');
    expect(releaseStep('x', '1.0.0')).toBeUndefined();
  });
  it('names the line a version belongs to', () => {
    expect(releaseLine('0.3.1')).toBe('0.3');
    expect(releaseLine('2.5.0')).toBe('2');
  });
});

describe('rollout verdicts follow the direction of each change', () => {
  const entry = (bump: 'minor' | 'major' | 'patch', kind: 'added' | 'removed' | 'changed', subject: string, waiver?: string) => ({ bump, kind, subject, message: subject, affects: `VMs using ${subject}`, ...(waiver ? { waiver } : {}) });
  const verdicts = (...changes: ReturnType<typeof entry>[]) => rolloutVerdicts({ bump: 'major', reasons: [], changes });
  it('added ABI refuses only the way back; removed ABI only the way forward; a change both ways', () => {
    expect(verdicts(entry('minor', 'added', 'X'))).toEqual({ upgrade: 'every VM of the previous release restores', rollback: 'refused for VMs using X (X); every other VM restores' });
    expect(verdicts(entry('major', 'removed', 'Y'))).toEqual({ upgrade: 'refused for VMs using Y (Y); every other VM restores', rollback: 'every VM of this release restores on the previous one' });
    const changed = verdicts(entry('major', 'changed', 'Z'));
    expect(changed.upgrade).toContain('VMs using Z');
    expect(changed.rollback).toContain('VMs using Z');
  });
  it('a waived behaviour change is still refused both ways (restore replays the recorded answers)', () => {
    const v = verdicts(entry('patch', 'changed', 'W', 'a fix'));
    expect(v.upgrade).toContain('VMs using W');
    expect(v.rollback).toContain('VMs using W');
    expect(verdicts(entry('patch', 'changed', 'description'))).toEqual({ upgrade: 'every VM of the previous release restores', rollback: 'every VM of this release restores on the previous one' });
  });
});
