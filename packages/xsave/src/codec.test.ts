import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { componentArb, stateArb } from './arbitraries.test-helper.js';
import {
  AMD_EPYC_MEASURED,
  AMD_EPYC_PKRU,
  EXAMPLE_HOSTS,
  INTEL_SKYLAKE_SP,
  INTEL_SPR_AMX,
  MASK,
  XFEATURE,
  XsaveError,
  bit,
  componentInfo,
  decodeXsave,
  encodeXsave,
  initState,
  parseHostDump,
  stateFromJson,
  stateToJson,
  type XsaveState,
} from './index.js';

const spr = parseHostDump(INTEL_SPR_AMX);
const skx = parseHostDump(INTEL_SKYLAKE_SP);
const amd = parseHostDump(AMD_EPYC_PKRU);
const hosts = EXAMPLE_HOSTS.map(parseHostDump);

const refusal = (f: () => unknown): XsaveError => {
  try {
    f();
  } catch (e) {
    if (e instanceof XsaveError) return e;
    throw e;
  }
  throw new Error('expected an XsaveError');
};

describe('standard-format codec', () => {
  // One property per (host, component): the component alone, random registers, round-trips.
  for (const h of hosts) {
    for (const n of [...h.components.values()].filter((c) => c.kind === 'user' && h.kvmXcr0 & bit(c.bit)).map((c) => c.bit)) {
      it(`${h.name}: ${componentInfo(n).name} (bit ${n}) round-trips with random registers`, () => {
        fc.assert(
          fc.property(stateArb(h, bit(n), true), (s) => {
            const buf = encodeXsave(s, h);
            expect(buf.length).toBe(h.uabiSize);
            expect(decodeXsave(buf, h)).toEqual(s);
          }),
          { numRuns: 25 },
        );
      });
    }
  }

  it('round-trips any subset of components on every host, and re-encodes byte-identically', () => {
    for (const h of hosts) {
      fc.assert(
        fc.property(stateArb(h), (s) => {
          const buf = encodeXsave(s, h);
          const back = decodeXsave(buf, h);
          expect(back).toEqual(s);
          expect(encodeXsave(back, h)).toEqual(buf);
        }),
        { numRuns: 30 },
      );
    }
  });

  it('places each register where the SDM layout and QEMU offsets put it (Intel SPR layout)', () => {
    const s: XsaveState = {
      ...initState(spr),
      xstateBv: MASK.FPSSE | MASK.YMM | MASK.AVX512 | MASK.PKRU | MASK.XTILE,
      components: {
        x87: { fcw: 0x27f, fsw: 0x3800, ftw: 0x80, fop: 0x1de, fip: 0x1122334455667788n, fdp: 0x99n, st: Array.from({ length: 8 }, (_, i) => new Uint8Array(10).fill(i + 1)) },
        sse: { xmm: Array.from({ length: 16 }, (_, i) => new Uint8Array(16).fill(0x10 + i)) },
        avx: { ymmHi: Array.from({ length: 16 }, (_, i) => new Uint8Array(16).fill(0x20 + i)) },
        opmask: { k: Array.from({ length: 8 }, (_, i) => BigInt(i + 1) << 56n) },
        zmmHi256: { zmmHi: Array.from({ length: 16 }, (_, i) => new Uint8Array(32).fill(0x40 + i)) },
        hi16Zmm: { zmm: Array.from({ length: 16 }, (_, i) => new Uint8Array(64).fill(0x60 + i)) },
        pkru: { pkru: 0x55555554 },
        xtileCfg: { palette: 1, startRow: 0, colsb: Array(16).fill(64), rows: Array(16).fill(16) },
        xtileData: { tmm: Array.from({ length: 8 }, (_, i) => new Uint8Array(1024).fill(0x80 + i)) },
      },
      mxcsr: 0x1fa0,
    };
    const b = encodeXsave(s, spr);
    const dv = new DataView(b.buffer);
    expect(dv.getUint16(0, true)).toBe(0x27f);
    expect(b[4]).toBe(0x80);
    expect(dv.getUint16(6, true)).toBe(0x1de);
    expect(dv.getBigUint64(8, true)).toBe(0x1122334455667788n);
    expect(dv.getUint32(24, true)).toBe(0x1fa0);
    expect(b[32 + 16 * 7]).toBe(8); // ST7
    expect(b[32 + 16 * 7 + 10]).toBe(0); // reserved high bytes of the ST slot
    expect(b[160 + 16 * 15]).toBe(0x1f); // XMM15
    expect(dv.getBigUint64(512, true)).toBe(s.xstateBv);
    expect(dv.getBigUint64(520, true)).toBe(0n);
    expect(b[0x240]).toBe(0x20);
    expect(dv.getBigUint64(0x440 + 8 * 7, true)).toBe(8n << 56n);
    expect(b[0x480 + 32 * 15]).toBe(0x4f);
    expect(b[0x680 + 64 * 15]).toBe(0x6f);
    expect(dv.getUint32(0xa80, true)).toBe(0x55555554);
    expect(b[0xac0]).toBe(1);
    expect(dv.getUint16(0xac0 + 16, true)).toBe(64);
    expect(b[0xac0 + 48]).toBe(16);
    expect(b[2816 + 1024 * 7]).toBe(0x87);
    expect(b.length).toBe(0x2b00);
  });

  it('writes the init image for clear bits: FCW 0x37F, zeros elsewhere, and decodes it as absent', () => {
    const b = encodeXsave(initState(amd), amd);
    expect(new DataView(b.buffer).getUint16(0, true)).toBe(0x37f);
    expect(new DataView(b.buffer).getUint32(24, true)).toBe(0x1f80);
    expect(decodeXsave(b, amd)).toEqual(initState(amd));
    // KVM's copy-out of a fresh vCPU (measured on an AMD EPYC family 19h model 11h host; fpstate_init_fxstate in arch/x86/kernel/fpu/core.c): XSTATE_BV 0, FCW 0x37F, MXCSR 0x1F80.
    const fresh = new Uint8Array(4096);
    new DataView(fresh.buffer).setUint16(0, 0x37f, true);
    new DataView(fresh.buffer).setUint32(24, 0x1f80, true);
    new DataView(fresh.buffer).setUint32(28, 0xffff, true);
    expect(decodeXsave(fresh, amd)).toEqual(initState(amd));
  });

  it('refuses malformed buffers naming each field and component', () => {
    const good = encodeXsave(initState(amd), amd);
    const withHeader = (at: number, v: bigint): Uint8Array => {
      const b = good.slice();
      new DataView(b.buffer).setBigUint64(at, v, true);
      return b;
    };
    expect(refusal(() => decodeXsave(good.subarray(0, 500), amd)).message).toMatch(/shorter than the legacy area/);
    expect(refusal(() => decodeXsave(withHeader(520, 1n << 63n), amd)).message).toMatch(/XCOMP_BV/);
    expect(refusal(() => decodeXsave(withHeader(528, 1n), amd)).message).toMatch(/reserved header byte 528/);
    const e = refusal(() => decodeXsave(withHeader(512, MASK.FPSSE | bit(3) | bit(11) | bit(62)), amd));
    expect(e.code).toBe('XSAVE_BAD_BUFFER');
    expect(e.components).toEqual(['bndregs (bit 3)', 'cet_user (bit 11)', 'lwp (bit 62)']);
    expect(e.message).toMatch(/supervisor component/);
    // AMX tile data does not fit KVM_GET_XSAVE's 4096 bytes (cloud-hypervisor#7533's failure).
    const amx = refusal(() => decodeXsave(withHeader(512, MASK.XTILE).subarray(0, 4096), spr));
    expect(amx.components).toEqual(['xtile_data (bit 18)']);
    expect(amx.message).toMatch(/KVM_GET_XSAVE2's size, 11008/);
  });

  it('refuses a state with missing, extra or malformed components, and one a host cannot place', () => {
    const s = { ...initState(amd), xstateBv: MASK.YMM | MASK.PKRU, components: { avx: { ymmHi: [new Uint8Array(3)] }, opmask: { k: [] } } } as unknown as XsaveState;
    const e = refusal(() => encodeXsave(s, amd));
    expect(e.components).toEqual(['avx (bit 2)', 'pkru (bit 9)', 'opmask (bit 5)']);
    const mpx = fc.sample(stateArb(skx, MASK.MPX, true), 1)[0]!;
    const l = refusal(() => encodeXsave(mpx, parseHostDump(AMD_EPYC_MEASURED)));
    expect(l.code).toBe('XSAVE_LAYOUT');
    expect(l.components).toEqual(['bndregs (bit 3)', 'bndcsr (bit 4)']);
  });

  it('encodes into a caller buffer without allocating a new one', () => {
    const out = new Uint8Array(amd.uabiSize).fill(0xee);
    const s = fc.sample(stateArb(amd, amd.kvmXcr0, true), 1)[0]!;
    expect(encodeXsave(s, amd, out)).toBe(out);
    expect(decodeXsave(out, amd)).toEqual(s);
  });

  it('carries opaque components byte for byte', () => {
    const lwp = parseHostDump({ format: 1, name: 'old-amd-lwp', cpuid0d: [{ function: 0xd, index: 0, eax: 0x7, ebx: 0x340, ecx: 0x3c0, edx: 0x4000_0000 }, { function: 0xd, index: 2, eax: 256, ebx: 0x240, ecx: 0, edx: 0 }, { function: 0xd, index: 62, eax: 128, ebx: 0x340, ecx: 0, edx: 0 }] });
    const s: XsaveState = { ...initState(lwp), xstateBv: MASK.FP | bit(XFEATURE.LWP), components: { x87: fc.sample(componentArb.x87, 1)[0]!, opaque: { 62: new Uint8Array(128).fill(7) } } };
    expect(decodeXsave(encodeXsave(s, lwp, new Uint8Array(4096)), lwp)).toEqual(s);
  });
});

describe('portable JSON form', () => {
  it('round-trips every component through JSON text', () => {
    for (const h of [spr, skx, amd]) {
      fc.assert(
        fc.property(stateArb(h), (s) => {
          expect(stateFromJson(JSON.parse(JSON.stringify(stateToJson(s))))).toEqual(s);
        }),
        { numRuns: 20 },
      );
    }
  });

  it('refuses a record with a bad register, naming the component', () => {
    const s = fc.sample(stateArb(amd, MASK.FPSSE | MASK.AVX512, true), 1)[0]!;
    const j = JSON.parse(JSON.stringify(stateToJson(s)));
    j.components.opmask.k[3] = '0x1' + '0'.repeat(16);
    delete j.components.hi16_zmm;
    j.components.pkru = { pkru: 1 };
    const e = refusal(() => stateFromJson(j));
    expect(e.components).toEqual(['opmask (bit 5)', 'hi16_zmm (bit 7)']);
    expect(e.message).toMatch(/'pkru' is present but its XSTATE_BV bit is clear/);
  });
});
