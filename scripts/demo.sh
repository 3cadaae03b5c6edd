#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts a local cluster
# (a redis-server of its own, brokers in durable mode and workers, all on
# 127.0.0.1), pushes jobs through it with a live progress line, prints
# throughput and latency and the queue's state in Redis, and stops
# everything.
#   scripts/demo.sh [--jobs N] [--brokers B] [--workers W] [--concurrency C]
#                   [--size BYTES] [--task NAME] [--window IN_FLIGHT]
#                   [--memory | --redis URL] [--fsync-always]
#   --memory: brokers keep jobs in memory (no Redis); --redis URL: use that
#   Redis instead of starting one; --fsync-always: the local Redis fsyncs
#   every write and brokers refuse to run without it (--require-fsync).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=200000 brokers=1 workers=2 concurrency=2 size=64 task=echo window=1000
mode=durable redis_url= fsync=everysec
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --task) task=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --memory) mode=memory; shift ;;
    --redis) redis_url=$2; shift 2 ;;
    --fsync-always) fsync=always; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
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

# Durable mode: a redis-server of our own on a free loopback port, AOF on.
durable=()
if [ "$mode" = durable ]; then
  if [ -z "$redis_url" ]; then
    for _ in 1 2 3 4 5; do
      port=$((20000 + RANDOM % 30000))
      redis-server --port "$port" --bind 127.0.0.1 --dir "$run" --save '' \
        --appendonly yes --appendfsync "$fsync" --logfile "$run/redis.log" &
      rpid=$!
      for _ in $(seq 1 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1
      done
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        pids+=("$rpid"); redis_url="redis://127.0.0.1:$port"; break
      fi
      kill -KILL "$rpid" 2>/dev/null || true
    done
    [ -n "$redis_url" ] || { echo "demo: could not start redis-server" >&2; exit 1; }
  fi
  durable=(--redis "$redis_url")
  [ "$fsync" = always ] && durable+=(--require-fsync)
fi

frontends=() backends=()
for i in $(seq 1 "$brokers"); do
  "$yard" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
    "${durable[@]}" --log-level warn >"$run/broker$i.out" 2>"$run/broker$i.err" &
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
if [ "$mode" = durable ]; then
  echo "cluster: $brokers broker(s) [$fe] in durable mode on $redis_url (appendfsync $fsync), $workers worker(s) x $concurrency threads"
else
  echo "cluster: $brokers broker(s) [$fe] in memory mode, $workers worker(s) x $concurrency threads"
fi
echo "pushing $jobs '$task' jobs of $size bytes, window $window"
commands() {
  redis-cli -u "$redis_url" INFO stats 2>/dev/null |
    sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'
}
[ "$mode" = durable ] && before=$(commands)
status=0
"$yard" push --connect "$fe" --task "$task" --count "$jobs" --size "$size" \
  --window "$window" --timeout 300 || status=$?
if [ "$mode" = durable ]; then
  after=$(commands)
  if [ -n "$before" ] && [ -n "$after" ]; then
    awk -v n=$((after - before)) -v j="$jobs" 'BEGIN {
      printf "redis: %d commands for %d jobs: %.3f per job\n", n, j, n / j }'
  fi
  echo
  echo "the queue in Redis afterwards (yard queue stats --redis $redis_url):"
  "$yard" queue stats --redis "$redis_url" || true
fi
exit "$status"
