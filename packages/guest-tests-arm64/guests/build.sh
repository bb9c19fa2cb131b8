#!/usr/bin/env bash
# Rebuilds this package's test guests into bin/ (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC helpers) is machine-arm64's, used in
# place; flags match its build.sh, so the build is reproducible the same way.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-bin}"
mkdir -p "$OUT"
RT=../../machine-arm64/guests/runtime
CC="${CROSS}gcc"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$(cd ../.. && pwd)"=. -I"$RT" -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,"$RT/guest.ld" -Wl,-n -no-pie)
RUNTIME=("$RT/start.S" "$RT/runtime.c" "$RT/smccc_regs.S")

OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
compile() { # source -> prints object path
  local o="$OBJ/$(basename "${1%.*}").o"
  "$CC" "${CFLAGS[@]}" -c -o "$o" "$1"
  echo "$o"
}
RT_OBJS=()
for s in "${RUNTIME[@]}"; do RT_OBJS+=("$(compile "$s")"); done
for g in smccc; do
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "${RT_OBJS[@]}" "$(compile "src/$g.c")"
done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
