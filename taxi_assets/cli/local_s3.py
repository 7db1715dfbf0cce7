"""A throwaway S3-compatible server (moto) in a process of its own, for the demo and the tests.

A separate process on purpose: inside the caller's process (moto's ThreadedMotoServer) delta-rs calls hang, because
the server thread needs the GIL that the blocked Rust call holds. moto is the ``s3-demo`` extra, not a core
dependency: without it, :func:`moto_server` says which extra to install.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from taxi_assets.errors import ConfigurationError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it; a race with another process is possible but rare)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_listening(url: str, timeout: float = 30.0) -> str:
    """``url`` once it answers HTTP at all; RuntimeError naming it after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the local S3 server did not start at {url} within {timeout:.0f} s")


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Yield the endpoint of a fresh, empty moto S3 server; stop it on exit."""
    if importlib.util.find_spec("moto") is None:
        raise ConfigurationError(
            "--s3", "the local S3 server needs moto: install the s3-demo extra (pip install 'taxi-assets[s3-demo]')"
        )
    port = free_port(host)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield wait_until_listening(f"http://{host}:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
