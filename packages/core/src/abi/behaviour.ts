import type { AbiCatalog } from './catalog.js';
import type { ServiceDecl } from './surface.js';

/**
 * Behaviour transcripts as the ABI layer keeps them (records, manifests, release diffs), and
 * what the ABI layer asks of a build to make or replay them. The probes themselves run in
 * behaviour/transcript.ts, on a composed build; abi/ sees them only through BehaviourOracle,
 * so it imports nothing from the plugin API or the hypervisor.
 */

/** label → output, for one call. */
export type CallTranscript = { readonly [probe: string]: string };
/** call name → its probes' outputs. */
export type Transcript = { readonly [call: string]: CallTranscript };

/** A service's behaviour as abi.json keeps it: the default VM's transcript in full, others as differences. */
export type ServiceBehaviour = { readonly [config: string]: Transcript };

/**
 * What one VM sees, per feature it has on: the transcript of each call the feature gives it, and
 * (in records) each call's wire identity, `ids`: call name → callId (`smccc:0x84000000`). A guest
 * knows calls by id, not by name, so a restore finds a call renamed in place by its id. Records
 * written before `ids` existed lack it.
 */
export type VmBehaviour = {
  readonly [feature: string]: { readonly digest: string; readonly calls: Transcript; readonly ids?: { readonly [call: string]: string } };
};

/** Feature and version selections (a VM's, or a configuration's overrides). */
export interface AbiSelections {
  /** Feature name → on/off. */
  readonly features?: Readonly<Record<string, boolean>>;
  /** Version selector → version name (e.g. `{ psci: '1.1' }`). */
  readonly versions?: Readonly<Record<string, string>>;
}

/** A configuration probes run under: the VM's features and versions (a label for people). */
export interface ProbeConfig {
  readonly label: string;
  readonly overrides: AbiSelections;
}

/** One probe whose output differs between a recorded transcript and a build. */
export interface BehaviourDifference {
  readonly config?: string;
  readonly feature?: string;
  readonly call: string;
  readonly probe: string;
  readonly was: string;
  readonly now: string;
}

export const formatDifference = (d: BehaviourDifference): string =>
  `${d.call} probe [${d.probe}]${d.config && d.config !== 'default' ? ` (${d.config})` : ''}: ${d.was} → ${d.now}`;

/** What the ABI layer asks of a composed build about behaviour (implemented in behaviour/transcript.ts). */
export interface BehaviourOracle {
  /** A service's behaviour in the build (the default VM in full, other configurations as differences). */
  serviceBehaviour(service: ServiceDecl): ServiceBehaviour;
  /** What a VM with these selections sees, per feature it has on. */
  vmBehaviour(features: Readonly<Record<string, boolean>>, versions: Readonly<Record<string, string>>): VmBehaviour;
  /** Replays recorded probes under a configuration: the first differing probe of each call. */
  replayTranscript(config: ProbeConfig, recorded: Transcript): BehaviourDifference[];
  /** Replays a service's recorded behaviour (a released abi.json) on the build. */
  replayServiceBehaviour(recorded: ServiceBehaviour): BehaviourDifference[];
}

/**
 * A composed build as the ABI layer sees it: its name, services, catalog and behaviour oracle.
 * `Hypervisor` is one; abi/ takes this shape so it does not depend on the hypervisor module.
 */
export interface AbiBuild {
  readonly name: string;
  readonly services: readonly ServiceDecl[];
  readonly catalog: AbiCatalog;
  readonly behaviour: BehaviourOracle;
}
