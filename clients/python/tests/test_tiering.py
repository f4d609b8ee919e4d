"""Tiering to a real S3-compatible server (moto_server, started here with dummy keys): old partitions
move to the bucket as Parquet through `POST /api/v3/admin/tier`, SQL answers the same before and after
and after a restart, the local segment files are gone, and pyarrow and DuckDB read downloaded copies
of the objects and agree with Telemark. A bucket that does not exist is a clear startup error."""

import pathlib
import socket
import subprocess
import sys
import threading
import time

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest
import requests

from conftest import Server

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(log):
    """moto_server on a free loopback port, or None if it exits before answering."""
    port = free_port()
    exe = pathlib.Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                            env={**KEYS, "PATH": "/usr/bin:/bin"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            # The first request imports moto's backends: seconds on a busy machine.
            requests.get(url, timeout=15)
            return proc, url
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    proc.kill()
    proc.wait()
    return None


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto_server with dummy keys; three tries (a free port can be taken between finding and binding it)."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "w") as log:
        for _ in range(3):
            started = start_moto(log)
            if started:
                break
        else:
            raise RuntimeError(f"moto_server did not start:\n{log_path.read_text()}")
        proc, url = started
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def env_for(endpoint):
    return {**KEYS, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}


CONFIG = """
[tiering]
after = "7d"
background = false
[compaction]
background = false
"""


def sql(server, q, db="fleet"):
    r = requests.post(f"{server.http}/api/v3/query_sql", json={"q": q, "db": db, "format": "json"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


SUMMARY = ("SELECT name, count(*) AS n, sum(fuel) AS fuel, min(CAST(time AS BIGINT)) AS t0, "
           "max(CAST(time AS BIGINT)) AS t1 FROM readings GROUP BY name ORDER BY name")


def test_old_partitions_tier_to_s3_and_read_back_the_same(start_server, moto, tmp_path):
    bucket = "telemark-tier-1"
    client = s3(moto)
    client.create_bucket(Bucket=bucket)
    s = start_server(CONFIG, extra_args=("--object-store", f"s3://{bucket}/prod"), env=env_for(moto))
    today = time.time_ns() // DAY * DAY
    lines = [f"readings,name=truck-{d},fleet=east fuel={d * 1000 + h}.5,velocity={h % 90}i {today - 20 * DAY + h * HOUR}"
             for d in range(3) for h in range(20 * 24)]
    r = requests.post(f"{s.http}/api/v2/write", params={"bucket": "fleet", "precision": "ns"},
                      data="\n".join(lines).encode(), timeout=60)
    assert r.status_code == 204, r.text
    before = sql(s, SUMMARY)
    # Compaction flushes: one file per day.
    r = requests.post(f"{s.http}/api/v3/admin/compact", params={"db": "fleet"}, timeout=300)
    assert r.status_code == 200, r.text
    files_before = len(list((s.data_dir / "segments").glob("*.tms")))
    assert files_before == 20, files_before

    r = requests.post(f"{s.http}/api/v3/admin/tier", params={"db": "fleet"}, timeout=300)
    assert r.status_code == 200, r.text
    report = r.json()
    # Days that ended more than 7 days ago: 20 - 7 = 13 whole days (give or take the partition the cut falls in).
    assert 12 <= report["partitions"] <= 13, report
    assert report["failures"] == [] and report["rows"] == report["partitions"] * 24 * 3, report
    assert sql(s, SUMMARY) == before, "answers changed after tiering"
    files_after = len(list((s.data_dir / "segments").glob("*.tms")))
    assert files_after == files_before - report["partitions"], (files_before, files_after, report)

    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="prod/fleet/readings/")["Contents"]]
    assert len(objects) == report["partitions"], objects
    assert all(k.endswith(".parquet") and "/date=" in k for k in objects), objects

    # Downloaded copies: pyarrow and DuckDB read them and agree with Telemark on the tiered range.
    local = tmp_path / "copy"
    for k in objects:
        dest = local / k.removeprefix("prod/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, k, str(dest))
    first = pq.ParquetFile(next(local.rglob("*.parquet")))
    schema = first.schema_arrow
    assert str(schema.field("time").type) == "timestamp[ns, tz=UTC]", schema
    assert str(schema.field("fuel").type) == "double" and str(schema.field("velocity").type) == "int64", schema
    stats = first.metadata.row_group(0).column(0).statistics
    assert stats is not None and stats.has_min_max, "no time statistics"
    cold_end = max(pq.read_table(p).column("time").cast("int64").to_pylist()[-1] for p in local.rglob("*.parquet"))
    want = sql(s, "SELECT name, count(*) AS n, sum(fuel) AS fuel FROM readings "
                  f"WHERE CAST(time AS BIGINT) <= {cold_end} GROUP BY name ORDER BY name")
    con = duckdb.connect()
    got = con.execute(
        f"SELECT name, count(*) AS n, sum(fuel) AS fuel FROM read_parquet('{local}/fleet/readings/*/*.parquet', "
        "hive_partitioning=true) GROUP BY name ORDER BY name").fetchall()
    assert [(w["name"], w["n"], w["fuel"]) for w in want] == got
    table = pq.read_table(local / "fleet" / "readings")
    assert table.num_rows == sum(w["n"] for w in want)

    # A late row into a tiered day wins over the cold one; a restart answers the same.
    late_t = today - 19 * DAY
    r = requests.post(f"{s.http}/api/v2/write", params={"bucket": "fleet", "precision": "ns"},
                      data=f"readings,name=truck-1,fleet=east fuel=-1.0 {late_t}".encode(), timeout=60)
    assert r.status_code == 204, r.text
    q = f"SELECT fuel FROM readings WHERE name = 'truck-1' AND CAST(time AS BIGINT) = {late_t}"
    assert sql(s, q) == [{"fuel": -1.0}]
    after = sql(s, SUMMARY)
    s.stop()
    s2 = start_server(CONFIG, data_dir=s.data_dir, extra_args=("--object-store", f"s3://{bucket}/prod"),
                      env=env_for(moto))
    assert sql(s2, SUMMARY) == after
    assert sql(s2, q) == [{"fuel": -1.0}]
    # Tiering again moves nothing new.
    r = requests.post(f"{s2.http}/api/v3/admin/tier", params={"db": "fleet"}, timeout=300)
    assert r.status_code == 200 and r.json()["partitions"] <= 1, r.text


def test_a_missing_bucket_is_a_clear_startup_error(moto, tmp_path):
    with pytest.raises(RuntimeError) as e:
        Server(tmp_path / "data", CONFIG, ("--object-store", "s3://no-such-bucket/x"), env=env_for(moto))
    assert "no-such-bucket" in str(e.value) and "does not answer" in str(e.value), str(e.value)


def test_tiering_without_an_object_store_is_refused(start_server):
    s = start_server(CONFIG)
    r = requests.post(f"{s.http}/api/v2/write", params={"bucket": "fleet", "precision": "ns"},
                      data=b"readings,name=a fuel=1.0 1", timeout=30)
    assert r.status_code == 204, r.text
    r = requests.post(f"{s.http}/api/v3/admin/tier", params={"db": "fleet"}, timeout=30)
    assert r.status_code == 400 and "--object-store" in r.json()["error"], r.text


def test_a_device_delete_is_purged_from_the_objects_by_compaction(start_server, moto, tmp_path):
    bucket = "telemark-tier-purge"
    client = s3(moto)
    client.create_bucket(Bucket=bucket)
    # Every upload in parts (one part each here): the multipart path against a real S3 API.
    s = start_server(CONFIG.replace('after = "7d"', 'after = "7d"\nmultipart_bytes = 1'),
                     extra_args=("--object-store", f"s3://{bucket}/p"), env=env_for(moto))
    today = time.time_ns() // DAY * DAY
    lines = [f"readings,name=truck-{d} fuel={d}.25,note=\"marker-{d}-x9\" {today - 12 * DAY + h * HOUR}"
             for d in range(3) for h in range(12 * 24)]
    r = requests.post(f"{s.http}/api/v2/write", params={"bucket": "fleet", "precision": "ns"},
                      data="\n".join(lines).encode(), timeout=60)
    assert r.status_code == 204, r.text
    r = requests.post(f"{s.http}/api/v3/admin/tier", params={"db": "fleet"}, timeout=300)
    assert r.status_code == 200 and r.json()["partitions"] == 5, r.text
    storage = requests.get(f"{s.http}/api/v3/storage", params={"db": "fleet"}, timeout=30).json()
    readings = next(t for t in storage["tables"] if t["table"] == "readings")
    assert readings["cold_files"] == 5 and readings["cold_bytes"] > 0, readings
    metrics = requests.get(f"{s.http}/metrics", timeout=30).text
    assert "telemark_cold_files 5" in metrics and "telemark_tier_uploads_total 5" in metrics, metrics

    r = requests.post(f"{s.http}/api/v3/query_sql", json={"q": "DELETE FROM readings WHERE name = 'truck-1'",
                                                          "db": "fleet", "format": "json"}, timeout=60)
    assert r.status_code == 200, r.text
    assert sql(s, "SELECT count(*) AS n FROM readings WHERE name = 'truck-1'") == [{"n": 0}]
    pending, = [d for d in requests.get(f"{s.http}/api/v3/admin/deletes", params={"db": "fleet"},
                                        timeout=30).json()["pending"]]
    r = requests.post(f"{s.http}/api/v3/admin/compact", params={"db": "fleet"}, timeout=300)
    assert r.status_code == 200 and r.json()["cold_files_purged"] == 5, r.text
    deletes = requests.get(f"{s.http}/api/v3/admin/deletes", params={"db": "fleet"}, timeout=30).json()
    assert deletes["pending"] == [] and len(deletes["purged"]) == 1, deletes

    # Every object left in the bucket: no row of truck-1, and the old objects are gone.
    def keys():
        return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    deadline = time.time() + 10
    while len(keys()) != 5 and time.time() < deadline:
        time.sleep(0.1)
    assert len(keys()) == 5, keys()
    names = set()
    for i, k in enumerate(keys()):
        dest = tmp_path / f"o{i}.parquet"
        client.download_file(bucket, k, str(dest))
        names |= set(pq.read_table(dest).column("name").to_pylist())
        assert b"marker-1-x9" not in dest.read_bytes()
    assert names == {"truck-0", "truck-2"}, names
    assert sql(s, "SELECT name, count(*) AS n FROM readings GROUP BY name ORDER BY name") == [
        {"name": "truck-0", "n": 12 * 24}, {"name": "truck-2", "n": 12 * 24}]


# No disk cache: the damaged reads below must reach the store.
FAULT_CONFIG = CONFIG.replace('after = "7d"', 'after = "7d"\ndisk_cache_bytes = 0') + """
[object_store]
timeout_secs = 2
connect_timeout_secs = 2
max_retries = 4
"""


def load_days(server, db, days=12, trucks=3):
    today = time.time_ns() // DAY * DAY
    lines = [f"readings,name=truck-{d} fuel={d}.5,velocity={h}i {today - days * DAY + h * HOUR}"
             for d in range(trucks) for h in range(days * 24)]
    r = requests.post(f"{server.http}/api/v2/write", params={"bucket": db, "precision": "ns"},
                      data="\n".join(lines).encode(), timeout=60)
    assert r.status_code == 204, r.text


def tier(server, db):
    r = requests.post(f"{server.http}/api/v3/admin/tier", params={"db": db}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def test_upload_and_read_faults_lose_nothing_and_never_answer_wrong(start_server, moto):
    """Through a proxy that fails requests: 503s and a reset connection are retried; a PUT whose answer
    never comes (the object was stored) is retried and accepted after verification; a corrupted read-back
    fails that partition's upload (its files stay local) and the next run tiers it; corrupted and
    truncated reads during a query are errors or right answers, never wrong ones."""
    from s3_faults import S3FaultProxy

    bucket = "telemark-faults"
    client = s3(moto)
    client.create_bucket(Bucket=bucket)
    proxy = S3FaultProxy(moto)
    try:
        s = start_server(FAULT_CONFIG, extra_args=("--object-store", f"s3://{bucket}/f"), env=env_for(proxy.url))
        for db in ("a", "b", "c", "d"):
            load_days(s, db)
        before = {db: sql(s, SUMMARY, db=db) for db in ("a", "b", "c", "d")}

        proxy.fail("PUT", "status", times=2)
        assert tier(s, "a")["partitions"] == 5
        assert proxy.actions("status") == 2
        metrics = requests.get(f"{s.http}/metrics", timeout=30).text
        assert "telemark_tier_request_retries_total 2" in metrics, metrics

        proxy.fail("PUT", "reset")
        assert tier(s, "b")["partitions"] == 5
        assert proxy.actions("reset") == 1

        proxy.fail("PUT", "hang_after_store")
        assert tier(s, "c")["partitions"] == 5
        assert proxy.actions("hang_after_store") == 1

        # The read-back of the first upload is damaged: that partition stays local, the rest move.
        proxy.fail("GET", "corrupt", ranged=False, path=".parquet")
        report = tier(s, "d")
        assert report["partitions"] == 4 and len(report["failures"]) == 1, report
        assert "CRC32C" in report["failures"][0], report
        assert sql(s, SUMMARY, db="d") == before["d"]
        metrics = requests.get(f"{s.http}/metrics", timeout=30).text
        assert "telemark_tier_failures_total 1" in metrics, metrics
        # The unverified object was deleted at once; the next run tiers the partition.
        report = tier(s, "d")
        assert report["partitions"] == 1 and report["garbage_objects"] == 0, report
        assert proxy.pending() == []

        for db in ("a", "b", "c", "d"):
            assert sql(s, SUMMARY, db=db) == before[db], db
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert len(keys) == 20, keys  # one object per tiered partition, nothing left over

        # Reads during queries: restart so nothing is cached, then damage the ranged GETs.
        s.stop()
        s = start_server(FAULT_CONFIG, data_dir=s.data_dir, extra_args=("--object-store", f"s3://{bucket}/f"),
                         env=env_for(proxy.url))
        q = "SELECT name, count(*) AS n, sum(fuel) AS fuel FROM readings GROUP BY name ORDER BY name"
        want = [{"name": r["name"], "n": r["n"], "fuel": r["fuel"]} for r in before["a"]]
        proxy.fail("GET", "corrupt", ranged=True, path=".parquet")
        r = requests.post(f"{s.http}/api/v3/query_sql", json={"q": q, "db": "a", "format": "json"}, timeout=60)
        assert r.status_code >= 500 and "CRC32C" in r.text, (r.status_code, r.text)
        proxy.fail("GET", "truncate", ranged=True, path=".parquet")
        r = requests.post(f"{s.http}/api/v3/query_sql", json={"q": q, "db": "a", "format": "json"}, timeout=60)
        assert r.status_code >= 500 or r.json() == want, (r.status_code, r.text)
        assert proxy.actions("truncate") == 1
        assert sql(s, q, db="a") == want
        metrics = requests.get(f"{s.http}/metrics", timeout=30).text
        assert "telemark_tier_checksum_failures_total 0" not in metrics, metrics
    finally:
        proxy.close()


def test_a_multipart_upload_a_crash_interrupts_is_aborted_at_the_next_start(start_server, moto):
    """Every upload in parts; the first part's PUT is held by the proxy while the server is killed
    (SIGKILL). The bucket then holds an unfinished multipart upload; the restarted server aborts it
    (it recorded the upload's id before sending parts) and tiers the partition again."""
    from s3_faults import S3FaultProxy

    bucket = "telemark-mpu"
    client = s3(moto)
    client.create_bucket(Bucket=bucket)
    proxy = S3FaultProxy(moto)
    config = CONFIG.replace('after = "7d"', 'after = "7d"\nmultipart_bytes = 1')
    try:
        s = start_server(config, extra_args=("--object-store", f"s3://{bucket}/m"), env=env_for(proxy.url))
        load_days(s, "fleet", days=9)
        before = sql(s, SUMMARY)
        proxy.fail("PUT", "delay", path="uploadId")
        def tier_in_background():
            try:
                requests.post(f"{s.http}/api/v3/admin/tier", params={"db": "fleet"}, timeout=120)
            except requests.ConnectionError:
                pass  # the server is killed while it answers: expected

        t = threading.Thread(target=tier_in_background, daemon=True)
        t.start()
        deadline = time.time() + 30
        while proxy.actions("delay") == 0:
            assert time.time() < deadline, "no part upload reached the proxy"
            time.sleep(0.05)
        s.kill()
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert len(uploads) == 1, uploads
        s2 = start_server(config, data_dir=s.data_dir, extra_args=("--object-store", f"s3://{bucket}/m"),
                          env=env_for(proxy.url))
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert "aborted a multipart upload" in s2.output()[1]
        assert sql(s2, SUMMARY) == before
        assert tier(s2, "fleet")["partitions"] == 2
        assert sql(s2, SUMMARY) == before
    finally:
        proxy.close()
