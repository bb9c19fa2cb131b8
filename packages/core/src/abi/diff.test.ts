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
    expect(classifyAbiChange(manifest(), manifest({ version: '9.9.9' }))).toEqual({ bump: 'none', reasons: [], changes: [] });
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
    expect(c.reasons).toContain("major: new call ECHO_EXTRA (smccc 0xc7000004) under existing feature 'echo': existing VMs would see it");
  });

  it('offering a newer version (with its calls) is minor; dropping one is major', () => {
    expect(classifyAbiChange(manifest({ maxVersion: '1.1' }), manifest()).bump).toBe('minor');
    expect(classifyAbiChange(manifest(), manifest({ maxVersion: '1.1' })).bump).toBe('major');
  });

  it('the same ABI declared in another order is no change; a rename in place is listed but needs nothing', () => {
    expect(classifyAbiChange(manifest(), manifest({ reorder: true }))).toEqual({ bump: 'none', reasons: [], changes: [] });
    const renamed = classifyAbiChange(manifest(), manifest({ echoName: 'ECHO_SUM' }), { hv: Hypervisor.compose([createEchoService({ echoName: 'ECHO_SUM' })]) });
    expect(renamed.bump).toBe('none');
    expect(renamed.changes.map((c) => c.message)).toEqual(['call ECHO renamed ECHO_SUM (same conduit smccc and id 0xc7000000: guests see no change)']);
  });

  it('calls of a new feature that is on by default are major, saying so', () => {
    const empty = { ...manifest(), surface: { calls: [], features: [] }, behaviour: undefined };
    const c = classifyAbiChange(empty, manifest());
    expect(c.reasons).toContain("major: new call ECHO (smccc 0xc7000000) behind new feature 'echo', which is on by default");
    expect(c.reasons).toContain("minor: new call ECHO_COUNT (smccc 0xc7000002) behind new opt-in feature 'echo-counter'");
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

describe('classifyAbiChange: messages name the field, old → new, ids in hex', () => {
  const call = (over: Record<string, unknown> = {}) => ({ conduit: 'smccc', feature: 'psci', id: 0x8400_0000, name: 'PSCI_VERSION', ...over });
  const reg = (over: Record<string, unknown> = {}) => ({ accepts: ['0x0', '0x1'], description: 'level', id: '0x6030000000140001', name: 'WA1', value: '0x1', ...over });
  const m = (surface: Record<string, unknown>) => ({ name: 's', surface });

  it('a call whose id changed is major, naming old → new in hex', () => {
    const c = classifyAbiChange(m({ calls: [call()] }), m({ calls: [call({ id: 0x8400_0001 })] }));
    expect(c).toMatchObject({ bump: 'major', reasons: ['major: call PSCI_VERSION changed: id 0x84000000 → 0x84000001'] });
  });

  it('a call moved to another feature names both', () => {
    const c = classifyAbiChange(m({ calls: [call()] }), m({ calls: [call({ feature: 'psci-1.1' })] }));
    expect(c.reasons).toEqual(["major: call PSCI_VERSION changed: feature 'psci' → 'psci-1.1'"]);
  });

  it('a firmware register accepting one more value is minor; accepting one fewer is major', () => {
    const widened = classifyAbiChange(m({ constants: [reg()] }), m({ constants: [reg({ accepts: ['0x0', '0x1', '0x2'] })] }));
    expect(widened).toMatchObject({ bump: 'minor', reasons: ['minor: firmware register WA1 accepts [0x0, 0x1] → [0x0, 0x1, 0x2]: also 0x2'] });
    const narrowed = classifyAbiChange(m({ constants: [reg()] }), m({ constants: [reg({ accepts: ['0x1'] })] }));
    expect(narrowed).toMatchObject({ bump: 'major', reasons: ['major: firmware register WA1 accepts [0x0, 0x1] → [0x1]: no longer 0x0'] });
    expect(narrowed.changes[0]!.affects).toBe('VMs given WA1 = 0x0');
  });

  it('a firmware register whose value changed is major, old → new; its description alone is not ABI', () => {
    const c = classifyAbiChange(m({ constants: [reg()] }), m({ constants: [reg({ value: '0x2' })] }));
    expect(c).toMatchObject({ bump: 'major', reasons: ['major: firmware register WA1 changed: value 0x1 → 0x2'] });
    expect(classifyAbiChange(m({ constants: [reg()] }), m({ constants: [reg({ description: 'other words' })] })).bump).toBe('none');
  });
});

describe('classifyAbiChange: renames and audiences', () => {
  const call = (over: Record<string, unknown> = {}) => ({ conduit: 'smccc', feature: 'psci', id: 0x8400_0000, name: 'PSCI_VERSION', ...over });
  const m = (surface: Record<string, unknown>, behaviour?: unknown) => ({ name: 's', surface, ...(behaviour ? { behaviour } : {}) });
  const features = [{ default: 'legacy-opt-out', description: 'd', name: 'psci' }, { default: 'opt-in', description: 'd', name: 'extra' }];

  it('a call renamed with the same conduit and id is no ABI change: shown, bump none', () => {
    const c = classifyAbiChange(m({ calls: [call()], features }), m({ calls: [call({ name: 'PSCI_GET_VERSION' })], features }));
    expect(c.bump).toBe('none');
    expect(c.reasons).toEqual([]);
    expect(c.changes).toEqual([{ bump: 'none', kind: 'changed', subject: 'call PSCI_VERSION', message: 'call PSCI_VERSION renamed PSCI_GET_VERSION (same conduit smccc and id 0x84000000: guests see no change)', affects: 'none' }]);
  });

  it("a renamed call's recorded answers are compared under its new name", () => {
    const was = { default: { PSCI_VERSION: { 'x1=0x0': 'x0=0x10001' } } };
    const same = { default: { PSCI_GET_VERSION: { 'x1=0x0': 'x0=0x10001' } } };
    const other = { default: { PSCI_GET_VERSION: { 'x1=0x0': 'x0=0x10000' } } };
    const renamed = m({ calls: [call({ name: 'PSCI_GET_VERSION' })], features }, same);
    expect(classifyAbiChange(m({ calls: [call()], features }, was), renamed).bump).toBe('none');
    const changed = classifyAbiChange(m({ calls: [call()], features }, was), m({ calls: [call({ name: 'PSCI_GET_VERSION' })], features }, other));
    expect(changed.reasons).toEqual(['major: behaviour changed: PSCI_GET_VERSION probe [x1=0x0]: x0=0x10001 → x0=0x10000']);
    expect(changed.changes[1]!.affects).toBe("every VM with feature 'psci' (on by default)");
  });

  it('a renamed call that also changed feature is a removal and an addition', () => {
    const c = classifyAbiChange(m({ calls: [call()], features }), m({ calls: [call({ name: 'X', feature: 'extra' })], features }));
    expect(c.bump).toBe('major');
    expect(c.reasons[0]).toBe('major: call PSCI_VERSION (smccc 0x84000000) removed');
  });

  it('each entry says which VMs see it', () => {
    const c = classifyAbiChange(m({ calls: [call()], features }), m({ calls: [call(), call({ name: 'NEW', id: 0x8400_0010, feature: 'extra' })], features }));
    expect(c.changes).toEqual([
      { bump: 'major', kind: 'added', subject: 'call NEW', message: "new call NEW (smccc 0x84000010) under existing feature 'extra': existing VMs would see it", affects: "VMs with feature 'extra' on" },
    ]);
    const versions = (...names: string[]) => [{ name: 'psci', default: '1.0', values: names.map((name, i) => ({ name, value: i })) }];
    const since = classifyAbiChange(
      m({ calls: [call()], features, versions: versions('1.0') }),
      m({ calls: [call(), call({ name: 'NEW', id: 0x8400_0010, since: { version: 'psci', minimum: '1.1' } })], features, versions: versions('1.0', '1.1') }),
    );
    expect(since.changes.map((x) => [x.bump, x.affects])).toEqual([
      ['minor', "every VM with feature 'psci' (on by default) at psci ≥ 1.1"],
      ['minor', 'VMs given psci 1.1'],
    ]);
  });
});
