#!/usr/bin/env bash
# Rebuilds the x86-64 test guests into bin/ (committed). Reproducible: fixed flags, no build
# id, no debug info, objects first, fixed link order. Needs the host's gcc (as) and ld.
#   ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-bin}"
mkdir -p "$OUT"
CC="${CC:-gcc}"
LD="${LD:-ld}"
ASFLAGS=(-c -x assembler-with-cpp -Iruntime -g0 -Wa,--noexecstack)
LDFLAGS=(-nostdlib -static --build-id=none --no-warn-rwx-segments -n -T runtime/guest.ld)
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
"$CC" "${ASFLAGS[@]}" -o "$OBJ/lib.o" runtime/lib.S
for g in hello loop outloop simd smp triple; do
  "$CC" "${ASFLAGS[@]}" -o "$OBJ/$g.o" "src/$g.S"
  "$LD" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "$OBJ/$g.o" "$OBJ/lib.o"
done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
