#!/usr/bin/env bash
# e2e.sh: the README's end-to-end table. Switchyard in memory and durable
# mode (yard loadtest, which starts its own cluster and, for durable mode,
# its own redis-server) against the raw ZeroMQ baseline (bench/zmq_baseline:
# DEALER -> ROUTER/zmq::proxy/DEALER -> echo, one message per job), at each
# payload size, with the same job count and window, interleaved run by run so
# that the machine's noise hits every side alike.
#
#   baseline: zmq_baseline all --count N --size S --window W --json
#   memory:   yard loadtest --jobs N --size S --window W --brokers 1
#             --workers 2 --concurrency 2 --json F --quiet
#   durable:  the same with --redis local (AOF on, appendfsync everysec)
#
# It prints a Markdown table of medians (throughput, p50, p99, ratio to the
# baseline's median at the same size) and writes every run and the medians to
# --out as JSON. Bounded: each run under `timeout`; loopback only.
#
# usage: bench/e2e.sh [--build DIR] [--runs R] [--sizes "64:1000000 4096:200000"]
#                     [--modes "memory durable"] [--window W] [--out FILE]
#   --build   build directory                       (default build)
#   --runs    runs of each side                     (default 3)
#   --sizes   SIZE:JOBS pairs, payload bytes and jobs per run
#             (default "64:1000000 4096:200000")
#   --modes   which Switchyard modes                (default "memory durable")
#   --window  jobs in flight                        (default 1000)
#   --out     JSON (default <build>/bench/results/e2e-latest.json)
# Exit codes: 0 ok, 1 a run failed or lost jobs, 2 usage.
set -euo pipefail

build=build
runs=3
sizes="64:1000000 4096:200000"
modes="memory durable"
window=1000
out=""

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"  # usage, need_python3, prepare_results, run_one
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --sizes) sizes="${2:?}"; shift 2 ;;
    --modes) modes="${2:?}"; shift 2 ;;
    --window) window="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "e2e.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
need_python3
[[ "$runs" =~ ^[1-9][0-9]*$ && "$window" =~ ^[1-9][0-9]*$ ]] ||
  { echo "e2e.sh: --runs and --window must be positive integers" >&2; exit 2; }
for sj in $sizes; do
  [[ "$sj" =~ ^[0-9]+:[1-9][0-9]*$ ]] ||
    { echo "e2e.sh: --sizes wants SIZE:JOBS pairs, got '$sj'" >&2; exit 2; }
done
for m in $modes; do
  [[ "$m" == memory || "$m" == durable ]] ||
    { echo "e2e.sh: unknown mode '$m'" >&2; exit 2; }
done

yard="$build/tools/yard"
baseline="$build/bench/zmq_baseline"
for b in "$yard" "$baseline"; do
  [[ -x "$b" ]] || { echo "e2e.sh: $b not found (scripts/build.sh $build)" >&2; exit 2; }
done
prepare_results e2e

failed=0
for ((i = 1; i <= runs; i++)); do
  for sj in $sizes; do
    size=${sj%%:*}
    jobs=${sj##*:}
    run_one "baseline-$size-$i" "$baseline" all --count "$jobs" --size "$size" \
      --window "$window" --timeout 300 --json || failed=1
    cp "$logs/baseline-$size-$i.out" "$logs/baseline-$size-$i.json"
    for mode in $modes; do
      redis=()
      [[ "$mode" == durable ]] && redis=(--redis local)
      run_one "$mode-$size-$i" "$yard" loadtest --jobs "$jobs" --size "$size" \
        --window "$window" --brokers 1 --workers 2 --concurrency 2 \
        "${redis[@]}" --timeout 300 --quiet \
        --json "$logs/$mode-$size-$i.json" || failed=1
    done
  done
done

rc=0
python3 - "$logs" "$out" "$runs" "$window" "$sizes" "$modes" <<'PY' || rc=$?
import json, os, statistics, sys, time, platform

logs, out, runs, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sizes = [tuple(map(int, s.split(":"))) for s in sys.argv[5].split()]
modes = sys.argv[6].split()

def load(name):
    try:
        with open(os.path.join(logs, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError, IndexError):
        return None

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "host": {"cores": os.cpu_count(), "cpu": cpu_model(),
                   "uname": " ".join(os.uname())},
          "params": {"runs": runs, "window": window, "sizes": sizes,
                     "modes": modes},
          "rows": []}
ok = True
for size, jobs in sizes:
    base = [load(f"baseline-{size}-{i}") for i in range(1, runs + 1)]
    base = [b for b in base if b and b.get("complete")]
    if len(base) < runs:
        ok = False
    b_rate = statistics.median(b["round_trips_per_s"] for b in base) if base else None
    result["rows"].append({"side": "zmq baseline", "size": size, "jobs": jobs,
        "jobs_per_s": b_rate,
        "p50_us": statistics.median(b["latency_us"]["p50"] for b in base) if base else None,
        "p99_us": statistics.median(b["latency_us"]["p99"] for b in base) if base else None,
        "ratio": 1.0 if base else None,
        "runs": [b["round_trips_per_s"] for b in base]})
    for mode in modes:
        reps = [load(f"{mode}-{size}-{i}") for i in range(1, runs + 1)]
        reps = [r for r in reps if r]
        if len(reps) < runs or any(r["totals"]["lost"] or r["verdict"] != "ok" for r in reps):
            ok = False
        rate = statistics.median(r["jobs_per_s"] for r in reps) if reps else None
        result["rows"].append({"side": mode, "size": size, "jobs": jobs,
            "jobs_per_s": rate,
            "p50_us": statistics.median(r["latency_us"]["p50"] for r in reps) if reps else None,
            "p99_us": statistics.median(r["latency_us"]["p99"] for r in reps) if reps else None,
            "ratio": rate / b_rate if rate and b_rate else None,
            "lost": sum(r["totals"]["lost"] for r in reps),
            "runs": [r["jobs_per_s"] for r in reps]})
result["all_ok"] = ok
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print(f"medians of {runs} runs, window {window}, on {result['host']['cores']} cores ({result['host']['cpu']}):\n")
print("| side | payload | jobs/run | jobs/s | p50 | p99 | vs ZeroMQ |")
print("|---|---|---|---|---|---|---|")
for r in result["rows"]:
    print(f"| {r['side']} | {r['size']} B | {r['jobs']:,} | {num(r['jobs_per_s'])} | "
          f"{num(r['p50_us'] and r['p50_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['p99_us'] and r['p99_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['ratio'], '{:.2f}')} |")
print(f"\nruns and medians: {out}")
sys.exit(0 if ok else 1)
PY
((failed == 0 && rc == 0)) || exit 1
