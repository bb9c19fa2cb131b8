#!/usr/bin/env bash
# Rebuilds this package's test guests into bin/ (committed: a fresh machine needs no cross
# compiler). The runtime (entry, vectors, console, SMCCC helpers) is machine-arm64's, used in
# place, with its flags (runtime/guest-build.sh), so the build is reproducible the same way.
#   CROSS=aarch64-linux-gnu- ./build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")"
RT=../../machine-arm64/guests/runtime
PREFIX_ROOT="$(cd ../.. && pwd)"
source "$RT/guest-build.sh"
RUNTIME=("$RT/start.S" "$RT/runtime.c" "$RT/smccc_regs.S")

RT_OBJS=()
for s in "${RUNTIME[@]}"; do RT_OBJS+=("$(compile "$s")"); done
for g in smccc preempt soc-id impl-cpus; do
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$OUT/$g.elf" "${RT_OBJS[@]}" "$(compile "src/$g.c")"
done
echo "built: $(cd "$OUT" && ls *.elf | tr '\n' ' ')"
