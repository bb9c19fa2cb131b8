/*
 * Full-register SMCCC calls for guests that test the calling convention itself (optional:
 * link runtime/smccc_regs.S only into guests that use it, so the other images do not change).
 *
 *   void smccc_hvc_regs(struct smccc_regs *r);      HVC #0
 *   void smccc_smc_regs(struct smccc_regs *r);      SMC #0
 *   void smccc_smc_imm1_regs(struct smccc_regs *r); SMC #1 (KVM: x0 = -1, nothing else)
 *
 * x0..x17 are loaded from r->x[0..17] (all 64 bits: x0's upper half is whatever the caller
 * put there), the instruction traps, and x0..x17 are stored back into r, so a caller sees
 * exactly which registers the hypervisor changed. x0..x17 are caller-saved (AAPCS64).
 */
    .macro SMCCC_REGS name, insn
    .text
    .balign 4
    .globl \name
    .type \name, %function
\name:
    stp     x19, x30, [sp, #-16]!
    mov     x19, x0
    ldp     x0, x1, [x19, #0]
    ldp     x2, x3, [x19, #16]
    ldp     x4, x5, [x19, #32]
    ldp     x6, x7, [x19, #48]
    ldp     x8, x9, [x19, #64]
    ldp     x10, x11, [x19, #80]
    ldp     x12, x13, [x19, #96]
    ldp     x14, x15, [x19, #112]
    ldp     x16, x17, [x19, #128]
    \insn
    stp     x0, x1, [x19, #0]
    stp     x2, x3, [x19, #16]
    stp     x4, x5, [x19, #32]
    stp     x6, x7, [x19, #48]
    stp     x8, x9, [x19, #64]
    stp     x10, x11, [x19, #80]
    stp     x12, x13, [x19, #96]
    stp     x14, x15, [x19, #112]
    stp     x16, x17, [x19, #128]
    ldp     x19, x30, [sp], #16
    ret
    .size \name, . - \name
    .endm

    SMCCC_REGS smccc_hvc_regs, "hvc #0"
    SMCCC_REGS smccc_smc_regs, "smc #0"
    SMCCC_REGS smccc_smc_imm1_regs, "smc #1"
