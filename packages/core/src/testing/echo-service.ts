import { PlugvisorError, GuestMemoryError } from '../errors.js';
import type { CallDecl, FeatureDecl, VersionValue } from '../abi/surface.js';
import { defineService, type CallHandler, type ServicePlugin, type StateValue } from '../plugin/service.js';
import { defineServiceFactory } from '../service-options.js';

/**
 * A test-only service that exercises every core path: a legacy-opt-out feature and an
 * opt-in one, both mirrored by bits of a firmware bitmap register; a version selector with
 * its own register and a version-gated call; a constant register; a range call; a call that
 * touches guest memory; a Xen-conduit call; and versioned per-VM state. It is not part of
 * any build; tests and the machine backends' guest tests compose it.
 *
 * Function ids live in the SMCCC vendor-specific range a real build never uses (owner 7,
 * "OEM-ish"), 0xC7000000.., so it composes beside the real SMCCC services.
 */

export const ECHO = Object.freeze({
  BITMAP_REG: 0x6030_0000_0016_007fn,
  VERSION_REG: 0x6030_0000_0014_007fn,
  LEVEL_REG: 0x6030_0000_0014_007en,
  CALL_ECHO: 0xc700_0000,
  CALL_ECHO_V2: 0xc700_0001,
  CALL_COUNT: 0xc700_0002,
  CALL_PEEK_POKE: 0xc700_0003,
  CALL_RANGE_FIRST: 0xc700_0100,
  CALL_RANGE_LAST: 0xc700_01ff,
  XEN_OP_ECHO: 0x30,
});

export interface EchoState {
  count: number;
}

export interface EchoOptions {
  readonly name?: string;
  readonly version?: string;
  /** Highest version offered (caps the selector, like a build capped at PSCI 1.1). */
  readonly maxVersion?: '1.0' | '1.1' | '2.0';
  /** Leave out the opt-in `echo-counter` feature (an older release of the service). */
  readonly withoutCounter?: boolean;
  /** State schema this release writes (2 by default; 1 = the older format, a bare number). */
  readonly stateVersion?: 1 | 2;
  /** Makes the ECHO call answer one more id (a surface change a minor bump must not make). */
  readonly extraEchoCall?: boolean;
  /**
   * Added to ECHO's sum: a build option that changes what a call answers and nothing it
   * declares (the case only behaviour transcripts see).
   */
  readonly bias?: number;
  /**
   * The name ECHO is declared and tapped under: an in-place rename (same conduit and id, every
   * other field equal) — what a guest, which knows calls by id, cannot see.
   */
  readonly echoName?: string;
  /**
   * Declares the same ABI in another order (calls, features, accepted register values reversed):
   * manifests, abi.json, build hashes and VM records must not change.
   */
  readonly reorder?: boolean;
  /**
   * The level TEST_ECHO_LEVEL provides (2 by default); it accepts minLevel..maxLevel. Below 2, a VM
   * that read 2 cannot be given it any more (the accepted values narrowed).
   */
  readonly maxLevel?: number;
  /** The lowest level TEST_ECHO_LEVEL accepts (0 by default): above 0 the accepted values narrowed, what it provides did not. */
  readonly minLevel?: number;
}

const ALL_VERSIONS: readonly VersionValue[] = [
  { name: '1.0', value: 0x1_0000 },
  { name: '1.1', value: 0x1_0001 },
  { name: '2.0', value: 0x2_0000 },
];

export function createEchoService(options: EchoOptions = {}): ServicePlugin<EchoState> {
  const max = options.maxVersion ?? '2.0';
  const values = ALL_VERSIONS.slice(0, ALL_VERSIONS.findIndex((v) => v.name === max) + 1);
  const stateVersion = options.stateVersion ?? 2;
  const bias = options.bias ?? 0;
  const echoName = options.echoName ?? 'ECHO';

  const features: FeatureDecl[] = [
    {
      name: 'echo',
      default: 'legacy-opt-out',
      description: 'ECHO calls (guests saw them before the control existed)',
      legacy: 'test fixture: stands for ABI guests saw before a control existed',
      register: { id: ECHO.BITMAP_REG, name: 'TEST_ECHO_BMAP', bit: 0 },
    },
  ];
  const calls: CallDecl[] = [
    {
      name: echoName,
      conduit: 'smccc',
      id: ECHO.CALL_ECHO,
      feature: 'echo',
      signature: {
        args: [
          { name: 'a', reg: 1, width: 'u64', kind: 'opaque' },
          { name: 'b', reg: 2, width: 'u32', kind: 'range', min: 0, max: 0xffff },
          { name: 'c', reg: 3, width: 'u64', kind: 'opaque' },
        ],
      },
    },
    {
      name: 'ECHO_PEEK_POKE',
      conduit: 'smccc',
      id: ECHO.CALL_PEEK_POKE,
      feature: 'echo',
      signature: {
        args: [
          { name: 'gpa', reg: 1, width: 'u64', kind: 'pointer', size: 8, samples: ['0102030405060708'] },
          { name: 'value', reg: 2, width: 'u64', kind: 'opaque' },
        ],
      },
    },
    { name: 'ECHO_RANGE', conduit: 'smccc', id: ECHO.CALL_RANGE_FIRST, last: ECHO.CALL_RANGE_LAST, feature: 'echo' },
    {
      name: 'ECHO_XEN',
      conduit: 'xen',
      id: ECHO.XEN_OP_ECHO,
      feature: 'echo',
      signature: { args: [{ name: 'value', reg: 0, width: 'u64', kind: 'opaque' }] },
    },
  ];
  // A build capped below 2.0 does not have the call 2.0 added.
  if (max === '2.0') calls.push({ name: 'ECHO_V2', conduit: 'smccc', id: ECHO.CALL_ECHO_V2, feature: 'echo', since: { version: 'echo', minimum: '2.0' } });
  if (options.extraEchoCall) calls.push({ name: 'ECHO_EXTRA', conduit: 'smccc', id: 0xc700_0004, feature: 'echo' });
  if (!options.withoutCounter) {
    features.push({
      name: 'echo-counter',
      default: 'opt-in',
      description: 'COUNT call: a per-VM counter (new ABI, off unless asked for)',
      register: { id: ECHO.BITMAP_REG, name: 'TEST_ECHO_BMAP', bit: 1 },
    });
    calls.push({ name: 'ECHO_COUNT', conduit: 'smccc', id: ECHO.CALL_COUNT, feature: 'echo-counter' });
  }

  const handlers: Record<string, CallHandler<EchoState>> = {
    // x0 = x1 + x2 (low words), x1 = x3, x2 = full x1, x3 = 0: shows truncation and 64-bit paths.
    ECHO(vcpu) {
      const r = vcpu.regs;
      const sum = (r.lo(1) + r.lo(2) + bias) >>> 0;
      const x1 = r.get(1);
      r.setU32(0, sum);
      r.set(1, r.get(3));
      r.set(2, x1);
      r.setU32(3, 0);
    },
    ECHO_V2(vcpu) {
      vcpu.regs.setU32(0, 2);
      vcpu.regs.setU32(1, 0);
      vcpu.regs.setU32(2, 0);
      vcpu.regs.setU32(3, 0);
    },
    ECHO_COUNT(vcpu, b) {
      b.state.count++;
      vcpu.regs.setU32(0, b.state.count);
      vcpu.regs.setU32(1, 0);
      vcpu.regs.setU32(2, 0);
      vcpu.regs.setU32(3, 0);
    },
    // x1 = guest-physical address: returns the u64 there in x1 and stores x2; bad address → −3.
    ECHO_PEEK_POKE(vcpu) {
      const r = vcpu.regs;
      const gpa = r.get(1);
      try {
        const old = vcpu.machine.memory.readU64(gpa);
        vcpu.machine.memory.writeU64(gpa, r.get(2));
        r.setU32(0, 0);
        r.set(1, old);
      } catch (e) {
        if (!(e instanceof GuestMemoryError)) throw e;
        r.setSigned(0, -3);
        r.setU32(1, 0);
      }
      r.setU32(2, 0);
      r.setU32(3, 0);
    },
    ECHO_RANGE(vcpu) {
      const r = vcpu.regs;
      r.setU32(0, r.lo(0) & 0xff);
      r.setU32(1, 0);
      r.setU32(2, 0);
      r.setU32(3, 0);
    },
    ECHO_XEN(vcpu) {
      vcpu.regs.set(0, vcpu.regs.get(0) + 1n);
    },
  };
  if (options.extraEchoCall) handlers.ECHO_EXTRA = handlers.ECHO!;
  if (options.withoutCounter) delete handlers.ECHO_COUNT;
  if (max !== '2.0') delete handlers.ECHO_V2;
  if (echoName !== 'ECHO') {
    handlers[echoName] = handlers.ECHO!;
    delete handlers.ECHO;
  }
  const level = options.maxLevel ?? 2;
  const lowest = Math.min(options.minLevel ?? 0, level);
  const accepts = Array.from({ length: level - lowest + 1 }, (_, i) => BigInt(lowest + i));
  if (options.reorder) {
    features.reverse();
    calls.reverse();
    accepts.reverse();
  }

  return defineService<EchoState>({
    name: options.name ?? '@plugvisor/test-svc-echo',
    version: options.version ?? '1.0.0',
    description: 'test-only service exercising every core path',
    surface: {
      features,
      calls,
      versions: [
        {
          name: 'echo',
          description: 'ECHO interface version',
          values,
          default: values.some((v) => v.name === '1.1') ? '1.1' : values[values.length - 1]!.name,
          register: { id: ECHO.VERSION_REG, name: 'TEST_ECHO_VERSION' },
        },
      ],
      constants: [
        {
          id: ECHO.LEVEL_REG,
          name: 'TEST_ECHO_LEVEL',
          description: `a fixed level a VMM may write back if not better than ${level}`,
          value: BigInt(level),
          accepts,
        },
      ],
      state: { id: 'echo-counter', version: stateVersion, minReadable: 1 },
    },
    state: {
      create: () => ({ count: 0 }),
      save: (s): StateValue => (stateVersion === 1 ? s.count : { count: s.count }),
      load(data, schema) {
        const count = schema === 1 ? data : (data as { count?: unknown } | null)?.count;
        if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
          throw new PlugvisorError('BAD_STATE', `echo-counter state schema ${schema} holds an invalid count`);
        }
        return { count };
      },
    },
    handlers,
  });
}

/** The echo service as a build file loads it: `createEchoService` with its options declared. */
export const echoServiceFactory = defineServiceFactory<EchoOptions, EchoState>({
  options: {
    name: { type: 'string', description: 'package name the service reports (default @plugvisor/test-svc-echo)' },
    version: { type: 'string', description: 'package version the service reports (default 1.0.0)' },
    maxVersion: { type: 'enum', values: ALL_VERSIONS.map((v) => v.name), description: 'highest echo version offered' },
    withoutCounter: { type: 'boolean', description: 'leave out the opt-in echo-counter feature' },
    stateVersion: { type: 'integer', min: 1, max: 2, description: 'state schema this release writes' },
    extraEchoCall: { type: 'boolean', description: 'ECHO answers one more id' },
    bias: { type: 'integer', min: -0x8000_0000, max: 0xffff_ffff, description: "added to ECHO's sum" },
    echoName: { type: 'string', description: 'the name ECHO is declared under (an in-place rename)' },
    reorder: { type: 'boolean', description: 'declare the same ABI in another order' },
    maxLevel: { type: 'integer', min: 0, max: 7, description: 'the level TEST_ECHO_LEVEL provides; it accepts minLevel..maxLevel' },
    minLevel: { type: 'integer', min: 0, max: 7, description: 'the lowest level TEST_ECHO_LEVEL accepts' },
  },
  create: createEchoService,
});
