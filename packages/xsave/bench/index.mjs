// XSAVE codec and layout conversion, per call, beside a plain Buffer.copy of the same buffer
// size measured in the same run (the floor any re-layout has to pay: touching the bytes once).
//
// "Full AVX-512 buffer": x87, SSE, AVX, MPX, AVX-512 and PKRU all present with random
// registers, in the Intel Skylake-SP layout (4096-byte KVM_GET_XSAVE buffer). Conversion moves
// a buffer with x87/SSE/AVX/AVX-512/PKRU from Intel SPR offsets to AMD EPYC offsets.
import { randomBytes } from 'node:crypto';
import {
  AMD_EPYC_PKRU,
  INTEL_SKYLAKE_SP,
  INTEL_SPR_AMX,
  MASK,
  convertXsave,
  decodeXsave,
  encodeXsave,
  parseHostDump,
  stateFromJson,
  stateToJson,
} from '@plugvisor/xsave';

const skx = parseHostDump(INTEL_SKYLAKE_SP);
const spr = parseHostDump(INTEL_SPR_AMX);
const amd = parseHostDump(AMD_EPYC_PKRU);

const vec = (n, w) => Array.from({ length: n }, () => new Uint8Array(randomBytes(w)));
const u64 = () => randomBytes(8).readBigUInt64LE();
function fullState(mask) {
  const c = {
    x87: { fcw: 0x37f, fsw: 0x3800, ftw: 0xff, fop: 0x1de, fip: u64(), fdp: u64(), st: vec(8, 10) },
    sse: { xmm: vec(16, 16) },
    avx: { ymmHi: vec(16, 16) },
    bndregs: { bnd: Array.from({ length: 4 }, () => ({ lower: u64(), upper: u64() })) },
    bndcsr: { bndcfgu: u64(), bndstatus: u64() },
    opmask: { k: Array.from({ length: 8 }, u64) },
    zmmHi256: { zmmHi: vec(16, 32) },
    hi16Zmm: { zmm: vec(16, 64) },
    pkru: { pkru: 0x55555554 },
  };
  if (!(mask & MASK.MPX)) {
    delete c.bndregs;
    delete c.bndcsr;
  }
  return { xstateBv: mask, mxcsr: 0x1f80, mxcsrMask: 0xffff, components: c };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const us = (ns) => ns / 1000;

export async function runXsaveBench({ rounds = 9, calls = 4000 } = {}) {
  const skxMask = MASK.FPSSE | MASK.YMM | MASK.MPX | MASK.AVX512 | MASK.PKRU;
  const sprMask = MASK.FPSSE | MASK.YMM | MASK.AVX512 | MASK.PKRU;
  const skxBuf = encodeXsave(fullState(skxMask), skx);
  const sprBuf = encodeXsave(fullState(sprMask), spr, new Uint8Array(4096));
  const out = new Uint8Array(4096);
  const copySrc = Buffer.from(skxBuf);
  const copyDst = Buffer.alloc(4096);
  let sink = 0;

  const ops = {
    codec: () => {
      const s = decodeXsave(skxBuf, skx);
      encodeXsave(s, skx, out);
      sink ^= out[0x440];
    },
    convert: () => {
      convertXsave(sprBuf, spr, amd, out);
      sink ^= out[0x340];
    },
    json: () => {
      const s = stateFromJson(JSON.parse(JSON.stringify(stateToJson(decodeXsave(skxBuf, skx)))));
      sink ^= s.mxcsr;
    },
    copy: () => {
      copySrc.copy(copyDst, 0, 0, 4096);
      sink ^= copyDst[0x440];
    },
  };
  // Sanity: what is measured is lossless.
  if (Buffer.compare(Buffer.from(encodeXsave(decodeXsave(skxBuf, skx), skx)), Buffer.from(skxBuf)) !== 0) throw new Error('codec round trip differs');

  const names = Object.keys(ops);
  for (const n of names) for (let i = 0; i < calls; i++) ops[n](); // warm up
  const ns = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < rounds; round++) {
    for (const n of round % 2 ? names : [...names].reverse()) {
      const f = ops[n];
      const reps = n === 'json' ? calls >> 3 : calls;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) f();
      ns[n].push(Number(process.hrtime.bigint() - t0) / reps);
    }
  }
  const spread = (xs) => `${us(Math.min(...xs)).toFixed(2)}–${us(Math.max(...xs)).toFixed(2)} µs`;
  const copy = us(median(ns.copy));
  const row = (name, key, goalUs) => {
    const value = us(median(ns[key]));
    return {
      name,
      value,
      unit: 'µs/call',
      baselineName: 'Buffer.copy of 4096 bytes, same run',
      baseline: copy,
      ratio: value / copy,
      goal: `<= ${goalUs} µs per vCPU`,
      spread: spread(ns[key]),
      pass: value <= goalUs,
    };
  };
  const rows = [
    row('XSAVE decode + encode, full AVX-512+MPX+PKRU buffer (Intel layout, 4096 B)', 'codec', 50),
    row('XSAVE layout conversion Intel SPR → AMD EPYC (AVX-512+PKRU, 4096 B)', 'convert', 20),
    row('XSAVE decode → portable JSON text → state (snapshot record path)', 'json', 500),
  ];
  rows[0].note = `sink ${sink & 1}`; // keeps the work observable
  return rows;
}
