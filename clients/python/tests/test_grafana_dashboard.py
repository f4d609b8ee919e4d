"""The Grafana fleet dashboard (`clients/grafana/dashboards/fleet.json`): every panel's SQL, after
the FlightSQL plugin's macro expansion for a fixed time range and the `truck` variable, runs through
the ADBC Flight SQL driver (the Go client the plugin uses) against a server holding a small fleet
with alerts firing, and returns rows of the shape its panel draws."""

import datetime
import json
import pathlib
import re
import time

import pyarrow as pa
import requests

from conftest import ADMIN, connect, token_config

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "fleet.json"
NS = 1_000_000_000
TRUCKS = 12
STEP = 60 * NS
# Minutes of rows: longer than the panels' two-hour range, so the gap-filled
# panel always has a value before the range to carry into its first bucket
# (with exactly two hours, a range starting late in a 5-minute bucket had no
# row in it nor before it, and the test failed one run in five).
HISTORY = 130
INTERVAL_S = 300

RULES = """
[[alert.rule]]
name = "truck-offline"
database = "fleet"
table = "readings"
kind = "offline"
after = "2s"
device_tag = "name"

[[alert.rule]]
name = "low-fuel"
database = "fleet"
table = "diagnostics"
kind = "threshold"
field = "fuel_state"
op = "<"
value = 0.1
device_tag = "name"
"""


def expand(sql, start_ns, end_ns, truck):
    """The plugin's macros (grafana-flightsql-datasource pkg/flightsql/macro.go and the SDK's
    sqlutil defaults), then Grafana's variable substitution."""
    def rfc3339(ns):
        return datetime.datetime.fromtimestamp(ns / NS, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    frm, to = rfc3339(start_ns), rfc3339(end_ns)
    sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m[1]} >= '{frm}' AND {m[1]} <= '{to}'", sql)
    sql = re.sub(r"\$__timeFrom\((\w+)\)", lambda m: f"{m[1]} >= '{frm}'", sql)
    sql = re.sub(r"\$__timeTo\((\w+)\)", lambda m: f"{m[1]} <= '{to}'", sql)
    sql = re.sub(r"\$__dateBinAlias\((\w+)\)", lambda m: (
        f"date_bin(interval '{INTERVAL_S} second', {m[1]}, timestamp '1970-01-01T00:00:00Z') as {m[1]}_binned"), sql)
    sql = re.sub(r"\$__dateBin\((\w+)\)", lambda m: (
        f"date_bin(interval '{INTERVAL_S} second', {m[1]}, timestamp '1970-01-01T00:00:00Z')"), sql)
    sql = sql.replace("$__interval", f"interval '{INTERVAL_S} second'")
    sql = sql.replace("${truck}", truck).replace("$truck", truck)
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


def load_fleet(server, end_ns):
    """Readings and diagnostics of TRUCKS trucks every minute for HISTORY minutes up to `end_ns`."""
    lines = []
    for m in range(HISTORY):
        t = end_ns - (HISTORY - 1 - m) * STEP
        for i in range(TRUCKS):
            tags = f"name=truck-{i},fleet={'North' if i % 2 else 'South'},driver=D{i}"
            lines.append(f"readings,{tags} latitude={40 + i * 0.1 + m * 0.001},longitude={-3 - i * 0.1},"
                         f"velocity={(m * 7 + i) % 90}.5 {t}")
            fuel = 0.05 if (i == 3 and m == HISTORY - 1) else max(0.2, 1 - m / HISTORY)
            lines.append(f"diagnostics,{tags} fuel_state={fuel},load={i * 100}i,status={m % 3}i {t}")
    for chunk in range(0, len(lines), 5000):
        r = requests.post(f"{server.http}/api/v2/write", params={"bucket": "fleet", "org": "any", "precision": "ns"},
                          data="\n".join(lines[chunk:chunk + 5000]).encode(),
                          headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        assert r.status_code == 204, r.text


def firing(server):
    r = requests.get(f"{server.http}/api/v3/alerts", params={"state": "firing"},
                     headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {(a["rule"], a["device"]) for a in r.json()["alerts"]}


def numeric(t):
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def test_every_panel_of_the_fleet_dashboard_returns_what_it_draws(start_server):
    dash = json.loads(DASHBOARD.read_text())
    s = start_server(token_config() + RULES)
    end_ns = time.time_ns() // NS * NS
    load_fleet(s, end_ns)
    # The trucks fall silent: each goes offline; truck-3's last fuel reading fired low-fuel.
    deadline = time.time() + 20
    while time.time() < deadline and sum(r == "truck-offline" for r, _ in firing(s)) < TRUCKS:
        time.sleep(0.5)
    alerts = firing(s)
    assert sum(r == "truck-offline" for r, _ in alerts) == TRUCKS, alerts
    assert ("low-fuel", "truck-3") in alerts, alerts

    start_ns = end_ns - 2 * 3600 * NS
    with connect(s, ADMIN, database="fleet") as conn, conn.cursor() as cur:
        [variable] = dash["templating"]["list"]
        cur.execute(variable["query"]["queryText"])
        trucks = cur.fetch_arrow_table()
        assert trucks.num_columns == 1 and trucks.num_rows == TRUCKS, trucks
        names = trucks.column(0).to_pylist()
        assert names == sorted(f"truck-{i}" for i in range(TRUCKS)), names
        truck = "truck-3"

        checked = set()
        for panel in dash["panels"]:
            [target] = panel["targets"]
            assert target["datasource"]["uid"] == "telemark"
            sql = expand(target["queryText"], start_ns, end_ns, truck)
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            title, kind = panel["title"], panel["type"]
            assert table.num_rows > 0, f"{title}: no rows from {sql}"
            if kind == "timeseries":
                assert target["format"] == "time_series"
                assert pa.types.is_timestamp(table.schema.field("time").type), (title, table.schema)
                times = table.column("time").to_pylist()
                assert times == sorted(times), f"{title}: a time series must come sorted by time"
                assert any(numeric(f.type) for f in table.schema if f.name != "time"), (title, table.schema)
                buckets = {t for t in times}
                assert len(buckets) >= 2 * 3600 // INTERVAL_S - 1, f"{title}: {len(buckets)} buckets"
            elif kind == "stat":
                assert table.num_rows == 1 and table.num_columns == 1 and numeric(table.schema.field(0).type), (title, table)
            elif kind == "geomap":
                for col in ("latitude", "longitude"):
                    assert numeric(table.schema.field(col).type), (title, table.schema)
                assert table.num_rows == TRUCKS
            elif kind == "table":
                assert table.num_rows == TRUCKS and "name" in table.column_names, (title, table.schema)
            else:
                raise AssertionError(f"{title}: no check for panel type {kind}")
            checked.add(title)
            if title == "Trucks reporting":
                assert table.column(0)[0].as_py() == TRUCKS
            if title == "Trucks offline":
                assert table.column(0)[0].as_py() == TRUCKS
            if title == "Alerts firing":
                assert table.column(0)[0].as_py() == TRUCKS + 1
            if title == "Latest state of every truck":
                rows = {r["name"]: r for r in table.to_pylist()}
                assert rows["truck-3"]["fuel_state"] == 0.05 and rows["truck-5"]["load"] == 500, rows["truck-3"]
            if title == "Fuel of $truck":
                # Gap filled: every bucket of the range, each with a value (locf).
                first, last = (start_ns // NS) // INTERVAL_S, (end_ns // NS) // INTERVAL_S
                assert table.num_rows == last - first + 1, (table.num_rows, first, last)
                assert None not in table.column("fuel_state").to_pylist(), table
            if title == "Last positions":
                rows = {r["name"]: r for r in table.to_pylist()}
                assert abs(rows["truck-2"]["latitude"] - (40.2 + (HISTORY - 1) * 0.001)) < 1e-9, rows["truck-2"]
        assert len(checked) == len(dash["panels"]) == 8
