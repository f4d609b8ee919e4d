#!/usr/bin/env python3
"""Data-lifecycle benchmark driver (see scripts/bench-lifecycle.sh).

Two phases on a release Telemark, no peers. The workload, loader, queries,
answer comparison and server start are the fleet benchmark's
(benches/fleet/bench_fleet.py), imported, not copied.

1. Small flushes, then compaction. The fleet workload (--trucks x --hours,
   TSBS IoT shape) is loaded over HTTP line protocol into an instance with a
   small write buffer (--buffer-bytes, default 1 MiB) and background
   compaction off, so it lands in many small segment files; SIGTERM flushes
   the rest and the server restarts. Then: files, max files per time
   partition and bytes; the twelve TSBS IoT queries over ADBC Flight SQL
   (median of --runs after a warm-up); `POST /api/v3/admin/compact`, timed,
   with the server's RSS sampled every 10 ms from /proc/PID/status while it
   runs (and VmHWM, reset with /proc/PID/clear_refs just before); files and
   bytes after; the same queries again. The answers after compaction must
   equal the answers before (rows sorted, floats to 1e-9 relative), and so
   must the tables' contents (row counts, distinct tags, sums of every
   numeric column), else the run fails.

2. Write amplification of late rows. A week-long workload (--late-trucks x
   --late-hours) is loaded and compacted to one file per table and daily
   partition. Then --late-fraction extra rows (same series; times uniform
   over the whole span, in whole milliseconds off the 10 s grid, so every
   one is a new row; values within two units of the last decimal of the
   series' values at that time) arrive in --late-batches batches, each
   flushed on its own (max_buffer_age_secs = 1), in three ways:
   - tiered: background compaction on (interval_secs = 1, the server's
     size-tiered policy), waiting until it settles (no new compaction job
     and nothing buffered for --settle-secs);
   - tiered + full: the same instance, then one `POST /api/v3/admin/compact`;
   - full every batch: a copy of the data as it was before the late rows,
     background compaction off, `POST /api/v3/admin/compact` after every
     batch (what a store that always merges whole partitions pays).
   Every variant must hold exactly the old rows plus the late ones (counts and
   sums per table over the whole range) and give the same twelve answers.

Definitions (printed with the table):
- compaction bytes written / read: `telemark_compaction_bytes_total` deltas
  over the phase (the endpoint's `bytes_written` / `bytes_read` for explicit
  compacts); read counts the chunks of the input files (the engine's
  counter; file headers and footers are not in it), written whole files;
- late rows' bytes: segment bytes once fully compacted, after minus before
  the late rows — what the late rows cost at rest, including what the rows
  around them lose in compression;
- write amplification = compaction bytes written / late rows' bytes;
- flush bytes: what the flushes of the late batches wrote (segment bytes
  after each flush minus before, in the full-every-batch run, where no
  background job runs in between; the batches and flushes are the same in
  the tiered run).
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "fleet"))
from benchlib import du  # noqa: E402
from bench_fleet import (  # noqa: E402
    FIELDS, INT_FIELDS, NUMERIC_TAGS, START_NS, compare, fingerprint, flight_connect, generate, http_get, lp_load,
    queries, same_value, start_telemark, timed)

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

MB = 1e6
MIB = 1 << 20
MS = 10**6


def log(msg):
    print(f"[bench-lifecycle] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- server helpers


def write_config(path, **sections):
    """A TOML file with one table per keyword: write_config(p, storage={...}, compaction={...})."""
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    with open(path, "w") as f:
        for name, kv in sections.items():
            f.write(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in kv.items()) + "\n")
    return path


def http_post(url, body=b"", timeout=3600):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"POST {url} -> HTTP {e.code}: {e.read().decode(errors='replace')[:2000]}") from None


def metrics(http):
    """`telemark_*` samples of /metrics: name (labels included) -> float."""
    out = {}
    for line in http_get(f"http://127.0.0.1:{http}/metrics").decode().splitlines():
        parts = line.split()
        if line.startswith("telemark_") and len(parts) == 2:
            out[parts[0]] = float(parts[1])
    return out


def storage(http):
    """Segment files of the fleet database: totals over its tables, and the tables."""
    st = json.loads(http_get(f"http://127.0.0.1:{http}/api/v3/storage?db=fleet"))
    tables = st["tables"]
    return {"files": sum(t["files"] for t in tables), "bytes": sum(t["bytes"] for t in tables),
            "partitions": sum(t["partitions"] for t in tables),
            "max_files_per_partition": max((t["max_files_per_partition"] for t in tables), default=0),
            "tables": tables, "columns": st["columns"]}


def compact(http):
    """POST /api/v3/admin/compact?db=fleet; the report, with the client's wall time."""
    t = time.perf_counter()
    rep = json.loads(http_post(f"http://127.0.0.1:{http}/api/v3/admin/compact?db=fleet"))
    rep["wall_ms"] = (time.perf_counter() - t) * 1000
    if rep.get("failures"):
        raise RuntimeError(f"compaction jobs failed: {rep['failures']}")
    return rep


def write_lines(http, lines):
    http_post(f"http://127.0.0.1:{http}/api/v2/write?bucket=fleet&precision=ns", "".join(lines).encode())


def wait_until(cond, what, timeout=120, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def settle(http, quiet_secs, timeout=600):
    """Waits until nothing is buffered and no compaction job has finished (or run) for `quiet_secs`."""
    t0 = time.perf_counter()
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        m = metrics(http)
        key = (m.get("telemark_compactions_total"), m.get("telemark_compaction_seconds_total"),
               m.get("telemark_segments"), m.get("telemark_buffer_rows"))
        if key != last:
            last, since = key, time.time()
        elif m.get("telemark_buffer_rows", 0) == 0 and time.time() - since >= quiet_secs:
            return time.perf_counter() - t0 - quiet_secs
        time.sleep(0.2)
    raise RuntimeError(f"background compaction did not settle within {timeout} s")


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def reset_hwm(pid):
    """Resets the kernel's peak-RSS mark (VmHWM) of the process; False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Samples VmRSS of `pid` every `period` seconds until stopped."""

    def __init__(self, pid, period=0.01):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak, self.samples = 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
                self.samples += 1
            except (OSError, KeyError):
                return
            self.done.wait(self.period)

    def stop(self):
        self.done.set()
        self.join()


# ---------------------------------------------------------------- queries


def workload_span(cur, interval):
    """(truck_0's fleet, end of the data in ns) of the loaded workload, as the fleet bench derives them."""
    import pyarrow as pa
    cur.execute("SELECT fleet FROM readings WHERE name = 'truck_0' LIMIT 1")
    fleet = cur.fetchone()[0]
    ends = []
    for table in FIELDS:
        cur.execute(f"SELECT max(time) AS t FROM {table}")
        ends.append(cur.fetch_arrow_table().column("t").cast(pa.int64())[0].as_py())
    return fleet, max(ends) + interval * 10**9


def run_queries(cur, qs, runs):
    """name -> (median ms or None, rows or error); runs = 0 runs each query once, untimed."""
    out = {}
    for name, (sql, _) in qs.items():
        def run(sql=sql):
            cur.execute(sql)
            return cur.fetchall()
        try:
            out[name] = timed(run, runs) if runs else (None, run())
        except Exception as e:
            out[name] = (None, f"ERROR: {str(e).splitlines()[0][:500]}")
            log(f"!!! query {name} failed: {out[name][1]}")
    return out


def same_answers(ref, got, what):
    """name -> 'ok' or what differs, for two run_queries results."""
    checks = {}
    for name, (_, rows) in ref.items():
        other = got[name][1]
        if isinstance(rows, str) or isinstance(other, str):
            checks[name] = f"query error: {rows if isinstance(rows, str) else other}"
            continue
        msg = compare(rows, other)
        checks[name] = "ok" if msg is None else (
            msg.replace("Telemark returned", "reference returned").replace("Telemark row", "reference row")
            .replace("DuckDB", what))
    return checks


def same_contents(expected, fp, what):
    """Problems where fingerprint `fp` differs from `expected` ({table: {expr: value}}) in the given expressions."""
    bad = []
    for table, values in expected.items():
        for k, v in values.items():
            got = fp[table]["values"].get(k)
            if not same_value(v, got):
                bad.append(f"{what}: {table} {k} is {got}, expected {v}")
    return bad


def range_problems(cur, start_ns, end_ns, expected, what):
    """Problems where count(*) with a time predicate over the whole span differs from the expected counts."""
    bad = []
    for table in FIELDS:
        cur.execute(f"SELECT count(*) FROM {table} WHERE time >= to_timestamp_nanos({start_ns}) "
                    f"AND time < to_timestamp_nanos({end_ns})")
        got = cur.fetchone()[0]
        if got != expected[table]["count(*)"]:
            bad.append(f"{what}: {table} has {got} rows in [start, end), expected {expected[table]['count(*)']}")
    return bad


def checked_values(fp):
    """The fingerprint values a compaction must keep: everything but min/max time (Python datetimes)."""
    return {t: {k: v for k, v in fp[t]["values"].items() if not k.startswith(("min(", "max("))} for t in fp}


# ---------------------------------------------------------------- phase 1


def phase_compaction(a, tmp, res):
    out = res["compaction"] = {}
    data = os.path.join(tmp, "small-flushes")
    cfg = write_config(os.path.join(tmp, "small-flushes.toml"),
                       storage={"max_buffer_bytes": a.buffer_bytes}, compaction={"background": False})
    p, http, _ = start_telemark(a, tmp, data, config=cfg, log_name="small-flushes-load.log")
    try:
        log(f"phase 1: loading {a.trucks} trucks × {a.hours:g} h with max_buffer_bytes = {a.buffer_bytes}")
        out["ingest"] = lp_load(a, f"http://127.0.0.1:{http}/api/v2/write?bucket=fleet&precision=ns")
        out["flushes_during_load"] = metrics(http).get("telemark_flushes_total")
    finally:
        p.stop()
    p, http, flight = start_telemark(a, tmp, data, config=cfg, log_name="small-flushes.log")
    pid = p.p.pid
    try:
        out["before"] = storage(http)
        out["before"]["du"] = du(data)
        log(f"phase 1: {out['before']['files']} files, {out['before']['bytes']:,} bytes; queries before compaction")
        with flight_connect(flight) as conn, conn.cursor() as cur:
            fleet, end_ns = workload_span(cur, a.interval)
            qs = queries(fleet, START_NS, end_ns)
            fp_before = fingerprint(cur)
            q_before = run_queries(cur, qs, a.runs)

            rss_before = proc_status(pid)
            hwm_reset = reset_hwm(pid)
            sampler = RssSampler(pid)
            sampler.start()
            try:
                log("phase 1: POST /api/v3/admin/compact")
                rep = compact(http)
            finally:
                sampler.stop()
            rss_after = proc_status(pid)
            out["report"] = rep
            out["rss"] = {"before": rss_before["VmRSS"], "hwm_before": rss_before["VmHWM"],
                          "peak_sampled": sampler.peak, "samples": sampler.samples, "after": rss_after["VmRSS"],
                          "hwm_during": rss_after["VmHWM"] if hwm_reset else None}
            out["after"] = storage(http)
            out["after"]["du"] = du(data)
            log(f"phase 1: {out['after']['files']} files, {out['after']['bytes']:,} bytes; queries after compaction")
            fp_after = fingerprint(cur)
            q_after = run_queries(cur, qs, a.runs)
    finally:
        p.stop()
    out["rows"] = {t: fp_before[t]["values"]["count(*)"] for t in FIELDS}
    out["queries_ms"] = {n: {"before": q_before[n][0], "after": q_after[n][0]} for n in qs}
    out["result_rows"] = {n: len(r) if not isinstance(r, str) else None for n, (_, r) in q_after.items()}
    checks = {f"query {k}": v for k, v in same_answers(q_before, q_after, "after compaction").items()}
    bad = same_contents(checked_values(fp_before), fp_after, "after compaction")
    checks["table contents"] = "ok" if not bad else "; ".join(bad)
    res["checks"].update({f"phase 1 {k}": v for k, v in checks.items()})


# ---------------------------------------------------------------- phase 2


def nudge(fields, rng):
    """New values near the old ones: each float field moved by up to two units of its last decimal."""
    out = []
    for kv in fields.split(","):
        k, v = kv.split("=", 1)
        if v.endswith("i"):
            out.append(kv)
            continue
        d = len(v.split(".", 1)[1]) if "." in v else 0
        out.append(f"{k}={float(v) + rng.randint(-2, 2) / 10**d:.{d}f}")
    return ",".join(out)


def make_late_rows(b, tmp, fraction, seed):
    """Late rows for workload `b`: for about `fraction` of its lines, drawn at random (so series and times are
    spread as the workload's), a row of the same series at a random millisecond between that line's time and
    the next interval's, never on the grid (so each is a new row), with values near the line's (see `nudge`).
    Returns (lines, expected additions per table: count and sums)."""
    src = os.path.join(tmp, "late-source.lp")
    generate(b, src)
    rng = random.Random(seed)
    step = b.interval * 10**9
    lines, seen = [], set()
    added = {t: {"count(*)": 0} for t in FIELDS}
    with open(src) as f:
        for line in f:
            if not line.strip() or rng.random() >= fraction:
                continue
            head, fields, ts = line.split(" ")
            while True:
                t = int(ts) + rng.randrange(1, step // MS) * MS
                if (head, t) not in seen:
                    break
            seen.add((head, t))
            fields = nudge(fields, rng)
            lines.append(f"{head} {fields} {t}\n")
            acc = added[head.split(",", 1)[0]]
            acc["count(*)"] += 1
            tags = dict(kv.split("=", 1) for kv in head.split(",")[1:])
            for tag in NUMERIC_TAGS:
                k = f"sum(CAST({tag} AS DOUBLE))"
                acc[k] = acc.get(k, 0.0) + float(tags[tag])
            for kv in fields.split(","):
                k, v = kv.split("=", 1)
                acc[f"sum({k})"] = acc.get(f"sum({k})", 0) + (int(v[:-1]) if k in INT_FIELDS else float(v))
    os.remove(src)
    rng.shuffle(lines)
    return lines, added


def expected_after_late(base, added):
    exp = {}
    for table, values in base.items():
        exp[table] = dict(values)
        for k, v in added[table].items():
            exp[table][k] = (exp[table][k] or 0) + v
    return exp


def compaction_delta(m0, m1):
    def d(k):
        return m1.get(k, 0) - m0.get(k, 0)
    return {"jobs": d("telemark_compactions_total"),
            "bytes_read": d('telemark_compaction_bytes_total{direction="read"}'),
            "bytes_written": d('telemark_compaction_bytes_total{direction="written"}'),
            "seconds": d("telemark_compaction_seconds_total"),
            "flushes": d("telemark_flushes_total")}


def phase_late(a, tmp, res):
    out = res["late"] = {}
    b = argparse.Namespace(**vars(a))
    b.trucks, b.hours = a.late_trucks, a.late_hours
    data = os.path.join(tmp, "late")
    cfg_load = write_config(os.path.join(tmp, "late-load.toml"), compaction={"background": False})
    p, http, flight = start_telemark(a, tmp, data, config=cfg_load, log_name="late-load.log")
    try:
        log(f"phase 2: loading {b.trucks} trucks × {b.hours:g} h, compacting to one file per partition")
        out["ingest"] = lp_load(b, f"http://127.0.0.1:{http}/api/v2/write?bucket=fleet&precision=ns")
        out["initial_compaction"] = compact(http)
        out["base"] = storage(http)
        with flight_connect(flight) as conn, conn.cursor() as cur:
            fleet, end_ns = workload_span(cur, b.interval)
            base_fp = fingerprint(cur)
    finally:
        p.stop()
    if out["base"]["max_files_per_partition"] != 1:
        log(f"WARNING: {out['base']['max_files_per_partition']} files in a partition after the initial compaction")
    qs = queries(fleet, START_NS, end_ns)
    base = checked_values(base_fp)
    out["rows_before"] = {t: base[t]["count(*)"] for t in FIELDS}
    lines, added = make_late_rows(b, tmp, a.late_fraction, a.seed + 1)
    out["late_rows"] = len(lines)
    out["late_rows_per_table"] = {t: added[t]["count(*)"] for t in FIELDS}
    out["late_values"] = sum(added[t]["count(*)"] * len(FIELDS[t]) for t in FIELDS)
    expected = expected_after_late(base, added)

    def problems(cur, what):
        return (same_contents(expected, fingerprint(cur), what)
                + range_problems(cur, START_NS, end_ns, expected, what))

    n = max(1, a.late_batches)
    batches = [lines[i * len(lines) // n:(i + 1) * len(lines) // n] for i in range(n)]
    full_data = os.path.join(tmp, "late-full-every-batch")
    shutil.copytree(data, full_data)
    storage_cfg = {"max_buffer_bytes": a.late_buffer_bytes, "max_buffer_age_secs": 1}

    # Tiered background compaction, then one full compaction.
    cfg = write_config(os.path.join(tmp, "late-tiered.toml"), storage=storage_cfg,
                       compaction={"background": True, "interval_secs": 1})
    p, http, flight = start_telemark(a, tmp, data, config=cfg, log_name="late-tiered.log")
    answers = {}
    try:
        m0 = metrics(http)
        log(f"phase 2 (tiered): {len(lines):,} late rows in {n} batches, background compaction on")
        t = time.perf_counter()
        for batch in batches:
            write_lines(http, batch)
            wait_until(lambda: metrics(http).get("telemark_buffer_rows", 1) == 0, "the late batch to flush")
        load_s = time.perf_counter() - t
        settle_s = settle(http, a.settle_secs)
        m1 = metrics(http)
        tiered = out["tiered"] = compaction_delta(m0, m1)
        tiered.update(load_s=load_s, settle_s=settle_s, storage=storage(http))
        log(f"phase 2 (tiered): settled after {settle_s:.1f} s: {tiered['jobs']:.0f} jobs, "
            f"{tiered['bytes_written']:,.0f} bytes written; then POST compact")
        with flight_connect(flight) as conn, conn.cursor() as cur:
            tiered["fingerprint_problems"] = problems(cur, "tiered")
            answers["tiered"] = run_queries(cur, qs, 0)
            rep = compact(http)
            full = out["tiered_then_full"] = {"report": rep, "storage": storage(http)}
            full["fingerprint_problems"] = problems(cur, "tiered + full")
            answers["tiered + full"] = run_queries(cur, qs, 0)
    finally:
        p.stop()

    # A full compaction after every batch, on a copy of the data from before the late rows.
    cfg = write_config(os.path.join(tmp, "late-full.toml"), storage=storage_cfg, compaction={"background": False})
    p, http, flight = start_telemark(a, tmp, full_data, config=cfg, log_name="late-full.log")
    try:
        log(f"phase 2 (full every batch): {n} batches, POST compact after each")
        every = out["full_every_batch"] = {"bytes_read": 0, "bytes_written": 0, "jobs": 0, "elapsed_ms": 0,
                                           "flush_bytes": 0}
        m0 = metrics(http)
        for batch in batches:
            stored = storage(http)["bytes"]
            write_lines(http, batch)
            wait_until(lambda: metrics(http).get("telemark_buffer_rows", 1) == 0, "the late batch to flush")
            every["flush_bytes"] += storage(http)["bytes"] - stored
            rep = compact(http)
            for k in ("bytes_read", "bytes_written", "jobs", "elapsed_ms"):
                every[k] += rep[k]
        every["flushes"] = compaction_delta(m0, metrics(http))["flushes"]
        every["storage"] = storage(http)
        with flight_connect(flight) as conn, conn.cursor() as cur:
            every["fingerprint_problems"] = problems(cur, "full every batch")
            answers["full every batch"] = run_queries(cur, qs, 0)
    finally:
        p.stop()

    base_bytes = out["base"]["bytes"]
    out["late_bytes"] = out["tiered_then_full"]["storage"]["bytes"] - base_bytes
    out["late_bytes_full_every_batch"] = every["storage"]["bytes"] - base_bytes
    checks = res["checks"]
    for name, v in (("tiered", tiered), ("tiered + full", full), ("full every batch", every)):
        checks[f"phase 2 {name}: rows and sums"] = "ok" if not v["fingerprint_problems"] else "; ".join(
            v["fingerprint_problems"])
    for name in ("tiered + full", "full every batch"):
        for q, msg in same_answers(answers["tiered"], answers[name], name).items():
            checks[f"phase 2 {name}: query {q}"] = msg
    out["result_rows"] = {q: len(r) if not isinstance(r, str) else None for q, (_, r) in answers["tiered"].items()}


# ---------------------------------------------------------------- report


def fmt_bytes(n):
    return f"{n / MB:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def ratio(x, y):
    return f"{x / y:.2f}" if x and y else "—"


def report(a, res, argv):
    c, late = res.get("compaction"), res.get("late")
    cmd = "./scripts/bench-lifecycle.sh" + "".join(f" {x}" for x in argv)
    if c:
        rep, before, after, rss = c["report"], c["before"], c["after"], c["rss"]
        elapsed_s = (rep["elapsed_ms"] or rep["wall_ms"]) / 1000
        print(f"\n### Lifecycle 1: small flushes, then `POST /api/v3/admin/compact` "
              f"({a.trucks} trucks × {a.hours:g} h every {a.interval} s, seed {a.seed})\n")
        print(f"{sum(c['rows'].values()):,} rows loaded over HTTP line protocol "
              f"({c['ingest'].get('values_per_sec', 0) / 1e6:.2f} M field values/s) into a server with "
              f"`max_buffer_bytes = {a.buffer_bytes}` and background compaction off "
              f"({c['flushes_during_load']:.0f} flushes during the load, then one at shutdown). "
              f"Queries over ADBC Flight SQL, median of {a.runs} runs after a warm-up.\n")
        print("| | before compaction | after compaction |")
        print("|---|---|---|")
        print(f"| segment files (partitions; most files in one) | {before['files']:,} ({before['partitions']}; "
              f"{before['max_files_per_partition']}) | {after['files']:,} ({after['partitions']}; "
              f"{after['max_files_per_partition']}) |")
        print(f"| segment bytes | {before['bytes']:,} | {after['bytes']:,} "
              f"({ratio(after['bytes'], before['bytes'])}×) |")
        print(f"| data directory bytes | {before['du']:,} | {after['du']:,} |")
        print(f"| compaction: jobs, time (server; client wall) | | {rep['jobs']} jobs, {rep['elapsed_ms']} ms; "
              f"{rep['wall_ms']:.0f} ms |")
        print(f"| compaction: read (chunks of the inputs), written | | {fmt_bytes(rep['bytes_read'])} at "
              f"{rep['bytes_read'] / MB / elapsed_s:.1f} MB/s, {fmt_bytes(rep['bytes_written'])} at "
              f"{rep['bytes_written'] / MB / elapsed_s:.1f} MB/s |")
        hwm = f"; VmHWM {rss['hwm_during'] / MIB:.1f}" if rss["hwm_during"] else ""
        print(f"| server RSS, MiB | {rss['before'] / MIB:.1f} (VmHWM so far {rss['hwm_before'] / MIB:.1f}) | "
              f"peak {rss['peak_sampled'] / MIB:.1f} during compaction ({rss['samples']} samples{hwm}); "
              f"{rss['after'] / MIB:.1f} after |")
        for name, t in c["queries_ms"].items():
            b, f = t["before"], t["after"]
            cell_b = f"{b:.1f}" if b is not None else "ERROR"
            cell_f = f"{f:.1f} ({ratio(f, b)}×)" if f is not None else "ERROR"
            flag = "" if res["checks"].get(f"phase 1 query {name}") == "ok" else " ⚠"
            print(f"| {name} (ms, {c['result_rows'].get(name)} rows){flag} | {cell_b} | {cell_f} |")
        same = all(v == "ok" for k, v in res["checks"].items() if k.startswith("phase 1"))
        print("\n" + ("All twelve answers and the tables' contents (rows, distinct tags, sums of every numeric column) "
                      "are the same after compaction as before." if same else
                      "**Answers or contents differ after compaction (see the problems below).**"))
    if late:
        tiered, full, every = late["tiered"], late["tiered_then_full"], late["full_every_batch"]
        lb, rows, vals = late["late_bytes"], late["late_rows"], late["late_values"]
        frep = full["report"]
        print(f"\n### Lifecycle 2: late rows into compacted partitions ({a.late_trucks} trucks × {a.late_hours:g} h, "
              f"{late['base']['partitions']} table partitions of a day, one file each)\n")
        print(f"{sum(late['rows_before'].values()):,} rows compacted to {late['base']['files']} files "
              f"({late['base']['bytes']:,} bytes); then {rows:,} late rows "
              f"({rows / sum(late['rows_before'].values()):.2%}, "
              f"{vals:,} field values; same series, times uniform over the span, whole milliseconds off the 10 s "
              f"grid, so all new rows; values near the series' values then) in "
              f"{a.late_batches} batches, each flushed on its own. Late rows' bytes = segment bytes once fully "
              f"compacted, after minus before: {lb:,} ({lb / rows:.1f} per row; this includes what the rows around "
              f"them lose in compression, e.g. timestamps no longer on a grid). Write amplification = compaction bytes "
              f"written ÷ late rows' bytes.\n")
        print("| | tiered (background, interval 1 s) | tiered, then one full compact | full compact after every batch |")
        print("|---|---|---|---|")
        wr = [tiered["bytes_written"], tiered["bytes_written"] + frep["bytes_written"], every["bytes_written"]]
        rd = [tiered["bytes_read"], tiered["bytes_read"] + frep["bytes_read"], every["bytes_read"]]
        print(f"| compaction jobs | {tiered['jobs']:.0f} | {tiered['jobs']:.0f} + {frep['jobs']} | {every['jobs']} |")
        print("| compaction bytes read (chunks of the inputs) | " + " | ".join(f"{x:,.0f}" for x in rd) + " |")
        print("| compaction bytes written | " + " | ".join(f"{x:,.0f}" for x in wr) + " |")
        print("| bytes written per late row | " + " | ".join(f"{x / rows:,.1f}" for x in wr) + " |")
        print("| write amplification (written ÷ late rows' bytes) | " + " | ".join(
            f"{x / lb:.1f}" for x in wr) + " |")
        sts = [tiered["storage"], full["storage"], every["storage"]]
        print("| files at the end (most in one partition) | " + " | ".join(
            f"{s['files']} ({s['max_files_per_partition']})" for s in sts) + " |")
        print("| segment bytes at the end | " + " | ".join(f"{s['bytes']:,}" for s in sts) + " |")
        print(f"| flushes of the late rows | {tiered['flushes']:.0f} | | {every['flushes']:.0f} |")
        fb = every["flush_bytes"]
        print(f"| bytes the flushes of the late rows wrote (measured in the last run; same batches) | {fb:,} | "
              f"{fb:,} | {fb:,} |")
        print("| (flush + compaction bytes written) ÷ late rows' bytes | " + " | ".join(
            f"{(fb + x) / lb:.1f}" for x in wr) + " |")
        ms = [tiered["seconds"] * 1000, tiered["seconds"] * 1000 + frep["elapsed_ms"], every["elapsed_ms"]]
        print("| time in compaction jobs (server), ms | " + " | ".join(f"{x:,.0f}" for x in ms) + " |")
        counts = all(v == "ok" for k, v in res["checks"].items() if k.startswith("phase 2"))
        print("\n" + (f"Every variant holds the {sum(late['rows_before'].values()):,} old rows plus the {rows:,} late "
                      "ones (counts and sums of every column over the whole range) and gives the same twelve answers."
                      if counts else "**A variant lost or changed rows (see the problems below).**"))
    print(f"\nReproduce: `{cmd}`")
    print_problems(res)


def print_problems(res):
    """Lists the checks that failed, under a **Problems:** heading (nothing if all passed)."""
    bad = {k: v for k, v in res["checks"].items() if v != "ok"}
    if bad:
        print("\n**Problems:**\n")
        for k, v in bad.items():
            print(f"- {k}: {v}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trucks", type=int, default=50, help="phase 1 trucks")
    ap.add_argument("--hours", type=float, default=48, help="phase 1 hours")
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000, help="lines per load request")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--buffer-bytes", type=int, default=MIB, help="phase 1 max_buffer_bytes")
    ap.add_argument("--late-trucks", type=int, default=20, help="phase 2 trucks")
    ap.add_argument("--late-hours", type=float, default=168, help="phase 2 hours")
    ap.add_argument("--late-fraction", type=float, default=0.01, help="late rows, as a fraction of the rows")
    ap.add_argument("--late-batches", type=int, default=10)
    ap.add_argument("--late-buffer-bytes", type=int, default=MIB, help="phase 2 max_buffer_bytes")
    ap.add_argument("--settle-secs", type=float, default=5, help="quiet time that counts as settled")
    ap.add_argument("--skip-compaction", action="store_true", help="phase 2 only")
    ap.add_argument("--skip-late", action="store_true", help="phase 1 only")
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "..", "target", "release"))
    ap.add_argument("--telemark-bin", help="telemark binary (default: BIN_DIR/telemark)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the JSON result here")
    a = ap.parse_args()
    a.telemark = os.path.abspath(a.telemark_bin or os.path.join(a.bin_dir, "telemark"))
    a.fleet_gen = os.path.abspath(os.path.join(a.bin_dir, "telemark-fleet-gen"))
    a.lp_load = os.path.abspath(os.path.join(a.bin_dir, "telemark-lp-load"))
    for b in (a.telemark, a.fleet_gen, a.lp_load):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary {b}")
    # The reproduce line: the workload spelled out, other options where they differ from the defaults.
    shown = []
    for action in ap._actions:
        k = action.dest
        if k in ("help", "bin_dir", "telemark_bin", "json", "keep"):
            continue
        v, flag = getattr(a, k), action.option_strings[0]
        if k in ("trucks", "hours", "seed", "runs", "late_trucks", "late_hours", "late_fraction", "late_batches"):
            shown.append(f"{flag} {v:g}" if isinstance(v, float) else f"{flag} {v}")
        elif v != ap.get_default(k):
            shown.append(flag if v is True else f"{flag} {v}")

    tmp = tempfile.mkdtemp(prefix="telemark-bench-lifecycle-")
    res = {"spec": {k: v for k, v in vars(a).items() if k not in ("telemark", "fleet_gen", "lp_load", "bin_dir")},
           "checks": {}}
    started = time.perf_counter()
    try:
        if not a.skip_compaction:
            phase_compaction(a, tmp, res)
        if not a.skip_late:
            phase_late(a, tmp, res)
    finally:
        res["seconds"] = time.perf_counter() - started
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for k, v in res["checks"].items():
        if v != "ok":
            log(f"!!! {k}: {v}")
    report(a, res, shown)
    print(f"\n({res['seconds']:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, default=str)
            f.write("\n")
    return 1 if any(v != "ok" for v in res["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
