/*
 * Plugvisor's hypercall fuzz guest (aarch64, EL1, MMU off, IRQs masked throughout).
 *
 * Every vCPU issues seeded random and boundary hypercalls across the SMCCC surface (HVC #0 and
 * SMC #0: the arch, standard (PSCI, TRNG), standard-hypervisor (PV time) and vendor-hypervisor
 * (KVM) ranges, known ids and unknown ones) and the Xen surface (HVC #0xEA1, number in x16),
 * and checks after each call:
 *   - registers: SMCCC (DEN0028, "SMC64/HVC64": results in x0..x3 for every call here, x4..x17
 *     preserved since SMCCC v1.1 — Linux include/linux/arm-smccc.h __arm_smccc_1_1 lists only
 *     x0..x3 as outputs; x18..x30 and sp preserved); Xen (xen/include/public/arch-arm.h,
 *     "Hypercall calling convention": the result in x0; the call may clobber x16 and the
 *     argument registers it takes, x1..x4; everything else preserved);
 *   - the return value is one the ABI allows for that call (SMCCC NOT_SUPPORTED (-1) for an id
 *     nobody implements, a documented value otherwise; Xen: a value the hypercall returns, or
 *     -errno with errno from xen/include/public/errno.h);
 *   - memory: every buffer passed by pointer sits in a slot filled with guard bytes, and nothing
 *     in the slot outside [buf, buf + the size the ABI lets the hypervisor write] may change; the
 *     rest of RAM (but this image, the stacks, the parameter block and the window of pages handed
 *     to the hypervisor as shared_info, vcpu_info, FIFO control blocks and event arrays) holds a
 *     canary pattern, checked a slice after every call and whole at the end; the image's code
 *     and read-only data are checksummed at start and end.
 * A violation prints one line "FUZZ-VIOLATION cpu=C n=N kind=K ..." (the first 64 per vCPU;
 * all are counted). Each vCPU ends with "FUZZ-DONE cpu=C calls=N violations=V digest=D", where
 * D hashes the results that do not depend on time, entropy or (with several vCPUs) the other
 * vCPUs; vCPU 0 then checks the whole canary, prints "FUZZ-END ..." and stops with PSCI
 * SYSTEM_OFF.
 *
 * The harness (packages/fuzz/src/harness.ts) writes struct params at PARAMS_GPA before boot:
 * the seed, the calls per vCPU (0: until it sets `stop`), the vCPU count, RAM's end, and the
 * PV-time structure base it configured (0: none).
 */
#include "guest.h"

typedef unsigned short u16;
typedef int s32;

#define PARAMS_GPA 0x40800000UL
#define PARAMS_MAGIC 0x31305a5a55465650UL /* "PVFUZZ01" */
#define SHARED_LO 0x40801000UL            /* pages the fuzzer may hand to the hypervisor */
#define SHARED_HI 0x40900000UL
#define SLOT_BASE 0x40900000UL            /* per-vCPU guarded buffer slots */
#define SLOT_SIZE 0x1000UL
#define SLOT_GUARD 0x100UL                /* the buffer starts at slot + SLOT_GUARD + 0..63 */
#define RESERVED_HI 0x40a00000UL          /* params, shared window and slots end here */
#define MAX_VCPUS 8
#define STACK_SIZE 16384UL
#define MAX_REPORTS 64

struct params {
    u64 magic;
    u64 seed;
    u64 calls;        /* per vCPU; 0 = until stop */
    u64 vcpus;
    u64 ram_end;
    u64 pvtime_base;  /* vCPU k's stolen-time structure at base + 64 k (0: none configured) */
    volatile u64 stop;
    u64 flags;
};
#define P ((volatile struct params *)PARAMS_GPA)

struct fuzz_regs { u64 in[31]; u64 out[31]; u64 sp_in; u64 sp_out; };
void fuzz_hvc0(struct fuzz_regs *r);
void fuzz_smc0(struct fuzz_regs *r);
void fuzz_xen(struct fuzz_regs *r);

extern char _start[], __bss_start[], __stacks_start[], vectors[];

struct cpu {
    u64 rng;
    u64 calls;
    u64 violations;
    u64 digest;
    u64 canary_pos;
    u64 smccc_ok, xen_ok; /* calls that succeeded (x0 >= 0, not NOT_SUPPORTED): coverage */
    u32 reported;
    u32 id;
    struct fuzz_regs r;
} __attribute__((aligned(64)));

static struct cpu cpus[MAX_VCPUS];
static volatile u32 started[MAX_VCPUS], finished[MAX_VCPUS], all_started;
static volatile u32 print_lock;
static u64 nvcpus, ram_end, canary_seed, code_sum;

/* ---- small helpers ------------------------------------------------------------------------ */

static u64 rnd(struct cpu *c) /* splitmix64 */
{
    u64 z = (c->rng += 0x9e3779b97f4a7c15UL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}
static u64 below(struct cpu *c, u64 n) { return n ? rnd(c) % n : 0; }
static u64 pick(struct cpu *c, const u64 *v, u64 n) { return v[below(c, n)]; }
#define PICK(c, arr) pick((c), (arr), sizeof(arr) / sizeof((arr)[0]))

static void lock(void)
{
    while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
        ;
}
static void unlock(void) { __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE); }

static void mix(struct cpu *c, u64 v)
{
    c->digest = (c->digest ^ v) * 0x100000001b3UL;
    c->digest ^= c->digest >> 29;
}

static inline u64 canary_at(u64 a) /* the canary word at address a */
{
    u64 z = (a ^ canary_seed) * 0x9e3779b97f4a7c15UL;
    return z ^ (z >> 32);
}
#define GUARD_BYTE(c, off) ((u8)(0xa5 ^ (c)->id ^ ((off) * 13)))

/* ---- reporting ---------------------------------------------------------------------------- */

enum conduit { C_HVC, C_SMC, C_XEN };
static const char *const conduit_name[] = { "hvc", "smc", "xen" };

static int begin_report(struct cpu *c, const char *kind, enum conduit how)
{
    c->violations++;
    if (c->reported >= MAX_REPORTS)
        return 0;
    c->reported++;
    lock();
    printf("FUZZ-VIOLATION cpu=%u n=%lu kind=%s conduit=%s", c->id, c->calls, kind, conduit_name[how]);
    if (how == C_XEN)
        printf(" op=%lu", c->r.in[16]);
    printf(" x0=%lx x1=%lx x2=%lx x3=%lx", c->r.in[0], c->r.in[1], c->r.in[2], c->r.in[3]);
    return 1;
}
static void end_report(void)
{
    uart_putc('\n');
    unlock();
}

static void report_ret(struct cpu *c, enum conduit how, const char *why)
{
    if (!begin_report(c, "ret", how))
        return;
    printf(" -> %lx %lx %lx %lx: %s", c->r.out[0], c->r.out[1], c->r.out[2], c->r.out[3], why);
    end_report();
}

/* ---- registers ---------------------------------------------------------------------------- */

/* Bit n set: xn may change on this call. */
static void check_regs(struct cpu *c, enum conduit how, u32 may_change)
{
    u32 bad = 0;
    for (int i = 0; i < 31; i++)
        if (!(may_change & (1u << i)) && c->r.in[i] != c->r.out[i])
            bad |= 1u << i;
    if (bad && begin_report(c, "reg", how)) {
        for (int i = 0; i < 31; i++)
            if (bad & (1u << i))
                printf(" x%d:%lx->%lx", i, c->r.in[i], c->r.out[i]);
        end_report();
    }
    if (c->r.sp_in != c->r.sp_out && begin_report(c, "reg", how)) {
        printf(" sp:%lx->%lx", c->r.sp_in, c->r.sp_out);
        end_report();
    }
}

/* ---- guarded buffers ---------------------------------------------------------------------- */

/*
 * Each vCPU's slot (SLOT_SIZE bytes) holds its guard word over and over; a buffer is placed
 * at SLOT_GUARD + 0..63 bytes (unaligned sometimes), its bytes random or the argument struct.
 * After the call, every byte from buf - SLOT_GUARD to buf + len + SLOT_GUARD outside the
 * buffer must still be a guard byte; the whole slot is checked every 64 calls.
 */
struct buf { u8 *slot; u8 *p; u64 len; };

static u64 guard_word(struct cpu *c) { return 0xa55a3cc396690ff0UL ^ ((u64)c->id * 0x0101010101010101UL); }
static u8 guard_byte(struct cpu *c, u64 off) { return (u8)(guard_word(c) >> (8 * (off & 7))); }
static u8 *slot_of(struct cpu *c) { return (u8 *)(SLOT_BASE + c->id * SLOT_SIZE); }

static void slot_fill(struct cpu *c, u64 lo, u64 hi) /* guard bytes over [lo, hi) of the slot */
{
    u8 *s = slot_of(c);
    u64 g = guard_word(c);
    while (lo < hi && (lo & 7))
        s[lo] = guard_byte(c, lo), lo++;
    for (; lo + 8 <= hi; lo += 8)
        *(u64 *)(s + lo) = g;
    for (; lo < hi; lo++)
        s[lo] = guard_byte(c, lo);
}

static struct buf buf_new(struct cpu *c, u64 len)
{
    struct buf b;
    b.slot = slot_of(c);
    u64 off = SLOT_GUARD + (below(c, 4) == 0 ? below(c, 64) : (below(c, 8) * 8));
    b.p = b.slot + off;
    b.len = len;
    for (u64 i = 0; i < len; i++)
        b.p[i] = (u8)rnd(c);
    return b;
}

/* Checks the slot's bytes in [lo, hi) outside the buffer; reports the first bad one. */
static void slot_check(struct cpu *c, struct buf *b, u64 lo, u64 hi, enum conduit how)
{
    u64 blo = b->p ? (u64)(b->p - b->slot) : 0, bhi = b->p ? blo + b->len : 0;
    u8 *s = slot_of(c);
    u64 g = guard_word(c);
    for (u64 i = lo; i < hi;) {
        if (i >= blo && i < bhi) {
            i = bhi;
            continue;
        }
        if (!(i & 7) && i + 8 <= hi && (i + 8 <= blo || i >= bhi) && *(u64 *)(s + i) == g) {
            i += 8;
            continue;
        }
        if (s[i] != guard_byte(c, i)) {
            if (begin_report(c, "guard", how)) {
                if (b->p)
                    printf(" buf=%lx len=%lu: byte at %lx (buf%s%ld) %x->%x", (u64)b->p, b->len, (u64)(s + i),
                           i < blo ? "-" : "+", (s64)(i < blo ? blo - i : i - blo), guard_byte(c, i), s[i]);
                else
                    printf(" slot byte at %lx %x->%x", (u64)(s + i), guard_byte(c, i), s[i]);
                end_report();
            }
            slot_fill(c, 0, SLOT_SIZE);
            return;
        }
        i++;
    }
}

static void buf_check(struct cpu *c, struct buf *b, enum conduit how)
{
    u64 blo = (u64)(b->p - b->slot);
    slot_check(c, b, blo - SLOT_GUARD, blo + b->len + SLOT_GUARD, how);
    slot_fill(c, blo, blo + b->len);
}

static void put_u16(u8 *p, u16 v) { p[0] = (u8)v; p[1] = (u8)(v >> 8); }
static void put_u32(u8 *p, u32 v) { for (int i = 0; i < 4; i++) p[i] = (u8)(v >> (8 * i)); }
static void put_u64(u8 *p, u64 v) { for (int i = 0; i < 8; i++) p[i] = (u8)(v >> (8 * i)); }

/* ---- canary ------------------------------------------------------------------------------- */

static u64 canary_lo(void) { return (u64)__stacks_start + MAX_VCPUS * STACK_SIZE; }

static int in_canary(u64 a)
{
    return a >= canary_lo() && a < ram_end && !(a >= PARAMS_GPA && a < SHARED_HI) &&
           !(a >= SLOT_BASE && a < SLOT_BASE + MAX_VCPUS * SLOT_SIZE);
}

static void canary_fill(void)
{
    for (u64 a = canary_lo(); a < ram_end; a += 8)
        if (in_canary(a))
            *(volatile u64 *)a = canary_at(a);
}

/* Checks `words` canary words from c->canary_pos on (wrapping); reports the first bad one. */
static void canary_check(struct cpu *c, u64 words, enum conduit how)
{
    for (u64 n = 0; n < words; n++) {
        u64 a = c->canary_pos;
        c->canary_pos += 8;
        if (c->canary_pos >= ram_end)
            c->canary_pos = canary_lo();
        if (!in_canary(a))
            continue;
        u64 v = *(volatile u64 *)a;
        if (v != canary_at(a)) {
            if (begin_report(c, "canary", how)) {
                printf(" at %lx: %lx (expected %lx)", a, v, canary_at(a));
                end_report();
            }
            *(volatile u64 *)a = canary_at(a); /* report each write once */
        }
    }
}

static u64 checksum_image(void)
{
    u64 h = 0;
    for (u64 *p = (u64 *)_start; p < (u64 *)__bss_start; p++)
        h = (h ^ *p) * 0x100000001b3UL;
    return h;
}

/* ---- SMCCC -------------------------------------------------------------------------------- */

#define NOT_SUPPORTED (-1L)
#define INVALID_PARAMETERS (-2L)
#define FID_64 0x40000000u

/* Ids a fuzzer must not call: they power off, reset or suspend the system, or stop or
 * suspend the calling vCPU (PSCI, DEN0022: CPU_SUSPEND, CPU_OFF, SYSTEM_OFF, SYSTEM_RESET,
 * CPU_FREEZE, CPU_DEFAULT_SUSPEND, SYSTEM_SUSPEND, SYSTEM_RESET2, SYSTEM_OFF2; and KVM's PSCI 0.1
 * ids for CPU_SUSPEND and CPU_OFF, arch/arm64/kvm/psci.c). */
static int excluded(u32 fid)
{
    if (fid == 0x95c1ba5e || fid == 0x95c1ba5f) /* KVM's PSCI 0.1 CPU_SUSPEND, CPU_OFF */
        return 1;
    u32 f = fid & ~FID_64;
    if ((f & 0xff000000u) != 0x84000000u)
        return 0;
    switch (f & 0xffffu) {
    case 0x01: case 0x02: case 0x08: case 0x09: case 0x0b: case 0x0c: case 0x0e: case 0x12: case 0x15:
        return 1;
    }
    return 0;
}

static const u32 known_fids[] = {
    0x80000000, 0x80000001, 0x80003fff, 0x80007fff, 0x80008000,                 /* SMCCC arch */
    0x84000000, 0x84000003, 0xc4000003, 0x84000004, 0xc4000004, 0x84000006, 0x8400000a, /* PSCI */
    0x84000050, 0x84000051, 0x84000052, 0x84000053, 0xc4000053,                 /* TRNG */
    0xc5000020, 0xc5000021,                                                     /* PV time */
    0x86000000, 0x86000001, 0x8600ff01,                                         /* KVM vendor, PTP */
};

static const u64 boundary64[] = {
    0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
    0xffffffff, 0x100000000UL, 0x7fffffffffffffffUL, 0x8000000000000000UL, 0xffffffffffffffffUL,
    0xfffffffffffffffeUL, 0x40000000, 0x41000000, 0x09000000, 0x08000000,
};

/* x[from..30]: distinct values per register and per call, from one draw. */
static void fill_rest(struct cpu *c, int from)
{
    u64 x = rnd(c);
    for (int i = from; i < 31; i++)
        c->r.in[i] = x ^ ((u64)i * 0x9e3779b97f4a7c15UL);
}

static u64 arg_value(struct cpu *c)
{
    switch (below(c, 4)) {
    case 0: return PICK(c, boundary64);
    case 1: return below(c, 16);
    case 2: return rnd(c) & 0xffffffffUL;
    default: return rnd(c);
    }
}

static u64 mpidr_arg(struct cpu *c)
{
    static const u64 odd[] = { 0x100, 0x10000, 0x100000000UL, 0x8000000000UL, 0xffffffffUL, 0xffffffffffffffffUL, 0x80000000UL };
    switch (below(c, 3)) {
    case 0: return below(c, nvcpus);
    case 1: return below(c, MAX_VCPUS + 2);
    default: return below(c, 2) ? PICK(c, odd) : rnd(c);
    }
}

static u32 random_fid(struct cpu *c)
{
    static const u32 owners[] = { 0, 4, 5, 6, 1, 2, 3, 0x30, 0x31, 0x3f };
    static const u64 funcs[] = { 0, 1, 2, 3, 4, 5, 6, 7, 0xa, 0x20, 0x21, 0x22, 0x50, 0x51, 0x52, 0x53, 0x54, 0x7f, 0xff00, 0xff01, 0xff02, 0xffff, 0x3fff, 0x7fff, 0x8000 };
    u32 fid;
    do {
        switch (below(c, 4)) {
        case 0: fid = (u32)rnd(c); break;
        case 1: fid = 0x80000000u | (u32)(below(c, 2) ? FID_64 : 0) | (owners[below(c, 10)] << 24) | (u32)(rnd(c) & 0xffff); break;
        default: fid = 0x80000000u | (u32)(below(c, 2) ? FID_64 : 0) | (owners[below(c, 10)] << 24) | (u32)PICK(c, funcs); break;
        }
    } while (excluded(fid));
    return fid;
}

static int is_known(u32 fid)
{
    for (u64 i = 0; i < sizeof(known_fids) / sizeof(known_fids[0]); i++)
        if (known_fids[i] == fid)
            return 1;
    return 0;
}

/* Checks TRNG_RND's random bits: x1..x3 hold bits [3w-1:2w], [2w-1:w], [w-1:0]; bits at or
 * above `n`, and above w in each register, are zero (Arm TRNG firmware interface, DEN0098). */
static int trng_bits_ok(const u64 *out, u64 n, u32 w)
{
    for (int k = 0; k < 3; k++) {
        u64 v = out[3 - k];
        u64 lo = (u64)k * w;
        if (w < 64 && (v >> w))
            return 0;
        if (n <= lo) {
            if (v)
                return 0;
        } else if (n - lo < w && (v >> (n - lo)))
            return 0;
    }
    return 1;
}

static void smccc_one(struct cpu *c)
{
    struct fuzz_regs *r = &c->r;
    u32 fid = below(c, 3) ? known_fids[below(c, sizeof(known_fids) / sizeof(known_fids[0]))] : random_fid(c);
    u64 x0 = fid;
    if (below(c, 16) == 0)
        x0 |= rnd(c) << 32; /* SMCCC: the function id is w0 */
    r->in[0] = x0;
    for (int i = 1; i < 8; i++)
        r->in[i] = arg_value(c);
    fill_rest(c, 8);
    u32 f = fid & ~FID_64;
    /* Meaningful arguments for the calls that take some. */
    switch (fid) {
    case 0x80000001: r->in[1] = below(c, 2) ? known_fids[below(c, sizeof(known_fids) / 4)] : arg_value(c); break;
    case 0x8400000a: r->in[1] = below(c, 2) ? known_fids[below(c, sizeof(known_fids) / 4)] | (below(c, 2) ? 0 : 0x84000000u | (u32)below(c, 0x20)) : arg_value(c); break;
    case 0x84000051: r->in[1] = below(c, 2) ? 0x84000050u + (u32)below(c, 6) + (u32)(below(c, 2) ? FID_64 : 0) : arg_value(c); break;
    case 0xc5000020: r->in[1] = below(c, 2) ? 0xc5000020u + (u32)below(c, 3) : arg_value(c); break;
    case 0x84000053: case 0xc4000053: r->in[1] = below(c, 4) ? below(c, 200) : arg_value(c); break;
    case 0x86000001: r->in[1] = below(c, 2) ? below(c, 3) : arg_value(c); break;
    case 0x84000003: case 0xc4000003:
        r->in[1] = mpidr_arg(c);
        r->in[2] = below(c, 2) ? (u64)secondary_entry : arg_value(c);
        r->in[3] = 0x5eed0000UL | c->id; /* a started vCPU would report this context */
        break;
    case 0x84000004: case 0xc4000004:
        r->in[1] = mpidr_arg(c);
        r->in[2] = below(c, 2) ? below(c, 5) : arg_value(c);
        break;
    }
    enum conduit how = below(c, 8) ? C_HVC : C_SMC;
    if (how == C_HVC)
        fuzz_hvc0(r);
    else
        fuzz_smc0(r);
    c->calls++;
    check_regs(c, how, 0xf);

    const u64 *o = r->out;
    s64 v = (fid & FID_64) ? (s64)o[0] : (s64)(s32)(u32)o[0];
    int ok = 1;
    const char *why = "not a value this call returns";
    u64 dig = (u64)v; /* what enters the digest */
    int known = is_known(fid);
    if (!known || v == NOT_SUPPORTED) {
        /* An id nobody implements: NOT_SUPPORTED (DEN0028 "Unknown Function Identifier"). A
         * known id may be NOT_SUPPORTED too when a build leaves its feature off. */
        if (v != NOT_SUPPORTED) {
            ok = 0;
            why = "unknown function id: expected NOT_SUPPORTED (-1)";
        }
    } else {
        u64 a1 = r->in[1];
        switch (fid) {
        case 0x80000000: ok = (v >> 16) == 1 && v <= 0x1ffff; break;                       /* SMCCC_VERSION 1.x */
        case 0x80000001: ok = v >= -2 && v <= 1; break;                                      /* ARCH_FEATURES */
        case 0x80003fff: case 0x80007fff: case 0x80008000: ok = v == 0; break;               /* WORKAROUND_n */
        case 0x84000000: ok = v == 2 || (v >= 0x10000 && v <= 0x10003); break;              /* PSCI_VERSION */
        case 0x84000003: case 0xc4000003:
            /* Every vCPU is on: ALREADY_ON (-4), INVALID_PARAMETERS (-2) for no such MPIDR,
             * ON_PENDING (-5) or INVALID_ADDRESS (-9); never SUCCESS. */
            /* (SMC32 arguments are 32 bits: KVM narrows them, arch/arm64/kvm/psci.c.) */
            ok = (fid == 0xc4000003 ? a1 : (a1 & 0xffffffffUL)) < nvcpus ? (v == -4 || v == -9) : (v == -2 || v == -9);
            break;
        case 0x84000004: case 0xc4000004: {
            u64 t = fid == 0xc4000004 ? a1 : (a1 & 0xffffffffUL);
            u64 lvl = fid == 0xc4000004 ? r->in[2] : (r->in[2] & 0xffffffffUL);
            ok = v == 0 || v == 1 || v == 2 || v == -2;
            if (t < nvcpus && lvl == 0)
                ok = v == 0; /* ON */
            break;
        }
        case 0x84000006: ok = v >= 0 && v <= 2; break;                                      /* MIGRATE_INFO_TYPE */
        case 0x8400000a: ok = v >= 0 && v <= 3; break;                                      /* PSCI_FEATURES */
        case 0x84000050: ok = v == 0x10000; break;                                           /* TRNG_VERSION 1.0 */
        case 0x84000051: ok = v == 0; break;                                                 /* TRNG_FEATURES */
        case 0x84000052: ok = (u32)o[0] != 0xffffffffu; dig = o[0] ^ o[1] ^ o[2] ^ o[3]; break; /* TRNG_GET_UUID */
        case 0x84000053: case 0xc4000053: {
            u64 max = fid == 0x84000053 ? 96 : 192;
            u32 w = fid == 0x84000053 ? 32 : 64;
            /* KVM reads num_bits as a u32 and refuses only num_bits > max, so 0 gives no bits
             * (arch/arm64/kvm/trng.c kvm_trng_do_rnd); DEN0098 refuses 0 too. */
            u64 n = a1 & 0xffffffffUL;
            if (v == INVALID_PARAMETERS)
                ok = n == 0 || n > max || (a1 >> 32);
            else if (v == -3)
                ok = 1; /* NO_ENTROPY */
            else
                ok = v == 0 && n <= max && trng_bits_ok(o, n, w);
            if (!ok)
                why = "TRNG_RND: bad status or bits set above num_bits";
            break;
        }
        case 0xc5000020: ok = v == 0; break;
        case 0xc5000021:
            ok = P->pvtime_base && (u64)v == P->pvtime_base + 64 * c->id;
            why = "PV_TIME_ST: not this vCPU's stolen-time structure";
            break;
        case 0x86000000: ok = (o[0] & ~3UL) == 0 && o[1] == 0 && o[2] == 0 && o[3] == 0; break; /* KVM_FEATURES */
        case 0x86000001: ok = (a1 & 0xffffffffUL) <= 1; dig = 0; break;                     /* PTP: times */
        case 0x8600ff01: ok = o[0] == 0xb66fb428 && o[1] == 0xe911c52e && o[2] == 0x564bcaa9 && o[3] == 0x743a004d; break;
        }
    }
    (void)f;
    if (known && v >= 0)
        c->smccc_ok++;
    if (!ok)
        report_ret(c, how, why);
    mix(c, fid);
    mix(c, dig);
}

/* ---- Xen ---------------------------------------------------------------------------------- */

#define XEN_MAX_ERRNO 133 /* xen/include/public/errno.h numbers errno values below 134 */
enum { EPERM = 1, ENOENT = 2, ESRCH = 3, ENXIO = 6, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOSPC = 28, EDOM = 33, ENOSYS = 38, EOPNOTSUPP = 95 };

static u64 gfn_arg(struct cpu *c)
{
    /* A page of the shared window, or one that is not RAM (Xen: -EINVAL and nothing mapped).
     * Never another RAM page: the hypervisor may rightly write a page it was given. */
    static const u64 odd[] = { 0, 1, 0x10, 0x8010, 0x9000, 0x3ffff, 0, 0xfffff, 0xfffffffffffffUL, 0xffffffffffffffffUL, 0x8000000000000UL };
    if (below(c, 4))
        return (SHARED_LO >> 12) + below(c, (SHARED_HI - SHARED_LO) >> 12);
    u64 i = below(c, sizeof(odd) / sizeof(odd[0]));
    return i == 6 ? ram_end >> 12 /* the first frame past RAM */ : odd[i];
}

static u32 port_arg(struct cpu *c)
{
    static const u64 odd[] = { 0, 1, 63, 64, 65, 4095, 4096, 0x1ffff, 0x20000, 0x7fffffff, 0xffffffff };
    return below(c, 4) ? (u32)below(c, 40) : (u32)PICK(c, odd);
}
static u32 vcpu_arg(struct cpu *c) { return below(c, 4) ? (u32)below(c, nvcpus) : (u32)PICK(c, boundary64); }
static u16 dom_arg(struct cpu *c)
{
    static const u64 doms[] = { 0x7ff0, 0x7ff0, 0x7ff0, 0, 1, 2, 0x7ff1, 0x7ff2, 0x7fff, 0xffff };
    return (u16)PICK(c, doms);
}

/* The bytes a hypercall may write through its pointer argument (sizes from xen/include/public/event_channel.h, version.h). */
static u64 evtchn_arg_size(u32 cmd)
{
    static const u8 size[] = { 12, 12, 12, 4, 4, 24, 8, 8, 8, 4, 2, 24, 8, 8, 2 };
    return cmd < sizeof(size) ? size[cmd] : 0;
}
static u64 xenver_arg_size(u32 cmd)
{
    static const u16 size[] = { 0, 16, 144, 1024, 64, 8, 8, 0, 16, 1024, 0 };
    return cmd < sizeof(size) / sizeof(size[0]) ? size[cmd] : 0;
}

/* Fills an argument struct for an EVTCHNOP (xen/include/public/event_channel.h layouts). */
static void evtchn_fill(struct cpu *c, u32 cmd, u8 *p)
{
    switch (cmd) {
    case 0: put_u16(p, dom_arg(c)); put_u32(p + 4, port_arg(c)); break;                         /* bind_interdomain */
    case 1: put_u32(p, below(c, 3) ? (u32)below(c, 26) : (u32)rnd(c)); put_u32(p + 4, vcpu_arg(c)); break; /* bind_virq */
    case 3: case 4: case 9: put_u32(p, port_arg(c)); break;                                     /* close, send, unmask */
    case 5: put_u16(p, dom_arg(c)); put_u32(p + 4, port_arg(c)); break;                         /* status */
    case 6: put_u16(p, dom_arg(c)); put_u16(p + 2, dom_arg(c)); break;                          /* alloc_unbound */
    case 7: put_u32(p, vcpu_arg(c)); break;                                                     /* bind_ipi */
    case 8: put_u32(p, port_arg(c)); put_u32(p + 4, vcpu_arg(c)); break;                        /* bind_vcpu */
    case 10: case 14: put_u16(p, dom_arg(c)); break;                                            /* reset */
    case 11: {                                                                                  /* init_control */
        u64 gfn = gfn_arg(c);
        put_u64(p, gfn);
        put_u32(p + 8, below(c, 3) ? (u32)(below(c, 4) * 64) : (u32)PICK(c, boundary64));
        put_u32(p + 12, vcpu_arg(c));
        break;
    }
    case 12: put_u64(p, gfn_arg(c)); break;                                                     /* expand_array */
    case 13: put_u32(p, port_arg(c)); put_u32(p + 4, below(c, 3) ? (u32)below(c, 17) : (u32)rnd(c)); break; /* set_priority */
    }
}

/* An address for a pointer argument other than the buffer: outside RAM, a device, 0, or (for
 * a struct of `len` >= 2 bytes) straddling RAM's end. Xen must answer -EFAULT and write nothing
 * (copy_to_guest of a struct not wholly in RAM). */
static u64 bad_pointer(struct cpu *c, u64 len)
{
    static const u64 odd[] = { 0, 8, 0x1000, 0x08010000, 0x09000000, 0x3ffffff8, 0xffffffffffffff00UL, 0x8000000000000000UL };
    if (len >= 2 && below(c, 3) == 0)
        return ram_end - 1 - below(c, len - 1 < 8 ? len - 1 : 8); /* ram_end - k, 1 <= k < len */
    return PICK(c, odd);
}

static void xen_one(struct cpu *c)
{
    struct fuzz_regs *r = &c->r;
    static const u64 ops[] = { 12, 17, 24, 32, 32, 32, 32, 32 };
    static const u64 odd_ops[] = { 0, 1, 13, 16, 18, 23, 25, 29, 31, 33, 34, 38, 41, 48, 63, 64, 0xffff, 0xffffffff, 0x80200000 };
    u64 op = below(c, 16) ? PICK(c, ops) : (below(c, 2) ? PICK(c, odd_ops) : rnd(c));
    fill_rest(c, 0);
    r->in[16] = op;
    struct buf b = { 0, 0, 0 };
    int use_buf = 0, ptr_reg = -1;
    u32 cmd = 0;
    u32 clobber = 1u << 0 | 1u << 16; /* x0 (result) and x16 (arch-arm.h) */
    u64 len = 0;
    switch (op) {
    case 17: /* xen_version(cmd, arg) */
        cmd = below(c, 8) ? (u32)below(c, 12) : (u32)PICK(c, boundary64);
        r->in[0] = cmd;
        len = xenver_arg_size(cmd);
        ptr_reg = 1;
        clobber |= 0x3;
        break;
    case 12: /* memory_op(cmd, arg) */
        cmd = below(c, 4) ? 7 : (u32)(below(c, 2) ? below(c, 64) : PICK(c, boundary64));
        r->in[0] = below(c, 16) ? cmd : PICK(c, boundary64);
        len = 24;
        ptr_reg = 1;
        clobber |= 0x3;
        break;
    case 24: /* vcpu_op(cmd, vcpuid, arg) */
        cmd = below(c, 2) ? 10 : (u32)below(c, 16);
        r->in[0] = below(c, 16) ? cmd : PICK(c, boundary64);
        r->in[1] = vcpu_arg(c);
        len = 16;
        ptr_reg = 2;
        clobber |= 0x7;
        break;
    case 32: /* event_channel_op(cmd, arg) */
        cmd = below(c, 16) ? (u32)below(c, 15) : (u32)PICK(c, boundary64);
        r->in[0] = below(c, 32) ? cmd : PICK(c, boundary64);
        cmd = (u32)r->in[0]; /* what the hypervisor reads as cmd (or -ENOSYS for a 64-bit one) */
        len = evtchn_arg_size(cmd);
        ptr_reg = 1;
        clobber |= 0x3;
        break;
    default:
        clobber |= 0x1e; /* an unknown hypercall: x1..x4 */
        break;
    }
    if (ptr_reg > 0) {
        if (below(c, 16)) {
            b = buf_new(c, len ? len : 24); /* a call with no struct: 24 bytes it must not write */
            use_buf = 1;
            if (op == 32 && len)
                evtchn_fill(c, cmd, b.p);
            else if (op == 12) {
                put_u16(b.p, dom_arg(c));
                put_u16(b.p + 2, (u16)below(c, 3));
                put_u32(b.p + 4, below(c, 4) ? 0 : (u32)below(c, 6)); /* space: shared_info mostly */
                put_u64(b.p + 8, below(c, 8) ? 0 : arg_value(c));
                put_u64(b.p + 16, gfn_arg(c));
            } else if (op == 24) {
                put_u64(b.p, gfn_arg(c));
                put_u32(b.p + 8, below(c, 3) ? (u32)(below(c, 64) * 64) : (u32)PICK(c, boundary64));
                put_u32(b.p + 12, 0);
            } else if (op == 17 && cmd == 6) {
                put_u32(b.p, below(c, 4) ? 0 : (u32)rnd(c));
            }
            r->in[ptr_reg] = (u64)b.p;
        } else {
            r->in[ptr_reg] = bad_pointer(c, len);
        }
    }
    fuzz_xen(r);
    c->calls++;
    check_regs(c, C_XEN, clobber);
    if (use_buf)
        buf_check(c, &b, C_XEN);

    s64 v = (s64)r->out[0];
    int ok = v >= -XEN_MAX_ERRNO;
    const char *why = "neither a result nor -errno";
    switch (op) {
    case 12:
        /* The reservation sub-ops (xen/common/memory.c do_memory_op, with svc-xen's opt-in
         * memory-reservation on): increase/decrease/populate_physmap answer the extents done, never
         * less than the start extent in cmd[63:6] and never an errno; current/maximum_reservation a
         * page count. Off, they are -ENOSYS like any other cmd. */
        if ((r->in[0] & 63) == 0 || (r->in[0] & 63) == 1 || (r->in[0] & 63) == 6) {
            ok = v == -ENOSYS || (v >= 0 && (u64)v >= (r->in[0] >> 6));
            why = "reservation op: neither -ENOSYS nor the extents done";
            break;
        }
        if ((r->in[0] & 63) == 3 || (r->in[0] & 63) == 4)
            break;
        if (ok && v > 0) {
            ok = 0;
            why = "positive result";
        }
        break;
    case 24: case 32:
        if (ok && v > 0) {
            ok = 0;
            why = "positive result";
        }
        break;
    case 17:
        if ((r->in[0] >> 32) == 0 && cmd == 0)
            ok = v > 0 && (v >> 16) >= 3;
        else if ((r->in[0] >> 32) == 0 && cmd == 7)
            ok = v == 4096 || v == -EINVAL;
        else
            ok = ok && v <= 0;
        break;
    default:
        ok = v == -ENOSYS;
        why = "unknown hypercall: expected -ENOSYS";
        break;
    }
    if (v >= 0 && op != 17)
        c->xen_ok++;
    if (!ok)
        report_ret(c, C_XEN, why);
    mix(c, op);
    if (nvcpus == 1 || op == 17 || (op != 32 && op != 24 && op != 12))
        mix(c, (u64)v);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void fuzz(struct cpu *c)
{
    u64 budget = P->calls;
    while (budget ? c->calls < budget : !P->stop) {
        if (below(c, 4))
            smccc_one(c);
        else
            xen_one(c);
        canary_check(c, 8, C_HVC);
        if (!(c->calls & 63)) {
            struct buf none = { 0, 0, 0 };
            slot_check(c, &none, 0, SLOT_SIZE, C_XEN);
        }
    }
}

static void done(struct cpu *c)
{
    lock();
    printf("FUZZ-DONE cpu=%u calls=%lu violations=%lu smccc-ok=%lu xen-ok=%lu digest=%lx\n", c->id, c->calls, c->violations,
           c->smccc_ok, c->xen_ok, c->digest);
    unlock();
    finished[c->id] = 1;
}

static void setup_cpu_state(struct cpu *c, u32 id)
{
    c->id = id;
    c->rng = P->seed * 0x2545f4914f6cdd1dUL + id * 0x9e3779b97f4a7c15UL + 1;
    c->digest = 0xcbf29ce484222325UL;
    c->canary_pos = canary_lo() + id * 0x100000UL;
    slot_fill(c, 0, SLOT_SIZE);
}

void secondary_main(u64 context)
{
    u32 id = (u32)(read_mpidr() & 0xff);
    if (context != 0xf022 || id >= nvcpus || started[id]) {
        /* CPU_ON succeeded for a vCPU that was already on, or with a fuzzed context. */
        lock();
        printf("FUZZ-VIOLATION cpu=%u n=0 kind=cpu-on context=%lx: a vCPU was started twice\n", id, context);
        unlock();
        halt();
    }
    started[id] = 1;
    struct cpu *c = &cpus[id];
    setup_cpu_state(c, id);
    while (!all_started) /* until then a fuzzed CPU_ON could start a vCPU vCPU 0 is to start */
        ;
    fuzz(c);
    done(c);
    halt();
}

int main(u64 x0)
{
    (void)x0;
    if (P->magic != PARAMS_MAGIC) {
        puts("FUZZ-VIOLATION cpu=0 n=0 kind=setup: no parameter block\n");
        psci_system_off();
    }
    nvcpus = P->vcpus;
    ram_end = P->ram_end;
    if (nvcpus < 1 || nvcpus > MAX_VCPUS || ram_end <= RESERVED_HI) {
        puts("FUZZ-VIOLATION cpu=0 n=0 kind=setup: bad parameters\n");
        psci_system_off();
    }
    canary_seed = P->seed ^ 0x63616e617279UL;
    canary_fill();
    code_sum = checksum_image();
    printf("FUZZ-START seed=%lu vcpus=%lu calls=%lu\n", P->seed, nvcpus, P->calls);
    started[0] = 1;
    for (u64 i = 1; i < nvcpus; i++) {
        s64 rc = psci_cpu_on(i, (u64)secondary_entry, 0xf022);
        if (rc != 0) {
            printf("FUZZ-VIOLATION cpu=0 n=0 kind=cpu-on target=%lu rc=%ld\n", i, rc);
            psci_system_off();
        }
        while (!started[i])
            ;
    }
    all_started = 1;
    struct cpu *c = &cpus[0];
    setup_cpu_state(c, 0);
    fuzz(c);
    done(c);
    for (u64 i = 1; i < nvcpus; i++)
        while (!finished[i])
            ;
    /* Everything at the end: the whole canary, the image. */
    u64 bad = 0, first = 0;
    for (u64 a = canary_lo(); a < ram_end; a += 8) {
        if (in_canary(a) && *(volatile u64 *)a != canary_at(a)) {
            if (!bad)
                first = a;
            bad++;
        }
    }
    u64 total = 0, violations = 0;
    for (u64 i = 0; i < nvcpus; i++) {
        total += cpus[i].calls;
        violations += cpus[i].violations;
    }
    if (bad) {
        printf("FUZZ-VIOLATION cpu=0 n=%lu kind=canary words=%lu first=%lx\n", c->calls, bad, first);
        violations++;
    }
    if (checksum_image() != code_sum) {
        printf("FUZZ-VIOLATION cpu=0 n=%lu kind=image: code or read-only data changed\n", c->calls);
        violations++;
    }
    printf("FUZZ-END calls=%lu violations=%lu\n", total, violations);
    psci_system_off();
}
