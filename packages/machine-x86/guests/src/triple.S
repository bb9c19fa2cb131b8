/* triple: executes ud2 with an empty IDT: #UD -> #GP -> #DF -> triple fault (KVM_EXIT_SHUTDOWN). */
.intel_syntax noprefix
#include "guest.h"
GUEST_START(0, 0)
main:
  ud2
