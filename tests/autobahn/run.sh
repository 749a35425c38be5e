#!/usr/bin/env bash
# Runs the Autobahn TestSuite (cases 1.* to 7.*: framing, pings/pongs,
# reserved bits and opcodes, fragmentation, UTF-8, close handling) against
# both sides of `rws`:
#   client: `rws connect --echo` against `wstest -m fuzzingserver`, one
#           process per case;
#   server: `wstest -m fuzzingclient` against `rws serve --echo`.
# The two sides run at the same time (they share nothing but the machine).
# Exits non-zero, listing the cases, when any case's behavior or
# behaviorClose is FAILED, when a case is missing from a report, or when the
# suite cannot run at all (no Python 2.7: this never skips). The last line
# is `autobahn: N passed, M failed`.
#
# The suite (PyPI `autobahntestsuite`, Python 2.7 only) is installed with
# pinned versions (tests/autobahn/requirements.txt) into
# target/autobahn/py, and reused from there while requirements.txt is
# unchanged. Python 2.7 is taken from $AUTOBAHN_PYTHON2, else from pyenv
# (versions 2.7.*), else python2.7 / python2 on PATH. Reports (HTML and
# JSON) end up in target/autobahn/reports/{clients,servers}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
work="$target/autobahn"
py_dir="$work/py"
run_dir="$work/run"
reports="$work/reports"
# Every wait is bounded, so a hung peer fails the run instead of stalling CI.
CASE_TIMEOUT=20        # one `rws connect` per client-side case
CLIENT_SIDE_TIMEOUT=300 # all client-side cases together
SERVER_SIDE_TIMEOUT=330 # wstest -m fuzzingclient, all cases

fail() {
    echo "tests/autobahn/run.sh: $*" >&2
    echo "autobahn: 0 passed, 1 failed"
    exit 1
}

# --- Python 2.7 -------------------------------------------------------------
is_py27() {
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' \
        >/dev/null 2>&1
}
python2=""
if [ -n "${AUTOBAHN_PYTHON2:-}" ]; then
    is_py27 "$AUTOBAHN_PYTHON2" || fail "AUTOBAHN_PYTHON2=$AUTOBAHN_PYTHON2 is not a working Python 2.7"
    python2="$AUTOBAHN_PYTHON2"
else
    pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in $(ls -d "$pyenv_root"/versions/2.7.*/bin/python2.7 2>/dev/null | sort -rV) \
            "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
        if is_py27 "$candidate"; then
            python2="$candidate"
            break
        fi
    done
fi
[ -n "$python2" ] || fail "Python 2.7 not found: the Autobahn TestSuite runs only on Python 2.7.
  Install it (e.g. \`pyenv install 2.7.18\`) or point AUTOBAHN_PYTHON2 at a python2.7 binary."
"$python2" -m pip --version >/dev/null 2>&1 \
    || fail "$python2 has no pip (\`$python2 -m ensurepip\` installs it)"
echo "autobahn: python $("$python2" -c 'import sys; print(sys.version.split()[0])') at $python2"

# --- the suite, cached in target/autobahn/py ------------------------------
site_dir="$py_dir/lib/python2.7/site-packages"
stamp="$py_dir/.requirements"
suite_works() {
    "$python2" "$here/wstest.py" "$site_dir" --help >/dev/null 2>&1
}
if [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt" && suite_works; then
    echo "autobahn: test suite already installed ($py_dir)"
else
    echo "autobahn: installing the test suite into $py_dir"
    rm -rf "$py_dir"
    mkdir -p "$py_dir"
    pip_install() {
        # PYTHONPATH: the sdists (autobahn, txaio, PyHamcrest) are built with
        # the setuptools installed into the prefix by the first call.
        PYTHONPATH="$site_dir" "$python2" -m pip install --quiet --disable-pip-version-check \
            --no-warn-script-location --no-deps --prefix "$py_dir" "$@" \
            >>"$work/install.log" 2>&1
    }
    : >"$work/install.log"
    pip_install setuptools==44.0.0 wheel==0.37.1 \
        || fail "pip could not install setuptools/wheel (log: $work/install.log)"
    pip_install -r "$here/requirements.txt" \
        || fail "pip could not install tests/autobahn/requirements.txt (log: $work/install.log)"
    suite_works || fail "wstest does not start after installing it (log: $work/install.log)"
    cp "$here/requirements.txt" "$stamp"
fi

# --- rws --------------------------------------------------------------------
echo "autobahn: cargo build -F cli --bin rws"
(cd "$root" && cargo build --quiet -F cli --bin rws) || fail "cargo build -F cli --bin rws failed"
rws="$target/debug/rws"
[ -x "$rws" ] || fail "no rws binary at $rws"

# --- processes: everything started here is stopped on exit ----------------
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$run_dir" "$reports"
mkdir -p "$run_dir" "$reports"

free_port() {
    "$python2" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() { # PORT PID SECONDS
    local deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# --- server side: rws serve <- wstest -m fuzzingclient ---------------------
"$rws" serve --echo --bind 127.0.0.1:0 >"$run_dir/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
serve_url=""
for _ in $(seq 1 150); do
    serve_url="$(sed -n 's/^listening on \(ws:\/\/[^ ]*\/ws\)$/\1/p' "$run_dir/serve.log" | head -n 1)"
    [ -n "$serve_url" ] && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.2
done
[ -n "$serve_url" ] || fail "rws serve did not start: $(tail -n 5 "$run_dir/serve.log")"
cat >"$run_dir/fuzzingclient.json" <<EOF
{
  "outdir": "$reports/servers",
  "servers": [{"agent": "rws-serve", "url": "$serve_url"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
echo "autobahn: server side: wstest -m fuzzingclient against rws serve --echo at $serve_url"
(cd "$run_dir" && exec timeout "$SERVER_SIDE_TIMEOUT" "$python2" "$here/wstest.py" "$site_dir" \
    -m fuzzingclient -s "$run_dir/fuzzingclient.json" >"$run_dir/fuzzingclient.log" 2>&1) &
fuzzingclient_pid=$!
pids+=("$fuzzingclient_pid")

# --- client side: wstest -m fuzzingserver <- rws connect --echo ------------
fs_port="$(free_port)"
cat >"$run_dir/fuzzingserver.json" <<EOF
{
  "url": "ws://127.0.0.1:$fs_port",
  "outdir": "$reports/clients",
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
(cd "$run_dir" && exec timeout $((CLIENT_SIDE_TIMEOUT + 60)) "$python2" "$here/wstest.py" \
    "$site_dir" -m fuzzingserver -s "$run_dir/fuzzingserver.json" >"$run_dir/fuzzingserver.log" 2>&1) &
fuzzingserver_pid=$!
pids+=("$fuzzingserver_pid")
wait_for_port "$fs_port" "$fuzzingserver_pid" 60 \
    || fail "wstest -m fuzzingserver did not start on port $fs_port: $(tail -n 5 "$run_dir/fuzzingserver.log")"
fs_url="ws://127.0.0.1:$fs_port"

# The case count comes from the suite itself; the server side runs the same
# case list, so both reports must hold this many cases.
count="$(timeout 20 "$rws" connect --echo --mode none "$fs_url/getCaseCount" </dev/null 2>/dev/null \
    | head -n 1 || true)"
case "$count" in
    '' | *[!0-9]*) fail "getCaseCount from $fs_url answered '$count', not a number" ;;
esac
[ "$count" -gt 0 ] || fail "getCaseCount from $fs_url answered 0"
echo "autobahn: client side: rws connect --echo against wstest -m fuzzingserver at $fs_url, $count cases"

agent="rws-connect"
deadline=$((SECONDS + CLIENT_SIDE_TIMEOUT))
timeouts=()
for i in $(seq 1 "$count"); do
    [ "$SECONDS" -lt "$deadline" ] \
        || fail "client side: over ${CLIENT_SIDE_TIMEOUT}s, stopped before case $i of $count"
    status=0
    timeout "$CASE_TIMEOUT" "$rws" connect --echo --mode none --heartbeat-interval 0 \
        "$fs_url/runCase?case=$i&agent=$agent" </dev/null >/dev/null 2>>"$run_dir/connect.log" \
        || status=$?
    # Most cases end with an error close on purpose; only a hang matters here
    # (the report judges the rest).
    [ "$status" -ne 124 ] || timeouts+=("$i")
done
[ "${#timeouts[@]}" -eq 0 ] \
    || echo "autobahn: client side: rws connect hit the ${CASE_TIMEOUT}s timeout in case number(s) ${timeouts[*]}"
timeout 60 "$rws" connect --echo --mode none "$fs_url/updateReports?agent=$agent" \
    </dev/null >/dev/null 2>>"$run_dir/connect.log" || true
kill "$fuzzingserver_pid" 2>/dev/null || true
echo "autobahn: client side done (${SECONDS}s since start)"

status=0
wait "$fuzzingclient_pid" || status=$?
[ "$status" -eq 0 ] || echo "autobahn: server side: wstest -m fuzzingclient exited with status $status \
(124: over ${SERVER_SIDE_TIMEOUT}s); log: $run_dir/fuzzingclient.log"
echo "autobahn: server side done (${SECONDS}s since start)"
kill "$serve_pid" 2>/dev/null || true

echo "autobahn: reports in $reports/clients/index.html and $reports/servers/index.html"
"$python2" "$here/check.py" "$count" \
    "client=$reports/clients/index.json" "server=$reports/servers/index.json"
