/*
 * One hypercall with every general-purpose register under the fuzzer's control, so it can
 * check which registers the hypervisor changed.
 *
 *   void fuzz_hvc0(struct fuzz_regs *r);    HVC #0       (SMCCC)
 *   void fuzz_smc0(struct fuzz_regs *r);    SMC #0       (SMCCC)
 *   void fuzz_xen(struct fuzz_regs *r);     HVC #0xEA1   (Xen on Arm, xen/include/public/arch-arm.h)
 *
 * struct fuzz_regs { u64 in[31]; u64 out[31]; u64 sp_in; u64 sp_out; }:
 * x0..x30 are loaded from in[] (x29 and x30 too: random values, not a frame), the instruction
 * traps, and x0..x30 are stored to out[]; sp_in/sp_out are the stack pointer just before and
 * just after the trap. No general-purpose register is live across the trap, so the only state
 * the stub keeps there is in system registers the hypervisor must not touch either:
 * TPIDR_EL1 holds the struct's address and TPIDRRO_EL0 the stack pointer (restored from it
 * afterwards, so a clobbered sp is reported rather than crashing the guest); TPIDR_EL0 is
 * scratch for x0. Callee-saved x19..x30 are saved on the stack (AAPCS64).
 */
    .macro FUZZ_CALL name, insn
    .text
    .balign 4
    .globl \name
    .type \name, %function
\name:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    msr     tpidr_el1, x0
    mov     x1, sp
    msr     tpidrro_el0, x1
    str     x1, [x0, #496]          /* sp_in */
    ldp     x30, x1, [x0, #240]     /* x30 = in[30]; x1 scratch */
    ldp     x28, x29, [x0, #224]
    ldp     x26, x27, [x0, #208]
    ldp     x24, x25, [x0, #192]
    ldp     x22, x23, [x0, #176]
    ldp     x20, x21, [x0, #160]
    ldp     x18, x19, [x0, #144]
    ldp     x16, x17, [x0, #128]
    ldp     x14, x15, [x0, #112]
    ldp     x12, x13, [x0, #96]
    ldp     x10, x11, [x0, #80]
    ldp     x8, x9, [x0, #64]
    ldp     x6, x7, [x0, #48]
    ldp     x4, x5, [x0, #32]
    ldp     x2, x3, [x0, #16]
    ldp     x0, x1, [x0, #0]
    \insn
    msr     tpidr_el0, x0
    mrs     x0, tpidr_el1
    add     x0, x0, #248            /* out[] */
    str     x1, [x0, #8]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    mrs     x1, tpidr_el0
    str     x1, [x0, #0]
    mov     x1, sp
    str     x1, [x0, #256]          /* sp_out (struct offset 504) */
    mrs     x1, tpidrro_el0
    mov     sp, x1
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
    .size \name, . - \name
    .endm

    FUZZ_CALL fuzz_hvc0, "hvc #0"
    FUZZ_CALL fuzz_smc0, "smc #0"
    FUZZ_CALL fuzz_xen, "hvc #0xea1"
