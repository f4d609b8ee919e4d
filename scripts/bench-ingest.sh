#!/usr/bin/env bash
# Ingest benchmark: HTTP line protocol into Telemark beside VictoriaMetrics and
# InfluxDB 1.x (Debian packages, installed here) on the same lines, and MQTT
# publishers (1, 100, 1000 at QoS 0 and 1, plus a fixed 10 000 msg/s run for
# latency) against Telemark's listener.
# Usage: ./scripts/bench-ingest.sh [--trucks N] [--hours H] [--skip-peers]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p telemark-server -p telemark-benches --locked
need=()
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
[ -x /usr/bin/influxd ] || need+=(influxdb)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # The packages start system services; the benchmark runs its own instances.
  $SUDO systemctl stop victoria-metrics influxdb >/dev/null 2>&1 || true
  $SUDO pkill -x victoria-metrics >/dev/null 2>&1 || true
  $SUDO pkill -x influxd >/dev/null 2>&1 || true
fi
python3 benches/ingest/bench_ingest.py --target "$PWD/target/release" "$@"
