#!/usr/bin/env bash
# Rebuilds the test guests into bin/ (committed: a fresh machine needs no cross compiler).
# Reproducible: fixed flags, no build id, source paths mapped, sorted inputs.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-bin}"
mkdir -p "$OUT"
CC="${CROSS}gcc"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$PWD"=. -Iruntime -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,runtime/guest.ld -Wl,-n -no-pie)
RUNTIME=(runtime/start.S runtime/runtime.c)

# Compile each source to an object first: linking sources directly would name the compiler's
# random temporary objects in the symbol table (not reproducible).
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
compile() { # source -> prints object path
  local o="$OBJ/$(basename "${1%.*}").o"
  "$CC" "${CFLAGS[@]}" -c -o "$o" "$1"
  echo "$o"
}
RT_OBJS=()
for s in "${RUNTIME[@]}"; do RT_OBJS+=("$(compile "$s")"); done
build_c() { # name
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$1.elf" "${RT_OBJS[@]}" "$(compile "src/$1.c")"
}
build_asm() { # name (no runtime)
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$1.elf" "$(compile "src/$1.S")"
}

for g in debug exceptions fault hello smp; do build_c "$g"; done
for g in compute hvcloop; do build_asm "$g"; done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
