#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts a local cluster
# (brokers and workers on 127.0.0.1), pushes jobs through it with a live
# progress line, prints throughput and latency, and stops everything.
#   scripts/demo.sh [--jobs N] [--brokers B] [--workers W] [--concurrency C]
#                   [--size BYTES] [--task NAME] [--window IN_FLIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=200000 brokers=1 workers=2 concurrency=2 size=64 task=echo window=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --task) task=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "demo: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/build.sh build >/dev/null
yard=build/tools/yard
run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

frontends=() backends=()
for i in $(seq 1 "$brokers"); do
  "$yard" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
    --log-level warn >"$run/broker$i.out" 2>"$run/broker$i.err" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q ready "$run/broker$i.out" && break; sleep 0.05; done
  line=$(grep ready "$run/broker$i.out") || { cat "$run/broker$i.err" >&2; exit 1; }
  frontends+=("$(sed 's/.*frontend=\([^ ]*\).*/\1/' <<<"$line")")
  backends+=("$(sed 's/.*backend=\([^ ]*\).*/\1/' <<<"$line")")
done
fe=$(IFS=,; echo "${frontends[*]}")
be=$(IFS=,; echo "${backends[*]}")
for i in $(seq 1 "$workers"); do
  "$yard" worker --connect "$be" --concurrency "$concurrency" --log-level warn \
    2>"$run/worker$i.err" &
  pids+=($!)
done
echo "cluster: $brokers broker(s) [$fe], $workers worker(s) x $concurrency threads"
echo "pushing $jobs '$task' jobs of $size bytes, window $window"
"$yard" push --connect "$fe" --task "$task" --count "$jobs" --size "$size" \
  --window "$window" --timeout 300
