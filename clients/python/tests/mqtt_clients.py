"""Real MQTT clients for the tests: mosquitto's command-line tools, paho-mqtt,
a raw socket speaking hand-built packets, and an `openssl` CLI PKI."""

import os
import pty
import shutil
import socket
import subprocess
import termios
import threading
import time

import paho.mqtt.client as paho
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TOOLS_HINT = "run scripts/system-deps.sh (Debian packages mosquitto, mosquitto-clients, openssl)"


def need(tool):
    """The path of a command-line tool; fails the test (never skips) when it is missing."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        pytest.fail(f"`{tool}` is not installed or not on PATH: {TOOLS_HINT}")
    return path


def wait_until(check, timeout=5.0, interval=0.05, what="condition"):
    """Polls `check()` until it returns something truthy; returns it, or fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except AssertionError as e:  # e.g. a query on a table not created yet
            last = e
        if last and not isinstance(last, AssertionError):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def free_port():
    """A free TCP port on 127.0.0.1 (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(server, name):
    """The value of an unlabelled Prometheus metric from GET /metrics."""
    text = requests.get(f"{server.http}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not in /metrics:\n{text}")


def rows(server, q, db, token=None):
    """Query rows; a missing table reads as no rows (the table appears with the first write)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(f"{server.http}/api/v3/query_sql", params={"q": q, "db": db, "format": "json"},
                     headers=headers, timeout=30)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return r.json()


# --- mosquitto command-line clients -----------------------------------------------------------

def mosquitto_pub(addr, topic, message=None, *args, payload_bytes=None, timeout=10):
    """Runs `mosquitto_pub -h host -p port -t topic -m message ARGS`; returns the CompletedProcess
    (text output). `payload_bytes` is sent verbatim from stdin (`-s`) instead of `-m`. A hang
    (e.g. a QoS 1 PUBACK that never comes) fails the test with what the tool printed."""
    cmd = [need("mosquitto_pub"), "-h", addr[0], "-p", str(addr[1]), "-t", topic, *args]
    if payload_bytes is not None:
        cmd.append("-s")
    else:
        cmd += ["-m", message]
    try:
        r = subprocess.run(cmd, input=payload_bytes, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for {timeout} s; stdout={e.stdout!r} stderr={e.stderr!r}")
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


class MosquittoSub:
    """`mosquitto_sub -d -F '%r|%q|%t|%p' -C n -W timeout`, started in the background; `wait_subscribed()`
    returns once its SUBACK arrived, `messages()` the (retained, qos, topic, payload) it printed.
    Its output goes to a pseudo-terminal, so stdio line-buffers it and the SUBACK line shows up at once."""

    def __init__(self, addr, filters, count, timeout=10, args=()):
        cmd = [need("mosquitto_sub"), "-h", addr[0], "-p", str(addr[1]), "-d", "-F", "%r|%q|%t|%p",
               "-C", str(count), "-W", str(timeout), *args]
        for f in filters:
            cmd += ["-t", f]
        master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # no \r before \n
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self._master = master
        self.lines = []
        self._subscribed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        pending = b""
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO once the child has exited and the pty is drained
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                text = line.decode(errors="replace")
                self.lines.append(text)
                if "received SUBACK" in text:
                    self._subscribed.set()
        if pending:
            self.lines.append(pending.decode(errors="replace"))
        os.close(self._master)

    def wait_subscribed(self, timeout=5):
        if not self._subscribed.wait(timeout):
            self.close()
            pytest.fail(f"mosquitto_sub got no SUBACK within {timeout} s: {self.lines}")

    def wait(self, timeout=15):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            pytest.fail(f"mosquitto_sub did not finish within {timeout} s: {self.lines}")
        self._reader.join(timeout=5)
        return self.proc.returncode

    def messages(self):
        out = []
        for line in self.lines:
            if line.startswith("Client ") or line.startswith("Subscribed") or "|" not in line:
                continue
            retained, qos, topic, payload = line.split("|", 3)
            out.append((retained == "1", int(qos), topic, payload))
        return out

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- paho-mqtt ---------------------------------------------------------------------------------

class PahoDevice:
    """A connected paho-mqtt 2.x client with its network loop running; records acks and disconnects."""

    def __init__(self, addr, client_id="", version=paho.MQTTv311, clean=True, will=None, inflight=20):
        kwargs = {"client_id": client_id, "protocol": version}
        if version != paho.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.client.max_inflight_messages_set(inflight)
        if will:
            self.client.will_set(*will)
        self.acked = {}          # mid -> reason code value
        self.disconnects = []    # reason codes
        self.connack = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.version = version
        self.clean = clean
        self.connect(addr)

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.connack = reason
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason, properties):
        with self._lock:
            self.acked[mid] = reason.value

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        self._connected.clear()
        self.disconnects.append(reason)

    def connect(self, addr, timeout=10):
        self._connected.clear()
        props = None
        if self.version == paho.MQTTv5 and not self.clean:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        if self.version == paho.MQTTv5:
            self.client.connect(addr[0], addr[1], keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.client.connect(addr[0], addr[1], keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout) or self.connack is None or self.connack.is_failure:
            self.client.loop_stop()
            pytest.fail(f"paho could not connect to {addr}: {self.connack}")

    @property
    def connected(self):
        return self._connected.is_set()

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"paho publish failed: {info.rc}"
        return info.mid

    def publish_acked(self, topic, payload, timeout=5):
        """Publishes at QoS 1 and waits for a successful PUBACK."""
        mid = self.publish(topic, payload, qos=1)
        wait_until(lambda: mid in self.acked, timeout, what=f"PUBACK for {topic}")
        assert self.acked[mid] < 0x80, f"PUBACK for {topic} carried reason {self.acked[mid]:#x}"
        return mid

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --- hand-built packets over a raw socket ------------------------------------------------------

def remaining_length(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id="raw", version=4, username=None, password=None, keepalive=30, clean=True, will=None):
    """CONNECT; `will` = (topic, payload, qos)."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    if will:
        flags |= 0x04 | (will[2] << 3)
    body = _str("MQTT") + bytes([version, flags]) + keepalive.to_bytes(2, "big")
    if version == 5:
        body += b"\x00"  # no properties
    body += _str(client_id)
    if will:
        body += (b"\x00" if version == 5 else b"") + _str(will[0]) + _str(will[1])
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return b"\x10" + remaining_length(len(body)) + body


def publish_packet(topic, payload, qos=0, packet_id=1, version=4, dup=False, retain=False):
    body = _str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + (b"\x00" if version == 5 else b"") + payload
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes([first]) + remaining_length(len(body)) + body


def ack_packet(kind, packet_id):
    """PUBACK, PUBREC, PUBREL or PUBCOMP without a reason code (success)."""
    first = {"PUBACK": 0x40, "PUBREC": 0x50, "PUBREL": 0x62, "PUBCOMP": 0x70}[kind]
    return bytes([first, 2]) + packet_id.to_bytes(2, "big")


def subscribe_packet(packet_id, topic_filter, qos=0):
    body = packet_id.to_bytes(2, "big") + _str(topic_filter) + bytes([qos])
    return b"\x82" + remaining_length(len(body)) + body


class RawConnection:
    """A TCP socket to the MQTT listener, for packets no well-behaved client would send."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=5)

    def send(self, data):
        self.sock.sendall(data)

    def read(self, n, timeout=5):
        """Exactly n bytes (fails on EOF or timeout)."""
        self.sock.settimeout(timeout)
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, f"connection closed after {buf!r}, expected {n} bytes"
            buf += chunk
        return buf

    def read_packet(self, timeout=5):
        """The next packet as (first byte, body)."""
        first = self.read(1, timeout)[0]
        length, shift = 0, 0
        while True:
            b = self.read(1, timeout)[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first, self.read(length, timeout) if length else b""

    def connect(self, **kw):
        """CONNECT and its CONNACK; returns the CONNACK bytes."""
        self.send(connect_packet(**kw))
        head = self.read(2)
        assert head[0] == 0x20, f"expected CONNACK, got {head!r}"
        return head + self.read(head[1])

    def read_until_eof(self, timeout=5):
        """Everything the server sends until it closes the connection; fails if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"the server kept the connection open for {timeout} s (received {buf!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return buf
            if not chunk:
                return buf
            buf += chunk

    def close(self):
        self.sock.close()


# --- a PKI made with the openssl CLI -----------------------------------------------------------

_OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


def _openssl(*args, cwd):
    r = subprocess.run([need("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed: {r.stderr}"


def make_ca(directory, name):
    """A self-signed CA: (name.pem, name.key)."""
    cnf = directory / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    _openssl("req", "-x509", "-config", str(cnf), "-extensions", "ca", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_cert(directory, name, cn, ca, kind):
    """A certificate signed by `ca` (a make_ca pair); kind = "server" (SAN IP:127.0.0.1, DNS:localhost) or "client"."""
    cnf = directory / "openssl.cnf"
    _openssl("req", "-new", "-config", str(cnf), "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", str(cnf), "-extensions", kind, cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"
