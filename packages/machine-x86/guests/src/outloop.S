/* outloop: the exit round-trip benchmark. param0 iterations of `out` to the hypercall port
 * (id 0x102, rdi = i); the results are summed into rbx; then power off. No console output. */
.intel_syntax noprefix
#include "guest.h"
GUEST_START(100000, 0)
main:
  mov rcx, [rip + param0]
  xor ebx, ebx
1: mov rdi, rcx
  mov eax, 0x102
  mov dx, HCALL_PORT
  out dx, eax
  add rbx, rax
  dec rcx
  jnz 1b
  POWER_OFF
