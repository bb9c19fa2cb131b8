/* Console helpers: putc (dil), puts (rsi = NUL-terminated), puthex (rdi, 16 digits). */
.intel_syntax noprefix
#include "guest.h"
  .text
  .globl putc, puts, puthex
putc:
  push rdx
  mov dx, COM1_LSR
1: in al, dx
  test al, 0x20
  jz 1b
  mov dx, COM1
  mov eax, edi
  out dx, al
  pop rdx
  ret
puts:
  push rsi
1: movzx edi, byte ptr [rsi]
  test edi, edi
  jz 2f
  call putc
  inc rsi
  jmp 1b
2: pop rsi
  ret
puthex:
  push rbx
  push rcx
  mov rbx, rdi
  mov ecx, 16
1: rol rbx, 4
  mov edi, ebx
  and edi, 0xf
  cmp edi, 10
  jb 2f
  add edi, 'a' - 10 - '0'
2: add edi, '0'
  call putc
  dec ecx
  jnz 1b
  pop rcx
  pop rbx
  ret
