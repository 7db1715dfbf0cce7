"""Run-wide fixtures: a real S3-compatible server in its own process, one bucket per test.

The server runs as a separate process on purpose: inside the test process (moto's ThreadedMotoServer)
delta-rs calls hang, because the server thread needs the GIL that the blocked Rust call holds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

TEST_KEY_ID = "testing-key-id"
TEST_SECRET = "testing-secret-Zq8vN3"  # scanned for by the secret-leak tests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(url: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"S3 test server did not start at {url}")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str = TEST_KEY_ID
    secret: str = TEST_SECRET
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a user would export; enough for every part of the pipeline."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": self.region,
        }

    def storage_options(self) -> dict[str, str]:
        """delta-rs options for this server (http endpoint needs AWS_ALLOW_HTTP)."""
        return {**self.env(), "AWS_ALLOW_HTTP": "true"}

    def boto3_client(self):  # noqa: ANN201
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )

    def make_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.boto3_client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto_server process for the whole run."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = wait_until_listening(f"http://127.0.0.1:{port}")
        yield S3Server(endpoint=endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    return s3_server.make_bucket()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The standard AWS_* variables pointed at the test server, as a user would set them."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One throwaway Prefect API for the whole run; yields its URL."""
    from prefect import get_client
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        with get_client(sync_client=True) as client:
            yield str(client.api_url)


@pytest.fixture(scope="session")
def dask_address(prefect_api: str) -> Iterator[str]:
    """A real local Dask cluster (worker processes, so pickling bugs surface) for flows given its address.

    Workers get the run's Prefect API URL: without it each worker process would start its own ephemeral API.
    """
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    ) as cluster:
        yield cluster.scheduler_address
