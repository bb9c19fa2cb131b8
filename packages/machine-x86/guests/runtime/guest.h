/* Shared by the x86-64 test guests (GNU as, Intel syntax, through cpp).
 * Ports (see the package README): COM1 0x3f8, hypercall 0x600, exit 0x604. */
#define COM1        0x3f8
#define COM1_LSR    0x3fd
#define HCALL_PORT  0x600
#define EXIT_PORT   0x604

/* The guest's start: jump over the parameter block at 0x100008 (tests patch it). */
#define GUEST_START(p0, p1)           \
  .section .text.start, "ax";         \
  .globl _start;                      \
_start:                               \
  jmp main;                           \
  .balign 8;                          \
param0: .quad p0;                     \
param1: .quad p1;                     \
  .text

/* hypercall: eax = id, rdi/rsi/rdx args -> rax */
#define HCALL(id)       \
  mov eax, id;          \
  mov dx, HCALL_PORT;   \
  out dx, eax

#define POWER_OFF       \
  mov dx, EXIT_PORT;    \
  xor eax, eax;         \
  out dx, eax;          \
9: jmp 9b
