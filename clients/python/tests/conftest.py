"""Starts the real `telemark serve` binary on free loopback ports for the tests."""

import os
import pathlib
import signal
import subprocess
import tempfile
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest
from adbc_driver_flightsql import DatabaseOptions

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("TELEMARK_BIN", str(ROOT / "target" / "debug" / "telemark"))

ADMIN = "admin-secret"
FLEET_RW = "fleet-rw-secret"
LAB_RO = "lab-ro-secret"


class Server:
    """A running `telemark serve`. Its output is drained by threads so a
    chatty log never blocks the server; `self.output()` returns it so far."""

    def __init__(self, data_dir, config_text, extra_args=(), env=None):
        if not os.path.exists(BIN):
            raise RuntimeError(f"telemark binary not found at {BIN}: run `cargo build -p telemark-server` first")
        self.data_dir = pathlib.Path(data_dir)
        self.config = self.data_dir.parent / (self.data_dir.name + ".toml")
        self.config.write_text(config_text)
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", str(self.config), "--data-dir", str(self.data_dir),
             "--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0",
             "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0", *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.http = None
        self.flight = None
        self.mqtt = None   # (host, port)
        self.mqtts = None  # (host, port), when [mqtt.tls] is configured
        self._out = []
        self._err = []
        deadline = time.time() + 60
        while self.http is None or self.flight is None:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError(f"telemark serve exited early: {err}")
            self._out.append(line)
            addr = line.strip().rsplit(" ", 1)[-1]
            if "HTTP API listening on" in line:
                self.http = addr
            if "Flight SQL listening on" in line:
                self.flight = addr
            if "MQTT listening on" in line:
                self.mqtt = _host_port(addr)
            if "MQTT over TLS listening on" in line:
                self.mqtts = _host_port(addr)
            if time.time() > deadline:
                raise RuntimeError("telemark serve did not start within 60 s")
        self._drains = [
            threading.Thread(target=_drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._drains:
            t.start()

    def output(self):
        """(stdout, stderr) printed so far."""
        return "".join(self._out), "".join(self._err)

    def sql(self, q, db=None, token=None):
        """Rows of a query over the HTTP API, as a list of dicts."""
        import requests
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        params = {"q": q, "format": "json"}
        if db:
            params["db"] = db
        r = requests.get(f"{self.http}/api/v3/query_sql", params=params, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._drains:
            t.join(timeout=10)
        out, err = self.output()
        return self.proc.returncode, out, err

    def kill(self):
        """SIGKILL, as a crash."""
        self.proc.kill()
        self.proc.wait()
        for t in self._drains:
            t.join(timeout=10)


def _host_port(url):
    hostport = url.split("://", 1)[-1]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def _drain(stream, sink):
    for line in iter(stream.readline, ""):
        sink.append(line)


def token_config(extra=""):
    return f"""
[[tokens]]
name = "admin"
token = "{ADMIN}"
username = "admin"
read = ["*"]
write = ["*"]

[[tokens]]
name = "fleet-rw"
token = "{FLEET_RW}"
read = ["fleet"]
write = ["fleet"]

[[tokens]]
name = "lab-ro"
token = "{LAB_RO}"
read = ["lab"]
{extra}
"""


@pytest.fixture
def start_server(tmp_path):
    """`start_server(config_text="", data_dir=None)` starts a `Server` for one test; every server it
    started is stopped afterwards, whatever happened, and its log is printed (pytest shows it when the
    test fails). A `data_dir` already used by a stopped or killed server restarts on that data."""
    started = []

    def start(config_text="", data_dir=None, extra_args=(), env=None):
        s = Server(data_dir or tmp_path / f"data{len(started)}", config_text, extra_args, env)
        started.append(s)
        return s

    yield start
    for i, s in enumerate(started):
        try:
            s.stop(timeout=10)
        finally:
            out, err = s.output()
            print(f"--- server {i} ({s.data_dir}) stdout ---\n{out}--- server {i} stderr ---\n{err}")


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(pathlib.Path(tmp) / "data", token_config())
        try:
            yield s
        finally:
            s.stop()


T0 = 1_733_000_000_000_000_000


def connect(server, token=ADMIN, database=None, **extra):
    kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
    if database:
        kwargs["adbc.flight.sql.rpc.call_header.database"] = database
    kwargs.update(extra)
    return flightsql.connect(uri=server.flight, db_kwargs=kwargs)


def readings(n, start=T0, trucks=10):
    return pa.table({
        "time": pa.array([start + i * 10_000_000_000 for i in range(n)], pa.timestamp("ns")),
        "name": pa.array([f"truck-{i % trucks}" for i in range(n)]),
        "velocity": pa.array([float(i % 100) / 2 for i in range(n)]),
        "fuel": pa.array([100 - i % 100 for i in range(n)], pa.int64()),
    })


@pytest.fixture(scope="session")
def fleet(server):
    with connect(server, FLEET_RW) as conn, conn.cursor() as cur:
        rows = cur.adbc_ingest("readings", readings(1000), mode="create_append", db_schema_name="fleet")
        assert rows == 1000
    with connect(server, ADMIN) as conn, conn.cursor() as cur:
        lab = pa.table({"time": pa.array([T0], pa.timestamp("ns")), "site": ["x"], "v": [1.5]})
        cur.adbc_ingest("other", lab, mode="create_append", db_schema_name="lab")
    return server


