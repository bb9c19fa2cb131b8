import type { ServiceDecl } from '../abi/surface.js';
import type { VcpuContext } from '../machine/machine.js';
import type { Hypervisor } from '../hypervisor.js';
import type { Vm } from '../vm.js';

/** JSON-safe values; bigints are allowed and encoded losslessly by the snapshot stream. */
export type StateValue =
  | null
  | boolean
  | number
  | string
  | bigint
  | readonly StateValue[]
  | { readonly [key: string]: StateValue };

/**
 * How a service keeps per-VM state (rust-vmm's state()/fromState()): `create` for a new VM,
 * `save` to a plain value for the snapshot stream, `load` from a value written by schema
 * version `schema` (between the surface's `minReadable` and `version`). `load` validates
 * everything and throws a PlugvisorError on anything it cannot accept: restore then refuses
 * the whole snapshot before it changes anything.
 */
export interface ServiceStateHandler<S> {
  create(vm: Vm): S;
  save(state: S, vm: Vm): StateValue;
  load(data: StateValue, schema: number, vm: Vm): S;
}

/** What a handler gets besides the vCPU: its VM and its own per-VM state. */
export interface ServiceBinding<S = unknown> {
  readonly vm: Vm;
  readonly service: ServicePlugin<S>;
  state: S;
}

export type CallHandler<S = unknown> = (vcpu: VcpuContext, binding: ServiceBinding<S>) => void;

/**
 * A service: plain data (name, version, surface) plus `apply(hv)`, which taps the build's
 * frozen `hv.hooks`. Core never names a service; a build is just a list of these.
 */
export interface ServicePlugin<S = unknown> extends ServiceDecl {
  readonly state?: ServiceStateHandler<S>;
  apply(hv: Hypervisor): void;
}

export interface ServiceDefinition<S> extends Omit<ServicePlugin<S>, 'apply'> {
  /** One handler per declared call name. */
  readonly handlers: { readonly [callName: string]: CallHandler<S> };
  /** Extra taps (lifecycle hooks, other services' hooks). */
  readonly apply?: (hv: Hypervisor, self: ServicePlugin<S>) => void;
}

/**
 * Convenience for the common case: declares the service and taps one handler per call.
 * The result is an ordinary ServicePlugin; nothing here is special to the core.
 */
export function defineService<S = undefined>(def: ServiceDefinition<S>): ServicePlugin<S> {
  const { handlers, apply: extra, ...data } = def;
  const plugin: ServicePlugin<S> = {
    ...data,
    apply(hv) {
      for (const [call, handler] of Object.entries(handlers)) {
        hv.hooks.call.for(call).tap(plugin.name, handler as CallHandler);
      }
      extra?.(hv, plugin);
    },
  };
  return Object.freeze(plugin);
}
