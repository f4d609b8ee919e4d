"""Client presence and who may subscribe to alerts, with real clients: every connect and disconnect
(with its reason) is published on $telemark/presence/... and stored in _telemark.presence; alert
notification topics and presence topics need read access to their database."""

import json
import time

import requests

from conftest import ADMIN, FLEET_RW, LAB_RO, token_config
from mqtt_clients import MosquittoSub, RawConnection, connect_packet, rows, subscribe_packet, wait_until

ALERT = """
[[alert.rule]]
name = "hot"
database = "fleet"
table = "readings"
kind = "threshold"
field = "temp"
op = ">"
value = 30.0
"""


def presence_events(sub):
    return [(t.rsplit("/", 2)[1], json.loads(p)) for _, _, t, p in sub.messages()]


def test_presence_events_name_the_reason_a_client_left(start_server):
    s = start_server(token_config())
    sub = MosquittoSub(s.mqtt, ["$telemark/presence/#"], count=7, timeout=20, args=("-u", "admin", "-P", ADMIN))
    sub.wait_subscribed()
    # A clean DISCONNECT.
    clean = RawConnection(s.mqtt)
    clean.connect(client_id="dev-clean", username="x", password=FLEET_RW)
    clean.send(b"\xe0\x00")
    clean.read_until_eof(timeout=5)
    # A client that goes silent: keep-alive 1 s, then nothing.
    raw = RawConnection(s.mqtt)
    raw.connect(client_id="dev-silent", keepalive=1, username="x", password=FLEET_RW)
    raw.read_until_eof(timeout=5)
    # A client taken over by a new connection with the same id.
    first = RawConnection(s.mqtt)
    first.connect(client_id="dev-twin", username="x", password=FLEET_RW)
    second = RawConnection(s.mqtt)
    second.connect(client_id="dev-twin", username="x", password=FLEET_RW)
    first.read_until_eof(timeout=5)
    assert sub.wait() == 0, sub.lines
    events = presence_events(sub)
    by_client = {}
    for kind, e in events:
        assert e["event"] == kind
        by_client.setdefault(e["client_id"], []).append((kind, e["reason"]))
    assert by_client["dev-silent"] == [("connected", None), ("disconnected", "keep_alive_timeout")], events
    assert by_client["dev-twin"][:3] == [("connected", None), ("connected", None), ("disconnected", "taken_over")], events
    assert by_client["dev-clean"] == [("connected", None), ("disconnected", "clean")], events
    second.close()

    # The same events are rows of _telemark.presence.
    stored = wait_until(lambda: [r for r in rows(s, "SELECT client_id, event, reason FROM presence", "_telemark", ADMIN)
                                 if r["client_id"] == "dev-silent"] or None, timeout=10, what="presence rows")
    assert sorted((r["event"], r.get("reason")) for r in stored) == [("connected", None), ("disconnected", "keep_alive_timeout")]


def suback_code(addr, password, topic_filter):
    raw = RawConnection(addr)
    try:
        user = "admin" if password == ADMIN else "x"  # the admin token is bound to its username
        raw.connect(client_id=f"sub-{time.monotonic_ns()}", username=user, password=password)
        raw.send(subscribe_packet(1, topic_filter, qos=1))
        first, body = raw.read_packet()
        assert first == 0x90, f"expected SUBACK, got {first:#x}"
        return body[-1]
    finally:
        raw.close()


def test_alert_and_presence_topics_need_read_access(start_server):
    s = start_server(token_config() + ALERT)
    # MQTT 3.1.1 SUBACK: 0x80 = failure, 0x00/0x01 = granted QoS.
    assert suback_code(s.mqtt, LAB_RO, "alerts/#") == 0x80
    assert suback_code(s.mqtt, LAB_RO, "alerts/hot/+") == 0x80
    assert suback_code(s.mqtt, LAB_RO, "$telemark/presence/#") == 0x80
    assert suback_code(s.mqtt, LAB_RO, "alerts/other-rule/+") == 1, "topics no rule uses stay open"
    assert suback_code(s.mqtt, FLEET_RW, "alerts/#") == 1
    assert suback_code(s.mqtt, FLEET_RW, "$telemark/presence/#") == 0x80, "presence needs read on _telemark"
    assert suback_code(s.mqtt, ADMIN, "$telemark/presence/#") == 1

    # A reader of fleet gets the alert; the refused subscriber never does.
    now = int(time.time())
    r = requests.post(f"{s.http}/write?db=fleet&precision=s", data=f"readings,device_id=t1 temp=35 {now}",
                      headers={"Authorization": f"Bearer {FLEET_RW}"}, timeout=10)
    assert r.status_code == 204, r.text
    sub = MosquittoSub(s.mqtt, ["alerts/#"], count=1, timeout=10, args=("-q", "1", "-u", "x", "-P", FLEET_RW))
    assert sub.wait() == 0, sub.lines
    [(retained, qos, topic, payload)] = sub.messages()
    assert (retained, qos, topic) == (True, 1, "alerts/hot/t1")
    assert json.loads(payload)["state"] == "firing"
    raw = RawConnection(s.mqtt)
    raw.send(connect_packet(client_id="nosy", username="x", password=LAB_RO))
    raw.read_packet()
    raw.send(subscribe_packet(1, "alerts/#", qos=1))
    assert raw.read_packet()[1][-1] == 0x80
    raw.sock.settimeout(1.0)
    try:
        leaked = raw.sock.recv(1024)
    except OSError:
        leaked = b""
    assert leaked == b"", f"a refused subscriber received {leaked!r}"
    raw.close()
