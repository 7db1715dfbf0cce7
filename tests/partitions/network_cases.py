"""Misbehaving network peers for the partitions tests, started by the tests themselves.

* :func:`black_hole`: a TCP socket that listens and never accepts. The kernel completes each connection (up
  to the backlog), the request goes out, and nothing ever comes back: a silent endpoint. No thread, so it works
  under a Rust client (delta-rs) that holds the GIL while it waits.
* :class:`FileServer`: an HTTP server over a directory that honours Range requests (or, with
  ``ranges=False``, ignores them as ``python -m http.server`` does) and, per path fragment, answers a scripted
  sequence first (``503`` codes, or ``"hang"``: never answers until the server stops). It counts requests per
  path, so a test asserts how many attempts were made, not how long they took.
* :class:`S3FaultProxy`: forwards to the test S3 server and answers ``503 SlowDown`` to the next ``n`` requests
  matching a pattern (counted), so a retry is seen happening.
"""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SLOW_DOWN = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>busy</Message></Error>"


@contextmanager
def black_hole() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a socket that accepts connections (in the kernel) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


class FileServer:
    """An HTTP file server with scripted faults; ``url(name)`` is a file's URL, ``seen[fragment]`` its requests."""

    def __init__(self, root: Path, *, ranges: bool = True) -> None:
        self.root, self.ranges = root, ranges
        self.script: dict[str, list[int | str]] = {}
        self.seen: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range header
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                step = server._step(self.command, self.path, self.headers.get("Range"))
                if step == "hang":
                    server.release.wait()
                    self.close_connection = True
                    return
                if isinstance(step, int):
                    self.send_response(step)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                status, part = 200, data
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if server.ranges and match:
                    start = int(match[1])
                    end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                    status, part = 206, data[start : end + 1]
                self.send_response(status)
                self.send_header("Content-Length", str(len(part)))
                self.send_header("ETag", f'"{len(data)}-{hash(data) & 0xFFFF:x}"')
                if server.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {match[1]}-{start + len(part) - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _step(self, method: str, path: str, range_header: str | None) -> int | str | None:
        with self.lock:
            self.requests.append((method, path, range_header))
            for fragment, steps in self.script.items():
                if fragment in path:
                    self.seen[fragment] += 1
                    if steps:
                        return steps[0] if steps[0] == "hang" else steps.pop(0)
            return None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class S3FaultProxy:
    """Forward every request to ``upstream``; answer ``503 SlowDown`` to the next ``fail(n, pattern)`` matches."""

    def __init__(self, upstream: str) -> None:
        target = urllib.parse.urlsplit(upstream)
        self.failing: list[tuple[re.Pattern[str], int]] = []
        self.matched: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._fails(f"{self.command} {self.path}"):
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def fail(self, count: int, pattern: str) -> None:
        with self.lock:
            self.failing.append((re.compile(pattern), count))

    def _fails(self, request: str) -> bool:
        with self.lock:
            for source in {pattern.pattern for pattern, _ in self.failing if pattern.search(request)}:
                self.matched[source] += 1
            for index, (pattern, left) in enumerate(self.failing):
                if left > 0 and pattern.search(request):
                    self.failing[index] = (pattern, left - 1)
                    return True
            return False

    def __enter__(self) -> S3FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
