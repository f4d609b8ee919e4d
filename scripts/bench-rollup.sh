#!/usr/bin/env bash
# A year of fleet data at 1-hour resolution: from a rollup, from the rows, and DuckDB, same run.
# Usage: ./scripts/bench-rollup.sh [--devices N] [--days N] [--step SECONDS] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server --locked
PYTHON="$(./scripts/python-env.sh)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check duckdb numpy >&2
"$PYTHON" benches/dashboard/bench_rollup.py --bin "$PWD/target/release/telemark" "$@"
