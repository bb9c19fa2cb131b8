import { describe, expect, it } from 'vitest';
import { serviceAbiFile } from './manifest.js';
import { Hypervisor } from '../hypervisor.js';
import { classifyAbiChange } from './diff.js';
import { createEchoService, type EchoOptions } from '../testing/index.js';
import { checkServiceConformance } from '../testing/index.js';

const manifest = (o: EchoOptions = {}) => {
  const s = createEchoService(o);
  return JSON.parse(serviceAbiFile(s, Hypervisor.compose([s])));
};

describe('classifying ABI manifest changes', () => {
  it('no change is no bump; the version number is not part of abi.json', () => {
    expect(classifyAbiChange(manifest(), manifest({ version: '9.9.9' }))).toEqual({ bump: 'none', reasons: [] });
  });

  it('a new opt-in feature with its call is minor; removing it is major', () => {
    const up = classifyAbiChange(manifest({ withoutCounter: true }), manifest());
    expect(up.bump).toBe('minor');
    expect(up.reasons).toContain("minor: new opt-in feature 'echo-counter'");
    expect(classifyAbiChange(manifest(), manifest({ withoutCounter: true })).bump).toBe('major');
  });

  it('a new call under an existing feature is major: existing VMs would see it', () => {
    const c = classifyAbiChange(manifest(), manifest({ extraEchoCall: true }));
    expect(c.bump).toBe('major');
    expect(c.reasons).toContain("major: new call ECHO_EXTRA under existing feature 'echo': existing VMs would see it");
  });

  it('offering a newer version (with its calls) is minor; dropping one is major', () => {
    expect(classifyAbiChange(manifest({ maxVersion: '1.1' }), manifest()).bump).toBe('minor');
    expect(classifyAbiChange(manifest(), manifest({ maxVersion: '1.1' })).bump).toBe('major');
  });

  it('a state schema that still reads the old one is minor', () => {
    expect(classifyAbiChange(manifest({ stateVersion: 1 }), manifest()).reasons).toEqual(['minor: state schema 1 → 2 (still reads the old one)']);
  });
});

describe('conformance kit', () => {
  it('passes the echo service', () => {
    expect(checkServiceConformance(createEchoService())).toEqual([]);
  });

  it('catches a stale abi.json', () => {
    const problems = checkServiceConformance(createEchoService(), { abiFile: '/nonexistent/abi.json' });
    expect(problems[0]).toMatch(/no ABI manifest at/);
  });
});
