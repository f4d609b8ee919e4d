"""A year of fleet data at 1-hour resolution: the panel answered from a
1-hour rollup, from the rows (the same query with a filter the rollup
rewrite does not take), and by DuckDB, on the same rows in the same run.

    ./scripts/bench-rollup.sh                   # builds the release binary, installs deps, runs this
    python benches/dashboard/bench_rollup.py --devices 100 --days 365 --step 60 --bin target/release/telemark

Telemark is measured end to end through the ADBC Flight SQL driver.
"""

import argparse
import pathlib
import sys
import tempfile
import time

import duckdb
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_queries import make_chunk, same_answers, start, stop, timed  # noqa: E402

import adbc_driver_flightsql.dbapi as flightsql  # noqa: E402

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
HOUR = 3600 * 10**9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--step", type=int, default=60, help="seconds between a truck's readings")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=str(pathlib.Path(__file__).resolve().parents[2] / "target" / "release" / "telemark"))
    args = ap.parse_args()
    step_ns = args.step * 10**9
    steps = args.days * 86_400 // args.step
    rows = steps * args.devices
    end = T0 + args.days * 24 * HOUR
    rng = np.random.default_rng(7)
    panels = {
        "fleet-wide, 1 h, 1 year": "SELECT date_bin(INTERVAL '1 hour', time) AS t, avg(velocity) AS v, max(velocity) AS vmax, min(fuel) AS fuel FROM readings WHERE time >= {lo} AND time < {hi} {extra} GROUP BY 1 ORDER BY 1",
        "per fleet, 1 h, 1 year": "SELECT date_bin(INTERVAL '1 hour', time) AS t, fleet, avg(velocity) AS v, count(*) AS n FROM readings WHERE time >= {lo} AND time < {hi} {extra} GROUP BY 1, fleet ORDER BY 1, fleet",
        "one truck, 1 h, 1 year": "SELECT date_bin(INTERVAL '1 hour', time) AS t, max(velocity) AS vmax, avg(fuel) AS fuel FROM readings WHERE name = 'truck-7' AND time >= {lo} AND time < {hi} {extra} GROUP BY 1 ORDER BY 1",
    }
    # Grafana's range is rarely on the hour: cut the first and last hours.
    lo, hi = T0 + 17 * 60 * 10**9, end - 23 * 60 * 10**9
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        config = tmp / "telemark.toml"
        config.write_text('[[rollup]]\ndatabase = "fleet"\ntable = "readings"\ninterval = "1h"\n')
        duck = duckdb.connect(str(tmp / "duck.db"))
        duck.execute("CREATE TABLE readings (time TIMESTAMP, name VARCHAR, fleet VARCHAR, velocity DOUBLE, fuel DOUBLE, load BIGINT)")
        proc, flight = start(args.bin, tmp / "telemark", ["--config", str(config)])
        chunk_steps = max(1, 200_000 // args.devices)
        t_ingest = time.perf_counter()
        with flightsql.connect(uri=flight) as conn, conn.cursor() as cur:
            for first in range(0, steps, chunk_steps):
                chunk = make_chunk(args.devices, first, min(chunk_steps, steps - first), rng, t0=T0, step_ns=step_ns)
                cur.adbc_ingest("readings", chunk, mode="create_append", db_schema_name="fleet")
                duck.register("chunk", chunk)
                duck.execute("INSERT INTO readings SELECT time::TIMESTAMP, name, fleet, velocity, fuel, load FROM chunk")
                duck.unregister("chunk")
        t_ingest = time.perf_counter() - t_ingest
        duck.execute("CHECKPOINT")
        results = []
        try:
            kwargs = {"adbc.flight.sql.rpc.call_header.database": "fleet"}
            with flightsql.connect(uri=flight, db_kwargs=kwargs) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM readings")
                assert cur.fetchone()[0] == rows, "row count mismatch"
                # The first rollup query recomputes what the background thread has not yet.
                t = time.perf_counter()
                cur.execute(panels["fleet-wide, 1 h, 1 year"].format(lo=f"to_timestamp_nanos({lo})", hi=f"to_timestamp_nanos({hi})", extra=""))
                cur.fetchall()
                first_query = time.perf_counter() - t
                cur.execute("SELECT count(*) FROM readings_1h")
                rollup_rows = cur.fetchone()[0]
                for name, sql in panels.items():
                    fast = sql.format(lo=f"to_timestamp_nanos({lo})", hi=f"to_timestamp_nanos({hi})", extra="")
                    slow = sql.format(lo=f"to_timestamp_nanos({lo})", hi=f"to_timestamp_nanos({hi})", extra="AND name <> ''")
                    dsql = sql.replace("date_bin(INTERVAL '1 hour', time)", "time_bucket(INTERVAL '1 hour', time)").format(
                        lo=f"make_timestamp({lo // 1000})", hi=f"make_timestamp({hi // 1000})", extra="")
                    cur.execute(f"EXPLAIN {fast}")
                    assert "readings_1h" in str(cur.fetchall()), f"{name}: not answered from the rollup"

                    def run(q):
                        def go():
                            cur.execute(q)
                            return cur.fetchall()
                        return go
                    r_s, r_rows = timed(run(fast), args.runs)
                    s_s, s_rows = timed(run(slow), args.runs)
                    d_s, d_rows = timed(lambda: duck.execute(dsql).fetchall(), args.runs)
                    same_answers(name + " (rollup vs rows)", r_rows, s_rows)
                    same_answers(name + " (rollup vs DuckDB)", r_rows, d_rows)
                    results.append((name, len(r_rows), r_s, s_s, d_s))
        finally:
            stop(proc)
    print(f"\n{rows:,} rows ({args.devices} trucks, one reading every {args.step} s for {args.days} days), "
          f"1 h rollup of {rollup_rows:,} rows; median of {args.runs} runs after a warm-up")
    print(f"ingest (Telemark and DuckDB, same chunks): {t_ingest:.1f} s; first panel query after ingest "
          f"(recomputing what the background thread had not yet): {first_query * 1000:.0f} ms\n")
    print("| panel | rows out | from the rollup (ms) | from the rows (ms) | DuckDB (ms) | rollup / rows | rollup / DuckDB |")
    print("|---|---|---|---|---|---|---|")
    for name, n, r_s, s_s, d_s in results:
        print(f"| {name} | {n:,} | {r_s * 1000:.1f} | {s_s * 1000:.1f} | {d_s * 1000:.1f} | {r_s / s_s:.3f} | {r_s / d_s:.2f} |")


if __name__ == "__main__":
    main()
