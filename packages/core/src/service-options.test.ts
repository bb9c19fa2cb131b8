import { describe, expect, it } from 'vitest';
import { checkServiceOptions, defineServiceFactory, optionsSchemaOf, type OptionsSchema } from './service-options.js';
import { createEchoService, echoServiceFactory } from './testing/echo-service.js';

const schema: OptionsSchema = {
  level: { type: 'enum', values: ['1.0', '1.1'], description: 'level' },
  on: { type: 'boolean', description: 'switch' },
  n: { type: 'integer', min: 1, max: 2, description: 'count' },
  label: { type: 'string', description: 'label' },
};

describe('service options schema', () => {
  it('accepts declared keys with values of their type', () => {
    expect(checkServiceOptions(schema, {})).toBeUndefined();
    expect(checkServiceOptions(schema, { level: '1.1', on: false, n: 2, label: 'x' })).toBeUndefined();
  });

  it('names the key and what it accepts', () => {
    expect(checkServiceOptions(schema, { levle: '1.0' })).toEqual({ key: 'levle', message: "unknown option 'levle' (options: level, on, n, label)" });
    expect(checkServiceOptions({}, { x: 1 })?.message).toBe("unknown option 'x' (it takes no options)");
    expect(checkServiceOptions(schema, { level: '2.0' })?.message).toBe(`option 'level' is "2.0"; it takes one of 1.0, 1.1`);
    expect(checkServiceOptions(schema, { on: 'yes' })?.message).toBe(`option 'on' is "yes"; it takes true or false`);
    expect(checkServiceOptions(schema, { n: 1.5 })?.message).toBe(`option 'n' is 1.5; it takes an integer in 1..2`);
    expect(checkServiceOptions(schema, { n: 3 })?.key).toBe('n');
    expect(checkServiceOptions(schema, { label: 7 })?.message).toBe(`option 'label' is 7; it takes a string`);
    expect(checkServiceOptions(schema, { toString: 'x' })?.key).toBe('toString');
  });

  it('reads a factory’s schema; anything else takes no options', () => {
    expect(Object.keys(optionsSchemaOf(echoServiceFactory))).toContain('maxVersion');
    expect(optionsSchemaOf(createEchoService)).toEqual({});
    expect(optionsSchemaOf(createEchoService())).toEqual({});
    const f = defineServiceFactory<{ maxVersion?: '1.0' | '2.0' }, unknown>({
      options: { maxVersion: { type: 'enum', values: ['1.0', '2.0'], description: 'cap' } },
      create: (o) => createEchoService(o),
    });
    expect(f({ maxVersion: '1.0' }).surface.versions?.[0]?.values.map((v) => v.name)).toEqual(['1.0']);
    expect(Object.isFrozen(f.options)).toBe(true);
  });
});
