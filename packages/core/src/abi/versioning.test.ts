import { describe, expect, it } from 'vitest';
import { releaseLine, releaseStep } from './versioning.js';

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
