#!/usr/bin/env bash
# One-time, idempotent set-up for a fresh machine with nothing but Node and npm:
# Debian packages the machines need, pnpm through corepack, dependencies, build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Unicorn 2.1 for the arm64 machine (libunicorn2t64) and its headers for the benchmark's C
# baselines (libunicorn-dev): Debian trixie's packages, which depend only on libc6 (>= 2.34) and
# so install on this bookworm system. Bookworm's own 2.0.1 checks a guest's *virtual* addresses
# against the physical map before the page-table walk (an OS with its MMU on cannot run) and
# crashes the host process on some guest instructions. Pinned by version and SHA-256 and
# installed with dpkg; if the archive has moved on to a newer build, the newest trixie 2.1 build
# is taken from the package index, itself checked through the archive's signed InRelease.
UNICORN_VERSION=2.1.1-2+b2
UNICORN_SHA256=(
  "libunicorn2t64 3f760a28c65a93662edbcb21fceb2e0a1c0ab0e8277564fc572e6532949e3e3f"
  "libunicorn-dev 479613e244a6023c03708951a5f0e00fc96c83a4b74b4d74c9fe7d3a9050208b"
)
DEBIAN=http://deb.debian.org/debian
have_unicorn() {
  [ "$(dpkg-query -W -f='${Version}' libunicorn2t64 2>/dev/null)" = "$1" ] &&
    [ "$(dpkg-query -W -f='${Version}' libunicorn-dev 2>/dev/null)" = "$1" ]
}
# "Filename SHA256" of the newest package whose name matches the awk regex PACKAGE in trixie's
# signed index for ARCH (amd64 by default): the fallback when a pinned file left the archive.
from_index() {
  local dir arch="${2:-amd64}"; dir="$(mktemp -d)"
  curl -fsS -m 120 -o "$dir/InRelease" "$DEBIAN/dists/trixie/InRelease"
  gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg "$dir/InRelease" 2>/dev/null
  curl -fsS -m 300 -o "$dir/Packages.xz" "$DEBIAN/dists/trixie/main/binary-$arch/Packages.xz"
  local want; want="$(awk -v f="main/binary-$arch/Packages.xz" '/^SHA256:/{p=1;next} /^[A-Za-z]/{p=0} p && $3==f{print $1}' "$dir/InRelease")"
  [ "$(sha256sum "$dir/Packages.xz" | cut -d' ' -f1)" = "$want" ] || { echo "setup: trixie's package index does not match its InRelease" >&2; return 1; }
  xz -dc "$dir/Packages.xz" | awk -v pkg="^($1)\$" '/^Package: /{p=($2 ~ pkg)} p&&/^Version: /{v=$2} p&&/^Filename: /{f=$2} p&&/^SHA256: /{h=$2} /^$/{if(p&&f) print v, f, h; p=0; f=""}' |
    sort -V | tail -n 1 | cut -d' ' -f2-
  rm -rf "$dir"
}
install_unicorn() {
  local dir; dir="$(mktemp -d)"
  local debs=()
  for entry in "${UNICORN_SHA256[@]}"; do
    local pkg="${entry%% *}" sha="${entry##* }"
    local file="pool/main/u/unicorn-engine/${pkg}_${UNICORN_VERSION}_amd64.deb"
    if ! curl -fsS -m 300 -o "$dir/$pkg.deb" "$DEBIAN/$file"; then
      echo "setup: $file is no longer in the archive; taking trixie's current build" >&2
      read -r file sha < <(from_index "$pkg")
      curl -fsS -m 300 -o "$dir/$pkg.deb" "$DEBIAN/$file"
    fi
    [ "$(sha256sum "$dir/$pkg.deb" | cut -d' ' -f1)" = "$sha" ] || { echo "setup: $file: SHA-256 mismatch" >&2; exit 1; }
    debs+=("$dir/$pkg.deb")
  done
  # bookworm's 2.0.1 (libunicorn2) is replaced: libunicorn2t64 Breaks it
  dpkg -r libunicorn-dev libunicorn2 >/dev/null 2>&1 || true
  dpkg -i "${debs[@]}" >/dev/null
  rm -rf "$dir"
}
if ! have_unicorn "$UNICORN_VERSION" && ! { dpkg-query -W -f='${Version}' libunicorn2t64 2>/dev/null | grep -q '^2\.1\.'; }; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install Unicorn 2.1 (libunicorn2t64, libunicorn-dev)" >&2; exit 1
  fi
  echo "setup: installing Unicorn $UNICORN_VERSION from Debian trixie" >&2
  install_unicorn
fi

# The real guest: Debian trixie's stock arm64 kernel (linux-image-*-arm64-unsigned; its vmlinuz is
# an uncompressed arm64 Image), pinned by version and SHA-256 with a fallback to the newest 6.12
# build of trixie (point releases rotate old builds out of the archive), read from the package
# with dpkg-deb (no foreign architecture needed) into .cache/linux/Image, kept between runs.
# From the same package, so its vermagic and symbol versions match the Image: the SMCCC TRNG
# driver module (CONFIG_HW_RANDOM_ARM_SMCCC_TRNG=m), which the acceptance initramfs's /init loads;
# a cache missing either file is fetched again.
LINUX_DEB=pool/main/l/linux/linux-image-6.12.117+deb13-arm64-unsigned_6.12.117-1_arm64.deb
LINUX_SHA256=cc5be026b4113d670d4355f719b7a0103297a36e59717e45a89d0fbd985af041
LINUX_CACHE=.cache/linux
LINUX_TRNG_MODULE=arm_smccc_trng.ko.xz
if [ ! -s "$LINUX_CACHE/Image" ] || [ ! -s "$LINUX_CACHE/$LINUX_TRNG_MODULE" ]; then
  mkdir -p "$LINUX_CACHE"
  tmp="$(mktemp -d)"
  deb="$LINUX_DEB" sha="$LINUX_SHA256"
  echo "setup: fetching Debian's arm64 kernel ($(basename "$deb"))" >&2
  if ! curl -fsS -m 600 -o "$tmp/linux.deb" "$DEBIAN/$deb"; then
    read -r deb sha < <(from_index 'linux-image-6\.12\.[0-9]+\+deb13-arm64-unsigned' arm64)
    echo "setup: the pinned kernel left the archive; taking $(basename "$deb")" >&2
    curl -fsS -m 600 -o "$tmp/linux.deb" "$DEBIAN/$deb"
  fi
  [ "$(sha256sum "$tmp/linux.deb" | cut -d' ' -f1)" = "$sha" ] || { echo "setup: $deb: SHA-256 mismatch" >&2; exit 1; }
  # the modules are under ./usr/lib/modules in trixie's merged-/usr packages (tar's * matches /)
  dpkg-deb --fsys-tarfile "$tmp/linux.deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' \
    "./*lib/modules/*/kernel/drivers/char/hw_random/$LINUX_TRNG_MODULE"
  mv "$tmp"/boot/vmlinuz-* "$LINUX_CACHE/Image.part"
  find "$tmp" -name "$LINUX_TRNG_MODULE" -exec mv {} "$LINUX_CACHE/$LINUX_TRNG_MODULE.part" \;
  basename "$deb" > "$LINUX_CACHE/SOURCE"
  mv "$LINUX_CACHE/Image.part" "$LINUX_CACHE/Image"
  mv "$LINUX_CACHE/$LINUX_TRNG_MODULE.part" "$LINUX_CACHE/$LINUX_TRNG_MODULE"
  rm -rf "$tmp"
fi

# pnpm, pinned by package.json's packageManager, through corepack. Corepack on Node 20
# cannot verify the signatures of current pnpm releases, hence COREPACK_INTEGRITY_KEYS=0.
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$(node -p 'require("./package.json").packageManager.split("@")[1]')" ]; then
  corepack enable pnpm # puts a pnpm shim beside node; package scripts call pnpm by name
fi
pnpm --version >/dev/null
pnpm install --frozen-lockfile --reporter=silent
pnpm run --silent build
# The Linux acceptance test's initrd, .cache/linux/initramfs.cpio: the committed /init
# (packages/machine-arm64/guests/linux) and the TRNG module, written by the built machine package.
node scripts/make-initramfs.mjs
