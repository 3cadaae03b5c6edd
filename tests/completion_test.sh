#!/usr/bin/env bash
# tests/completion_test.sh YARD: `yard completion bash` sourced into bash
# completes commands, a command's flags, a subcommand, a flag's fixed
# choices; `yard completion zsh` is a script zsh would load (bash syntax
# through bashcompinit).
set -euo pipefail
yard=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

script=$("$yard" completion bash)
# shellcheck disable=SC1090
source <(printf '%s\n' "$script")
complete -p yard | grep -q _yard || fail "no completion registered for yard"

# Completes the words after `yard` as bash would: the completion's words.
offered() {
  COMP_WORDS=(yard "$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _yard
  printf '%s\n' "${COMPREPLY[@]}"
}
has() { grep -qx -- "$1" <<<"$2" || fail "'$1' not offered: $(tr '\n' ' ' <<<"$2")"; }
hasnt() { ! grep -qx -- "$1" <<<"$2" || fail "'$1' offered: $(tr '\n' ' ' <<<"$2")"; }

has broker "$(offered bro)"
out=$(offered "")
for c in broker worker push loadtest queue result keygen completion version; do
  has "$c" "$out"
done
hasnt worker-child "$out"
has --frontend "$(offered broker --fr)"
has --heartbeat-ms "$(offered broker --frontend tcp://x --heart)"
has --config "$(offered broker --con)"
has --concurrency "$(offered worker --conc)"
hasnt --frontend "$(offered worker --fr)"
has stats "$(offered queue st)"
has --redis "$(offered queue stats --re)"
has round-robin "$(offered broker --balancer r)"
has debug "$(offered worker --log-level d)"
has zsh "$(offered completion z)"
# After a flag that takes a free value: file names, not flags.
hasnt --backend "$(offered broker --frontend --)"

zsh_script=$("$yard" completion zsh)
grep -q bashcompinit <<<"$zsh_script" || fail "zsh: no bashcompinit"
bash -n <(sed '/^autoload/d' <<<"$zsh_script") || fail "zsh: not bash syntax"
command -v zsh >/dev/null || fail "zsh missing (scripts/deps.sh installs it)"
zsh -c 'source <(cat); (( $+functions[_yard] ))' <<<"$zsh_script" ||
  fail "zsh could not load the script"


rc=0; "$yard" completion fish 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "yard completion fish: exit $rc"
echo "completion: ok"
