"""A malformed or forbidden packet closes only the connection that sent it: a raw socket sends
each one and must see the server close it within seconds, while a paho device connected before
keeps publishing QoS 1 messages that are acknowledged and stored."""

import json

import pytest

from mqtt_clients import (PahoDevice, RawConnection, connect_packet, metric, publish_packet, remaining_length, rows,
                          subscribe_packet, wait_until)

MAX_PACKET = 4096


def _garbage_before_connect(raw):
    raw.send(b"\x00\x00GARBAGE\xff\xff")


def _ping_before_connect(raw):
    raw.send(b"\xc0\x00")


def _remaining_length_over_four_bytes(raw):
    raw.connect(client_id="raw-len")
    raw.send(b"\x30\xff\xff\xff\xff\x01")


def _publish_larger_than_max_packet_bytes(raw):
    raw.connect(client_id="raw-big")
    # Announce 10 MB and send only the start: the server must refuse on the header, not buffer it.
    raw.send(b"\x32" + remaining_length(10_000_000) + b"\x00\x0dsensors/x/big\x00\x01")


def _publish_larger_than_max_packet_bytes_v5(raw):
    ack = raw.connect(client_id="raw-big-v5", version=5)
    assert ack[2:4] == b"\x00\x00", f"CONNACK {ack!r}"
    raw.send(b"\x32" + remaining_length(MAX_PACKET + 1) + b"\x00\x0dsensors/x/big\x00\x01")


def _subscribe_with_packet_id_zero(raw):
    raw.connect(client_id="raw-sub0")
    raw.send(subscribe_packet(0, "sensors/#"))


def _second_connect(raw):
    raw.connect(client_id="raw-twice")
    raw.send(connect_packet(client_id="raw-twice"))


def _publish_to_a_wildcard_topic(raw):
    raw.connect(client_id="raw-wild")
    raw.send(publish_packet("sensors/+/telemetry", b'{"v": 1}', qos=1, packet_id=3))


def _pingreq_with_a_body(raw):
    raw.connect(client_id="raw-ping")
    raw.send(b"\xc0\x01\x00")


CASES = {
    "garbage before CONNECT": (_garbage_before_connect, "expected CONNECT first"),
    "PINGREQ before CONNECT": (_ping_before_connect, "expected CONNECT first"),
    "remaining length over 4 bytes": (_remaining_length_over_four_bytes, "remaining length longer than 4 bytes"),
    "PUBLISH over max_packet_bytes (3.1.1)": (_publish_larger_than_max_packet_bytes, "exceeds the maximum packet size"),
    "PUBLISH over max_packet_bytes (5.0)": (_publish_larger_than_max_packet_bytes_v5, "exceeds the maximum packet size"),
    "SUBSCRIBE with packet id 0": (_subscribe_with_packet_id_zero, "packet identifier 0"),
    "second CONNECT": (_second_connect, "a second CONNECT"),
    "PUBLISH to a wildcard topic": (_publish_to_a_wildcard_topic, "contains `+`"),
    "PINGREQ with a body": (_pingreq_with_a_body, "PINGREQ has no body"),
}


@pytest.fixture
def broker_with_keeper(start_server):
    s = start_server(f"[mqtt]\nmax_packet_bytes = {MAX_PACKET}\n")
    keeper = PahoDevice(s.mqtt, client_id="keeper")
    try:
        yield s, keeper
    finally:
        keeper.close()


def test_malformed_packets_close_only_their_connection(broker_with_keeper):
    s, keeper = broker_with_keeper
    errors_before = metric(s, "telemark_mqtt_protocol_errors_total")
    seq = 0

    def keeper_publishes():
        nonlocal seq
        seq += 1
        keeper.publish_acked("sensors/keeper/telemetry", json.dumps({"timestamp": 1_733_000_000 + seq, "seq": seq}))

    keeper_publishes()
    for name, (send, logged) in CASES.items():
        raw = RawConnection(s.mqtt)
        try:
            send(raw)
            tail = raw.read_until_eof(timeout=5)
        finally:
            raw.close()
        if name.endswith("(5.0)"):
            # MQTT 5 says why: DISCONNECT with reason 0x95 (Packet too large).
            assert tail[:1] == b"\xe0" and tail[2:3] == b"\x95", f"{name}: expected DISCONNECT 0x95, got {tail!r}"
        else:
            assert tail == b"", f"{name}: the server answered {tail!r} before closing"
        wait_until(lambda: logged in s.output()[1], 5, what=f"{name}: a log line with {logged!r}")
        keeper_publishes()
        assert keeper.connected and keeper.disconnects == [], f"{name}: the keeper's connection was affected"

    assert metric(s, "telemark_mqtt_protocol_errors_total") - errors_before == len(CASES)
    stored = rows(s, "SELECT seq FROM telemetry WHERE device_id = 'keeper' ORDER BY time", "iot")
    assert [r["seq"] for r in stored] == [float(i) for i in range(1, seq + 1)]
    # Nothing the raw sockets sent was stored.
    assert rows(s, "SELECT count(*) AS n FROM telemetry WHERE device_id <> 'keeper'", "iot") == [{"n": 0}]
