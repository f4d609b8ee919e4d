"""MQTT over TLS with X.509 device certificates made by the `openssl` CLI: a certificate from the
configured CA is the device's identity (its CN); other CAs and missing certificates are refused;
an `identity` rule keeps a device to its own topic level whatever client id it claims."""

import json

import pytest

from conftest import Server
from mqtt_clients import make_ca, make_cert, metric, mosquitto_pub, rows


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca")
    rogue_ca = make_ca(d, "rogue-ca")
    return {
        "ca": ca,
        "server": make_cert(d, "server", "localhost", ca, "server"),
        "device": make_cert(d, "dev", "sensor-007", ca, "client"),
        # Same CN as the real device, but vouched for by a CA the server does not trust.
        "rogue": make_cert(d, "rogue", "sensor-007", rogue_ca, "client"),
    }


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    config = f"""
[mqtt.tls]
cert = "{pki['server'][0]}"
key = "{pki['server'][1]}"
client_ca = "{pki['ca'][0]}"

[[mqtt.rule]]
topic = "sensors/{{device_id}}/telemetry"
database = "iot"
table = "telemetry"
time_field = "timestamp"

[[mqtt.rule]]
topic = "fleet/{{fleet}}/{{device_id}}/readings"
database = "fleet"
table = "readings"
time_field = "timestamp"
identity = "device_id"
"""
    s = Server(tmp_path_factory.mktemp("mqtt-tls") / "data", config)
    try:
        assert s.mqtts is not None, f"no 'MQTT over TLS listening on' line: {s.output()}"
        yield s
    finally:
        s.stop(timeout=10)
        print("--- server stderr ---\n" + s.output()[1])


def tls_pub(server, pki, topic, payload, *args, cert="device"):
    tls = ["--cafile", str(pki["ca"][0])]
    if cert:
        tls += ["--cert", str(pki[cert][0]), "--key", str(pki[cert][1])]
    return mosquitto_pub(server.mqtts, topic, payload, "-q", "1", *tls, *args)


def test_device_certificate_from_the_ca_publishes(tls_server, pki):
    r = tls_pub(tls_server, pki, "sensors/sensor-007/telemetry", json.dumps({"timestamp": 1_733_000_000, "temp": 21.5}))
    assert r.returncode == 0, r.stderr
    assert rows(tls_server, "SELECT device_id, temp FROM telemetry", "iot") == [{"device_id": "sensor-007", "temp": 21.5}]


def test_certificate_from_another_ca_is_refused(tls_server, pki):
    refused = metric(tls_server, "telemark_mqtt_connections_refused_total")
    r = tls_pub(tls_server, pki, "sensors/rogue-007/telemetry", json.dumps({"timestamp": 1_733_000_001, "temp": 1.0}),
                cert="rogue")
    assert r.returncode != 0, f"a rogue CA's certificate was accepted: {r}"
    assert rows(tls_server, "SELECT * FROM telemetry WHERE device_id = 'rogue-007'", "iot") == []
    assert metric(tls_server, "telemark_mqtt_connections_refused_total") > refused
    assert "MQTT TLS handshake refused" in tls_server.output()[1] and "UnknownIssuer" in tls_server.output()[1]


def test_missing_client_certificate_is_refused(tls_server, pki):
    r = tls_pub(tls_server, pki, "sensors/anon-007/telemetry", json.dumps({"timestamp": 1_733_000_002, "temp": 1.0}),
                cert=None)
    assert r.returncode != 0, f"a device without a certificate was accepted: {r}"
    assert rows(tls_server, "SELECT * FROM telemetry WHERE device_id = 'anon-007'", "iot") == []
    assert "peer sent no certificates" in tls_server.output()[1]


def test_certificate_identity_binds_the_device_level_of_the_topic(tls_server, pki):
    denied = metric(tls_server, "telemark_mqtt_policy_denied_total")
    # The device claims client id sensor-008, but its certificate says sensor-007: refused (v5 PUBACK 0x87 = 135).
    r = tls_pub(tls_server, pki, "fleet/f1/sensor-008/readings", json.dumps({"timestamp": 1_733_000_003, "v": 8.0}),
                "-V", "mqttv5", "-d", "-i", "sensor-008")
    assert "received PUBACK (Mid: 1, RC:135)" in r.stdout, r.stdout + r.stderr
    assert "Not authorized" in r.stderr, r.stderr
    assert metric(tls_server, "telemark_mqtt_policy_denied_total") == denied + 1
    log = tls_server.output()[1]
    assert "publish refused" in log and "client_id=sensor-008" in log and "topic=fleet/f1/sensor-008/readings" in log, log
    # Its own level is allowed, whatever client id it uses.
    r = tls_pub(tls_server, pki, "fleet/f1/sensor-007/readings", json.dumps({"timestamp": 1_733_000_004, "v": 7.0}),
                "-V", "mqttv5", "-d", "-i", "some-other-client-id")
    assert r.returncode == 0 and "received PUBACK (Mid: 1, RC:0)" in r.stdout, r.stdout + r.stderr
    assert rows(tls_server, "SELECT fleet, device_id, v FROM readings", "fleet") == [
        {"fleet": "f1", "device_id": "sensor-007", "v": 7.0}]
