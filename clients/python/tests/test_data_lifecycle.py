"""Data lifecycle through the real server and real clients: SQL DELETE over
HTTP and ADBC Flight SQL (query and ExecuteUpdate paths), retention rules over
HTTP and in the config file (persisted, enforced by the wall clock), the
compaction endpoint, and a deleted device's marker gone from every byte of the
data directory after compaction."""

import pathlib
import time

import requests

from conftest import ADMIN, FLEET_RW, LAB_RO, connect, token_config

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9


def hdr(token):
    return {"Authorization": f"Bearer {token}"}


def write_lp(server, db, lines, token=ADMIN):
    return requests.post(f"{server.http}/api/v2/write", params={"bucket": db, "org": "any", "precision": "ns"},
                         data="\n".join(lines).encode(), headers=hdr(token), timeout=30)


def sql(server, q, db="fleet", token=ADMIN):
    return requests.post(f"{server.http}/api/v3/query_sql", json={"q": q, "db": db, "format": "json"},
                         headers=hdr(token), timeout=60)


def rows(server, q, db="fleet"):
    r = sql(server, q, db)
    assert r.status_code == 200, r.text
    return r.json()


def compact(server, db="fleet", token=ADMIN):
    r = requests.post(f"{server.http}/api/v3/admin/compact", params={"db": db}, headers=hdr(token), timeout=300)
    return r


def all_files(root):
    return [p for p in pathlib.Path(root).rglob("*") if p.is_file()]


# Every write is flushed to a segment file of its own: many small files to compact.
SMALL_FLUSHES = token_config() + """
[storage]
max_buffer_bytes = 1024
max_buffer_age_secs = 1
[compaction]
background = false
"""


def test_sql_delete_over_http_and_adbc(start_server):
    s = start_server(SMALL_FLUSHES)
    now = time.time_ns()
    lines = [f"readings,name=truck-{d} velocity={i}.5,fuel={i}i {now - i * HOUR}" for d in range(4) for i in range(24)]
    assert write_lp(s, "fleet", lines).status_code == 204
    # HTTP: the answer is the number of rows matched.
    r = sql(s, "DELETE FROM readings WHERE name = 'truck-0'", token=FLEET_RW)
    assert r.status_code == 200, r.text
    assert r.json() == [{"count": 24}]
    # Rows disappear from every query at once.
    assert rows(s, "SELECT count(*) AS n FROM readings WHERE name = 'truck-0'") == [{"n": 0}]
    # A time range keeps the rows outside it.
    r = sql(s, f"DELETE FROM readings WHERE name IN ('truck-1') AND time >= to_timestamp_nanos({now - 5 * HOUR}) "
               f"AND time < to_timestamp_nanos({now + 1})")
    assert r.status_code == 200 and r.json() == [{"count": 6}], r.text
    left = rows(s, "SELECT count(*) AS n FROM readings WHERE name = 'truck-1'")
    assert left == [{"n": 18}], left
    # Write permission is required; a read-only token is refused, and nothing is deleted.
    assert write_lp(s, "lab", [f"other,site=x v=1 {now}"]).status_code == 204
    r = sql(s, "DELETE FROM other WHERE site = 'x'", db="lab", token=LAB_RO)
    assert r.status_code == 403 and "may not write" in r.text, r.text
    assert rows(s, "SELECT count(*) AS n FROM other", db="lab") == [{"n": 1}]
    # Field conditions are refused with a clear error.
    r = sql(s, "DELETE FROM readings WHERE velocity > 3")
    assert r.status_code == 400 and "tags and time only" in r.json()["error"], r.text

    # ADBC Flight SQL, the query path (GetFlightInfo + DoGet): one `count` row.
    with connect(s, database="fleet") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM readings WHERE name = 'truck-2'")
        assert cur.fetchall() == [(24,)]
        cur.execute("SELECT count(*) FROM readings WHERE name = 'truck-2'")
        assert cur.fetchall() == [(0,)]
        # ExecuteUpdate (DoPut CommandStatementUpdate), as JDBC executeUpdate does.
        cur.adbc_statement.set_sql_query(
            f"DELETE FROM readings WHERE name = 'truck-3' AND time < to_timestamp_nanos({now - 11 * HOUR})")
        affected = cur.adbc_statement.execute_update()
        assert affected == 12, affected
        cur.execute("SELECT count(*) FROM readings WHERE name = 'truck-3'")
        assert cur.fetchall() == [(12,)]
    # Rows written after a delete are visible, and everything survives a crash.
    assert write_lp(s, "fleet", [f"readings,name=truck-0 velocity=1.0 {now}"]).status_code == 204
    s.kill()
    s2 = start_server(SMALL_FLUSHES, data_dir=s.data_dir)
    got = rows(s2, "SELECT name, count(*) AS n FROM readings GROUP BY name ORDER BY name")
    assert got == [{"name": "truck-0", "n": 1}, {"name": "truck-1", "n": 18}, {"name": "truck-3", "n": 12}], got


def test_retention_over_http_persists_and_refuses_old_writes(start_server):
    s = start_server(SMALL_FLUSHES)
    now = time.time_ns()
    assert write_lp(s, "fleet", [f"readings,name=a v={d} {now - d * DAY}" for d in range(60)]).status_code == 204
    r = requests.put(f"{s.http}/api/v3/admin/retention", json={"db": "fleet", "keep": "30d"}, headers=hdr(FLEET_RW),
                     timeout=30)
    assert r.status_code == 200 and r.json()["keep"] == "30d", r.text
    # Hidden at once: days 0..29 are kept (day 30 is a hair older than the cutoff).
    assert rows(s, "SELECT count(*) AS n FROM readings") == [{"n": 30}]
    # Writes past retention are refused like any rejected line, and counted.
    r = write_lp(s, "fleet", [f"readings,name=a v=1 {now - 40 * DAY}", f"readings,name=a v=2 {now - HOUR}"])
    assert r.status_code == 400, r.text
    body = r.json()
    assert [x["line"] for x in body["rejected"]] == [1] and "retention" in body["rejected"][0]["message"], body
    assert rows(s, "SELECT count(*) AS n FROM readings") == [{"n": 31}]
    metrics = requests.get(f"{s.http}/metrics", timeout=30).text
    assert "telemark_retention_rows_refused_total 1" in metrics
    # A per-table override; bad input is a clear error; a token without write access is refused.
    r = requests.put(f"{s.http}/api/v3/admin/retention", json={"db": "fleet", "table": "readings", "keep": "7d"},
                     headers=hdr(ADMIN), timeout=30)
    assert r.status_code == 200, r.text
    r = requests.put(f"{s.http}/api/v3/admin/retention", json={"db": "fleet", "keep": "7 parsecs"},
                     headers=hdr(ADMIN), timeout=30)
    assert r.status_code == 400 and "invalid duration" in r.json()["error"], r.text
    r = requests.put(f"{s.http}/api/v3/admin/retention", json={"db": "fleet", "keep": "1d"}, headers=hdr(LAB_RO),
                     timeout=30)
    assert r.status_code == 403, r.text
    # Expired files are dropped by the compaction endpoint's retention pass.
    before = requests.get(f"{s.http}/api/v3/storage", params={"db": "fleet"}, headers=hdr(ADMIN), timeout=30).json()
    report = compact(s).json()
    assert report["files_after"] < before["tables"][0]["files"], (report, before)
    assert rows(s, "SELECT count(*) AS n FROM readings") == [{"n": 8}]
    # Persisted: after a restart the rules are listed and enforced.
    s.stop()
    s2 = start_server(SMALL_FLUSHES, data_dir=s.data_dir)
    listed = requests.get(f"{s2.http}/api/v3/admin/retention", headers=hdr(ADMIN), timeout=30).json()["rules"]
    assert {"db": "fleet", "table": None, "keep": "30d"} in listed, listed
    assert {"db": "fleet", "table": "readings", "keep": "7d"} in listed, listed
    assert rows(s2, "SELECT count(*) AS n FROM readings") == [{"n": 8}]
    # Removing a rule.
    r = requests.put(f"{s2.http}/api/v3/admin/retention", json={"db": "fleet", "table": "readings", "keep": None},
                     headers=hdr(ADMIN), timeout=30)
    assert r.status_code == 200, r.text
    listed = requests.get(f"{s2.http}/api/v3/admin/retention", headers=hdr(ADMIN), timeout=30).json()["rules"]
    assert listed == [{"db": "fleet", "table": None, "keep": "30d"}], listed


def test_retention_from_the_config_file(start_server):
    config = SMALL_FLUSHES + '\n[[retention]]\ndatabase = "fleet"\nkeep = "2d"\n'
    s = start_server(config)
    now = time.time_ns()
    r = write_lp(s, "fleet", [f"readings,name=a v=1 {now - 3 * DAY}", f"readings,name=a v=2 {now - DAY}"])
    assert r.status_code == 400 and "retention" in r.text, r.text
    assert rows(s, "SELECT v FROM readings") == [{"v": 2.0}]
    listed = requests.get(f"{s.http}/api/v3/admin/retention", headers=hdr(ADMIN), timeout=30).json()["rules"]
    assert listed == [{"db": "fleet", "table": None, "keep": "2d"}]


def test_compaction_endpoint_merges_files_and_reports(start_server):
    s = start_server(SMALL_FLUSHES)
    now = time.time_ns() // DAY * DAY
    for batch in range(12):
        lines = [f"readings,name=truck-{d} velocity={batch}.25 {now - HOUR + batch * 1000 + d}" for d in range(50)]
        assert write_lp(s, "fleet", lines).status_code == 204
        time.sleep(0.1)
    expect = rows(s, "SELECT name, count(*) AS n, sum(velocity) AS v FROM readings GROUP BY name ORDER BY name")
    storage = requests.get(f"{s.http}/api/v3/storage", params={"db": "fleet"}, headers=hdr(ADMIN), timeout=30).json()
    [table] = storage["tables"]
    assert table["table"] == "readings" and table["files"] >= 2, storage
    r = compact(s, token=FLEET_RW)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["files_after"] == 1 and report["files_before"] >= table["files"], report
    assert report["bytes_before"] > 0 and report["bytes_after"] > 0 and report["failures"] == [], report
    assert report["tables"] == [{"table": "readings", "files": 1, "bytes": report["bytes_after"], "partitions": 1,
                                 "max_files_per_partition": 1, "cold_files": 0, "cold_bytes": 0}], report
    got = rows(s, "SELECT name, count(*) AS n, sum(velocity) AS v FROM readings GROUP BY name ORDER BY name")
    assert got == expect
    metrics = requests.get(f"{s.http}/metrics", timeout=30).text
    assert "telemark_compactions_total 1" in metrics, metrics
    assert "telemark_partition_files_max 1" in metrics
    # A read-only token may not compact; an unknown database is a 404.
    assert compact(s, db="lab", token=LAB_RO).status_code == 403
    assert compact(s, db="nope").status_code == 404


def test_deleted_device_marker_is_gone_from_every_file_after_compaction(start_server):
    s = start_server(SMALL_FLUSHES)
    now = time.time_ns()
    marker = "gdpr-marker-5b1e9c"
    lines = [f'readings,name=erase-me note="{marker}",v=1 {now - i * HOUR}' for i in range(5)]
    lines += [f'readings,name=keep-me note="ok",v=2 {now - i * HOUR}' for i in range(5)]
    assert write_lp(s, "fleet", lines).status_code == 204
    compact(s)  # flushed and merged: the marker sits in a segment file now
    holding = [p for p in all_files(s.data_dir) if marker.encode() in p.read_bytes()]
    assert holding, "the marker should be readable on disk before the delete (else this test proves nothing)"
    r = sql(s, "DELETE FROM readings WHERE name = 'erase-me'")
    assert r.status_code == 200 and r.json() == [{"count": 5}], r.text
    deletes = requests.get(f"{s.http}/api/v3/admin/deletes", params={"db": "fleet"}, headers=hdr(ADMIN), timeout=30)
    pending = deletes.json()["pending"]
    assert len(pending) == 1 and pending[0]["tags"] == [{"tag": "name", "values": ["erase-me"]}], deletes.text
    report = compact(s).json()
    assert report["failures"] == [], report
    for p in all_files(s.data_dir):
        assert marker.encode() not in p.read_bytes(), f"marker still in {p}"
    deletes = requests.get(f"{s.http}/api/v3/admin/deletes", params={"db": "fleet"}, headers=hdr(ADMIN), timeout=30)
    body = deletes.json()
    assert body["pending"] == [] and len(body["purged"]) == 1, body
    assert body["purged"][0]["purged_at"] >= body["purged"][0]["requested_at"], body
    assert rows(s, "SELECT count(*) AS n FROM readings") == [{"n": 5}]


def test_mqtt_publishers_are_slowed_not_buffered_without_bound_when_flushing_is_slow(start_server):
    """Every flush sleeps 400 ms after writing its files (a slow disk): MQTT devices publish faster than
    that drains. The buffer must stay near `max_buffer_memory` (1 MiB) while ~6 MB arrive, because the
    listener stops reading sockets while writers wait; every acknowledged message still lands."""
    from mqtt_clients import PahoDevice, metric, wait_until

    s = start_server("""
[storage]
max_buffer_bytes = 131072
max_buffer_memory = 1048576
[compaction]
background = false
""", env={"TELEMARK_FAILPOINT": "flush.segments_written=sleep:400"})
    devices, per_device, pad = 4, 1500, "x" * 1000
    pubs = [PahoDevice(s.mqtt, client_id=f"slow-{d}", inflight=100) for d in range(devices)]
    try:
        mids = {d: [] for d in range(devices)}
        for i in range(per_device):
            for d, p in enumerate(pubs):
                payload = f'{{"timestamp": {1_733_000_000 + i}, "seq": {i}, "pad": "{pad}-{d}-{i}"}}'
                mids[d].append(p.publish(f"sensors/slow-{d}/telemetry", payload, qos=1))
        for d, p in enumerate(pubs):
            wait_until(lambda: all(m in p.acked for m in mids[d]), 180, what=f"every PUBACK of device {d}")
            assert all(p.acked[m] < 0x80 for m in mids[d])
    finally:
        for p in pubs:
            p.close()
    total = devices * per_device * 1000
    stalls = metric(s, "telemark_write_stalls_total")
    peak = metric(s, "telemark_buffer_peak_bytes")
    assert stalls > 0, "no writer ever waited although flushing was slower than ingest"
    assert peak <= 2 * 1048576, f"the buffer reached {peak} bytes with a 1 MiB limit ({total} bytes arrived)"
    got = rows(s, "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS k FROM telemetry GROUP BY device_id "
                  "ORDER BY device_id", db="iot")
    assert got == [{"device_id": f"slow-{d}", "n": per_device, "k": per_device} for d in range(devices)]
