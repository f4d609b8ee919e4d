"""The HTTP API: query formats, errors, health, metrics and token isolation."""

import io

import pyarrow as pa
import pyarrow.ipc
import requests

from conftest import ADMIN, FLEET_RW, LAB_RO


def get(server, token, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.http}/api/v3/query_sql", params=params, headers=headers, timeout=60)


def test_health_and_metrics(fleet):
    assert requests.get(f"{fleet.http}/health", timeout=10).json() == {"status": "pass"}
    get(fleet, ADMIN, db="fleet", q="SELECT 1")
    text = requests.get(f"{fleet.http}/metrics", timeout=10).text
    for name in ["telemark_rows_written_total", "telemark_queries_total", "telemark_query_duration_seconds_bucket",
                 "telemark_wal_fsyncs_total", "telemark_buffer_bytes", "telemark_segments", "telemark_errors_total"]:
        assert name in text, name
    rows = [l for l in text.splitlines() if l.startswith("telemark_rows_written_total ")]
    assert int(float(rows[0].split()[1])) >= 1000


def test_formats(fleet):
    q = "SELECT name, fuel FROM readings WHERE name = 'truck-1' ORDER BY time LIMIT 3"
    j = get(fleet, ADMIN, db="fleet", q=q, format="json")
    assert j.status_code == 200 and j.headers["content-type"] == "application/json"
    assert j.json() == [{"name": "truck-1", "fuel": 99}, {"name": "truck-1", "fuel": 89}, {"name": "truck-1", "fuel": 79}]
    jl = get(fleet, ADMIN, db="fleet", q=q, format="jsonl").text.strip().splitlines()
    assert len(jl) == 3
    csv = get(fleet, ADMIN, db="fleet", q=q, format="csv").text.strip().splitlines()
    assert csv == ["name,fuel", "truck-1,99", "truck-1,89", "truck-1,79"]
    arrow = get(fleet, ADMIN, db="fleet", q=q, format="arrow")
    table = pyarrow.ipc.open_stream(io.BytesIO(arrow.content)).read_all()
    assert table.column("fuel").to_pylist() == [99, 89, 79]
    pretty = get(fleet, ADMIN, db="fleet", q=q, format="pretty").text
    assert "| truck-1 |" in pretty
    post = requests.post(f"{fleet.http}/api/v3/query_sql", json={"db": "fleet", "q": q}, headers={"Authorization": f"Token {ADMIN}"}, timeout=60)
    assert post.json() == j.json()


def test_errors_are_json_with_status(fleet):
    r = get(fleet, ADMIN, db="fleet", q="SELEC 1")
    assert r.status_code == 400 and "Expected" in r.json()["error"]
    r = get(fleet, ADMIN, db="fleet", q="SELECT * FROM nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = get(fleet, None, db="fleet", q="SELECT 1")
    assert r.status_code == 401
    r = get(fleet, "wrong", db="fleet", q="SELECT 1")
    assert r.status_code == 401
    r = get(fleet, ADMIN, db="fleet", q="SELECT 1", format="xml")
    assert r.status_code == 400 and "unknown format" in r.json()["error"]


def test_token_isolation_over_http(fleet):
    assert get(fleet, LAB_RO, db="lab", q="SELECT v FROM other").json() == [{"v": 1.5}]
    r = get(fleet, LAB_RO, db="fleet", q="SELECT count(*) FROM readings")
    assert r.status_code == 403 and "may not read database `fleet`" in r.json()["error"]
    r = get(fleet, LAB_RO, db="lab", q="SELECT count(*) FROM fleet.readings")
    assert r.status_code == 404
    r = get(fleet, FLEET_RW, db="fleet", q="SELECT * FROM lab.other")
    assert r.status_code == 404
