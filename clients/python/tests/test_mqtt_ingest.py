"""MQTT ingest with real clients: mosquitto_pub at every QoS over MQTT 3.1.1 and 5.0 lands
in `iot.telemetry` through the default rule; payloads a rule cannot decode land in `_rejected`
without disturbing the good messages around them on the same connection."""

import json

import pytest

from conftest import Server
from mqtt_clients import PahoDevice, metric, mosquitto_pub, rows, wait_until

EXACT = '{"deviceId":"sensor-001","timestamp":1733000000,"temp":72.4,"humidity":34,"battery":89}'


@pytest.fixture(scope="module")
def iot(tmp_path_factory):
    """A server with no config: the default rule `sensors/{device_id}/telemetry` → iot.telemetry."""
    s = Server(tmp_path_factory.mktemp("mqtt-ingest") / "data", "")
    try:
        yield s
    finally:
        s.stop(timeout=10)
        print("--- server stderr ---\n" + s.output()[1])


def telemetry(server, device):
    return rows(server, f"SELECT CAST(time AS BIGINT) AS t, * FROM telemetry WHERE device_id = '{device}' ORDER BY time",
                "iot")


def test_the_readme_payload_is_stored_with_its_time_and_device_tag(iot):
    r = mosquitto_pub(iot.mqtt, "sensors/sensor-001/telemetry", EXACT, "-q", "1")
    assert r.returncode == 0, r.stderr
    got = telemetry(iot, "sensor-001")
    assert got == [{
        "t": 1_733_000_000 * 10**9, "time": "2024-11-30T20:53:20", "device_id": "sensor-001",
        "deviceId": "sensor-001", "temp": 72.4, "humidity": 34.0, "battery": 89.0,
    }]
    # JSON integers become floats in a new table: the column types say so.
    types = {r["column_name"]: r["data_type"] for r in rows(
        iot, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'telemetry'", "iot")}
    assert types["humidity"] == "Float64" and types["battery"] == "Float64", types


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_at_each_qos_and_version(iot, qos, version):
    device = f"pub-q{qos}-{version}"
    ts = 1_733_000_100 + qos * 10 + (5 if version == "mqttv5" else 0)
    payload = json.dumps({"deviceId": device, "timestamp": ts, "temp": 20.5 + qos, "humidity": 40 + qos})
    r = mosquitto_pub(iot.mqtt, f"sensors/{device}/telemetry", payload, "-q", str(qos), "-V", version, "-d")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "received CONNACK (0)" in r.stdout, r.stdout
    if qos == 1:
        assert "received PUBACK (Mid: 1" in r.stdout, r.stdout
        if version == "mqttv5":
            assert "RC:0)" in r.stdout, r.stdout
    if qos == 2:
        assert "received PUBREC" in r.stdout and "received PUBCOMP" in r.stdout, r.stdout
    # QoS 1 and 2 are acknowledged only once durable, so the row is there now; QoS 0 is not acked.
    got = telemetry(iot, device) if qos else wait_until(lambda: telemetry(iot, device), 5, what=f"row of {device}")
    assert got == [{"t": ts * 10**9, "time": got[0]["time"], "device_id": device, "deviceId": device,
                    "temp": 20.5 + qos, "humidity": 40.0 + qos}]


def test_bad_payloads_go_to_rejected_and_good_ones_around_them_are_stored(iot):
    rejected_before = metric(iot, "telemark_mqtt_payloads_rejected_total")
    topic = "sensors/bad-1/telemetry"
    dev = PahoDevice(iot.mqtt, client_id="bad-payload-client")
    try:
        dev.publish_acked(topic, json.dumps({"timestamp": 1_733_000_200, "temp": 1.5, "seq": 1}))
        bad = {
            "invalid-json": b'{"temp": 1.5,',
            "number": b"42",
            "non-utf8": b'{"timestamp": 1733000201, "note": "caf\xe9 \xff"}',
            "type-conflict": b'{"timestamp": 1733000202, "temp": "hot", "seq": 2}',
        }
        for payload in bad.values():
            dev.publish_acked(topic, payload)  # acknowledged: a redelivery would not make it any better
        dev.publish_acked(topic, json.dumps({"timestamp": 1_733_000_203, "temp": 2.5, "seq": 3}))
        assert dev.disconnects == [], "the connection must survive bad payloads"
    finally:
        dev.close()

    good = rows(iot, "SELECT CAST(time AS BIGINT) AS t, temp, seq FROM telemetry WHERE device_id = 'bad-1' ORDER BY time",
                "iot")
    assert [(g["t"], g["temp"], g["seq"]) for g in good] == [
        (1_733_000_200 * 10**9, 1.5, 1.0), (1_733_000_203 * 10**9, 2.5, 3.0)], good

    rej = rows(iot, f"SELECT topic, client_id, reason, payload, payload_bytes FROM _rejected "
                    f"WHERE client_id = 'bad-payload-client' ORDER BY time", "iot")
    assert len(rej) == 4, rej
    assert all(r["topic"] == topic for r in rej), rej
    by_payload = {r["payload"]: r for r in rej}
    invalid = by_payload['{"temp": 1.5,']
    assert invalid["reason"].startswith("invalid JSON") and invalid["payload_bytes"] == 13, invalid
    number = by_payload["42"]
    assert "object" in number["reason"] and "number" in number["reason"], number
    non_utf8 = [r for r in rej if "\\xff" in r["payload"]]
    assert len(non_utf8) == 1, rej
    assert "unicode" in non_utf8[0]["reason"].lower() or "utf-8" in non_utf8[0]["reason"].lower(), non_utf8
    assert non_utf8[0]["payload_bytes"] == len(bad["non-utf8"])
    conflict = by_payload[bad["type-conflict"].decode()]
    assert "temp" in conflict["reason"] and "string" in conflict["reason"], conflict

    assert metric(iot, "telemark_mqtt_payloads_rejected_total") - rejected_before == 4
