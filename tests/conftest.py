"""Run-wide fixtures: a real S3-compatible server in its own process, one bucket per test.

The server runs as a separate process on purpose: inside the test process (moto's ThreadedMotoServer)
delta-rs calls hang, because the server thread needs the GIL that the blocked Rust call holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from servers import S3Server

from taxi_assets.cli.local_s3 import moto_server

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto_server process for the whole run (the demo's launcher: a process of its own)."""
    with moto_server() as endpoint:
        yield S3Server(endpoint=endpoint)


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


# Fixtures that start a server or a cluster: a test using one is an integration test, marked or not, so that
# `pytest -m "not integration"` starts no moto, Prefect API or Dask cluster.
_SERVER_FIXTURES = frozenset({"s3_server", "s3_bucket", "s3_env", "prefect_api", "dask_address", "local_clusters"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
