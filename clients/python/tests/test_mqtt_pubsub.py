"""Telemark as a broker for real clients: mosquitto_sub receives what mosquitto_pub and paho
publish to matching filters (`+`, `#`), a retained message published before it subscribed, and
the will of a device whose process died without DISCONNECT (but not of one that said goodbye)."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import paho.mqtt.client as paho
import pytest

from mqtt_clients import MosquittoSub, PahoDevice, RawConnection, mosquitto_pub, rows

VICTIM = textwrap.dedent("""
    import sys, threading, time
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    host, port, client_id, will_topic, will_payload = sys.argv[1:]
    connected = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.will_set(will_topic, will_payload, qos=1)
    c.on_connect = lambda *a: connected.set()
    c.connect(host, int(port), keepalive=30)
    c.loop_start()
    if connected.wait(10):
        print("connected", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_subscriber_gets_matching_messages_and_the_retained_one(start_server, version):
    s = start_server()
    r = mosquitto_pub(s.mqtt, "status/dev-1", "online", "-q", "1", "-r")
    assert r.returncode == 0, r.stderr

    sub = MosquittoSub(s.mqtt, ["sensors/+/telemetry", "alerts/#", "status/+"], count=5, timeout=10,
                       args=("-q", "1", "-V", version))
    paho_pub = None
    try:
        sub.wait_subscribed()
        # Not matching any filter: must not be among the five messages received.
        assert mosquitto_pub(s.mqtt, "other/x", "nope", "-q", "1").returncode == 0
        assert mosquitto_pub(s.mqtt, "sensors/other/status", "nope", "-q", "1").returncode == 0
        t1 = json.dumps({"timestamp": 1_733_000_000, "temp": 1.5})
        assert mosquitto_pub(s.mqtt, "sensors/s-1/telemetry", t1, "-q", "1").returncode == 0
        assert mosquitto_pub(s.mqtt, "alerts/a/b/c", "alarm", "-q", "0").returncode == 0
        paho_pub = PahoDevice(s.mqtt, client_id="paho-publisher",
                              version=paho.MQTTv5 if version == "mqttv5" else paho.MQTTv311)
        paho_pub.publish_acked("alerts/paho", "from paho")
        t2 = json.dumps({"timestamp": 1_733_000_001, "temp": 2.5})
        paho_pub.publish_acked("sensors/s-2/telemetry", t2)
        assert sub.wait(timeout=15) == 0, sub.lines
    finally:
        sub.close()
        if paho_pub:
            paho_pub.close()

    got = sorted(sub.messages(), key=lambda m: m[2])
    assert got == sorted([
        (True, 1, "status/dev-1", "online"),
        (False, 1, "sensors/s-1/telemetry", t1),
        (False, 0, "alerts/a/b/c", "alarm"),
        (False, 1, "alerts/paho", "from paho"),
        (False, 1, "sensors/s-2/telemetry", t2),
    ], key=lambda m: m[2]), sub.lines
    # Brokered and stored: the telemetry also went through the default rule.
    assert rows(s, "SELECT device_id, temp FROM telemetry ORDER BY time", "iot") == [
        {"device_id": "s-1", "temp": 1.5}, {"device_id": "s-2", "temp": 2.5}]


def test_will_is_published_when_a_device_dies_without_disconnect(start_server):
    s = start_server()
    sub = MosquittoSub(s.mqtt, ["wills/#"], count=1, timeout=10, args=("-q", "1"))
    victim = None
    try:
        sub.wait_subscribed()
        # A device that disconnects properly: its will must not be published.
        polite = PahoDevice(s.mqtt, client_id="polite-1", will=("wills/polite-1", "polite-1 gone", 1))
        polite.publish_acked("hello/polite-1", "hi")
        polite.close()

        victim = subprocess.Popen([sys.executable, "-c", VICTIM, s.mqtt[0], str(s.mqtt[1]), "victim-1",
                                   "wills/victim-1", "victim-1 gone"], stdout=subprocess.PIPE, text=True)
        assert victim.stdout.readline().strip() == "connected", "the paho victim could not connect"
        victim.send_signal(signal.SIGKILL)  # the kernel closes the socket; no DISCONNECT is sent
        victim.wait()
        assert sub.wait(timeout=15) == 0, sub.lines
    finally:
        sub.close()
        if victim and victim.poll() is None:
            victim.kill()
            victim.wait()
    assert sub.messages() == [(False, 1, "wills/victim-1", "victim-1 gone")], sub.lines


def test_will_is_published_when_keep_alive_runs_out(start_server):
    s = start_server()
    sub = MosquittoSub(s.mqtt, ["wills/#"], count=1, timeout=10, args=("-q", "1"))
    raw = RawConnection(s.mqtt)
    try:
        sub.wait_subscribed()
        raw.connect(client_id="silent-1", keepalive=1, will=("wills/silent-1", "silent-1 timed out", 1))
        started = time.monotonic()
        # Nothing more is sent: after 1.5 × keep-alive the server must give up on the connection.
        assert raw.read_until_eof(timeout=5) == b""
        assert 1.0 <= time.monotonic() - started < 4, "closed too early or too late for a 1 s keep-alive"
        assert sub.wait(timeout=10) == 0, sub.lines
    finally:
        raw.close()
        sub.close()
    assert sub.messages() == [(False, 1, "wills/silent-1", "silent-1 timed out")], sub.lines
    assert "keep-alive" in s.output()[1]
