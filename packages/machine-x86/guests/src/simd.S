/* simd (needs hardware KVM: SSE/AVX at CPL0): enables OSXSAVE and XCR0 = CPUID 0xD.0, loads
 * XMM0-15 (and YMM upper halves with AVX) with patterns, makes hypercall 0x103 (the snapshot
 * point), then checks every register still holds its pattern: prints "simd ok" or "simd BAD". */
.intel_syntax noprefix
#include "guest.h"
GUEST_START(0, 0)
main:
  mov rax, cr4
  or rax, 1 << 18            /* OSXSAVE */
  mov cr4, rax
  mov eax, 0xd
  xor ecx, ecx
  cpuid                      /* edx:eax = XCR0 bits the guest may enable */
  xor ecx, ecx
  xsetbv
  mov r15, rax               /* r15 = XCR0 */
  lea rsi, [rip + pattern]
  movdqu xmm0, [rsi + 0]
  movdqu xmm1, [rsi + 16]
  movdqu xmm2, [rsi + 32]
  movdqu xmm3, [rsi + 48]
  movdqu xmm4, [rsi + 64]
  movdqu xmm5, [rsi + 80]
  movdqu xmm6, [rsi + 96]
  movdqu xmm7, [rsi + 112]
  movdqu xmm8, [rsi + 128]
  movdqu xmm9, [rsi + 144]
  movdqu xmm10, [rsi + 160]
  movdqu xmm11, [rsi + 176]
  movdqu xmm12, [rsi + 192]
  movdqu xmm13, [rsi + 208]
  movdqu xmm14, [rsi + 224]
  movdqu xmm15, [rsi + 240]
  test r15, 4
  jz 1f
  vinsertf128 ymm0, ymm0, [rsi + 240], 1
  vinsertf128 ymm7, ymm7, [rsi + 16], 1
  vinsertf128 ymm15, ymm15, [rsi + 128], 1
1:
  mov rdi, r15
  HCALL(0x103)               /* snapshot point */
  lea rsi, [rip + pattern]
  xor ebx, ebx
#define CHECK(n) \
  movdqu xmm14, [rsi + 16 * n]; pcmpeqb xmm14, xmm##n; pmovmskb eax, xmm14; cmp eax, 0xffff; setne cl; or bl, cl
  CHECK(0)
  CHECK(1)
  CHECK(2)
  CHECK(3)
  CHECK(4)
  CHECK(5)
  CHECK(6)
  CHECK(7)
  CHECK(8)
  CHECK(9)
  CHECK(10)
  CHECK(11)
  CHECK(12)
  CHECK(13)
  movdqu xmm13, [rsi + 240]
  pcmpeqb xmm13, xmm15
  pmovmskb eax, xmm13
  cmp eax, 0xffff
  setne cl
  or bl, cl
  test r15, 4
  jz 2f
  vextractf128 xmm13, ymm0, 1
  movdqu xmm12, [rsi + 240]
  pcmpeqb xmm13, xmm12
  pmovmskb eax, xmm13
  cmp eax, 0xffff
  setne cl
  or bl, cl
  vextractf128 xmm13, ymm15, 1
  movdqu xmm12, [rsi + 128]
  pcmpeqb xmm13, xmm12
  pmovmskb eax, xmm13
  cmp eax, 0xffff
  setne cl
  or bl, cl
2:
  lea rsi, [rip + ok]
  test bl, bl
  jz 3f
  lea rsi, [rip + bad]
3: call puts
  POWER_OFF
  .section .rodata
  .balign 16
pattern:
  .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
  .byte 0x10+\n, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, \n
  .endr
ok: .asciz "simd ok\n"
bad: .asciz "simd BAD\n"
