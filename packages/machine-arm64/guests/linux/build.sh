#!/usr/bin/env bash
# Rebuilds ./init, the /init of the Linux acceptance initramfs, from init.c (the built binary is
# committed: a fresh machine needs no cross compiler). Reproducible byte for byte, like the test
# guests (../runtime/guest-build.sh): fixed flags, no build id, source paths mapped, compiled to an
# object before linking so no temporary file name reaches the symbol table. A plain static
# executable at Linux's default user address (ld's default script), no libc, no start files.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUT]     (OUT defaults to ./init)
set -euo pipefail
cd "$(dirname "$0")"
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-init}"
CC="${CROSS}gcc"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$PWD"=. -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,-z,noseparate-code -no-pie -Wl,--gc-sections -s)
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
"$CC" "${CFLAGS[@]}" -ffunction-sections -fdata-sections -c -o "$OBJ/init.o" init.c
"$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OBJ/init" "$OBJ/init.o"
mv "$OBJ/init" "$OUT"
echo "built: $OUT ($(stat -c %s "$OUT") bytes)"
