import { PlugvisorError, type StateValue } from '@plugvisor/core';
import { EVTCHN_FIFO } from './fifo/abi.js';
import { FifoDomain } from './fifo/domain.js';

/**
 * svc-evtchn-fifo's snapshot state, schema 1 (`evtchn-fifo`). Event words, control blocks
 * (ready, heads) travel with guest memory; this carries Xen's side:
 *   active     boolean                       the domain's ABI: FIFO (true) or 2-level
 *   pages      bigint[]                      event-array gfns, slot order
 *   vcpus      [[cbGfn, cbOffset, tails[16]] | null, ...]
 *   ports      [[port, priority, lastq, pending], ...] every port with non-zero FIFO fields
 */
export const STATE_ID = 'evtchn-fifo';
export const STATE_VERSION = 1;

export function saveFifo(f: FifoDomain): StateValue {
  const ports: number[][] = [];
  for (let p = 0; p < f.priority.length; p++) {
    if (f.priority[p] || f.lastq[p] || f.pending[p]) ports.push([p, f.priority[p]!, f.lastq[p]!, f.pending[p]!]);
  }
  return {
    active: f.active,
    pages: [...f.pageGfns],
    vcpus: f.vcpus.map((v) => (v.cbGfn === null ? null : [v.cbGfn, v.cbOffset, [...v.tails]])),
    ports,
  };
}

const bad = (why: string): never => {
  throw new PlugvisorError('BAD_STATE', `svc-evtchn-fifo state '${STATE_ID}' refused: ${why}`);
};
const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isGfn = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v < 1n << 52n;

export function loadFifo(data: StateValue): FifoDomain {
  if (!data || typeof data !== 'object' || Array.isArray(data)) return bad('not an object');
  const o = data as Record<string, StateValue>;
  const f = new FifoDomain();
  if (typeof o.active !== 'boolean') bad('active');
  if (!Array.isArray(o.pages) || o.pages.length > EVTCHN_FIFO.MAX_EVENT_ARRAY_PAGES || !o.pages.every(isGfn)) bad('pages');
  if (!Array.isArray(o.vcpus) || !Array.isArray(o.ports)) bad('vcpus/ports');
  if (!o.active && ((o.pages as unknown[]).length || (o.vcpus as unknown[]).length)) bad('a 2-level domain with FIFO pages or control blocks');
  f.active = o.active as boolean;
  f.pageGfns.push(...(o.pages as bigint[]));
  f.makeVcpus((o.vcpus as unknown[]).length);
  (o.vcpus as unknown[]).forEach((e, i) => {
    if (e === null) return;
    if (!Array.isArray(e) || !isGfn(e[0]) || !isInt(e[1], 0, 4096 - 72) || (e[1] as number) % 8 || !Array.isArray(e[2]) || e[2].length !== 16)
      bad(`vcpus[${i}]`);
    const [gfn, offset, tails] = e as [bigint, number, unknown[]];
    if (!tails.every((t) => isInt(t, 0, EVTCHN_FIFO.NR_CHANNELS - 1))) bad(`vcpus[${i}] tails`);
    const v = f.vcpus[i]!;
    v.cbGfn = gfn;
    v.cbOffset = offset;
    v.tails.set(tails as number[]);
  });
  if ((o.active as boolean) || (o.ports as unknown[]).length) f.ensurePortFields();
  for (const e of o.ports as unknown[]) {
    if (!Array.isArray(e) || e.length !== 4) bad('a port entry is malformed');
    const [p, prio, lastq, pending] = e as unknown[];
    if (!isInt(p, 0, EVTCHN_FIFO.NR_CHANNELS - 1) || !isInt(prio, 0, 15) || !isInt(lastq, 0, 0xffff_ffff) || ((lastq as number) & 0xff00) !== 0 || !isInt(pending, 0, 1))
      bad(`port entry ${String(p)}`);
    f.priority[p as number] = prio as number;
    f.lastq[p as number] = lastq as number;
    f.pending[p as number] = pending as number;
  }
  return f;
}
