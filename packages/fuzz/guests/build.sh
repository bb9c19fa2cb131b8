#!/usr/bin/env bash
# Rebuilds the fuzz guest into bin/fuzz.elf (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC helpers) is machine-arm64's, used in
# place, with its flags (runtime/guest-build.sh; plus -mno-outline-atomics: the print lock's
# atomics inline, as there is no libgcc), so the build is reproducible the same way.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
RT=../../machine-arm64/guests/runtime
PREFIX_ROOT="$(cd ../.. && pwd)"
EXTRA_CFLAGS=(-mno-outline-atomics)
source "$RT/guest-build.sh"
RUNTIME=("$RT/start.S" "$RT/runtime.c")

OBJS=()
for s in "${RUNTIME[@]}" src/call.S src/fuzz.c; do OBJS+=("$(compile "$s")"); done
"$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/fuzz.elf" "${OBJS[@]}"
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
