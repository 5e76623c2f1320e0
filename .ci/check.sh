#!/usr/bin/env bash
# The project's checks (called by .ci/run, README's test command, after it installed what the
# tests need): formatting, lints with and without the `python` feature, unit + integration + doc
# tests (with Python WSGI apps), and the fuzz crate's build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features python -- -D warnings
# The Python tests load apps into a virtualenv made from the interpreter the binary embeds
# (PYO3_PYTHON, default python3 on PATH) with greenlet and Flask: tests/python/setup-venv.sh
# makes it once (idempotent).
if [ -z "${RINGSGI_TEST_VENV:-}" ]; then
    RINGSGI_TEST_VENV=$(tests/python/setup-venv.sh)
    export RINGSGI_TEST_VENV
fi
cargo test --release --locked --features python
cargo build --manifest-path fuzz/Cargo.toml --locked
