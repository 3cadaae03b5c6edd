#!/usr/bin/env bash
# tests/custom_worker_test.sh BUILD_DIR EXAMPLE_DIR
#
# The installed package end to end: installs BUILD_DIR into a temporary
# prefix, builds examples/custom-worker out of tree against it with
# find_package(Switchyard), starts the installed `yard broker`, runs the
# example's worker (its own "wordcount" handler) and checks what the jobs
# return: texts sent with the example's producer (Switchyard::client), and a
# batch pushed with the installed `yard push`.
set -euo pipefail
build=$(cd "$1" && pwd)
example=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yard-custom-worker.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$tmp"/*.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }
  done
  exit 1
}

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  fail "cmake --install"
for f in bin/yard include/switchyard/worker/worker.h \
  include/switchyard/client/producer.h include/switchyard/broker/broker.h \
  include/switchyard/schemas/envelope_generated.h \
  lib/cmake/Switchyard/SwitchyardConfig.cmake \
  lib/cmake/Switchyard/SwitchyardConfigVersion.cmake; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done

# Out of tree, against the prefix only. ccache (when present) with the
# temporary directory as its base, so that reruns hit the cache.
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
export CCACHE_BASEDIR=$tmp CCACHE_NOHASHDIR=1
cmake -S "$example" -B "$tmp/build" "${gen[@]}" "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$tmp/configure.log" 2>&1 || fail "configure examples/custom-worker"
cmake --build "$tmp/build" >"$tmp/compile.log" 2>&1 ||
  fail "build examples/custom-worker"

yard=$prefix/bin/yard
"$yard" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
  --heartbeat-ms 200 >"$tmp/broker.log" 2>&1 &
pids+=($!)
ready=""
for _ in $(seq 100); do
  ready=$(grep -m1 '^yard broker ready' "$tmp/broker.log" || true)
  [ -n "$ready" ] && break
  sleep 0.1
done
[ -n "$ready" ] || fail "the broker did not start"
frontend=$(sed -E 's/.*frontend=([^ ]+).*/\1/' <<<"$ready")
backend=$(sed -E 's/.*backend=([^ ]+).*/\1/' <<<"$ready")

"$tmp/build/wordcount-worker" --connect "$backend" >"$tmp/worker.log" 2>&1 &
pids+=($!)

got=$("$tmp/build/wordcount-submit" --connect "$frontend" \
  "The cat and the hat" "one two, two; THREE three three!" "" "x") ||
  fail "wordcount-submit: $got"
want="words=5 distinct=4 top=the:2
words=6 distinct=3 top=three:3
words=0 distinct=0 top=
words=1 distinct=1 top=x:1"
[ "$got" = "$want" ] || fail "wordcount answers: got
$got
want
$want"

json=$("$yard" push --connect "$frontend" --task wordcount \
  --payload "to be or not to be" --count 200 --timeout 30 --json) ||
  fail "yard push: $json"
grep -q '"completed":200' <<<"$json" || fail "yard push: $json"
grep -q '"failed":0' <<<"$json" || fail "yard push: $json"

# SIGTERM drains the worker, which exits 0.
kill -TERM "${pids[1]}"
wait "${pids[1]}" || fail "the worker exited $? after SIGTERM"
echo "custom worker: ok"
