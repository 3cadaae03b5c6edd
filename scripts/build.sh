#!/usr/bin/env bash
# scripts/build.sh [BUILD_DIR] [extra cmake args...]: installs what is
# missing, configures (once) and builds. Default: build/, RelWithDebInfo.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
scripts/deps.sh
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja -DYARD_WERROR=ON "$@" >/dev/null
fi
ninja -C "$dir" -j "$(nproc)"
