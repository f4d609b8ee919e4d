"""Who may publish what on the plain MQTT listener: the client id is the identity an `identity`
rule checks; with tokens configured, CONNECT needs a token as the password, and a token writes only
its own databases. Refusals are PUBACK 0x87 on MQTT 5 and a closed connection on 3.1.1."""

import json

import pytest

from conftest import ADMIN, FLEET_RW, LAB_RO, Server, token_config
from mqtt_clients import RawConnection, metric, mosquitto_pub, publish_packet, rows

RULES = """
[[mqtt.rule]]
topic = "sensors/{device_id}/telemetry"
database = "iot"
table = "telemetry"
time_field = "timestamp"

[[mqtt.rule]]
topic = "fleet/{fleet}/{device_id}/readings"
database = "fleet"
table = "readings"
time_field = "timestamp"
identity = "device_id"
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("mqtt-policy") / "data", token_config() + RULES)
    try:
        yield s
    finally:
        s.stop(timeout=10)
        print("--- server stderr ---\n" + s.output()[1])


def pub(server, topic, ts, *args, token=FLEET_RW):
    creds = ["-u", "device", "-P", token] if token is not None else []
    return mosquitto_pub(server.mqtt, topic, json.dumps({"timestamp": ts, "v": float(ts % 1000)}), "-q", "1",
                         *creds, *args)


def stored(server, db, table, device):
    return rows(server, f"SELECT CAST(time AS BIGINT) AS t FROM {table} WHERE device_id = '{device}'", db, token=ADMIN)


def test_client_id_must_match_the_identity_level(secured):
    denied = metric(secured, "telemark_mqtt_policy_denied_total")
    r = pub(secured, "fleet/f1/sensor-2/readings", 1_733_000_001, "-i", "sensor-1", "-V", "mqttv5", "-d")
    assert "received PUBACK (Mid: 1, RC:135)" in r.stdout, r.stdout + r.stderr
    r = pub(secured, "fleet/f1/sensor-2/readings", 1_733_000_002, "-i", "sensor-1", "-V", "mqttv311", "-d")
    assert r.returncode != 0 and "received PUBACK" not in r.stdout, f"3.1.1 refusal must close the connection: {r}"
    assert metric(secured, "telemark_mqtt_policy_denied_total") == denied + 2
    log = secured.output()[1]
    assert "publish refused" in log and "client_id=sensor-1" in log and "topic=fleet/f1/sensor-2/readings" in log, log

    r = pub(secured, "fleet/f1/sensor-2/readings", 1_733_000_003, "-i", "sensor-2", "-V", "mqttv5", "-d")
    assert r.returncode == 0 and "RC:0)" in r.stdout, r.stdout + r.stderr
    assert stored(secured, "fleet", "readings", "sensor-2") == [{"t": 1_733_000_003 * 10**9}]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_connect_without_a_valid_token_is_refused(secured, version):
    refused = metric(secured, "telemark_mqtt_connections_refused_total")
    topic = f"sensors/auth-{version}/telemetry"
    attempts = {
        "no password": pub(secured, topic, 1_733_000_010, "-V", version, token=None),
        "wrong token": pub(secured, topic, 1_733_000_011, "-V", version, token="not-a-token"),
        # The admin token is bound to username "admin".
        "wrong username": mosquitto_pub(secured.mqtt, topic, '{"timestamp": 1733000012, "v": 1}', "-q", "1",
                                        "-V", version, "-u", "bob", "-P", ADMIN),
    }
    for what, r in attempts.items():
        assert r.returncode != 0, f"{what}: connected: {r}"
        text = (r.stdout + r.stderr).lower()
        assert "refused" in text or "not authori" in text or "bad user" in text, f"{what}: {r}"
    assert metric(secured, "telemark_mqtt_connections_refused_total") == refused + 3
    assert stored(secured, "iot", "telemetry", f"auth-{version}") == []
    ok = mosquitto_pub(secured.mqtt, topic, '{"timestamp": 1733000013, "v": 1}', "-q", "1", "-V", version,
                       "-u", "admin", "-P", ADMIN)
    assert ok.returncode == 0, ok
    assert stored(secured, "iot", "telemetry", f"auth-{version}") == [{"t": 1_733_000_013 * 10**9}]


def test_token_writes_only_its_databases(secured):
    # fleet-rw may write `fleet` but not `iot`; lab-ro may write nothing.
    for token, device in [(FLEET_RW, "rw-1"), (LAB_RO, "ro-1")]:
        r = pub(secured, f"sensors/{device}/telemetry", 1_733_000_020, "-V", "mqttv5", "-d", token=token)
        assert "received PUBACK (Mid: 1, RC:135)" in r.stdout, r.stdout + r.stderr
        assert stored(secured, "iot", "telemetry", device) == []
    assert "may not write database `iot`" in secured.output()[1]

    # MQTT 3.1.1 has no refusal code: the connection is closed without a PUBACK.
    raw = RawConnection(secured.mqtt)
    try:
        assert raw.connect(client_id="ro-raw", version=4, username="device", password=LAB_RO) == b"\x20\x02\x00\x00"
        raw.send(publish_packet("sensors/ro-raw/telemetry", b'{"timestamp": 1733000021, "v": 1}', qos=1, packet_id=7))
        assert raw.read_until_eof(timeout=5) == b"", "a 3.1.1 publish without the right must get no PUBACK"
    finally:
        raw.close()
    assert stored(secured, "iot", "telemetry", "ro-raw") == []

    r = pub(secured, "fleet/f1/rw-1/readings", 1_733_000_022, "-i", "rw-1", "-V", "mqttv5", "-d", token=FLEET_RW)
    assert r.returncode == 0 and "RC:0)" in r.stdout, r.stdout + r.stderr
    assert stored(secured, "fleet", "readings", "rw-1") == [{"t": 1_733_000_022 * 10**9}]
