#!/usr/bin/env bash
# Runs every test of the project: Rust unit, property, integration (crash
# loop, model test, fault injection), doc tests (including the README's
# example), SQL golden files, and the real-client tests (ADBC Flight SQL,
# HTTP) against the real `telemark` binary. Needs the Rust toolchain and
# Python 3 with pip; everything else it installs into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --workspace --all-features --locked
cargo build -p telemark-server --locked
PYTHON="$(./scripts/python-env.sh)"
TELEMARK_BIN="$PWD/target/debug/telemark" "$PYTHON" -m pytest -q clients/python/tests
