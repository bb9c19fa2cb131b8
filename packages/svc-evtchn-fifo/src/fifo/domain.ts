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

/**
 * A domain's FIFO state (Xen's struct evtchn_fifo_domain plus the FIFO fields of each struct
 * evtchn). The per-port arrays live as long as the domain, like Xen's struct evtchn: a reset
 * tears down control blocks and the event array but leaves `pending`, `priority` and `lastq`,
 * which the next init_control overwrites (setup_ports) exactly as Xen's code does.
 */
export class FifoDomain {
  active = false;
  /** Event-array pages, slot k covering ports 1024k..1024k+1023. */
  readonly pageGfns: bigint[] = [];
  pages: PageView[] = [];
  vcpus: FifoVcpu[] = [];
  /** evtchn->priority, evtchn->pending (the "no page yet" flag) and evtchn->fifo_lastq. */
  readonly priority = new Uint8Array(EVTCHN_FIFO.NR_CHANNELS);
  readonly pending = new Uint8Array(EVTCHN_FIFO.NR_CHANNELS);
  /** fifo_lastq.raw: last_priority in bits 7:0, last_vcpu_id in bits 31:16. */
  readonly lastq = new Uint32Array(EVTCHN_FIFO.NR_CHANNELS);
  /** svc-xen's memoryEpoch these views were made for. */
  epoch = -1;

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
