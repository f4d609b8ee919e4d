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
