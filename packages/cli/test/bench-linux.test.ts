import { describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs bench suite (scripts/bench.mjs loads it), no declarations
import { ConsoleWatch, command, judgeRun, linuxRows, median, runOnce, schedule } from '../bench/linux.mjs';

// The `pnpm bench linux` suite's bookkeeping, without booting Linux: what counts as a run that
// reached power-off, how runs are interleaved and summarised, and what the rows say when a side
// fails. Child processes here are small `node -e` scripts standing in for a VMM.

const ok = (seconds: number, firstInit = seconds - 1, powerDown = seconds - 0.1) => ({ ok: true, seconds, firstInit, powerDown });
const fail = (why: string) => ({ ok: false, why });

describe('pnpm bench linux', () => {
  it('takes medians of odd and even counts, NaN of none', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('interleaves every round as Plugvisor 1 vCPU, QEMU 1, Plugvisor 2, QEMU 2', () => {
    expect(schedule(2).map((r: { round: number; vmm: string; vcpus: number }) => `${r.round}:${r.vmm}:${r.vcpus}`)).toEqual([
      '1:plugvisor:1', '1:qemu:1', '1:plugvisor:2', '1:qemu:2',
      '2:plugvisor:1', '2:qemu:1', '2:plugvisor:2', '2:qemu:2',
    ]);
  });

  it('boots both with the same kernel, initramfs, command line, memory and vCPUs', () => {
    const [, pv] = command('plugvisor', 2);
    const [qfile, qm] = command('qemu', 2);
    expect(qfile).toBe('qemu-system-aarch64');
    const after = (args: string[], flag: string) => args[args.indexOf(flag) + 1];
    expect(after(pv, '--kernel')).toBe(after(qm, '-kernel'));
    expect(after(pv, '--initrd')).toBe(after(qm, '-initrd'));
    expect(after(pv, '--append')).toBe(after(qm, '-append'));
    expect([after(pv, '--vcpus'), after(qm, '-smp')]).toEqual(['2', '2']);
    expect([after(pv, '--mem'), after(qm, '-m')]).toEqual(['512M', '512']);
    expect(qm).toContain('-no-reboot');
  });

  it('watches the console across split chunks and \\r\\n; `mem auto-init: ` is not userspace', () => {
    const w = new ConsoleWatch(0);
    w.feed('[    0.000000] mem auto-init: stack:all(zero)\r\n', 100);
    w.feed('init: sta', 2000);
    w.feed('rted\r\ninit: powering off\r\n[    7.1] reboot: Power', 3000);
    expect(w.firstInit).toBe(3); // the line ended in the chunk at 3000 ms
    expect(w.powerDown).toBeUndefined();
    w.feed(' down\r\n', 3500);
    w.end(3600);
    expect(w.poweringOff).toBe(true);
    expect(w.powerDown).toBe(3.5);
    expect(w.tail).toEqual(['[    0.000000] mem auto-init: stack:all(zero)', 'init: started', 'init: powering off', '[    7.1] reboot: Power down']);
  });

  it('counts a run only if it exited 0 after `init: powering off`', () => {
    const watch = (...lines: string[]) => {
      const w = new ConsoleWatch(0);
      for (const l of lines) w.feed(`${l}\n`, 1000);
      return w;
    };
    expect(judgeRun({ code: 0, seconds: 9, watch: watch('init: started', 'init: powering off') })).toMatchObject({ ok: true, seconds: 9, firstInit: 1 });
    expect(judgeRun({ code: 0, seconds: 9, watch: watch('init: started') })).toEqual({ ok: false, why: 'exit 0 without `init: powering off`; last lines: init: started' });
    expect(judgeRun({ code: 10, seconds: 2, watch: watch('a', 'b', 'c', 'd', 'plugvisor: guest fault') }).why).toBe('exit 10 before `init: powering off`; last lines: b | c | d | plugvisor: guest fault');
    expect(judgeRun({ code: 0, seconds: 1, watch: watch() }).why).toBe('exit 0 without `init: powering off`; no console output');
    expect(judgeRun({ code: null, timedOut: true, seconds: 3, timeout: 3, watch: watch('init: powering off') })).toMatchObject({ ok: false, timedOut: true });
  });

  it('runs a child to exit, and kills one that outlives its timeout', async () => {
    const node = (src: string) => [process.execPath, ['-e', src]];
    const good = await runOnce(node('console.log("init: powering off")'), 10);
    expect(good).toMatchObject({ ok: true });
    const hung = await runOnce(node('console.log("init: started"); setInterval(() => {}, 1000)'), 0.5);
    expect(hung).toMatchObject({ ok: false, timedOut: true });
    expect(hung.why).toBe('no power-off within 0.5 s (killed); last lines: init: started');
    const missing = await runOnce(['/nonexistent/vmm', []], 5);
    expect(missing.ok).toBe(false);
    expect(missing.why).toMatch(/^could not start: .*ENOENT/);
  });

  it('gives ratios and goals when both sides powered off', () => {
    const rows = linuxRows({
      plugvisor: { 1: [ok(9), ok(7), ok(8)], 2: [ok(14), ok(18), ok(16)] },
      qemu: { 1: [ok(6), ok(5), ok(4)], 2: [ok(8), ok(8), ok(8)] },
    });
    expect(rows.map((r: { name: string }) => r.name)).toEqual([
      'Linux boot to power-off on QEMU TCG (qemu-system-aarch64 -machine virt -cpu max), 1 vCPU',
      'Linux boot to power-off on Plugvisor, 1 vCPU',
      'Linux boot to power-off on QEMU TCG (qemu-system-aarch64 -machine virt -cpu max), 2 vCPUs',
      'Linux boot to power-off on Plugvisor, 2 vCPUs',
      'Linux boot to power-off on Plugvisor, 2 vCPUs beside 1 vCPU',
    ]);
    expect(rows[0]).toMatchObject({ value: 5, spread: '4.0–6.0 s', unit: 's' });
    expect(rows[1]).toMatchObject({ value: 8, baseline: 5, ratio: 1.6, goal: '≤ 1.5× QEMU', pass: false, spread: '7.0–9.0 s' });
    expect(rows[1].note).toBe('median to first `init: ` line 7.0 s, to `reboot: Power down` 7.9 s; 3/3 runs reached power-off');
    expect(rows[3]).toMatchObject({ value: 16, baseline: 8, ratio: 2 });
    expect(rows[3].goal).toBeUndefined();
    expect(rows[4]).toMatchObject({ value: 16, baseline: 8, ratio: 2, pass: true });
  });

  it('reports a side that never powered off as a failure with its console, not a time', () => {
    const why = 'exit 10 before `init: powering off`; last lines: plugvisor: guest fault';
    const rows = linuxRows({
      plugvisor: { 1: [fail(why), fail(why)], 2: [ok(20), fail('no power-off within 180 s (killed); no console output')] },
      qemu: { 1: [ok(5), ok(6)], 2: [ok(8)] },
    }, { skipped: { plugvisor: { 2: 3 } } });
    expect(rows[1].value).toBeNaN();
    expect(rows[1]).toMatchObject({ pass: false, goal: '≤ 1.5× QEMU' });
    expect(rows[1].baseline).toBeUndefined();
    expect(rows[1].ratio).toBeUndefined();
    expect(rows[1].note).toBe(`0/2 runs reached power-off; failed: ${why}`);
    expect(rows[3]).toMatchObject({ value: 20, baseline: 8, ratio: 2.5 });
    expect(rows[3].note).toContain('1/2 runs reached power-off; 3 run(s) not started after 2 timeouts; failed: no power-off within 180 s');
    expect(rows[4]).toMatchObject({ pass: false, note: 'no ratio: 1 vCPU never reached power-off' });
    expect(rows[4].ratio).toBeUndefined();
  });

  it('says why there is no QEMU baseline when QEMU could not run', () => {
    const rows = linuxRows({ plugvisor: { 1: [ok(7)], 2: [ok(9)] }, qemu: { 1: [], 2: [] } }, { qemu: 'qemu-system-aarch64 is not installed' });
    expect(rows[0].value).toBeNaN();
    expect(rows[0].note).toBe('not run: qemu-system-aarch64 is not installed');
    expect(rows[1]).toMatchObject({ value: 7, pass: false });
    expect(rows[1].baseline).toBeUndefined();
    expect(rows[1].note).toContain('no QEMU baseline: qemu-system-aarch64 is not installed');
    expect(rows[4]).toMatchObject({ ratio: 9 / 7, pass: true });
  });
});
