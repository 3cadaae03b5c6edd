#!/usr/bin/env bash
# tests/browser/run.sh YARD_BINARY OUT_DIR: the dashboard's browser test
# (dashboard_test.mjs) in Debian's headless Chromium. Installs the pinned
# playwright-core (package-lock.json) with `npm ci` when missing; it never
# downloads a browser. Fails, never skips, when Chromium, node or npm is
# missing (scripts/deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "browser test: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
[ -x "${YARD_CHROMIUM:-/usr/bin/chromium}" ] || {
  echo "browser test: no Chromium at ${YARD_CHROMIUM:-/usr/bin/chromium} (scripts/deps.sh)" >&2; exit 1; }
if [ ! -d node_modules/playwright-core ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
exec node dashboard_test.mjs "$@"
