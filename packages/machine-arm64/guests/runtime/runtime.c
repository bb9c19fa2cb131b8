/* Console, printf-lite and hypercall helpers for Plugvisor test guests. */
#include "guest.h"

#define UART_DR 0x000
#define UART_FR 0x018
#define FR_TXFF (1u << 5)

void uart_putc(char c)
{
    while (mmio_read32(UART_BASE + UART_FR) & FR_TXFF)
        ;
    mmio_write32(UART_BASE + UART_DR, (u8)c);
}

void puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void put_unsigned(u64 v, unsigned base, int width)
{
    char buf[24];
    int n = 0;
    do {
        unsigned d = v % base;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n < width)
        buf[n++] = '0';
    while (n)
        uart_putc(buf[--n]);
}

/* %s %c %d %u %x %lx %ld %lu %p, with an optional zero-pad width for x (e.g. %08x). */
void printf(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            uart_putc(*fmt);
            continue;
        }
        fmt++;
        int width = 0, lng = 0;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': puts(__builtin_va_arg(ap, const char *)); break;
        case 'c': uart_putc((char)__builtin_va_arg(ap, int)); break;
        case 'd': {
            s64 v = lng ? __builtin_va_arg(ap, s64) : __builtin_va_arg(ap, int);
            if (v < 0) { uart_putc('-'); v = -v; }
            put_unsigned((u64)v, 10, width);
            break;
        }
        case 'u': put_unsigned(lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 10, width); break;
        case 'x': put_unsigned(lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, u32), 16, width); break;
        case 'p': puts("0x"); put_unsigned(__builtin_va_arg(ap, u64), 16, 0); break;
        case '%': uart_putc('%'); break;
        default: uart_putc('?'); break;
        }
    }
    __builtin_va_end(ap);
}

#define SMCCC_CALL(insn)                                                                        \
    register u64 r0 __asm__("x0") = fid;                                                        \
    register u64 r1 __asm__("x1") = a1;                                                         \
    register u64 r2 __asm__("x2") = a2;                                                         \
    register u64 r3 __asm__("x3") = a3;                                                         \
    __asm__ volatile(insn : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3)                              \
                     :                                                                          \
                     : "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",   \
                       "x15", "x16", "x17", "memory");                                          \
    if (res) {                                                                                  \
        res->a0 = r0; res->a1 = r1; res->a2 = r2; res->a3 = r3;                                 \
    }

void smccc_hvc(u32 fid, u64 a1, u64 a2, u64 a3, struct smccc_res *res) { SMCCC_CALL("hvc #0") }
void smccc_smc(u32 fid, u64 a1, u64 a2, u64 a3, struct smccc_res *res) { SMCCC_CALL("smc #0") }

/* Xen on Arm: hvc #0xEA1, op in x16, arguments x0..x4, result x0. */
s64 xen_hypercall(u64 op, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4)
{
    register u64 r16 __asm__("x16") = op;
    register u64 r0 __asm__("x0") = a0;
    register u64 r1 __asm__("x1") = a1;
    register u64 r2 __asm__("x2") = a2;
    register u64 r3 __asm__("x3") = a3;
    register u64 r4 __asm__("x4") = a4;
    __asm__ volatile("hvc #0xea1" : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4), "+r"(r16) : : "memory");
    return (s64)r0;
}

s64 psci_cpu_on(u64 target_mpidr, u64 entry, u64 context)
{
    struct smccc_res r;
    smccc_hvc(PSCI_CPU_ON_64, target_mpidr, entry, context, &r);
    return (s64)r.a0;
}

void psci_system_off(void)
{
    smccc_hvc(PSCI_SYSTEM_OFF, 0, 0, 0, 0);
    halt();
}

__attribute__((weak)) void secondary_main(u64 context)
{
    printf("secondary vCPU %lx started (context %lx)\n", read_mpidr() & 0xffffff, context);
}

__attribute__((weak)) void handle_exception(u64 kind, struct exc_frame *f)
{
    printf("unhandled exception kind %lu ESR %lx ELR %lx\n", kind, read_esr(), f->elr);
    halt();
}
