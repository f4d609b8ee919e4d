#!/usr/bin/env bash
# Data-lifecycle benchmark: (1) the fleet workload loaded through a small
# write buffer into many small segment files, then POST /api/v3/admin/compact:
# files and bytes before and after, compaction MB/s, server RSS during it, and
# the twelve TSBS IoT queries before and after (answers must be equal);
# (2) 1 % late rows spread over a week of compacted daily partitions: bytes
# compaction rewrites per late row and write amplification, with the
# size-tiered background compaction, with one final full compaction, and with
# a full compaction after every batch. Telemark only, no peers.
# Usage: ./scripts/bench-lifecycle.sh [--trucks 50] [--hours 48] [--seed 1] [--runs 3]
#        [--late-trucks 20] [--late-hours 168] [--late-fraction 0.01] [--late-batches 10] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server -p telemark-benches --locked
PYTHON="$(./scripts/python-env.sh)"
exec "$PYTHON" benches/lifecycle/bench_lifecycle.py --bin-dir "$PWD/target/release" "$@"
