import type { CallSignature } from '../abi/signature.js';
import type { Hypervisor } from '../hypervisor.js';
import type { CallHandler, ServicePlugin } from '../plugin/service.js';

/**
 * Variants of a real service for testing that a gate catches a mistake, without editing the
 * service: the same name, version and declarations, one thing changed.
 */

/**
 * The plugin with one call's handler wrapped: a tapable `register` interceptor on the call's hook
 * replaces the handler the service taps (so the build still sees exactly one tap, the service's).
 */
export function withHandler<S>(real: ServicePlugin<S>, call: string, wrap: (handler: CallHandler<S>) => CallHandler<S>): ServicePlugin<S> {
  return Object.freeze({
    ...real,
    apply(hv: Hypervisor) {
      real.apply(hv);
      hv.hooks.call.for(call).intercept({ register: (tap) => ({ ...tap, fn: wrap(tap.fn as CallHandler<S>) }) });
    },
  });
}

/** The plugin with one call's signature rewritten (the handlers unchanged). */
export function withSignature<S>(real: ServicePlugin<S>, call: string, edit: (signature: CallSignature) => CallSignature): ServicePlugin<S> {
  const calls = real.surface.calls.map((c) => (c.name === call ? { ...c, signature: edit(c.signature ?? {}) } : c));
  return Object.freeze({ ...real, surface: { ...real.surface, calls } });
}
