#!/usr/bin/env bash
# isolate.sh: what running handlers in child processes costs. The same echo
# load (yard loadtest: one broker, one worker of --concurrency 2, 64-byte
# payloads, every output audited) with the handlers
#   thread:  in the worker's threads (the default)
#   process: in `--isolate process` children (one per slot, pipe framing)
#   exec-py: in `--exec echo='python3 examples/exec/echo.py'` children
# run back to back, round by round, so the machine's noise hits each alike.
# Prints each run's jobs/s and the median of each mode. Bounded: every run
# under `timeout`; loopback only.
#
# usage: bench/isolate.sh [--build DIR] [--runs R] [--jobs N]
#   (defaults: build, 3, 100000)
# Exit codes: 0 ok, 1 a run failed or lost jobs, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
runs=3
jobs=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "usage: bench/isolate.sh [--build DIR] [--runs R] [--jobs N]" >&2; exit 2 ;;
  esac
done
yard=$build/tools/yard
[ -x "$yard" ] || { echo "isolate.sh: no $yard (scripts/build.sh first)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A extra=(
  [thread]=""
  [process]="--worker-arg=--isolate=process"
  [exec-py]="--worker-arg=--exec=echo=python3 $PWD/examples/exec/echo.py"
)
modes=(thread process exec-py)
for ((r = 1; r <= runs; r++)); do
  for m in "${modes[@]}"; do
    args=(loadtest --jobs "$jobs" --size 64 --workers 1 --concurrency 2 --quiet
          --json "$tmp/$m-$r.json")
    [ -n "${extra[$m]}" ] && args+=("${extra[$m]}")
    if ! timeout 600 "$yard" "${args[@]}" > "$tmp/$m-$r.out" 2>&1; then
      echo "isolate.sh: $m run $r failed:" >&2
      tail -20 "$tmp/$m-$r.out" >&2
      exit 1
    fi
    printf '%-8s run %d: %s jobs/s\n' "$m" "$r" \
      "$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["jobs_per_s"]))' "$tmp/$m-$r.json")"
  done
done
echo
echo "| handlers | jobs/s (median of $runs) |"
echo "|---|---|"
for m in "${modes[@]}"; do
  python3 - "$m" "$tmp"/"$m"-*.json <<'PY'
import json, statistics, sys
rates = [json.load(open(f))["jobs_per_s"] for f in sys.argv[2:]]
print(f"| {sys.argv[1]} | {statistics.median(rates):,.0f} |")
PY
done
