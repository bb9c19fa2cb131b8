/*
 * Ballooning from real guest code, as Linux's drivers/xen/balloon.c and mem-reservation.c do it:
 * XENMEM_decrease_reservation hands pages back, XENMEM_populate_physmap takes them back (zeroed),
 * XENMEM_current/maximum_reservation count them. The guest checks from its own side which pages
 * are gone: a load from one takes a data abort (EC 0x25) with FAR the address and ELR the load
 * instruction, and its handler steps over it. Bad reservations get Xen's result (extents done,
 * never an errno). Reports: TAG_CASE (id, value) for the test to compare; TAG_FAIL on a CHECK.
 */
#include "xen.h"

enum { TAG_FAIL = 0xdead, TAG_CASE = 1 };

#define XENMEM_increase_reservation 0
#define XENMEM_decrease_reservation 1
#define XENMEM_current_reservation 3
#define XENMEM_maximum_reservation 4
#define XENMEM_populate_physmap 6

/* xen/include/public/memory.h, arm64: 32 bytes. */
struct xen_memory_reservation { u64 extent_start; u64 nr_extents; u32 extent_order; u32 mem_flags; u16 domid; };
struct xen_memory_domain { u16 domid; };

#define NPAGES 320 /* more than a leg's 256 pages: the decrease is preempted and re-issued */
static u8 area[NPAGES][4096] __attribute__((aligned(4096)));
static u64 list[NPAGES];
static struct xen_memory_reservation resv;
static struct xen_memory_domain md = { DOMID_SELF };
static volatile u64 faults, far, elr;
extern char probe_load[];

/* The test service's report and sync calls (src/service.ts); this guest links no xenlib. */
void test_report(u64 tag, u64 a, u64 b) { smccc_hvc(TEST_REPORT, tag, a, b, 0); }
u64 test_sync(u64 tag, u64 a, u64 b) { struct smccc_res r; smccc_hvc(TEST_SYNC, tag, a, b, &r); return r.a0; }
static inline u64 read_sp(void) { u64 v; __asm__ volatile("mov %0, sp" : "=r"(v)); return v; }

#define R(id, v) test_report(TAG_CASE, (id), (u64)(s64)(v))

void handle_exception(u64 kind, struct exc_frame *f)
{
    u64 esr = read_esr();
    if (kind == EXC_CUR_SPX_SYNC && (esr >> 26) == 0x25) {
        __asm__ volatile("mrs %0, far_el1" : "=r"(far));
        elr = f->elr;
        faults++;
        f->elr += 4;
        return;
    }
    printf("unexpected exception kind %lu ESR %lx ELR %lx\n", kind, esr, f->elr);
    test_report(TAG_FAIL, 0, esr);
    psci_system_off();
}

/* One byte load at a known instruction: 1 if it faulted (FAR and ELR checked), else 0. */
static __attribute__((noinline)) u32 gone(const volatile u8 *p)
{
    u64 before = faults;
    __asm__ volatile("mov x1, %0\n\t.global probe_load\nprobe_load:\n\tldrb w2, [x1]" : : "r"(p) : "x1", "x2", "memory");
    if (faults == before) return 0;
    CHECK(far == (u64)p && elr == (u64)probe_load);
    return 1;
}

static s64 memop(u32 op, void *arg) { return xen_hypercall(__HYPERVISOR_memory_op, op, (u64)arg, 0, 0, 0); }

static s64 reserve(u32 op, u64 *extents, u64 nr, u32 order, u32 flags, u16 domid)
{
    resv = (struct xen_memory_reservation){ (u64)extents, nr, order, flags, domid };
    return memop(op, &resv);
}

int main(u64 x0)
{
    (void)x0;
    u64 i, n;
    for (i = 0; i < NPAGES; i++) {
        area[i][0] = (u8)(i + 1);
        area[i][4095] = 0x5a;
        list[i] = (u64)area[i] >> 12;
    }
    s64 max = memop(XENMEM_maximum_reservation, &md);
    R(1, max);
    R(2, memop(XENMEM_current_reservation, &md));

    /*
     * Bad reservations: each answers the extents done, 0 here, and removes nothing. The test
     * copies all of RAM at sync 1 and compares at sync 2: only this guest's own buffers (resv,
     * and its stack near SP) may differ.
     */
    test_sync(1, (u64)&resv, read_sp());
    R(10, reserve(XENMEM_decrease_reservation, list, 2, 10, 0, DOMID_SELF));       /* order 10 > 9 */
    R(11, reserve(XENMEM_decrease_reservation, list, 2, 0, 0, 0));                 /* dom0 */
    R(12, reserve(XENMEM_decrease_reservation, list, 2, 0, 0, 7));                 /* no such domain */
    R(13, reserve(XENMEM_decrease_reservation, (u64 *)0x1000, 2, 0, 0, DOMID_SELF)); /* extent array not RAM */
    R(14, xen_hypercall(__HYPERVISOR_memory_op, XENMEM_decrease_reservation, 0x1000, 0, 0, 0)); /* struct not RAM */
    R(15, reserve(XENMEM_increase_reservation, 0, 1, 0, 0, DOMID_SELF));           /* at max_pages */
    R(16, xen_hypercall(__HYPERVISOR_memory_op, XENMEM_current_reservation | (1 << 6), (u64)&md, 0, 0, 0)); /* start extent on a plain sub-op */
    test_sync(2, (u64)&resv, read_sp());
    for (i = 0, n = 0; i < NPAGES; i++) n += gone(area[i]);
    R(17, n);

    /* Balloon out every page of the area: one call, preempted after 256 pages, re-issued by the HVC. */
    R(20, reserve(XENMEM_decrease_reservation, list, NPAGES, 0, 0, DOMID_SELF));
    R(21, memop(XENMEM_current_reservation, &md));
    for (i = 0, n = 0; i < NPAGES; i++) n += gone(&area[i][i & 4095]);
    R(22, n);

    /* Back in: the odd pages, then the even ones; each comes back zeroed. */
    for (i = 0; i < NPAGES / 2; i++) list[i] = ((u64)area[2 * i + 1] >> 12);
    R(30, reserve(XENMEM_populate_physmap, list, NPAGES / 2, 0, 0, DOMID_SELF));
    for (i = 0, n = 0; i < NPAGES; i++) n += gone(area[i]) << (i & 1);
    R(31, n); /* only even pages still fault: NPAGES / 2, none weighted 2 */
    for (i = 0; i < NPAGES / 2; i++) list[i] = ((u64)area[2 * i] >> 12);
    R(32, reserve(XENMEM_populate_physmap, list, NPAGES / 2, 0, 0, DOMID_SELF));
    for (i = 0, n = 0; i < NPAGES; i++) n += gone(area[i]) + area[i][0] + area[i][4095];
    R(33, n); /* no fault, every byte zero */
    R(34, memop(XENMEM_current_reservation, &md) == max);
    printf("reservation: done\n");
    psci_system_off();
}
