"""Rollups and gap filling through the real server: a `[[rollup]]` rule in the config file,
rows written over HTTP (late ones included), panels read over ADBC Flight SQL. A query the
rollup answers (EXPLAIN names `readings_1m`) equals the same query kept on the rows, before and
after SIGKILL, with marks from the WAL alone and from the file a flush saves; gap filling returns
every bucket and fills from before the range."""

import requests

from conftest import ADMIN, connect, token_config

NS = 1_000_000_000
MIN = 60 * NS
T0 = 1_733_011_200 * NS  # 2024-12-01T00:00:00Z
ROLLUP = '\n[[rollup]]\ndatabase = "fleet"\ntable = "readings"\ninterval = "1m"\n'


def write(server, lines):
    r = requests.post(f"{server.http}/api/v2/write", params={"bucket": "fleet", "org": "any", "precision": "ns"},
                      data="\n".join(lines).encode(), headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 204, r.text


def rows(cur, sql):
    cur.execute(sql)
    return cur.fetch_arrow_table().to_pylist()


PANEL = ("SELECT date_bin(INTERVAL '5 minutes', time) AS t, name, min(speed) AS lo, max(speed) AS hi, "
         "avg(speed) AS mean, count(*) AS n, last(speed, time) AS latest FROM readings "
         f"WHERE time >= to_timestamp_nanos({T0 + 90 * NS}) AND time < to_timestamp_nanos({T0 + 58 * MIN}) {{extra}} "
         "GROUP BY 1, name ORDER BY name, t")


def check(s):
    with connect(s, ADMIN, database="fleet") as conn, conn.cursor() as cur:
        plan = str(rows(cur, "EXPLAIN " + PANEL.format(extra="")))
        assert "readings_1m" in plan, plan
        fast = rows(cur, PANEL.format(extra=""))
        slow = rows(cur, PANEL.format(extra="AND name <> ''"))
        assert "readings_1m" not in str(rows(cur, "EXPLAIN " + PANEL.format(extra="AND name <> ''")))
        assert fast == slow
        assert len(fast) == 2 * 12, fast
        return fast


def test_rollup_answers_equal_the_rows_across_sigkill(start_server, tmp_path):
    data = tmp_path / "data"
    s = start_server(token_config() + ROLLUP, data_dir=data)
    # Two trucks, a reading every 10 s for an hour; speeds are whole numbers as floats (exact sums).
    lines = [f"readings,name=truck-{d} speed={(i * 7 + d * 3) % 90} {T0 + i * 10 * NS + d}"
             for i in range(360) for d in (1, 2)]
    write(s, lines)
    before = check(s)
    # A late row for an early bucket changes its answer.
    write(s, [f"readings,name=truck-1 speed=500 {T0 + 7 * MIN + 5 * NS}"])
    after = check(s)
    assert after != before and any(r["hi"] == 500 for r in after)

    # Crash: the marks of rows written since are rebuilt from the WAL.
    write(s, [f"readings,name=truck-2 speed=400 {T0 + 20 * MIN + 1}"])
    s.kill()
    s = start_server(token_config() + ROLLUP, data_dir=data)
    assert any(r["hi"] == 400 for r in check(s))

    # A flush trims the WAL: the marks not yet recomputed are in rollups/.
    write(s, [f"readings,name=truck-1 speed=300 {T0 + 33 * MIN + 2}"])
    r = requests.post(f"{s.http}/api/v3/admin/compact", params={"db": "fleet"},
                      headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300)
    assert r.status_code == 200, r.text
    assert (data / "rollups" / "fleet.readings_1m").exists()
    s.kill()
    s = start_server(token_config() + ROLLUP, data_dir=data)
    assert any(r["hi"] == 300 for r in check(s))


def test_gap_filling_over_adbc(start_server):
    s = start_server(token_config())
    write(s, [
        f"readings,name=a speed=10i {T0 - 5 * MIN}",     # before the range: fills a's first buckets
        f"readings,name=a speed=40i {T0 + 3 * MIN}",
        f"readings,name=b speed=7i {T0 + 1 * MIN}",
    ])
    sql = ("SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS t, name, max(speed) AS raw, "
           "locf(max(speed)) AS carried, interpolate(avg(speed)) AS line FROM readings "
           f"WHERE time >= to_timestamp_nanos({T0}) AND time < to_timestamp_nanos({T0 + 5 * MIN}) "
           "GROUP BY 1, name ORDER BY name, t")
    with connect(s, ADMIN, database="fleet") as conn, conn.cursor() as cur:
        got = rows(cur, sql)
        cur.execute("EXPLAIN " + sql)
        assert "GapFill" in str(cur.fetchall())
        try:
            cur.execute("SELECT date_bin_gapfill(INTERVAL '1 minute', time), max(speed) FROM readings GROUP BY 1")
            cur.fetchall()
            raise AssertionError("a gap fill without a time range must fail")
        except Exception as e:  # noqa: BLE001 - the driver's error type
            assert "needs a time range in WHERE" in str(e), e
    a = [r for r in got if r["name"] == "a"]
    b = [r for r in got if r["name"] == "b"]
    assert len(a) == len(b) == 5
    assert [r["raw"] for r in a] == [None, None, None, 40, None]
    assert [r["carried"] for r in a] == [10, 10, 10, 40, 40]
    # From 10 five minutes before T0 to 40 at T0 + 3 min: 3.75 a minute.
    assert [r["line"] for r in a] == [28.75, 32.5, 36.25, 40.0, None]
    assert [r["carried"] for r in b] == [None, 7, 7, 7, 7]
