#!/usr/bin/env bash
# Installs the third-party WebSocket stacks tests/interop.rs runs against:
# Python `websockets` (12 to 15) and Node `ws` 8 (pinned in
# package.json, into tests/interop/node_modules). Idempotent: a second run
# installs nothing new. Exits non-zero with a message on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY_SPEC='websockets>=12,<16'

fail() {
    echo "tests/interop/setup.sh: $*" >&2
    exit 1
}

command -v python3 >/dev/null || fail "python3 not found (3.8+ needed for websockets)"
command -v node >/dev/null || fail "node not found (node 18+ needed for ws 8)"
command -v npm >/dev/null || fail "npm not found"

# Python websockets. Into the python3 on PATH when its pip may install
# there; when it refuses (PEP 668: an "externally managed" distribution
# Python), into a virtual environment at tests/interop/.venv, which
# tests/interop.rs then prefers.
has_websockets() {
    "$1" - <<'PY' 2>/dev/null
import sys, websockets
major = int(websockets.__version__.split(".")[0])
sys.exit(0 if 12 <= major < 16 else 1)
PY
}
venv="$here/.venv"
if [ -x "$venv/bin/python3" ] && has_websockets "$venv/bin/python3"; then
    echo "interop: python websockets already installed (tests/interop/.venv)"
elif [ ! -x "$venv/bin/python3" ] && has_websockets python3; then
    echo "interop: python websockets already installed"
else
    echo "interop: installing python $PY_SPEC"
    if [ ! -x "$venv/bin/python3" ] && PIP_ROOT_USER_ACTION=ignore python3 -m pip install \
            --quiet --disable-pip-version-check "$PY_SPEC"; then
        has_websockets python3 \
            || fail "python3 cannot import websockets after installing it"
    else
        echo "interop: pip could not install into python3; using a venv at tests/interop/.venv"
        [ -x "$venv/bin/python3" ] || python3 -m venv "$venv" \
            || fail "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
        "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "$PY_SPEC" \
            || fail "pip install '$PY_SPEC' into tests/interop/.venv failed"
        has_websockets "$venv/bin/python3" \
            || fail "tests/interop/.venv cannot import websockets after installing it"
    fi
fi

# Node ws
if node -e 'const v = require(process.argv[1] + "/package.json").version; process.exit(v.startsWith("8.") ? 0 : 1)' \
        "$here/node_modules/ws" 2>/dev/null; then
    echo "interop: node ws already installed"
else
    echo "interop: installing node ws (tests/interop/node_modules)"
    npm install --prefix "$here" --no-audit --no-fund --loglevel=error \
        || fail "npm install --prefix tests/interop failed"
    node -e 'require(process.argv[1])' "$here/node_modules/ws" \
        || fail "node cannot load ws after installing it"
fi

echo "interop: ready"
