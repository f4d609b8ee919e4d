"""Backup and restore with the real binary and a real S3-compatible server (moto_server, dummy keys):
`POST /api/v3/admin/backup` on a running server under concurrent line-protocol ingest, `telemark
restore` into an empty directory, a server started on it answering as at the snapshot (every write
acknowledged before the backup started, then a prefix of the rest), incremental second backups,
a damaged backup refused by the CLI with the target left empty, and `telemark backup` refusing a
data directory a server is running on."""

import os
import subprocess
import threading
import time

import requests

from conftest import BIN
from test_tiering import CONFIG, env_for, moto, s3, sql  # noqa: F401  (moto is a fixture)

HOUR = 3_600 * 10**9

SMALL = CONFIG + """
[storage]
max_buffer_bytes = 4096
max_buffer_age_secs = 1
"""


def cli(*args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def seqs(server):
    return [r["seq"] for r in sql(server, "SELECT seq FROM m ORDER BY seq", db="bk")]


def test_backup_under_ingest_and_restore(start_server, moto, tmp_path):  # noqa: F811
    bucket = "telemark-backups"
    client = s3(moto)
    client.create_bucket(Bucket=bucket)
    env = env_for(moto)
    s = start_server(SMALL, env=env)
    base = time.time_ns() - 48 * HOUR
    acked = [-1]
    stop = threading.Event()

    def writer():
        seq = 0
        while not stop.is_set():
            lines = "\n".join(f"m,device=d{(seq + i) % 5} seq={seq + i}i {base + (seq + i) * 10**6}" for i in range(20))
            r = requests.post(f"{s.http}/api/v2/write", params={"bucket": "bk", "precision": "ns"},
                              data=lines.encode(), timeout=30)
            assert r.status_code == 204, r.text
            seq += 20
            acked[0] = seq - 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(1.5)
        before = acked[0]
        r = requests.post(f"{s.http}/api/v3/admin/backup", json={"to": f"s3://{bucket}/bk"}, timeout=300)
        after = acked[0]
    finally:
        stop.set()
        t.join()
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["files"] > 0 and report["files_copied"] == report["files"], report
    assert before >= 0

    restored = tmp_path / "restored"
    out = cli("restore", "--from", f"s3://{bucket}/bk", "--data-dir", str(restored), env=env)
    assert out.returncode == 0, out.stderr
    assert f"restored backup {report['name']}" in out.stdout, out.stdout
    r2 = start_server(CONFIG, data_dir=restored, env=env)
    got = seqs(r2)
    assert got == list(range(len(got))), "the restored rows are not a prefix of the writes"
    assert got[-1] >= before, (got[-1], before)
    assert got[-1] <= after, (got[-1], after)
    r2.stop()

    # Incremental: a second backup copies only what is new.
    again = requests.post(f"{s.http}/api/v3/admin/backup", json={"to": f"s3://{bucket}/bk"}, timeout=300).json()
    assert again["files_skipped"] > 0 and again["files_copied"] < again["files"], again

    # A damaged object in the backup: refused, the target left empty.
    key = next(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="bk/data/")["Contents"])
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 1
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    target = tmp_path / "damaged"
    out = cli("restore", "--from", f"s3://{bucket}/bk", "--data-dir", str(target), env=env)
    assert out.returncode != 0 and "damaged" in out.stderr and key.rsplit("/", 1)[-1] in out.stderr, out.stderr
    assert not target.exists() or not any(p.is_file() for p in target.rglob("*")), list(target.rglob("*"))

    # The CLI refuses a data directory a server is running on, and names the HTTP endpoint.
    out = cli("backup", "--data-dir", str(s.data_dir), "--to", f"file://{tmp_path / 'offline'}")
    assert out.returncode != 0 and "in use" in out.stderr and "/api/v3/admin/backup" in out.stderr, out.stderr
    # Once it is stopped, the CLI backs it up and the copy restores.
    s.stop()
    out = cli("backup", "--data-dir", str(s.data_dir), "--to", f"file://{tmp_path / 'offline'}")
    assert out.returncode == 0 and "backup " in out.stdout, out.stderr
    copy = tmp_path / "copy"
    out = cli("restore", "--from", f"file://{tmp_path / 'offline'}", "--data-dir", str(copy))
    assert out.returncode == 0, out.stderr
    r3 = start_server(CONFIG, data_dir=copy)
    assert seqs(r3) == list(range(acked[0] + 1))
