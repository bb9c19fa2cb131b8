import { cpSync, mkdirSync, mkdtempSync, realpathSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SyncBailHook } from 'tapable';
import { describe, expect, it } from 'vitest';
import { ComposeError, isPlugvisorError, isServiceFailure, isUsageError, PlugvisorError, ServiceFailure, SnapshotError, UsageError } from '../errors.js';
import { Hypervisor } from '../hypervisor.js';
import { createEchoService } from '../testing/echo-service.js';
import { pluginHooks } from './hooks.js';

type CoreModule = typeof import('../index.js') & { testing: typeof import('../testing/index.js') };

/**
 * A second copy of @plugvisor/core, as a package installing its own would have it: the built
 * dist and package.json copied into a temporary node_modules (tapable linked beside it), loaded
 * by Node on its own — another module instance, other classes, other module-level state.
 */
async function secondCore(): Promise<CoreModule> {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'plugvisor-core-copy-'));
  const copy = join(dir, 'node_modules', '@plugvisor', 'core');
  mkdirSync(copy, { recursive: true });
  cpSync(join(root, 'package.json'), join(copy, 'package.json'));
  cpSync(join(root, 'dist'), join(copy, 'dist'), { recursive: true });
  const tapable = dirname(realpathSync(createRequire(join(root, 'package.json')).resolve('tapable/package.json')));
  symlinkSync(tapable, join(dir, 'node_modules', 'tapable'), 'dir');
  const core = (await import(pathToFileURL(join(copy, 'dist', 'index.js')).href)) as CoreModule;
  const testing = (await import(pathToFileURL(join(copy, 'dist', 'testing', 'index.js')).href)) as CoreModule['testing'];
  return { ...core, testing };
}

const makeHooks = () => ({ answer: new SyncBailHook<[number], number | undefined>(['id']) });

describe('pluginHooks: one registry per build', () => {
  it('gives every caller of one key the same frozen hooks, and each build its own', () => {
    const hv = Hypervisor.compose([createEchoService()]);
    const a = pluginHooks(hv, '@acme/svc-a:hooks', makeHooks);
    expect(pluginHooks(hv, '@acme/svc-a:hooks', makeHooks)).toBe(a);
    expect(hv.pluginHooks('@acme/svc-a:hooks', makeHooks)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(pluginHooks(hv, '@acme/svc-a:other', makeHooks)).not.toBe(a);
    const other = Hypervisor.compose([createEchoService()]);
    expect(pluginHooks(other, '@acme/svc-a:hooks', makeHooks)).not.toBe(a);
  });

  it('hands a second copy of the owner (another create function) the first copy’s hooks', () => {
    const hv = Hypervisor.compose([createEchoService()]);
    const first = pluginHooks(hv, '@acme/svc-a:hooks', makeHooks);
    const copyOfCreate = () => ({ answer: new SyncBailHook<[number], number | undefined>(['id']) });
    const second = pluginHooks(hv, '@acme/svc-a:hooks', copyOfCreate);
    expect(second).toBe(first);
    second.answer.tap('tapper', (id) => id + 1);
    expect(first.answer.call(41)).toBe(42);
  });

  it('refuses a copy whose hooks have other names, and a key that names no package', () => {
    const hv = Hypervisor.compose([createEchoService()]);
    pluginHooks(hv, '@acme/svc-a:hooks', makeHooks);
    expect(() => pluginHooks(hv, '@acme/svc-a:hooks', () => ({ renamed: new SyncBailHook<[number], number | undefined>(['id']) }))).toThrow(ComposeError);
    expect(() => pluginHooks(hv, '@acme/svc-a:hooks', () => ({ renamed: 1 }))).toThrow(/two copies of the package owning hooks '@acme\/svc-a:hooks' disagree about them \(answer vs renamed\)/);
    expect(() => pluginHooks(hv, 'hooks', makeHooks)).toThrow(/is not '<package name>:<registry name>'/);
  });

  it('is the same registry for a second copy of @plugvisor/core', async () => {
    const core2 = await secondCore();
    expect(core2.pluginHooks).not.toBe(pluginHooks); // really another module instance
    const hv = Hypervisor.compose([createEchoService()]);
    const mine = pluginHooks(hv, '@acme/svc-a:hooks', makeHooks);
    expect(core2.pluginHooks(hv as never, '@acme/svc-a:hooks', makeHooks)).toBe(mine);
    const hv2 = core2.Hypervisor.compose([core2.testing.createEchoService()]);
    const theirs = core2.pluginHooks(hv2, '@acme/svc-a:hooks', makeHooks);
    expect(pluginHooks(hv2 as never, '@acme/svc-a:hooks', makeHooks)).toBe(theirs);
  });
});

describe('errors recognised across copies of @plugvisor/core', () => {
  it('instanceof and the is* helpers know an error made by another copy, by class', async () => {
    const core2 = await secondCore();
    const usage = new core2.UsageError('bad flag', 'BAD_BUILD_FILE');
    expect(Object.getPrototypeOf(usage)).not.toBe(UsageError.prototype); // another copy's class
    expect(usage instanceof UsageError).toBe(true);
    expect(usage instanceof PlugvisorError).toBe(true);
    expect(usage instanceof Error).toBe(true);
    expect(usage instanceof ServiceFailure).toBe(false);
    expect(usage instanceof SnapshotError).toBe(false);
    expect(isUsageError(usage)).toBe(true);
    expect(isPlugvisorError(usage)).toBe(true);
    expect(isServiceFailure(usage)).toBe(false);

    const failure = new core2.ServiceFailure({ service: '@acme/svc-a', version: '1.0.0', phase: 'vmCreate' }, new Error('boom'));
    expect(failure instanceof ServiceFailure).toBe(true);
    expect(isServiceFailure(failure)).toBe(true);
    expect(isUsageError(failure)).toBe(false);
    // and the other way round: the other copy knows this copy's errors
    expect(new UsageError('x') instanceof core2.UsageError).toBe(true);
    expect(core2.isPlugvisorError(new ComposeError('x'))).toBe(true);
    expect(new ComposeError('x') instanceof core2.SnapshotError).toBe(false);
  });

  it('knows no plain Error, no look-alike without the brand, and no non-object', () => {
    const lookAlike = Object.assign(new Error('x'), { name: 'UsageError', code: 'BAD_ARGUMENT' });
    expect(lookAlike instanceof UsageError).toBe(false);
    expect(isPlugvisorError(new Error('x'))).toBe(false);
    expect(isPlugvisorError('UsageError')).toBe(false);
    expect(isPlugvisorError(undefined)).toBe(false);
    // a subclass's instances are its parents' too
    class WidgetError extends UsageError {}
    const w = new WidgetError('w');
    expect(w instanceof UsageError && w instanceof WidgetError && w instanceof PlugvisorError).toBe(true);
    expect(new UsageError('u') instanceof WidgetError).toBe(false);
  });
});
