"""Dashboard-shaped SQL on a flushed Telemark table, beside DuckDB running
the same queries on the same rows, in the same run.

    ./scripts/bench-queries.sh            # builds the release binary, installs deps, runs this
    python benches/dashboard/bench_queries.py --rows 10000000 --bin target/release/telemark

Telemark is measured end to end through the ADBC Flight SQL driver (plan,
scan, network, Arrow decode in the client); DuckDB in-process on a table in
its own database file. Same data, same machine, same run.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import warnings

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import numpy as np
import pyarrow as pa

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

T0 = 1_733_011_200_000_000_000  # 2024-12-01T00:00:00Z
STEP = 10_000_000_000  # 10 s


def make_chunk(devices, first_step, steps, rng, t0=T0, step_ns=STEP):
    n = devices * steps
    step_idx = np.repeat(np.arange(first_step, first_step + steps, dtype=np.int64), devices)
    dev = np.tile(np.arange(devices), steps)
    jitter = rng.integers(-5, 6, size=n) * 1_000_000  # ±5 ms, as real gateways send
    time_ns = t0 + step_idx * step_ns + jitter
    velocity = np.round(np.abs(40 + 25 * np.sin(step_idx / 300 + dev)) + rng.normal(0, 2, n), 1)
    fuel = np.round(np.clip(100 - (step_idx % 8640) / 86.4 - dev % 7, 0, 100), 2)
    load = rng.integers(0, 5000, size=n)
    names = np.array([f"truck-{d}" for d in range(devices)], dtype=object)
    fleets = np.array(["North", "South", "East", "West"], dtype=object)
    return pa.table({
        "time": pa.array(time_ns, pa.timestamp("ns")),
        "name": pa.array(names[dev]),
        "fleet": pa.array(fleets[dev % 4]),
        "velocity": pa.array(velocity),
        "fuel": pa.array(fuel),
        "load": pa.array(load, pa.int64()),
    })


def start(binary, data_dir, extra=()):
    proc = subprocess.Popen([binary, "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    flight = None
    while flight is None:
        line = proc.stdout.readline()
        if not line:
            sys.exit("telemark serve exited early")
        if "Flight SQL listening on" in line:
            flight = line.strip().rsplit(" ", 1)[-1]
    return proc, flight


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)


def dir_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def same_answers(name, a, b):
    """Both engines must return the same rows (floats to 1e-9 relative; timestamps compared as naive UTC)."""
    def norm(row):
        return tuple(v.replace(tzinfo=None) if hasattr(v, "tzinfo") and v.tzinfo else v for v in row)
    a, b = sorted(map(norm, a), key=repr), sorted(map(norm, b), key=repr)
    assert len(a) == len(b), f"{name}: Telemark returned {len(a)} rows, DuckDB {len(b)}"
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            ok = math.isclose(u, v, rel_tol=1e-9) if isinstance(u, float) else u == v
            assert ok, f"{name}: Telemark row {x} differs from DuckDB row {y}"


def timed(fn, runs):
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), result


def percentiles(samples):
    samples = sorted(samples)
    at = lambda p: samples[min(len(samples) - 1, int(len(samples) * p))] * 1000  # noqa: E731
    return at(0.5), at(0.99)


def small_query_latency(flight, clients, devices, start_ns, span_ns):
    """Round trips of `SELECT 1` from one client, and a Grafana-style panel query (1-minute
    averages of one truck over one hour, a different truck per client) from `clients` clients at
    once, each on its own connection: p50 and p99 over every query run."""
    import threading
    kwargs = {"adbc.flight.sql.rpc.call_header.database": "fleet"}
    out = {}
    with flightsql.connect(uri=flight, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        lat = []
        for _ in range(20):
            cur.execute("SELECT 1")
            cur.fetchall()
        for _ in range(300):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchall()
            lat.append(time.perf_counter() - t)
        out["SELECT 1, one client"] = percentiles(lat)
    per_client = []
    errors = []
    barrier = threading.Barrier(clients)

    def client(i):
        try:
            one_client(i)
        except BaseException as e:  # noqa: BLE001 - reported below, in the main thread
            errors.append(e)
            barrier.abort()

    def one_client(i):
        truck = f"truck-{(i * 37) % devices}"
        sql = (f"SELECT time_bucket(INTERVAL '1 minute', time) AS t, avg(velocity) AS v FROM readings "
               f"WHERE name = '{truck}' AND time >= to_timestamp_nanos({start_ns}) "
               f"AND time < to_timestamp_nanos({start_ns + span_ns}) GROUP BY t ORDER BY t")
        lat = []
        with flightsql.connect(uri=flight, db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
            barrier.wait()
            for _ in range(50):
                t = time.perf_counter()
                cur.execute(sql)
                rows = cur.fetchall()
                lat.append(time.perf_counter() - t)
                assert len(rows) == 60, len(rows)
        per_client.append(lat)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    out[f"panel query (1 truck, 1 h, 1-min averages), {clients} clients at once"] = percentiles(
        [x for lat in per_client for x in lat])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=str(pathlib.Path(__file__).resolve().parents[2] / "target" / "release" / "telemark"))
    ap.add_argument("--json", help="also write results here")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients for the panel-latency test")
    ap.add_argument("--keep", metavar="DIR", help="load into DIR (must not exist) and keep it, for profiling")
    args = ap.parse_args()
    steps = args.rows // args.devices
    rng = np.random.default_rng(42)
    hour = 3600 * 10**9
    one_hour_from = T0 + 6 * hour
    day_from = T0
    queries = {
        "last value per device": (
            "SELECT name, last(velocity, time) AS velocity FROM readings GROUP BY name",
            "SELECT name, arg_max(velocity, time) AS velocity FROM readings GROUP BY name",
        ),
        "1-min averages, 1 device, 1 hour": (
            f"SELECT time_bucket(INTERVAL '1 minute', time) AS t, avg(velocity) AS v FROM readings "
            f"WHERE name = 'truck-42' AND time >= to_timestamp_nanos({one_hour_from}) AND time < to_timestamp_nanos({one_hour_from + hour}) GROUP BY t ORDER BY t",
            f"SELECT time_bucket(INTERVAL '1 minute', time) AS t, avg(velocity) AS v FROM readings "
            f"WHERE name = 'truck-42' AND time >= make_timestamp({one_hour_from // 1000}) AND time < make_timestamp({(one_hour_from + hour) // 1000}) GROUP BY t ORDER BY t",
        ),
        "fleet-wide hourly averages, 1 day": (
            f"SELECT time_bucket(INTERVAL '1 hour', time) AS t, fleet, avg(fuel) AS fuel, max(velocity) AS vmax FROM readings "
            f"WHERE time >= to_timestamp_nanos({day_from}) AND time < to_timestamp_nanos({day_from + 24 * hour}) GROUP BY t, fleet ORDER BY t, fleet",
            f"SELECT time_bucket(INTERVAL '1 hour', time) AS t, fleet, avg(fuel) AS fuel, max(velocity) AS vmax FROM readings "
            f"WHERE time >= make_timestamp({day_from // 1000}) AND time < make_timestamp({(day_from + 24 * hour) // 1000}) GROUP BY t, fleet ORDER BY t, fleet",
        ),
    }
    if args.keep:
        os.makedirs(args.keep)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        tmp = pathlib.Path(tmp)
        data_dir = tmp / "telemark"
        duck = duckdb.connect(str(tmp / "duck.db"))
        duck.execute("CREATE TABLE readings (time TIMESTAMP, name VARCHAR, fleet VARCHAR, velocity DOUBLE, fuel DOUBLE, load BIGINT)")
        proc, flight = start(args.bin, data_dir)
        # ADBC sends each batch as one gRPC message and caps messages at 16 MiB: keep chunks well under.
        chunk_steps = max(1, 200_000 // args.devices)
        ingest_s = duck_s = 0.0
        with flightsql.connect(uri=flight) as conn, conn.cursor() as cur:
            for first in range(0, steps, chunk_steps):
                chunk = make_chunk(args.devices, first, min(chunk_steps, steps - first), rng)
                t = time.perf_counter()
                cur.adbc_ingest("readings", chunk, mode="create_append", db_schema_name="fleet")
                ingest_s += time.perf_counter() - t
                t = time.perf_counter()
                duck.register("chunk", chunk)
                duck.execute("INSERT INTO readings SELECT time::TIMESTAMP, name, fleet, velocity, fuel, load FROM chunk")
                duck.unregister("chunk")
                duck_s += time.perf_counter() - t
        stop(proc)  # SIGTERM flushes the write buffer: the queries read segments only
        duck.execute("CHECKPOINT")
        rows = steps * args.devices
        proc, flight = start(args.bin, data_dir)
        results = []
        try:
            with flightsql.connect(uri=flight, db_kwargs={"adbc.flight.sql.rpc.call_header.database": "fleet"}) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM readings")
                assert cur.fetchone()[0] == rows, "row count mismatch"
                for name, (tsql, dsql) in queries.items():
                    def run_t():
                        cur.execute(tsql)
                        return cur.fetchall()
                    def run_d():
                        return duck.execute(dsql).fetchall()
                    t_s, t_rows = timed(run_t, args.runs)
                    d_s, d_rows = timed(run_d, args.runs)
                    same_answers(name, t_rows, d_rows)
                    # Rows the query has to read: its WHERE clause counted by DuckDB.
                    where = dsql.split(" FROM readings", 1)[1].split(" GROUP BY")[0]
                    scanned = duck.execute(f"SELECT count(*) FROM readings {where}").fetchone()[0]
                    results.append({"query": name, "telemark_ms": t_s * 1000, "duckdb_ms": d_s * 1000, "rows": len(t_rows), "scanned": scanned})
            small = small_query_latency(flight, args.clients, args.devices, one_hour_from, hour)
        finally:
            stop(proc)
        t_bytes = dir_bytes(data_dir)
        d_bytes = os.path.getsize(tmp / "duck.db")
    values = rows * 4  # velocity, fuel, load + time
    print(f"\n{rows:,} rows, {args.devices} devices, 10 s interval; median of {args.runs} runs after a warm-up\n")
    print("| query | rows read | Telemark (ms) | Telemark rows/s | DuckDB (ms) | DuckDB rows/s | Telemark / DuckDB (time) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        t_rate = r["scanned"] / (r["telemark_ms"] / 1000)
        d_rate = r["scanned"] / (r["duckdb_ms"] / 1000)
        print(f"| {r['query']} | {r['scanned']:,} | {r['telemark_ms']:.1f} | {t_rate / 1e6:.1f} M | {r['duckdb_ms']:.1f} | {d_rate / 1e6:.1f} M | {r['telemark_ms'] / r['duckdb_ms']:.2f} |")
    print(f"\n| load | Telemark | DuckDB | Telemark / DuckDB |\n|---|---|---|---|")
    print(f"| ingest rows/s (ADBC Flight SQL vs in-process insert) | {rows / ingest_s:,.0f} | {rows / duck_s:,.0f} | {(rows / ingest_s) / (rows / duck_s):.2f} |")
    print(f"| bytes on disk | {t_bytes:,} | {d_bytes:,} | {t_bytes / d_bytes:.2f} |")
    print(f"| bytes per stored value (time + 3 fields) | {t_bytes / values:.2f} | {d_bytes / values:.2f} | |")
    print(f"\n| small queries over Flight SQL (ADBC) | p50 (ms) | p99 (ms) |\n|---|---|---|")
    for label, (p50, p99) in small.items():
        print(f"| {label} | {p50:.2f} | {p99:.2f} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows, "queries": results, "telemark_bytes": t_bytes, "duckdb_bytes": d_bytes, "small": small}, indent=2))


if __name__ == "__main__":
    main()
