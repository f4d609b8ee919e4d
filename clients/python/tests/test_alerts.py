"""Alerting seen from real clients: threshold and offline rules evaluated as rows are committed,
notifications over MQTT (QoS 1, retained, read by mosquitto_sub and paho) and to a webhook receiver
that is down, failing, rate limiting and hanging in turn, across SIGKILL and SIGTERM restarts;
`for` (pending) surviving a crash, backfilled rows and a flapping value sending nothing, 10 000
devices of which exactly the silent ones go offline (and no mass offline after a restart), and the
`alert_history` table."""

import datetime
import json
import threading
import time

import paho.mqtt.client as paho
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_clients import MosquittoSub, metric, mosquitto_pub, rows, wait_until
from webhook_receiver import WebhookReceiver

NO_END = "0001-01-01T00:00:00Z"


# --- helpers -----------------------------------------------------------------------------------

def write(server, lines, precision="ns", db="fleet"):
    """Line protocol over HTTP (`/write`, the v1 endpoint)."""
    r = requests.post(f"{server.http}/write", params={"db": db, "precision": precision},
                      data="\n".join(lines).encode(), timeout=30)
    assert r.status_code == 204, r.text


class Clock:
    """Strictly increasing nanosecond timestamps near the wall clock (rows older than a device's
    newest row change nothing, so two writes in the same instant must still differ)."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


def alerts(server, rule=None):
    """GET /api/v3/alerts: {device: instance} (of `rule`, when given)."""
    r = requests.get(f"{server.http}/api/v3/alerts", timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()["alerts"]
    if rule is not None:
        got = [a for a in got if a["rule"] == rule]
    out = {}
    for a in got:
        key = a["device"] if rule is not None else (a["rule"], a["device"])
        assert key not in out, f"instance {key} listed twice: {got}"
        out[key] = a
    return out


def in_state(server, rule, state):
    return {d for d, a in alerts(server, rule).items() if a["state"] == state}


def rfc3339_ms(ms):
    """As Telemark writes times in notifications: RFC 3339, UTC, milliseconds, `Z`."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def rule_toml(name, *, kind="threshold", database="fleet", table="readings", field="temp", op=">", value=30.0,
              extra=""):
    if kind == "threshold":
        body = f'field = "{field}"\nop = "{op}"\nvalue = {value}\n'
    else:
        body = ""
    return f"""
[[alert.rule]]
name = "{name}"
database = "{database}"
table = "{table}"
kind = "{kind}"
{body}{extra}
"""


def webhook_toml(hook, name="ops", timeout_secs=1):
    return f"""
[[alert.webhook]]
name = "{name}"
url = "{hook.url}"
timeout_secs = {timeout_secs}
initial_backoff_ms = 200
max_backoff_secs = 2
give_up_after = "24h"
"""


@pytest.fixture
def hook():
    h = WebhookReceiver()
    yield h
    h.close()


class PahoSubscriber:
    """A paho-mqtt 2.x client subscribed at QoS 1; records (retained, qos, topic, payload)."""

    def __init__(self, addr, topic, client_id):
        self.messages = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, u, f, reason, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(addr[0], addr[1], keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            pytest.fail(f"paho could not subscribe to {topic} on {addr}")

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((bool(msg.retain), msg.qos, msg.topic, msg.payload.decode()))

    def got(self):
        with self._lock:
            return list(self.messages)

    def wait_count(self, n, timeout=10):
        return wait_until(lambda: len(self.got()) >= n and self.got(), timeout, what=f"{n} messages to paho")

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def retained_now(server, topic_filter, count, timeout=5):
    """What a subscriber that connects now receives at once: the retained messages."""
    sub = MosquittoSub(server.mqtt, [topic_filter], count=count, timeout=timeout, args=("-q", "1"))
    try:
        assert sub.wait(timeout=timeout + 5) == 0, sub.lines
    finally:
        sub.close()
    return sub.messages()


class Heartbeat(threading.Thread):
    """Writes one row for each of `devices` every `interval` seconds until stopped."""

    def __init__(self, server, devices, clock, interval=0.7):
        super().__init__(daemon=True)
        self.server, self.devices, self.clock, self.interval = server, devices, clock, interval
        self._stop_event = threading.Event()
        self.errors = []
        self.writes = 0

    def run(self):
        while not self._stop_event.is_set():
            try:
                t = self.clock()
                write(self.server, [f"readings,device_id={d} temp=20 {t}" for d in self.devices])
                self.writes += 1
            except Exception as e:  # noqa: BLE001 - reported by stop()
                self.errors.append(repr(e))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join(timeout=30)
        assert not self.errors, self.errors


# --- 1. threshold over MQTT ---------------------------------------------------------------------

MQTT_RULE = """
[[alert.rule]]
name = "hot"
database = "iot"
table = "telemetry"
kind = "threshold"
field = "temp"
op = ">"
value = 30.0
labels = { team = "ops" }
annotations = { summary = "{{ $labels.device_id }} at {{ $value }}", runbook = "cool {{$labels.device_id}} ({{ $labels.team }})" }
"""


def test_threshold_alert_over_mqtt_firing_resolved_and_retained(start_server):
    s = start_server(MQTT_RULE)
    now_ms = int(time.time() * 1000)

    def telemetry(device, temp, ts):
        r = mosquitto_pub(s.mqtt, f"sensors/{device}/telemetry", json.dumps({"timestamp": ts, "temp": temp}),
                          "-q", "1")
        assert r.returncode == 0, r.stderr

    live = MosquittoSub(s.mqtt, ["alerts/#"], count=2, timeout=20, args=("-q", "1"))
    sub = None
    try:
        live.wait_subscribed()
        sub = PahoSubscriber(s.mqtt, "alerts/#", "paho-alerts")
        telemetry("m2", 12.0, now_ms)  # below the threshold: never a notification
        telemetry("m1", 35.5, now_ms)
        firing = sub.wait_count(1)
        # A subscriber arriving after the firing gets the state at once, retained.
        late = retained_now(s, "alerts/#", 1)
        telemetry("m1", 20.0, now_ms + 1000)
        assert live.wait(timeout=20) == 0, live.lines
        both = sub.wait_count(2)
        after = retained_now(s, "alerts/#", 1)
    finally:
        live.close()
        if sub:
            sub.close()

    got = live.messages()
    assert [(r, q, t) for r, q, t, _ in got] == [(False, 1, "alerts/hot/m1"), (False, 1, "alerts/hot/m1")], got
    fire, resolve = (json.loads(p) for *_, p in got)
    assert [(r, q, t) for r, q, t, _ in both] == [(False, 1, "alerts/hot/m1")] * 2, both
    assert [json.loads(p) for *_, p in both] == [fire, resolve], "paho and mosquitto_sub saw different payloads"
    assert json.loads(firing[0][3]) == fire

    assert set(fire) == {"rule", "device", "state", "labels", "annotations", "value", "starts_at", "ends_at",
                         "fingerprint", "seq"}, fire
    assert (fire["rule"], fire["device"], fire["state"], fire["value"]) == ("hot", "m1", "firing", 35.5), fire
    assert fire["labels"] == {"alertname": "hot", "device_id": "m1", "team": "ops"}, fire
    assert fire["annotations"] == {"summary": "m1 at 35.5", "runbook": "cool m1 (ops)"}, fire
    assert fire["starts_at"] and fire["ends_at"] is None, fire
    assert (resolve["rule"], resolve["device"], resolve["state"]) == ("hot", "m1", "resolved"), resolve
    assert resolve["fingerprint"] == fire["fingerprint"] and resolve["starts_at"] == fire["starts_at"], resolve
    assert resolve["ends_at"] and resolve["ends_at"] >= resolve["starts_at"], resolve
    assert resolve["seq"] > fire["seq"], (fire, resolve)

    assert len(late) == 1, late
    assert late[0][:3] == (True, 1, "alerts/hot/m1") and json.loads(late[0][3]) == fire, late
    assert len(after) == 1, after
    assert after[0][:3] == (True, 1, "alerts/hot/m1") and json.loads(after[0][3]) == resolve, after

    listed = alerts(s, "hot")
    assert set(listed) == {"m1"}, listed
    m1 = listed["m1"]
    assert m1["state"] == "resolved" and m1["fingerprint"] == fire["fingerprint"], m1
    assert rfc3339_ms(m1["fired_at"]) == fire["starts_at"] and rfc3339_ms(m1["resolved_at"]) == resolve["ends_at"], m1
    assert m1["annotations"] == fire["annotations"], m1
    rules = requests.get(f"{s.http}/api/v3/alerts/rules", timeout=10).json()["rules"]
    assert [r["name"] for r in rules] == ["hot"] and rules[0]["labels"] == {"team": "ops"}, rules


# --- 2. a troubled webhook receiver, a crash in between ----------------------------------------

def test_webhook_delivery_survives_a_down_failing_throttling_and_hanging_receiver_and_a_crash(start_server, hook):
    config = rule_toml("hot", extra='sinks = ["ops"]') + webhook_toml(hook)
    clock = Clock()
    devices = [f"w{i}" for i in range(6)]
    hook.stop()  # down: connections refused
    s = start_server(config)
    write(s, [f"readings,device_id={d} temp=35 {clock()}" for d in devices])
    assert in_state(s, "hot", "firing") == set(devices)
    wait_until(lambda: metric(s, "telemark_alert_webhook_failed_attempts_total") >= 2, 10,
               what="failed attempts while the receiver is down")

    hook.respond("503")
    hook.start()
    hook.wait_for(2, timeout=10, mode="503")
    write(s, [f"readings,device_id={d} temp=20 {clock()}" for d in devices[:2]])
    assert in_state(s, "hot", "resolved") == set(devices[:2])

    hook.respond("429")
    throttled = hook.wait_for(2, timeout=10, mode="429")
    # Retry-After: 1 is honoured: the request after a 429 comes no sooner than a second later.
    after_429 = [p for p in hook.snapshot() if p.at > throttled[0].at]
    assert after_429 and after_429[0].at - throttled[0].at >= 0.9, [(p.mode, p.at) for p in hook.snapshot()]

    s.kill()
    hook.respond("hang")
    s2 = start_server(config, data_dir=s.data_dir)
    assert in_state(s2, "hot", "firing") == set(devices[2:]), alerts(s2, "hot")
    hook.wait_for(2, timeout=15, mode="hang")
    write(s2, [f"readings,device_id={d} temp=20 {clock()}" for d in devices[2:]])
    write(s2, [f"readings,device_id=w6 temp=40 {clock()}"])
    write(s2, [f"readings,device_id=w6 temp=10 {clock()}"])
    devices.append("w6")
    assert in_state(s2, "hot", "resolved") == set(devices), alerts(s2, "hot")

    # Back up, but failing again mid-stream, after some deliveries were accepted.
    hook.script("ok", "ok", "ok", "503", "hang")
    hook.respond("ok")
    want = {(d, st) for d in devices for st in ("firing", "resolved")}

    def delivered(posts):
        got = {(p.alert["labels"]["device_id"], p.alert["status"]) for p in posts if p.accepted}
        return got >= want

    hook.wait_until(delivered, 40, "every firing and resolved notification accepted")
    time.sleep(1.0)  # anything still queued would show up now
    posts = hook.snapshot()
    assert {p.mode for p in posts} == {"503", "429", "hang", "ok"}, [p.mode for p in posts]

    keys_of, body_of = {}, {}
    for p in posts:
        a = p.alert
        assert p.body["version"] == "4" and p.body["receiver"] == "ops", p.body
        assert p.body["status"] == a["status"] and len(p.body["alerts"]) == 1, p.body
        assert a["labels"]["alertname"] == "hot" and a["labels"]["device_id"] in devices, a
        assert p.key and p.key.startswith(a["fingerprint"] + "-") and p.key.rsplit("-", 1)[1].isdigit(), p.key
        if a["status"] == "firing":
            assert a["endsAt"] == NO_END, a
        else:
            assert a["status"] == "resolved" and a["endsAt"] != NO_END and a["endsAt"] >= a["startsAt"], a
        keys_of.setdefault((a["labels"]["device_id"], a["status"]), set()).add(p.key)
        body_of.setdefault(p.key, []).append(p.body)
    # Duplicates (retries, re-sends after the crash) carry the same key and the same body.
    assert all(len(k) == 1 for k in keys_of.values()), keys_of
    for key, bodies in body_of.items():
        assert all(b == bodies[0] for b in bodies), (key, bodies)
    # Exactly one notification per transition, none lost, nothing extra.
    accepted = {(p.alert["labels"]["device_id"], p.alert["status"]) for p in posts if p.accepted}
    assert set(keys_of) == want and accepted == want, sorted(set(keys_of) ^ want)
    for d in devices:
        first = {st: min(p.at for p in posts if p.alert["labels"]["device_id"] == d and p.alert["status"] == st)
                 for st in ("firing", "resolved")}
        first_ok = {st: min(p.at for p in posts if p.accepted and p.alert["labels"]["device_id"] == d
                            and p.alert["status"] == st) for st in ("firing", "resolved")}
        assert first["firing"] < first["resolved"] and first_ok["firing"] < first_ok["resolved"], (d, first, first_ok)
        fp = {p.alert["fingerprint"] for p in posts if p.alert["labels"]["device_id"] == d}
        starts = {p.alert["startsAt"] for p in posts if p.alert["labels"]["device_id"] == d}
        assert len(fp) == 1 and len(starts) == 1, (d, fp, starts)
    assert metric(s2, "telemark_alert_webhook_dropped_total") == 0
    assert metric(s2, "telemark_alert_webhook_failed_attempts_total") >= 2
    assert metric(s2, "telemark_alerts_firing") == 0


# --- 3. restart while firing --------------------------------------------------------------------

@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_a_firing_alert_stays_firing_across_a_restart_without_new_notifications(start_server, hook, how):
    config = rule_toml("hot", extra='labels = { team = "ops" }') + webhook_toml(hook)
    clock = Clock()
    s = start_server(config)
    write(s, [f"readings,device_id=t1 temp=35 {clock()}", f"readings,device_id=t2 temp=10 {clock()}"])
    [fired] = hook.wait_for(1)
    assert fired.alert["status"] == "firing" and fired.alert["labels"]["device_id"] == "t1", fired.body
    wait_until(lambda: metric(s, "telemark_alert_webhook_deliveries_total") >= 1, 5, what="the delivery counted")
    time.sleep(1.0)  # the delivery is journaled right after it is counted
    before = alerts(s, "hot")
    assert set(before) == {"t1"} and before["t1"]["state"] == "firing", before
    fired_at = before["t1"]["fired_at"]
    assert fired.alert["startsAt"] == rfc3339_ms(fired_at), (fired.alert, before)

    if how == "sigkill":
        s.kill()
    else:
        rc, out, err = s.stop()
        assert rc == 0 and "stopped cleanly" in out, err
    s2 = start_server(config, data_dir=s.data_dir)
    after = alerts(s2, "hot")
    assert set(after) == {"t1"}, after
    t1 = after["t1"]
    assert t1["state"] == "firing", t1
    assert (t1["fired_at"], t1["active_at"]) == (fired_at, before["t1"]["active_at"]), (before, after)
    assert t1["fingerprint"] == before["t1"]["fingerprint"] and t1["resolved_at"] is None, t1
    # The broker's retained state is published again, with the original start.
    [(retained, qos, topic, payload)] = retained_now(s2, "alerts/#", 1)
    state = json.loads(payload)
    assert (retained, qos, topic, state["state"]) == (True, 1, "alerts/hot/t1", "firing"), payload
    assert state["starts_at"] == rfc3339_ms(fired_at), payload

    # Still above the threshold after the restart: nothing new to say.
    write(s2, [f"readings,device_id=t1 temp=36 {clock()}"])
    time.sleep(2.5)  # a few ticks
    posts = hook.snapshot()
    assert [(p.alert["status"], p.key) for p in posts] == [("firing", fired.key)], \
        f"after the {how} restart the receiver got {[(p.alert['status'], p.key, p.mode) for p in posts]}"
    assert in_state(s2, "hot", "firing") == {"t1"}
    assert alerts(s2, "hot")["t1"]["fired_at"] == fired_at


# --- 4. restart while pending -------------------------------------------------------------------

def test_a_pending_alert_fires_on_its_original_schedule_after_a_crash(start_server, hook):
    config = rule_toml("hot", extra='for = "4s"') + webhook_toml(hook)
    clock = Clock()
    s = start_server(config)
    write(s, [f"readings,device_id=p1 temp=35 {clock()}"])
    pending = alerts(s, "hot")
    assert set(pending) == {"p1"} and pending["p1"]["state"] == "pending", pending
    assert pending["p1"]["fired_at"] is None, pending
    active_at = pending["p1"]["active_at"]
    assert abs(active_at - time.time() * 1000) < 2000, pending
    # Crash halfway through `for`.
    time.sleep(max(0.0, (active_at + 2000) / 1000 - time.time()))
    assert in_state(s, "hot", "pending") == {"p1"}
    assert hook.count() == 0
    s.kill()
    s2 = start_server(config, data_dir=s.data_dir)
    restarted_ms = int(time.time() * 1000)
    p1 = alerts(s2, "hot").get("p1")
    assert p1 and p1["state"] in ("pending", "firing") and p1["active_at"] == active_at, p1

    p1 = wait_until(lambda: alerts(s2, "hot")["p1"]["state"] == "firing" and alerts(s2, "hot")["p1"], 10,
                    what="p1 to fire")
    fired_at = p1["fired_at"]
    assert p1["active_at"] == active_at, (active_at, p1)
    assert fired_at - active_at >= 4000, f"fired {fired_at - active_at} ms after active_at, `for` is 4 s"
    # On the original schedule: at active_at + for (the next tick), not `for` after the restart.
    latest = max(active_at + 4000, restarted_ms) + 1800
    assert fired_at <= latest, (f"fired {fired_at - active_at} ms after active_at "
                                f"({fired_at - restarted_ms} ms after the restart); expected by active_at + ~5 s")
    [n] = hook.wait_for(1)
    assert n.alert["status"] == "firing" and n.alert["startsAt"] == rfc3339_ms(fired_at), n.body
    time.sleep(1.0)
    assert hook.count() == 1, [(p.alert["status"], p.key) for p in hook.snapshot()]


# --- 5. backfill --------------------------------------------------------------------------------

def test_backfilled_rows_change_no_alert(start_server, hook):
    config = (rule_toml("hot", extra='labels = { team = "ops" }') + rule_toml("silent", kind="offline",
                                                                               extra='after = "2s"')
              + webhook_toml(hook))
    s = start_server(config)
    day_ago = int(time.time()) - 86_400
    write(s, [f"readings,device_id=b{d} temp={40 + i} {day_ago + i}" for d in range(5) for i in range(3)],
          precision="s")
    assert rows(s, "SELECT count(*) AS n FROM readings", "fleet") == [{"n": 15}]
    time.sleep(3.5)  # past `after` of the offline rule, a few ticks
    assert alerts(s) == {}, "backfilled rows made alert instances"
    assert hook.count() == 0, [p.body for p in hook.snapshot()]
    assert metric(s, "telemark_alert_transitions_total") == 0
    assert metric(s, "telemark_alerts_firing") == 0 and metric(s, "telemark_alerts_pending") == 0
    assert rows(s, "SELECT * FROM alert_history", "_telemark") == []
    # The same row written now does fire (the rule is live; only the age kept it quiet).
    write(s, [f"readings,device_id=b0 temp=41 {int(time.time())}"], precision="s")
    hook.wait_until(lambda ps: any(p.alert["labels"]["alertname"] == "hot" and p.alert["status"] == "firing"
                                   and p.alert["labels"]["device_id"] == "b0" for p in ps), 10, "the live row to fire")
    assert in_state(s, "hot", "firing") == {"b0"}


# --- 6. flapping --------------------------------------------------------------------------------

def test_a_flapping_value_within_for_sends_nothing(start_server, hook):
    config = rule_toml("hot", extra='for = "3s"') + webhook_toml(hook)
    clock = Clock()
    s = start_server(config)
    sub = PahoSubscriber(s.mqtt, "alerts/#", "paho-flap")
    seen = set()
    try:
        end = time.monotonic() + 6
        high = True
        while time.monotonic() < end or high is False:  # always end on a low value
            write(s, [f"readings,device_id=f1 temp={35 if high else 20} {clock()}"])
            states = {a["state"] for a in alerts(s, "hot").values()}
            seen |= states
            if not high:
                assert "pending" not in states, states
            high = not high
            time.sleep(0.5)
        time.sleep(3.5)  # longer than `for` after the last high value
        messages = sub.got()
    finally:
        sub.close()
    assert seen == {"pending"}, f"states seen while flapping: {seen}"
    assert messages == [], messages
    assert hook.count() == 0, [p.body for p in hook.snapshot()]
    assert alerts(s, "hot") == {}
    assert metric(s, "telemark_alerts_firing") == 0
    history = rows(s, "SELECT state FROM alert_history", "_telemark")
    assert history and {r["state"] for r in history} <= {"pending", "inactive"}, history


# --- 7. offline, 10 000 devices, restart ----------------------------------------------------------

def test_offline_rule_fires_for_exactly_the_silent_devices_and_not_after_a_restart(start_server, hook):
    config = rule_toml("silent", kind="offline", extra='after = "3s"\nsinks = ["ops"]') + webhook_toml(hook)
    clock = Clock()
    devices = [f"dev-{i:05d}" for i in range(10_000)]
    silent = set(devices[7::100])
    live = [d for d in devices if d not in silent]
    assert len(silent) == 100

    s = start_server(config)
    write(s, [f"readings,device_id={d} temp=20 {clock()}" for d in devices])
    beat = Heartbeat(s, live, clock)
    beat.start()
    try:
        firing = wait_until(lambda: len(in_state(s, "silent", "firing")) >= 100 and in_state(s, "silent", "firing"),
                            20, what="100 devices offline")
        assert firing == silent, sorted(firing ^ silent)
        hook.wait_until(lambda ps: len([p for p in ps if p.accepted]) >= 100, 20, "100 firing notifications")
        time.sleep(1.5)
        assert in_state(s, "silent", "firing") == silent
        assert set(alerts(s, "silent")) == silent, "live devices have instances"
    finally:
        beat.stop()
    posts = hook.snapshot()
    assert sorted(p.alert["labels"]["device_id"] for p in posts) == sorted(silent), [p.key for p in posts]
    assert {p.alert["status"] for p in posts} == {"firing"}

    rc, out, err = s.stop()
    assert rc == 0 and "stopped cleanly" in out, err
    time.sleep(60)  # down for a minute, 20 times `after`: downtime is no silence

    s2 = start_server(config, data_dir=s.data_dir)
    beat = Heartbeat(s2, live, clock)
    beat.start()
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            firing = in_state(s2, "silent", "firing")
            assert firing <= silent, f"live devices went offline after the restart: {sorted(firing - silent)[:10]}"
            time.sleep(0.2)
        write(s2, [f"readings,device_id={d} temp=21 {clock()}" for d in sorted(silent)])
        wait_until(lambda: in_state(s2, "silent", "resolved") == silent, 20, what="the 100 to resolve")
        hook.wait_until(lambda ps: len([p for p in ps if p.accepted and p.alert["status"] == "resolved"]) >= 100, 20,
                        "100 resolved notifications")
        time.sleep(1.0)
        assert in_state(s2, "silent", "firing") == set()
    finally:
        beat.stop()
    posts = hook.snapshot()
    fired = [p.alert["labels"]["device_id"] for p in posts if p.alert["status"] == "firing"]
    resolved = [p.alert["labels"]["device_id"] for p in posts if p.alert["status"] == "resolved"]
    assert sorted(set(fired)) == sorted(silent), f"offline firing for {sorted(set(fired) - silent)[:10]}"
    assert len({p.key for p in posts if p.alert["status"] == "firing"}) == 100, "a silent device fired twice"
    assert sorted(resolved) == sorted(silent), resolved
    assert metric(s2, "telemark_alerts_firing") == 0


# --- 8. history ---------------------------------------------------------------------------------

def test_alert_history_holds_a_row_per_transition(start_server, hook):
    config = (rule_toml("hot", extra='labels = { team = "ops" }')
              + rule_toml("warm", value=25.0, extra='for = "1s"') + webhook_toml(hook))
    clock = Clock()
    s = start_server(config)
    rules = requests.get(f"{s.http}/api/v3/alerts/rules", timeout=10).json()["rules"]
    assert sorted(r["name"] for r in rules) == ["hot", "warm"], rules
    write(s, [f"readings,device_id=h1 temp=35.5 {clock()}"])
    wait_until(lambda: in_state(s, "warm", "firing") == {"h1"}, 5, what="warm to fire after `for`")
    instance = {r: alerts(s, r)["h1"] for r in ("hot", "warm")}
    write(s, [f"readings,device_id=h1 temp=20 {clock()}"])
    hook.wait_for(4)

    def history():
        return rows(s, "SELECT * FROM alert_history WHERE device = 'h1' ORDER BY time, rule", "_telemark")

    got = wait_until(lambda: len(history()) >= 5 and history(), 10, what="five history rows")
    assert len(got) == 5, got
    by_rule = {r: [x for x in got if x["rule"] == r] for r in ("hot", "warm")}
    assert [x["state"] for x in by_rule["hot"]] == ["firing", "resolved"], got
    assert [x["state"] for x in by_rule["warm"]] == ["pending", "firing", "resolved"], got
    for r, xs in by_rule.items():
        for x in xs:
            assert x["device"] == "h1" and x["fingerprint"] == instance[r]["fingerprint"], x
            assert x["active_at"] == instance[r]["active_at"] * 1_000_000, (x, instance[r])
            assert x["value"] == 35.5, x
            labels = json.loads(x["labels"])
            assert labels["alertname"] == r and labels["device_id"] == "h1", labels
    assert json.loads(by_rule["hot"][0]["labels"])["team"] == "ops"
    notified = {(p.alert["labels"]["alertname"], p.alert["status"]) for p in hook.snapshot()}
    assert notified == {("hot", "firing"), ("hot", "resolved"), ("warm", "firing"), ("warm", "resolved")}


# --- found while writing the above: rows out of order, a crash, retained state ------------------

def test_an_older_row_above_the_threshold_does_not_fire_a_device_whose_newest_row_is_below(start_server, hook):
    """Rows older than the device's newest row are ignored, also before the device ever matched."""
    s = start_server(rule_toml("hot") + webhook_toml(hook))
    now = time.time_ns()
    # Control: a firing device ignores an older row below the threshold.
    write(s, [f"readings,device_id=c1 temp=35 {now}"])
    write(s, [f"readings,device_id=c1 temp=20 {now - 60 * 10**9}"])
    assert in_state(s, "hot", "firing") == {"c1"}
    # The device's newest row is below the threshold; a row a minute older (late, not a backfill) is above it.
    write(s, [f"readings,device_id=o1 temp=20 {now}"])
    write(s, [f"readings,device_id=o1 temp=35 {now - 60 * 10**9}"])
    assert rows(s, "SELECT count(*) AS n FROM readings WHERE device_id = 'o1'", "fleet") == [{"n": 2}]
    time.sleep(1.5)
    got = alerts(s, "hot")
    assert "o1" not in got, f"a row older than o1's newest row (20 < 30) made an instance: {got.get('o1')}"
    assert {p.alert["labels"]["device_id"] for p in hook.snapshot()} == {"c1"}


def test_an_older_row_after_a_restart_does_not_resolve_a_firing_alert(start_server, hook):
    """The newest row time (and value) of a firing instance must survive a clean restart."""
    config = rule_toml("hot") + webhook_toml(hook)
    s = start_server(config)
    t = time.time_ns()
    write(s, [f"readings,device_id=x1 temp=35 {t}"])
    write(s, [f"readings,device_id=x1 temp=37 {t + 2 * 10**9}"])  # still firing: no state change
    hook.wait_for(1)
    assert alerts(s, "hot")["x1"]["value"] == 37.0
    rc, out, err = s.stop()
    assert rc == 0, err
    s2 = start_server(config, data_dir=s.data_dir)
    x1 = alerts(s2, "hot")["x1"]
    assert x1["state"] == "firing", x1
    value_after_restart = x1["value"]
    # Older than x1's newest row (t + 2 s): ignored, as it would have been before the restart.
    write(s2, [f"readings,device_id=x1 temp=20 {t + 1 * 10**9}"])
    time.sleep(1.0)
    x1 = alerts(s2, "hot")["x1"]
    assert x1["state"] == "firing", (f"a row older than the newest one written before the restart resolved the "
                                     f"alert: {x1}; {[(p.alert['status'], p.key) for p in hook.snapshot()]}")
    assert value_after_restart == 37.0, f"the value went back from 37 to {value_after_restart} after the restart"


def test_offline_devices_seen_just_before_a_crash_are_still_watched(start_server):
    """Devices whose rows were committed are known to the offline rule after a SIGKILL restart."""
    config = rule_toml("silent", kind="offline", extra='after = "3s"')
    s = start_server(config)
    write(s, [f"readings,device_id=n{i} temp=20 {time.time_ns()}" for i in range(3)])
    time.sleep(1.0)
    assert alerts(s, "silent") == {}
    s.kill()
    s2 = start_server(config, data_dir=s.data_dir)
    assert rows(s2, "SELECT count(*) AS n FROM readings", "fleet") == [{"n": 3}], "the rows were durable"
    deadline = time.monotonic() + 7  # `after` (3 s) from the restart, plus ticks
    while time.monotonic() < deadline and in_state(s2, "silent", "firing") != {"n0", "n1", "n2"}:
        time.sleep(0.2)
    firing = in_state(s2, "silent", "firing")
    assert firing == {"n0", "n1", "n2"}, (
        f"silent for 7 s after a crash-restart (after = 3s), offline alerts firing: {sorted(firing)}; "
        f"alerts/seen.json exists: {(s.data_dir / 'alerts' / 'seen.json').exists()}")


def test_the_retained_state_after_a_restart_is_the_one_published_before(start_server):
    """After a clean restart the re-published retained state is the same message (same seq) as before."""
    config = rule_toml("hot")
    s = start_server(config)
    write(s, [f"readings,device_id=r1 temp=35 {time.time_ns()}"])
    wait_until(lambda: in_state(s, "hot", "firing") == {"r1"}, 5, what="r1 to fire")
    [(_, _, _, before)] = retained_now(s, "alerts/hot/r1", 1)
    rc, out, err = s.stop()
    assert rc == 0, err
    s2 = start_server(config, data_dir=s.data_dir)
    [(retained, _, _, after)] = retained_now(s2, "alerts/hot/r1", 1)
    assert retained and json.loads(before)["state"] == "firing"
    assert json.loads(after) == json.loads(before), f"retained before the restart {before}, after {after}"


def sql_rule_toml(name, query, every="1s", eval_delay=None):
    delay = f'eval_delay = "{eval_delay}"\n' if eval_delay else ""
    return f"""
[[alert.rule]]
name = "{name}"
database = "fleet"
kind = "sql"
every = "{every}"
{delay}query = "{query}"
"""


def test_a_sql_rule_fires_per_result_row_and_resolves_when_the_row_is_gone(start_server, hook):
    query = ("SELECT device_id, avg(temp) AS t FROM readings WHERE time > now() - INTERVAL '1 minute' "
             "GROUP BY device_id HAVING avg(temp) > 30")
    s = start_server(sql_rule_toml("avg-hot", query) + webhook_toml(hook))
    t = time.time_ns()
    write(s, [f"readings,device_id=q1 temp=35 {t}", f"readings,device_id=q2 temp=20 {t}"])
    hook.wait_for(1, timeout=10)
    firing = alerts(s, "avg-hot")
    assert set(firing) == {"q1"} and firing["q1"]["state"] == "firing" and firing["q1"]["value"] == 35.0, firing
    assert firing["q1"]["labels"] == {"alertname": "avg-hot", "device_id": "q1"}
    write(s, [f"readings,device_id=q1 temp=0 {t + 10**9}", f"readings,device_id=q1 temp=0 {t + 2 * 10**9}"])
    hook.wait_for(2, timeout=10)
    statuses = [(p.alert["status"], p.alert["labels"]["device_id"]) for p in hook.snapshot()]
    assert statuses == [("firing", "q1"), ("resolved", "q1")], statuses
    assert metric(s, "telemark_alert_sql_evaluations_total") >= 2
    assert metric(s, "telemark_alert_sql_errors_total") == 0


def test_an_evaluation_delay_keeps_late_rows_from_resolving_and_refiring(start_server, hook):
    """Rows arrive 90 s after their time (an uplink that buffers); the rule judges the 2 s window
    ending 95 s ago, so every window is complete when judged: one firing, no resolve, no second
    firing. (With no delay every window it judges is still empty and nothing fires.)"""
    late = 90 * 10**9
    query = ("SELECT device_id, count(*) AS n FROM readings WHERE time >= now() - INTERVAL '2 seconds' "
             "AND time < now() AND temp > 30 GROUP BY device_id")
    s = start_server(sql_rule_toml("late-hot", query, eval_delay="95s") + webhook_toml(hook))
    # The backlog the uplink delivers at once: the 10 s before the rows that arrive from now on.
    first = time.time_ns() - late
    write(s, [f"readings,device_id=l1 temp=35 {first - i * 250_000_000}" for i in range(1, 41)])
    end = time.monotonic() + 9
    while time.monotonic() < end:
        write(s, [f"readings,device_id=l1 temp=35 {time.time_ns() - late}"])
        time.sleep(0.25)
    time.sleep(1.5)
    statuses = [p.alert["status"] for p in hook.snapshot()]
    assert statuses == ["firing"], f"late rows made the alert flap: {statuses}"
    assert in_state(s, "late-hot", "firing") == {"l1"}


def test_rules_over_http_are_checked_persisted_and_changeable(start_server):
    from conftest import ADMIN, FLEET_RW, LAB_RO, token_config
    s = start_server(token_config() + rule_toml("from-config"))
    auth = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    url = f"{s.http}/api/v3/alerts/rules"
    rule = {"database": "fleet", "table": "readings", "kind": "threshold", "field": "temp", "op": ">", "value": 40.0}
    r = requests.put(f"{url}/api-hot", json=rule, headers=auth(FLEET_RW), timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "api-hot" and r.json()["source"] == "api"
    # Refusals: a bad rule names what is wrong; a config rule cannot change here; rights are checked.
    r = requests.put(f"{url}/bad", json={**rule, "op": "=>"}, headers=auth(FLEET_RW), timeout=10)
    assert r.status_code == 400 and "unknown op" in r.text and "bad" in r.text, r.text
    r = requests.put(f"{url}/bad", json={**rule, "sinks": ["nowhere"]}, headers=auth(FLEET_RW), timeout=10)
    assert r.status_code == 400 and "nowhere" in r.text, r.text
    r = requests.put(f"{url}/from-config", json=rule, headers=auth(ADMIN), timeout=10)
    assert r.status_code == 409 and "config file" in r.text, r.text
    r = requests.put(f"{url}/lab-rule", json=rule, headers=auth(LAB_RO), timeout=10)
    assert r.status_code == 403, r.text
    listed = requests.get(url, headers=auth(FLEET_RW), timeout=10).json()["rules"]
    assert [(x["name"], x["source"]) for x in listed] == [("from-config", "config"), ("api-hot", "api")]
    assert requests.get(url, headers=auth(LAB_RO), timeout=10).json()["rules"] == [], "lab-ro reads no fleet rule"

    r = requests.post(f"{s.http}/write?db=fleet&precision=ns", data=f"readings,device_id=h1 temp=45 {time.time_ns()}",
                      headers=auth(FLEET_RW), timeout=10)
    assert r.status_code == 204, r.text
    wait_until(lambda: in_state_auth(s, "api-hot", "firing", ADMIN) == {"h1"}, 5, what="api-hot firing")
    r = requests.get(f"{s.http}/api/v3/alerts", params={"state": "firing", "rule": "api-hot"}, headers=auth(ADMIN),
                     timeout=10)
    assert [(x["rule"], x["device"]) for x in r.json()["alerts"]] == [("api-hot", "h1")], r.text
    r = requests.get(f"{s.http}/api/v3/alerts", params={"state": "pending"}, headers=auth(ADMIN), timeout=10)
    assert r.json()["alerts"] == [], r.text
    r = requests.get(f"{s.http}/api/v3/alerts", params={"state": "burning"}, headers=auth(ADMIN), timeout=10)
    assert r.status_code == 400 and "burning" in r.text, r.text

    # Survives a crash, firing.
    s.kill()
    s = start_server(token_config() + rule_toml("from-config"), data_dir=s.data_dir)
    url = f"{s.http}/api/v3/alerts/rules"
    assert requests.get(f"{url}/api-hot", headers=auth(FLEET_RW), timeout=10).json()["value"] == 40.0
    assert in_state_auth(s, "api-hot", "firing", ADMIN) == {"h1"}

    # A changed rule starts over: its firing alert resolves; deleting removes it.
    r = requests.put(f"{url}/api-hot", json={**rule, "value": 50.0}, headers=auth(FLEET_RW), timeout=10)
    assert r.status_code == 200, r.text
    states = lambda: [r["state"] for r in rows(s, "SELECT state FROM alert_history WHERE rule = 'api-hot' ORDER BY time",  # noqa: E731
                                               "_telemark", ADMIN)]
    wait_until(lambda: states() == ["firing", "resolved"], 5, what="api-hot resolved in the history")
    assert in_state_auth(s, "api-hot", "firing", ADMIN) == set()
    assert requests.delete(f"{url}/api-hot", headers=auth(FLEET_RW), timeout=10).status_code == 204
    assert requests.get(f"{url}/api-hot", headers=auth(FLEET_RW), timeout=10).status_code == 404
    assert requests.delete(f"{url}/api-hot", headers=auth(FLEET_RW), timeout=10).status_code == 404
    s.stop()
    s = start_server(token_config() + rule_toml("from-config"), data_dir=s.data_dir)
    names = [x["name"] for x in requests.get(f"{s.http}/api/v3/alerts/rules", headers=auth(ADMIN), timeout=10).json()["rules"]]
    assert names == ["from-config"], names


def in_state_auth(server, rule, state, token):
    r = requests.get(f"{server.http}/api/v3/alerts", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {a["device"] for a in r.json()["alerts"] if a["rule"] == rule and a["state"] == state}
