#!/usr/bin/env bash
# Runs every test of the project: Rust unit, property, integration (crash
# loop, model test, fault injection), doc tests (including the README's
# example), SQL golden files, and the real-client tests (ADBC Flight SQL,
# HTTP, MQTT with mosquitto and paho, InfluxDB clients) against the real
# `telemark` binary. Needs the Rust toolchain and Python 3 with pip; it
# installs Debian packages (scripts/system-deps.sh) and Python ones into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --workspace --all-features --locked
# The engine as the tests above built it (`--all-features` turns on its crash-test
# failpoints, inert unless TELEMARK_FAILPOINT is set), so nothing is compiled twice.
cargo build -p telemark-server --locked --features telemark-engine/failpoints
./scripts/system-deps.sh
PYTHON="$(./scripts/python-env.sh)"
TELEMARK_BIN="$PWD/target/debug/telemark" "$PYTHON" -m pytest -q clients/python/tests
