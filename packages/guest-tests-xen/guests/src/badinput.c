/*
 * Bad guest input from real guest code: every call below must get Xen's errno, the host must
 * not throw, and (between the BEGIN and END sync points) nothing in RAM outside this guest's
 * own bss and stacks may change — the test compares RAM before and after. Each result goes to
 * the test as REPORT(CASE, id, rc); the expected errno per id is in src/badinput.test.ts.
 */
#include "xen.h"

enum { TAG_FAIL = 0xdead, TAG_CASE = 1, TAG_BEGIN = 2, TAG_END = 3, TAG_RANGE = 4 };
extern char __bss_start[], __stacks_end[];

#define RAM_END 0x41000000UL
#define R(id, expr) test_report(TAG_CASE, (id), (u64)(s64)(expr))
#define HC(op, a0, a1, a2) xen_hypercall((op), (a0), (a1), (a2), 0, 0)
#define EV(cmd, ptr) HC(__HYPERVISOR_event_channel_op, (cmd), (u64)(ptr), 0)

static struct xen_add_to_physmap xatp;
static struct vcpu_register_vcpu_info rvi;
static struct evtchn_init_control ic;
static struct evtchn_expand_array ea;
static struct evtchn_set_priority sp;
static struct evtchn_port pt;
static struct evtchn_bind_ipi bi;
static struct evtchn_bind_virq bv;
static struct evtchn_bind_interdomain bd;
static struct evtchn_alloc_unbound au;
static struct evtchn_status st;
static struct evtchn_bind_vcpu bc;

static s64 physmap(u16 dom, u32 space, u64 idx, u64 gpfn, void *at)
{
    xatp = (struct xen_add_to_physmap){ .domid = dom, .space = space, .idx = idx, .gpfn = gpfn };
    return HC(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, at ? (u64)at : (u64)&xatp, 0);
}
static s64 vcpuinfo(u32 vcpu, u64 mfn, u32 off, void *at)
{
    rvi = (struct vcpu_register_vcpu_info){ .mfn = mfn, .offset = off };
    return HC(__HYPERVISOR_vcpu_op, VCPUOP_register_vcpu_info, vcpu, at ? (u64)at : (u64)&rvi);
}
static s64 init(u64 gfn, u32 off, u32 vcpu, void *at)
{
    ic = (struct evtchn_init_control){ .control_gfn = gfn, .offset = off, .vcpu = vcpu };
    return EV(EVTCHNOP_init_control, at ? (u64)at : (u64)&ic);
}
static s64 expand(u64 gfn) { ea.array_gfn = gfn; return EV(EVTCHNOP_expand_array, &ea); }
static s64 prio(u32 port, u32 p) { sp = (struct evtchn_set_priority){ port, p }; return EV(EVTCHNOP_set_priority, &sp); }
static s64 portop(u32 cmd, u32 port) { pt.port = port; return EV(cmd, &pt); }

int main(u64 x0)
{
    (void)x0;
    test_report(TAG_RANGE, (u64)__bss_start, (u64)__stacks_end);
    test_sync(TAG_BEGIN, 0, 0);

    /* memory_op: XENMEM_add_to_physmap(shared_info) */
    R(1, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, 0x10, 0));              /* gfn not RAM */
    R(2, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, RAM_END >> 12, 0));     /* first frame past RAM */
    R(3, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, 0x40800, (void *)0x1000)); /* arg not RAM */
    R(4, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, 0x40800, (void *)(RAM_END - 16))); /* arg straddles the end */
    R(5, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 1, 0x40800, 0));           /* idx != 0 */
    R(6, physmap(DOMID_SELF, 1 /* gmfn */, 0, 0x40800, 0));                      /* other space */
    R(7, physmap(9, XENMAPSPACE_shared_info, 0, 0x40800, 0));                     /* unknown domain */
    R(8, physmap(DOMID_SELF, XENMAPSPACE_shared_info, 0, 0x40800, (void *)GICC_BASE)); /* arg in MMIO */
    R(9, HC(__HYPERVISOR_memory_op, 99, (u64)&xatp, 0));                          /* other sub-op */

    /* vcpu_op: VCPUOP_register_vcpu_info */
    R(20, vcpuinfo(7, 0x40801, 0, 0));                  /* no such vCPU */
    R(21, vcpuinfo(0xffffffffu, 0x40801, 0, 0));
    R(22, vcpuinfo(0, 0x10, 0, 0));                     /* frame not RAM */
    R(23, vcpuinfo(0, 0x40801, 4090, 0));               /* crosses the page */
    R(24, vcpuinfo(0, 0x40801, 4, 0));                  /* not 8-aligned */
    R(25, vcpuinfo(0, 0x40801, 0, (void *)0x8));        /* arg not RAM */
    R(26, vcpuinfo(0, 0xfffffffffffffUL, 0, 0));        /* mfn << 12 overflows */
    R(27, HC(__HYPERVISOR_vcpu_op, 99, 0, 0));          /* other cmd (Arm: -EINVAL) */

    /* event_channel_op: pointers, ports, vCPUs, domains */
    R(40, EV(EVTCHNOP_send, 0x0));                      /* arg not RAM */
    R(41, EV(EVTCHNOP_send, RAM_END - 2));              /* 4-byte arg straddles the end */
    R(42, EV(EVTCHNOP_send, 0x09000000));               /* arg in the UART */
    R(43, portop(EVTCHNOP_send, 0));                    /* port 0 is reserved */
    R(44, portop(EVTCHNOP_send, 5000));
    R(45, portop(EVTCHNOP_send, 0xffffffffu));
    R(46, portop(EVTCHNOP_close, 0));
    R(47, portop(EVTCHNOP_close, 63));                  /* exists (bucket 0), free */
    R(48, portop(EVTCHNOP_unmask, 63));                 /* free but valid: 0 */
    R(49, portop(EVTCHNOP_unmask, 64));                 /* past the bucket */
    bi = (struct evtchn_bind_ipi){ .vcpu = 1 };
    R(50, EV(EVTCHNOP_bind_ipi, &bi));                  /* 1-vCPU VM */
    bv = (struct evtchn_bind_virq){ .virq = 24, .vcpu = 0 };
    R(51, EV(EVTCHNOP_bind_virq, &bv));
    bv = (struct evtchn_bind_virq){ .virq = 0, .vcpu = 3 };
    R(52, EV(EVTCHNOP_bind_virq, &bv));
    bd = (struct evtchn_bind_interdomain){ .remote_dom = 9, .remote_port = 1 };
    R(53, EV(EVTCHNOP_bind_interdomain, &bd));
    bd = (struct evtchn_bind_interdomain){ .remote_dom = DOMID_SELF, .remote_port = 77 };
    R(54, EV(EVTCHNOP_bind_interdomain, &bd));
    au = (struct evtchn_alloc_unbound){ .dom = 9, .remote_dom = DOMID_SELF };
    R(55, EV(EVTCHNOP_alloc_unbound, &au));
    st = (struct evtchn_status){ .dom = 9, .port = 1 };
    R(56, EV(EVTCHNOP_status, &st));
    st = (struct evtchn_status){ .dom = DOMID_SELF, .port = 5000 };
    R(57, EV(EVTCHNOP_status, &st));
    bc = (struct evtchn_bind_vcpu){ .port = 1, .vcpu = 2 };
    R(58, EV(EVTCHNOP_bind_vcpu, &bc));
    R(59, EV(99, &pt));                                 /* unknown cmd */
    struct evtchn_reset rs = { DOMID_SELF };
    R(60, EV(14, &rs));                                 /* reset_cont, none in progress */
    R(61, xen_hypercall(0x100000020UL, EVTCHNOP_send, (u64)&pt, 0, 0, 0)); /* x16 high bits */
    R(62, xen_hypercall(99, 0, 0, 0, 0, 0));            /* no such hypercall */

    /* FIFO before init: every failed init leaves no FIFO state (XSA-188) */
    R(80, init(CONTROL_GPA >> 12, 0, 3, 0));            /* no such vCPU */
    R(81, init(CONTROL_GPA >> 12, 4025, 0, 0));         /* offset > 4096 - 72 */
    R(82, init(CONTROL_GPA >> 12, 4, 0, 0));            /* offset not 8-aligned */
    R(83, init(0x10, 0, 0, 0));                         /* gfn not RAM */
    R(84, init((u64)-2, 0, 0, 0));                      /* XTF xsa-188 */
    R(85, expand(ARRAY_GPA >> 12));                     /* FIFO not active: -EOPNOTSUPP */
    R(86, init(CONTROL_GPA >> 12, 0, 0, (void *)(RAM_END - 8))); /* arg straddles the end */
    R(87, prio(1, 0));                                  /* 2-level: -ENOSYS */
    test_sync(TAG_END, 0, 0);

    /* a valid init (writes the control page and link_bits), then more bad input */
    volatile u64 *cb = (volatile u64 *)CONTROL_GPA;
    for (int i = 0; i < 512; i++) cb[i] = 0;
    CHECK(init(CONTROL_GPA >> 12, 0, 0, 0) == 0 && ic.link_bits == 17);
    test_sync(TAG_BEGIN, 1, 0);
    R(100, init(CONTROL_GPA >> 12, 0, 0, 0));           /* this vCPU has a block */
    R(101, expand(0x10));                               /* gfn not RAM */
    R(102, expand(RAM_END >> 12));
    R(103, prio(5000, 0));                              /* no such port */
    R(104, prio(63, 0));                                /* free port: -EACCES */
    R(105, EV(EVTCHNOP_set_priority, RAM_END - 4));     /* arg straddles the end */
    R(106, EV(EVTCHNOP_expand_array, 0x08010000));      /* arg in the GIC */
    u32 p;
    CHECK(alloc_unbound(DOMID_SELF, &p) == 0 && p == 1);
    R(107, prio(p, 16));                                /* priority > 15 */
    R(108, portop(EVTCHNOP_send, 5000));
    test_sync(TAG_END, 1, 0);
    printf("badinput: done\n");
    psci_system_off();
}
