#!/usr/bin/env bash
# Fleet benchmark (TSBS IoT shape): one workload through Telemark (HTTP line
# protocol ingest, bytes per value after flush per table / column / codec,
# the TSBS IoT queries in SQL; the same rows over MQTT QoS 1 into a second
# instance, cross-checked against the first) beside VictoriaMetrics and InfluxDB 1.x
# (Debian packages: ingest rate, bytes on disk), Prometheus (promtool
# create-blocks-from openmetrics: bytes per sample) and DuckDB (PyPI: the same
# queries on the same rows, answers cross-checked, file size). All installed here.
# Usage: ./scripts/bench-fleet.sh [--trucks 50] [--hours 48] [--interval 10] [--seed 1] [--runs 3] [--skip-peers] [--skip-mqtt]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server -p telemark-benches --locked
need=()
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
[ -x /usr/bin/influxd ] || need+=(influxdb)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # The packages start system services; the benchmark runs its own instances.
  $SUDO systemctl stop victoria-metrics influxdb prometheus >/dev/null 2>&1 || true
  $SUDO pkill -x victoria-metrics >/dev/null 2>&1 || true
  $SUDO pkill -x influxd >/dev/null 2>&1 || true
  $SUDO pkill -x prometheus >/dev/null 2>&1 || true
fi
PYTHON="$(./scripts/python-env.sh)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check duckdb >&2
exec "$PYTHON" benches/fleet/bench_fleet.py --bin-dir "$PWD/target/release" "$@"
