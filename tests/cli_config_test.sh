#!/usr/bin/env bash
# tests/cli_config_test.sh YARD: where a long-running command's settings come
# from, seen through --print-config: a config file sets values, the
# environment ($YARD_<COMMAND>_<FLAG>) overrides it, a flag overrides both;
# unknown keys and bad values in the file are usage errors (exit 2); the Redis
# password variable keeps working.
set -euo pipefail
yard=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/yard-cli-config.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Only the variables each case sets.
for v in $(env | grep -o '^YARD_[A-Z_]*' || true); do unset "$v"; done

# `key=value` lines of --print-config output (defaults: `# key=value`).
setting() { grep -E "^$1=" <<<"$2" | head -1 | cut -d= -f2-; }
default() { grep -E "^# $1=" <<<"$2" | head -1 | cut -d= -f2-; }

cat >"$tmp/broker.toml" <<'TOML'
# yard broker settings
frontend = "tcp://127.0.0.1:7001"
backend = "tcp://127.0.0.1:7002"
heartbeat-ms = 700
max-queue = 1234
balancer = "round-robin"
TOML

out=$("$yard" broker --config "$tmp/broker.toml" --print-config)
[ "$(setting heartbeat-ms "$out")" = 700 ] || fail "config file: $out"
[ "$(setting frontend "$out")" = '"tcp://127.0.0.1:7001"' ] || fail "$out"
[ "$(setting balancer "$out")" = '"round-robin"' ] || fail "$out"
# A default nobody set.
[ "$(default max-workers "$out")" = 10000 ] || fail "default: $out"
[ -z "$(setting max-workers "$out")" ] || fail "default as a setting: $out"

out=$(YARD_BROKER_HEARTBEAT_MS=800 YARD_BROKER_MAX_QUEUE=99 \
  "$yard" broker --config "$tmp/broker.toml" --print-config)
[ "$(setting heartbeat-ms "$out")" = 800 ] || fail "env over file: $out"
[ "$(setting max-queue "$out")" = 99 ] || fail "env over file: $out"

out=$(YARD_BROKER_HEARTBEAT_MS=800 "$yard" broker \
  --config "$tmp/broker.toml" --heartbeat-ms 900 --print-config)
[ "$(setting heartbeat-ms "$out")" = 900 ] || fail "flag over env: $out"
out=$(YARD_BROKER_HEARTBEAT_MS=800 "$yard" broker \
  --config "$tmp/broker.toml" --heartbeat-ms=950 --print-config)
[ "$(setting heartbeat-ms "$out")" = 950 ] || fail "--flag=value: $out"

# The config file itself from the environment; required flags from there.
out=$(YARD_BROKER_CONFIG=$tmp/broker.toml YARD_BROKER_FRONTEND=tcp://127.0.0.1:7005 \
  "$yard" broker --print-config)
[ "$(setting frontend "$out")" = '"tcp://127.0.0.1:7005"' ] || fail "$out"
[ "$(setting heartbeat-ms "$out")" = 700 ] || fail "$out"

# A boolean flag from the environment, and an empty variable counts as unset.
out=$(YARD_BROKER_REQUIRE_FSYNC=true YARD_BROKER_BALANCER= \
  "$yard" broker --config "$tmp/broker.toml" --print-config)
[ "$(setting require-fsync "$out")" = true ] || fail "bool env: $out"
[ "$(setting balancer "$out")" = '"round-robin"' ] || fail "empty env: $out"

# What --print-config prints is a config file that reads back the same.
"$yard" broker --config "$tmp/broker.toml" --heartbeat-ms 650 \
  --print-config >"$tmp/printed.toml"
out=$("$yard" broker --config "$tmp/printed.toml" --print-config)
[ "$out" = "$(cat "$tmp/printed.toml")" ] || fail "round trip: $out"

# A password inside a URL is never printed (the rest of the URL is).
out=$("$yard" broker --config "$tmp/broker.toml" \
  --redis redis://app:s3cret-pw@127.0.0.1:6390/2 --print-config)
! grep -q s3cret-pw <<<"$out" || fail "password printed: $out"
[ "$(setting redis "$out")" = '"redis://app:***@127.0.0.1:6390/2"' ] || fail "$out"
grep -q '^# a password inside a URL is shown as \*\*\*' <<<"$out" || fail "$out"

# Mistakes are usage errors: an unknown key, a bad value, a missing file,
# a bad value from the environment.
echo 'no-such-flag = 1' >>"$tmp/bad.toml"
rc=0; "$yard" broker --config "$tmp/bad.toml" --frontend tcp://127.0.0.1:1 \
  --backend tcp://127.0.0.1:2 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "no-such-flag" "$tmp/err" || fail "unknown key: $rc $(cat "$tmp/err")"
printf 'heartbeat-ms = 5\n' >"$tmp/range.toml"
rc=0; "$yard" broker --config "$tmp/range.toml" --frontend tcp://127.0.0.1:1 \
  --backend tcp://127.0.0.1:2 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] || fail "out of range: $rc $(cat "$tmp/err")"
rc=0; "$yard" broker --config "$tmp/nonexistent.toml" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] || fail "missing file: $rc $(cat "$tmp/err")"
rc=0; YARD_BROKER_HEARTBEAT_MS=abc "$yard" broker --config "$tmp/broker.toml" \
  2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q heartbeat-ms "$tmp/err" || fail "bad env: $rc $(cat "$tmp/err")"

# The worker and loadtest have the same; INI works too.
printf '[default]\nconcurrency=3\nconnect=tcp://127.0.0.1:7002\n' >"$tmp/worker.ini"
out=$(YARD_WORKER_PREFETCH=5 "$yard" worker --config "$tmp/worker.ini" --print-config)
[ "$(setting concurrency "$out")" = 3 ] || fail "worker ini: $out"
[ "$(setting prefetch "$out")" = 5 ] || fail "worker env: $out"
out=$(YARD_LOADTEST_JOBS=77 "$yard" loadtest --print-config)
grep -q '^jobs=77$' <<<"$out" || fail "loadtest env: $out"

# Short-lived commands read no environment of their own.
YARD_PUSH_TASK=echo "$yard" push --help >/dev/null
echo "cli config: ok"
