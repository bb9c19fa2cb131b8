#!/usr/bin/env bash
# Rebuilds this package's Xen test guests into bin/ (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC/Xen hypercall helpers) is
# machine-arm64's, used in place, with its flags (runtime/guest-build.sh; plus
# -mno-outline-atomics: the guests use atomics and link no libgcc), so the build is reproducible.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
RT=../../machine-arm64/guests/runtime
PREFIX_ROOT="$(cd ../.. && pwd)"
EXTRA_CFLAGS=(-mno-outline-atomics)
source "$RT/guest-build.sh"
CFLAGS+=(-Isrc)
RUNTIME=("$RT/start.S" "$RT/runtime.c" src/xenlib.c)

RT_OBJS=()
for s in "${RUNTIME[@]}"; do o="$(compile "$s")" || exit 1; RT_OBJS+=("$o"); done
for g in badinput deviations evbench fifo probe vaddr; do
  o="$(compile "src/$g.c")" || exit 1
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "${RT_OBJS[@]}" "$o"
done
# reservation.c and balloon.c take their own exceptions (the data aborts of removed pages; the
# balloon's scheduler), so they link the machine runtime without xenlib (whose handle_exception is
# the event-channel upcall).
for g in reservation balloon; do
  o="$(compile "src/$g.c")" || exit 1
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "${RT_OBJS[@]:0:2}" "$o"
done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
