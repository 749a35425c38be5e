#!/usr/bin/env bash
# Builds the JS client (clients/js) and runs its tests: unit tests, Stateful
# against `rws serve` through a cutting proxy, Stateless against a plain
# Node ws server, the browser tests in headless Chromium (installed from the
# system packages when missing), then the bench in its quick mode.
# Usage: clients/js/ci.sh PATH/TO/rws
# Knobs: RWS_JS_MESSAGES (messages each way in the stateful stream test,
# default 10000), RWS_JS_SEED, RWS_JS_CUT_MIN_MS / RWS_JS_CUT_MAX_MS.
set -euo pipefail

rws="${1:-${RWS_BIN:-}}"
if [ -z "$rws" ]; then
  echo "usage: $0 PATH/TO/rws (e.g. target/debug/rws)" >&2
  exit 2
fi
if [ ! -x "$rws" ]; then
  echo "$0: $rws is not an executable rws binary" >&2
  exit 2
fi
RWS_BIN="$(cd "$(dirname "$rws")" && pwd)/$(basename "$rws")"
export RWS_BIN

cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "clients/js: installing Node.js and npm from the system packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
echo "clients/js: node $(node --version), npm $(npm --version)"
# The browser tests drive the system's Chromium (playwright-core, no bundled browser).
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "clients/js: installing Chromium from the system packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
npm test
# The bench in its quick mode, so it cannot rot (figures: npm run bench).
node bench/bench.mjs --quick
