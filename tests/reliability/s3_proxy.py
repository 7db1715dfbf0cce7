"""A small HTTP proxy in front of the test S3 server that can cut the network, fail requests or lose responses.

moto keeps its state in memory, so "stop S3 and start it again" would lose the bucket; instead every client
talks to this proxy, which forwards to moto and, on command, misbehaves the way a network or a store does:

==================== ============================================================================================
fault                what the client sees
==================== ============================================================================================
``down``             every connection is closed without an answer (a cut network), until ``up``
``error``            ``503 SlowDown`` (or ``500 InternalError`` with ``status=500``) for the next ``count``
                     requests whose method and path match
``drop``             the next ``count`` matching requests reach S3 and take effect, then the connection closes
                     without the answer: the client does not know its write landed (a lost response)
``deny``             ``403 InvalidAccessKeyId`` for everything (wrong credentials), until ``up``
``cut``              at the next matching request the network goes ``down`` for ``seconds`` (for good when 0),
                     or, with ``requests=n``, for that request and the ``n - 1`` next ones, whatever the time
                     (a cut whose length does not depend on the clients' timing); with ``after``, that request
                     reaches S3 first and only its answer is lost
==================== ============================================================================================

It runs in its own process (``python s3_proxy.py UPSTREAM``; it prints its port): a proxy thread inside the test
process would need the GIL that a blocked delta-rs call holds. :class:`Proxy` starts and drives it over
``/__proxy__/...`` paths on the same port, which S3 never uses.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONTROL = "/__proxy__/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
    b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>"
)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "up"  # up | down | deny
        self.rules: list[dict] = []  # {"fault": error|drop|cut, "method": re, "path": re, "count": n, ...}
        self.down_until = 0.0  # mode "down" ends at this monotonic time (0: until "up")
        self.down_left = 0  # or after this many more refused requests (0: not counted)
        self.seen = 0
        self.faults: dict[str, int] = {}
        self.log: list[str] = []

    def take(self, method: str, path: str) -> str | None:
        """The fault to apply to this request, if any (consumes one count of the first matching rule)."""
        with self.lock:
            self.seen += 1
            self.log.append(f"{method} {path}")
            if self.mode == "down" and self.down_until and time.monotonic() >= self.down_until:
                self.mode, self.down_until = "up", 0.0
            if self.mode == "down" and self.down_left:
                self.down_left -= 1
                if self.down_left == 0:
                    self.mode = "up"  # this request is the last one refused
                self.faults["down"] = self.faults.get("down", 0) + 1
                return "down"
            if self.mode in ("down", "deny"):
                self.faults[self.mode] = self.faults.get(self.mode, 0) + 1
                return self.mode
            for rule in self.rules:
                if rule["count"] > 0 and re.search(rule["method"], method) and re.search(rule["path"], path):
                    rule["count"] -= 1
                    self.faults[rule["fault"]] = self.faults.get(rule["fault"], 0) + 1
                    if rule["fault"] == "error" and rule.get("status") == 500:
                        return "error500"
                    if rule["fault"] == "cut":
                        seconds, requests = float(rule.get("seconds", 0)), int(rule.get("requests", 0))
                        self.mode, self.down_until = "down", (time.monotonic() + seconds if seconds else 0.0)
                        self.down_left = requests - 1 if requests else 0  # the cut request is the first
                        if requests and self.down_left == 0:
                            self.mode = "up"
                        return "drop" if rule.get("after") else "down"
                    return str(rule["fault"])
            return None


def _serve(upstream: str, port: int) -> None:
    state = _State()
    target = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
        upstream_conn: HTTPConnection | None = None

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _abort(self) -> None:
            """Close with a reset, no answer: what a cut network looks like to the client."""
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True
            try:
                self.connection.close()
            except OSError:
                pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
            self.send_response(status)
            for name, value in headers or [("Content-Type", "application/xml")]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has no body
                self.wfile.write(body)

        def _control(self) -> None:
            body = self._body()
            command = self.path[len(CONTROL) :].split("?", 1)[0]
            args = json.loads(body) if body else {}
            with state.lock:
                if command in ("up", "down", "deny"):
                    state.mode, state.down_until, state.down_left = command, 0.0, 0
                    if command == "up":
                        state.rules.clear()
                elif command == "rule":
                    state.rules.append(
                        {
                            "fault": args["fault"],
                            "method": args.get("method", "."),
                            "path": args.get("path", "."),
                            "count": int(args.get("count", 1)),
                            "seconds": float(args.get("seconds", 0)),
                            "after": bool(args.get("after", False)),
                            "status": int(args.get("status", 503)),
                            "requests": int(args.get("requests", 0)),
                        }
                    )
                elif command == "reset":
                    state.mode, state.seen, state.faults, state.log, state.down_until = "up", 0, {}, [], 0.0
                    state.down_left = 0
                    state.rules.clear()
                answer = {
                    "mode": state.mode,
                    "seen": state.seen,
                    "faults": dict(state.faults),
                    "pending": [dict(r) for r in state.rules if r["count"] > 0],
                    "log": state.log[-200:] if command == "log" else [],
                }
            self._reply(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])

        def _forward(self) -> None:
            if self.path.startswith(CONTROL):
                self._control()
                return
            fault = state.take(self.command, self.path)
            if fault == "down":
                self._abort()
                return
            body = self._body()
            if fault == "deny":
                self._reply(403, DENIED)
                return
            if fault == "error":
                self._reply(503, SLOW_DOWN)
                return
            if fault == "error500":
                self._reply(500, INTERNAL)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            for attempt in range(2):  # a keep-alive connection moto closed is re-opened once
                if self.upstream_conn is None or attempt:
                    self.upstream_conn = HTTPConnection(target.hostname, target.port, timeout=60)
                    self.upstream_conn.connect()
                    self.upstream_conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    self.upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    response = self.upstream_conn.getresponse()
                    payload = response.read()
                    break
                except (ConnectionError, OSError):
                    if attempt:
                        self._abort()
                        return
            if fault == "drop":  # the request took effect upstream; the client never hears of it
                self._abort()
                return
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD":
                self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that went away mid-answer (retries, cut connections) is part of the game

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Proxy:
    """Start the proxy process in front of ``upstream`` and drive its faults from the test."""

    def __init__(self, upstream: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), upstream], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _call(self, command: str, args: dict | None = None) -> dict:
        data = json.dumps(args or {}).encode()
        request = urllib.request.Request(f"{self.endpoint}{CONTROL}{command}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def up(self) -> dict:
        return self._call("up")

    def down(self) -> dict:
        return self._call("down")

    def deny(self) -> dict:
        return self._call("deny")

    def fail(
        self,
        fault: str,
        *,
        method: str = ".",
        path: str = ".",
        count: int = 1,
        seconds: float = 0.0,
        after: bool = False,
        status: int = 503,
        requests: int = 0,
    ) -> dict:
        """Add a rule: ``fault`` (error, drop or cut) for the next ``count`` requests matching both regexes."""
        args = {"fault": fault, "method": method, "path": path, "count": count, "seconds": seconds, "after": after}
        args.update(status=status, requests=requests)
        return self._call("rule", args)

    def stats(self) -> dict:
        return self._call("stats")

    def log(self) -> list[str]:
        return list(self._call("log")["log"])

    def reset(self) -> dict:
        return self._call("reset")

    def down_for(self, seconds: float) -> threading.Thread:
        """Cut the network now and restore it after ``seconds`` (from a thread; join it to wait)."""
        self.down()

        def restore() -> None:
            time.sleep(seconds)
            self.up()

        thread = threading.Thread(target=restore, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
