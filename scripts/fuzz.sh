#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan+UBSan, in build-fuzz/)
# and runs each for a bounded time. Non-zero exit when any target crashes,
# hangs, leaks or runs out of memory; its input lands in
# build-fuzz/artifacts/TARGET/ (copy it to fuzz/regressions/TARGET/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default: 60 s, all
#   scripts/fuzz.sh --seeds    regenerates fuzz/corpus/ (fuzz/make_seeds.cc)
#
# Per target: first every input of fuzz/regressions/TARGET/ (each crash
# ever found) runs once; then the fuzzer runs over fuzz/corpus/TARGET/ (the
# committed seeds) and the seeds the build's generator writes now. New
# inputs go to build-fuzz/corpus/TARGET/ (scratch, kept between runs, never
# in the repository); logs to build-fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-fuzz
all_targets=(decode_fuzz redis_record_fuzz broker_fuzz worker_fuzz)

# Only the targets and the libraries they link. Debug keeps assertions
# (FlatBuffers' own among them); -O1 for speed.
YARD_NINJA_TARGETS=fuzz_targets scripts/build.sh "$dir" \
  -DCMAKE_CXX_COMPILER=clang++ -DYARD_FUZZ=ON -DYARD_BUILD_TESTS=OFF \
  -DYARD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1

if [ "${1:-}" = --seeds ]; then
  for t in "${all_targets[@]}"; do rm -f "fuzz/corpus/$t"/*; done
  "$dir/fuzz/make_seeds" fuzz/corpus
  echo "fuzz: seeds written to fuzz/corpus/"
  exit 0
fi

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

rm -rf "$dir/seeds"
"$dir/fuzz/make_seeds" "$dir/seeds"
mkdir -p "$dir/logs"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for t in "${targets[@]}"; do
  bin="$dir/fuzz/$t"
  log="$dir/logs/$t.log"
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
  : >"$log"
  # -timeout above the targets' own liveness waits (5 s broker, 10 s
  # worker), which report a hang themselves.
  common=(-rss_limit_mb=2048 -timeout=30 -artifact_prefix="$dir/artifacts/$t/")
  [ -f "fuzz/$t.dict" ] && common+=(-dict="fuzz/$t.dict")
  mapfile -t regressions < <(find "fuzz/regressions/$t" -type f ! -name '*.md' 2>/dev/null | sort)
  if [ ${#regressions[@]} -gt 0 ] &&
     ! "$bin" "${common[@]}" "${regressions[@]}" >>"$log" 2>&1; then
    echo "fuzz: $t FAILED on a regression input (log: $log)"
    tail -n 60 "$log"
    failed+=("$t")
    continue
  fi
  if "$bin" "${common[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      "$dir/corpus/$t" "fuzz/corpus/$t" "$dir/seeds/$t" >>"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    echo "fuzz: $t ok (${#regressions[@]} regressions, ${runs:-?} runs in ${seconds} s, $cov)"
  else
    echo "fuzz: $t FAILED (log: $log; input in $dir/artifacts/$t/)"
    tail -n 60 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}"
  exit 1
fi
