/*
 * A tiny arm64 Linux "Image" for the boot-protocol tests: the 64-byte header of Linux
 * Documentation/arch/arm64/booting.rst (arch/arm64/kernel/head.S, arch/arm64/include/asm/image.h),
 * then code that checks what the protocol promises on entry — x0 = the device tree, x1..x3 = 0,
 * EL1 (or EL2), MMU off — walks the flattened device tree (Devicetree Specification v0.4,
 * chapter 5) for /chosen's `bootargs`, prints it on the PL011 (0x0900_0000, as on QEMU virt),
 * and powers off with PSCI SYSTEM_OFF over HVC (the conduit the tree's `psci` node names).
 * Position-independent: it runs wherever the loader put it. On any failure it prints a line
 * starting "FAIL" and executes UDF (a guest fault, never a clean exit).
 */
    .section .text.boot, "ax"
    .globl _start
_start:
    b       entry                   // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   _end - _start           // image_size
    .quad   0xa                     // flags: little-endian, 4K pages, placement anywhere
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

entry:
    mov     x19, x0
    orr     x1, x1, x2
    orr     x1, x1, x3
    adr     x0, m_regs
    cbnz    x1, fail
    mrs     x1, CurrentEL
    adr     x0, m_el
    cmp     x1, #(1 << 2)
    b.ne    fail
    mrs     x1, sctlr_el1
    adr     x0, m_mmu
    tbnz    x1, #0, fail

    adr     x0, m_image
    bl      puts
    adr     x0, _start
    bl      puthex
    adr     x0, m_dtb
    bl      puts
    mov     x0, x19
    bl      puthex
    bl      newline

    tst     x19, #7                 // booting.rst: the dtb is on an 8-byte boundary
    adr     x0, m_align
    b.ne    fail
    ldr     w1, [x19]               // fdt_header.magic, big-endian
    rev     w1, w1
    movz    w2, #0xfeed
    movk    w2, #0xd00d, lsl #16
    adr     x0, m_magic
    cmp     w1, w2
    b.ne    fail
    adr     x0, m_size
    bl      puts
    ldr     w0, [x19, #4]           // totalsize
    rev     w0, w0
    bl      puthex
    bl      newline

    ldr     w20, [x19, #8]          // off_dt_struct
    rev     w20, w20
    add     x20, x19, x20           // x20: the structure block cursor
    ldr     w21, [x19, #12]         // off_dt_strings
    rev     w21, w21
    add     x21, x19, x21           // x21: the strings block
    mov     x24, #0                 // bootargs found
next_token:
    ldr     w1, [x20], #4
    rev     w1, w1
    cmp     w1, #1                  // FDT_BEGIN_NODE: skip the NUL-terminated name, 4-aligned
    b.eq    begin_node
    cmp     w1, #3                  // FDT_PROP
    b.eq    prop
    cmp     w1, #2                  // FDT_END_NODE
    b.eq    next_token
    cmp     w1, #4                  // FDT_NOP
    b.eq    next_token
    cmp     w1, #9                  // FDT_END
    b.eq    walked
    adr     x0, m_token
    b       fail
begin_node:
    ldrb    w1, [x20], #1
    cbnz    w1, begin_node
    add     x20, x20, #3
    and     x20, x20, #~3
    b       next_token
prop:
    ldr     w22, [x20], #4          // len
    rev     w22, w22
    ldr     w1, [x20], #4           // nameoff
    rev     w1, w1
    add     x1, x21, x1
    adr     x2, s_bootargs
1:  ldrb    w3, [x1], #1            // strcmp(name, "bootargs")
    ldrb    w4, [x2], #1
    cmp     w3, w4
    b.ne    2f
    cbnz    w3, 1b
    adr     x0, m_bootargs          // found: print the value (a NUL-terminated string)
    bl      puts
    mov     x0, x20
    bl      puts
    adr     x0, m_close
    bl      puts
    mov     x24, #1
2:  add     x20, x20, x22
    add     x20, x20, #3
    and     x20, x20, #~3
    b       next_token
walked:
    adr     x0, m_nobootargs
    cbz     x24, fail
    adr     x0, m_off
    bl      puts
    movz    w0, #0x0008             // PSCI SYSTEM_OFF (0x8400_0008)
    movk    w0, #0x8400, lsl #16
    hvc     #0
    adr     x0, m_returned
fail:
    mov     x25, x0
    adr     x0, m_fail
    bl      puts
    mov     x0, x25
    bl      puts
    bl      newline
    udf     #0

// puts(x0): writes a NUL-terminated string to the PL011 data register.
puts:
    mov     x9, #0x09000000
1:  ldrb    w10, [x0], #1
    cbz     w10, 2f
    strb    w10, [x9]
    b       1b
2:  ret

newline:
    mov     x9, #0x09000000
    mov     w10, #'\n'
    strb    w10, [x9]
    ret

// puthex(x0): "0x" and 16 hex digits.
puthex:
    mov     x9, #0x09000000
    mov     w10, #'0'
    strb    w10, [x9]
    mov     w10, #'x'
    strb    w10, [x9]
    mov     x11, #60
1:  lsr     x10, x0, x11
    and     x10, x10, #0xf
    cmp     x10, #10
    add     x12, x10, #'0'
    add     x13, x10, #('a' - 10)
    csel    x10, x12, x13, lo
    strb    w10, [x9]
    subs    x11, x11, #4
    b.ge    1b
    ret

s_bootargs:     .asciz "bootargs"
m_image:        .asciz "linux-hello: Image at "
m_dtb:          .asciz ", x0 = "
m_size:         .asciz "linux-hello: fdt magic d00dfeed, totalsize "
m_bootargs:     .asciz "linux-hello: bootargs \""
m_close:        .asciz "\"\n"
m_off:          .asciz "linux-hello: PSCI SYSTEM_OFF\n"
m_fail:         .asciz "FAIL: "
m_regs:         .asciz "x1..x3 are not zero at entry"
m_el:           .asciz "not entered at EL1"
m_mmu:          .asciz "MMU on at entry"
m_align:        .asciz "x0 is not 8-byte aligned"
m_magic:        .asciz "no FDT magic at x0"
m_token:        .asciz "bad FDT token"
m_nobootargs:   .asciz "no bootargs property in the tree"
m_returned:     .asciz "SYSTEM_OFF returned"
    .balign 8
_end:
