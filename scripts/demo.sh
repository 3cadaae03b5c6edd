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

usage() {
  cat <<'EOF'
scripts/demo.sh [--jobs N] [--brokers B] [--workers W] [--concurrency C]
                [--size BYTES] [--task NAME] [--window IN_FLIGHT]
                [--memory | --redis URL] [--fsync-always]
A local cluster on 127.0.0.1 (a redis-server of its own, brokers in durable
mode, workers), jobs pushed through it with a live progress line, a summary.
  --memory        brokers keep jobs in memory (no Redis)
  --redis URL     use that Redis instead of starting one
  --fsync-always  the local Redis fsyncs every write; brokers run with
                  --require-fsync
It builds build/tools/yard first (that target only); YARD=PATH runs that
binary instead.
EOF
}
usage_error() { echo "demo: $*" >&2; exit 2; }
# Flag $1 with $2 arguments left must have a value, $3, not another flag.
need_value() {
  [ "$2" -ge 2 ] && [ "${3#--}" = "$3" ] || usage_error "$1 needs a value"
}
# Flag $1's value $2 must be a whole number of at least $3.
need_number() {
  [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] ||
    usage_error "$1: expected a whole number of at least $3, got '$2'"
}

jobs=200000 brokers=1 workers=2 concurrency=2 size=64 task=echo window=1000
mode=durable redis_url= fsync=everysec
while [ $# -gt 0 ]; do
  case "$1" in
    --memory) mode=memory; shift; continue ;;
    --fsync-always) fsync=always; shift; continue ;;
    -h|--help) usage; exit 0 ;;
    --jobs|--brokers|--workers|--concurrency|--size|--task|--window|--redis)
      need_value "$1" $# "${2-}" ;;
    *) usage_error "unknown flag $1 (see --help)" ;;
  esac
  case "$1" in
    --jobs) jobs=$2; need_number "$1" "$2" 1 ;;
    --brokers) brokers=$2; need_number "$1" "$2" 1 ;;
    --workers) workers=$2; need_number "$1" "$2" 1 ;;
    --concurrency) concurrency=$2; need_number "$1" "$2" 1 ;;
    --size) size=$2; need_number "$1" "$2" 0 ;;
    --window) window=$2; need_number "$1" "$2" 1 ;;
    --task) task=$2 ;;
    --redis) redis_url=$2 ;;
  esac
  shift 2
done

if [ -n "${YARD:-}" ]; then
  yard=$YARD
else
  # Only the yard binary, not the tests and benchmarks; ninja shows its
  # progress. Minutes from nothing, seconds once built (ccache).
  echo "demo: building build/tools/yard (the first build takes several minutes)" >&2
  YARD_NINJA_TARGETS=yard scripts/build.sh build >&2
  yard=build/tools/yard
fi
run=$(mktemp -d)
redis_pids=() broker_pids=() worker_pids=()
# SIGTERM to $@, a wait of up to 5 s for them, then SIGKILL (said) to the rest.
stop() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local alive=0 p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.05
  done
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "demo: pid $p still running 5 s after SIGTERM: SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
}
# Workers first, while their brokers still answer (a worker waits up to a
# second to say goodbye to a broker that is gone), then brokers, then Redis.
cleanup() {
  stop ${worker_pids[@]+"${worker_pids[@]}"}
  stop ${broker_pids[@]+"${broker_pids[@]}"}
  stop ${redis_pids[@]+"${redis_pids[@]}"}
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
        redis_pids+=("$rpid"); redis_url="redis://127.0.0.1:$port"; break
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
  broker_pids+=($!)
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
  worker_pids+=($!)
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
  # Brokers publish their workers once a heartbeat (1 s): wait for one
  # report made after the run, so the workers show as they are now.
  sleep 1.2
  echo
  echo "the queue in Redis afterwards (yard queue stats --redis $redis_url):"
  "$yard" queue stats --redis "$redis_url" || true
fi
exit "$status"
