#!/usr/bin/env python3
"""Ingest benchmark driver (see scripts/bench-ingest.sh).

HTTP: the same fleet line protocol (telemark-lp-load generates it from a
seed) is posted with the same batch size and concurrency to Telemark,
VictoriaMetrics and InfluxDB 1.x, each started here on free loopback ports
with its own data directory. Points/s = field values / wall time until the
last 2xx answer (every server acknowledges after its own durability rule:
Telemark fsyncs; VictoriaMetrics and InfluxDB buffer).

MQTT: telemark-mqtt-load with 1, 100 and 1000 publishers at QoS 0 and 1,
then 100 publishers at a fixed 10 000 messages/s for the PUBLISH→queryable
latency. Prints a markdown table and one JSON line per run.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Proc, du, free_port, start_influxdb, start_victoria, wait_http  # noqa: E402

RULES = """
[[mqtt.rule]]
topic = "fleet/{fleet}/{name}/{table}"
database = "fleet"
table = "{table}"
time_field = "timestamp"
time_unit = "ms"
tag_keys = ["driver", "model", "device_version"]
"""


def start_telemark(target, tmp, name):
    http, flight, mqtt = free_port(), free_port(), free_port()
    data = os.path.join(tmp, name)
    cfg = os.path.join(tmp, name + ".toml")
    with open(cfg, "w") as f:
        f.write(f"[mqtt]\nmax_connections = 15000\n{RULES}")
    p = Proc([os.path.join(target, "telemark"), "serve", "--config", cfg, "--data-dir", data,
              "--http-addr", f"127.0.0.1:{http}", "--flight-addr", f"127.0.0.1:{flight}",
              "--mqtt-addr", f"127.0.0.1:{mqtt}"], os.path.join(tmp, name + ".log"))
    wait_http(f"http://127.0.0.1:{http}/health")
    return p, http, mqtt, data


def lp_load(target, url, a):
    out = subprocess.run([os.path.join(target, "telemark-lp-load"), "--url", url, "--trucks", str(a.trucks),
                          "--hours", str(a.hours), "--batch", str(a.batch), "--connections", str(a.connections)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def mqtt_load(target, mqtt, http, publishers, qos, messages, rate=0, idle=0):
    args = [os.path.join(target, "telemark-mqtt-load"), "--mqtt", f"127.0.0.1:{mqtt}", "--http", f"http://127.0.0.1:{http}",
            "--publishers", str(publishers), "--messages", str(messages), "--qos", str(qos), "--rate", str(rate),
            "--seed", str(publishers * 10 + qos), "--idle", str(idle)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
    return json.loads(out.stdout)


def with_url(started, path):
    """(process, port, data dir) of a started peer -> (process, write URL, data dir)."""
    proc, port, data = started
    return proc, f"http://127.0.0.1:{port}{path}", data


def telemark_http(a, tmp):
    proc, http, _, data = start_telemark(a.target, tmp, "telemark-http")
    return proc, f"http://127.0.0.1:{http}/api/v2/write?bucket=fleet&precision=ns", data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--trucks", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-mqtt", action="store_true")
    ap.add_argument("--idle", type=int, default=10000, help="idle MQTT connections held during the fixed-rate run")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="telemark-bench-ingest-")
    results = {"http": {}, "mqtt": []}
    try:
        # --- HTTP line protocol, same lines to every server ---
        servers = [("telemark", "Telemark", lambda: telemark_http(a, tmp))]
        if not a.skip_peers:
            servers += [
                ("victoria-metrics", "VictoriaMetrics 1.79",
                 lambda: with_url(start_victoria(tmp), "/write")),
                ("influxdb", "InfluxDB 1.6",
                 lambda: with_url(start_influxdb(tmp), "/write?db=fleet&precision=ns")),
            ]
        for key, label, start in servers:
            proc, url, data = start()
            try:
                r = lp_load(a.target, url, a)
                results["http"][label] = r
            finally:
                proc.stop()
            r["disk_bytes"] = du(data)
            print(json.dumps({"server": key, **r}), flush=True)

        # --- MQTT ---
        if not a.skip_mqtt:
            p, http, mqtt, _ = start_telemark(a.target, tmp, "telemark-mqtt")
            try:
                for publishers, messages in [(1, 20000), (100, 200), (1000, 20)]:
                    for qos in (0, 1):
                        r = mqtt_load(a.target, mqtt, http, publishers, qos, messages)
                        results["mqtt"].append(r)
                        print(json.dumps(r), flush=True)
                rss_before = rss_mib(p.p.pid)
                r = mqtt_load(a.target, mqtt, http, 100, 1, 500, rate=10000, idle=a.idle)
                r["fixed_rate"] = True
                r["rss_mib_before"] = rss_before
                results["mqtt"].append(r)
                print(json.dumps(r), flush=True)
            finally:
                p.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    http = results["http"]
    if http:
        base = http["Telemark"]["values_per_sec"]
        print(f"HTTP line protocol: {a.trucks} trucks × {a.hours} h, {http['Telemark']['lines']} lines, "
              f"{http['Telemark']['values']} field values, batches of {a.batch}, {a.connections} connections\n")
        print("| server | lines/s | field values/s | Telemark ÷ server | data dir after the run |")
        print("|---|---|---|---|---|")
        for name, r in http.items():
            print(f"| {name} | {r['lines_per_sec'] / 1e3:.0f} k | {r['values_per_sec'] / 1e6:.2f} M | "
                  f"{base / r['values_per_sec']:.2f} | {r['disk_bytes'] / 1e6:.1f} MB |")
    if results["mqtt"]:
        print("\nMQTT (fleet JSON readings, 7 fields a message)\n")
        print("| publishers | QoS | rate | messages | messages/s | points/s | PUBACK p50 / p99 | PUBLISH→queryable p50 / p99 |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results["mqtt"]:
            rate = f"{r['target_rate']}/s" if r.get("fixed_rate") else "max"
            ack = f"{r['puback_p50_ms']} / {r['puback_p99_ms']} ms" if r["qos"] else "—"
            print(f"| {r['publishers']} | {r['qos']} | {rate} | {r['messages']} | {r['messages_per_sec'] / 1e3:.1f} k | "
                  f"{r['points_per_sec'] / 1e3:.0f} k | {ack} | {r['visible_p50_ms']} / {r['visible_p99_ms']} ms ({r['visible_samples']}) |")
        for r in results["mqtt"]:
            if r.get("idle_connections"):
                print(f"\nThe fixed-rate run held {r['idle_connections']} idle device connections open beside the publishers "
                      f"(opened in {r['idle_connect_seconds']:.1f} s).")


if __name__ == "__main__":
    sys.exit(main())
