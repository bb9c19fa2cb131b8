#!/usr/bin/env bash
# Rebuilds the test guests into bin/ (committed: a fresh machine needs no cross compiler).
# Reproducible: fixed flags, no build id, source paths mapped (runtime/guest-build.sh).
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
RT=runtime
PREFIX_ROOT="$PWD"
source runtime/guest-build.sh
RUNTIME=(runtime/start.S runtime/runtime.c)

RT_OBJS=()
for s in "${RUNTIME[@]}"; do RT_OBJS+=("$(compile "$s")"); done
build_c() { # name
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$1.elf" "${RT_OBJS[@]}" "$(compile "src/$1.c")"
}
build_variant() { # name source-name -DNAME=VALUE: one source built with a definition
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$1.elf" "${RT_OBJS[@]}" "$(compile "src/$2.c" "$3")"
}
build_asm() { # name (no runtime)
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$1.elf" "$(compile "src/$1.S")"
}

for g in abi-facts cpu-on-endian debug exceptions fault gic hello holes holes-bench holes-smp masked-counter mmu-alias smp timer-sleep; do build_c "$g"; done
# CPU_ON at entry points vCPU 1 cannot run from (see src/cpu-on-bad.c)
build_variant cpu-on-past-ram cpu-on-bad -DTARGET=0x48000000UL     # RAM ends at 0x4800_0000 (128 MiB)
build_variant cpu-on-uart cpu-on-bad -DTARGET=0x09000000UL         # the PL011
build_variant cpu-on-trampoline cpu-on-bad -DTARGET=0x04000100UL   # the hypervisor's EL3 eret
build_variant cpu-on-bit63 cpu-on-bad -DTARGET=0x8000000040000000UL
build_variant cpu-on-all-ones cpu-on-bad -DTARGET=0xffffffffffffffffUL
for g in compute hvcloop; do build_asm "$g"; done
# An arm64 Linux Image (a raw binary starting with the header of Linux
# Documentation/arch/arm64/booting.rst), not an ELF: see src/linux-hello.S.
build_image() { # name
  local o
  o="$(compile "src/$1.S")"
  "${CROSS}ld" --build-id=none -Ttext=0 -e _start -o "$OBJ/$1.elf" "$o"
  "${CROSS}objcopy" -O binary "$OBJ/$1.elf" "$OUT/$1.Image"
}
build_image linux-hello
echo "built: $(cd "$OUT" && ls *.elf *.Image | tr '\n' ' ')"
