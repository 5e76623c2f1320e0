#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints, unit + integration + doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --release --locked
cargo build --manifest-path fuzz/Cargo.toml --locked
