/*
 * Hypercall pointers are guest virtual addresses, as a Linux guest passes them: Xen on Arm copies
 * every argument through the calling vCPU's translation (xen/arch/arm/guestcopy.c:
 * copy_from_guest / copy_to_guest → translate_get_page → get_page_from_gva). The guest turns its
 * MMU on with one level-1 table (4 KiB granule, 39-bit VAs): 0..1 GiB Device (the UART, the GIC),
 * 1..2 GiB its RAM identity-mapped, 2..3 GiB the same RAM again (ALIAS: VA = PA + 1 GiB, where
 * no RAM is physically), 3..4 GiB unmapped. Each call is made with the alias of an argument that
 * lives in RAM — a hypervisor reading the pointer as physical finds no RAM there (-EFAULT, or 0
 * extents) — and reads the result back through the identity mapping. Reports TAG_CASE (id, value).
 */
#include "xen.h"
#include "mmu-alias.h"

#define UNMAPPED 0xc0000000UL

#define XENVER_extraversion 1
#define XENMEM_decrease_reservation 1
#define XENMEM_maximum_reservation 4
#define XENMEM_populate_physmap 6

enum { TAG_CASE = 1 };
#define R(id, v) test_report(TAG_CASE, (id), (u64)(s64)(v))
#define VA(p) ((u64)(p) + RAM_ALIAS_OFFSET)

struct xen_memory_reservation { u64 extent_start; u64 nr_extents; u32 extent_order; u32 mem_flags; u16 domid; };
struct xen_memory_domain { u16 domid; };

static u64 l1[512] __attribute__((aligned(4096)));
static u8 area[2][4096] __attribute__((aligned(4096)));
static u64 list[2];
static struct xen_memory_reservation resv;
static struct xen_memory_domain md = { DOMID_SELF };
static char ver_phys[16], ver_virt[16];
static struct evtchn_alloc_unbound au;


static s64 memop(u64 cmd, u64 arg) { return xen_hypercall(__HYPERVISOR_memory_op, cmd, arg, 0, 0, 0); }

static s64 reserve(u32 op)
{
    resv = (struct xen_memory_reservation){ VA(list), 2, 0, 0, DOMID_SELF };
    return memop(op, VA(&resv));
}

int main(u64 x0)
{
    (void)x0;
    mmu_on_ram_alias(l1);
    for (int i = 0; i < 2; i++) {
        area[i][0] = 0x77;
        list[i] = (u64)area[i] >> 12; /* gfns are physical frame numbers, never translated */
    }
    R(1, memop(XENMEM_maximum_reservation, VA(&md)));         /* the RAM in pages */
    R(2, memop(XENMEM_maximum_reservation, UNMAPPED + 0x100)); /* -EFAULT */
    R(3, memop(XENMEM_maximum_reservation, (u64)&md));        /* the identity mapping: the same */

    /* A balloon whose struct and extent array are both passed at their alias. */
    R(10, reserve(XENMEM_decrease_reservation));               /* 2 extents */
    R(11, reserve(XENMEM_populate_physmap));                   /* 2, zeroed */
    R(12, area[0][0] + area[1][0]);                            /* 0 */

    /* copy_to_guest through the alias lands in the same RAM the identity mapping reads. */
    R(20, xen_hypercall(__HYPERVISOR_xen_version, XENVER_extraversion, (u64)ver_phys, 0, 0, 0));
    R(21, xen_hypercall(__HYPERVISOR_xen_version, XENVER_extraversion, VA(ver_virt), 0, 0, 0));
    int same = ver_virt[0] != 0;
    for (int i = 0; i < 16; i++) same &= ver_phys[i] == ver_virt[i];
    R(22, same);
    R(23, xen_hypercall(__HYPERVISOR_xen_version, XENVER_extraversion, UNMAPPED, 0, 0, 0)); /* -EFAULT */

    /* An event-channel struct in and out through the alias. */
    au = (struct evtchn_alloc_unbound){ .dom = DOMID_SELF, .remote_dom = 0, .port = 0 };
    R(30, xen_hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, VA(&au), 0, 0, 0));
    R(31, au.port);
    psci_system_off();
}
