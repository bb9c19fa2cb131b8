/**
 * Pool baselines: the xfeature set a VM must be created with to move freely among hosts.
 *
 * Sean Christopherson's contract for KVM (kvm@vger.kernel.org, Message-ID
 * ZR2Y34hFpLmCYsUr@google.com, in the 2023 KVM_SET_XSAVE ABI thread): a VM migrates within a heterogeneous
 * pool "so long as the features that are *exposed* to the guest are supported on all
 * platforms". Plugvisor adds what the guest's CPUID 0xD pins down (abi.ts): a component is in
 * the baseline only if every host supports it *and* gives it the same size, standard offset and
 * compacted alignment. Intel and AMD AVX-512 hosts, for instance, disagree on opmask's offset
 * (0x440 vs 0x340), so a mixed pool's baseline leaves AVX-512 out. Then XCR0's all-or-none
 * rules (`__kvm_set_xcr` in arch/x86/kvm/x86.c) close the set: AVX-512 goes as a whole, as do MPX and AMX.
 */
import { MASK, bit, bitsOf, componentLabel, hex64 } from './components.js';
import { XsaveError } from './errors.js';
import { XSAVE_FEATURE, type CpuidEntry, type HostCapabilities, type HostComponent } from './host.js';
import { guestCpuid0d, xsaveAbiOf, type XsaveAbi } from './abi.js';
import type { GuestXsavePolicy } from './policy.js';

export interface ExcludedComponent {
  readonly bit: number;
  readonly component: string;
  readonly reasons: readonly string[];
}

export interface PoolBaseline {
  /** The policy to create VMs with (CPUID 0xD.0 XCR0, 0xD.1 XSS and EAX features). */
  readonly policy: Required<GuestXsavePolicy>;
  /** The ABI fragment such a VM gets: identical on every host of the pool. */
  readonly abi: XsaveAbi;
  /** The CPUID leaf 0xD the guest must be shown, on every host. */
  readonly cpuid0d: readonly CpuidEntry[];
  /** Candidates left out, each with why. */
  readonly excluded: readonly ExcludedComponent[];
  /** Per host: what it lacks or places differently (the reasons it holds the pool back). */
  readonly hosts: readonly { readonly name: string; readonly lacks: readonly string[] }[];
}

const ALL_OR_NONE: readonly [bigint, string][] = [
  [MASK.AVX512, 'AVX-512 components go together'],
  [MASK.MPX, 'MPX components go together'],
  [MASK.XTILE, 'AMX components go together'],
];

/**
 * The baseline for `hosts`. Candidates are `want` (an operator's wish) or everything any host
 * supports. Throws XsaveError BAD_DUMP for an empty pool.
 */
export function poolBaseline(hosts: readonly HostCapabilities[], want?: GuestXsavePolicy): PoolBaseline {
  if (!hosts.length) throw new XsaveError('BAD_DUMP', 'a pool baseline needs at least one host');
  const names = (hs: readonly HostCapabilities[]): string => hs.map((h) => h.name).join(', ');
  const candXcr0 = (want?.xcr0 ?? hosts.reduce((m, h) => m | h.kvmXcr0, 0n)) | MASK.FPSSE;
  const candXss = want?.xss ?? hosts.reduce((m, h) => m | h.xss, 0n);
  const reasons = new Map<number, string[]>();
  const lacks = new Map<string, string[]>(hosts.map((h) => [h.name, []]));
  const exclude = (n: number, why: string): void => {
    if (!reasons.has(n)) reasons.set(n, []);
    reasons.get(n)!.push(why);
  };

  for (const n of bitsOf((candXcr0 | candXss) & ~MASK.FPSSE)) {
    const user = (candXcr0 & bit(n)) !== 0n;
    const missing = hosts.filter((h) => !((user ? h.kvmXcr0 : h.xss) & bit(n)));
    if (missing.length) {
      exclude(n, `not supported by ${names(missing)}`);
      for (const h of missing) lacks.get(h.name)!.push(`${componentLabel(n)}: not supported`);
      continue;
    }
    const cs = hosts.map((h) => h.components.get(n)!);
    const aspects: [string, (c: HostComponent) => unknown][] = [
      ['size', (c) => c.size],
      ['standard offset', (c) => c.offset],
      ['compacted alignment', (c) => c.align64],
    ];
    for (const [what, get] of aspects) {
      const values = cs.map(get);
      if (values.every((x) => x === values[0])) continue;
      const shown = (x: unknown): string => (typeof x === 'number' ? (what === 'size' ? String(x) : `0x${x.toString(16)}`) : String(x));
      exclude(n, `${what} differs: ${hosts.map((h, i) => `${shown(values[i])} on ${h.name}`).join(', ')}`);
      // Blame the hosts that differ from the most common value.
      const counts = new Map<unknown, number>();
      for (const x of values) counts.set(x, (counts.get(x) ?? 0) + 1);
      const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
      hosts.forEach((h, i) => values[i] !== common && lacks.get(h.name)!.push(`${componentLabel(n)}: ${what} ${shown(values[i])} where most hosts have ${shown(common)}`));
    }
  }

  let xcr0 = candXcr0 & ~[...reasons.keys()].reduce((m, n) => m | bit(n), 0n);
  const xss = candXss & ~[...reasons.keys()].reduce((m, n) => m | bit(n), 0n);
  // XCR0 rules (__kvm_set_xcr): the guest must be able to enable its whole set.
  for (let changed = true; changed; ) {
    changed = false;
    for (const [group, why] of ALL_OR_NONE) {
      const have = xcr0 & group;
      if (have && have !== group) {
        for (const n of bitsOf(have)) exclude(n, `${why}; ${bitsOf(group & ~have).map(componentLabel).join(', ')} ${group & ~have & candXcr0 ? 'is excluded' : 'was not asked for'}`);
        xcr0 &= ~group;
        changed = true;
      }
    }
    if (xcr0 & MASK.AVX512 && !(xcr0 & MASK.YMM)) {
      for (const n of bitsOf(xcr0 & MASK.AVX512)) exclude(n, 'AVX-512 needs avx (bit 2), which is excluded');
      xcr0 &= ~MASK.AVX512;
      changed = true;
    }
  }

  const wantFeatures = want?.features ?? hosts.reduce((m, h) => m | h.xsaveFeatures, 0);
  const features = hosts.reduce((m, h) => m & h.xsaveFeatures, wantFeatures) >>> 0;
  for (const h of hosts) {
    for (const [name, fbit] of Object.entries(XSAVE_FEATURE)) {
      if (wantFeatures & fbit && !(h.xsaveFeatures & fbit)) lacks.get(h.name)!.push(`${name} (CPUID 0xD.1 EAX bit ${Math.log2(fbit)})`);
    }
  }

  const policy = { xcr0, xss, features };
  const abi = xsaveAbiOf(policy, hosts[0]!);
  const excluded = [...reasons.entries()].sort((a, b) => a[0] - b[0]).map(([n, r]) => ({ bit: n, component: componentLabel(n), reasons: r }));
  return { policy, abi, cpuid0d: guestCpuid0d(abi), excluded, hosts: hosts.map((h) => ({ name: h.name, lacks: lacks.get(h.name)! })) };
}

/** A person-readable account of a baseline. */
export function formatBaseline(b: PoolBaseline): string {
  const lines = [`xfeatures: XCR0 ${hex64(b.policy.xcr0)} (${bitsOf(b.policy.xcr0).map(componentLabel).join(', ')})`, `supervisor: IA32_XSS ${hex64(b.policy.xss)}${b.policy.xss ? ` (${bitsOf(b.policy.xss).map(componentLabel).join(', ')})` : ''}`];
  lines.push(`CPUID 0xD.1 EAX 0x${b.policy.features.toString(16)}; standard size ${b.abi.standardSize}; ABI signature ${b.abi.signature}`);
  for (const e of b.excluded) lines.push(`left out ${e.component}: ${e.reasons.join('; ')}`);
  for (const h of b.hosts) lines.push(`${h.name}: ${h.lacks.length ? h.lacks.join('; ') : 'lacks nothing'}`);
  return lines.join('\n');
}
