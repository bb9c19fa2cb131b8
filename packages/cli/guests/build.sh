#!/usr/bin/env bash
# Rebuilds the demo guest into bin/demo.elf (committed: a fresh machine needs no cross
# compiler), with the arm64 machine's guest runtime and its reproducible flags.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
RT=../../machine-arm64/guests/runtime
PREFIX_ROOT="$PWD"
source "$RT/guest-build.sh"
CFLAGS+=(-ffile-prefix-map="$(cd "$RT" && pwd)"=runtime)
OBJS=()
for s in "$RT"/start.S "$RT"/runtime.c demo.c; do OBJS+=("$(compile "$s")"); done
"$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/demo.elf" "${OBJS[@]}"
echo "built: $OUT/demo.elf"
