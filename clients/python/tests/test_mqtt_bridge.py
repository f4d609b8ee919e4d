"""The bridge to a real mosquitto broker: Telemark subscribes with a persistent session at QoS 1,
stores what devices publish to the broker, and after a restart receives, exactly once, what was
published to the broker while it was down."""

import json
import socket
import subprocess
import time

import pytest

from mqtt_clients import free_port, mosquitto_pub, need, rows, wait_until


@pytest.fixture
def mosquitto_broker(tmp_path):
    """A mosquitto broker on a free loopback port; sessions live in memory while it runs."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest stderr\nlog_type all\nmax_queued_messages 1000\n")
    log_path = tmp_path / "mosquitto.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([need("mosquitto"), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)

    def listening():
        if proc.poll() is not None:
            pytest.fail(f"mosquitto exited with {proc.returncode}: {log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, 10, what=f"mosquitto listening on 127.0.0.1:{port}")
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print("--- mosquitto log ---\n" + log_path.read_text())


def config(broker):
    return f"""
[[mqtt.rule]]
topic = "ext/{{device_id}}/telemetry"
database = "ext"
table = "telemetry"
time_field = "timestamp"

[[mqtt.bridge]]
url = "mqtt://{broker[0]}:{broker[1]}"
client_id = "telemark-bridge-test"
topics = ["ext/#"]
"""


def reading(seq):
    return json.dumps({"timestamp": 1_733_000_000_000 + seq, "seq": seq, "temp": 20.0 + seq})


def counts_by_seq(server):
    got = rows(server, "SELECT seq, count(*) AS n FROM telemetry GROUP BY seq", "ext")
    return {int(r["seq"]): r["n"] for r in got}


def test_bridge_stores_broker_messages_and_catches_up_after_a_restart(start_server, tmp_path, mosquitto_broker):
    data = tmp_path / "telemark-data"
    telemark = start_server(config(mosquitto_broker), data_dir=data)
    wait_until(lambda: "bridge connected" in telemark.output()[1], 10, what="the bridge to connect to mosquitto")

    # The bridge subscribes right after its CONNACK; repeat the first message until it shows up
    # (a repeat carries the same timestamp, so it overwrites rather than duplicates).
    def first_arrived():
        assert mosquitto_pub(mosquitto_broker, "ext/dev-0/telemetry", reading(0), "-q", "1").returncode == 0
        time.sleep(0.1)
        return counts_by_seq(telemark).get(0)

    wait_until(first_arrived, 10, what="the first bridged message")
    for seq in (1, 2, 3):
        r = mosquitto_pub(mosquitto_broker, f"ext/dev-{seq % 2}/telemetry", reading(seq), "-q", "1")
        assert r.returncode == 0, r.stderr
    wait_until(lambda: counts_by_seq(telemark) == {0: 1, 1: 1, 2: 1, 3: 1}, 5, what="messages 0..3 through the bridge")
    got = rows(telemark, "SELECT device_id, seq, temp FROM telemetry WHERE seq = 3", "ext")
    assert got == [{"device_id": "dev-1", "seq": 3.0, "temp": 23.0}]

    code, _, err = telemark.stop()
    assert code == 0, err

    # Published while Telemark is down: the broker queues them in the bridge's persistent session.
    n = 20
    lines = "\n".join(reading(seq) for seq in range(4, 4 + n)) + "\n"
    r = subprocess.run([need("mosquitto_pub"), "-h", mosquitto_broker[0], "-p", str(mosquitto_broker[1]),
                        "-t", "ext/dev-queued/telemetry", "-q", "1", "-l"], input=lines, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr

    again = start_server(config(mosquitto_broker), data_dir=data)
    wait_until(lambda: "session_present=true" in again.output()[1], 10,
               what="the bridge to reconnect to its persistent session")
    expected = {seq: 1 for seq in range(4 + n)}
    wait_until(lambda: counts_by_seq(again) == expected, 15,
               what=f"all {n} messages queued in the broker to arrive exactly once")
    time.sleep(0.5)  # a late redelivery would show up as a duplicate
    assert counts_by_seq(again) == expected
    queued = rows(again, "SELECT count(*) AS n FROM telemetry WHERE device_id = 'dev-queued'", "ext")
    assert queued == [{"n": n}]


def test_bridge_loses_and_duplicates_nothing_when_telemark_is_killed_mid_stream(start_server, tmp_path,
                                                                                 mosquitto_broker):
    data = tmp_path / "telemark-data"
    telemark = start_server(config(mosquitto_broker), data_dir=data)
    wait_until(lambda: "bridge connected" in telemark.output()[1], 10, what="the bridge to connect to mosquitto")

    def first_arrived():
        assert mosquitto_pub(mosquitto_broker, "ext/dev-0/telemetry", reading(0), "-q", "1").returncode == 0
        time.sleep(0.1)
        return counts_by_seq(telemark).get(0)

    wait_until(first_arrived, 10, what="the first bridged message")

    # One device streams 300 QoS 1 messages to the broker; Telemark is SIGKILLed a third of the way in.
    n = 300
    device = subprocess.Popen([need("mosquitto_pub"), "-h", mosquitto_broker[0], "-p", str(mosquitto_broker[1]),
                               "-t", "ext/dev-stream/telemetry", "-q", "1", "-l"], stdin=subprocess.PIPE, text=True)
    try:
        for seq in range(1, n + 1):
            device.stdin.write(reading(seq) + "\n")
            device.stdin.flush()
            time.sleep(0.002)
            if seq == n // 3:
                telemark.kill()
        device.stdin.close()
        assert device.wait(timeout=10) == 0
    finally:
        if device.poll() is None:
            device.kill()
            device.wait()
    again = start_server(config(mosquitto_broker), data_dir=data)
    expected = {seq: 1 for seq in range(n + 1)}
    wait_until(lambda: counts_by_seq(again) == expected, 15,
               what=f"all {n + 1} messages exactly once after the restart")
    time.sleep(0.5)  # a late redelivery would show up as a duplicate
    assert counts_by_seq(again) == expected
