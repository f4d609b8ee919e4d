"""Topic rules seen from a real client: AWS IoT-style `sql` rules (select list, WHERE, topic(n),
clientid()), the number and line protocol formats, static tags and tag_keys, time units, integer
columns that JSON numbers keep, and the 256-byte cut of rejected payloads."""

import json

import pytest
import requests

from conftest import Server
from mqtt_clients import metric, mosquitto_pub, rows

CONFIG = """
[[mqtt.rule]]
sql = "SELECT temp, humidity, temp * 1.8 + 32 AS temp_f, topic(2) AS device, clientid() AS client FROM 'devices/+/telemetry' WHERE temp > -50"
database = "aws"
table = "telemetry"
time_field = "timestamp"
tags = { site = "plant-1" }

[[mqtt.rule]]
topic = "plant/{line}/+"
database = "plant"
table = "sensors"
format = "number"

[[mqtt.rule]]
topic = "lp/{gateway}"
database = "lp"
format = "line_protocol"
precision = "s"

[[mqtt.rule]]
topic = "tags/{device_id}/telemetry"
database = "tagged"
table = "telemetry"
tag_keys = ["deviceId"]
time_field = "ts"
time_unit = "ms"

[[mqtt.rule]]
topic = "sensors/{device_id}/telemetry"
database = "iot"
table = "telemetry"
time_field = "timestamp"
"""


@pytest.fixture(scope="module")
def ruled(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("mqtt-rules") / "data", CONFIG)
    try:
        yield s
    finally:
        s.stop(timeout=10)
        print("--- server stderr ---\n" + s.output()[1])


def pub(server, topic, message, *args):
    r = mosquitto_pub(server.mqtt, topic, message, "-q", "1", *args)
    assert r.returncode == 0, r.stderr
    return r


def test_sql_rule_selects_computes_and_filters(ruled):
    pub(ruled, "devices/d-1/telemetry", '{"timestamp": 1733000000, "temp": 20, "humidity": 50, "extra": 1}',
        "-i", "client-x")
    pub(ruled, "devices/d-1/telemetry", '{"timestamp": 1733000001, "temp": -60, "humidity": 50}', "-i", "client-x")
    got = rows(ruled, "SELECT CAST(time AS BIGINT) AS t, * FROM telemetry", "aws")
    assert got == [{"t": 1_733_000_000 * 10**9, "time": "2024-11-30T20:53:20", "site": "plant-1", "temp": 20.0,
                    "humidity": 50.0, "temp_f": 68.0, "device": "d-1", "client": "client-x"}]
    assert rows(ruled, "SELECT * FROM _rejected", "aws") == [], "a reading dropped by WHERE is not a rejection"


def test_number_and_line_protocol_formats(ruled):
    pub(ruled, "plant/l1/temperature", " 21.5\n")
    assert rows(ruled, "SELECT line, temperature FROM sensors", "plant") == [{"line": "l1", "temperature": 21.5}]
    pub(ruled, "lp/gw1", "cpu,host=a usage=1.5 1733000000\nmem free=2i 1733000000")
    assert rows(ruled, "SELECT CAST(time AS BIGINT) AS t, gateway, host, usage FROM cpu", "lp") == [
        {"t": 1_733_000_000 * 10**9, "gateway": "gw1", "host": "a", "usage": 1.5}]
    assert rows(ruled, "SELECT gateway, free FROM mem", "lp") == [{"gateway": "gw1", "free": 2}]
    pub(ruled, "plant/l1/pressure", "warm")
    rej = rows(ruled, "SELECT topic, reason FROM _rejected", "plant")
    assert rej == [{"topic": "plant/l1/pressure", "reason": rej[0]["reason"]}] and "not a number" in rej[0]["reason"]


def test_tag_keys_and_millisecond_time_field(ruled):
    pub(ruled, "tags/t-1/telemetry", '{"deviceId": "abc", "ts": 1733000000250, "v": 1}')
    got = rows(ruled, "SELECT CAST(time AS BIGINT) AS t, * FROM telemetry", "tagged")
    assert got == [{"t": 1_733_000_000_250 * 10**6, "time": "2024-11-30T20:53:20.250", "device_id": "t-1",
                    "deviceId": "abc", "v": 1.0}]
    # Tags come before fields in a table's columns.
    assert list(got[0]) == ["t", "time", "device_id", "deviceId", "v"]


@pytest.mark.parametrize("unit, stamp, expected_ns", [
    ("s", 1_733_000_000, 1_733_000_000 * 10**9),
    ("ms", 1_733_000_000_123, 1_733_000_000_123 * 10**6),
    ("us", 1_733_000_000_123_456, 1_733_000_000_123_456 * 10**3),
    ("ns", 1_733_000_000_123_456_789, 1_733_000_000_123_456_789),
    ("rfc3339", "2024-11-30T20:53:20.123456789Z", 1_733_000_000_123_456_789),
], ids=lambda v: v if isinstance(v, str) and len(v) < 8 else "")
def test_time_unit_auto_by_magnitude(ruled, unit, stamp, expected_ns):
    device = f"unit-{unit}"
    pub(ruled, f"sensors/{device}/telemetry", json.dumps({"timestamp": stamp, "v": 1.0}))
    assert rows(ruled, f"SELECT CAST(time AS BIGINT) AS t FROM telemetry WHERE device_id = '{device}'", "iot") == [
        {"t": expected_ns}]


def test_json_integer_keeps_an_existing_integer_column(ruled):
    r = requests.post(f"{ruled.http}/api/v2/write", params={"bucket": "iot", "precision": "s"},
                      data="telemetry,device_id=int-1 count=3i 1733000000\n", timeout=10)
    assert r.status_code == 204, r.text
    pub(ruled, "sensors/int-1/telemetry", '{"timestamp": 1733000001, "count": 4}')
    got = rows(ruled, "SELECT count FROM telemetry WHERE device_id = 'int-1' ORDER BY time", "iot")
    assert got == [{"count": 3}, {"count": 4}] and all(isinstance(g["count"], int) for g in got), got
    # A fraction cannot go into the integer column: rejected, not truncated.
    before = metric(ruled, "telemark_mqtt_payloads_rejected_total")
    pub(ruled, "sensors/int-1/telemetry", '{"timestamp": 1733000002, "count": 4.5}', "-i", "int-client")
    assert rows(ruled, "SELECT count FROM telemetry WHERE device_id = 'int-1' ORDER BY time", "iot") == got
    rej = rows(ruled, "SELECT reason FROM _rejected WHERE client_id = 'int-client'", "iot")
    assert len(rej) == 1 and "count" in rej[0]["reason"], rej
    assert metric(ruled, "telemark_mqtt_payloads_rejected_total") == before + 1


def test_rejected_payload_keeps_the_first_256_bytes(ruled):
    long = '{"v": "' + "x" * 400  # invalid JSON: unterminated
    pub(ruled, "sensors/long-1/telemetry", long, "-i", "long-client")
    rej = rows(ruled, "SELECT payload, payload_bytes FROM _rejected WHERE client_id = 'long-client'", "iot")
    assert len(rej) == 1, rej
    assert rej[0]["payload_bytes"] == len(long), (
        f"payload_bytes must be the size of the whole payload ({len(long)} bytes), not of the part kept: {rej}")
    assert rej[0]["payload"].startswith(long[:256]) and not rej[0]["payload"].startswith(long[:257]), rej
