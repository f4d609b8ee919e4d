"""The last-value cache through the real server: `GET /api/v3/last` and SQL `last_values('t')`
over ADBC Flight SQL. Fields that arrive in separate lines merge, an older row does not replace a
newer value, a device silent for months is there, and it all survives SIGKILL: from the WAL alone,
from the snapshot a flush writes plus the WAL after it, and, when the snapshot is damaged, by a
rebuild from the stored rows."""

import time

import requests

from conftest import ADMIN, LAB_RO, connect, token_config

NS = 1_000_000_000
NOW = time.time_ns() // NS * NS
MONTHS_AGO = NOW - 120 * 86_400 * NS


def hdr(token=ADMIN):
    return {"Authorization": f"Bearer {token}"}


def write(server, lines, db="fleet"):
    r = requests.post(f"{server.http}/api/v2/write", params={"bucket": db, "org": "any", "precision": "ns"},
                      data="\n".join(lines).encode(), headers=hdr(), timeout=30)
    assert r.status_code == 204, r.text


def last(server, token=ADMIN, **params):
    return requests.get(f"{server.http}/api/v3/last", params={"db": "fleet", "table": "readings", **params},
                        headers=hdr(token), timeout=30)


def by_device(rows):
    return {r["device"]: r for r in rows}


def write_fleet(s):
    write(s, [
        f"readings,device=a temp=20.5 {NOW - 10 * NS}",
        f"readings,device=a hum=40i {NOW - 5 * NS}",          # another field, later, in its own line
        f"readings,device=a temp=18.0 {NOW - 60 * NS}",       # older: does not replace 20.5
        f"readings,device=b temp=30.0,status=\"ok\" {NOW - 3 * NS}",
        f"readings,device=old temp=-4.0 {MONTHS_AGO}",        # silent for four months
    ])


EXPECTED = {
    "a": {"temp": 20.5, "hum": 40, "status": None},
    "b": {"temp": 30.0, "hum": None, "status": "ok"},
    "old": {"temp": -4.0, "hum": None, "status": None},
}


def check(s, expected):
    r = last(s)
    assert r.status_code == 200, r.text
    got = by_device(r.json())
    assert set(got) == set(expected), got
    for device, want in expected.items():
        for field, value in want.items():
            assert got[device].get(field) == value, (device, field, got[device])
    # Filtered on a tag; CSV.
    one = last(s, device="a", format="csv").text.strip().splitlines()
    assert len(one) == 2 and "20.5" in one[1], one
    assert len(last(s, device=["a", "old"]).json()) == 2
    # The same through SQL over ADBC, and equal to the plain query.
    with connect(s, ADMIN, database="fleet") as conn, conn.cursor() as cur:
        cur.execute("SELECT device, temp, hum, status, time FROM last_values('readings') ORDER BY device")
        sql_rows = cur.fetch_arrow_table().to_pylist()
        cur.execute("SELECT device, last(temp, time) AS temp, last(hum, time) AS hum, last(status, time) AS status, "
                    "max(time) AS time FROM readings GROUP BY device ORDER BY device")
        plain = cur.fetch_arrow_table().to_pylist()
        cur.execute("SELECT temp FROM last_values('readings') WHERE device = 'old'")
        assert cur.fetch_arrow_table().to_pylist() == [{"temp": -4.0}]
    assert sql_rows == plain
    assert [r["device"] for r in sql_rows] == ["a", "b", "old"]


def test_last_values_over_http_and_adbc_survive_sigkill(start_server, tmp_path):
    data = tmp_path / "data"
    s = start_server(token_config(), data_dir=data)
    write_fleet(s)
    expected = {device: dict(fields) for device, fields in EXPECTED.items()}
    check(s, expected)

    metrics = requests.get(f"{s.http}/metrics", timeout=10).text
    assert "telemark_last_value_series 3" in metrics, metrics
    assert "telemark_last_value_bytes " in metrics

    # Errors name what was wrong.
    r = last(s, db="")
    assert r.status_code == 400 and "db" in r.json()["error"]
    r = requests.get(f"{s.http}/api/v3/last", params={"db": "fleet", "table": "nope"}, headers=hdr(), timeout=30)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = last(s, temp="1")
    assert r.status_code == 400 and "`temp` is not a tag" in r.json()["error"]
    assert last(s, token=LAB_RO).status_code == 403
    with connect(s, ADMIN, database="fleet") as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT * FROM last_values('missing')")
            raise AssertionError("an unknown table must fail")
        except Exception as e:  # noqa: BLE001 - the driver's error type
            assert "missing" in str(e)

    # Crash with everything in the WAL only.
    s.kill()
    s = start_server(token_config(), data_dir=data)
    check(s, expected)

    # Flush (the snapshot is written), then newer values only in the WAL, then crash.
    r = requests.post(f"{s.http}/api/v3/admin/compact", params={"db": "fleet"}, headers=hdr(), timeout=300)
    assert r.status_code == 200, r.text
    assert (data / "lastvalues").exists()
    write(s, [f"readings,device=b temp=31.5 {NOW - 1 * NS}"])
    expected["b"]["temp"] = 31.5
    s.kill()
    s = start_server(token_config(), data_dir=data)
    check(s, expected)
    _, err = s.output()
    assert "rebuilt by scanning" not in err, err

    # A damaged snapshot is not trusted: the cache is rebuilt from the stored rows.
    s.stop()
    raw = bytearray((data / "lastvalues").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / "lastvalues").write_bytes(bytes(raw))
    s = start_server(token_config(), data_dir=data)
    check(s, expected)
    out, err = s.output()
    assert "rebuilt by scanning" in out + err, (out, err)
