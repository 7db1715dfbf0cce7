"""A throttled HTTP file server: a source whose months take as long to read as a test needs.

``python slow_source.py DIR BYTES_PER_SECOND`` serves ``DIR`` over HTTP with Range support (what the pipeline's
``http://.../fhvhv_tripdata_{key}.parquet`` source needs), prints its port, then one line
``reading <path> <range>`` per large body it starts sending (> 64 KiB: the data of a month, not a footer probe),
so a test knows a month task is reading before it kills or interrupts the run. ``GET /__rate__/N`` sets the
rate (0: unthrottled). It runs in its own process, outside the process group of the run it serves.
"""

from __future__ import annotations

import http.server
import re
import sys
import threading
import time
from pathlib import Path

LARGE = 64 * 1024


class Throttle:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()


def serve(root: Path, throttle: Throttle) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            if self.path.startswith("/__rate__/"):
                throttle.rate = float(self.path.rsplit("/", 1)[1])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            status, part, start = 200, data, 0
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                status, part = 206, data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Length", str(len(part)))
            self.send_header("ETag", f'"{path.stat().st_mtime_ns:x}-{len(data):x}"')
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if len(part) > LARGE:
                print(f"reading {self.path} {self.headers.get('Range', '-')}", flush=True)
            sent = 0
            try:
                while sent < len(part):
                    chunk = part[sent : sent + 16 * 1024]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    if throttle.rate > 0:
                        time.sleep(len(chunk) / throttle.rate)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client killed mid-request (what these tests do) is not the server's error

    return Server(("127.0.0.1", 0), Handler)


if __name__ == "__main__":
    httpd = serve(Path(sys.argv[1]), Throttle(float(sys.argv[2])))
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()
