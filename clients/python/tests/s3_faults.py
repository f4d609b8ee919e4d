"""A fault-injecting HTTP proxy for S3 tests: it sits between Telemark and moto_server and, per
request, forwards it untouched or breaks it in one of the ways networks and object stores break:

- `status`: answer with an HTTP error (503 SlowDown) instead of forwarding;
- `reset`: read part of the request body, then reset the connection;
- `hang_after_store`: forward the request (the object is stored), then answer nothing until the
  client gives up;
- `corrupt`: forward, then flip a bit of the response body's first byte;
- `truncate`: forward, then send only the first half of the body (headers adjusted to match);
- `delay`: wait 30 s, then forward (a request in flight when a test kills the client).

Faults are queued with `fail(method, action, times=1, ranged=None)`; each matching request takes the
first queued fault whose method matches (and, if given, whether it carries a Range header and a
substring of its path). `log` records (method, path, range, action) for every request."""

import http.client
import http.server
import socket
import struct
import threading
import time


class S3FaultProxy:
    def __init__(self, upstream):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.faults = []
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, method, action, times=1, ranged=None, status=503, path=None):
        with self.lock:
            self.faults.append({"method": method, "action": action, "times": times, "ranged": ranged,
                                "status": status, "path": path})

    def pending(self):
        with self.lock:
            return [f for f in self.faults if f["times"] > 0]

    def actions(self, action):
        with self.lock:
            return sum(1 for e in self.log if e[3] == action)

    def _take(self, method, ranged, path):
        with self.lock:
            for f in self.faults:
                if (f["times"] > 0 and f["method"] == method and (f["ranged"] is None or f["ranged"] == ranged)
                        and (f["path"] is None or f["path"] in path)):
                    f["times"] -= 1
                    return f
        return None

    def handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        rng = h.headers.get("Range")
        fault = self._take(h.command, rng is not None, h.path)
        action = fault["action"] if fault else "forward"
        with self.lock:
            self.log.append((h.command, h.path, rng, action))
        if action == "reset":
            h.rfile.read(max(1, length // 2))
            # SO_LINGER 0: close with RST, as a dropped connection looks to the client.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        body = h.rfile.read(length) if length else b""
        if action == "delay":
            time.sleep(30)
        if action == "status":
            payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            h.send_response(fault["status"])
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        conn.close()
        if action == "hang_after_store":
            time.sleep(8)  # longer than the client's timeout
            h.connection.close()
            h.close_connection = True
            return
        if action == "corrupt" and data:
            # The first byte: a ranged answer may span bytes the client then skips, never its first.
            data = bytes([data[0] ^ 0x20]) + data[1:]
        if action == "truncate" and data:
            data = data[:len(data) // 2]
            out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-range"]
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                out_headers.append(("Content-Range", f"bytes {start}-{start + len(data) - 1}/*"))
        h.send_response(resp.status, resp.reason)
        for k, v in out_headers:
            h.send_header(k, v)
        # A HEAD answer has no body but the object's length.
        h.send_header("Content-Length", resp.getheader("Content-Length", "0") if h.command == "HEAD" else str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
