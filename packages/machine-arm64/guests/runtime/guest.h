/* Freestanding guest runtime for Plugvisor test guests (arm64, EL1, MMU off). */
#ifndef PLUGVISOR_GUEST_H
#define PLUGVISOR_GUEST_H

typedef unsigned long u64;
typedef long s64;
typedef unsigned int u32;
typedef unsigned char u8;

#define UART_BASE 0x09000000UL
#define GICC_BASE 0x08010000UL
#define GICC_IAR  0x0c
#define GICC_EOIR 0x10

/* SMCCC / PSCI function ids */
#define SMCCC_VERSION        0x80000000u
#define PSCI_VERSION         0x84000000u
#define PSCI_CPU_OFF         0x84000002u
#define PSCI_CPU_ON_64       0xC4000003u
#define PSCI_SYSTEM_OFF      0x84000008u
#define PSCI_SYSTEM_RESET    0x84000009u

struct exc_frame {
    u64 x[31];
    u64 elr;
    u64 spsr;
    u64 pad;
};

/* Exception kinds (vector entry index): */
enum { EXC_CUR_SP0_SYNC = 0, EXC_CUR_SPX_SYNC = 4, EXC_CUR_SPX_IRQ = 5, EXC_LOWER_SYNC = 8 };

struct smccc_res { u64 a0, a1, a2, a3; };

void uart_putc(char c);
void puts(const char *s);
void printf(const char *fmt, ...);

void smccc_hvc(u32 fid, u64 a1, u64 a2, u64 a3, struct smccc_res *res);
void smccc_smc(u32 fid, u64 a1, u64 a2, u64 a3, struct smccc_res *res);
s64 xen_hypercall(u64 op, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4);
s64 psci_cpu_on(u64 target_mpidr, u64 entry, u64 context);
void psci_system_off(void) __attribute__((noreturn));
void halt(void) __attribute__((noreturn));

/*
 * Full-register SMCCC calls (runtime/smccc_regs.S; link it only into guests that use them):
 * x0..x17 loaded from r->x[] (all 64 bits of x0), the call, x0..x17 stored back into r.
 */
struct smccc_regs { u64 x[18]; };
void smccc_hvc_regs(struct smccc_regs *r);
void smccc_smc_regs(struct smccc_regs *r);
void smccc_smc_imm1_regs(struct smccc_regs *r); /* SMC #1 */
extern char secondary_entry[];

static inline u64 read_mpidr(void) { u64 v; __asm__ volatile("mrs %0, mpidr_el1" : "=r"(v)); return v; }
static inline u64 read_currentel(void) { u64 v; __asm__ volatile("mrs %0, CurrentEL" : "=r"(v)); return v; }
static inline u64 read_esr(void) { u64 v; __asm__ volatile("mrs %0, esr_el1" : "=r"(v)); return v; }
static inline u64 read_daif(void) { u64 v; __asm__ volatile("mrs %0, daif" : "=r"(v)); return v; }
static inline void irq_enable(void) { __asm__ volatile("msr daifclr, #2" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("msr daifset, #2" ::: "memory"); }
/* Generic timer counters as the guest reads them (isb: not read early, ahead of prior code). */
static inline u64 read_cntvct(void) { u64 v; __asm__ volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(v) : : "memory"); return v; }
static inline u64 read_cntpct(void) { u64 v; __asm__ volatile("isb\n\tmrs %0, cntpct_el0" : "=r"(v) : : "memory"); return v; }
static inline u64 read_cntfrq(void) { u64 v; __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v)); return v; }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }

/* Provided by the guest: */
int main(u64 x0);
void secondary_main(u64 context);
/* Weak default: prints and halts. */
void handle_exception(u64 kind, struct exc_frame *f);

#endif
