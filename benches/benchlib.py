"""Helpers shared by the benchmark drivers: free loopback ports, starting and
stopping servers, waiting for HTTP, and measuring data directories."""

import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


def du(path):
    """Bytes of the files under path: each file's size, or its allocated blocks when fewer
    (InfluxDB preallocates sparse 4 MiB series-index segments that hold a few KiB)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
                total += min(st.st_size, st.st_blocks * 512)
            except OSError:
                pass
    return total


class Proc:
    """A server process logging to a file; `stop()` sends SIGTERM, then kills after `timeout`."""

    def __init__(self, args, log):
        self.log = open(log, "a")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, timeout=600):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def start_victoria(tmp):
    """VictoriaMetrics (Debian package) on a free loopback port: (process, port, data dir)."""
    port, data = free_port(), os.path.join(tmp, "vm")
    p = Proc(["victoria-metrics", f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
              "-retentionPeriod=100y"], os.path.join(tmp, "vm.log"))
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
    except Exception:
        p.stop()
        raise
    return p, port, data


def start_influxdb(tmp, database="fleet", compact_soon=False):
    """InfluxDB 1.x (Debian package) on a free loopback port with `database`
    created: (process, port, data dir). `compact_soon` sets the cold durations
    low, so a caller that waits gets TSM files instead of WAL."""
    port, data = free_port(), os.path.join(tmp, "influx")
    cold = ('  cache-snapshot-write-cold-duration = "2s"\n'
            '  compact-full-write-cold-duration = "5s"\n') if compact_soon else ""
    conf = os.path.join(tmp, "influxdb.conf")
    with open(conf, "w") as f:
        f.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
{cold}[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
""")
    p = Proc(["influxd", "-config", conf], os.path.join(tmp, "influxd.log"))
    try:
        wait_http(f"http://127.0.0.1:{port}/ping")
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/query", data=f"q=CREATE DATABASE {database}".encode(), method="POST"),
            timeout=30).read()
    except Exception:
        p.stop()
        raise
    return p, port, data
