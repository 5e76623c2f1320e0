#!/usr/bin/env bash
# The Python engine's part of CI (issue 10): what the `python` feature needs to build and
# its tests need to run, then clippy and the Python tests with the feature. .ci/run calls it
# after .ci/check.sh (which builds and tests without the feature).
#
#   .ci/python.sh
#
# Builds with the interpreter PYO3_PYTHON names (default python3 on PATH); the test venv
# (target/pyvenv, tests/python/setup-venv.sh) is made from the same one.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYO3_PYTHON:-python3}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # libpython + headers for PyO3, and venv/ensurepip for Debian's own python3. (A python3
    # built with --enable-shared, as pyenv's, needs neither; installing them is harmless.)
    missing=()
    dpkg -s python3-dev >/dev/null 2>&1 || missing+=(python3-dev)
    dpkg -s python3-venv >/dev/null 2>&1 || missing+=(python3-venv)
    if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
"$py" -c 'import sysconfig, sys; sys.exit(0 if sysconfig.get_config_var("LDLIBRARY") else 1)' || {
    echo "error: $py has no libpython to embed" >&2
    exit 1
}

# greenlet and Flask from PyPI into target/pyvenv (idempotent, quick when done).
venv=$(tests/python/setup-venv.sh)
export RINGSGI_TEST_VENV="$venv"

cargo clippy --all-targets --locked --features python -- -D warnings
# Both Python test modules: tests/python.rs (engine) and tests/python_wsgi.rs.
cargo test --release --locked --features python --test tests python
