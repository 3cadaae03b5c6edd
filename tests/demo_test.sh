#!/usr/bin/env bash
# tests/demo_test.sh YARD SOURCE_DIR: scripts/demo.sh as a new user meets it.
# Bad flags are usage errors (exit 2, one line); --help prints the help
# only; a short run (memory mode, the given binary: no build) pushes every
# job, stops its workers and broker without SIGKILL and leaves nothing in
# its TMPDIR.
set -euo pipefail
yard=$1
demo=$2/scripts/demo.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yard-demo-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for args in "--jobs" "--jobs abc" "--workers 0" "--window -1" \
  "--jobs --memory" "--no-such-flag"; do
  rc=0
  # shellcheck disable=SC2086  # the words of one case
  YARD=$yard "$demo" $args >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" = 2 ] || fail "demo $args: exit $rc, want 2"
  [ "$(wc -l <"$tmp/err")" = 1 ] || fail "demo $args: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] || fail "demo $args printed: $(cat "$tmp/out")"
done

help=$(YARD=$yard "$demo" --help) || fail "--help exited non-zero"
[ "${help%%$'\n'*}" = "scripts/demo.sh [--jobs N] [--brokers B] [--workers W] [--concurrency C]" ] ||
  fail "--help: $help"
grep -q 'set -e\|^#' <<<"$help" && fail "--help prints more than the help: $help"

mkdir "$tmp/private"
rc=0
TMPDIR=$tmp/private YARD=$yard timeout 120 "$demo" --memory --jobs 2000 \
  --workers 2 >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" = 0 ] || fail "demo run: exit $rc: $(cat "$tmp/out" "$tmp/err")"
grep -Eq '^completed +2000$' "$tmp/out" || fail "demo run: $(cat "$tmp/out")"
grep -q 'SIGKILL\|Killed' "$tmp/err" && fail "demo run killed: $(cat "$tmp/err")"
[ -z "$(ls -A "$tmp/private")" ] || fail "left behind: $(ls -A "$tmp/private")"
echo "demo_test: ok"
