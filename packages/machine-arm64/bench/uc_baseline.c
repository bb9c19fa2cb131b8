/*
 * The C baseline for the arm64 benchmarks: runs a flat guest image on bare libunicorn with the
 * same CPU model and trap configuration as the machine (MAX, SCR_EL3.HCE so HVC traps as
 * interrupt 11), answering HVC with x0 + 1 and stopping at SMC.
 *   uc_baseline IMAGE ITER_OFFSET ITERATIONS   -> prints "<seconds> <hvc traps> <x1>"
 * Built by the bench with the machine's gcc: gcc -O2 -o uc_baseline uc_baseline.c -lunicorn
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unicorn/unicorn.h>

static unsigned long traps;

static void on_intr(uc_engine *uc, uint32_t intno, void *user)
{
    (void)user;
    if (intno == 11) {
        uint64_t x0;
        uc_reg_read(uc, UC_ARM64_REG_X0, &x0);
        x0 += 1;
        uc_reg_write(uc, UC_ARM64_REG_X0, &x0);
        traps++;
    } else {
        uc_emu_stop(uc);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: %s IMAGE ITER_OFFSET ITERATIONS\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    size_t ram_size = 16 << 20;
    unsigned char *ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t n = fread(ram, 1, ram_size, f);
    fclose(f);
    uint64_t iters = strtoull(argv[3], NULL, 0);
    memcpy(ram + strtoul(argv[2], NULL, 0), &iters, 8);
    (void)n;

    uc_engine *uc;
    if (uc_open(UC_ARCH_ARM64, UC_MODE_ARM, &uc)) return 3;
    uc_ctl_set_cpu_model(uc, UC_CPU_ARM64_MAX);
    if (uc_mem_map_ptr(uc, 0x40000000, ram_size, UC_PROT_ALL, ram)) return 4;
    uc_arm64_cp_reg scr = { .crn = 1, .crm = 1, .op0 = 3, .op1 = 6, .op2 = 0, .val = (1 << 8) | (1 << 10) };
    uc_reg_write(uc, UC_ARM64_REG_CP_REG, &scr);
    uc_hook h;
    uc_hook_add(uc, &h, UC_HOOK_INTR, on_intr, NULL, 1, 0);

    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uc_err err = uc_emu_start(uc, 0x40000000, 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (err) { fprintf(stderr, "uc_emu_start: %s\n", uc_strerror(err)); return 5; }
    uint64_t x1;
    uc_reg_read(uc, UC_ARM64_REG_X1, &x1);
    printf("%.9f %lu %llu\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9, traps, (unsigned long long)x1);
    uc_close(uc);
    return 0;
}
