#!/usr/bin/env bash
# Dashboard query benchmark: Telemark (release build) beside DuckDB on the same rows.
# Usage: ./scripts/bench-queries.sh [--rows N] [--devices N] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server --locked
PYTHON="$(./scripts/python-env.sh)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check duckdb numpy >&2
"$PYTHON" benches/dashboard/bench_queries.py --bin "$PWD/target/release/telemark" "$@"
