#!/usr/bin/env bash
# The main job: set up, then run the demo (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export COREPACK_ENABLE_DOWNLOAD_PROMPT=0 COREPACK_INTEGRITY_KEYS=0
exec node packages/cli/dist/bin.js demo "$@"
