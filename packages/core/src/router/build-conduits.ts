import { ComposeError, PlugvisorError } from '../errors.js';
import { Conduits, sameConvention, type ConduitDefinition } from './conduits.js';

/** One conduit of a build and its dense index within that build. */
export interface BuildConduit {
  readonly conduit: ConduitDefinition;
  readonly index: number;
}

/**
 * The conduits of one build: the core's smccc and xen, then those the machine passed at
 * composition (`Hypervisor.compose(services, { conduits })`, its backend descriptor's
 * `conduits`), each with a dense index within this build. The conduit objects are not touched;
 * two builds in one process share nothing here. Every lookup (router, catalog, behaviour
 * transcripts, conformance kit, CLI) goes through a build's set.
 */
export class BuildConduits {
  private readonly byName = new Map<string, BuildConduit>();
  /** Indexed by the build's conduit index. */
  readonly list: readonly ConduitDefinition[];

  /** Throws ComposeError if two conduits of one name are different calling conventions. */
  constructor(extra: readonly ConduitDefinition[] = []) {
    const list: ConduitDefinition[] = [];
    const problems: string[] = [];
    for (const conduit of [...Conduits.core, ...extra]) {
      const known = this.byName.get(conduit.name);
      if (known) {
        if (known.conduit !== conduit && !sameConvention(known.conduit, conduit))
          problems.push(`conduit '${conduit.name}' is given twice as different calling conventions (${known.conduit.description}; ${conduit.description})`);
        continue;
      }
      this.byName.set(conduit.name, Object.freeze({ conduit, index: list.length }));
      list.push(conduit);
    }
    if (problems.length) throw new ComposeError(`cannot compose the build:\n  - ${problems.join('\n  - ')}`, problems);
    this.list = Object.freeze(list);
  }

  /** The build's conduit of this name, or undefined if the build does not have it. */
  get(name: string): ConduitDefinition | undefined {
    return this.byName.get(name)?.conduit;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /**
   * The build's index of a conduit, given as an object (a backend's trap path holds one): it
   * is resolved by name, and must be the build's conduit or the same calling convention.
   */
  indexOf(conduit: ConduitDefinition): number {
    const entry = this.byName.get(conduit.name);
    if (entry === undefined) throw new PlugvisorError('NO_CONDUIT', `conduit '${conduit.name}' is not in this build (it has ${this.names().join(', ')})`);
    if (entry.conduit !== conduit && !sameConvention(entry.conduit, conduit))
      throw new PlugvisorError('NO_CONDUIT', `conduit '${conduit.name}' is not this build's '${conduit.name}' (a different calling convention)`);
    return entry.index;
  }
}
