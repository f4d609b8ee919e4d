"""Query Telemark from Python with the ADBC Flight SQL driver.

    pip install adbc-driver-flightsql pyarrow
    python query_adbc.py grpc://127.0.0.1:8182 fleet "SELECT count(*) FROM readings" [TOKEN]
"""

import sys

import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions


def main():
    uri, database, sql = sys.argv[1:4]
    kwargs = {"adbc.flight.sql.rpc.call_header.database": database}
    if len(sys.argv) > 4:
        kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {sys.argv[4]}"
    with flightsql.connect(uri=uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute(sql)
        print(cur.fetch_arrow_table())


if __name__ == "__main__":
    main()
