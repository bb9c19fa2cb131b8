// @plugvisor/core: the public plugin API, the guest-ABI model, the trap router, the machine
// interfaces backends implement, the snapshot stream and the compatibility checker.

export * from './errors.js';
export * from './abi/surface.js';
export { AbiCatalog, type RegisterEntry, type Owned } from './abi/catalog.js';
export { VmAbi } from './abi/vm-abi.js';
export { callExposed } from './abi/exposure.js';
export type { AbiBuild, AbiSelections, BehaviourOracle } from './abi/behaviour.js';
export {
  recordOf,
  checkRecord,
  checkRecordDetailed,
  abiFromRecord,
  servicesInUse,
  callId,
  exposedCalls,
  continuationText,
  type ContinuationUse,
  type AbiRecord,
  type AbiProblem,
  type FeatureUse,
  type ServiceUse,
  type VersionUse,
} from './abi/record.js';
export {
  buildManifest,
  serviceManifest,
  serviceAbiFile,
  canonicalJson,
  sha256,
  type BuildManifest,
  type ServiceManifest,
} from './abi/manifest.js';
export { defineService, type ServicePlugin, type ServiceDefinition, type ServiceBinding, type ServiceStateHandler, type CallHandler, type StateValue } from './plugin/service.js';
export { createHooks, pluginHooks, type HypervisorHooks } from './plugin/hooks.js';
export { Hypervisor, type VmOverrides } from './hypervisor.js';
export { Vm, type SavedServiceState } from './vm.js';
export { Conduits, smcccReturn, type Conduit } from './router/conduits.js';
export { DispatchTable, isExposed, hypercallHeartbeat, callInFlight } from './router/router.js';
export { RegisterFile } from './machine/registers.js';
export { FlatGuestMemory, type GuestMemory, type MemoryRegion } from './machine/memory.js';
export type { Arch, Machine, SystemEvent, SystemEventKind, VcpuContext, VcpuPowerState } from './machine/machine.js';
export { saveSnapshot, planRestore, finishRestore, type RestorableMachine, readAbiRecord, validateAbiRecord, PAGE_SIZE, type MachineImage, type RestorePlan, type RestoreOptions, type SavedMemory } from './snapshot/snapshot.js';
export { StreamWriter, readStream, verifyStream, encodeJson, decodeJson, RecordType, OPTIONAL as OPTIONAL_RECORD, MIN_SNAPSHOT_KEY_BYTES, type SnapshotKey, type StreamRecord } from './snapshot/stream.js';
export { checkBuilds, formatCompatReport, type CompatReport, type CompatRow } from './compat/check.js';
export { classifyAbiChange, compareRecordedBehaviour, bumpAtLeast, maxBump, type AbiChange, type AbiChangeEntry, type AbiChangeKind, type Bump } from './abi/diff.js';
export { releaseLine, releaseStep, rolloutVerdicts, type RolloutVerdicts } from './abi/versioning.js';
export { classifyMachineAbiChange, flattenMachineFacts, showFact, EVERY_MACHINE_VM, type MachineAbi, type MachineFact, type ClassifyMachineOptions } from './abi/machine.js';
export { packageVersion } from './util/package-version.js';
export { GuestFault, MachineError, VcpuStateError, type RunResult, type RunOptions, type GuestFaultDetail } from './machine/run.js';
export * from './abi/signature.js';
export { guestEntropy } from './machine/machine.js';
export { ProbeMachine, PROBE_RAM_BASE, PROBE_RAM_SIZE } from './behaviour/probe-machine.js';
export { probesFor, parseProbe, argValues, idRegister, MAX_PROBES_PER_CALL, type Probe } from './behaviour/probes.js';
export {
  ProbeRunner,
  behaviourConfigs,
  serviceBehaviour,
  serviceBehaviourCached,
  vmBehaviour,
  behaviourOracle,
  transcriptDigest,
  replayTranscript,
  replayServiceBehaviour,
  parseConfigLabel,
  formatDifference,
  resultsOf,
  type BehaviourDifference,
  type CallTranscript,
  type Transcript,
  type ProbeConfig,
  type ServiceBehaviour,
  type VmBehaviour,
} from './behaviour/transcript.js';
export { NOT_SUPPORTED_CLASS, type RegisterTransfer } from './router/router.js';
export { continueCall, type ContinuationRegisters } from './router/continuation.js';
export { MachineRuntime, RuntimeMachine, validateVcpuRunState, YIELD, HALT, type VcpuExit, type VcpuBackend, type Slice, type ResetListener, type VcpuRunState } from './runtime/runtime.js';
export { StateError, StateReader, hex64, type Persist } from './runtime/persist.js';
export { defineServiceFactory, optionsSchemaOf, checkServiceOptions, describeOptionSpec, type OptionSpec, type OptionsSchema, type OptionProblem, type ServiceFactory } from './service-options.js';
export { ImageError, isElf, elfMachine, loadElfImage, loadRawImage, EM_X86_64, EM_AARCH64, type LoadedImage } from './machine/image.js';
export { capabilityOf, guestPhysicalRange, FlatGuestPages, type CapabilityName, type MachineCapabilities, type CounterClock, type InterruptConfig, type EntropySource, type InterruptPending, type GuestPages, type CpuIdentity, type GuestVirtual } from './machine/capabilities.js';
export type { ConduitDefinition } from './router/conduits.js';
export { backendFor, type MachineBackend, type MachineCreateOptions, type RunnableMachine } from './machine/backend.js';
export { BuildConduits, type BuildConduit } from './router/build-conduits.js';
export type { CatalogConduits } from './abi/catalog.js';
export { type RuntimeRouter, type VcpuStateCodec } from './runtime/runtime.js';
export { hexBytes } from './runtime/persist.js';
export type { HostReport } from './machine/backend.js';
