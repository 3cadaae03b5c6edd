#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, checks formatting,
# runs every test (unit, integration, benchmark smoke runs), then builds the
# tests again with ASan+UBSan and runs them there too, then builds the
# libFuzzer targets (clang) and runs each for 15 s (scripts/fuzz.sh).
#   scripts/test.sh            everything
#   SKIP_SANITIZERS=1 scripts/test.sh   the plain build only
#   SKIP_FUZZ=1 scripts/test.sh         without the fuzz smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

scripts/deps.sh

echo "== format check (clang-format, .clang-format)"
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || find . -name '*.cc' -o -name '*.h' | grep -v '^./build')
clang-format --dry-run --Werror $files

echo "== build (RelWithDebInfo, warnings as errors)"
scripts/build.sh build
echo "== tests"
# Unit tests in parallel; multi-process tests one at a time (2 cores).
ctest --test-dir build --output-on-failure -j2 -L 'unit|bench'
ctest --test-dir build --output-on-failure -L 'integration'
ctest --test-dir build --output-on-failure -L 'redis'  # a real redis-server

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== ASan+UBSan build and tests"
  scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DYARD_SANITIZE=address,undefined \
    -DYARD_BUILD_BENCH=OFF -DCMAKE_CXX_FLAGS=-O1
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
  ctest --test-dir build-asan --output-on-failure -j2 -L unit
  ctest --test-dir build-asan --output-on-failure -L integration
  ctest --test-dir build-asan --output-on-failure -L redis
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz smoke (libFuzzer, clang, ASan+UBSan; 15 s per target)"
  scripts/fuzz.sh 15
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
