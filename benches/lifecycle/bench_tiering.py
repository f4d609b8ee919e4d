#!/usr/bin/env python3
"""Tiering benchmark driver (see scripts/bench-tiering.sh).

The fleet workload in hot segment files, in the cold tier (Parquet in an S3
bucket served by moto_server on loopback) and in DuckDB's own file: bytes per
value, and the twelve TSBS IoT queries hot vs cold, with the cold row-group
cache cold and warm. Telemark only, DuckDB as the reference. The workload,
loader, queries, answer comparison, DuckDB loader and server start are the
fleet benchmark's (benches/fleet/bench_fleet.py), the admin and metrics
helpers the lifecycle benchmark's, imported, not copied.

1. DuckDB: the workload (--trucks x --hours from telemark-fleet-gen's fixed
   start, 2024-12-01, so every daily partition is long past) parsed from the
   same line protocol, duplicates removed, into a database file, CHECKPOINT;
   its size, and the queries timed (median of --runs after a warm-up) as the
   answers every Telemark phase is checked against.
2. moto_server on a free loopback port with dummy keys; a bucket made with
   boto3. Telemark runs with `[object_store] url = "s3://BUCKET/bench"`
   (what `--object-store` sets), `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` for
   moto, `[tiering] after = "1d"` and background tiering and compaction off.
3. Hot: the workload loaded over HTTP line protocol, then
   `POST /api/v3/admin/compact` (one file per table and day, as the cold tier
   has one object per table and day), segment bytes from
   `GET /api/v3/storage`; the queries over ADBC Flight SQL, median of --runs
   after a warm-up ("hot"); then each query's first run after a restart of
   the server ("hot, first run": what a restart costs without object storage).
4. `POST /api/v3/admin/tier`, timed: partitions, files, segment bytes, object
   bytes and rows moved; the bucket listed with boto3 (sizes summed) and
   each object's footer read (compressed bytes per column, rows). Every
   row must have moved, no segment file may be left, the tables' contents
   (rows, distinct tags, sums of every numeric column) and the twelve answers
   must equal the hot ones, else the run fails.
5. Cold: for each query, the server restarted with its disk cache of cold
   column chunks removed (so both the in-memory row-group cache and the disk
   cache are empty and every chunk comes from the bucket; the local cold
   index stays), a Flight SQL connection and a
   `SELECT 1` made, then the query's first run, timed ("cold, cache cold"),
   with the row groups it fetched (`telemark_tier_fetches_total`, decoded
   bytes); then a warm-up and the median of --runs ("cold, cache warm"). Every
   answer must equal the hot one, and the hot ones DuckDB's.

Bytes per value divide by the distinct field values of the workload, as the
fleet benchmark does (one per table x truck x timestamp x field).
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "fleet"))
sys.path.insert(0, HERE)
from benchlib import Proc, du, free_port, wait_http  # noqa: E402
from bench_fleet import (  # noqa: E402
    FIELDS, START_NS, fingerprint, flight_connect, generate, lp_load, parse_lp, queries, run_duckdb,
    start_telemark, timed)
from bench_lifecycle import (  # noqa: E402
    checked_values, compact, http_post, metrics, print_problems, ratio, run_queries, same_answers, same_contents, storage,
    write_config)

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

MB = 1e6
BUCKET = "telemark-bench"
PREFIX = "bench"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
TIER_METRICS = ("telemark_tier_fetches_total", "telemark_tier_fetch_bytes_total", "telemark_tier_cache_hits_total")


def log(msg):
    print(f"[bench-tiering] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- object store


class Moto:
    """moto_server on a free loopback port with dummy keys, and a bucket in it."""

    def __init__(self, exe, tmp):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = Proc([exe, "-H", "127.0.0.1", "-p", str(self.port)], os.path.join(tmp, "moto.log"))
        deadline = time.time() + 60
        while True:
            try:
                wait_http(self.endpoint + "/", timeout=1)
                return
            except RuntimeError:
                if self.proc.p.poll() is not None or time.time() > deadline:
                    self.proc.stop(timeout=10)
                    raise RuntimeError(f"moto_server ({exe}) did not start; see {tmp}/moto.log") from None

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"], region_name=KEYS["AWS_REGION"])

    def listing(self, prefix):
        """(objects, bytes) under `prefix` of the bucket."""
        n = total = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                n += 1
                total += o["Size"]
        return n, total

    def parquet_columns(self, prefix):
        """What the Parquet objects under `prefix/<db>/` hold, from their footers: {table: {"rows", "objects",
        "bytes", "columns": {column: compressed bytes of its chunks}, "footer": the rest of the object}}."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        client, out = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                table = o["Key"][len(prefix):].split("/")[0]
                body = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                meta = pq.ParquetFile(pa.BufferReader(body)).metadata
                t = out.setdefault(table, {"rows": 0, "objects": 0, "bytes": 0, "row_groups": 0, "columns": {}})
                t["rows"] += meta.num_rows
                t["objects"] += 1
                t["bytes"] += len(body)
                t["row_groups"] += meta.num_row_groups
                for rg in range(meta.num_row_groups):
                    g = meta.row_group(rg)
                    for c in range(g.num_columns):
                        col = g.column(c)
                        t["columns"][col.path_in_schema] = t["columns"].get(col.path_in_schema, 0) + \
                            col.total_compressed_size
        for t in out.values():
            t["footer"] = t["bytes"] - sum(t["columns"].values())
        return out

    def stop(self):
        self.proc.stop(timeout=10)


class S3Env:
    """The server's environment for moto (start_telemark's processes inherit ours): set on enter, restored on exit."""

    def __init__(self, endpoint):
        self.vars = {**KEYS, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}
        self.saved = {}

    def __enter__(self):
        for k, v in self.vars.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- helpers


class Server:
    """One Telemark on the benchmark's data directory and config; `restart()` is SIGTERM and start again."""

    def __init__(self, a, tmp, data, config):
        self.a, self.tmp, self.data, self.config = a, tmp, data, config
        self.starts = 0
        self.p = None
        self.start()

    def start(self):
        self.starts += 1
        t = time.perf_counter()
        self.p, self.http, self.flight = start_telemark(self.a, self.tmp, self.data, config=self.config,
                                                        log_name="telemark.log")
        self.start_s = time.perf_counter() - t

    def stop(self):
        if self.p:
            self.p.stop()
            if self.p.p.returncode not in (0, None):
                log(f"WARNING: telemark exited with {self.p.p.returncode}; see {self.tmp}/telemark.log")
            self.p = None

    def restart(self, drop_disk_cache=False):
        self.stop()
        if drop_disk_cache:
            # The disk cache of cold column chunks survives restarts: a cache-cold run starts without it.
            shutil.rmtree(os.path.join(self.data, "cache"), ignore_errors=True)
        self.start()


def tier_delta(m0, m1):
    return {k.removeprefix("telemark_tier_").removesuffix("_total"): m1.get(k, 0) - m0.get(k, 0) for k in TIER_METRICS}


def first_run(srv, sql):
    """The query's first run on a freshly started server (after a connection and a SELECT 1): (ms, rows, deltas
    of the tier counters), then the server's connection, still open, for more runs."""
    conn = flight_connect(srv.flight)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    m0 = metrics(srv.http)
    t = time.perf_counter()
    cur.execute(sql)
    rows = cur.fetchall()
    ms = (time.perf_counter() - t) * 1000
    return ms, rows, tier_delta(m0, metrics(srv.http)), conn, cur


def check(res, key, msg):
    res["checks"][key] = msg
    if msg != "ok":
        log(f"!!! {key}: {msg}")


def check_answers(res, prefix, ref, got, what):
    for name, msg in same_answers(ref, got, what).items():
        check(res, f"{prefix}: query {name}", msg)


# ---------------------------------------------------------------- run


def run(a, tmp, res):
    # 1. The workload and DuckDB's file.
    lp = os.path.join(tmp, "fleet.lp")
    log(f"generating {a.trucks} trucks × {a.hours:g} h into {lp}")
    generate(a, lp)
    tables, res["lines"], res["sent_values"] = parse_lp(lp)
    os.remove(lp)
    values = res["values"] = sum(len(rows) * len(FIELDS[t]) for t, rows in tables.items())
    res["values_per_table"] = {t: len(rows) * len(FIELDS[t]) for t, rows in tables.items()}
    res["rows"] = {t: len(rows) for t, rows in tables.items()}
    end_ns = max(k[1] for rows in tables.values() for k in rows) + a.interval * 10**9
    fleet = res["fleet"] = next(tags[1] for tags, _ in tables["readings"].values() if tags[0] == "truck_0")
    res["span"] = {"start_ns": START_NS, "end_ns": end_ns}
    age_days = (time.time_ns() - end_ns) / 86_400e9
    if age_days < 2:
        raise RuntimeError(f"the workload ends {age_days:.1f} days ago (clock at {time.ctime()}); "
                           "tiering after 1 day would leave partitions local")
    qs = queries(fleet, START_NS, end_ns)
    res["sql"] = {k: t for k, (t, _) in qs.items()}
    log("DuckDB: loading and querying")
    duck = run_duckdb(a, tmp, tables, qs, res)
    del tables
    res["duckdb_bytes"] = res["disk_bytes"]["DuckDB"]

    # 2. moto and the server's config.
    moto = Moto(a.moto, tmp)
    try:
        moto.client().create_bucket(Bucket=BUCKET)
        tiering = {"after": '"1d"', "background": False}
        if a.cache_bytes is not None:
            tiering["cache_bytes"] = a.cache_bytes
        if a.row_group_rows is not None:
            tiering["row_group_rows"] = a.row_group_rows
        cfg = write_config(os.path.join(tmp, "telemark.toml"), object_store={"url": f'"s3://{BUCKET}/{PREFIX}"'},
                           tiering=tiering, compaction={"background": False})
        res["config"] = open(cfg).read()
        with S3Env(moto.endpoint):
            run_telemark(a, tmp, res, qs, duck, moto, cfg)
    finally:
        moto.stop()


def run_telemark(a, tmp, res, qs, duck, moto, cfg):
    data = os.path.join(tmp, "telemark")
    srv = Server(a, tmp, data, cfg)
    try:
        # 3. Hot.
        log(f"Telemark: loading {a.trucks} trucks × {a.hours:g} h")
        res["ingest"] = lp_load(a, f"http://127.0.0.1:{srv.http}/api/v2/write?bucket=fleet&precision=ns")
        log("Telemark: POST /api/v3/admin/compact")
        res["compaction"] = compact(srv.http)
        hot = res["hot"] = {"storage": storage(srv.http), "metrics": metrics(srv.http)}
        hot["du"] = du(data)
        log(f"hot: {hot['storage']['files']} segment files, {hot['storage']['bytes']:,} bytes; queries")
        with flight_connect(srv.flight) as conn, conn.cursor() as cur:
            fp_hot = fingerprint(cur)
            q_hot = run_queries(cur, qs, a.runs)
        stored = {t: fp_hot[t]["values"]["count(*)"] for t in FIELDS}
        res["telemark_rows"] = stored
        for t, n in stored.items():
            check(res, f"hot: {t} rows", "ok" if n == res["rows"][t] else
                  f"Telemark holds {n} rows, the workload has {res['rows'][t]} distinct rows")
        hot_cold = sum(t.get("cold_files", 0) for t in hot["storage"]["tables"])
        check(res, "hot: nothing tiered before the tier request", "ok" if hot_cold == 0 else
              f"{hot_cold} partitions already in the bucket")
        check_answers(res, "hot vs DuckDB", q_hot, duck, "DuckDB")
        res["result_rows"] = {n: len(r) if not isinstance(r, str) else None for n, (_, r) in q_hot.items()}

        hot_first = {}
        for name, (sql, _) in qs.items():
            srv.restart()
            log(f"hot, first run after a restart: {name}")
            ms, rows, _, conn, cur = first_run(srv, sql)
            cur.close()
            conn.close()
            hot_first[name] = (ms, rows)
        check_answers(res, "hot first run", q_hot, hot_first, "hot first run")

        # 4. Tier.
        log("Telemark: POST /api/v3/admin/tier")
        t = time.perf_counter()
        rep = json.loads(http_post(f"http://127.0.0.1:{srv.http}/api/v3/admin/tier?db=fleet"))
        rep["wall_ms"] = (time.perf_counter() - t) * 1000
        res["tier"] = rep
        cold = res["cold"] = {"storage": storage(srv.http), "metrics": metrics(srv.http)}
        cold["du"] = du(data)
        cold["objects"], cold["bucket_bytes"] = moto.listing(PREFIX + "/")
        log(f"tiered {rep['partitions']} partitions, {rep['rows']:,} rows: {rep['segment_bytes']:,} segment bytes -> "
            f"{rep['object_bytes']:,} object bytes in {rep['wall_ms']:.0f} ms; bucket {cold['objects']} objects, "
            f"{cold['bucket_bytes']:,} bytes")
        check(res, "tier: failures", "ok" if not rep.get("failures") else f"partitions failed: {rep['failures']}")
        total_rows = sum(stored.values())
        check(res, "tier: every row moved", "ok" if rep["rows"] == total_rows else
              f"{rep['rows']:,} rows tiered of {total_rows:,}")
        st = cold["storage"]
        check(res, "tier: no segment file left", "ok" if st["files"] == 0 and st["bytes"] == 0 else
              f"{st['files']} segment files ({st['bytes']:,} bytes) left after tiering")
        cold_bytes = sum(t.get("cold_bytes", 0) for t in st["tables"])
        check(res, "tier: bucket holds the objects", "ok" if cold["bucket_bytes"] == rep["object_bytes"] == cold_bytes
              else f"bucket {cold['bucket_bytes']:,} bytes, tier report {rep['object_bytes']:,}, "
                   f"storage cold_bytes {cold_bytes:,}")
        cold["parquet"] = moto.parquet_columns(f"{PREFIX}/fleet/")
        pq_rows = sum(t["rows"] for t in cold["parquet"].values())
        check(res, "tier: Parquet rows", "ok" if pq_rows == total_rows else
              f"the objects' footers count {pq_rows:,} rows, Telemark held {total_rows:,}")
        with flight_connect(srv.flight) as conn, conn.cursor() as cur:
            fp_cold = fingerprint(cur)
            q_tiered = run_queries(cur, qs, 0)
        for msg in same_contents(checked_values(fp_hot), fp_cold, "after tiering") or ["ok"]:
            check(res, "tier: tables' contents", msg)
        check_answers(res, "after tiering", q_hot, q_tiered, "tiered")

        # 5. Cold, cache cold then warm: a restart before each query.
        q_cold, q_warm, fetched, fetched_warm = {}, {}, {}, {}
        for name, (sql, _) in qs.items():
            srv.restart(drop_disk_cache=True)
            log(f"cold, cache cold then warm: {name}")
            ms, rows, d, conn, cur = first_run(srv, sql)
            try:
                q_cold[name], fetched[name] = (ms, rows), d
                m0 = metrics(srv.http)

                def again(sql=sql):
                    cur.execute(sql)
                    return cur.fetchall()
                q_warm[name] = timed(again, a.runs)
                fetched_warm[name] = tier_delta(m0, metrics(srv.http))
            finally:
                cur.close()
                conn.close()
        cold["local_segments_after_restart"] = storage(srv.http)["files"]
        cold["start_s"] = srv.start_s
        check_answers(res, "cold, cache cold", q_hot, q_cold, "cold (cache cold)")
        check_answers(res, "cold, cache warm", q_hot, q_warm, "cold (cache warm)")
    finally:
        srv.stop()
    res["restarts"] = srv.starts - 1
    res["queries_ms"] = {n: {"hot": q_hot[n][0], "hot_first_run": hot_first[n][0], "cold_cache_cold": q_cold[n][0],
                             "cold_cache_warm": q_warm[n][0], "duckdb": duck[n][0]} for n in qs}
    res["tier_fetches"] = {n: {"cache_cold": fetched[n], "cache_warm": fetched_warm[n]} for n in qs}


# ---------------------------------------------------------------- report


def report(a, res, argv):
    values = res["values"]
    hot, cold, rep = res["hot"], res["cold"], res["tier"]
    hb, duckb = hot["storage"]["bytes"], res["duckdb_bytes"]
    print(f"\n### Tiering: fleet {a.trucks} trucks × {a.hours:g} h every {a.interval} s, seed {a.seed}; "
          f"S3 = moto_server on loopback\n")
    print(f"{sum(res['telemark_rows'].values()):,} rows, {values:,} distinct field values (bytes/value divide by "
          f"these). Hot: after `POST /api/v3/admin/compact` ({hot['storage']['files']} segment files, "
          f"{hot['storage']['partitions']} table partitions of a day). Cold: `POST /api/v3/admin/tier` moved "
          f"{rep['partitions']} partitions, {rep['files']} files, {rep['rows']:,} rows in {rep['wall_ms']:,.0f} ms "
          f"(server {rep['elapsed_ms']:,} ms) to {cold['objects']} Parquet objects. DuckDB: the same rows in its "
          f"own file, after CHECKPOINT.\n")
    print("| | bytes | bytes/value | ÷ hot segments |")
    print("|---|---|---|---|")
    print(f"| hot segment files (`/api/v3/storage`) | {hb:,} | {hb / values:.3f} | 1.00 |")
    ob = rep["object_bytes"]
    print(f"| cold tier: Parquet objects (tier report) | {ob:,} | {ob / values:.3f} | {ratio(ob, hb)} |")
    bb = cold["bucket_bytes"]
    print(f"| cold tier: bucket listing (boto3, {cold['objects']} objects) | {bb:,} | {bb / values:.3f} | "
          f"{ratio(bb, hb)} |")
    print(f"| DuckDB database file | {duckb:,} | {duckb / values:.3f} | {ratio(duckb, hb)} |")
    print(f"| Telemark data directory, hot (segments, WAL, catalog) | {hot['du']:,} | {hot['du'] / values:.3f} | "
          f"{ratio(hot['du'], hb)} |")
    print(f"| Telemark data directory after tiering (cold index, catalog) | {cold['du']:,} | "
          f"{cold['du'] / values:.3f} | {ratio(cold['du'], hb)} |")
    hot_tables = {t["table"]: t for t in hot["storage"]["tables"]}
    for t in cold["storage"]["tables"]:
        v, h, c = res["values_per_table"].get(t["table"]), hot_tables.get(t["table"], {}).get("bytes"), t["cold_bytes"]
        if v and h:
            print(f"| {t['table']}: hot segments → cold Parquet ({v:,} values) | {h:,} → {c:,} | "
                  f"{h / v:.3f} → {c / v:.3f} | {ratio(c, h)} |")

    print("\nBy column: hot segment files (`/api/v3/storage`, per column) and cold Parquet (compressed column chunks, "
          "from the objects' footers). Segments keep a series' tags once (in the overhead row); Parquet has them as "
          "columns.\n")
    print("| table | column | hot bytes | cold bytes | ÷ hot |")
    print("|---|---|---|---|---|")
    for table, fields in FIELDS.items():
        hot_cols = {c["column"]: c["bytes"] for c in hot["storage"]["columns"] if c["table"] == table}
        pq = cold.get("parquet", {}).get(table)
        if not pq:
            continue
        cols = pq["columns"]
        rows = [(c, hot_cols.get(c), cols.get(c)) for c in ["time"] + fields]
        tag_cols = [c for c in cols if c != "time" and c not in fields]
        rows.append((f"tags ({len(tag_cols)} columns)", None, sum(cols[c] for c in tag_cols)))
        rows.append(("overhead (segments: series keys, index; Parquet: footer)", hot_cols.get("(segment overhead)"),
                     pq["footer"]))
        rows.append((f"all ({pq['objects']} objects, {pq['row_groups']} row groups)", sum(hot_cols.values()),
                     pq["bytes"]))
        for c, h, k in rows:
            hot_cell, cold_cell = (f"{x:,}" if x is not None else "—" for x in (h, k))
            print(f"| {table} | {c} | {hot_cell} | {cold_cell} | {ratio(k, h)} |")

    print(f"\nQueries over ADBC Flight SQL (DuckDB in-process, for scale). Hot and cold, cache warm: median of "
          f"{a.runs} runs after a warm-up. First runs: the server restarted before each query (SIGTERM, start on the "
          f"same data directory; {res['restarts']} restarts), then a connection and a `SELECT 1`, then the query "
          f"once — cold, cache cold is that run on the cold tier (empty row-group and disk caches; the local cold index "
          f"stays), hot, first run the same on segment files. Fetched: row groups fetched from the bucket by the "
          f"cache-cold run (decoded MB). Ratios ÷ hot.\n")
    print("| query (rows) | hot (ms) | hot, first run (ms) | cold, cache cold (ms) | ÷ hot | fetched | "
          "cold, cache warm (ms) | ÷ hot | DuckDB (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")

    def cell(x):
        return f"{x:.1f}" if x is not None else "ERROR"
    for name, t in res["queries_ms"].items():
        f, fw = res["tier_fetches"][name]["cache_cold"], res["tier_fetches"][name]["cache_warm"]
        bad = any(v != "ok" for k, v in res["checks"].items() if k.endswith(f"query {name}"))
        warm_fetch = f"; {fw['fetches']:.0f} fetched again" if fw["fetches"] else ""
        print(f"| {name} ({res['result_rows'].get(name)}){' ⚠' if bad else ''} | {cell(t['hot'])} | "
              f"{cell(t['hot_first_run'])} | {cell(t['cold_cache_cold'])} | {ratio(t['cold_cache_cold'], t['hot'])} | "
              f"{f['fetches']:.0f} ({f['fetch_bytes'] / MB:.1f} MB) | {cell(t['cold_cache_warm'])}{warm_fetch} | "
              f"{ratio(t['cold_cache_warm'], t['hot'])} | {cell(t['duckdb'])} |")
    qs = res["queries_ms"].values()
    tot = {k: sum(q[k] for q in qs if q[k] is not None) for k in ("hot", "hot_first_run", "cold_cache_cold",
                                                                   "cold_cache_warm", "duckdb")}
    print(f"| all twelve (sum) | {tot['hot']:.1f} | {tot['hot_first_run']:.1f} | {tot['cold_cache_cold']:.1f} | "
          f"{ratio(tot['cold_cache_cold'], tot['hot'])} | | {tot['cold_cache_warm']:.1f} | "
          f"{ratio(tot['cold_cache_warm'], tot['hot'])} | {tot['duckdb']:.1f} |")
    ok = all(v == "ok" for v in res["checks"].values())
    print("\n" + ("Every row moved, no segment file is left, and the tables' contents and all twelve answers (hot, "
                  "hot first run, right after tiering, cold with the cache cold and warm) are the same, and the "
                  "same as DuckDB's." if ok else "**Answers or contents differ (see the problems below).**"))
    print(f"\nReproduce: `./scripts/bench-tiering.sh{''.join(f' {x}' for x in argv)}`")
    print_problems(res)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trucks", type=int, default=50)
    ap.add_argument("--hours", type=float, default=72)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000, help="lines per load request")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--cache-bytes", type=int, help="[tiering] cache_bytes (default: the server's)")
    ap.add_argument("--row-group-rows", type=int, help="[tiering] row_group_rows (default: the server's)")
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "..", "target", "release"))
    ap.add_argument("--telemark-bin", help="telemark binary (default: BIN_DIR/telemark)")
    ap.add_argument("--moto-bin", help="moto_server (default: beside this Python)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the JSON result here")
    a = ap.parse_args()
    a.telemark = os.path.abspath(a.telemark_bin or os.path.join(a.bin_dir, "telemark"))
    a.fleet_gen = os.path.abspath(os.path.join(a.bin_dir, "telemark-fleet-gen"))
    a.lp_load = os.path.abspath(os.path.join(a.bin_dir, "telemark-lp-load"))
    a.moto = a.moto_bin or os.path.join(os.path.dirname(sys.executable), "moto_server")
    for b in (a.telemark, a.fleet_gen, a.lp_load, a.moto):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary {b}")
    try:
        import boto3  # noqa: F401
        import duckdb  # noqa: F401
    except ImportError as e:
        sys.exit(f"{e}: run with the project's venv (scripts/python-env.sh)")
    shown = []
    for action in ap._actions:
        k = action.dest
        if k in ("help", "bin_dir", "telemark_bin", "moto_bin", "json", "keep"):
            continue
        v, flag = getattr(a, k), action.option_strings[0]
        if k in ("trucks", "hours", "seed", "runs"):
            shown.append(f"{flag} {v:g}" if isinstance(v, float) else f"{flag} {v}")
        elif v != ap.get_default(k):
            shown.append(flag if v is True else f"{flag} {v}")

    # SIGTERM unwinds like Ctrl-C, so the servers and moto are stopped and the temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="telemark-bench-tiering-")
    res = {"spec": {k: v for k, v in vars(a).items() if k not in ("telemark", "fleet_gen", "lp_load", "bin_dir")},
           "checks": {}, "disk_bytes": {}}
    started = time.perf_counter()
    failed = None
    try:
        run(a, tmp, res)
    except Exception as e:
        failed = f"{type(e).__name__}: {e}"
        log(traceback.format_exc().rstrip())
        log(f"!!! FAILED: {failed} (logs in {tmp}{'' if a.keep else ', removed; --keep keeps them'})")
    finally:
        res["seconds"] = time.perf_counter() - started
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        res["error"] = failed
    else:
        report(a, res, shown)
        print(f"\n({res['seconds']:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, default=str)
            f.write("\n")
    if failed:
        return 2
    return 1 if any(v != "ok" for v in res["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
