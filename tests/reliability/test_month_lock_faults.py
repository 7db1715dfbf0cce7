"""The month guard when the Prefect API misbehaves: a 503 while taking the slot is retried, a lasting one is named.

The fault proxy (s3_proxy.py, a plain HTTP forwarder) stands between the guard and a real Prefect API and
answers ``503`` to exactly the requests a case scripts; the Prefect client's own retries are off, so every 503
reaches the guard and the count of faults served is the count of retries the guard made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from s3_proxy import Proxy

from taxi_assets.errors import MonthBusy
from taxi_assets.orchestration.month_lock import hold_month

pytestmark = pytest.mark.integration

TAKE = "increment-with-lease"


@pytest.fixture(scope="module")
def api_proxy() -> Iterator[Proxy]:
    with prefect_test_harness(server_startup_timeout=120), get_client(sync_client=True) as client:
        url = urlsplit(str(client.api_url))
        proxy = Proxy(f"{url.scheme}://{url.netloc}")
        try:
            with temporary_settings({PREFECT_API_URL: f"{proxy.endpoint}{url.path}", PREFECT_CLIENT_MAX_RETRIES: 0}):
                yield proxy
        finally:
            proxy.close()


@pytest.fixture
def limit(api_proxy: Proxy) -> str:
    api_proxy.reset()
    name = f"test-month-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    return name


def active_slots(limit: str) -> int:
    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(limit).active_slots)


def test_a_503_while_taking_the_slot_is_retried(api_proxy: Proxy, limit: str, caplog, figure) -> None:
    api_proxy.fail("error", method="POST", path=TAKE, count=3)
    with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=60):
        assert active_slots(limit) == 1
    served = api_proxy.stats()["faults"].get("error", 0)
    figure("month_guard", case="3 x 503 on taking the slot", faults=served)
    assert served == 3
    assert caplog.text.count(f"{limit}: taking the slot failed") == 3
    assert active_slots(limit) == 0
    assert sum(TAKE in line for line in api_proxy.log()) == 4  # three refused, the fourth took it


def test_a_lasting_503_is_month_busy_naming_the_answer(api_proxy: Proxy, limit: str) -> None:
    api_proxy.fail("error", method="POST", path=TAKE, count=10_000)
    with pytest.raises(MonthBusy) as info, hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=2):
        pytest.fail("the slot was taken through a failing API")
    message = str(info.value)
    assert message.startswith(f"2019-04: could not take the month's concurrency slot '{limit}' in 2 s;")
    assert "503" in message
    assert info.value.detail
    assert api_proxy.stats()["faults"]["error"] >= 1  # (how many tries fit in the wait depends on the machine)
    assert active_slots(limit) == 0
