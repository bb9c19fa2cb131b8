import { AbiError } from '../errors.js';
import type { AbiCatalog, RegisterEntry } from './catalog.js';
import { hex } from './surface.js';

/** KVM_REG_ARM64 and KVM_REG_SIZE_MASK (Linux include/uapi/linux/kvm.h). */
const KVM_REG_ARM64 = 0x6000_0000_0000_0000n;
const KVM_REG_SIZE_MASK = 0x00f0_0000_0000_0000n;

/**
 * One VM's guest ABI: which features are on and which version each selector has. Created
 * from the build's defaults plus operator overrides (or from a snapshot's ABI record);
 * changeable until the first vCPU runs; frozen after that.
 *
 * The VMM-facing interface mirrors Linux KVM's ONE_REG for firmware registers: same ids,
 * bit meanings and errno values (EINVAL an id that is not an arm64 register, ENOENT unknown
 * register, EINVAL unsupported bits or values,
 * checked before EBUSY, which is a change after the first run; writing the current value
 * after the run succeeds, so a restore path can replay registers blindly).
 *
 * One deliberate difference: KVM lets KVM_REG_ARM_PSCI_VERSION change after the VM ran;
 * here every selector freezes like the bitmaps, because a guest's view must not change
 * under it.
 */
export class VmAbi {
  private readonly featureOn = new Map<string, boolean>();
  private readonly versionName = new Map<string, string>();
  private frozen = false;

  constructor(readonly catalog: AbiCatalog) {}

  /** Defaults: legacy-opt-out features on, opt-in off, each selector at its default. */
  static defaults(catalog: AbiCatalog): VmAbi {
    const abi = new VmAbi(catalog);
    for (const [name, { decl }] of catalog.features) abi.featureOn.set(name, decl.default === 'legacy-opt-out');
    for (const [name, { decl }] of catalog.versions) abi.versionName.set(name, decl.default);
    return abi;
  }

  /**
   * From an authoritative record: a feature the record does not name is off; a selector the
   * record does not name takes its oldest version (so the service stays as inert as it can).
   */
  static fromSelections(
    catalog: AbiCatalog,
    features: Readonly<Record<string, boolean>>,
    versions: Readonly<Record<string, string>>,
  ): VmAbi {
    const abi = new VmAbi(catalog);
    for (const name of catalog.features.keys()) abi.featureOn.set(name, features[name] === true);
    for (const [name, { decl }] of catalog.versions) {
      const chosen = versions[name];
      abi.versionName.set(name, chosen !== undefined && decl.values.some((v) => v.name === chosen) ? chosen : decl.values[0]!.name);
    }
    return abi;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Called by the VM when its first vCPU is about to run. */
  freeze(): void {
    this.frozen = true;
  }

  // ---- features -------------------------------------------------------------------------

  isEnabled(feature: string): boolean {
    return this.featureOn.get(feature) === true;
  }

  /** Operator override of one feature; ENOENT unknown, EBUSY a change after first run. */
  setFeature(feature: string, on: boolean): void {
    if (!this.catalog.features.has(feature)) {
      throw new AbiError('ENOENT', `unknown feature '${feature}' (known: ${[...this.catalog.features.keys()].join(', ') || 'none'})`);
    }
    if (this.featureOn.get(feature) === on) return;
    this.assertMutable(`feature '${feature}'`);
    this.featureOn.set(feature, on);
  }

  features(): Record<string, boolean> {
    return Object.fromEntries(this.featureOn);
  }

  // ---- versions -------------------------------------------------------------------------

  version(selector: string): string {
    const v = this.versionName.get(selector);
    if (v === undefined) throw new AbiError('ENOENT', `unknown version selector '${selector}'`);
    return v;
  }

  /** The selected version's numeric value (hot path: one map lookup and a scan of a few). */
  versionValue(selector: string): number {
    return this.catalog.versionValue(selector, this.version(selector))!;
  }

  setVersion(selector: string, name: string): void {
    const owned = this.catalog.versions.get(selector);
    if (!owned) throw new AbiError('ENOENT', `unknown version selector '${selector}'`);
    if (!owned.decl.values.some((v) => v.name === name)) {
      throw new AbiError(
        'EINVAL',
        `${selector} version '${name}' is not offered by ${owned.service.name}@${owned.service.version} (offers ${owned.decl.values.map((v) => v.name).join(', ')})`,
      );
    }
    if (this.versionName.get(selector) === name) return;
    this.assertMutable(`${selector} version`);
    this.versionName.set(selector, name);
  }

  versions(): Record<string, string> {
    return Object.fromEntries(this.versionName);
  }

  // ---- ONE_REG ------------------------------------------------------------------------------

  /**
   * KVM_GET_REG_LIST's firmware block: every firmware register of the build, ascending id —
   * except a bitmap declared `listed: 'when-set'` while it reads 0 (surface.ts FeatureRegisterBit).
   */
  getRegList(): bigint[] {
    return this.listedRegisters().map((r) => r.id);
  }

  getOneReg(id: bigint): bigint {
    return this.read(this.entry(id));
  }

  setOneReg(id: bigint, value: bigint): void {
    const entry = this.entry(id);
    value = BigInt.asUintN(64, value);
    switch (entry.kind) {
      case 'bitmap': {
        if ((value & ~entry.mask) !== 0n) {
          throw new AbiError(
            'EINVAL',
            `${entry.name} (${hex(id)}): bits ${hex(value & ~entry.mask)} are not supported by this build (supported mask ${hex(entry.mask)})`,
          );
        }
        if (value === this.read(entry)) return;
        this.assertMutable(entry.name);
        for (const [bit, feature] of entry.bits) this.featureOn.set(feature, ((value >> BigInt(bit)) & 1n) === 1n);
        return;
      }
      case 'version': {
        const owned = this.catalog.versions.get(entry.version)!;
        const chosen = owned.decl.values.find((v) => BigInt(v.value) === value);
        if (!chosen) {
          throw new AbiError(
            'EINVAL',
            `${entry.name} (${hex(id)}): ${hex(value)} is not a version ${owned.service.name}@${owned.service.version} offers (${owned.decl.values.map((v) => `${v.name}=${hex(v.value)}`).join(', ')})`,
          );
        }
        if (chosen.name === this.versionName.get(entry.version)) return;
        this.assertMutable(entry.name);
        this.versionName.set(entry.version, chosen.name);
        return;
      }
      case 'constant': {
        if (!entry.decl.accepts.includes(value)) {
          throw new AbiError(
            'EINVAL',
            `${entry.name} (${hex(id)}): ${hex(value)} cannot be provided by this build (it provides ${hex(entry.decl.value)}; accepts ${entry.decl.accepts.map((v) => hex(v)).join(', ')})`,
          );
        }
        return; // accepted, nothing stored: the value is a property of the build
      }
    }
  }

  /** Every firmware register getRegList names, with its current value, ascending id (what a VM record keeps). */
  registerValues(): Array<[bigint, bigint]> {
    return this.listedRegisters().map((r) => [r.id, this.read(r)]);
  }

  /** The registers getRegList names: a `when-set` bitmap only while it reads non-zero. */
  private listedRegisters(): RegisterEntry[] {
    return this.catalog.registers.filter((r) => !(r.kind === 'bitmap' && r.listedWhenSet && this.read(r) === 0n));
  }

  /**
   * The register `id` names, checked as KVM_GET/SET_ONE_REG does (Linux arch/arm64/kvm/guest.c,
   * kvm_arm_get_reg / kvm_arm_set_reg): first the upper 32 bits without the size field must be
   * KVM_REG_ARM64's — "we currently use nothing arch-specific in upper 32 bits" — else EINVAL;
   * only then is the id looked up (arch/arm64/kvm/hypercalls.c, kvm_arm_get_fw_reg: ENOENT).
   */
  private entry(id: bigint): RegisterEntry {
    const u = BigInt.asUintN(64, id);
    if ((u & ~KVM_REG_SIZE_MASK) >> 32n !== KVM_REG_ARM64 >> 32n) {
      throw new AbiError('EINVAL', `${hex(u)} is not an arm64 register id (bits 63:32 other than the size field must be ${hex(KVM_REG_ARM64 >> 32n)}, KVM_REG_ARM64)`);
    }
    const entry = this.catalog.registerById.get(u);
    if (!entry) throw new AbiError('ENOENT', `no firmware register ${hex(BigInt.asUintN(64, id))} in this build`);
    return entry;
  }

  private read(entry: RegisterEntry): bigint {
    switch (entry.kind) {
      case 'bitmap': {
        let v = 0n;
        for (const [bit, feature] of entry.bits) if (this.featureOn.get(feature)) v |= 1n << BigInt(bit);
        return v;
      }
      case 'version':
        return BigInt(this.versionValue(entry.version));
      case 'constant':
        return entry.decl.value;
    }
  }

  private assertMutable(what: string): void {
    if (this.frozen) throw new AbiError('EBUSY', `cannot change ${what}: the VM has already run (its ABI is frozen)`);
  }
}
