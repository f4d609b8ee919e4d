"""Client presence and who may subscribe to alerts, with real clients: every connect and disconnect
(with its reason) is published on $telemark/presence/... and stored in _telemark.presence; alert
notification topics and presence topics need read access to their database."""

import json
import threading
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

    # The same events are rows of _telemark.presence. They are stored after they are published, so
    # wait for both rows rather than the first one seen.
    def silent_rows():
        found = [r for r in rows(s, "SELECT client_id, event, reason FROM presence", "_telemark", ADMIN)
                 if r["client_id"] == "dev-silent"]
        return found if len(found) >= 2 else None

    stored = wait_until(silent_rows, timeout=10, what="both presence rows of dev-silent")
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


FLEET_OFFLINE = """
[[mqtt.rule]]
topic = "sensors/{device_id}/telemetry"
database = "iot"
table = "telemetry"

[[alert.rule]]
name = "offline"
database = "iot"
table = "telemetry"
kind = "offline"
after = "5s"
"""


class PahoFleet:
    """Many paho clients driven by one thread through paho's external-loop API (loop_read,
    loop_write, loop_misc): 2000 clients with a thread each cannot keep their keep-alive on 2 cores."""

    def __init__(self, addr, keepalive):
        import selectors
        self.addr, self.keepalive = addr, keepalive
        self.clients = {}
        self.fds = {}  # client id -> the fd registered for it (paho may close and drop its socket)
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def connect(self, client_id):
        import paho.mqtt.client as paho
        import selectors
        from paho.mqtt.enums import CallbackAPIVersion
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, reconnect_on_failure=False)
        c.connect(self.addr[0], self.addr[1], keepalive=self.keepalive)
        with self.lock:
            if self.clients.pop(client_id, None) is not None:
                self._forget(client_id)  # the old connection stays open, silent: this is a takeover
            self.clients[client_id] = c
            self.fds[client_id] = c.socket().fileno()
            self.selector.register(self.fds[client_id], selectors.EVENT_READ, c)

    def _forget(self, client_id):
        """Unregisters by the fd registered (the socket may be closed and gone by now)."""
        fd = self.fds.pop(client_id, None)
        if fd is not None:
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass

    def kill(self, client_id):
        """Closes the socket: no DISCONNECT, no more pings."""
        with self.lock:
            c = self.clients.pop(client_id)
            self._forget(client_id)
            c.socket().close()

    def publish(self, client_id, topic, payload):
        with self.lock:
            self.clients[client_id].publish(topic, payload, qos=0)

    def _run(self):
        while self.running:
            with self.lock:
                events = self.selector.select(timeout=0.05) if self.clients else []
                for key, _ in events:
                    key.data.loop_read()
                for client_id, c in list(self.clients.items()):
                    if c.socket() is None:  # paho closed it (the server ended the connection)
                        self._forget(client_id)
                        continue
                    if c.want_write():
                        c.loop_write()
                    c.loop_misc()
            time.sleep(0.01)

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        for c in self.clients.values():
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass


def test_killed_connections_go_offline_and_taken_over_ones_do_not(start_server):
    """2000 paho devices send one reading, then only keep-alive pings (a sign of life); 100 sockets are
    killed without DISCONNECT and 20 devices are taken over by a new connection: exactly the 100 go
    offline, and they resolve when they come back."""
    s = start_server(FLEET_OFFLINE)
    fleet = PahoFleet(s.mqtt, keepalive=2)
    try:
        for i in range(2000):
            fleet.connect(f"dev-{i}")
        for i in range(2000):
            fleet.publish(f"dev-{i}", f"sensors/dev-{i}/telemetry", json.dumps({"temp": 20.0}))
        wait_until(lambda: rows(s, "SELECT count(DISTINCT device_id) AS n FROM telemetry", "iot") == [{"n": 2000}],
                   timeout=60, what="one reading from each of the 2000 devices")

        killed = set(range(0, 2000, 20))           # 100 devices
        taken_over = set(range(7, 2000, 100))      # 20 devices
        for i in killed:
            fleet.kill(f"dev-{i}")
        for i in taken_over:
            fleet.connect(f"dev-{i}")

        def offline():
            r = requests.get(f"{s.http}/api/v3/alerts", timeout=10).json()["alerts"]
            return {a["device"] for a in r if a["rule"] == "offline" and a["state"] == "firing"}

        expected = {f"dev-{i}" for i in killed}
        wait_until(lambda: offline() == expected, timeout=20, what="exactly the 100 killed devices offline")
        time.sleep(3)  # more ticks: nobody else follows
        assert offline() == expected
        timeouts = [line for line in s.output()[1].splitlines() if "keep-alive" in line]
        assert timeouts == [], f"live devices lost their connections to keep-alive timeouts: {timeouts[:3]}"

        for i in killed:                           # back: a new connection and a reading
            fleet.connect(f"dev-{i}")
            fleet.publish(f"dev-{i}", f"sensors/dev-{i}/telemetry", json.dumps({"temp": 21.0}))
        wait_until(lambda: offline() == set(), timeout=20, what="the 100 devices resolved")
    finally:
        fleet.close()
