"""Arrow Flight SQL against the real server with the ADBC Flight SQL driver
(the Go Flight SQL client that Grafana's datasource also uses)."""

import datetime as dt

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest
from adbc_driver_flightsql import DatabaseOptions

from conftest import ADMIN, FLEET_RW, LAB_RO, T0, connect, readings

def test_get_info_reports_telemark(fleet):
    with connect(fleet) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Telemark"
        assert info["vendor_version"]


def test_get_objects_and_table_schema(fleet):
    with connect(fleet) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        assert "telemark" in catalogs
        schemas = {s["db_schema_name"]: s for s in catalogs["telemark"]["catalog_db_schemas"]}
        assert {"fleet", "lab"} <= set(schemas)
        tables = {t["table_name"]: t for t in schemas["fleet"]["db_schema_tables"]}
        columns = [c["column_name"] for c in tables["readings"]["table_columns"]]
        assert columns == ["time", "name", "velocity", "fuel"]
        schema = conn.adbc_get_table_schema("readings", db_schema_filter="fleet")
        assert schema.field("time").type == pa.timestamp("ns")
        assert schema.field("velocity").type == pa.float64()
        assert schema.field("name").type == pa.string()


def test_query_with_database_header_and_qualified_names(fleet):
    with connect(fleet, FLEET_RW, database="fleet") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n, max(fuel) AS f FROM readings")
        assert cur.fetchone() == (1000, 100)
        cur.execute("SELECT name, velocity FROM fleet.readings WHERE name = 'truck-3' ORDER BY time LIMIT 2")
        t = cur.fetch_arrow_table()
        assert t.column("name").to_pylist() == ["truck-3", "truck-3"]
        assert t.column("velocity").to_pylist() == [1.5, 6.5]
        # Tags are Utf8View inside the engine; clients get plain Utf8 (Grafana and JDBC read no views).
        assert t.schema.field("name").type == pa.string()


def test_prepared_statement_with_bound_parameter(fleet):
    with connect(fleet, database="fleet") as conn, conn.cursor() as cur:
        for name, expected in [("truck-1", 100), ("truck-7", 100), ("nobody", 0)]:
            cur.execute("SELECT count(*) FROM readings WHERE name = ?", parameters=(name,))
            assert cur.fetchone() == (expected,)
        cur.execute("SELECT max(time) FROM readings WHERE name = $1 AND fuel > $2", parameters=("truck-2", 50))
        (latest,) = cur.fetchone()
        assert latest is not None


def test_a_prepared_statement_reads_rows_written_after_it_was_prepared(fleet):
    # The first execution reuses the plan made at prepare time; it must still read the rows
    # as they are when it runs, as every later execution (planned anew) does.
    def write(cur, k):
        t = pa.table({"time": pa.array([T0 + k], pa.timestamp("ns")), "dev": ["a"], "v": [float(k)]})
        cur.adbc_ingest("prep", t, mode="create_append", db_schema_name="lab")

    with connect(fleet) as conn, conn.cursor() as cur, conn.cursor() as writer:
        write(writer, 1)
        sql = "SELECT count(*), sum(v) FROM lab.prep"
        cur.adbc_prepare(sql)
        write(writer, 2)
        cur.execute(sql)
        assert cur.fetchall() == [(2, 3.0)]
        write(writer, 3)
        cur.execute(sql)
        assert cur.fetchall() == [(3, 6.0)]


def test_ingest_then_read_back_types_and_values(fleet):
    data = pa.table({
        "time": pa.array([T0, T0 + 1], pa.timestamp("ns")),
        "device": ["d1", "d1"],
        "temp": [21.5, 22.25],
        "count": pa.array([1, 2], pa.int64()),
        "ok": [True, False],
    })
    with connect(fleet, FLEET_RW, database="fleet") as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("ingested", data, mode="create", db_schema_name="fleet") == 2
        cur.execute("SELECT time, device, temp, count, ok FROM ingested ORDER BY time")
        back = cur.fetch_arrow_table()
        assert back.column("temp").to_pylist() == [21.5, 22.25]
        assert back.column("ok").to_pylist() == [True, False]
        assert back.column("device").to_pylist() == ["d1", "d1"]
        with pytest.raises(Exception, match="already exists"):
            cur.adbc_ingest("ingested", data, mode="create", db_schema_name="fleet")


def test_insert_through_sql(fleet):
    with connect(fleet, FLEET_RW, database="fleet") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO readings (time, name, velocity, fuel) VALUES (TIMESTAMP '2030-01-01T00:00:00Z', 'truck-x', 1.0, 5)")
        cur.fetchall()
        cur.execute("SELECT fuel FROM readings WHERE name = 'truck-x'")
        assert cur.fetchall() == [(5,)]


def test_wrong_token_is_an_authentication_error(fleet):
    with pytest.raises(Exception) as e:
        with connect(fleet, "not-a-token") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    assert "nauthenticated" in str(e.value) or "invalid token" in str(e.value)


def test_basic_auth_handshake(fleet):
    kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: None}
    kwargs.pop(DatabaseOptions.AUTHORIZATION_HEADER.value)
    with flightsql.connect(uri=fleet.flight, db_kwargs={"username": "admin", "password": ADMIN}) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM fleet.readings")
        assert cur.fetchone()[0] >= 1000


def test_bad_sql_reports_the_parser_message(fleet):
    with connect(fleet) as conn, conn.cursor() as cur:
        with pytest.raises(Exception) as e:
            cur.execute("SELEC 1")
            cur.fetchall()
        assert "Expected" in str(e.value) and "SELEC" in str(e.value)
        with pytest.raises(Exception) as e:
            cur.execute("SELECT * FROM fleet.nope")
            cur.fetchall()
        assert "not found" in str(e.value)


def test_token_isolation_over_flight(fleet):
    with connect(fleet, LAB_RO, database="lab") as conn, conn.cursor() as cur:
        cur.execute("SELECT v FROM other")
        assert cur.fetchall() == [(1.5,)]
        # The fleet database is invisible to this token.
        with pytest.raises(Exception, match="not found"):
            cur.execute("SELECT count(*) FROM fleet.readings")
            cur.fetchall()
        cur.execute("SELECT schema_name FROM information_schema.schemata")
        assert [r[0] for r in cur.fetchall()] == ["lab"]
        # Read-only: no writes, by ingest or by SQL.
        with pytest.raises(Exception, match="may not write"):
            cur.adbc_ingest("other", pa.table({"time": pa.array([T0], pa.timestamp("ns")), "v": [2.0]}), mode="append", db_schema_name="lab")
        with pytest.raises(Exception, match="permission denied"):
            cur.execute("INSERT INTO other (time, v) VALUES (TIMESTAMP '2030-01-01T00:00:00Z', 3.0)")
            cur.fetchall()
    with connect(fleet, FLEET_RW) as conn, conn.cursor() as cur:
        with pytest.raises(Exception, match="may not write"):
            cur.adbc_ingest("other", pa.table({"time": pa.array([T0], pa.timestamp("ns")), "v": [2.0]}), mode="append", db_schema_name="lab")


def test_million_row_result_streams_in_many_batches(fleet):
    n = 1_000_000
    with connect(fleet, FLEET_RW) as conn, conn.cursor() as cur:
        for start in range(0, n, 250_000):
            chunk = readings(250_000, start=T0 + 10**17 + start * 10_000_000_000, trucks=50)
            cur.adbc_ingest("big", chunk, mode="create_append", db_schema_name="fleet")
    rss_before = fleet.rss_kib()
    peak = rss_before
    with connect(fleet, database="fleet") as conn, conn.cursor() as cur:
        cur.execute("SELECT time, name, velocity, fuel FROM big")
        reader = cur.fetch_record_batch()
        rows = batches = 0
        for batch in reader:
            rows += batch.num_rows
            batches += 1
            if batches % 20 == 0:
                peak = max(peak, fleet.rss_kib())
    assert rows == n
    assert batches >= 50, f"{batches} batches: the result was not streamed"
    # The whole result as Arrow is ~40 MB; the server holds a few batches at a time.
    assert peak - rss_before < 400_000, f"server RSS grew by {(peak - rss_before) // 1024} MiB while streaming"
