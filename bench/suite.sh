#!/usr/bin/env bash
# suite.sh: the micro-benchmark suite in one command, one JSON file out.
#
#   codec_bench        envelope encode/decode, Verifier, histogram
#   queue_bench        in-memory queue push -> claim -> complete per job
#   balancer_bench     Balancer::Pick per strategy, 10/100/1000 workers
#   redis_queue_bench  the durable queue against a redis-server it starts
#                      itself (skipped, and said so, without
#                      /usr/bin/redis-server or $YARD_REDIS_SERVER)
#
# Each binary runs under `timeout 600` with --benchmark_min_time (a plain
# number of seconds: Debian 12's libbenchmark 1.7.1 refuses "0.5s") and
# writes Google Benchmark JSON; the script merges them into
#   {"when", "host": {cores, uname, cpu_model, ...}, "git", "params",
#    "benchmarks": {binary: [{name, real_time, cpu_time, time_unit,
#                             iterations, items_per_second, ns_per_item,
#                             bytes_per_second, counters}]},
#    "runs": {binary: {exit_code, seconds}}, "skipped", "failed"}
# and prints a table (name, time per iteration, items/s, ns per item) on
# stdout. ns_per_item is 1e9 / items_per_second: ns per job (or result,
# pick, record), from CPU time unless the benchmark measures real time
# (redis_queue_bench does). Raw JSON and console output of each binary go to
# <out>-logs/. If a benchmark binary is missing, scripts/build.sh builds the
# build directory first (the whole project).
#
# End-to-end hook: with --e2e or SUITE_E2E=1, bench/e2e.sh (if it exists)
# runs as `bench/e2e.sh --build DIR`, and <build>/bench/results/
# e2e-latest.json, if that run wrote it, is merged in as "end_to_end"
# (bounded by `timeout 3600`; e2e.sh bounds each of its runs itself).
#
# usage: bench/suite.sh [--build DIR] [--out FILE] [--min-time SECONDS]
#                       [--quick] [--e2e]
#   --build     build directory                   (default build)
#   --out       merged JSON (default <build>/bench/results/suite-latest.json)
#   --min-time  --benchmark_min_time per benchmark (default 0.5)
#   --quick     a smoke run: min time 0.05 unless --min-time is given
#   --e2e       also run bench/e2e.sh (as SUITE_E2E=1 does)
# Exit codes: 0 ok, 1 a benchmark failed (the JSON still holds the others),
# 2 usage.
set -euo pipefail

build=build
out=""
min_time=""
quick=0
e2e=${SUITE_E2E:-0}
bench_timeout=600   # each benchmark binary
e2e_timeout=3600    # all of bench/e2e.sh (it bounds each of its runs itself)
binaries=(codec_bench queue_bench balancer_bench redis_queue_bench)

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"  # usage, need_python3

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --min-time) min_time="${2:?}"; shift 2 ;;
    --quick) quick=1; shift ;;
    --e2e) e2e=1; shift ;;
    -h|--help) usage ;;
    *) echo "suite.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
need_python3
if [[ -z "$min_time" ]]; then
  if ((quick)); then min_time=0.05; else min_time=0.5; fi
fi
if ! [[ "$min_time" =~ ^[0-9]*\.?[0-9]+$ ]] ||
    ! awk -v t="$min_time" 'BEGIN { exit !(t > 0) }'; then
  echo "suite.sh: --min-time must be a positive number of seconds" >&2
  exit 2
fi
[[ "$e2e" == 1 ]] || e2e=0

here="$(cd "$(dirname "$0")" && pwd)"
[[ -n "$out" ]] || out="$build/bench/results/suite-latest.json"

missing=0
for b in "${binaries[@]}"; do [[ -x "$build/bench/$b" ]] || missing=1; done
if ((missing)); then
  echo "suite.sh: building $build (scripts/build.sh)" >&2
  mkdir -p "$build"
  if ! "$here/../scripts/build.sh" "$(cd "$build" && pwd)" >&2; then
    echo "suite.sh: scripts/build.sh $build failed" >&2
    exit 1
  fi
  for b in "${binaries[@]}"; do
    if [[ ! -x "$build/bench/$b" ]]; then
      echo "suite.sh: $build/bench/$b still missing after the build" \
        "(YARD_BUILD_BENCH=OFF?)" >&2
      exit 1
    fi
  done
fi

mkdir -p "$(dirname "$out")"
logs="${out%.json}-logs"
rm -rf "$logs"
mkdir -p "$logs"

# ---- running, bounded ----

# The benchmark (under timeout) runs in the background so that an INT or
# TERM reaches our trap; stopping `timeout` stops the benchmark it runs
# (and redis_queue_bench's redis-server dies with it).
current=""
stop_current() {
  if [[ -n "$current" ]] && kill -0 "$current" 2>/dev/null; then
    kill -TERM "$current" 2>/dev/null || true
    wait "$current" 2>/dev/null || true
  fi
  current=""
}
trap stop_current EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bounded SECONDS LOG CMD...: returns CMD's exit code (124: timed out).
run_bounded() {
  local limit=$1 log=$2
  shift 2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 &
  current=$!
  local rc=0
  wait "$current" || rc=$?
  current=""
  return "$rc"
}

# Seconds since $1 (an $EPOCHREALTIME), to 0.1 s.
since() {
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

status="$logs/status.tsv"  # binary, exit code ("skip" too), seconds, note
: >"$status"
redis_server=${YARD_REDIS_SERVER:-/usr/bin/redis-server}
for b in "${binaries[@]}"; do
  if [[ "$b" == redis_queue_bench && ! -x "$redis_server" ]]; then
    echo "suite.sh: skipping $b: no $redis_server" >&2
    printf '%s\tskip\t0\tno %s\n' "$b" "$redis_server" >>"$status"
    continue
  fi
  echo "suite.sh: $b (min time ${min_time}s)" >&2
  start=$EPOCHREALTIME
  rc=0
  run_bounded "$bench_timeout" "$logs/$b.log" "$build/bench/$b" \
    --benchmark_out="$logs/$b.json" --benchmark_out_format=json \
    --benchmark_min_time="$min_time" || rc=$?
  note=""
  if ((rc == 124)); then note="timed out after ${bench_timeout}s"; fi
  if ((rc != 0)); then
    echo "suite.sh: $b exited $rc${note:+ ($note)}:" \
      "$(tail -n 3 "$logs/$b.log")" >&2
  fi
  printf '%s\t%s\t%s\t%s\n' "$b" "$rc" "$(since "$start")" "$note" >>"$status"
done

e2e_json="$build/bench/results/e2e-latest.json"
e2e_start=0
if ((e2e)); then
  if [[ -f "$here/e2e.sh" ]]; then
    echo "suite.sh: end to end (bench/e2e.sh --build $build)" >&2
    e2e_start=$(date +%s)
    start=$EPOCHREALTIME
    rc=0
    run_bounded "$e2e_timeout" "$logs/e2e.log" bash "$here/e2e.sh" \
      --build "$build" || rc=$?
    note=""
    if ((rc == 124)); then note="timed out after ${e2e_timeout}s"; fi
    ((rc == 0)) || echo "suite.sh: bench/e2e.sh exited $rc${note:+ ($note)}:" \
      "$(tail -n 3 "$logs/e2e.log")" >&2
    printf 'e2e\t%s\t%s\t%s\n' "$rc" "$(since "$start")" "$note" >>"$status"
  else
    echo "suite.sh: --e2e: bench/e2e.sh does not exist yet; skipped" >&2
    printf 'e2e\tskip\t0\tbench/e2e.sh does not exist\n' >>"$status"
  fi
fi

# ---- merge ----

git_commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || true)
git_dirty=$(git -C "$here" status --porcelain 2>/dev/null | head -c1 || true)

python3 - "$logs" "$out" "$min_time" "$quick" "$e2e_json" "$e2e_start" \
    "$git_commit" "${git_dirty:+dirty}" <<'PY'
import json, os, sys, time

logs, out, min_time, quick, e2e_json, e2e_start, commit, dirty = sys.argv[1:9]
e2e_start = int(e2e_start)

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None

result = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": {"cores": os.cpu_count(), "uname": " ".join(os.uname()),
             "cpu_model": cpu_model()},
    "git": {"commit": commit or None, "dirty": dirty == "dirty"},
    "params": {"min_time_s": float(min_time), "quick": quick == "1"},
    "benchmarks": {},
    "runs": {},
    "skipped": {},
    "failed": {},
}

def entry(b):
    e = {"name": b["name"]}
    for k in ("real_time", "cpu_time", "time_unit", "iterations",
              "items_per_second", "bytes_per_second", "aggregate_name"):
        if k in b:
            e[k] = b[k]
    if b.get("items_per_second"):
        e["ns_per_item"] = 1e9 / b["items_per_second"]
    known = {"name", "family_index", "per_family_instance_index",
             "run_name", "run_type", "repetitions", "repetition_index",
             "threads", "iterations", "real_time", "cpu_time", "time_unit",
             "items_per_second", "bytes_per_second", "aggregate_name",
             "aggregate_unit", "label", "error_occurred", "error_message"}
    counters = {k: v for k, v in b.items() if k not in known}
    if counters:
        e["counters"] = counters
    if b.get("error_occurred"):
        e["error"] = b.get("error_message", "error")
    return e

context = None
with open(os.path.join(logs, "status.tsv")) as f:
    rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
for name, rc, seconds, note in rows:
    if rc == "skip":
        result["skipped"][name] = note
        continue
    result["runs"][name] = {"exit_code": int(rc), "seconds": float(seconds)}
    if int(rc) != 0:
        result["failed"][name] = note or f"exit code {rc}"
    if name == "e2e":
        continue
    path = os.path.join(logs, name + ".json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as err:
        result["failed"].setdefault(name, f"no JSON report: {err}")
        continue
    context = context or report.get("context", {})
    entries = [entry(b) for b in report.get("benchmarks", [])]
    for e in entries:
        if "error" in e:
            result["failed"].setdefault(name, f"{e['name']}: {e['error']}")
    result["benchmarks"][name] = entries

if context:
    for k in ("mhz_per_cpu", "cpu_scaling_enabled", "load_avg",
              "library_build_type"):
        if k in context:
            result["host"][k] = context[k]

if e2e_start:
    if os.path.exists(e2e_json) and os.path.getmtime(e2e_json) >= e2e_start:
        with open(e2e_json) as f:
            result["end_to_end"] = json.load(f)
    else:
        result["failed"].setdefault(
            "e2e", f"{e2e_json} was not written by this run")

with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def fmt_time(e):
    if "real_time" not in e:
        return "-"
    ns = e["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}.get(
        e.get("time_unit", "ns"), 1)
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.3g} ns"

def fmt_rate(v):
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{unit}/s"
    return f"{v:.3g}/s"

width = max([len(e["name"]) for es in result["benchmarks"].values()
             for e in es] + [20])
print(f"{'benchmark':<{width}}  {'time/iter':>12}  {'items/s':>10}"
      f"  {'ns/item':>10}")
for binary, entries in result["benchmarks"].items():
    print(f"-- {binary}")
    for e in entries:
        ips = e.get("items_per_second")
        rate = fmt_rate(ips) if ips else "-"
        per = f"{e['ns_per_item']:.1f}" if "ns_per_item" in e else "-"
        flag = "  ERROR: " + e["error"] if "error" in e else ""
        print(f"{e['name']:<{width}}  {fmt_time(e):>12}  {rate:>10}"
              f"  {per:>10}{flag}")
if "end_to_end" in result:
    print("-- end to end: see \"end_to_end\" in the JSON")
for name, why in result["skipped"].items():
    print(f"skipped {name}: {why}")
for name, why in result["failed"].items():
    print(f"FAILED {name}: {why}", file=sys.stderr)
print(f"suite: {out}")
sys.exit(1 if result["failed"] else 0)
PY
