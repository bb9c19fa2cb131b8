/*
 * Benchmark guest: `iterations` HVC #0 round trips (x0 = i; the host returns x0 + 1), summing
 * the results in x21, then SMC #0 with PSCI SYSTEM_OFF (x1 = sum). The host patches
 * `iterations` before running. No runtime: the same image runs under the C baseline.
 */
    .section .text.boot, "ax"
    .globl _start
_start:
    ldr     x19, iterations
    mov     x20, #0
    mov     x21, #0
1:  mov     x0, x20
    hvc     #0
    add     x21, x21, x0
    add     x20, x20, #1
    cmp     x20, x19
    b.ne    1b
    mov     x1, x21
    ldr     w0, =0x84000008
    smc     #0
2:  b       2b
    .balign 8
    .globl iterations
iterations:
    .quad   1000000
