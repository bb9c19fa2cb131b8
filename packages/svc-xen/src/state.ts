import { PlugvisorError, type StateValue, type Vm } from '@plugvisor/core';
import { EVTCHNS_PER_BUCKET, MAX_NR_EVTCHNS, PAGE_SIZE } from './abi.js';
import { XenDomain } from './domain.js';
import type { XenEvtchnHooks } from './hooks.js';
import { ECS } from './ports.js';

/**
 * svc-xen's snapshot state, schema 1 (`xen-domain`). What lives in guest RAM (pending and
 * mask bitmaps, selectors, upcall flags) travels with guest memory; this carries what Xen
 * keeps in its own memory:
 *   maxEvtchnPort  number
 *   valid          number          Xen's valid_evtchns (a multiple of 64)
 *   ports          [[port, state, notifyVcpu, remoteDom, remotePort], ...] every port not FREE, 0 excluded
 *   sharedInfoGfn  bigint | null
 *   hostShared     hex | ''        Xen's shared_info page while the guest has not mapped it
 *   dummy          hex | ''        Xen's dummy vcpu_info
 *   vcpuInfo       [[gfn, offset] | null, ...] per vCPU
 *   vmmPorts       number[]        the VMM's ports (-1 free, 0 unbound, n bound to guest port n)
 *   unmappedPages  number          optional, absent when 0: pages the domain owns outside its
 *                                  physical map (the memory reservation ops' accounting)
 *   wallclockPending true          optional, absent when false: a new domain whose shared_info
 *                                  wallclock is still to be written (xen-fidelity)
 */
export const STATE_ID = 'xen-domain';
export const STATE_VERSION = 1;

const hex = (v: Int32Array, bytes: number): string => {
  const b = new Uint8Array(v.buffer, v.byteOffset, bytes);
  return b.some((x) => x !== 0) ? Buffer.from(b).toString('hex') : '';
};

export function saveDomain(d: XenDomain): StateValue {
  const t = d.ports;
  const ports: number[][] = [];
  for (let p = 1; p < t.valid; p++) {
    if (t.state[p] !== ECS.FREE) ports.push([p, t.state[p]!, t.notifyVcpu[p]!, t.remoteDom[p]!, t.remotePort[p]!]);
  }
  return {
    maxEvtchnPort: d.maxEvtchnPort,
    valid: t.valid,
    ports,
    sharedInfoGfn: d.sharedInfoGfn,
    hostShared: d.sharedInfoGfn === null ? hex(d.shinfo, PAGE_SIZE) : '',
    dummy: hex(d.dummy, 64),
    vcpuInfo: d.vcpuInfo.map((s) => (s.gfn === null ? null : [s.gfn, s.offset])),
    vmmPorts: [...d.vmmPorts],
    ...(d.unmappedPages ? { unmappedPages: d.unmappedPages } : {}),
    ...(d.wallclockPending ? { wallclockPending: true } : {}),
  };
}

const bad = (why: string): never => {
  throw new PlugvisorError('BAD_STATE', `svc-xen state '${STATE_ID}' refused: ${why}`);
};
const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function fromHex(s: unknown, into: Int32Array, bytes: number, what: string): void {
  if (typeof s !== 'string' || !/^([0-9a-f]{2})*$/.test(s) || (s !== '' && s.length !== bytes * 2)) bad(`${what} is not ${bytes} hex bytes`);
  if (s) new Uint8Array(into.buffer, into.byteOffset, bytes).set(Buffer.from(s as string, 'hex'));
}

export function loadDomain(data: StateValue, vm: Vm, hooks: XenEvtchnHooks): XenDomain {
  if (!isObj(data)) return bad('not an object');
  const d = new XenDomain(vm, hooks);
  if (!isInt(data.maxEvtchnPort, 0, 0x7fff_ffff)) bad('maxEvtchnPort');
  d.maxEvtchnPort = data.maxEvtchnPort as number;
  if (!isInt(data.valid, EVTCHNS_PER_BUCKET, MAX_NR_EVTCHNS) || (data.valid as number) % EVTCHNS_PER_BUCKET) bad('valid is not a bucket multiple');
  const t = d.ports;
  t.grow(data.valid as number);
  if (!Array.isArray(data.ports)) bad('ports is not a list');
  for (const e of data.ports as unknown[]) {
    if (!Array.isArray(e) || e.length !== 5) bad('a port entry is malformed');
    const [p, st, n, rd, rp] = e as unknown[];
    if (!isInt(p, 1, t.valid - 1) || t.state[p as number] !== ECS.FREE) bad(`port ${String(p)} is out of range or repeated`);
    if (!isInt(st, ECS.UNBOUND, ECS.IPI) || st === ECS.PIRQ) bad(`port ${p} has state ${String(st)}`);
    if (!isInt(n, 0, 0xffff) || !isInt(rd, 0, 0xffff) || !isInt(rp, 0, 0xffff_ffff)) bad(`port ${p} fields`);
    const port = p as number;
    t.state[port] = st as number;
    t.notifyVcpu[port] = n as number;
    t.remoteDom[port] = rd as number;
    t.remotePort[port] = rp as number;
    t.active++;
  }
  const g = data.sharedInfoGfn;
  if (g !== null && (typeof g !== 'bigint' || g < 0n || g >= 1n << 52n)) bad('sharedInfoGfn');
  d.sharedInfoGfn = g as bigint | null;
  fromHex(data.hostShared, d.shinfo, PAGE_SIZE, 'hostShared');
  fromHex(data.dummy, d.dummy, 64, 'dummy');
  if (!Array.isArray(data.vcpuInfo)) bad('vcpuInfo is not a list');
  d.vcpuInfo = (data.vcpuInfo as unknown[]).map((e, i) => {
    if (e === null) return { view: d.dummy, word: 0, gfn: null, offset: 0 };
    if (!Array.isArray(e) || typeof e[0] !== 'bigint' || e[0] < 0n || e[0] >= 1n << 52n || !isInt(e[1], 0, PAGE_SIZE - 48) || e[1] % 8) return bad(`vcpuInfo[${i}]`);
    return { view: d.dummy, word: 0, gfn: e[0] as bigint, offset: e[1] as number };
  });
  if (!Array.isArray(data.vmmPorts) || data.vmmPorts[0] !== -1 || !data.vmmPorts.every((x) => isInt(x, -1, t.valid - 1))) bad('vmmPorts');
  d.vmmPorts = [...(data.vmmPorts as number[])];
  if (data.unmappedPages !== undefined && !isInt(data.unmappedPages, 1, 2 ** 52)) bad('unmappedPages');
  d.unmappedPages = (data.unmappedPages as number | undefined) ?? 0;
  if (data.wallclockPending !== undefined && data.wallclockPending !== true) bad('wallclockPending');
  d.wallclockPending = data.wallclockPending === true;
  // Each end of a channel must name the other: a snapshot that disagrees with itself is refused.
  for (let p = 1; p < t.valid; p++) {
    if (t.state[p] !== ECS.INTERDOMAIN) continue;
    const rp = t.remotePort[p]!;
    const ok =
      t.remoteDom[p] === d.domid
        ? rp < t.valid && t.state[rp] === ECS.INTERDOMAIN && t.remotePort[rp] === p
        : t.remoteDom[p] === 0 && d.vmmPorts[rp] === p;
    if (!ok) bad(`interdomain port ${p} and its peer disagree`);
  }
  return d;
}
