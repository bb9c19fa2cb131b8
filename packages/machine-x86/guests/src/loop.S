/* loop: integer-only work. param0 = outer iterations (one hypercall 0x101 each, rdi = i;
 * its result is folded in), param1 = inner xorshift rounds. Prints "result <hex>". The state
 * lives in registers (r12-r14) and on the stack, so a snapshot must carry them. */
.intel_syntax noprefix
#include "guest.h"
GUEST_START(200, 50)
main:
  lea rsi, [rip + banner]
  call puts
  mov r12, [rip + param0]
  movabs r13, 0x9e3779b97f4a7c15
  xor r14, r14
  push r13
outer:
  mov rcx, [rip + param1]
inner:
  mov rax, r13
  shl rax, 13
  xor r13, rax
  mov rax, r13
  shr rax, 7
  xor r13, rax
  mov rax, r13
  shl rax, 17
  xor r13, rax
  add r13, r14
  dec rcx
  jnz inner
  mov rdi, r14
  HCALL(0x101)
  xor r13, rax
  add [rsp], r13
  inc r14
  cmp r14, r12
  jb outer
  pop rax
  xor r13, rax
  lea rsi, [rip + result]
  call puts
  mov rdi, r13
  call puthex
  mov edi, '\n'
  call putc
  POWER_OFF
  .section .rodata
banner: .asciz "loop: start\n"
result: .asciz "result "
