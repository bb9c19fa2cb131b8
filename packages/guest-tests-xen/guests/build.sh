#!/usr/bin/env bash
# Rebuilds this package's Xen test guests into bin/ (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC/Xen hypercall helpers) is
# machine-arm64's, used in place; flags match its build.sh (plus -mno-outline-atomics: the
# guests use atomics and link no libgcc), so the build is reproducible the same way.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-bin}"
mkdir -p "$OUT"
RT=../../machine-arm64/guests/runtime
CC="${CROSS}gcc"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only -mno-outline-atomics -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$(cd ../.. && pwd)"=. -I"$RT" -Isrc -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,"$RT/guest.ld" -Wl,-n -no-pie)
RUNTIME=("$RT/start.S" "$RT/runtime.c" src/xenlib.c)

# Objects first: linking sources directly would name random temporaries in the symbol table.
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
compile() { # source -> prints object path
  local o="$OBJ/$(basename "${1%.*}").o"
  "$CC" "${CFLAGS[@]}" -c -o "$o" "$1"
  echo "$o"
}
RT_OBJS=()
for s in "${RUNTIME[@]}"; do o="$(compile "$s")" || exit 1; RT_OBJS+=("$o"); done
for g in badinput evbench fifo probe; do
  o="$(compile "src/$g.c")" || exit 1
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "${RT_OBJS[@]}" "$o"
done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
