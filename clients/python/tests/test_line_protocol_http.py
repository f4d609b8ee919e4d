"""InfluxDB line protocol over HTTP (`/api/v2/write`, `/write`) with real clients:
influxdb-client, curl and plain requests, checked back through SQL."""

import base64
import gzip
import io
import pathlib
import shutil
import subprocess
import time

import pyarrow as pa
import pyarrow.ipc
import pytest
import requests
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from conftest import ADMIN, FLEET_RW, LAB_RO, Server, token_config

LIMIT = 1000  # max_body_bytes of the `limited` server


def auth(token, scheme="Token"):
    return {"Authorization": f"{scheme} {token}"}


def write_v2(server, body, token=ADMIN, headers=None, **params):
    params.setdefault("org", "any")
    h = auth(token) if token else {}
    h.update(headers or {})
    return requests.post(f"{server.http}/api/v2/write", params=params, data=body, headers=h, timeout=30)


def write_v1(server, body, headers=None, **params):
    return requests.post(f"{server.http}/write", params=params, data=body, headers=headers or {}, timeout=30)


def table(server, db, q):
    """A query's result as an Arrow table, so types and nanosecond times are exact."""
    r = requests.get(f"{server.http}/api/v3/query_sql", params={"q": q, "db": db, "format": "arrow"},
                     headers=auth(ADMIN, "Bearer"), timeout=30)
    assert r.status_code == 200, r.text
    return pyarrow.ipc.open_stream(io.BytesIO(r.content)).read_all()


def ns(t, column="time"):
    """A timestamp column as integer nanoseconds."""
    col = t.column(column)
    assert col.type == pa.timestamp("ns"), col.type
    return col.cast(pa.int64()).to_pylist()


def error_json(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), (r.headers, r.text)
    return r.json()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("limited") / "data", f"max_body_bytes = {LIMIT}\n" + token_config())
    try:
        yield s
    finally:
        s.stop()


# 1. influxdb-client (v2 write API)

S, MS, US, NS = 1_700_000_001, 1_700_000_002_345, 1_700_000_003_456_789, 1_700_000_004_567_891_234


def test_influxdb_client_points_and_lines_with_every_precision(server):
    bucket = "py_client"
    with InfluxDBClient(url=server.http, token=ADMIN, org="any") as client:
        w = client.write_api(write_options=SYNCHRONOUS)
        w.write(bucket=bucket, record=[
            Point("pts").tag("host", "a").field("f", 1.5).field("i", 42).field("b", True).field("s", 'say "hi"')
                .time(S, WritePrecision.S),
            Point("pts").tag("host", "b").field("f", -2.25).field("i", -7).field("b", False).field("s", "x\\y")
                .time(MS, WritePrecision.MS),
            Point("pts").tag("host", "c").field("f", 0.0).field("i", 0).field("b", True).field("s", "")
                .time(US, WritePrecision.US),
            Point("pts").tag("host", "d").field("f", 1e300).field("i", 2**62).field("b", False).field("s", "ü")
                .time(NS, WritePrecision.NS),
        ])
        # Raw lines, with the precision given to the write call.
        w.write(bucket=bucket, record="raw,host=s v=1i,u=10u 1700000010", write_precision=WritePrecision.S)
        w.write(bucket=bucket, record=["raw,host=ms v=2i,u=20u 1700000010123"], write_precision=WritePrecision.MS)
        w.write(bucket=bucket, record=b"raw,host=us v=3i,u=30u 1700000010123456", write_precision=WritePrecision.US)
        w.write(bucket=bucket, record="raw,host=ns v=4i,u=40u 1700000010123456789", write_precision=WritePrecision.NS)

    t = table(server, bucket, "SELECT time, host, f, i, b, s FROM pts ORDER BY host")
    assert t.schema.field("host").type == pa.string()
    assert t.schema.field("f").type == pa.float64()
    assert t.schema.field("i").type == pa.int64()
    assert t.schema.field("b").type == pa.bool_()
    assert t.schema.field("s").type == pa.string()
    assert ns(t) == [S * 10**9, MS * 10**6, US * 10**3, NS]
    assert t.drop(["time"]).to_pylist() == [
        {"host": "a", "f": 1.5, "i": 42, "b": True, "s": 'say "hi"'},
        {"host": "b", "f": -2.25, "i": -7, "b": False, "s": "x\\y"},
        {"host": "c", "f": 0.0, "i": 0, "b": True, "s": ""},
        {"host": "d", "f": 1e300, "i": 2**62, "b": False, "s": "ü"},
    ]

    t = table(server, bucket, "SELECT time, host, v, u FROM raw ORDER BY v")
    assert t.schema.field("v").type == pa.int64() and t.schema.field("u").type == pa.uint64()
    assert ns(t) == [1_700_000_010 * 10**9, 1_700_000_010_123 * 10**6, 1_700_000_010_123_456 * 10**3,
                     1_700_000_010_123_456_789]
    assert t.drop(["time"]).to_pylist() == [
        {"host": "s", "v": 1, "u": 10}, {"host": "ms", "v": 2, "u": 20},
        {"host": "us", "v": 3, "u": 30}, {"host": "ns", "v": 4, "u": 40},
    ]


def test_influxdb_client_gzip(server):
    bucket = "py_gzip"
    lines = [f"gz,dev=d{i % 7} seq={i}i,v={i / 4} {1_700_000_000_000 + i}" for i in range(2000)]
    with InfluxDBClient(url=server.http, token=ADMIN, org="any", enable_gzip=True) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines,
                                                          write_precision=WritePrecision.MS)
    t = table(server, bucket, "SELECT time, dev, seq, v FROM gz ORDER BY seq")
    assert t.num_rows == 2000
    assert t.column("seq").to_pylist() == list(range(2000))
    assert t.column("v").to_pylist() == [i / 4 for i in range(2000)]
    assert t.column("dev").to_pylist() == [f"d{i % 7}" for i in range(2000)]
    assert ns(t) == [(1_700_000_000_000 + i) * 10**6 for i in range(2000)]


def test_influxdb_client_gzip_really_compresses_and_errors_surface(limited):
    # The decompressed-size message proves the client's body went through the server's gzip path.
    body = "big,k=v f=1 1\n" * 200  # 2800 bytes decompressed, a few dozen compressed
    with InfluxDBClient(url=limited.http, token=ADMIN, org="any", enable_gzip=True) as client:
        w = client.write_api(write_options=SYNCHRONOUS)
        with pytest.raises(ApiException) as e:
            w.write(bucket="gz_limit", record=body)
        assert e.value.status == 413
        assert "decompressed" in e.value.body and "max_body_bytes" in e.value.body
        with pytest.raises(ApiException) as e:
            w.write(bucket="gz_limit", record="big,k=v f= 1\nbig,k=v f=2 2")
        assert e.value.status == 400 and "partial write" in e.value.body
    with InfluxDBClient(url=limited.http, token=LAB_RO, org="any") as client:
        with pytest.raises(ApiException) as e:
            client.write_api(write_options=SYNCHRONOUS).write(bucket="lab", record="m v=1 1")
        assert e.value.status == 403


# 2. curl

def curl(*args):
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_curl_v2_plain_gzip_and_v1(server, tmp_path):
    assert shutil.which("curl"), "curl is missing: scripts/system-deps.sh installs it (apt-get install curl)"
    plain = tmp_path / "lines.lp"
    plain.write_bytes(b"curl_m,src=plain v=1.5 1700000000\ncurl_m,src=plain v=2.5 1700000001\n")
    url = f"{server.http}/api/v2/write?bucket=curl_db&org=any&precision=s"
    assert curl("--data-binary", f"@{plain}", "-H", f"Authorization: Token {ADMIN}", url) == "204"

    gz = tmp_path / "lines.lp.gz"
    gz.write_bytes(gzip.compress(b"curl_m,src=gzip v=3.5 1700000002\ncurl_m,src=gzip v=4.5 1700000003\n"))
    assert curl("--data-binary", f"@{gz}", "-H", f"Authorization: Token {ADMIN}",
                "-H", "Content-Encoding: gzip", url) == "204"

    v1 = tmp_path / "v1.lp"
    v1.write_bytes(b"curl_m,src=v1 v=5.5 1700000004000\n")
    assert curl("--data-binary", f"@{v1}", f"{server.http}/write?db=fleet&precision=ms&u=x&p={FLEET_RW}") == "204"
    assert curl("--data-binary", f"@{v1}", f"{server.http}/write?db=curl_db&precision=ms&u=admin&p={ADMIN}") == "204"
    assert curl("--data-binary", f"@{v1}", f"{server.http}/write?db=curl_db&precision=ms&u=x&p=wrong") == "401"
    assert curl("--data-binary", f"@{v1}", "-H", f"Authorization: Bearer {ADMIN}",
                f"{server.http}/write?precision=ms") == "400"

    t = table(server, "curl_db", "SELECT time, src, v FROM curl_m ORDER BY time")
    assert ns(t) == [1_700_000_000 * 10**9 + i * 10**9 for i in range(5)]
    assert t.column("src").to_pylist() == ["plain", "plain", "gzip", "gzip", "v1"]
    assert t.column("v").to_pylist() == [1.5, 2.5, 3.5, 4.5, 5.5]
    rows = server.sql("SELECT src, v FROM curl_m", db="fleet", token=FLEET_RW)
    assert rows == [{"src": "v1", "v": 5.5}]


def test_v1_precisions_and_auth_schemes(server):
    db = "v1_prec"
    basic = "Basic " + base64.b64encode(f"admin:{ADMIN}".encode()).decode()
    cases = [("n", 1_700_000_000_000_000_001, 1), ("ns", 1_700_000_000_000_000_002, 1),
             ("u", 1_700_000_000_000_003, 10**3), ("us", 1_700_000_000_000_004, 10**3),
             ("ms", 1_700_000_000_005, 10**6), ("s", 1_700_000_006, 10**9)]
    headers = [{"Authorization": basic}, auth(ADMIN, "Bearer"), auth(ADMIN, "Token")]
    for i, (p, ts, _) in enumerate(cases):
        r = write_v1(server, f"v1m,p={p} i={i}i {ts}", headers=headers[i % 3], db=db, precision=p)
        assert r.status_code == 204, (p, r.text)
    t = table(server, db, "SELECT time, p, i FROM v1m ORDER BY i")
    assert t.column("p").to_pylist() == [c[0] for c in cases]
    assert ns(t) == [ts * mul for _, ts, mul in cases]
    # Missing db names the parameter; default precision is ns.
    r = write_v1(server, "v1m i=9i 5", headers=auth(ADMIN))
    assert "`db`" in error_json(r, 400)["message"]
    assert write_v1(server, "v1m,p=default i=9i 5", headers=auth(ADMIN), db=db).status_code == 204
    assert ns(table(server, db, "SELECT time FROM v1m WHERE p = 'default'")) == [5]


# 3. Escapes and types

ESCAPES = (
    r'my\ meas\,x,tag\ k\,e\=y=v\=a\ l\,ue,t2=héllo\ wörld,t3=a\b '
    r'str="say \"hi\" C:\\dir\\ and \\\"mix\"",uni="日本語 🚀 ç",'
    r'imin=-9223372036854775808i,imax=9223372036854775807i,umax=18446744073709551615u,umin=0u,'
    r'b1=t,b2=T,b3=true,b4=True,b5=TRUE,b6=f,b7=F,b8=false,b9=False,b10=FALSE,'
    r'tiny=1e-300,negzero=-0.0,big=1.7976931348623157e308,neg=-1.5E-3,dot=.5,trail=1.,'
    r'fi\ eld\,k\=ey=1i 1700000000123456789'
)


def test_escapes_and_types_round_trip(server):
    r = write_v2(server, ESCAPES.encode(), bucket="escapes")
    assert r.status_code == 204, r.text
    t = table(server, "escapes", 'SELECT * FROM "my meas,x"')
    types = {f.name: f.type for f in t.schema}
    assert types == {
        "time": pa.timestamp("ns"), "tag k,e=y": pa.string(), "t2": pa.string(), "t3": pa.string(),
        "str": pa.string(), "uni": pa.string(), "imin": pa.int64(), "imax": pa.int64(),
        "umax": pa.uint64(), "umin": pa.uint64(),
        **{f"b{i}": pa.bool_() for i in range(1, 11)},
        "tiny": pa.float64(), "negzero": pa.float64(), "big": pa.float64(), "neg": pa.float64(),
        "dot": pa.float64(), "trail": pa.float64(), "fi eld,k=ey": pa.int64(),
    }
    assert ns(t) == [1_700_000_000_123_456_789]
    row = t.drop(["time"]).to_pylist()[0]
    negzero = row.pop("negzero")
    assert negzero == 0.0 and str(negzero) == "-0.0"
    assert row == {
        "tag k,e=y": "v=a l,ue", "t2": "héllo wörld", "t3": "a\\b",
        "str": 'say "hi" C:\\dir\\ and \\"mix"', "uni": "日本語 🚀 ç",
        "imin": -2**63, "imax": 2**63 - 1, "umax": 2**64 - 1, "umin": 0,
        "b1": True, "b2": True, "b3": True, "b4": True, "b5": True,
        "b6": False, "b7": False, "b8": False, "b9": False, "b10": False,
        "tiny": 1e-300, "big": 1.7976931348623157e308, "neg": -1.5e-3, "dot": 0.5, "trail": 1.0,
        "fi eld,k=ey": 1,
    }
    # The same through the JSON query format, with a WHERE on the escaped tag.
    rows = server.sql('SELECT "tag k,e=y", umax, imin FROM "my meas,x" WHERE "tag k,e=y" = \'v=a l,ue\'',
                      db="escapes", token=ADMIN)
    assert rows == [{"tag k,e=y": "v=a l,ue", "umax": 2**64 - 1, "imin": -2**63}]


def test_comments_blank_lines_crlf_and_server_time(server):
    body = (b"# a comment\r\n\r\n   \r\n"
            b"crlf,k=a v=1i 1700000000000000001\r\n"
            b"  # indented comment with \"quote\r\n"
            b"crlf,k=b v=2i 1700000000000000002\r\n"
            b"crlf,k=c v=3i\r\n"
            b"crlf,k=d v=4i")
    before = time.time_ns()
    r = write_v2(server, body, bucket="crlf")
    after = time.time_ns()
    assert r.status_code == 204, r.text
    t = table(server, "crlf", "SELECT time, k, v FROM crlf ORDER BY v")
    assert t.column("k").to_pylist() == ["a", "b", "c", "d"]
    assert t.column("v").to_pylist() == [1, 2, 3, 4]
    times = ns(t)
    assert times[:2] == [1_700_000_000_000_000_001, 1_700_000_000_000_000_002]
    for got in times[2:]:
        assert before - 10**9 <= got <= after + 10**9, (before, got, after)


# 4. Partial writes

def test_partial_write_reports_bad_lines_and_keeps_good_ones(server):
    lines = [
        "pw,host=a v=1.5,n=1i 1700000000",
        "pw,host=b v= 1700000001",  # missing field value
        "pw,host=c v=3.5,n=3i 1700000002",
        "pw,host=d v=4.5,n=12x3i 1700000003",  # bad integer
        "pw,host=e v=5.5,n=5i 1700000004",
    ]
    r = write_v2(server, "\n".join(lines).encode(), bucket="partial", precision="s")
    body = error_json(r, 400)
    assert body["code"] == "invalid"
    assert body["line"] == 2
    assert body["rows_written"] == 3
    rejected = body["rejected"]
    assert [x["line"] for x in rejected] == [2, 4]
    assert rejected[0]["column"] == lines[1].index("v=") + 3  # just after `v=`
    assert rejected[1]["column"] == lines[3].index("12x3i") + 1  # the start of the bad value
    assert all(x["message"] for x in rejected)
    assert "n" in rejected[1]["message"]
    msg = body["message"]
    assert msg.startswith("partial write: 2 line(s) rejected, 3 row(s) written; ")
    assert f"line 2, column {rejected[0]['column']}: " in msg and f"line 4, column {rejected[1]['column']}: " in msg

    t = table(server, "partial", "SELECT time, host, v, n FROM pw ORDER BY time")
    assert t.column("host").to_pylist() == ["a", "c", "e"]
    assert t.column("v").to_pylist() == [1.5, 3.5, 5.5]
    assert t.column("n").to_pylist() == [1, 3, 5]
    assert ns(t) == [1_700_000_000 * 10**9, 1_700_000_002 * 10**9, 1_700_000_004 * 10**9]


def test_type_conflict_is_reported_with_line_and_column_name(server):
    db = "conflict"
    assert write_v2(server, b"tc,k=a temp=20.5 1", bucket=db).status_code == 204
    body = [
        "tc,k=b temp=21.5 2",
        "tc,k=c temp=22.5 3",
        'tc,k=d temp="hot" 4',  # string into a float column
        "tc,k=e temp=24.5 5",
        "tc,k=f temp=25i 6",  # integer into a float column
    ]
    r = write_v2(server, "\n".join(body).encode(), bucket=db)
    j = error_json(r, 400)
    assert j["code"] == "invalid" and j["line"] == 3 and j["rows_written"] == 3
    assert [x["line"] for x in j["rejected"]] == [3, 5]
    for x, offered in zip(j["rejected"], ["string", "integer"]):
        assert "temp" in x["message"] and "float" in x["message"] and offered in x["message"], x
    assert "line 3" in j["message"] and "line 5" in j["message"]
    rows = server.sql("SELECT k, temp FROM tc ORDER BY time", db=db, token=ADMIN)
    assert rows == [{"k": k, "temp": v} for k, v in zip("abce", [20.5, 21.5, 22.5, 24.5])]


def test_type_conflict_on_first_line_of_body_keeps_the_other_lines(server):
    # Same rule when the conflicting value is the first one of the body for that column:
    # only line 1 is wrong; lines 2 and 3 match the table's float column and must land.
    db = "conflict_first"
    assert write_v2(server, b"tf temp=20.5 1", bucket=db).status_code == 204
    r = write_v2(server, b'tf temp=21i 2\ntf temp=22.5 3\ntf temp=23.5 4', bucket=db)
    j = error_json(r, 400)
    assert [x["line"] for x in j["rejected"]] == [1], j
    assert "temp" in j["rejected"][0]["message"] and "integer" in j["rejected"][0]["message"]
    assert j["rows_written"] == 2, j
    rows = server.sql("SELECT temp FROM tf ORDER BY time", db=db, token=ADMIN)
    assert rows == [{"temp": 20.5}, {"temp": 22.5}, {"temp": 23.5}]


# 5. Authentication and request errors

def test_auth_errors(server):
    line = b"authm v=1 1"
    r = write_v2(server, line, token=None, bucket="fleet")
    assert error_json(r, 401)["code"] == "unauthorized"
    assert error_json(write_v2(server, line, token="wrong", bucket="fleet"), 401)
    assert error_json(write_v2(server, line, headers=auth("wrong", "Bearer"), token=None, bucket="fleet"), 401)
    # Read-only token, and a read/write token on another database.
    j = error_json(write_v2(server, line, token=LAB_RO, bucket="lab"), 403)
    assert j["code"] == "forbidden" and "lab" in j["message"]
    error_json(write_v2(server, line, token=FLEET_RW, bucket="lab"), 403)
    assert write_v2(server, line, token=FLEET_RW, bucket="fleet").status_code == 204
    assert write_v2(server, line, headers=auth(FLEET_RW, "Bearer"), token=None, bucket="fleet").status_code == 204
    # v1: u/p parameters and Basic.
    error_json(write_v1(server, line, db="lab", u="x", p=LAB_RO), 403)
    error_json(write_v1(server, line, db="fleet", u="x", p="wrong"), 401)
    error_json(write_v1(server, line, db="fleet"), 401)
    bad_basic = {"Authorization": "Basic " + base64.b64encode(b"x:wrong").decode()}
    error_json(write_v1(server, line, headers=bad_basic, db="fleet"), 401)
    assert write_v1(server, line, db="fleet", u="x", p=FLEET_RW).status_code == 204
    # Nothing was written to lab.
    with pytest.raises(AssertionError):
        server.sql("SELECT * FROM authm", db="lab", token=ADMIN)


def test_request_errors(server):
    line = b"errm v=1 1"
    j = error_json(write_v2(server, line), 400)
    assert j["code"] == "invalid" and "`bucket`" in j["message"]
    error_json(write_v2(server, line, bucket=""), 400)
    j = error_json(write_v2(server, line, bucket="errs", precision="h"), 400)
    assert "precision" in j["message"] and "h" in j["message"]
    error_json(write_v2(server, line, bucket="errs", precision="n" * 3), 400)
    j = error_json(write_v2(server, line, bucket="errs", headers={"Content-Encoding": "br"}), 400)
    assert "Content-Encoding" in j["message"] and "br" in j["message"]
    j = error_json(write_v2(server, b"not gzip at all", bucket="errs", headers={"Content-Encoding": "gzip"}), 400)
    assert "gzip" in j["message"]
    truncated = gzip.compress(b"errm v=1 1\n" * 50)[:-12]
    error_json(write_v2(server, truncated, bucket="errs", headers={"Content-Encoding": "gzip"}), 400)
    j = error_json(write_v2(server, b"", bucket="errs"), 400)
    assert j["message"]
    error_json(write_v1(server, b"", headers=auth(ADMIN), db="errs"), 400)
    # None of these created the table.
    with pytest.raises(AssertionError):
        server.sql("SELECT * FROM errm", db="errs", token=ADMIN)


def test_body_limit_decompressed(limited):
    under = "".join(f"lim v=1 {i}\n" for i in range(10, 100)).encode()  # 990 bytes: fits
    assert len(under) <= LIMIT
    assert write_v2(limited, under, bucket="lim").status_code == 204
    assert write_v2(limited, gzip.compress(under), bucket="lim",
                    headers={"Content-Encoding": "gzip"}).status_code == 204
    bomb = gzip.compress(b"lim v=1 1\n" * 40_000)  # 400 KB decompressed, ~900 bytes compressed
    big = gzip.compress(b"lim v=1 1\n" * 101)  # 1010 bytes decompressed, tiny compressed
    assert len(bomb) < LIMIT and len(big) < LIMIT
    for body in (bomb, big):
        j = error_json(write_v2(limited, body, bucket="lim", headers={"Content-Encoding": "gzip"}), 413)
        assert "max_body_bytes" in j["message"] and str(LIMIT) in j["message"]
    assert limited.sql("SELECT count(*) AS n FROM lim", db="lim", token=ADMIN) == [{"n": 90}]


def test_body_limit_raw_is_413_with_clear_json_message(limited):
    over = b"lim2 v=1 1\n" * 100  # 1100 bytes
    # With a Content-Length, and chunked (no length known up front).
    responses = [write_v2(limited, over, bucket="lim2"),
                 write_v2(limited, iter([over[:600], over[600:]]), bucket="lim2")]
    for r in responses:
        assert r.status_code == 413, r.text
    with pytest.raises(AssertionError):
        limited.sql("SELECT * FROM lim2", db="lim2", token=ADMIN)
    for r in responses:
        # Like every other write error (including the decompressed-size 413): JSON naming the limit.
        j = error_json(r, 413)
        assert "max_body_bytes" in j["message"] and str(LIMIT) in j["message"], j


# 6. Durability

def test_ten_thousand_lines_survive_sigkill(tmp_path):
    data = tmp_path / "data"
    config = token_config()
    base = 1_700_000_000
    body = "".join(f"dur,dev=d{i % 10} seq={i}i,v={i * 0.5} {base + i}\n" for i in range(10_000)).encode()
    s = Server(data, config)
    try:
        r = write_v2(s, body, bucket="durable", precision="s")
        assert r.status_code == 204, r.text
    finally:
        s.kill()
    s2 = Server(data, config)
    try:
        rows = s2.sql("SELECT count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi, "
                      "sum(v) AS total FROM dur", db="durable", token=ADMIN)
        assert rows == [{"n": 10_000, "d": 10_000, "lo": 0, "hi": 9_999, "total": sum(i * 0.5 for i in range(10_000))}]
        t = table(s2, "durable", "SELECT time, dev, seq FROM dur ORDER BY seq")
        assert ns(t) == [(base + i) * 10**9 for i in range(10_000)]
        assert t.column("dev").to_pylist() == [f"d{i % 10}" for i in range(10_000)]
    finally:
        s2.stop()
