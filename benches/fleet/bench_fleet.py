#!/usr/bin/env python3
"""Fleet benchmark driver (see scripts/bench-fleet.sh).

One fleet workload (telemark-fleet-gen: N trucks x H hours, TSBS IoT shape)
goes, in the same run on the same machine, through:

- Telemark: HTTP line protocol ingest (telemark-lp-load), then SIGTERM
  (flushes to segments), restart, `GET /api/v3/storage` for bytes per value
  per table / column / codec, the data directory size, and the TSBS IoT
  query set in SQL over ADBC Flight SQL (median of --runs after a warm-up).
- Telemark over MQTT: the same rows (both tables, duplicates and late rows
  included) published as JSON, one row a message, at QoS 1 by
  `telemark-mqtt-load --fleet-replay` (one connection per truck, up to
  --mqtt-publishers) into a second, fresh instance whose `[[mqtt.rule]]`s
  map `fleet/{fleet}/{name}/{readings|diagnostics}` to the tables, with the
  payload's other tags as `tag_keys`; messages/s, rows/s and field values/s
  until every row is visible. The instance must then hold what the HTTP one
  holds (row counts, distinct tags, sums of every numeric column and tag)
  and answer the queries as DuckDB does, else the run fails.
- DuckDB: the same rows (parsed from the same line protocol, duplicates
  removed as a time-series database does) in a database file; the same
  queries in DuckDB spelling, timed the same way, answers cross-checked
  against Telemark's (rows sorted, floats to 1e-9 relative).
- VictoriaMetrics and InfluxDB 1.x (Debian packages): the same line protocol
  posted by telemark-lp-load; ingest rate and on-disk bytes after a flush.
- Prometheus: the same samples as OpenMetrics text through
  `promtool tsdb create-blocks-from openmetrics`; bytes of the blocks.

Bytes per value always divide by the same number: the distinct field values
of the workload (one per table x truck x timestamp x field; the generator
sends ~0.5 % duplicates and ~1 % late rows, which every store keeps once).

The TSBS queries (timescale/tsbs, cmd/tsbs_generate_queries, TimescaleDB
flavour) are adapted to one wide table per measurement with the tags as
columns (no separate tags table: a truck's tags are constant, so joining
on tags_id is grouping by name), fixed windows at the end of the data
instead of random ones before "now", and one fixed fleet (truck_0's)
where TSBS draws a random one. Deviations from the TSBS text:
- avg-daily-driving-session: avg(age(stop, start)) is reported in seconds.
- long-driving-sessions, long-daily-sessions: when the data is shorter than
  the 4 h / 24 h window, the threshold is TSBS's tenMinutePeriods formula on
  the data's span (2 h: more than 11 and 5 periods instead of 22 and 60).
- breakdown-frequency: TSBS writes `count(status = 0) / count(*) >= 0.5`,
  which is always 1 (count counts non-NULL booleans); here a truck is broken
  down in a 10-minute bucket when at least half its readings have status != 0
  (status 0 = in service, as daily-activity's `avg(status) < 1` assumes).
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Proc, du, free_port, start_influxdb, start_victoria, wait_http  # noqa: E402

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

START_NS = 1_733_011_200_000_000_000  # 2024-12-01T00:00:00Z, telemark-fleet-gen's default start
TAGS = ["name", "fleet", "driver", "model", "device_version", "load_capacity", "fuel_capacity", "nominal_fuel_consumption"]
FIELDS = {
    "readings": ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"],
    "diagnostics": ["load", "fuel_state", "status"],
}
INT_FIELDS = {"status"}
NUMERIC_TAGS = ["load_capacity", "fuel_capacity", "nominal_fuel_consumption"]
# fleet and name are topic levels; the rest of the tags ride in the JSON payload.
MQTT_RULES = "".join(f"""
[[mqtt.rule]]
topic = "fleet/{{fleet}}/{{name}}/{table}"
database = "fleet"
table = "{table}"
format = "json"
time_field = "timestamp"
time_unit = "ms"
tag_keys = {json.dumps(TAGS[2:])}
""" for table in FIELDS)
MIN_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9


# ---------------------------------------------------------------- processes


def http_get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def log(msg):
    print(f"[bench-fleet] {msg}", file=sys.stderr, flush=True)


def lp_load(a, url):
    args = [a.lp_load, "--url", url, "--trucks", str(a.trucks), "--hours", str(a.hours), "--interval", str(a.interval),
            "--seed", str(a.seed), "--batch", str(a.batch), "--connections", str(a.connections)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
    return json.loads(out.stdout)


# ---------------------------------------------------------------- data


def generate(a, path):
    with open(path, "w") as f:
        subprocess.run([a.fleet_gen, "--trucks", str(a.trucks), "--hours", str(a.hours), "--interval", str(a.interval),
                        "--seed", str(a.seed)], stdout=f, check=True)


def parse_lp(path):
    """Line protocol -> {table: {(name, time): (tags tuple, values list)}}; later duplicates win."""
    tables = {t: {} for t in FIELDS}
    lines = sent_values = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            lines += 1
            head, fields, ts = line.split(" ")
            parts = head.split(",")
            table = parts[0]
            tags = tuple(p.split("=", 1)[1] for p in parts[1:])
            kv = dict(p.split("=", 1) for p in fields.split(","))
            sent_values += len(kv)
            vals = [int(kv[k][:-1]) if k in INT_FIELDS else float(kv[k]) for k in FIELDS[table]]
            tables[table][(tags[0], int(ts))] = (tags, vals)
    return tables, lines, sent_values


def arrow_tables(tables):
    import pyarrow as pa
    out = {}
    for table, rows in tables.items():
        items = sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        cols = {"time": pa.array([k[1] for k, _ in items], pa.timestamp("ns"))}
        for i, tag in enumerate(TAGS):
            cols[tag] = pa.array([v[0][i] for _, v in items], pa.string())
        for j, field in enumerate(FIELDS[table]):
            cols[field] = pa.array([v[1][j] for _, v in items], pa.int64() if field in INT_FIELDS else pa.float64())
        out[table] = pa.table(cols)
    return out


# ---------------------------------------------------------------- queries


def ten_minute_periods(rest_per_hour, window_ns):
    """TSBS's tenMinutePeriods: the ten-minute periods of the window left after `rest_per_hour` minutes of rest an hour."""
    minutes = window_ns / MIN_NS
    return int((minutes - rest_per_hour * minutes / 60) / 10)


def queries(fleet, start_ns, end_ns):
    """name -> (Telemark SQL, DuckDB SQL). Times: Telemark to_timestamp_nanos, DuckDB make_timestamp (µs)."""
    def tt(ns):
        return f"to_timestamp_nanos({ns})"

    def dt(ns):
        return f"make_timestamp({ns // 1000})"

    def both(template, **windows):
        t = template.format(**{k: tt(v) for k, v in windows.items()}, B="time_bucket", DIV="/")
        d = template.format(**{k: dt(v) for k, v in windows.items()}, B="time_bucket", DIV="//")
        return t, d

    q = {}
    q["last-loc"] = both(
        f"SELECT name, driver, last(longitude, time) AS longitude, last(latitude, time) AS latitude FROM readings "
        f"WHERE name IS NOT NULL AND fleet = '{fleet}' GROUP BY name, driver")
    q["low-fuel"] = both(
        f"SELECT name, driver, fuel_state FROM (SELECT name, driver, last(fuel_state, time) AS fuel_state FROM diagnostics "
        f"WHERE name IS NOT NULL AND fleet = '{fleet}' GROUP BY name, driver) d WHERE fuel_state < 0.1")
    q["high-load"] = both(
        f"SELECT name, driver, current_load, load_capacity FROM (SELECT name, driver, load_capacity, last(load, time) AS current_load "
        f"FROM diagnostics WHERE name IS NOT NULL AND fleet = '{fleet}' GROUP BY name, driver, load_capacity) d "
        f"WHERE current_load / CAST(load_capacity AS DOUBLE) > 0.9")
    stat_from = max(start_ns, end_ns - 10 * MIN_NS)
    q["stationary-trucks"] = both(
        f"SELECT name, driver FROM readings WHERE time >= {{A}} AND time < {{Z}} AND name IS NOT NULL AND fleet = '{fleet}' "
        f"GROUP BY name, driver HAVING avg(velocity) < 1", A=stat_from, Z=end_ns)
    # TSBS: drove more than tenMinutePeriods(rest minutes per hour, window) ten-minute periods of the
    # window: (5, 4 h) = 22, (35, 24 h) = 60. A window clipped to shorter data gets the same formula.
    for name, hours, rest_per_hour in (("long-driving-sessions", 4, 5), ("long-daily-sessions", 24, 35)):
        since = max(start_ns, end_ns - hours * HOUR_NS)
        q[name] = both(
            f"SELECT name, driver FROM (SELECT {{B}}(INTERVAL '10 minutes', time) AS ten_minutes, name, driver FROM readings "
            f"WHERE time >= {{A}} AND time < {{Z}} AND name IS NOT NULL AND fleet = '{fleet}' "
            f"GROUP BY ten_minutes, name, driver HAVING avg(velocity) > 1) r "
            f"GROUP BY name, driver HAVING count(r.ten_minutes) > {ten_minute_periods(rest_per_hour, end_ns - since)}",
            A=since, Z=end_ns)
    q["avg-vs-projected-fuel-consumption"] = both(
        "SELECT fleet, avg(fuel_consumption) AS avg_fuel_consumption, "
        "avg(CAST(nominal_fuel_consumption AS DOUBLE)) AS projected_fuel_consumption FROM readings "
        "WHERE velocity > 1 AND fleet IS NOT NULL AND nominal_fuel_consumption IS NOT NULL AND name IS NOT NULL GROUP BY fleet")
    q["avg-daily-driving-duration"] = both(
        "WITH ten_minute_driving_sessions AS ("
        "SELECT {B}(INTERVAL '10 minutes', time) AS ten_minutes, name, driver, fleet FROM readings "
        "GROUP BY name, driver, fleet, ten_minutes HAVING avg(velocity) > 1), "
        "daily_total_session AS ("
        "SELECT {B}(INTERVAL '24 hours', ten_minutes) AS day, name, driver, fleet, count(*) {DIV} 6 AS hours "
        "FROM ten_minute_driving_sessions GROUP BY day, name, driver, fleet) "
        "SELECT fleet, name, driver, avg(hours) AS avg_daily_hours FROM daily_total_session GROUP BY fleet, name, driver")
    t, d = both(
        "WITH driver_status AS ("
        "SELECT name, {B}(INTERVAL '10 minutes', time) AS ten_minutes, avg(velocity) > 5 AS driving FROM readings "
        "GROUP BY name, ten_minutes), "
        "driver_status_change AS ("
        "SELECT name, ten_minutes AS start, lead(ten_minutes) OVER (PARTITION BY name ORDER BY ten_minutes) AS stop, driving "
        "FROM (SELECT name, ten_minutes, driving, lag(driving) OVER (PARTITION BY name ORDER BY ten_minutes) AS prev_driving "
        "FROM driver_status) x WHERE x.driving <> x.prev_driving) "
        "SELECT name, {B}(INTERVAL '24 hours', start) AS day, avg(@SECS@) AS duration_s "
        "FROM driver_status_change WHERE name IS NOT NULL AND driving = true GROUP BY name, day ORDER BY name, day")
    q["avg-daily-driving-session"] = (
        t.replace("@SECS@", "CAST(to_unixtime(stop) - to_unixtime(start) AS DOUBLE)"),
        d.replace("@SECS@", "CAST(epoch(stop) - epoch(start) AS DOUBLE)"))
    q["avg-load"] = both(
        "SELECT fleet, model, load_capacity, avg(avg_load / CAST(load_capacity AS DOUBLE)) AS avg_load_percentage FROM ("
        "SELECT name, fleet, model, load_capacity, avg(load) AS avg_load FROM diagnostics WHERE name IS NOT NULL "
        "GROUP BY name, fleet, model, load_capacity) d GROUP BY fleet, model, load_capacity")
    q["daily-activity"] = both(
        "SELECT fleet, model, day, CAST(sum(ten_mins_per_day) AS DOUBLE) / 144 AS daily_activity FROM ("
        "SELECT {B}(INTERVAL '24 hours', time) AS day, {B}(INTERVAL '10 minutes', time) AS ten_minutes, name, fleet, model, "
        "count(*) AS ten_mins_per_day FROM diagnostics WHERE name IS NOT NULL "
        "GROUP BY day, ten_minutes, name, fleet, model HAVING avg(status) < 1) y "
        "GROUP BY fleet, model, day ORDER BY day")
    q["breakdown-frequency"] = both(
        "WITH breakdown_per_truck_per_ten_minutes AS ("
        "SELECT {B}(INTERVAL '10 minutes', time) AS ten_minutes, name, model, "
        "avg(CASE WHEN status <> 0 THEN 1.0 ELSE 0.0 END) >= 0.5 AS broken_down FROM diagnostics "
        "WHERE name IS NOT NULL GROUP BY ten_minutes, name, model), "
        "breakdowns_per_truck AS ("
        "SELECT ten_minutes, name, model, broken_down, "
        "lead(broken_down) OVER (PARTITION BY name ORDER BY ten_minutes) AS next_broken_down "
        "FROM breakdown_per_truck_per_ten_minutes) "
        "SELECT model, count(*) AS breakdowns FROM breakdowns_per_truck "
        "WHERE broken_down = false AND next_broken_down = true GROUP BY model")
    # DuckDB spells last(x, t) arg_max(x, t).
    return {k: (t, d.replace("last(", "arg_max(")) for k, (t, d) in q.items()}


def norm_value(v):
    if hasattr(v, "tzinfo") and v.tzinfo is not None:
        v = v.replace(tzinfo=None)
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def compare(a, b):
    """None when both result sets hold the same rows (order ignored, floats to 1e-9 relative), else a message."""
    def key(row):
        return tuple((0, round(v, 6)) if isinstance(v, float) else (1, repr(v)) for v in row)
    a = sorted((tuple(norm_value(v) for v in r) for r in a), key=key)
    b = sorted((tuple(norm_value(v) for v in r) for r in b), key=key)
    if len(a) != len(b):
        return f"Telemark returned {len(a)} rows, DuckDB {len(b)}; first: {a[:3]} vs {b[:3]}"
    for x, y in zip(a, b):
        if len(x) != len(y):
            return f"column count differs: {x} vs {y}"
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float):
                ok = (math.isnan(u) and math.isnan(v)) or math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12)
            else:
                ok = u == v
            if not ok:
                return f"Telemark row {x} differs from DuckDB row {y}"
    return None


def timed(fn, runs):
    result = fn()  # warm-up
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000, result


# ---------------------------------------------------------------- systems


def start_telemark(a, tmp, data, config=None, mqtt=None, log_name="telemark.log"):
    http, flight = free_port(), free_port()
    args = [a.telemark, "serve", "--data-dir", data, "--http-addr", f"127.0.0.1:{http}",
            "--flight-addr", f"127.0.0.1:{flight}", "--mqtt-addr", f"127.0.0.1:{mqtt}" if mqtt else "off"]
    if config:
        args += ["--config", config]
    p = Proc(args, os.path.join(tmp, log_name))
    wait_http(f"http://127.0.0.1:{http}/health")
    return p, http, flight


def flight_connect(flight):
    import adbc_driver_flightsql.dbapi as flightsql
    return flightsql.connect(uri=f"grpc://127.0.0.1:{flight}",
                             db_kwargs={"adbc.flight.sql.rpc.call_header.database": "fleet"})


def fingerprint(cur):
    """What a loaded instance holds, per table: column types, rows, time range, distinct tags, sums of numeric
    columns and tags."""
    out = {}
    for table, fields in FIELDS.items():
        cur.execute(f"SELECT * FROM {table} LIMIT 0")
        schema = {f.name: str(f.type) for f in cur.fetch_arrow_table().schema}
        exprs = ["count(*)", "min(time)", "max(time)"]
        exprs += [f"count(DISTINCT {t})" for t in TAGS]
        exprs += [f"sum(CAST({t} AS DOUBLE))" for t in NUMERIC_TAGS]
        exprs += [f"sum({f})" for f in fields]
        cur.execute(f"SELECT {', '.join(exprs)} FROM {table}")
        out[table] = {"schema": schema, "values": dict(zip(exprs, cur.fetchone()))}
    return out


def same_value(u, v):
    u, v = norm_value(u), norm_value(v)
    if isinstance(u, float) and isinstance(v, float):
        return math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9)
    return u == v


def run_telemark(a, tmp, qs, res):
    data = os.path.join(tmp, "telemark")
    p, http, _ = start_telemark(a, tmp, data)
    try:
        log("Telemark: loading")
        r = lp_load(a, f"http://127.0.0.1:{http}/api/v2/write?bucket=fleet&precision=ns")
    finally:
        t = time.perf_counter()
        p.stop()
        r["shutdown_s"] = time.perf_counter() - t
    res["ingest"]["Telemark"] = r
    p, http, flight = start_telemark(a, tmp, data)
    out = {}
    try:
        try:
            st = json.loads(http_get(f"http://127.0.0.1:{http}/api/v3/storage?db=fleet"))
            res["telemark_storage"] = st
        except Exception as e:  # older binaries lack the endpoint
            log(f"Telemark: /api/v3/storage failed ({e}); per-column numbers unavailable (use --telemark-bin with a newer build)")
        res["disk_bytes"]["Telemark"] = du(data)
        with flight_connect(flight) as conn, conn.cursor() as cur:
            res["telemark_fingerprint"] = fingerprint(cur)
            for table in FIELDS:
                res.setdefault("telemark_rows", {})[table] = res["telemark_fingerprint"][table]["values"]["count(*)"]
            # The floor every query pays: an ADBC round trip (prepare, GetFlightInfo, DoGet, close).
            def select1():
                cur.execute("SELECT 1")
                return cur.fetchall()
            res.setdefault("select1_ms", {})["Telemark"] = timed(select1, 20)[0]
            for name, (sql, _) in qs.items():
                log(f"Telemark: {name}")

                def run(sql=sql):
                    cur.execute(sql)
                    return cur.fetchall()
                try:
                    ms, rows = timed(run, a.runs)
                    out[name] = (ms, rows)
                except Exception as e:
                    out[name] = (None, str(e).splitlines()[0][:500])
                    log(f"Telemark: {name} FAILED: {out[name][1]}")
    finally:
        p.stop()
    res["disk_bytes"]["Telemark"] = du(data)
    return out


def mqtt_replay(a, mqtt, http):
    args = [a.mqtt_load, "--fleet-replay", "--mqtt", f"127.0.0.1:{mqtt}", "--http", f"http://127.0.0.1:{http}",
            "--trucks", str(a.trucks), "--hours", str(a.hours), "--interval", str(a.interval), "--seed", str(a.seed),
            "--publishers", str(a.mqtt_publishers or a.trucks), "--qos", str(a.mqtt_qos),
            "--inflight", str(a.mqtt_inflight)]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def run_telemark_mqtt(a, tmp, qs, res):
    """The same workload over MQTT into a fresh instance; returns the query answers (one run each, untimed)."""
    data = os.path.join(tmp, "telemark-mqtt")
    config = os.path.join(tmp, "telemark-mqtt.toml")
    with open(config, "w") as f:
        f.write(MQTT_RULES)
    mqtt = free_port()
    p, http, flight = start_telemark(a, tmp, data, config=config, mqtt=mqtt, log_name="telemark-mqtt.log")
    out = {}
    try:
        log(f"Telemark: loading over MQTT (QoS {a.mqtt_qos})")
        r = mqtt_replay(a, mqtt, http)
        res["ingest_mqtt"] = r
        metrics = http_get(f"http://127.0.0.1:{http}/metrics").decode()
        r["server_metrics"] = {k: float(v) for k, v in (
            line.split() for line in metrics.splitlines()
            if line.startswith("telemark_mqtt_") and len(line.split()) == 2)}
        with flight_connect(flight) as conn, conn.cursor() as cur:
            res["telemark_mqtt_fingerprint"] = fingerprint(cur)
            for name, (sql, _) in qs.items():
                log(f"Telemark (MQTT-loaded): {name}")
                try:
                    cur.execute(sql)
                    out[name] = cur.fetchall()
                except Exception as e:
                    out[name] = None
                    res["mqtt_checks"][f"query {name}"] = f"Telemark error: {str(e).splitlines()[0][:500]}"
    finally:
        p.stop()
    return out


def check_mqtt(res, mq, dq):
    """The MQTT-loaded instance against the HTTP-loaded one and DuckDB's answers."""
    checks = res["mqtt_checks"]
    rejected = res["ingest_mqtt"].get("server_metrics", {}).get("telemark_mqtt_payloads_rejected_total", 0)
    checks["payloads rejected"] = "ok" if rejected == 0 else f"{rejected:.0f} payloads rejected (see the _rejected table)"
    http_fp, mqtt_fp = res.get("telemark_fingerprint"), res.get("telemark_mqtt_fingerprint")
    for table in FIELDS:
        if not http_fp or not mqtt_fp:
            checks[f"{table} contents"] = "no fingerprint (a load failed)"
            continue
        # JSON numbers are stored as floats (the README's "Topic rules"): an integer field over line
        # protocol is a float over MQTT, and the only allowed difference.
        hs, ms = http_fp[table]["schema"], mqtt_fp[table]["schema"]
        diffs = [f"column {c}: HTTP {hs.get(c)}, MQTT {ms.get(c)}" for c in sorted(set(hs) | set(ms))
                 if hs.get(c) != ms.get(c) and not (c in INT_FIELDS and (hs.get(c), ms.get(c)) == ("int64", "double"))]
        checks[f"{table} columns"] = "ok" if not diffs else "; ".join(diffs)
        hv, mv = http_fp[table]["values"], mqtt_fp[table]["values"]
        diffs = [f"{k}: HTTP {v}, MQTT {mv.get(k)}" for k, v in hv.items() if not same_value(v, mv.get(k))]
        checks[f"{table} contents"] = "ok" if not diffs else "; ".join(diffs)
    for name, rows in mq.items():
        if rows is None:
            continue
        dms, drows = dq.get(name, (None, None))
        if dms is None:
            checks[f"query {name}"] = f"DuckDB error: {drows}"
            continue
        msg = compare(rows, drows)
        checks[f"query {name}"] = "ok" if msg is None else msg.replace("Telemark", "Telemark (MQTT-loaded)")
    for k, v in checks.items():
        if v != "ok":
            log(f"!!! MQTT MISMATCH {k}: {v}")


def run_duckdb(a, tmp, tables, qs, res):
    import duckdb
    path = os.path.join(tmp, "fleet.duckdb")
    con = duckdb.connect(path)
    t = time.perf_counter()
    for table, at in arrow_tables(tables).items():
        cols = ", ".join(f"{tag} VARCHAR" for tag in TAGS) + ", " + ", ".join(
            f"{f} {'BIGINT' if f in INT_FIELDS else 'DOUBLE'}" for f in FIELDS[table])
        con.execute(f"CREATE TABLE {table} (time TIMESTAMP, {cols})")
        con.register("src", at)
        con.execute(f"INSERT INTO {table} SELECT time::TIMESTAMP, * EXCLUDE (time) FROM src")
        con.unregister("src")
    con.execute("CHECKPOINT")
    res["duckdb_load_s"] = time.perf_counter() - t
    out = {}
    res.setdefault("select1_ms", {})["DuckDB"] = timed(lambda: con.execute("SELECT 1").fetchall(), 20)[0]
    for name, (_, sql) in qs.items():
        log(f"DuckDB: {name}")
        try:
            out[name] = timed(lambda sql=sql: con.execute(sql).fetchall(), a.runs)
        except Exception as e:
            out[name] = (None, str(e).splitlines()[0][:500])
            log(f"DuckDB: {name} FAILED: {out[name][1]}")
    con.close()
    res["disk_bytes"]["DuckDB"] = os.path.getsize(path) + (os.path.getsize(path + ".wal") if os.path.exists(path + ".wal") else 0)
    return out


def run_victoria(a, tmp, res):
    vm, port, vm_dir = start_victoria(tmp)
    try:
        log("VictoriaMetrics: loading")
        r = lp_load(a, f"http://127.0.0.1:{port}/write")
        http_get(f"http://127.0.0.1:{port}/internal/force_flush")
        time.sleep(1)
    finally:
        vm.stop()
    res["ingest"]["VictoriaMetrics"] = r
    res["disk_bytes"]["VictoriaMetrics"] = du(vm_dir)


def run_influx(a, tmp, res):
    ix, port, ix_dir = start_influxdb(tmp, compact_soon=True)
    try:
        log("InfluxDB: loading")
        r = lp_load(a, f"http://127.0.0.1:{port}/write?db=fleet&precision=ns")
        # Let the cache snapshot to TSM and the full compaction run (cold durations set low above),
        # so the bytes are TSM files, not the WAL.
        deadline = time.time() + 120
        last, stable = -1, 0
        while time.time() < deadline:
            time.sleep(2)
            wal, size = du(os.path.join(ix_dir, "wal", "fleet")), du(ix_dir)
            stable = stable + 1 if size == last and wal < 64 * 1024 else 0
            last = size
            if stable >= 3:
                break
    finally:
        ix.stop()
    res["ingest"]["InfluxDB"] = r
    res["disk_bytes"]["InfluxDB"] = du(ix_dir)
    res["influx_wal_bytes"] = du(os.path.join(ix_dir, "wal"))


def fmt_om(v):
    return repr(v) if isinstance(v, float) else str(v)


def run_prometheus(a, tmp, tables, res):
    om = os.path.join(tmp, "fleet.om")
    log("Prometheus: writing OpenMetrics")
    samples = 0
    with open(om, "w") as f:
        for table, rows in tables.items():
            by_series = defaultdict(list)
            for (name, ts), (tags, vals) in rows.items():
                by_series[tags].append((ts, vals))
            for series in by_series.values():
                series.sort(key=lambda x: x[0])
            for j, field in enumerate(FIELDS[table]):
                metric = f"{table}_{field}"
                f.write(f"# TYPE {metric} gauge\n")
                for tags, series in by_series.items():
                    labels = ",".join(f'{k}="{v}"' for k, v in zip(TAGS, tags))
                    prefix = f"{metric}{{{labels}}} "
                    f.write("".join(f"{prefix}{fmt_om(vals[j])} {ts // 1_000_000 / 1000:.3f}\n" for ts, vals in series))
                    samples += len(series)
        f.write("# EOF\n")
    out = os.path.join(tmp, "prom")
    log("Prometheus: promtool tsdb create-blocks-from openmetrics")
    t = time.perf_counter()
    r = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"promtool failed: {r.stderr[-2000:]}")
    res["promtool_s"] = time.perf_counter() - t
    res["prometheus_samples"] = samples
    res["disk_bytes"]["Prometheus"] = du(out)
    os.remove(om)


# ---------------------------------------------------------------- report


def ratio(t, p):
    if not t or not p:
        return ""
    return f" ({t / p:.2f}×)"


def report(a, res, tq, dq, values):
    peers = [p for p in ("DuckDB", "VictoriaMetrics", "InfluxDB", "Prometheus") if p in res["disk_bytes"] or p in res["ingest"]]
    print(f"\n### Fleet: {a.trucks} trucks × {a.hours:g} h every {a.interval} s, seed {a.seed}\n")
    print(f"{res['lines']:,} lines sent, {res['sent_values']:,} field values sent, {values:,} distinct field values stored "
          f"(bytes/value divide by these). Query times: median of {a.runs} runs after a warm-up; "
          f"Telemark over ADBC Flight SQL, DuckDB in-process. Cells: value (Telemark ÷ peer).\n")
    print("| metric | Telemark | " + " | ".join(peers) + " |")
    print("|---|---|" + "---|" * len(peers))
    ing = res["ingest"]
    t_ing = ing.get("Telemark", {}).get("values_per_sec")
    row = [f"{t_ing / 1e6:.2f} M" if t_ing else "—"]
    for p in peers:
        v = ing.get(p, {}).get("values_per_sec")
        row.append(f"{v / 1e6:.2f} M{ratio(t_ing, v)}" if v else "—")
    print("| ingest values/s (HTTP line protocol) | " + " | ".join(row) + " |")
    t_l = ing.get("Telemark", {}).get("lines_per_sec")
    row = [f"{t_l / 1e3:.0f} k" if t_l else "—"]
    for p in peers:
        v = ing.get(p, {}).get("lines_per_sec")
        row.append(f"{v / 1e3:.0f} k{ratio(t_l, v)}" if v else "—")
    print("| ingest lines/s | " + " | ".join(row) + " |")
    m = res.get("ingest_mqtt")
    if m:
        qos = f"MQTT (QoS {m['qos']})"
        print(f"| ingest over {qos}, field values/s | {m['values_per_sec'] / 1e6:.2f} M |" + " |" * len(peers))
        print(f"| ingest over {qos}, messages/s = rows/s | {m['messages_per_sec'] / 1e3:.1f} k |" + " |" * len(peers))
    db = res["disk_bytes"]
    t_b = db.get("Telemark")
    row = [f"{t_b / values:.3f}" if t_b else "—"]
    for p in peers:
        v = db.get(p)
        row.append(f"{v / values:.3f}{ratio(t_b, v)}" if v else "—")
    print("| bytes/value, whole data dir / file | " + " | ".join(row) + " |")
    st = res.get("telemark_storage")
    if st:
        print(f"| bytes/value, Telemark segment files only | {st['bytes'] / values:.3f} |" + " |" * len(peers))
    s1 = res.get("select1_ms", {})
    if "Telemark" in s1:
        d1 = s1.get("DuckDB")
        duck = f"{d1:.2f}{ratio(s1['Telemark'], d1)}" if d1 is not None else ""
        cells = [duck if p == "DuckDB" else "" for p in peers]
        print(f"| SELECT 1, the round trip every query pays (ms) | {s1['Telemark']:.2f} | " + " | ".join(cells) + " |")
    for name in tq:
        tms, trows = tq[name]
        dms, drows = dq.get(name, (None, None))
        cell_t = f"{tms:.1f}" if tms is not None else "ERROR"
        cells = []
        for p in peers:
            if p == "DuckDB" and dms is not None:
                cells.append(f"{dms:.1f}{ratio(tms, dms)}")
            elif p == "DuckDB":
                cells.append("ERROR")
            else:
                cells.append("")
        check = res["checks"].get(name, "")
        flag = "" if check == "ok" else " ⚠"
        n = res.get("result_rows", {}).get(name)
        rows_note = f", {n} rows" if n is not None else ""
        print(f"| {name} (ms{rows_note}){flag} | {cell_t} | " + " | ".join(cells) + " |")
    if st:
        print("\nTelemark storage after flush (segment files), bytes per value:\n")
        print("| table | column | values | bytes | bytes/value | chunks | codecs |")
        print("|---|---|---|---|---|---|---|")
        per_table = defaultdict(lambda: [0, 0])
        for c in sorted(st["columns"], key=lambda c: (c["table"], c["column"])):
            per_table[c["table"]][0] += c["bytes"]
            per_table[c["table"]][1] += c["values"]
            codecs = ", ".join(f"{k} {v}" for k, v in sorted(c.get("codecs", {}).items(), key=lambda kv: -kv[1]))
            bpv = f"{c['bytes'] / c['values']:.3f}" if c["values"] else "—"
            print(f"| {c['table']} | {c['column']} | {c['values']:,} | {c['bytes']:,} | {bpv} | {c['chunks']} | {codecs} |")
        for t, (b, v) in sorted(per_table.items()):
            print(f"| {t} | (all columns) | {v:,} | {b:,} | {b / max(v, 1):.3f} | | |")
        print(f"| all | | {st['values']:,} | {st['bytes']:,} | {st['bytes'] / max(st['values'], 1):.3f} | | |")
        print(f"\nThe storage report counts the time column as values too ({st['values']:,}); "
              f"per field value the segments hold {st['bytes'] / values:.3f} bytes.")
    if m:
        ok = all(v == "ok" for v in res["mqtt_checks"].values())
        print(f"\nMQTT: {m['messages']:,} messages (one row each, both tables, duplicates and late rows included; "
              f"{m['payload_bytes'] / 1e6:.1f} MB of JSON) from {m['publishers']} connections, QoS {m['qos']}, "
              f"{m['inflight']} in flight each, into a fresh instance; rates count until every row is visible "
              f"({m['stored_seconds']:.1f} s; PUBACK p50 {m['puback_p50_ms']} ms, p99 {m['puback_p99_ms']} ms). "
              + ("It holds the same rows as the HTTP-loaded instance (columns, counts, distinct tags, sums of every "
                 "numeric column and tag; `status` is a float, as JSON numbers are) and answers all queries as DuckDB "
                 "does." if ok else "**It does not hold the same data:**"))
    if m or res["mqtt_checks"]:
        if not m:
            print("\n**MQTT load failed:**")
        for k, v in res["mqtt_checks"].items():
            if v != "ok":
                print(f"- {k}: {v}")
    bad = {k: v for k, v in res["checks"].items() if v != "ok"}
    if bad:
        print("\n**Answer cross-check problems (Telemark vs DuckDB):**\n")
        for k, v in bad.items():
            print(f"- {k}: {v}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trucks", type=int, default=50)
    ap.add_argument("--hours", type=float, default=48)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--bin-dir", default=os.path.join(here, "..", "..", "target", "release"))
    ap.add_argument("--telemark-bin", help="telemark binary (default: BIN_DIR/telemark)")
    ap.add_argument("--fleet-gen-bin", help="telemark-fleet-gen binary (default: BIN_DIR/telemark-fleet-gen)")
    ap.add_argument("--lp-load-bin", help="telemark-lp-load binary (default: BIN_DIR/telemark-lp-load)")
    ap.add_argument("--mqtt-load-bin", help="telemark-mqtt-load binary (default: BIN_DIR/telemark-mqtt-load)")
    ap.add_argument("--skip-mqtt", action="store_true", help="no MQTT load")
    ap.add_argument("--mqtt-publishers", type=int, default=0, help="MQTT connections (default: one per truck)")
    ap.add_argument("--mqtt-inflight", type=int, default=20, help="unacknowledged messages per connection")
    ap.add_argument("--mqtt-qos", type=int, choices=(0, 1), default=1)
    ap.add_argument("--skip-peers", action="store_true", help="Telemark and DuckDB only")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the JSON result here")
    a = ap.parse_args()
    a.telemark = os.path.abspath(a.telemark_bin or os.path.join(a.bin_dir, "telemark"))
    a.fleet_gen = os.path.abspath(a.fleet_gen_bin or os.path.join(a.bin_dir, "telemark-fleet-gen"))
    a.lp_load = os.path.abspath(a.lp_load_bin or os.path.join(a.bin_dir, "telemark-lp-load"))
    a.mqtt_load = os.path.abspath(a.mqtt_load_bin or os.path.join(a.bin_dir, "telemark-mqtt-load"))
    for b in (a.telemark, a.fleet_gen, a.lp_load) + (() if a.skip_mqtt else (a.mqtt_load,)):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary {b}")

    tmp = tempfile.mkdtemp(prefix="telemark-bench-fleet-")
    res = {"spec": {k: getattr(a, k) for k in ("trucks", "hours", "interval", "seed", "runs")},
           "ingest": {}, "disk_bytes": {}, "checks": {}, "mqtt_checks": {}}
    try:
        lp = os.path.join(tmp, "fleet.lp")
        log(f"generating {a.trucks} trucks × {a.hours:g} h into {lp}")
        generate(a, lp)
        tables, res["lines"], res["sent_values"] = parse_lp(lp)
        values = sum(len(rows) * len(FIELDS[t]) for t, rows in tables.items())
        res["values"] = values
        res["rows"] = {t: len(rows) for t, rows in tables.items()}
        all_ts = [k[1] for rows in tables.values() for k in rows]
        end_ns = max(all_ts) + a.interval * 10**9
        fleet = next(tags[1] for tags, _ in tables["readings"].values() if tags[0] == "truck_0")
        res["fleet"] = fleet
        qs = queries(fleet, START_NS, end_ns)
        res["sql"] = {k: {"telemark": t, "duckdb": d} for k, (t, d) in qs.items()}

        tq = run_telemark(a, tmp, qs, res)
        for t, n in res.get("telemark_rows", {}).items():
            if n != res["rows"][t]:
                log(f"WARNING: Telemark holds {n} {t} rows, the workload has {res['rows'][t]} distinct rows")
        dq = run_duckdb(a, tmp, tables, qs, res)
        for name in qs:
            tms, trows = tq[name]
            dms, drows = dq[name]
            if tms is None:
                res["checks"][name] = f"Telemark error: {trows}"
            elif dms is None:
                res["checks"][name] = f"DuckDB error: {drows}"
            else:
                msg = compare(trows, drows)
                res["checks"][name] = "ok" if msg is None else msg
                res.setdefault("result_rows", {})[name] = len(trows)
            if res["checks"][name] != "ok":
                log(f"!!! MISMATCH {name}: {res['checks'][name]}")
        res["queries_ms"] = {name: {"Telemark": tq[name][0], "DuckDB": dq[name][0]} for name in qs}

        if not a.skip_mqtt:
            try:
                mq = run_telemark_mqtt(a, tmp, qs, res)
                check_mqtt(res, mq, dq)
            except Exception as e:
                log(f"!!! MQTT load failed: {e}")
                res["mqtt_checks"]["load"] = str(e)

        if not a.skip_peers:
            for fn in (run_victoria, run_influx):
                try:
                    fn(a, tmp, res)
                except Exception as e:
                    log(f"{fn.__name__} failed: {e}")
                    res.setdefault("errors", {})[fn.__name__] = str(e)
            try:
                run_prometheus(a, tmp, tables, res)
            except Exception as e:
                log(f"prometheus failed: {e}")
                res.setdefault("errors", {})["prometheus"] = str(e)
        del tables
        report(a, res, tq, dq, values)
        res["bytes_per_value"] = {k: v / values for k, v in res["disk_bytes"].items()}
        line = json.dumps(res, default=str)
        print("\n" + line)
        if a.json:
            with open(a.json, "w") as f:
                f.write(line + "\n")
    finally:
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any(v != "ok" for v in list(res["checks"].values()) + list(res["mqtt_checks"].values())) else 0


if __name__ == "__main__":
    sys.exit(main())
