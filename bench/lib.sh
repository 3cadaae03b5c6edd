# Sourced by the bench scripts (compare.sh, e2e.sh, suite.sh).

# Prints the calling script's usage block (its header from "# usage:" to
# "# Exit codes") on stderr and exits 2.
usage() {
  sed -n '/^# usage:/,/^# Exit codes/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
