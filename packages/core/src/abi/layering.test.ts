import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * The ABI layer sits below the plugin API and the hypervisor: it takes `ServiceDecl` and
 * `AbiBuild` (abi/surface.ts, abi/behaviour.ts) and imports nothing from plugin/, behaviour/,
 * hypervisor.ts or vm.ts, so no import cycle runs through it.
 */
describe('abi/ layering', () => {
  it('imports nothing from plugin/, behaviour/, hypervisor.ts or vm.ts', () => {
    const dir = new URL('.', import.meta.url);
    const bad: string[] = [];
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
      const src = readFileSync(new URL(f, dir), 'utf8');
      for (const m of src.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
        if (/^\.\.\/(plugin|behaviour)\/|^\.\.\/(hypervisor|vm)\.js$/.test(m[1]!)) bad.push(`${f}: ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
