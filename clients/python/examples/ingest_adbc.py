"""Bulk-load rows into Telemark with ADBC ingest (Flight SQL CommandStatementIngest).

    python ingest_adbc.py grpc://127.0.0.1:8182 fleet [TOKEN]

String columns of a new table become tags; numbers and booleans become fields;
`time` must be a timestamp (or integer nanoseconds).
"""

import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
from adbc_driver_flightsql import DatabaseOptions


def main():
    uri, database = sys.argv[1:3]
    kwargs = {}
    if len(sys.argv) > 3:
        kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {sys.argv[3]}"
    now = time.time_ns()
    table = pa.table({
        "time": pa.array([now - i * 10_000_000_000 for i in range(100)], pa.timestamp("ns")),
        "device_id": [f"sensor-{i % 5:03d}" for i in range(100)],
        "temp": [20.0 + (i % 7) / 10 for i in range(100)],
        "battery": pa.array([100 - i % 30 for i in range(100)], pa.int64()),
    })
    with flightsql.connect(uri=uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        rows = cur.adbc_ingest("sensors", table, mode="create_append", db_schema_name=database)
        print(f"wrote {rows} rows to {database}.sensors")


if __name__ == "__main__":
    main()
