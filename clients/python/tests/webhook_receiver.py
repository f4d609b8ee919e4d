"""A scriptable webhook receiver for the alerting tests: a local HTTP server on 127.0.0.1 (a free port,
served by a thread) that records every POST it gets and answers as it is told to.

    hook = WebhookReceiver()          # listening, answering 200
    hook.respond("503")               # every later request: 503
    hook.respond("429")               # 429 with `Retry-After: 1`
    hook.respond("hang")              # read the request, then sleep past the client's timeout
    hook.script("503", "503", "ok")   # the next three requests, then back to the default mode
    hook.stop(); hook.start()         # down (connections refused), then up again on the same port
    hook.wait_for(4, timeout=10)      # the first four requests answered 200

Every request is a `Post` (body, Idempotency-Key, arrival time, what it was answered); the lists
are guarded by a condition variable, so the test thread can wait on them while the server threads
append."""

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

MODES = ("ok", "503", "429", "hang")


@dataclasses.dataclass
class Post:
    """One POST as the receiver saw it."""
    path: str
    body: object            # the parsed JSON (None when it did not parse)
    raw: bytes
    key: str | None         # the Idempotency-Key header
    headers: dict
    at: float               # time.monotonic() when the body was read
    wall: float             # time.time() at the same moment
    mode: str               # how it was answered: ok, 503, 429 or hang
    status: int | None = None  # the status sent (None when the client left before a hung answer)

    @property
    def accepted(self):
        """Answered 200 (a delivery, from the sender's point of view too)."""
        return self.mode == "ok"

    @property
    def alert(self):
        """The first (only) alert of an Alertmanager v4 body."""
        return self.body["alerts"][0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class WebhookReceiver:
    """See the module docstring. `hang_secs` is how long a hung request sleeps before answering 200
    (keep it above the sender's `timeout_secs`)."""

    def __init__(self, port=None, path="/hook", hang_secs=3.0):
        self.port = port or _free_port()
        self.path = path
        self.hang_secs = hang_secs
        self.posts = []
        self._mode = "ok"
        self._script = []
        self._cond = threading.Condition()
        self._released = threading.Event()  # set on stop: hung requests return at once
        self._server = None
        self._thread = None
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def running(self):
        return self._server is not None

    # --- scripting -----------------------------------------------------------------------------

    def respond(self, mode):
        """How every later request is answered (after any scripted ones)."""
        assert mode in MODES, mode
        with self._cond:
            self._mode = mode

    def script(self, *modes):
        """How the next requests are answered, one mode each, before the default applies again."""
        assert all(m in MODES for m in modes), modes
        with self._cond:
            self._script.extend(modes)

    def _next_mode(self):
        with self._cond:
            return self._script.pop(0) if self._script else self._mode

    # --- up and down ---------------------------------------------------------------------------

    def start(self):
        """Listens on `self.port` (again): retries for a few seconds if the port is still in use."""
        assert self._server is None, "already running"
        self._released.clear()
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), self._handler_class())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self):
        """Stops listening: new connections are refused until `start()`. Hung requests are released."""
        server, self._server = self._server, None
        if server is None:
            return
        self._released.set()
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)

    # --- what arrived --------------------------------------------------------------------------

    def snapshot(self):
        """A copy of every POST so far, in arrival order."""
        with self._cond:
            return list(self.posts)

    def accepted(self):
        """The POSTs answered 200, in arrival order."""
        return [p for p in self.snapshot() if p.accepted]

    def count(self, mode=None):
        return sum(1 for p in self.snapshot() if mode is None or p.mode == mode)

    def wait_until(self, check, timeout, what="condition"):
        """Waits until `check(posts)` is truthy (re-checked on every POST); returns its value or fails."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = check(list(self.posts))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(p.mode, p.key, _status_of(p)) for p in self.posts]
                    pytest.fail(f"webhook receiver: timed out after {timeout} s waiting for {what}; got {summary}")
                self._cond.wait(min(left, 0.1))

    def wait_for(self, n, timeout=10, mode="ok"):
        """The first `n` POSTs answered with `mode` (default: accepted deliveries)."""
        posts = self.wait_until(lambda ps: len([p for p in ps if p.mode == mode]) >= n and ps, timeout,
                                f"{n} POSTs answered {mode}")
        return [p for p in posts if p.mode == mode][:n]

    def close(self):
        self.stop()

    # --- the handler ---------------------------------------------------------------------------

    def _record(self, post):
        with self._cond:
            self.posts.append(post)
            self._cond.notify_all()

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a stopped receiver refuses at once

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                mode = receiver._next_mode()
                post = Post(path=self.path, body=body, raw=raw, key=self.headers.get("Idempotency-Key"),
                            headers=dict(self.headers.items()), at=time.monotonic(), wall=time.time(), mode=mode)
                receiver._record(post)
                try:
                    if mode == "ok":
                        self._answer(200, post)
                    elif mode == "503":
                        self._answer(503, post)
                    elif mode == "429":
                        self._answer(429, post, {"Retry-After": "1"})
                    else:  # hang: the sender's timeout runs out first
                        receiver._released.wait(receiver.hang_secs)
                        self._answer(200, post)
                except OSError:  # the sender gave up (timeout) and closed the connection
                    pass

            def _answer(self, status, post, headers=None):
                data = b"{}" if status == 200 else json.dumps({"error": f"scripted {status}"}).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                post.status = status

        return Handler


def _status_of(post):
    try:
        return post.alert["status"], post.alert["labels"].get("device_id")
    except (TypeError, KeyError, IndexError):
        return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
