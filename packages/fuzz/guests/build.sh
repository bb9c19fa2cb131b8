#!/usr/bin/env bash
# Rebuilds the fuzz guest into bin/fuzz.elf (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC helpers) is machine-arm64's, used in
# place, with the same flags as its build.sh (plus -mno-outline-atomics: the print lock's
# atomics inline, as there is no libgcc), so the build is reproducible the same way.
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
        -ffile-prefix-map="$(cd ../.. && pwd)"=. -I"$RT" -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,"$RT/guest.ld" -Wl,-n -no-pie)
RUNTIME=("$RT/start.S" "$RT/runtime.c")

OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
compile() { # source -> prints object path
  local o="$OBJ/$(basename "${1%.*}").o"
  "$CC" "${CFLAGS[@]}" -c -o "$o" "$1"
  echo "$o"
}
OBJS=()
for s in "${RUNTIME[@]}" src/call.S src/fuzz.c; do OBJS+=("$(compile "$s")"); done
"$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/fuzz.elf" "${OBJS[@]}"
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
