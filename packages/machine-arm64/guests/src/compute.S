/*
 * Benchmark guest: `iterations` rounds of xorshift64 plus a load/store to a small table
 * (no traps), then SMC #0 with PSCI SYSTEM_OFF (x1 = checksum). The host patches `iterations`.
 */
    .section .text.boot, "ax"
    .globl _start
_start:
    ldr     x19, iterations
    ldr     x2, =0x9E3779B97F4A7C15
    adr     x5, table
    mov     x20, #0
1:  eor     x2, x2, x2, lsl #13
    eor     x2, x2, x2, lsr #7
    eor     x2, x2, x2, lsl #17
    and     x3, x2, #0x78
    ldr     x4, [x5, x3]
    add     x4, x4, x2
    str     x4, [x5, x3]
    add     x20, x20, #1
    cmp     x20, x19
    b.ne    1b
    ldr     x1, [x5]
    ldr     w0, =0x84000008
    smc     #0
2:  b       2b
    .balign 8
    .globl iterations
iterations:
    .quad   1000000
    .data
    .balign 16
table:
    .fill   16, 8, 0
