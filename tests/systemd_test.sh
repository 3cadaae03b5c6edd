#!/usr/bin/env bash
# tests/systemd_test.sh YARD UNIT_DIR: the example units pass
# `systemd-analyze verify`, and `yard broker`
# and `yard worker` speak Type=notify: READY=1 once serving, STOPPING=1 when
# SIGTERM starts the drain, then exit 0. A Python datagram socket stands in
# for systemd's $NOTIFY_SOCKET.
set -euo pipefail
yard=$(realpath "$1")
units=$(realpath "$2")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yard-systemd.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze missing (scripts/deps.sh installs systemd)"
{
  # verify wants ExecStart's binary to exist: point it at this build.
  for u in yard-broker.service yard-worker.service; do
    sed "s|/usr/local/bin/yard|$yard|" "$units/$u" >"$tmp/$u"
  done
  out=$(systemd-analyze verify "$tmp/yard-broker.service" \
    "$tmp/yard-worker.service" 2>&1) || fail "systemd-analyze verify: $out"
  # Only lines about these units count (the host's own may warn).
  if grep -E 'yard-(broker|worker)\.service' <<<"$out"; then
    fail "systemd-analyze verify warns: $out"
  fi
}

# Listens on $1 and prints each datagram on its own line as it comes.
listen() {
  exec python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    print(s.recv(4096).decode(), flush=True)
' "$1"
}
wait_for() {  # FILE PATTERN
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $1: $(cat "$1")"
}

listen "$tmp/notify" >"$tmp/notify.log" &
pids+=($!)
wait_for "$tmp/notify.log" listening

NOTIFY_SOCKET=$tmp/notify "$yard" broker --frontend 'tcp://127.0.0.1:*' \
  --backend 'tcp://127.0.0.1:*' >"$tmp/broker.log" 2>&1 &
broker=$!
pids+=($broker)
wait_for "$tmp/broker.log" '^yard broker ready'
wait_for "$tmp/notify.log" '^READY=1$'
backend=$(sed -nE 's/.*backend=([^ ]+).*/\1/p' "$tmp/broker.log")

listen "$tmp/notify2" >"$tmp/notify2.log" &
pids+=($!)
wait_for "$tmp/notify2.log" listening
NOTIFY_SOCKET=$tmp/notify2 "$yard" worker --connect "$backend" \
  --concurrency 1 >"$tmp/worker.log" 2>&1 &
worker=$!
pids+=($worker)
wait_for "$tmp/notify2.log" '^READY=1$'

kill -TERM "$worker"
wait_for "$tmp/notify2.log" '^STOPPING=1$'
wait "$worker" || fail "worker exited $? after SIGTERM: $(cat "$tmp/worker.log")"
kill -TERM "$broker"
wait_for "$tmp/notify.log" '^STOPPING=1$'
wait "$broker" || fail "broker exited $? after SIGTERM: $(cat "$tmp/broker.log")"

# Without $NOTIFY_SOCKET nothing is sent and nothing breaks.
"$yard" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
  >"$tmp/plain.log" 2>&1 &
plain=$!
pids+=($plain)
wait_for "$tmp/plain.log" '^yard broker ready'
kill -TERM "$plain"
wait "$plain" || fail "plain broker exited $?"
echo "systemd: ok"
