#!/usr/bin/env bash
# tests/top_tmux_test.sh YARD: `yard top` in a real terminal. tmux (a
# private server, -L) runs it in a 120x30 pane against a real broker and
# worker while `yard push` runs jobs through them; the screen must show the
# broker's endpoint, the worker's name and the completed count. Then `q`
# (and, in a second pane, Ctrl-C) must end it with exit 0, off the alternate
# screen and with the terminal's settings (stty) as they were.
set -euo pipefail
yard=$(realpath "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yard-top.XXXXXX")
sock=yard-top-test-$$
pids=()
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
screen=""
fail() {
  echo "FAIL: $*" >&2
  [ -z "$screen" ] || printf 'screen:\n%s\n' "$screen" >&2
  for f in "$tmp"/*.log; do printf '== %s\n' "$f" >&2; tail -5 "$f" >&2; done
  exit 1
}
command -v tmux >/dev/null || fail "tmux missing (scripts/deps.sh installs it)"
unset TMUX
t() { tmux -L "$sock" "$@"; }

wait_for() {  # FILE PATTERN
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $1"
}

"$yard" broker --frontend 'tcp://127.0.0.1:*' --backend 'tcp://127.0.0.1:*' \
  --heartbeat-ms 200 >"$tmp/broker.log" 2>&1 &
pids+=($!)
wait_for "$tmp/broker.log" '^yard broker ready'
frontend=$(sed -nE 's/.*frontend=([^ ]+).*/\1/p' "$tmp/broker.log")
backend=$(sed -nE 's/.*backend=([^ ]+).*/\1/p' "$tmp/broker.log")
"$yard" worker --connect "$backend" --concurrency 2 --name top-tmux-worker \
  --heartbeat-ms 200 >"$tmp/worker.log" 2>&1 &
pids+=($!)

# The pane stays after the command ends, so its exit status can be read.
echo 'set-option -wg remain-on-exit on' >"$tmp/tmux.conf"
# Runs `yard top` in pane $1 of a 120x30 session, between two readings of
# the terminal's settings.
start_top() {
  t -f "$tmp/tmux.conf" new-session -d -s "$1" -x 120 -y 30 \
    "stty -g >'$tmp/$1.stty-before'; '$yard' top --connect '$frontend' \
      --interval-ms 200 2>'$tmp/$1.top.log'; rc=\$?; \
      stty -g >'$tmp/$1.stty-after'; echo \$rc >'$tmp/$1.rc'; exit \$rc"
}
# Captures pane $1 until awk program $2 finds a line in it.
wait_screen() {
  for _ in $(seq 150); do
    screen=$(t capture-pane -p -t "$1" 2>/dev/null || true)
    awk "$2" <<<"$screen" | grep -q . && return 0
    sleep 0.1
  done
  fail "pane $1: nothing matched $2"
}
# Waits for pane $1 to end; checks exit 0, the main screen back and the
# terminal's settings restored.
expect_ended_cleanly() {
  # The pane's command writes yard top's exit status to a file (tmux's
  # pane_dead_status is not always set by the time the pane reads as dead).
  for _ in $(seq 100); do
    [ -s "$tmp/$1.rc" ] && break
    sleep 0.1
  done
  [ -s "$tmp/$1.rc" ] || fail "pane $1: yard top still runs"
  status=$(cat "$tmp/$1.rc")
  [ "$status" = 0 ] || fail "pane $1: yard top exited $status"
  [ "$(t display-message -p -t "$1" '#{alternate_on}')" = 0 ] ||
    fail "pane $1: still on the alternate screen"
  cmp -s "$tmp/$1.stty-before" "$tmp/$1.stty-after" ||
    fail "pane $1: terminal settings not restored"
}

start_top live
wait_screen live '/^yard top/'
"$yard" push --connect "$frontend" --task echo --count 37 --size 16 \
  >"$tmp/push.log" 2>&1 || fail "yard push failed"
# The broker's row: endpoint, state, ready, delayed, running, in flight,
# workers, in/s, done/s, completed (10th) ...; the worker's row.
wait_screen live "\$1 == \"$frontend\" && \$2 == \"up\" && \$10 == 37"
wait_screen live '$1 == "top-tmux-worker"'
grep -q "$frontend" <<<"$(awk '$1 == "top-tmux-worker"' <<<"$screen")" ||
  fail "the worker's row does not name its broker"
t send-keys -t live q
expect_ended_cleanly live

start_top interrupted
wait_screen interrupted "\$1 == \"$frontend\" && \$2 == \"up\""
t send-keys -t interrupted C-c
expect_ended_cleanly interrupted
echo "top tmux: ok"
