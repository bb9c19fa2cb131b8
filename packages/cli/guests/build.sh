#!/usr/bin/env bash
# Rebuilds the demo guest into bin/demo.elf (committed: a fresh machine needs no cross
# compiler), with the arm64 machine's guest runtime and its reproducible flags.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-bin}"
RT=../../machine-arm64/guests/runtime
mkdir -p "$OUT"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$PWD"=. -ffile-prefix-map="$(cd "$RT" && pwd)"=runtime -I"$RT" -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,"$RT"/guest.ld -Wl,-n -no-pie)
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
for s in "$RT"/start.S "$RT"/runtime.c demo.c; do
  "${CROSS}gcc" "${CFLAGS[@]}" -c -o "$OBJ/$(basename "${s%.*}").o" "$s"
done
"${CROSS}gcc" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/demo.elf" "$OBJ/start.o" "$OBJ/runtime.o" "$OBJ/demo.o"
echo "built: $OUT/demo.elf"
