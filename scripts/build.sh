#!/usr/bin/env bash
# scripts/build.sh [BUILD_DIR] [extra cmake args...]: installs what is
# missing, configures (once) and builds. Default: build/, RelWithDebInfo.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
scripts/deps.sh
# ccache makes rebuilds on the same machine cheap; paths are hashed relative
# to the checkout, so two clones of the tree share one cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja -DYARD_WERROR=ON "${launcher[@]}" "$@" >/dev/null
fi
ninja -C "$dir" -j "$(nproc)"
