/*
 * The MMU on with RAM mapped twice (4 KiB granule, 39-bit VAs, one level-1 table: Arm ARM D8.2):
 * 0..1 GiB Device-nGnRnE (the UART, the GIC), 1..2 GiB the RAM identity-mapped (where the guest
 * runs, with its vector table), 2..3 GiB the same RAM again, so VA = PA + 1 GiB there while no
 * RAM exists at that physical address; 3..4 GiB and above unmapped. For guests that check a
 * hypervisor goes through their translation (an HVC at a virtual PC, a pointer argument).
 */
#ifndef PLUGVISOR_MMU_ALIAS_H
#define PLUGVISOR_MMU_ALIAS_H
#include "guest.h"

#define RAM_ALIAS_OFFSET 0x40000000UL
#define DESC_BLOCK 0x1UL       /* level-1 block descriptor */
#define DESC_AF (1UL << 10)    /* access flag */
#define DESC_SH_INNER (3UL << 8)
#define DESC_ATTR(i) ((u64)(i) << 2)

/* `l1`: 512 entries, 4 KiB aligned, owned by the guest. */
static inline void mmu_on_ram_alias(u64 *l1)
{
    l1[0] = 0x00000000UL | DESC_AF | DESC_ATTR(0) | DESC_BLOCK;                 /* Device-nGnRnE */
    l1[1] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_BLOCK; /* RAM */
    l1[2] = 0x40000000UL | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_BLOCK; /* RAM again */
    u64 mair = 0x00UL | (0xffUL << 8);                  /* attr0 Device-nGnRnE, attr1 Normal WB */
    u64 tcr = 25UL                                       /* T0SZ: 39-bit VAs, walk from level 1 */
              | (1UL << 8) | (1UL << 10) | (3UL << 12)   /* IRGN0, ORGN0 write-back, SH0 inner */
              | (1UL << 23);                             /* EPD1: no TTBR1 walks */
    __asm__ volatile("msr mair_el1, %0; msr tcr_el1, %1; msr ttbr0_el1, %2; isb; tlbi vmalle1; dsb sy; isb"
                     ::"r"(mair), "r"(tcr), "r"((u64)l1) : "memory");
    u64 sctlr;
    __asm__ volatile("mrs %0, sctlr_el1" : "=r"(sctlr));
    sctlr |= 1UL | (1UL << 2) | (1UL << 12);             /* M, C, I */
    __asm__ volatile("msr sctlr_el1, %0; isb" ::"r"(sctlr) : "memory");
}

#endif
