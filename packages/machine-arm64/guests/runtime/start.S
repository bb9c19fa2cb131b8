/*
 * Guest runtime entry points and exception vectors.
 *
 * _start            boot vCPU: x0 = 0 (boot protocol). Clears BSS, sets its stack and
 *                   VBAR_EL1, calls main().
 * secondary_entry   a vCPU started by PSCI CPU_ON (or the host's powerOn) with
 *                   x0 = context: sets its stack and VBAR_EL1, calls secondary_main(context).
 * Stacks: 16 KiB per vCPU, chosen by MPIDR_EL1.Aff0.
 * Vectors: every entry saves x0-x30, ELR_EL1 and SPSR_EL1 in a struct exc_frame on the
 * stack, calls handle_exception(kind, frame) (kind = entry index 0..15) and returns with eret,
 * so C handlers may change frame->elr (e.g. skip an instruction).
 */
    .section .text.boot, "ax"
    .globl _start
_start:
    mov     x19, x0
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  bl      setup_cpu
    mov     x0, x19
    bl      main
    b       halt

    .globl secondary_entry
secondary_entry:
    mov     x19, x0
    bl      setup_cpu
    mov     x0, x19
    bl      secondary_main
    b       halt

/* Stack from MPIDR.Aff0 and the vector base; clobbers x0-x2. */
setup_cpu:
    mrs     x0, mpidr_el1
    and     x0, x0, #0xff
    add     x0, x0, #1
    lsl     x0, x0, #14
    ldr     x1, =__stacks_start
    add     x1, x1, x0
    mov     sp, x1
    ldr     x2, =vectors
    msr     vbar_el1, x2
    isb
    ret

    .globl halt
halt:
    wfi
    b       halt

    .macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exc_common
    .endm

    .section .vectors, "ax"
    .balign 2048
    .globl vectors
vectors:
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    VENTRY 4
    VENTRY 5
    VENTRY 6
    VENTRY 7
    VENTRY 8
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12
    VENTRY 13
    VENTRY 14
    VENTRY 15

    .text
exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x30, x1, [sp, #240]
    str     x2, [sp, #256]
    mov     x1, sp
    bl      handle_exception
    ldp     x30, x1, [sp, #240]
    ldr     x2, [sp, #256]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #288
    eret
