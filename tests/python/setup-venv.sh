#!/usr/bin/env bash
# Creates (or checks) the virtualenv the Python tests and examples use: target/pyvenv, made from
# the interpreter ringsgi embeds (PYO3_PYTHON, default python3), with the PyPI packages pinned in
# tests/python/requirements.txt. Idempotent: when the venv exists, was made from the same
# interpreter and already has exactly those requirements, it does nothing (well under a second).
#
#   tests/python/setup-venv.sh            # the test venv (greenlet, Flask, ...)
#   tests/python/setup-venv.sh --bench    # also the benchmark tools (granian)
#
# Prints the venv's path on stdout (the tests find it at target/pyvenv, or at $RINGSGI_PYVENV).
set -euo pipefail
cd "$(dirname "$0")/../.."

py=${PYO3_PYTHON:-python3}
venv=${RINGSGI_PYVENV:-$PWD/target/pyvenv}
reqs=(tests/python/requirements.txt)
if [ "${1:-}" = --bench ]; then
    reqs+=(tests/python/requirements-bench.txt)
fi

# The venv records what it was made with: the interpreter's real path and version in
# .ringsgi-python (a change rebuilds the venv), and one hash per requirement file installed in
# .ringsgi-reqs (a file not yet installed, or changed, is installed on top).
exe=$("$py" -c 'import sys, os; print(os.path.realpath(sys.executable))')
interp="$exe $("$py" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.ringsgi-python" 2>/dev/null)" != "$interp" ]; then
    rm -rf "$venv"
    # Debian's python3 needs python3-venv for ensurepip; say so instead of a traceback.
    if ! "$py" -m venv "$venv" >&2; then
        echo "error: '$py -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    echo "$interp" >"$venv/.ringsgi-python"
    : >"$venv/.ringsgi-reqs"
fi
for r in "${reqs[@]}"; do
    h=$(sha256sum "$r" | cut -d' ' -f1)
    if ! grep -qx "$h" "$venv/.ringsgi-reqs"; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$r" >&2
        echo "$h" >>"$venv/.ringsgi-reqs"
    fi
done
echo "$venv"
