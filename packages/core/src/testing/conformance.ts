import { readFileSync } from 'node:fs';
import { canonicalJson, serviceAbiFile } from '../abi/manifest.js';
import { checkRecord } from '../abi/record.js';
import { Hypervisor } from '../hypervisor.js';
import type { ServicePlugin, StateValue } from '../plugin/service.js';
import { decodeJson, encodeJson } from '../snapshot/stream.js';
import { Conduits } from '../router/conduits.js';
import { MemoryMachine } from './memory-machine.js';

/**
 * The conformance kit for service authors: checks a service package against the rules the
 * core relies on, using only the public plugin API. Returns problems; empty = conforms.
 *
 *   import { checkServiceConformance } from '@plugvisor/core/testing';
 *   expect(checkServiceConformance(myService(), { abiFile: 'abi.json' })).toEqual([]);
 */
export interface ConformanceOptions {
  /** Services it requires (or that it should compose beside). */
  readonly companions?: readonly ServicePlugin<any>[];
  /** Path of the checked-in ABI manifest (`abi.json`) that must match the declaration. */
  readonly abiFile?: string;
}

export function checkServiceConformance(service: ServicePlugin<any>, options: ConformanceOptions = {}): string[] {
  const problems: string[] = [];
  let hv: Hypervisor;
  try {
    hv = Hypervisor.compose([...(options.companions ?? []), service], { name: 'conformance' });
  } catch (e) {
    return [`does not compose: ${(e as Error).message}`];
  }

  if (!/^\d+\.\d+\.\d+(-[\w.]+)?$/.test(service.version)) problems.push(`version '${service.version}' is not semver`);
  if (service.surface.features.length === 0) problems.push('declares no feature: every call must be gated by one');

  // Defaults and the empty record: a default VM's record is reproducible by the same build,
  // and turning every feature off must leave no call exposed.
  const vm = hv.createVm();
  const again = checkRecord(vm.record(), hv.catalog);
  if (again.length) problems.push(`a default VM's ABI record does not check against its own build: ${again.join('; ')}`);
  const off = hv.createVm({ features: Object.fromEntries(service.surface.features.map((f) => [f.name, false])) });
  off.attachMachine(new MemoryMachine());
  off.start();
  for (const c of service.surface.calls) {
    const conduit = Conduits.get(c.conduit)!;
    if (off.exposes(conduit, c.id)) problems.push(`call ${c.name} is exposed with every feature off`);
  }

  // State: create → save → load round-trips exactly.
  if (service.surface.state && !service.state) problems.push('declares state but has no state handler');
  if (service.state && !service.surface.state) problems.push('has a state handler but declares no state in its surface');
  if (service.state && service.surface.state) {
    try {
      const s = vm.stateOf(service);
      const saved = service.state.save(s, vm);
      const wire = decodeJson(encodeJson(saved), 'state') as StateValue; // exactly what a snapshot carries
      const loaded = service.state.load(wire, service.surface.state.version, vm);
      if (canonicalJson(service.state.save(loaded, vm)) !== canonicalJson(saved)) problems.push('state does not round-trip through save/load');
    } catch (e) {
      problems.push(`state round trip failed: ${(e as Error).message}`);
    }
  }

  if (options.abiFile) {
    let onDisk = '';
    try {
      onDisk = readFileSync(options.abiFile, 'utf8');
    } catch {
      problems.push(`no ABI manifest at ${options.abiFile} (generate it with 'plugvisor abi --service ${service.name} --manifest')`);
    }
    if (onDisk && onDisk !== serviceAbiFile(service)) {
      problems.push(`${options.abiFile} is stale: the declared surface differs (regenerate it and add a changeset)`);
    }
  }
  return problems;
}
