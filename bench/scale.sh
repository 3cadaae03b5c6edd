#!/usr/bin/env bash
# scale.sh: durable throughput with 1, 2 and 3 brokers (issue 5's README
# table). Each point is `yard loadtest --redis local` (one redis-server, AOF
# everysec) with B brokers, W workers that find the brokers through the
# registry (--discover) and B producers, closed loop; runs are interleaved
# (1, 2, 3, 1, 2, 3, ...) so that the machine's noise hits every point alike.
#
#   yard loadtest --redis local --discover --brokers B --producers B
#     --workers W --concurrency C --jobs N --window WIN --json F --quiet
#
# It prints a Markdown table of medians (throughput, p50, p99, ratio to one
# broker) and writes every run and the medians to --out as JSON. Bounded:
# each run under `timeout`; loopback only.
#
# usage: bench/scale.sh [--build DIR] [--runs R] [--brokers "1 2 3"]
#                       [--jobs N] [--workers W] [--concurrency C]
#                       [--window WIN] [--out FILE]
#   --build        build directory                 (default build)
#   --runs         runs of each point              (default 3)
#   --brokers      broker counts                   (default "1 2 3")
#   --jobs         jobs per run                    (default 300000)
#   --workers      workers                         (default 2)
#   --concurrency  handler threads per worker      (default 2)
#   --window       jobs in flight per producer     (default 1000)
#   --out          JSON (default <build>/bench/results/scale-latest.json)
# Exit codes: 0 ok, 1 a run failed or lost jobs, 2 usage.
set -euo pipefail

build=build
runs=3
brokers="1 2 3"
jobs=300000
workers=2
concurrency=2
window=1000
out=""

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"  # usage, prepare_results, run_one
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --brokers) brokers="${2:?}"; shift 2 ;;
    --jobs) jobs="${2:?}"; shift 2 ;;
    --workers) workers="${2:?}"; shift 2 ;;
    --concurrency) concurrency="${2:?}"; shift 2 ;;
    --window) window="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "scale.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
for v in "$runs" "$jobs" "$workers" "$concurrency" "$window"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale.sh: counts must be positive integers, got '$v'" >&2; exit 2; }
done
for b in $brokers; do
  [[ "$b" =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale.sh: --brokers wants positive integers, got '$b'" >&2; exit 2; }
done

yard="$build/tools/yard"
[[ -x "$yard" ]] || { echo "scale.sh: $yard not found (scripts/build.sh $build)" >&2; exit 2; }
prepare_results scale

failed=0
for ((i = 1; i <= runs; i++)); do
  for b in $brokers; do
    run_one "brokers$b-$i" "$yard" loadtest --redis local --discover \
      --brokers "$b" --producers "$b" --workers "$workers" \
      --concurrency "$concurrency" --jobs "$jobs" --window "$window" \
      --timeout 300 --quiet --json "$logs/brokers$b-$i.json" || failed=1
  done
done

rc=0
python3 - "$logs" "$out" "$runs" "$brokers" "$jobs" "$workers" "$concurrency" <<'PY' || rc=$?
import json, os, statistics, sys, time

logs, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
brokers = [int(b) for b in sys.argv[4].split()]
jobs, workers, conc = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])

def load(name):
    try:
        with open(os.path.join(logs, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
          "params": {"runs": runs, "jobs": jobs, "workers": workers,
                     "concurrency": conc}, "rows": []}
ok, base = True, None
for b in brokers:
    reps = [r for r in (load(f"brokers{b}-{i}") for i in range(1, runs + 1)) if r]
    if len(reps) < runs or any(r["totals"]["lost"] or r["verdict"] != "ok" for r in reps):
        ok = False
    rate = statistics.median(r["jobs_per_s"] for r in reps) if reps else None
    if base is None:
        base = rate
    result["rows"].append({
        "brokers": b, "jobs_per_s": rate,
        "p50_us": statistics.median(r["latency_us"]["p50"] for r in reps) if reps else None,
        "p99_us": statistics.median(r["latency_us"]["p99"] for r in reps) if reps else None,
        "ratio": rate / base if rate and base else None,
        "lost": sum(r["totals"]["lost"] for r in reps),
        "runs": [r["jobs_per_s"] for r in reps]})
result["all_ok"] = ok
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print(f"durable mode, one redis-server, {workers} workers x {conc}, {jobs:,} jobs "
      f"per run, medians of {runs} runs, {result['cores']} cores:\n")
print("| brokers | jobs/s | p50 | p99 | vs 1 broker | runs (jobs/s) |")
print("|---|---|---|---|---|---|")
for r in result["rows"]:
    print(f"| {r['brokers']} | {num(r['jobs_per_s'])} | "
          f"{num(r['p50_us'] and r['p50_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['p99_us'] and r['p99_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['ratio'], '{:.2f}')} | "
          f"{', '.join(num(x) for x in r['runs'])} |")
print(f"\nruns and medians: {out}")
sys.exit(0 if ok else 1)
PY
((failed == 0 && rc == 0)) || exit 1
