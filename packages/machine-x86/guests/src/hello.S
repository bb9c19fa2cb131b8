/* hello: prints a line, makes one hypercall (id 0x100, rdi=41, rsi=1) and prints its result. */
.intel_syntax noprefix
#include "guest.h"
GUEST_START(0, 0)
main:
  lea rsi, [rip + msg]
  call puts
  mov rdi, 41
  mov rsi, 1
  HCALL(0x100)
  mov rbx, rax
  lea rsi, [rip + res]
  call puts
  mov rdi, rbx
  call puthex
  mov edi, '\n'
  call putc
  POWER_OFF
  .section .rodata
msg: .asciz "hello from x86-64 long mode\n"
res: .asciz "hypercall 0x100 -> "
