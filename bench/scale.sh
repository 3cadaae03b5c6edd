#!/usr/bin/env bash
# scale.sh: durable throughput as brokers or Redis primaries are added
# (the README's scale-out tables). Each point is one `yard loadtest`, closed loop,
# with B brokers, B producers and W workers that find the brokers through
# the registry (--discover); runs are interleaved (1, 2, 3, 1, 2, 3, ...) so
# that the machine's noise hits every point alike.
#
#   brokers axis (default): one redis-server, B = 1, 2, 3
#     yard loadtest --redis local --discover --brokers B --producers B ...
#   primaries axis (--primaries "1 3"): a local Redis Cluster of P primaries
#   (the queue in one shard per primary), B = --brokers (default 2), with
#   one plain redis-server as a baseline point
#     yard loadtest --redis-cluster P --discover --brokers B --producers B ...
#
# It prints a Markdown table of medians (throughput, p50, p99, ratio to the
# first point: 1 broker, or 1 primary) and writes every run and the medians
# to --out as JSON. Bounded: each run under `timeout`; loopback only.
#
# usage: bench/scale.sh [--build DIR] [--runs R] [--brokers "1 2 3"]
#                       [--primaries "1 3"] [--jobs N] [--workers W]
#                       [--concurrency C] [--window WIN] [--out FILE]
#   --build        build directory                 (default build)
#   --runs         runs of each point              (default 3)
#   --brokers      broker counts                   (default "1 2 3"; with
#                  --primaries one count, default 2)
#   --primaries    cluster sizes: the primaries axis instead
#   --jobs         jobs per run                    (default 300000)
#   --workers      workers                         (default 2)
#   --concurrency  handler threads per worker      (default 2)
#   --window       jobs in flight per producer     (default 1000)
#   --out          JSON (default <build>/bench/results/scale-latest.json,
#                  or cluster-latest.json for the primaries axis)
# Exit codes: 0 ok, 1 a run failed or lost jobs, 2 usage.
set -euo pipefail

build=build
runs=3
brokers=""
primaries=""
jobs=300000
workers=2
concurrency=2
window=1000
out=""

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"  # usage, need_python3, prepare_results, run_one
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --brokers) brokers="${2:?}"; shift 2 ;;
    --primaries) primaries="${2:?}"; shift 2 ;;
    --jobs) jobs="${2:?}"; shift 2 ;;
    --workers) workers="${2:?}"; shift 2 ;;
    --concurrency) concurrency="${2:?}"; shift 2 ;;
    --window) window="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "scale.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
need_python3
# Points: "P:B" (P = 0: one redis-server, else a cluster of P primaries).
points=()
if [[ -n "$primaries" ]]; then
  brokers=${brokers:-2}
  [[ "$brokers" =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale.sh: with --primaries, --brokers is one count" >&2; exit 2; }
  points+=("0:$brokers")
  for p in $primaries; do points+=("$p:$brokers"); done
else
  for b in ${brokers:-1 2 3}; do points+=("0:$b"); done
fi
# shellcheck disable=SC2086  # $primaries: a list of counts
for v in "$runs" "$jobs" "$workers" "$concurrency" "$window" \
  "${points[@]##*:}" $primaries; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale.sh: counts must be positive integers, got '$v'" >&2; exit 2; }
done

yard="$build/tools/yard"
[[ -x "$yard" ]] || { echo "scale.sh: $yard not found (scripts/build.sh $build)" >&2; exit 2; }
prepare_results "$([[ -n "$primaries" ]] && echo cluster || echo scale)"

failed=0
for ((i = 1; i <= runs; i++)); do
  for point in "${points[@]}"; do
    p=${point%%:*} b=${point##*:}
    redis=(--redis local)
    ((p > 0)) && redis=(--redis-cluster "$p")
    run_one "p$p-b$b-$i" "$yard" loadtest "${redis[@]}" --discover \
      --brokers "$b" --producers "$b" --workers "$workers" \
      --concurrency "$concurrency" --jobs "$jobs" --window "$window" \
      --timeout 300 --quiet --json "$logs/p$p-b$b-$i.json" || failed=1
  done
done

rc=0
python3 - "$logs" "$out" "$runs" "${points[*]}" "$jobs" "$workers" \
  "$concurrency" <<'PY' || rc=$?
import json, os, statistics, sys, time

logs, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
points = [tuple(int(x) for x in p.split(":")) for p in sys.argv[4].split()]
jobs, workers, conc = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
by_primaries = any(p for p, _ in points)

def load(name):
    try:
        with open(os.path.join(logs, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def median(reps, get):
    return statistics.median(get(r) for r in reps) if reps else None

result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
          "params": {"runs": runs, "jobs": jobs, "workers": workers,
                     "concurrency": conc}, "rows": []}
ok = True
for p, b in points:
    reps = [r for r in (load(f"p{p}-b{b}-{i}") for i in range(1, runs + 1)) if r]
    if len(reps) < runs or any(r["totals"]["lost"] or r["verdict"] != "ok" for r in reps):
        ok = False
    result["rows"].append({
        "brokers": b, "primaries": p,
        "shards": max((r["config"].get("redis_shards", 1) for r in reps), default=None),
        "jobs_per_s": median(reps, lambda r: r["jobs_per_s"]),
        "p50_us": median(reps, lambda r: r["latency_us"]["p50"]),
        "p99_us": median(reps, lambda r: r["latency_us"]["p99"]),
        "lost": sum(r["totals"]["lost"] for r in reps),
        "runs": [r["jobs_per_s"] for r in reps]})
# The ratio is to 1 broker, or to the 1-primary cluster (else the first).
base_row = next((r for r in result["rows"] if r["primaries"] == 1), None) \
    if by_primaries else None
base = (base_row or result["rows"][0])["jobs_per_s"]
for r in result["rows"]:
    r["ratio"] = r["jobs_per_s"] / base if r["jobs_per_s"] and base else None
result["all_ok"] = ok
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)
print(f"durable mode, {workers} workers x {conc}, {jobs:,} jobs per run, "
      f"medians of {runs} runs, {result['cores']} cores:\n")
first = "| redis | shards | brokers" if by_primaries else "| brokers"
vs = "vs 1 primary" if by_primaries else "vs 1 broker"
print(f"{first} | jobs/s | p50 | p99 | {vs} | runs (jobs/s) |")
print("|---" * (first.count("|") + 5) + "|")
for r in result["rows"]:
    what = ("one redis-server" if r["primaries"] == 0 else
            f"cluster, {r['primaries']} primar{'y' if r['primaries'] == 1 else 'ies'}")
    lead = f"| {what} | {num(r['shards'], '{}')} | {r['brokers']}" \
        if by_primaries else f"| {r['brokers']}"
    print(f"{lead} | {num(r['jobs_per_s'])} | "
          f"{num(r['p50_us'] and r['p50_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['p99_us'] and r['p99_us'] / 1000, '{:.1f}')} ms | "
          f"{num(r['ratio'], '{:.2f}')} | "
          f"{', '.join(num(x) for x in r['runs'])} |")
print(f"\nruns and medians: {out}")
sys.exit(0 if ok else 1)
PY
((failed == 0 && rc == 0)) || exit 1
