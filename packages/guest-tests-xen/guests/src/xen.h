/*
 * Xen-on-Arm guest side for Plugvisor's event-channel tests: the public ABI (hypercall numbers,
 * argument structs, shared_info/vcpu_info, FIFO event words and control block) exactly as
 * xen/include/public/ headers lay it out for arm64, and the pieces of Linux's drivers/xen/events
 * these guests mirror (events_fifo.c, events_2l.c, events_base.c's upcall loop).
 */
#ifndef XEN_TEST_H
#define XEN_TEST_H
#include "guest.h"

typedef unsigned short u16;
typedef int s32;

#define __HYPERVISOR_memory_op 12
#define __HYPERVISOR_xen_version 17
#define __HYPERVISOR_vcpu_op 24
#define __HYPERVISOR_event_channel_op 32

#define XENMEM_add_to_physmap 7
#define XENMAPSPACE_shared_info 0
#define XENMAPSPACE_dev_mmio 5
#define VCPUOP_register_vcpu_info 10

#define EVTCHNOP_bind_interdomain 0
#define EVTCHNOP_bind_virq 1
#define EVTCHNOP_close 3
#define EVTCHNOP_send 4
#define EVTCHNOP_status 5
#define EVTCHNOP_alloc_unbound 6
#define EVTCHNOP_bind_ipi 7
#define EVTCHNOP_bind_vcpu 8
#define EVTCHNOP_unmask 9
#define EVTCHNOP_reset 10
#define EVTCHNOP_init_control 11
#define EVTCHNOP_expand_array 12
#define EVTCHNOP_set_priority 13

#define DOMID_SELF 0x7ff0
#define GUEST_EVTCHN_PPI 31

#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define ENXIO 6
#define EACCES 13
#define EFAULT 14
#define EBUSY 16
#define EINVAL 22
#define ENOSPC 28
#define ENOSYS 38
#define EOPNOTSUPP 95

struct xen_add_to_physmap { u16 domid; u16 size; u32 space; u64 idx; u64 gpfn; };
struct vcpu_register_vcpu_info { u64 mfn; u32 offset; u32 rsvd; };
struct evtchn_alloc_unbound { u16 dom; u16 remote_dom; u32 port; };
struct evtchn_bind_interdomain { u16 remote_dom; u16 pad; u32 remote_port; u32 local_port; };
struct evtchn_bind_virq { u32 virq; u32 vcpu; u32 port; };
struct evtchn_bind_ipi { u32 vcpu; u32 port; };
struct evtchn_port { u32 port; }; /* close, send, unmask */
struct evtchn_bind_vcpu { u32 port; u32 vcpu; };
struct evtchn_status { u16 dom; u16 pad; u32 port; u32 status; u32 vcpu; u32 u0; u32 u1; };
struct evtchn_reset { u16 dom; };
struct evtchn_init_control { u64 control_gfn; u32 offset; u32 vcpu; u8 link_bits; u8 pad[7]; };
struct evtchn_expand_array { u64 array_gfn; };
struct evtchn_set_priority { u32 port; u32 priority; };

/* arm64 layouts: vcpu_info 48 bytes, shared_info.evtchn_pending @48, evtchn_mask @560. */
struct vcpu_info { u8 evtchn_upcall_pending; u8 pad0[7]; u64 evtchn_pending_sel; u8 time[32]; };
struct shared_info { struct vcpu_info vcpu_info[1]; u64 evtchn_pending[64]; u64 evtchn_mask[64]; u32 wc_version; u32 wc_sec; u32 wc_nsec; u32 wc_sec_hi; };

/* FIFO */
#define EVTCHN_FIFO_PENDING 31
#define EVTCHN_FIFO_MASKED 30
#define EVTCHN_FIFO_LINKED 29
#define EVTCHN_FIFO_BUSY 28
#define EVTCHN_FIFO_LINK_MASK 0x1ffffu
#define EVTCHN_FIFO_MAX_QUEUES 16
#define EVTCHN_FIFO_NR_CHANNELS (1u << 17)
#define EVENT_WORDS_PER_PAGE 1024
#define MAX_EVENT_ARRAY_PAGES 128
struct evtchn_fifo_control_block { u32 ready; u32 rsvd; u32 head[EVTCHN_FIFO_MAX_QUEUES]; };

/* Guest-physical layout used by every test guest (RAM is 16 MiB at 0x4000_0000). */
#define SHINFO_GPA 0x40800000UL
#define VCPU_INFO_GPA 0x40801000UL /* vCPU n's vcpu_info at + 64 n */
#define CONTROL_GPA 0x40802000UL   /* vCPU n's control block page at + 4096 n (4 vCPUs) */
#define ARRAY_GPA 0x40810000UL     /* event-array page k at + 4096 k (128 pages) */
#define MAX_VCPUS 4

/* Test service calls (packages/guest-tests-xen/src/service.ts), SMCCC fast calls. */
#define TEST_PARAM 0xC6000F10u  /* (index) -> value */
#define TEST_REPORT 0xC6000F11u /* (tag, a, b) */
#define TEST_SYNC 0xC6000F12u   /* (tag, a, b) -> value; the test may raise events or pause */
#define TEST_BLOCK 0xC6000F13u  /* (u32 *addr, value): park until an interrupt unless *addr >= value */

/* hypercalls */
s64 evtchn_op(u32 cmd, void *arg);
s64 map_shared_info(u64 gpa);
s64 register_vcpu_info(u32 vcpu, u64 gpa);
s64 alloc_unbound(u16 remote_dom, u32 *port);
s64 bind_interdomain(u16 remote_dom, u32 remote_port, u32 *port);
s64 bind_ipi(u32 vcpu, u32 *port);
s64 evtchn_send(u32 port);
s64 evtchn_close(u32 port);
s64 evtchn_unmask_hypercall(u32 port);
s64 evtchn_reset(u16 dom);
s64 set_priority(u32 port, u32 prio);

/* The ABI in use (Linux's evtchn_ops): FIFO after a successful probe, else 2-level. */
extern int fifo_active;
/* Linux's xen_evtchn_fifo_init() probe on the boot vCPU: 0 = FIFO, else the init_control rc. */
s64 fifo_probe(void);
s64 fifo_init_control(u32 vcpu);
s64 fifo_expand_array(void);
extern int fifo_pages;
void evtchn_mask(u32 port);
void evtchn_unmask(u32 port); /* Linux's unmask: FIFO clear_masked_cond / 2-level clear + hypercall if pending */
int evtchn_is_pending(u32 port);
/* Linux's xen_evtchn_2l_init / after reset: forget FIFO state, handle 2-level. */
void use_2level(void);

/* Called for every event delivered (after the ack cleared PENDING), IRQs masked. */
extern void (*evtchn_handler)(u32 vcpu, u32 port);
/* Optional: called with every acknowledged INTID before it is handled (IRQs masked). */
extern void (*irq_hook)(u32 intid);
extern volatile u32 upcalls[MAX_VCPUS], spurious_irqs;
extern volatile u32 busy_retries; /* clear_masked_cond found BUSY set (instrumentation) */
/*
 * Waits until *p >= v with IRQs enabled. TEST_BLOCK checks the word and parks the vCPU in one
 * step (as Xen's SCHEDOP_block), so an event delivered between the check and the park is not
 * lost: the machine delivers IRQs at slice boundaries, so WFI with IRQs masked would not see
 * the unmask in time (machine-arm64 README).
 */
void block_until(volatile u32 *p, u32 v);
volatile u32 *event_word_of(u32 port);
static inline u32 this_vcpu(void) { return (u32)(read_mpidr() & 0xff); }

u64 test_param(u64 index);
void test_report(u64 tag, u64 a, u64 b);
u64 test_sync(u64 tag, u64 a, u64 b);
#define CHECK(cond) do { if (!(cond)) { printf("CHECK FAILED line %d: %s\n", __LINE__, #cond); test_report(0xdead, __LINE__, 0); psci_system_off(); } } while (0)

#endif
