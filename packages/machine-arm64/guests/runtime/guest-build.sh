# Shared by every guests/build.sh of the workspace (sourced, after `cd` into that guests/ folder):
# the cross compiler, the fixed flags that make images reproducible (no build id, source paths
# mapped, objects compiled before linking so no random temporary names reach the symbol table),
# and `compile`. The caller sets, before sourcing:
#   RT            this runtime folder, relative to its guests/ folder
#   PREFIX_ROOT   the folder source paths are mapped from (-ffile-prefix-map=PREFIX_ROOT=.)
#   EXTRA_CFLAGS  (optional array) e.g. -mno-outline-atomics for guests with atomics (no libgcc)
# and gets CC, CFLAGS, LDFLAGS, OUT (the first argument, default bin/), OBJ (a temporary folder,
# removed on exit) and `compile SOURCE [FLAGS…]`, which prints the object's path.
CROSS="${CROSS:-aarch64-linux-gnu-}"
OUT="${1:-bin}"
mkdir -p "$OUT"
CC="${CROSS}gcc"
CFLAGS=(-ffreestanding -nostdlib -nostartfiles -static -O2 -mgeneral-regs-only ${EXTRA_CFLAGS[@]+"${EXTRA_CFLAGS[@]}"} -fno-pic -fno-pie
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables -g0
        -ffile-prefix-map="$PREFIX_ROOT"=. -I"$RT" -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,"$RT/guest.ld" -Wl,-n -no-pie)
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT
compile() { # source [flags...] -> prints object path
  local src="$1" o="$OBJ/$(basename "${1%.*}").o"
  shift
  "$CC" "${CFLAGS[@]}" "$@" -c -o "$o" "$src"
  echo "$o"
}
