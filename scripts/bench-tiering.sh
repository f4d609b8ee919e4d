#!/usr/bin/env bash
# Tiering benchmark: the fleet workload (from telemark-fleet-gen's fixed start,
# 2024-12-01, so every day is past `[tiering] after = "1d"`) loaded and
# compacted ("hot"), then `POST /api/v3/admin/tier` to an S3 bucket served by
# moto_server on loopback ("cold"): bytes per value in hot segment files, in
# the cold tier's Parquet objects (per column too) and in DuckDB's own file;
# the twelve TSBS IoT queries hot, each one's first run after a restart hot
# and cold (row-group cache cold), and cold with the cache warm. Every answer
# must equal the hot one (and DuckDB's), every row must have moved, else the
# run fails. Telemark only, DuckDB as the reference.
# Usage: ./scripts/bench-tiering.sh [--trucks 50] [--hours 72] [--seed 1] [--runs 3]
#        [--cache-bytes N] [--row-group-rows N] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server -p telemark-benches --locked
PYTHON="$(./scripts/python-env.sh)"
exec "$PYTHON" benches/lifecycle/bench_tiering.py --bin-dir "$PWD/target/release" "$@"
