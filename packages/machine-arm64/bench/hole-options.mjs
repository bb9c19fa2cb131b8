// Measures the engine options for removed guest pages on this host's libunicorn (README "Guest
// page holes"): (1) splitting the RAM mapping per 4 KiB page with uc_mem_unmap — time per split
// and how many regions before the engine fails or the process dies (run in a child process);
// (2) what an installed UC_HOOK_MEM_READ|WRITE restricted to one far-away page costs a loop of
// loads and stores (its callback never runs). Usage: node bench/hole-options.mjs [split|hook]
import koffi from 'koffi';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const uc = koffi.load('libunicorn.so.2');
koffi.opaque('uc_engine');
const uc_open = uc.func('int uc_open(int arch, int mode, _Out_ uc_engine **uc)');
const uc_close = uc.func('int uc_close(uc_engine *uc)');
const uc_mem_map = uc.func('int uc_mem_map(uc_engine *uc, uint64_t address, size_t size, uint32_t perms)');
const uc_mem_unmap = uc.func('int uc_mem_unmap(uc_engine *uc, uint64_t address, size_t size)');
const uc_mem_write = uc.func('int uc_mem_write(uc_engine *uc, uint64_t address, const void *bytes, size_t size)');
const uc_reg_write = uc.func('int uc_reg_write(uc_engine *uc, int regid, const void *value)');
const uc_emu_start = uc.func('int uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count)');
const uc_hook_add = uc.func('int uc_hook_add(uc_engine *uc, _Out_ size_t *hh, int type, void *callback, void *user_data, uint64_t begin, uint64_t end, ...)');
const MemHook = koffi.proto('bool q_hookmem(uc_engine *uc, int type, uint64_t address, int size, int64_t value, void *user_data)');
const X0 = 199, X1 = 200;
const RAM = 0x4000_0000n;

function open() {
  const out = [null];
  if (uc_open(2, 0, out) !== 0) throw new Error('uc_open');
  return out[0];
}

function split() {
  const e = open();
  const size = 64 << 20;
  if (uc_mem_map(e, RAM, size, 7) !== 0) throw new Error('map');
  let last = performance.now();
  for (let i = 0; i < size / 8192; i++) {
    const rc = uc_mem_unmap(e, RAM + BigInt(i * 8192 + 4096), 4096);
    const now = performance.now();
    if (rc !== 0) { console.log(`split ${i + 1}: uc_mem_unmap failed (uc_err ${rc})`); break; }
    if ((i + 1) % 100 === 0) console.log(`splits ${i + 1}: ${(now - last) / 100} ms/split`);
    if ((i + 1) % 100 === 0) last = now;
  }
  uc_close(e);
}

// The loop: x0 = buffer, x1 = rounds, x5 = pages; per round a load and a store in each page:
//   1: mov x2, #0 / 2: add x4, x0, x2, lsl #12; ldr x3, [x4]; add x3, x3, #1; str x3, [x4, #8];
//      add x2, x2, #1; cmp x2, x5; b.ne 2b / subs x1, x1, #1; b.ne 1b / nop
const LOOP = Buffer.from('020080d20430028b830040f963040091830400f9420400915f0005eb41ffff54210400f1e1feff541f2003d5', 'hex');

function sweep(hooked, rounds, pages) {
  const e = open();
  uc_mem_map(e, RAM, 16 << 20, 7);
  uc_mem_write(e, RAM, LOOP, LOOP.length);
  uc_reg_write(e, X0, new BigUint64Array([RAM + 0x10_0000n]));
  uc_reg_write(e, X1, new BigUint64Array([BigInt(rounds)]));
  uc_reg_write(e, 204, new BigUint64Array([BigInt(pages)])); // x5
  let calls = 0;
  const cb = koffi.register(() => { calls++; return true; }, koffi.pointer(MemHook));
  // UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE on one page the loop never touches
  if (hooked) uc_hook_add(e, new BigUint64Array(1), (1 << 10) | (1 << 11), cb, null, RAM + 0xf0_0000n, RAM + 0xf0_0fffn);
  const t = performance.now();
  const rc = uc_emu_start(e, RAM, RAM + 0x28n, 0n, 0);
  const ms = performance.now() - t;
  uc_close(e);
  koffi.unregister(cb);
  if (rc !== 0 || calls !== 0) throw new Error(`sweep rc ${rc} calls ${calls}`);
  return (ms * 1e6) / (rounds * pages);
}

const what = process.argv[2];
if (what === 'split') split();
else if (what === 'hook') {
  for (const pages of [16, 1024]) {
    sweep(false, 20, pages); sweep(true, 20, pages);
    const a = [], b = [];
    const rounds = (2_000_000 / pages) | 0;
    for (let i = 0; i < 5; i++) { a.push(sweep(false, rounds, pages)); b.push(sweep(true, rounds, pages)); }
    const med = (x) => x.sort((p, q) => p - q)[2];
    console.log(`${pages} pages swept, no hook: ${med(a).toFixed(1)} ns/page; with a UC_HOOK_MEM_READ|WRITE on one other page: ${med(b).toFixed(1)} ns/page (${(med(b) / med(a)).toFixed(2)}x)`);
  }
} else {
  for (const w of ['hook', 'split']) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), w], { encoding: 'utf8', timeout: 600_000 });
    process.stdout.write(r.stdout.split('\n').filter((l, i, all) => w !== 'split' || /failed/.test(l) || i < 3 || i >= all.length - 4).join('\n') + '\n');
    if (r.status !== 0) console.log(`${w}: the process ended with ${r.signal ?? `status ${r.status}`}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
  }
}
