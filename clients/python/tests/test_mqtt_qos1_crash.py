"""crash_during_ingest over MQTT: a paho device publishes QoS 1 telemetry (each payload carries
its own millisecond timestamp and a sequence number) with a persistent session while the server is
SIGKILLed. After a restart on the same data every message whose PUBACK arrived is there exactly once;
once paho has reconnected and resent what was not acknowledged, every message is there exactly once."""

import json
import time

import paho.mqtt.client as paho
import pytest

from mqtt_clients import PahoDevice, rows, wait_until

T0_MS = 1_733_000_000_000


def counts_by_seq(server, device):
    got = rows(server, f"SELECT seq, count(*) AS n FROM telemetry WHERE device_id = '{device}' GROUP BY seq", "iot")
    return {int(r["seq"]): r["n"] for r in got}


@pytest.mark.parametrize("version", [paho.MQTTv311, paho.MQTTv5], ids=["v311", "v5"])
def test_acked_qos1_messages_survive_sigkill_exactly_once(start_server, tmp_path, version):
    data = tmp_path / "data"
    device = f"crash-{'v5' if version == paho.MQTTv5 else 'v311'}"
    topic = f"sensors/{device}/telemetry"
    first = start_server(data_dir=data)
    dev = PahoDevice(first.mqtt, client_id=device, version=version, clean=False, inflight=20)
    seq_of = {}  # mid -> seq
    try:
        def publish():
            seq = len(seq_of)
            seq_of[dev.publish(topic, json.dumps({"timestamp": T0_MS + seq, "seq": seq, "temp": 20 + seq % 10}))] = seq

        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if len(seq_of) - len(dev.acked) >= 60:  # 20 in flight and up to 40 queued in paho
                time.sleep(0.001)
                continue
            publish()
        for _ in range(40):  # a last burst, so messages are in flight and queued when the server dies
            publish()
        first.kill()
        acked = dict(dev.acked)  # acks that reached paho before the server died
        dev.client.loop_stop()   # no reconnect attempts to the dead port
    except BaseException:
        dev.close()
        raise

    published = len(seq_of)
    acked_seqs = {seq_of[m] for m in acked}
    assert all(rc == 0 for rc in acked.values()), acked
    assert len(acked_seqs) > 50, f"only {len(acked_seqs)} of {published} messages acknowledged in 1.5 s"
    assert published > len(acked_seqs), "the crash came after everything was acknowledged; nothing was at risk"

    second = start_server(data_dir=data)
    stored = counts_by_seq(second, device)
    print(f"published {published}, acknowledged before SIGKILL {len(acked_seqs)}, stored after restart {len(stored)}")
    missing = sorted(acked_seqs - stored.keys())
    assert not missing, f"{len(missing)} acknowledged messages lost in the crash, e.g. seq {missing[:10]}"
    dupes = {s: n for s, n in stored.items() if n != 1}
    assert not dupes, f"duplicated rows after the crash: {dupes}"
    assert stored.keys() <= set(range(published)), "rows for messages never published"

    # paho resends what was not acknowledged (DUP for those in flight) to the new server.
    try:
        dev.connect(second.mqtt)
        wait_until(lambda: len(dev.acked) == published, 15,
                   what=f"PUBACKs for all {published} messages after the reconnect (have {len(dev.acked)})")
        assert all(rc == 0 for rc in dev.acked.values())
    finally:
        dev.close()
    stored = counts_by_seq(second, device)
    assert stored == {s: 1 for s in range(published)}, (
        f"missing {sorted(set(range(published)) - stored.keys())[:10]}, "
        f"duplicated {[s for s, n in stored.items() if n != 1][:10]}")
