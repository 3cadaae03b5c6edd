# Sourced by the bench scripts (compare.sh, e2e.sh, scale.sh, suite.sh).

# Prints the calling script's usage block (its header from "# usage:" to
# "# Exit codes") on stderr and exits 2.
usage() {
  sed -n '/^# usage:/,/^# Exit codes/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Exits 2, saying why, when python3 (which reads the JSON reports) is
# missing.
need_python3() {
  if ! command -v python3 >/dev/null; then
    echo "$(basename "$0"): python3 is needed to read the JSON reports" \
      "(apt-get install python3)" >&2
    exit 2
  fi
}

# Sets $out to <$build>/bench/results/NAME-latest.json unless --out gave one,
# and $logs to a fresh, empty directory beside it for every run's output.
prepare_results() {  # name
  [[ -n "$out" ]] || out="$build/bench/results/$1-latest.json"
  mkdir -p "$(dirname "$out")"
  logs="${out%.json}-runs"
  rm -rf "$logs"
  mkdir -p "$logs"
}

# Runs one bounded command (10 minutes) with its stdout and stderr in
# $logs/NAME.out and .err; says so on stderr, and returns 1 when it fails.
run_one() {  # name, then the command
  local name=$1 prog
  prog=$(basename "$0")
  shift
  echo "$prog: $name" >&2
  if ! timeout --kill-after=10 600 "$@" >"$logs/$name.out" 2>"$logs/$name.err"; then
    echo "$prog: $name failed: $(tail -n 5 "$logs/$name.err")" >&2
    return 1
  fi
}
