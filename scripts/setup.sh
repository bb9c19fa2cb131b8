#!/usr/bin/env bash
# One-time, idempotent set-up for a fresh machine with nothing but Node and npm:
# Debian packages the machines need, pnpm through corepack, dependencies, build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the arm64 machine runs guests on Unicorn 2 (libunicorn2); the
# benchmark compiles its C baselines against it (libunicorn-dev).
APT_PACKAGES=(libunicorn2 libunicorn-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]}" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
