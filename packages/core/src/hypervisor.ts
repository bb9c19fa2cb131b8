import type { BehaviourOracle } from './abi/behaviour.js';
import { AbiCatalog } from './abi/catalog.js';
import { buildManifest, type BuildManifest } from './abi/manifest.js';
import { VmAbi } from './abi/vm-abi.js';
import { AbiError, ComposeError, describeThrown, PlugvisorError } from './errors.js';
import { behaviourOracle } from './behaviour/transcript.js';
import { createHooks, pluginHooks, type HypervisorHooks } from './plugin/hooks.js';
import type { ServicePlugin } from './plugin/service.js';
import { Vm } from './vm.js';
import { BuildConduits } from './router/build-conduits.js';
import type { ConduitDefinition } from './router/conduits.js';

/** Operator overrides applied on top of a build's defaults when a VM is created. */
export interface VmOverrides {
  /** Feature name → on/off. */
  readonly features?: Readonly<Record<string, boolean>>;
  /** Version selector → version name (e.g. `{ psci: '1.1' }`). */
  readonly versions?: Readonly<Record<string, string>>;
  /** Firmware register writes (KVM ONE_REG ids), applied last, in order. */
  readonly registers?: ReadonlyArray<readonly [bigint, bigint]>;
}

/**
 * A composed build: a set of services, validated together, with its frozen hooks. Nothing in
 * here knows any service by name. `Hypervisor.compose` is the only way to make one.
 */
export class Hypervisor {
  readonly hooks: HypervisorHooks = createHooks();
  readonly catalog: AbiCatalog<ServicePlugin<any>>;
  readonly services: readonly ServicePlugin<any>[];
  /** Behaviour transcripts of this build, as the ABI layer asks for them (records, manifests, diffs). */
  readonly behaviour: BehaviourOracle = behaviourOracle(this);

  private constructor(
    readonly name: string,
    services: readonly ServicePlugin<any>[],
    /**
     * The build's conduits: the core's smccc and xen, and the machine's (compose's `conduits`),
     * each with its index within this build. Every conduit lookup goes through here.
     */
    readonly conduits: BuildConduits,
  ) {
    // throws ComposeError naming the packages, and each call on a conduit the build lacks
    this.catalog = new AbiCatalog(services, { conduit: (name) => conduits.get(name) });
    this.services = Object.freeze([...this.catalog.services.values()]);
  }

  /**
   * `conduits`: the calling conventions of the machine the build runs on (its backend
   * descriptor's `conduits`), beyond the core's smccc and xen. They belong to this build only:
   * nothing is registered in the process, so two builds never see each other's conduits, and
   * a service calling on a conduit the build was not given fails composition (ComposeError).
   */
  static compose(services: readonly ServicePlugin<any>[], options: { name?: string; conduits?: readonly ConduitDefinition[] } = {}): Hypervisor {
    let hv: Hypervisor;
    try {
      hv = new Hypervisor(options.name ?? 'custom', services, new BuildConduits(options.conduits));
    } catch (e) {
      if (e instanceof PlugvisorError) throw e;
      // A plugin whose declarations are not the shape ServiceDecl says (a service bug).
      throw new ComposeError(`cannot compose the build: a service's declarations are malformed: ${describeThrown(e)}`);
    }
    for (const s of hv.services) {
      try {
        s.apply(hv);
      } catch (e) {
        if (e instanceof ComposeError) throw e;
        throw new ComposeError(`cannot compose the build: ${s.name}@${s.version}: apply() failed: ${describeThrown(e)}`);
      }
    }
    hv.checkHandlers();
    return hv;
  }

  /** Every declared call has a handler, tapped by the service that declared it and no other. */
  private checkHandlers(): void {
    const problems: string[] = [];
    for (const [name, { service }] of this.catalog.calls) {
      const taps = this.hooks.call.get(name)?.taps ?? [];
      if (taps.length === 0) problems.push(`${service.name} declares call ${name} but taps no handler for it`);
      for (const t of taps) {
        if (t.name !== service.name) problems.push(`${t.name} taps call ${name}, which belongs to ${service.name}`);
      }
      if (taps.length > 1 && taps.every((t) => t.name === service.name))
        problems.push(`${service.name} taps call ${name} ${taps.length} times`);
    }
    // tapable keeps a HookMap's hooks in _map; a key there means someone called .for(key).
    for (const key of (this.hooks.call as unknown as { _map: Map<string, unknown> })._map.keys()) {
      if (!this.catalog.calls.has(key)) {
        const who = this.hooks.call.get(key)!.taps.map((t) => t.name).join(', ');
        problems.push(`${who} taps call ${key}, which no service in the build declares`);
      }
    }
    if (problems.length) throw new ComposeError(`cannot compose the build:\n  - ${problems.join('\n  - ')}`, problems);
  }

  private built: BuildManifest | undefined;

  /** The build's manifest (surfaces and behaviour transcripts), computed once. */
  manifest(): BuildManifest {
    return (this.built ??= buildManifest(this));
  }

  /** A new VM: the build's defaults, then the operator's overrides (AbiError on a bad one). */
  createVm(overrides: VmOverrides = {}): Vm {
    const abi = VmAbi.defaults(this.catalog);
    for (const [name, on] of Object.entries(overrides.features ?? {})) abi.setFeature(name, on);
    for (const [name, version] of Object.entries(overrides.versions ?? {})) abi.setVersion(name, version);
    for (const [id, value] of overrides.registers ?? []) abi.setOneReg(id, value);
    const vm = new Vm(this, abi);
    vm.initialiseServices();
    return vm;
  }

  /**
   * Hooks a plugin owns for this build, keyed `'<package name>:<registry name>'`: the first
   * caller's `create` makes them, every copy of the owning package gets the same frozen object
   * (`pluginHooks` in `plugin/hooks.ts`, which services call so a build made by an older core
   * works too).
   */
  pluginHooks<T extends object>(key: string, create: () => T): T {
    return pluginHooks(this, key, create);
  }

  /** Parses `name=on|off` the way the CLI takes `--feature`. */
  static parseFeatureFlag(flag: string): [string, boolean] {
    const m = /^([\w.-]+)=(on|off|true|false|1|0)$/.exec(flag);
    if (!m) throw new AbiError('EINVAL', `--feature takes NAME=on|off, got '${flag}'`);
    return [m[1]!, m[2] === 'on' || m[2] === 'true' || m[2] === '1'];
  }
}
