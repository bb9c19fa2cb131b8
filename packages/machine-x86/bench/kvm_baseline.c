/*
 * The x86 exit round-trip baseline: the same guest loop (guests/src/outloop.S) driven straight
 * on /dev/kvm from C, doing the same work per exit as the Plugvisor machine does through its
 * full stack: on OUT to the hypercall port, read rdi from the sync-regs area, write
 * rax = rdi + 1, mark the registers dirty, KVM_RUN again. The guest RAM image (boot structures
 * and the loaded guest, built by the machine) comes from a file; long mode is entered with the
 * same sregs the machine sets (src/cpu/longmode.ts).
 *   kvm_baseline RAM.bin ITERATIONS   ->  prints "<seconds> <hypercall exits>"
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE (4u << 20)
#define die(what) do { perror(what); exit(1); } while (0)

static void seg(struct kvm_segment *s, unsigned sel, unsigned type, int code) {
  memset(s, 0, sizeof *s);
  s->limit = 0xffffffff; s->selector = sel; s->type = type; s->present = 1; s->s = 1; s->g = 1;
  s->l = code; s->db = !code;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s RAM.bin ITERATIONS\n", argv[0]); return 2; }
  uint64_t iterations = strtoull(argv[2], 0, 0);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0) die("KVM_SET_TSS_ADDR");
  uint8_t *ram = mmap(0, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (ram == MAP_FAILED) die("mmap");
  FILE *f = fopen(argv[1], "rb");
  if (!f) die(argv[1]);
  size_t n = fread(ram, 1, RAM_SIZE, f);
  fclose(f);
  if (n < 0x100010) { fprintf(stderr, "image too small\n"); return 1; }
  memcpy(ram + 0x100008, &iterations, 8); /* param0 */
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)ram };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  seg(&sregs.cs, 0x08, 11, 1);
  seg(&sregs.ds, 0x10, 3, 0);
  sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
  memset(&sregs.tr, 0, sizeof sregs.tr);
  sregs.tr.limit = 0xffffffff; sregs.tr.selector = 0x18; sregs.tr.type = 11; sregs.tr.present = 1; sregs.tr.g = 1;
  sregs.gdt.base = 0x500; sregs.gdt.limit = 31;
  sregs.idt.base = 0x520; sregs.idt.limit = 7;
  sregs.cr0 = 0x80050033; sregs.cr3 = 0x9000; sregs.cr4 = 0x620; sregs.efer = 0x500;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = { .rip = 0x100000, .rsp = 0x8ff0, .rbp = 0x8ff0, .rflags = 2 };
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  run->kvm_valid_regs = KVM_SYNC_X86_REGS;
  uint64_t exits = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) { fprintf(stderr, "exit %u\n", run->exit_reason); return 1; }
    if (run->io.port == 0x600) {
      run->s.regs.regs.rax = (uint32_t)(run->s.regs.regs.rdi + 1);
      run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
      exits++;
      continue;
    }
    if (run->io.port == 0x604) break;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.9f %llu\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, (unsigned long long)exits);
  return 0;
}
