#!/usr/bin/env bash
# instructions.sh: CPU instructions per job spent by the broker, the worker
# and the producer (`yard push`), counted by valgrind's callgrind (Debian's
# valgrind). Unlike jobs/s, an instruction count does not depend on what
# else the machine is doing, so two builds (before and after a change)
# compare exactly on a shared, noisy machine. It counts work, not time:
# cache misses, locks and waits do not show.
#
# Each of broker, worker and producer runs alone under callgrind (memory
# mode, loopback), `yard push` sends JOBS echo jobs of SIZE bytes, then the
# process under count is stopped with SIGTERM; this is done for two job
# counts and the difference is divided by the difference in jobs, so start-up
# and shutdown cancel out.
#
# usage: bench/instructions.sh [--build DIR]... [--jobs N] [--size S]
#   --build  a build directory (repeatable: each is counted; default build)
#   --jobs   jobs of the larger run (default 20000; the smaller is a fifth)
#   --size   payload bytes (default 64)
#   --keep   a directory to keep the callgrind files in, for
#            callgrind_annotate (named <n>.<process>.<jobs>, n: the build's
#            position in the list)
# Prints one line per build and process: "DIR broker|worker|producer N
# instr/job" (the producer's count includes push's own start and report,
# which also cancel out).
# Exit codes: 0 ok, 1 a run failed, 2 usage.
set -euo pipefail

builds=()
jobs=20000
size=64
keep=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) builds+=("${2:?}"); shift 2 ;;
    --jobs) jobs="${2:?}"; shift 2 ;;
    --size) size="${2:?}"; shift 2 ;;
    --keep) keep="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "instructions.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ ${#builds[@]} -gt 0 ]] || builds=(build)
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -ge 100 ]] || {
  echo "instructions.sh: --jobs: a number >= 100" >&2; exit 2; }
command -v valgrind >/dev/null || {
  echo "instructions.sh: valgrind is not installed" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# count YARD WHICH N: instructions of WHICH (broker|worker|producer) over a
# run of N jobs.
count() {
  local yard=$1 which=$2 n=$3
  local fe be out=$tmp/callgrind.$which.$n
  fe=tcp://127.0.0.1:$(free_port)
  be=tcp://127.0.0.1:$(free_port)
  local broker=("$yard" broker --frontend "$fe" --backend "$be")
  local worker=("$yard" worker --connect "$be" --concurrency 2)
  local vg=(valgrind --tool=callgrind --callgrind-out-file="$out" -q)
  local push_vg=()
  if [[ $which == producer ]]; then
    push_vg=("${vg[@]}")
    "${broker[@]}" >"$tmp/broker.out" 2>"$tmp/broker.log" & pids+=($!); local counted=$!
    sleep 1
    "${worker[@]}" >"$tmp/worker.out" 2>"$tmp/worker.log" & pids+=($!); local other=$!
  elif [[ $which == broker ]]; then
    "${vg[@]}" "${broker[@]}" >"$tmp/broker.out" 2>"$tmp/broker.log" & pids+=($!); local counted=$!
    sleep 3
    "${worker[@]}" >"$tmp/worker.out" 2>"$tmp/worker.log" & pids+=($!); local other=$!
  else
    "${broker[@]}" >"$tmp/broker.out" 2>"$tmp/broker.log" & pids+=($!); local other=$!
    sleep 1
    "${vg[@]}" "${worker[@]}" >"$tmp/worker.out" 2>"$tmp/worker.log" & pids+=($!); local counted=$!
  fi
  sleep 3
  if ! timeout 600 "${push_vg[@]}" "$yard" push --connect "$fe" --task echo --count "$n" \
      --size "$size" --timeout 300 --json >"$tmp/push.json" 2>"$tmp/push.log"; then
    echo "instructions.sh: push failed ($which, $n jobs):" >&2
    cat "$tmp/push.log" "$tmp/push.json" >&2
    return 1
  fi
  python3 - "$tmp/push.json" "$n" <<'EOF' || return 1
import json, sys
r = json.load(open(sys.argv[1]))
if r.get("completed") != int(sys.argv[2]):
    sys.exit("instructions.sh: completed %s of %s" % (r.get("completed"), sys.argv[2]))
EOF
  kill -TERM "$counted"
  wait "$counted" || true
  kill -TERM "$other" 2>/dev/null || true
  wait "$other" 2>/dev/null || true
  # The summary line: "summary: <Ir>" (or "totals:").
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

small=$((jobs / 5))
[[ -z $keep ]] || mkdir -p "$keep"
i=0
for b in "${builds[@]}"; do
  i=$((i + 1))
  yard=$b/tools/yard
  [[ -x $yard ]] || { echo "instructions.sh: no $yard" >&2; exit 2; }
  for which in broker worker producer; do
    lo=$(count "$yard" "$which" "$small") || exit 1
    hi=$(count "$yard" "$which" "$jobs") || exit 1
    echo "$b $which $(( (hi - lo) / (jobs - small) )) instr/job"
    if [[ -n $keep ]]; then
      cp "$tmp/callgrind.$which.$small" "$keep/$i.$which.$small"
      cp "$tmp/callgrind.$which.$jobs" "$keep/$i.$which.$jobs"
    fi
  done
done
