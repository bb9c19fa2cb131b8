import { describe, expect, it } from 'vitest';
import { AbiError, ComposeError, Conduits, defineService, Hypervisor, type ServicePlugin } from './index.js';
import { createEchoService, ECHO, MemoryMachine } from './testing/index.js';

const SMCCC_NOT_SUPPORTED = 0xffff_ffff_ffff_ffffn;

function composeError(services: ServicePlugin<any>[]): ComposeError {
  try {
    Hypervisor.compose(services);
  } catch (e) {
    expect(e).toBeInstanceOf(ComposeError);
    return e as ComposeError;
  }
  throw new Error('composed, but should not have');
}

const minimal = (name: string, over: Partial<ServicePlugin> & { calls?: any[]; features?: any[] } = {}) =>
  defineService({
    name,
    version: '1.0.0',
    surface: {
      features: over.features ?? [{ name: `${name}-f`, default: 'opt-in', description: '' }],
      calls: over.calls ?? [],
    },
    handlers: Object.fromEntries((over.calls ?? []).map((c: { name: string }) => [c.name, () => {}])),
  });

describe('composing a build', () => {
  it('composes the echo service and applies it', () => {
    const hv = Hypervisor.compose([createEchoService()], { name: 't' });
    expect(hv.services.map((s) => s.name)).toEqual(['@plugvisor/test-svc-echo']);
    expect(Object.isFrozen(hv.hooks)).toBe(true);
    expect(hv.manifest().hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a duplicate service, naming both versions', () => {
    const e = composeError([createEchoService(), createEchoService({ version: '1.1.0' })]);
    expect(e.message).toContain('@plugvisor/test-svc-echo is in the build twice (1.0.0 and 1.1.0)');
  });

  it('refuses two services claiming one call id, naming both packages', () => {
    const e = composeError([
      createEchoService(),
      minimal('@x/clash', { features: [{ name: 'clash', default: 'opt-in', description: '' }], calls: [{ name: 'CLASH', conduit: 'smccc', id: ECHO.CALL_RANGE_FIRST + 5, feature: 'clash' }] }),
    ]);
    expect(e.message).toMatch(/smccc call id 0xc7000105 is claimed by ECHO_RANGE and CLASH: @plugvisor\/test-svc-echo and @x\/clash/);
  });

  it('refuses a duplicate feature, register and register bit, naming both packages', () => {
    const other = defineService({
      name: '@x/other',
      version: '1.0.0',
      surface: {
        features: [
          { name: 'echo', default: 'opt-in', description: '' },
          { name: 'mine', default: 'opt-in', description: '', register: { id: ECHO.BITMAP_REG, name: 'TEST_ECHO_BMAP', bit: 1 } },
        ],
        calls: [],
        constants: [{ id: ECHO.VERSION_REG, name: 'X', description: '', value: 0n, accepts: [0n] }],
      },
      handlers: {},
    });
    const e = composeError([createEchoService(), other]);
    expect(e.problems).toEqual(
      expect.arrayContaining([
        "feature 'echo' is declared by both @plugvisor/test-svc-echo and @x/other",
        'bit 1 of TEST_ECHO_BMAP (0x603000000016007f) is claimed by both @plugvisor/test-svc-echo and @x/other',
        'firmware register 0x603000000014007f (X) is declared by both @plugvisor/test-svc-echo and @x/other',
      ]),
    );
  });

  it('lets two services share a bitmap register on different bits', () => {
    const other = minimal('@x/bit2', { features: [{ name: 'b2', default: 'opt-in', description: '', register: { id: ECHO.BITMAP_REG, name: 'TEST_ECHO_BMAP', bit: 2 } }] });
    const hv = Hypervisor.compose([createEchoService(), other]);
    expect(hv.createVm().abi.getOneReg(ECHO.BITMAP_REG)).toBe(0b001n);
  });

  it('refuses a missing requirement, an unknown conduit and a call gated by another package', () => {
    const needy = defineService({
      name: '@x/needy',
      version: '1.0.0',
      requires: ['@x/absent'],
      surface: {
        features: [{ name: 'n', default: 'opt-in', description: '' }],
        calls: [
          { name: 'N1', conduit: 'nosuch', id: 1, feature: 'n' },
          { name: 'N2', conduit: 'smccc', id: 0xc7100000, feature: 'echo' },
        ],
      },
      handlers: { N1() {}, N2() {} },
    });
    const e = composeError([createEchoService(), needy]);
    expect(e.problems).toEqual(
      expect.arrayContaining([
        '@x/needy requires @x/absent, which is not in the build',
        "@x/needy: call N1 uses unknown conduit 'nosuch'",
        "@x/needy: call N2 is gated by feature 'echo' of @plugvisor/test-svc-echo",
      ]),
    );
  });

  it('refuses a declared call without a handler and a tap on a foreign call', () => {
    const noHandler: ServicePlugin = {
      ...minimal('@x/nohandler', { features: [{ name: 'nh', default: 'opt-in', description: '' }] }),
      surface: { features: [{ name: 'nh', default: 'opt-in', description: '' }], calls: [{ name: 'NH', conduit: 'smccc', id: 0xc7200000, feature: 'nh' }] },
      apply(hv) {
        hv.hooks.call.for('ECHO').tap('@x/nohandler', () => {});
      },
    };
    const e = composeError([createEchoService(), noHandler]);
    expect(e.problems).toEqual(
      expect.arrayContaining([
        '@x/nohandler declares call NH but taps no handler for it',
        '@x/nohandler taps call ECHO, which belongs to @plugvisor/test-svc-echo',
      ]),
    );
  });
});

describe('per-VM ABI', () => {
  const hv = Hypervisor.compose([createEchoService()]);

  it('starts from defaults: legacy-opt-out on, opt-in off, default version', () => {
    const vm = hv.createVm();
    expect(vm.abi.features()).toEqual({ echo: true, 'echo-counter': false });
    expect(vm.abi.version('echo')).toBe('1.1');
    expect(vm.abi.getOneReg(ECHO.BITMAP_REG)).toBe(0b01n);
    expect(vm.abi.getOneReg(ECHO.VERSION_REG)).toBe(0x10001n);
    expect(vm.abi.getOneReg(ECHO.LEVEL_REG)).toBe(2n);
  });

  it('applies operator overrides by feature, version and register', () => {
    const vm = hv.createVm({ features: { 'echo-counter': true }, versions: { echo: '2.0' }, registers: [[ECHO.BITMAP_REG, 0b10n]] });
    expect(vm.abi.features()).toEqual({ echo: false, 'echo-counter': true });
    expect(vm.abi.version('echo')).toBe('2.0');
  });

  it('reports bad overrides with the errno and a message', () => {
    expect(() => hv.createVm({ features: { nope: true } })).toThrow(/unknown feature 'nope'/);
    expect(() => hv.createVm({ versions: { echo: '9.9' } })).toThrowError(AbiError);
  });

  it('lists firmware registers in ascending id order (KVM_GET_REG_LIST)', () => {
    expect(hv.createVm().abi.getRegList()).toEqual([ECHO.LEVEL_REG, ECHO.VERSION_REG, ECHO.BITMAP_REG]);
  });

  it('follows KVM errno rules for ONE_REG', () => {
    const vm = hv.createVm();
    const errno = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as AbiError).errnoName;
      }
      return 'ok';
    };
    expect(errno(() => vm.abi.getOneReg(0x6030_0000_0016_0042n))).toBe('ENOENT');
    expect(errno(() => vm.abi.setOneReg(0x6030_0000_0016_0042n, 0n))).toBe('ENOENT');
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, 0b100n))).toBe('EINVAL');
    expect(errno(() => vm.abi.setOneReg(ECHO.VERSION_REG, 0x10002n))).toBe('EINVAL');
    expect(errno(() => vm.abi.setOneReg(ECHO.LEVEL_REG, 3n))).toBe('EINVAL');
    expect(errno(() => vm.abi.setOneReg(ECHO.LEVEL_REG, 1n))).toBe('ok');
    expect(vm.abi.getOneReg(ECHO.LEVEL_REG)).toBe(2n); // accepted, nothing stored
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, 0b11n))).toBe('ok');

    vm.attachMachine(new MemoryMachine());
    vm.start(); // first run: frozen
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, 0b01n))).toBe('EBUSY');
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, 0b11n))).toBe('ok'); // same value after run
    expect(errno(() => vm.abi.setOneReg(ECHO.BITMAP_REG, 0b111n))).toBe('EINVAL'); // EINVAL before EBUSY
    expect(errno(() => vm.abi.setOneReg(ECHO.VERSION_REG, 0x20000n))).toBe('EBUSY');
    expect(errno(() => vm.abi.setOneReg(ECHO.VERSION_REG, 0x10001n))).toBe('ok');
    expect(errno(() => vm.abi.setOneReg(ECHO.VERSION_REG, 0x7n))).toBe('EINVAL');
    expect(errno(() => vm.abi.setFeature('echo', false))).toBe('EBUSY');
    expect(errno(() => vm.abi.setFeature('echo', true))).toBe('ok');
    expect(new AbiError('EBUSY', 'x').errno).toBe(16);
  });
});

describe('dispatch', () => {
  const hv = Hypervisor.compose([createEchoService()]);
  const setup = (overrides = {}) => {
    const vm = hv.createVm(overrides);
    const m = new MemoryMachine();
    vm.attachMachine(m);
    vm.start();
    return { vm, m, v: m.vcpus[0]! };
  };

  it('refuses to dispatch before the VM is started', () => {
    const vm = hv.createVm();
    expect(() => vm.dispatch(Conduits.smccc, new MemoryMachine().vcpus[0]!)).toThrow(/before Vm.start/);
  });

  it('routes an exposed call to its handler, reading w0 only', () => {
    const { vm, v } = setup();
    v.regs.set(0, 0xdead_beef_0000_0000n | BigInt(ECHO.CALL_ECHO));
    v.regs.set(1, 0x1_0000_0005n);
    v.regs.set(2, 7n);
    v.regs.set(3, 0xffn);
    vm.dispatch(Conduits.smccc, v);
    expect([v.regs.get(0), v.regs.get(1), v.regs.get(2), v.regs.get(3)]).toEqual([12n, 0xffn, 0x1_0000_0005n, 0n]);
  });

  it('answers NOT_SUPPORTED (x0=-1, x1-x3=0) for unknown and unexposed calls', () => {
    const { vm, v } = setup();
    for (const id of [0x8400_0000, ECHO.CALL_COUNT /* opt-in, off */, ECHO.CALL_ECHO_V2 /* needs 2.0 */]) {
      v.regs.set(0, BigInt(id));
      v.regs.set(1, 5n);
      v.regs.set(2, 6n);
      v.regs.set(3, 7n);
      vm.dispatch(Conduits.smccc, v);
      expect([v.regs.get(0), v.regs.get(1), v.regs.get(2), v.regs.get(3)]).toEqual([SMCCC_NOT_SUPPORTED, 0n, 0n, 0n]);
    }
  });

  it('exposes opt-in and version-gated calls only when the VM asked', () => {
    const { vm, v } = setup({ features: { 'echo-counter': true }, versions: { echo: '2.0' } });
    for (let i = 0; i < 2; i++) {
      v.regs.set(0, BigInt(ECHO.CALL_COUNT));
      vm.dispatch(Conduits.smccc, v);
    }
    expect(v.regs.get(0)).toBe(2n);
    v.regs.set(0, BigInt(ECHO.CALL_ECHO_V2));
    vm.dispatch(Conduits.smccc, v);
    expect(v.regs.get(0)).toBe(2n);
  });

  it('keeps per-VM state apart', () => {
    const a = setup({ features: { 'echo-counter': true } });
    const b = setup({ features: { 'echo-counter': true } });
    for (let i = 0; i < 3; i++) {
      a.v.regs.set(0, BigInt(ECHO.CALL_COUNT));
      a.vm.dispatch(Conduits.smccc, a.v);
    }
    b.v.regs.set(0, BigInt(ECHO.CALL_COUNT));
    b.vm.dispatch(Conduits.smccc, b.v);
    expect([a.v.regs.get(0), b.v.regs.get(0)]).toEqual([3n, 1n]);
  });

  it('routes range calls and the Xen conduit; unknown Xen ops get -ENOSYS', () => {
    const { vm, v } = setup();
    v.regs.set(0, BigInt(ECHO.CALL_RANGE_FIRST + 0x42));
    vm.dispatch(Conduits.smccc, v);
    expect(v.regs.get(0)).toBe(0x42n);
    v.regs.set(16, BigInt(ECHO.XEN_OP_ECHO));
    v.regs.set(0, 41n);
    vm.dispatch(Conduits.xen, v);
    expect(v.regs.get(0)).toBe(42n);
    v.regs.set(16, 0x99n);
    vm.dispatch(Conduits.xen, v);
    expect(v.regs.get(0)).toBe(BigInt.asUintN(64, -38n));
    v.regs.set(16, (1n << 32n) | BigInt(ECHO.XEN_OP_ECHO)); // Xen compares all of x16
    vm.dispatch(Conduits.xen, v);
    expect(v.regs.get(0)).toBe(BigInt.asUintN(64, -38n));
  });

  it('turns a bad guest address into the ABI error, writing nothing outside RAM', () => {
    const { vm, v, m } = setup();
    const before = m.ram.slice();
    for (const gpa of [0n, 0x3fff_fff8n, 0x4010_0000n - 4n, 0xffff_ffff_ffff_fff8n]) {
      v.regs.set(0, BigInt(ECHO.CALL_PEEK_POKE));
      v.regs.set(1, gpa);
      v.regs.set(2, 0x1234n);
      vm.dispatch(Conduits.smccc, v);
      expect(v.regs.get(0)).toBe(BigInt.asUintN(64, -3n));
    }
    expect(Buffer.compare(m.ram, before)).toBe(0);
    v.regs.set(0, BigInt(ECHO.CALL_PEEK_POKE));
    v.regs.set(1, 0x4000_0010n);
    v.regs.set(2, 0x1234n);
    vm.dispatch(Conduits.smccc, v);
    expect(v.regs.get(0)).toBe(0n);
    expect(m.memory.readU64(0x4000_0010n)).toBe(0x1234n);
  });
});
