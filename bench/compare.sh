#!/usr/bin/env bash
# compare.sh: Switchyard's end-to-end throughput against the raw ZeroMQ
# baseline, on loopback, with the same job count, payload size and window.
#
#   baseline:   zmq_baseline all --count N --size S --window W --json
#               (client DEALER -> ROUTER/zmq::proxy/DEALER -> echo DEALER,
#                one message per job, three processes)
#   switchyard: yard broker + yard worker --concurrency 2 +
#               yard push --task echo --count N --size S --window W --json
#
# Each side runs --runs times; the script prints the medians and the ratio
# Switchyard/baseline and writes a JSON summary (--out). Every process it
# starts is stopped on exit (trap EXIT), every wait is bounded, and only
# 127.0.0.1 is used. Each run's JSON report and logs go to <out>-logs/.
# Medians are taken per figure (rate, p50, p99, ...) across runs.
#
# usage: bench/compare.sh [--count N] [--size BYTES] [--window W] [--runs R]
#                         [--build DIR] [--out FILE] [--timeout SECONDS]
#                         [--baseline-only]
#   --count     jobs (round trips) per run        (default 1000000)
#   --size      payload bytes                     (default 64)
#   --window    jobs in flight                    (default 1000)
#   --runs      runs of each side                 (default 3)
#   --build     build directory                   (default build)
#   --out       summary JSON (default <build>/bench/results/compare-latest.json)
#   --timeout   bound on one run, seconds         (default 120)
#   --baseline-only  skip Switchyard (e.g. before `yard` is built)
# Exit codes: 0 ok, 1 a run failed, 2 usage.
set -euo pipefail

count=1000000
size=64
window=1000
runs=3
build=build
out=""
run_timeout=120
baseline_only=0

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"  # usage, need_python3

while [[ $# -gt 0 ]]; do
  case "$1" in
    --count) count="${2:?}"; shift 2 ;;
    --size) size="${2:?}"; shift 2 ;;
    --window) window="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --timeout) run_timeout="${2:?}"; shift 2 ;;
    --baseline-only) baseline_only=1; shift ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
need_python3
for v in count size window runs run_timeout; do
  if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
    echo "compare.sh: --${v/run_timeout/timeout} must be a positive integer" >&2
    exit 2
  fi
done

baseline_bin="$build/bench/zmq_baseline"
yard_bin="$build/tools/yard"
[[ -n "$out" ]] || out="$build/bench/results/compare-latest.json"
if [[ ! -x "$baseline_bin" ]]; then
  echo "compare.sh: $baseline_bin not found (ninja -C $build zmq_baseline)" >&2
  exit 2
fi
if [[ $baseline_only -eq 0 && ! -x "$yard_bin" ]]; then
  echo "compare.sh: $yard_bin not found (ninja -C $build yard)" >&2
  exit 2
fi

mkdir -p "$(dirname "$out")"
logs="${out%.json}-logs"
rm -rf "$logs"
mkdir -p "$logs"

# ---- process bookkeeping ----

pids=()

# Background processes run in their own process group (setsid), so that
# anything they start goes with them. alive: the group (or the pid) exists.
alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

# Stops one process and its group: SIGTERM, up to 5 s, then SIGKILL; reaps.
stop_pid() {
  local pid=$1
  if alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "compare.sh: pid $pid ignored SIGTERM; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# Stops, newest first, every process this script started that still runs.
stop_all() {
  local list=("${pids[@]}") i
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do
    stop_pid "${list[$i]}"
  done
  pids=()
}

# Forgets pid $1 (it has been reaped).
forget_pid() {
  local keep=() p
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background under `timeout` (so that a trap can fire
# while we wait) and waits for it; stdout to $1. Returns its exit code.
run_bounded() {
  local stdout=$1 stderr=$2
  shift 2
  setsid timeout --kill-after=5 "$run_timeout" "$@" >"$stdout" 2>"$stderr" &
  local pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}

# Waits up to $2 seconds for a line matching $3 in file $1 while pid $4 lives.
wait_for_line() {
  local file=$1 secs=$2 pattern=$3 pid=$4
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    if grep -q -- "$pattern" "$file" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

fail() {
  echo "compare.sh: $*" >&2
  echo "compare.sh: logs in $logs" >&2
  exit 1
}

# ---- the two sides ----

# The clients bound themselves a little below the outer bound, so that they
# report what they did rather than being killed.
client_timeout() {
  echo $((run_timeout > 20 ? run_timeout - 10 : run_timeout))
}

run_baseline() {
  local i=$1 json="$logs/baseline-$1.json"
  if ! run_bounded "$json" "$logs/baseline-$i.err" "$baseline_bin" all \
      --count "$count" --size "$size" --window "$window" \
      --timeout "$(client_timeout)" \
      --json; then
    fail "baseline run $i failed: $(tail -n 3 "$logs/baseline-$i.err")"
  fi
}

run_switchyard() {
  local i=$1 json="$logs/switchyard-$1.json"
  local broker_out="$logs/broker-$i.out"
  setsid "$yard_bin" broker --frontend 'tcp://127.0.0.1:*' \
    --backend 'tcp://127.0.0.1:*' >"$broker_out" 2>"$logs/broker-$i.err" &
  local broker=$!
  pids+=("$broker")
  if ! wait_for_line "$broker_out" 15 '^yard broker ready ' "$broker"; then
    fail "yard broker did not get ready: $(tail -n 3 "$logs/broker-$i.err")"
  fi
  local ready frontend backend
  ready=$(grep -m1 '^yard broker ready ' "$broker_out")
  frontend=$(sed -n 's/.*frontend=\([^ ]*\).*/\1/p' <<<"$ready")
  backend=$(sed -n 's/.*backend=\([^ ]*\).*/\1/p' <<<"$ready")
  [[ "$frontend" == tcp://127.0.0.1:* && "$backend" == tcp://127.0.0.1:* ]] ||
    fail "unexpected ready line: $ready"

  setsid "$yard_bin" worker --connect "$backend" --concurrency 2 \
    >"$logs/worker-$i.out" 2>"$logs/worker-$i.err" &
  local worker=$!
  pids+=("$worker")
  sleep 0.5  # let the worker register, as the baseline's warm-up round trip
  kill -0 "$worker" 2>/dev/null ||
    fail "yard worker exited: $(tail -n 3 "$logs/worker-$i.err")"

  local rc=0
  run_bounded "$json" "$logs/push-$i.err" "$yard_bin" push \
    --connect "$frontend" --task echo --count "$count" --size "$size" \
    --window "$window" --timeout "$(client_timeout)" --json || rc=$?
  stop_all  # worker, then broker
  ((rc == 0)) || fail "switchyard run $i: yard push exited $rc:" \
    "$(tail -n 3 "$logs/push-$i.err")"
}

echo "compare.sh: count=$count size=$size window=$window runs=$runs" \
  "build=$build (loopback; $(nproc) cores)" >&2
for ((i = 1; i <= runs; i++)); do
  echo "compare.sh: baseline run $i/$runs" >&2
  run_baseline "$i"
  if ((baseline_only == 0)); then
    echo "compare.sh: switchyard run $i/$runs" >&2
    run_switchyard "$i"
  fi
done

# ---- summary ----

python3 - "$logs" "$out" "$runs" "$count" "$size" "$window" \
    "$baseline_only" <<'PY'
import json, os, statistics, sys, time

logs, out = sys.argv[1], sys.argv[2]
runs, count, size, window, baseline_only = map(int, sys.argv[3:8])

def load(name):
    with open(os.path.join(logs, name)) as f:
        text = f.read().strip()
    try:
        return json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit(f"compare.sh: {name}: not a JSON report: {text[:200]!r}")

def median_of(reports, rate_key):
    lat = lambda k: statistics.median(r["latency_us"][k] for r in reports)
    return {
        "per_s": statistics.median(r[rate_key] for r in reports),
        "latency_us": {k: lat(k) for k in ("p50", "p99", "p999", "max")},
    }

base = [load(f"baseline-{i}.json") for i in range(1, runs + 1)]
summary = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": {"cores": os.cpu_count(), "uname": " ".join(os.uname())},
    "params": {"count": count, "size": size, "window": window, "runs": runs},
    "baseline": {"median": median_of(base, "round_trips_per_s"),
                 "runs": base},
}
ok = all(r.get("complete", True) and r["round_trips"] == count for r in base)
if not baseline_only:
    yard = [load(f"switchyard-{i}.json") for i in range(1, runs + 1)]
    summary["switchyard"] = {"median": median_of(yard, "jobs_per_s"),
                             "runs": yard}
    b = summary["baseline"]["median"]["per_s"]
    y = summary["switchyard"]["median"]["per_s"]
    summary["ratio_switchyard_over_baseline"] = y / b if b else None
    for r in yard:
        if r["completed"] != count or r.get("failed") or r.get("lost"):
            ok = False
summary["all_complete"] = ok
with open(out, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")

def line(name, m, unit):
    l = m["latency_us"]
    print(f"{name:<11} {m['per_s']:>12,.0f} {unit}/s   latency us p50 "
          f"{l['p50']:.0f}  p99 {l['p99']:.0f}  p99.9 {l['p999']:.0f}  "
          f"max {l['max']:.0f}")

print(f"medians of {runs} run(s), {count} jobs of {size} B, window {window}:")
line("baseline", summary["baseline"]["median"], "round trips")
if not baseline_only:
    line("switchyard", summary["switchyard"]["median"], "jobs")
    print(f"ratio switchyard/baseline: "
          f"{summary['ratio_switchyard_over_baseline']:.3f}")
if not ok:
    print("WARNING: some runs did not complete every job", file=sys.stderr)
print(f"summary: {out}")
sys.exit(0 if ok else 1)
PY
