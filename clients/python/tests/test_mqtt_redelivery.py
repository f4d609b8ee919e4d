"""Redelivery without duplicates, with hand-built packets so the resends are exactly what the spec
allows: a QoS 1 DUP resend (same connection, or a resumed persistent session) of a payload without
its own time reuses the first time; a repeated QoS 2 PUBLISH before PUBREL is answered with PUBREC
again and not stored twice; PUBREL for an unknown id still gets PUBCOMP."""

import json

import pytest

from mqtt_clients import RawConnection, ack_packet, publish_packet, rows, wait_until

PUBACK, PUBREC, PUBCOMP = 0x40, 0x50, 0x70


@pytest.fixture
def broker(start_server):
    return start_server()


def count(broker, device):
    got = rows(broker, f"SELECT count(*) AS n FROM telemetry WHERE device_id = '{device}'", "iot")
    return got[0]["n"] if got else 0


def payload(n):
    return json.dumps({"temp": 20.0 + n}).encode()  # no timestamp: rows get the server's time


def test_qos1_dup_resend_on_the_same_connection_is_stored_once(broker):
    raw = RawConnection(broker.mqtt)
    try:
        raw.connect(client_id="dup-live")
        raw.send(publish_packet("sensors/dup-live/telemetry", payload(1), qos=1, packet_id=9))
        raw.send(publish_packet("sensors/dup-live/telemetry", payload(1), qos=1, packet_id=9, dup=True))
        assert raw.read_packet() == (PUBACK, b"\x00\x09")
        assert raw.read_packet() == (PUBACK, b"\x00\x09")
    finally:
        raw.close()
    assert count(broker, "dup-live") == 1


def test_qos1_dup_resend_in_a_resumed_session_is_stored_once(broker):
    first = RawConnection(broker.mqtt)
    try:
        assert first.connect(client_id="dup-resume", clean=False) == b"\x20\x02\x00\x00"
        first.send(publish_packet("sensors/dup-resume/telemetry", payload(2), qos=1, packet_id=11))
        # Stored, but the PUBACK is never read: the connection drops, so the device must resend.
        wait_until(lambda: count(broker, "dup-resume") == 1, 5, what="the first copy to be stored")
    finally:
        first.close()
    second = RawConnection(broker.mqtt)
    try:
        ack = second.connect(client_id="dup-resume", clean=False)
        assert ack == b"\x20\x02\x01\x00", f"expected session present: {ack!r}"
        second.send(publish_packet("sensors/dup-resume/telemetry", payload(2), qos=1, packet_id=11, dup=True))
        assert second.read_packet() == (PUBACK, b"\x00\x0b")
    finally:
        second.close()
    assert count(broker, "dup-resume") == 1


def test_qos2_repeated_publish_before_pubrel_is_not_stored_twice(broker):
    raw = RawConnection(broker.mqtt)
    try:
        raw.connect(client_id="q2-live")
        topic = "sensors/q2-live/telemetry"
        raw.send(publish_packet(topic, payload(3), qos=2, packet_id=5))
        assert raw.read_packet() == (PUBREC, b"\x00\x05")
        raw.send(publish_packet(topic, payload(3), qos=2, packet_id=5, dup=True))
        assert raw.read_packet() == (PUBREC, b"\x00\x05"), "a repeated PUBLISH before PUBREL must get PUBREC again"
        raw.send(ack_packet("PUBREL", 5))
        assert raw.read_packet() == (PUBCOMP, b"\x00\x05")
        raw.send(ack_packet("PUBREL", 77))
        assert raw.read_packet() == (PUBCOMP, b"\x00\x4d"), "PUBREL for an unknown id must get PUBCOMP"
        assert count(broker, "q2-live") == 1
        # After PUBCOMP the id is free again: a new message with it is a new message.
        raw.send(publish_packet(topic, payload(4), qos=2, packet_id=5))
        assert raw.read_packet() == (PUBREC, b"\x00\x05")
        raw.send(ack_packet("PUBREL", 5))
        assert raw.read_packet() == (PUBCOMP, b"\x00\x05")
    finally:
        raw.close()
    assert count(broker, "q2-live") == 2


def test_qos2_state_survives_a_reconnect_of_a_persistent_session(broker):
    topic = "sensors/q2-resume/telemetry"
    first = RawConnection(broker.mqtt)
    try:
        first.connect(client_id="q2-resume", clean=False)
        first.send(publish_packet(topic, payload(5), qos=2, packet_id=6))
        assert first.read_packet() == (PUBREC, b"\x00\x06")
    finally:
        first.close()
    second = RawConnection(broker.mqtt)
    try:
        ack = second.connect(client_id="q2-resume", clean=False)
        assert ack == b"\x20\x02\x01\x00", f"expected session present: {ack!r}"
        # The device never saw the PUBREC, so it resends the PUBLISH.
        second.send(publish_packet(topic, payload(5), qos=2, packet_id=6, dup=True))
        assert second.read_packet() == (PUBREC, b"\x00\x06")
        second.send(ack_packet("PUBREL", 6))
        assert second.read_packet() == (PUBCOMP, b"\x00\x06")
    finally:
        second.close()
    assert count(broker, "q2-resume") == 1


def test_v5_pubrel_for_an_unknown_id_gets_pubcomp_with_reason_0x92(broker):
    raw = RawConnection(broker.mqtt)
    try:
        raw.connect(client_id="q2-v5", version=5)
        raw.send(ack_packet("PUBREL", 300))
        first, body = raw.read_packet()
        assert first == PUBCOMP and body[:2] == (300).to_bytes(2, "big") and body[2:3] == b"\x92", body
    finally:
        raw.close()
