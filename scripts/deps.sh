#!/usr/bin/env bash
# Installs the Debian 12 packages Switchyard builds and runs with, if missing.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format ccache
  libzmq3-dev cppzmq-dev libflatbuffers-dev flatbuffers-compiler
  libhiredis-dev redis-server libtbb-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev nlohmann-json3-dev libcpp-httplib-dev
  # Metrics: prometheus-cpp (Debian's name for libprometheus-cpp-dev), and
  # promtool, which the tests use to lint /metrics and the alert rules:
  # Debian 12 ships it only in the prometheus package (~20 MB; installing
  # it does not start a server where invoke-rc.d is blocked, as in
  # containers).
  prometheus-cpp-dev prometheus
  # The fuzz targets (scripts/fuzz.sh): clang 14, libFuzzer and the
  # sanitizer runtimes.
  clang libclang-rt-14-dev
  # The example --exec handlers (examples/exec) that tests/isolate_test runs.
  python3 nodejs
  # tests/systemd_test.sh checks the units with systemd-analyze verify;
  # tests/completion_test.sh loads the zsh script in zsh.
  systemd zsh
  # tests/browser: the dashboard in Debian's headless Chromium, driven by
  # playwright-core from npm (tests/browser/run.sh runs `npm ci`).
  chromium
  # tests/top_tmux_test.sh runs `yard top` in a tmux pane.
  tmux
)
# npm comes with some builds of nodejs (NodeSource's) and is Debian's own
# package otherwise; the two conflict, so ask for it only when it is absent.
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
