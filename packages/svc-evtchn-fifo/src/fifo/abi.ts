/** FIFO ABI constants (xen/include/public/event_channel.h). */
export const EVTCHN_FIFO = Object.freeze({
  PRIORITY_MAX: 0,
  PRIORITY_DEFAULT: 7,
  PRIORITY_MIN: 15,
  MAX_QUEUES: 16,
  LINK_BITS: 17,
  NR_CHANNELS: 1 << 17,
  WORDS_PER_PAGE: 1024,
  MAX_EVENT_ARRAY_PAGES: 128,
});
/** Event-word bits. */
export const PENDING = 31;
export const MASKED = 30;
export const LINKED = 29;
export const BUSY = 28;
export const LINK_MASK = 0x1ffff;
export const PENDING_BIT = 1 << PENDING;
export const MASKED_BIT = 1 << MASKED;
export const LINKED_BIT = 1 << LINKED;
export const BUSY_BIT = 1 << BUSY;

/** struct evtchn_fifo_control_block: u32 ready @0, u32 rsvd @4, u32 head[16] @8; 72 bytes. */
export const CONTROL_BLOCK = Object.freeze({ READY: 0, HEAD: 8, SIZE: 72 });
