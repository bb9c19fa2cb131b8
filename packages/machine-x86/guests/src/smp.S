/* smp: vCPU 0 starts vCPU 1 (hypercall 0x104: rdi = entry, rsi = context), polls a flag with
 * hypercall 0x105 (yield) until vCPU 1 stored its context there and powered itself off
 * (hypercall 0x107), then installs an IDT gate for vector 0x40, software-enables its LAPIC, and
 * asks for vector 0x40 (hypercall 0x106) with interrupts on: the handler counts it and EOIs.
 * Prints "smp ok <context>" and "irq ok <count>", then powers off. */
.intel_syntax noprefix
#include "guest.h"
#define LAPIC 0xfee00000
GUEST_START(0, 0)
main:
  lea rdi, [rip + secondary]
  mov rsi, 0x5a5a1234
  HCALL(0x104)
1: mov rax, [rip + flag]
  test rax, rax
  jnz 2f
  HCALL(0x105)
  jmp 1b
2:
  /* IDT gate 0x40 -> isr (64-bit interrupt gate, CS 0x08) */
  lea rax, [rip + isr]
  lea rdi, [rip + idt + 0x40 * 16]
  mov word ptr [rdi], ax
  mov word ptr [rdi + 2], 0x08
  mov word ptr [rdi + 4], 0x8e00
  shr rax, 16
  mov word ptr [rdi + 6], ax
  shr rax, 16
  mov dword ptr [rdi + 8], eax
  mov dword ptr [rdi + 12], 0
  lidt [rip + idtr]
  mov eax, LAPIC + 0xf0
  mov dword ptr [rax], 0x1ff        /* SVR: APIC software enable, spurious vector 0xff */
  sti
  mov rdi, 0x40
  HCALL(0x106)
  nop
  cli
  lea rsi, [rip + smpmsg]
  call puts
  mov rdi, [rip + flag]
  call puthex
  lea rsi, [rip + irqmsg]
  call puts
  mov rdi, [rip + irqs]
  call puthex
  mov edi, '\n'
  call putc
  POWER_OFF

secondary:                           /* vCPU 1: rdi = context; uses no stack */
  mov [rip + flag], rdi
  HCALL(0x107)
3: jmp 3b

isr:
  push rax
  inc qword ptr [rip + irqs]
  mov eax, LAPIC + 0xb0
  mov dword ptr [rax], 0            /* EOI */
  pop rax
  iretq

  .section .rodata
smpmsg: .asciz "smp ok "
irqmsg: .asciz "\nirq ok "
  .data
  .balign 16
idtr: .word 256 * 16 - 1
      .quad idt
  .balign 8
flag: .quad 0
irqs: .quad 0
  .bss
  .balign 16
idt: .space 256 * 16
