import type { PageView } from '@plugvisor/svc-xen';
import { CONTROL_BLOCK, EVTCHN_FIFO } from './abi.js';

/** One vCPU's FIFO state: its control block in guest memory, and Xen's private queue tails. */
export interface FifoVcpu {
  /** Control-block placement (gfn, byte offset), or null: this vCPU gets no FIFO events. */
  cbGfn: bigint | null;
  cbOffset: number;
  /** The mapped page and the word index of `ready`; head[q] is at readyWord + 2 + q. */
  cbView: PageView | undefined;
  readyWord: number;
  /** Per-priority queue tail (a port; 0 = none), Xen's evtchn_fifo_queue.tail. */
  readonly tails: Uint32Array;
}

const NO_U8 = new Uint8Array(0);
const NO_U32 = new Uint32Array(0);

/**
 * A domain's FIFO state (Xen's struct evtchn_fifo_domain plus the FIFO fields of each struct
 * evtchn). The per-port arrays (768 KiB for 131072 ports) are allocated when the domain first
 * switches to FIFO (or a snapshot carries FIFO port fields), not for every VM of a build that
 * merely contains this package; until then they are empty. Once made they live as long as the
 * domain, like Xen's struct evtchn: a reset tears down control blocks and the event array but
 * leaves `pending`, `priority` and `lastq`, which the next init_control overwrites
 * (setup_ports) exactly as Xen's code does.
 */
export class FifoDomain {
  active = false;
  /** Event-array pages, slot k covering ports 1024k..1024k+1023. */
  readonly pageGfns: bigint[] = [];
  pages: PageView[] = [];
  vcpus: FifoVcpu[] = [];
  /** evtchn->priority, evtchn->pending (the "no page yet" flag) and evtchn->fifo_lastq. */
  priority: Uint8Array = NO_U8;
  pending: Uint8Array = NO_U8;
  /** fifo_lastq.raw: last_priority in bits 7:0, last_vcpu_id in bits 31:16. */
  lastq: Uint32Array = NO_U32;
  /** svc-xen's memoryEpoch these views were made for. */
  epoch = -1;

  /** Has this domain ever needed per-port FIFO fields? */
  get hasPortFields(): boolean {
    return this.priority.length !== 0;
  }

  /** Allocates the per-port fields (all zero) the first time they are needed. */
  ensurePortFields(): void {
    if (this.hasPortFields) return;
    this.priority = new Uint8Array(EVTCHN_FIFO.NR_CHANNELS);
    this.pending = new Uint8Array(EVTCHN_FIFO.NR_CHANNELS);
    this.lastq = new Uint32Array(EVTCHN_FIFO.NR_CHANNELS);
  }

  get numEvtchns(): number {
    return this.pageGfns.length * EVTCHN_FIFO.WORDS_PER_PAGE;
  }

  makeVcpus(count: number): void {
    this.vcpus = Array.from({ length: count }, () => ({ cbGfn: null, cbOffset: 0, cbView: undefined, readyWord: 0, tails: new Uint32Array(EVTCHN_FIFO.MAX_QUEUES) }));
  }

  /** evtchn_fifo_destroy: control blocks and event array gone, back to no FIFO. */
  destroy(): void {
    this.active = false;
    this.pageGfns.length = 0;
    this.pages = [];
    this.vcpus = [];
  }

  headWord(v: FifoVcpu, q: number): number {
    return v.readyWord + CONTROL_BLOCK.HEAD / 4 + q;
  }
}
