import type { AbiCatalog } from './catalog.js';
import type { CallDecl } from './surface.js';

/**
 * The exposure rule, written once: the router (which calls a VM can reach), ABI records
 * (which calls each feature gives a VM) and behaviour probes (which calls a configuration
 * answers) all ask this function.
 *
 * A call is exposed when its version bounds hold for the VM's selections — `since`: the
 * selector's value is at least `minimum`; `until`: at most `maximum`; a selector the VM does
 * not have (`versionValue` → undefined) fails any bound on it — and, when `isEnabled` is
 * given, its gating feature is on. A sub-op is exposed only if its parent is too: a guest
 * reaches it through the parent's function id.
 */
export function callExposed(
  call: CallDecl,
  catalog: AbiCatalog,
  versionValue: (selector: string) => number | undefined,
  isEnabled?: (feature: string) => boolean,
): boolean {
  if (isEnabled && !isEnabled(call.feature)) return false;
  if (call.since) {
    const v = versionValue(call.since.version);
    if (v === undefined || v < catalog.versionValue(call.since.version, call.since.minimum)!) return false;
  }
  if (call.until) {
    const v = versionValue(call.until.version);
    if (v === undefined || v > catalog.versionValue(call.until.version, call.until.maximum)!) return false;
  }
  if (call.subOf) {
    const parent = catalog.calls.get(call.subOf.call)?.decl;
    if (!parent || !callExposed(parent, catalog, versionValue, isEnabled)) return false;
  }
  return true;
}
