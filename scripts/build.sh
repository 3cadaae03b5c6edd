#!/usr/bin/env bash
# scripts/build.sh [BUILD_DIR] [extra cmake args...]: installs what is
# missing, configures (once) and builds. Default: build/, RelWithDebInfo.
# YARD_NINJA_TARGETS: build only these targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
scripts/deps.sh
# ccache makes rebuilds on the same machine cheap; paths are hashed relative
# to the checkout and the build directory is left out of the hash, so two
# clones of the tree share one cache (their debug info may then name the
# other clone's build directory).
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja -DYARD_WERROR=ON "${launcher[@]}" "$@" >/dev/null
fi
# shellcheck disable=SC2086  # a list of target names
ninja -C "$dir" -j "$(nproc)" ${YARD_NINJA_TARGETS:-}
