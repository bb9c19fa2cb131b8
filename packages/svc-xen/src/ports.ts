import { EVTCHNS_PER_BUCKET, MAX_NR_EVTCHNS } from './abi.js';

/** Xen's internal channel states (xen/include/xen/sched.h ECS_*). */
export const ECS = Object.freeze({ FREE: 0, RESERVED: 1, UNBOUND: 2, INTERDOMAIN: 3, PIRQ: 4, VIRQ: 5, IPI: 6 });

/**
 * One domain's event-channel table, as Xen keeps `struct evtchn` (minus the ABI-specific
 * fields, which the active ABI keeps). Structure of arrays so that the raise path reads
 * numbers, never objects. The table grows a bucket (64 ports) at a time, as Xen's does:
 * `valid` is Xen's `valid_evtchns`, the count of ports that exist (a guest op on a port at
 * or beyond it gets -EINVAL; below it a FREE port is a legal no-op for unmask, -EINVAL for
 * close, "closed" for status).
 */
export class PortTable {
  state = new Uint8Array(0);
  notifyVcpu = new Uint16Array(0);
  /** UNBOUND: the domid allowed to bind; INTERDOMAIN: the remote domid. */
  remoteDom = new Uint16Array(0);
  /** INTERDOMAIN: the remote port; VIRQ: the virq number. */
  remotePort = new Uint32Array(0);
  valid = 0;
  /** Xen's active_evtchns: ports not FREE, port 0 (RESERVED) excluded. */
  active = 0;

  constructor() {
    this.grow(EVTCHNS_PER_BUCKET); // evtchn_init: bucket 0 exists, port 0 reserved
    this.state[0] = ECS.RESERVED;
  }

  isValid(port: number): boolean {
    return port >>> 0 === port && port < this.valid;
  }

  /** usable by a guest (evtchn_usable): any bound or unbound state, not FREE / RESERVED. */
  usable(port: number): boolean {
    return this.state[port]! > ECS.RESERVED;
  }

  /** Makes ports up to `upTo` (exclusive, a bucket multiple) exist. */
  grow(upTo: number): void {
    if (upTo <= this.valid) return;
    const cap = Math.min(MAX_NR_EVTCHNS, Math.max(upTo, this.state.length * 2));
    if (cap > this.state.length) {
      const s = new Uint8Array(cap), n = new Uint16Array(cap), d = new Uint16Array(cap), p = new Uint32Array(cap);
      s.set(this.state);
      n.set(this.notifyVcpu);
      d.set(this.remoteDom);
      p.set(this.remotePort);
      this.state = s;
      this.notifyVcpu = n;
      this.remoteDom = d;
      this.remotePort = p;
    }
    this.valid = upTo;
  }

  /** A freed port: FREE, notify vCPU back to 0 (evtchn_free). */
  free(port: number): void {
    this.state[port] = ECS.FREE;
    this.notifyVcpu[port] = 0;
    this.remoteDom[port] = 0;
    this.remotePort[port] = 0;
    this.active--;
  }
}

/**
 * evtchn_allocate_port(): 0 on success, else the negative errno (-ENOSPC past a limit, -EBUSY
 * for a port in use or, under FIFO, still LINKED in a guest queue).
 */
export function allocatePort(
  t: PortTable,
  port: number,
  maxEvtchnPort: number,
  maxEvtchns: number,
  isBusy: (port: number) => boolean,
): number {
  if (port > maxEvtchnPort || port >= maxEvtchns) return -28; // ENOSPC
  if (port < t.valid) {
    if (t.state[port] !== ECS.FREE || isBusy(port)) return -16; // EBUSY
  } else {
    t.grow((Math.floor(port / EVTCHNS_PER_BUCKET) + 1) * EVTCHNS_PER_BUCKET);
  }
  t.active++;
  return 0;
}

/** get_free_port(): the lowest allocatable port, or a negative errno. */
export function getFreePort(t: PortTable, maxEvtchnPort: number, maxEvtchns: number, isBusy: (port: number) => boolean): number {
  for (let port = 0; port <= maxEvtchnPort; port++) {
    const rc = allocatePort(t, port, maxEvtchnPort, maxEvtchns, isBusy);
    if (rc === 0) return port;
    if (rc !== -16) return rc;
  }
  return -28;
}
