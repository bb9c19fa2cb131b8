#!/usr/bin/env bash
# Every test: set up, typecheck, lint, then the whole vitest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0
pnpm run --silent typecheck
pnpm run --silent lint
pnpm exec vitest run "$@"
