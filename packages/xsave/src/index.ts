// @plugvisor/xsave: x86 XSAVE extended state that survives heterogeneous pools. Pure and
// host-independent: it never touches /dev/kvm; the x86 machine feeds it CPUID and buffers.

export * from './components.js';
export { XsaveError, type XsaveErrorCode } from './errors.js';
export { parseHostDump, standardSize, compactedSize, hostDumpFromCpuid, XSAVE_FEATURE, type CpuidEntry, type HostCapabilityDump, type HostCapabilities, type HostComponent } from './host.js';
export * from './fixtures.js';
export {
  decodeXsave,
  encodeXsave,
  checkBuffer,
  checkState,
  initState,
  cloneState,
  componentValue,
  hasComponent,
  type XsaveState,
  type XsaveComponents,
  type X87Registers,
  type SseRegisters,
  type AvxRegisters,
  type BndregsRegisters,
  type BndcsrRegisters,
  type OpmaskRegisters,
  type ZmmHi256Registers,
  type Hi16ZmmRegisters,
  type PkruRegisters,
  type XtileCfgRegisters,
  type XtileDataRegisters,
  type ApxRegisters,
} from './codec.js';
export { convertXsave, layoutDifferences, canConvert, type LayoutDifference } from './convert.js';
export {
  guestPolicyFromCpuid,
  guestXfeatures,
  guestPolicyProblems,
  assertGuestPolicy,
  xcr0Violations,
  kvmSetXcrsChecks,
  kvmSetXsaveChecks,
  assertNoViolations,
  trimForGet,
  withoutComponents,
  planXsaveSet,
  KVM_CHECK,
  type GuestXsavePolicy,
  type GuestXfeatures,
  type KvmCheckName,
  type KvmViolation,
  type KvmXcrs,
  type XsaveSetPlan,
} from './policy.js';
export { xsaveAbiOf, guestCpuid0d, checkXsaveRestore, assertXsaveRestore, xsaveAbiShapeProblems, type XsaveAbi, type XsaveAbiComponent } from './abi.js';
export { poolBaseline, formatBaseline, type PoolBaseline, type ExcludedComponent } from './baseline.js';
export { stateToJson, stateFromJson, type XsaveStateJson } from './portable.js';
