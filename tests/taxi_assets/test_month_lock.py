"""The month guard against a real Prefect API: a live holder is waited for and named, a dead one is released.

Holders run in real subprocesses (killed with SIGKILL, so nothing of theirs runs on the way out); the waiter is
this process. What a killed `taxi-assets run` leaves behind end to end is tests/reliability/test_kill_recovery.py.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict

import pytest
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, VariableCreate
from prefect.testing.utilities import prefect_test_harness

from taxi_assets.errors import MonthBusy
from taxi_assets.orchestration import month_lock
from taxi_assets.orchestration.month_lock import Holder, hold_month, release_dead_holder

pytestmark = pytest.mark.integration

HOLD = """
import sys, time
from taxi_assets.orchestration.month_lock import hold_month
with hold_month(sys.argv[1], partition="2019-04", run_id="holder-run", timeout_seconds=60):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with prefect_test_harness(server_startup_timeout=120), get_client(sync_client=True) as client:
        yield str(client.api_url)


@pytest.fixture
def limit(api_url: str) -> str:
    name = f"test-month-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    return name


def active_slots(limit: str) -> int:
    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(limit).active_slots)


def holder_record(limit: str) -> Holder | None:
    with get_client(sync_client=True) as client:
        var = client.read_variable_by_name(limit + month_lock.HOLDER_SUFFIX)
    return Holder.from_value(var.value) if var else None


@pytest.fixture
def holder_process(api_url: str, limit: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the month through the guard (started in its own process group)."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, limit], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_live_holder_is_waited_for_and_named(limit: str, holder_process: subprocess.Popen[str]) -> None:
    t0 = time.monotonic()
    with pytest.raises(MonthBusy) as info, hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=3):
        pytest.fail("the month was taken from a live holder")
    assert time.monotonic() - t0 >= 3
    message = str(info.value)
    assert "2019-04: month busy" in message
    assert f"run holder-run (pid {holder_process.pid} on " in message
    assert "alive" in message
    assert holder_process.poll() is None
    assert active_slots(limit) == 1
    record = holder_record(limit)
    assert record is not None
    assert record.pid == holder_process.pid


def test_a_killed_holder_is_released_at_once(
    limit: str, holder_process: subprocess.Popen[str], caplog: pytest.LogCaptureFixture
) -> None:
    os.killpg(holder_process.pid, signal.SIGKILL)  # nothing of the holder runs: its slot and record stay
    holder_process.wait(timeout=30)
    assert active_slots(limit) == 1
    t0 = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="taxi_assets.month_lock"),
        hold_month(limit, partition="2019-04", run_id="next", timeout_seconds=60) as mine,
    ):
        waited = time.monotonic() - t0
        assert active_slots(limit) == 1
        assert holder_record(limit) == mine
    assert waited < 5  # same host: the dead pid is seen at once, no lease TTL or heartbeat wait
    assert f"released the slot of a dead holder (run holder-run (pid {holder_process.pid}" in caplog.text
    assert active_slots(limit) == 0
    assert holder_record(limit) is None


def test_a_slot_taken_without_a_record_is_released_after_the_orphan_wait(limit: str) -> None:
    with get_client(sync_client=True) as client:  # a run killed between taking the slot and recording itself
        client.increment_concurrency_slots_with_lease(names=[limit], slots=1, mode="concurrency", lease_duration=60)
    with pytest.raises(MonthBusy, match="an unrecorded holder"):
        with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=1, orphan_after=30):
            pass
    t0 = time.monotonic()
    with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=30, orphan_after=2):
        assert 2 <= time.monotonic() - t0 < 10
        assert active_slots(limit) == 1
    assert active_slots(limit) == 0


def test_a_holder_on_another_host_is_dead_when_its_heartbeat_stops(limit: str) -> None:
    with get_client(sync_client=True) as client:
        lease = client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=60
        ).json()["lease_id"]
        t = time.time()
        frozen = Holder(uuid.uuid4().hex, "remote-run", "some-other-host", 4242, t, t, t, str(lease))
        client.create_variable(VariableCreate(name=limit + month_lock.HOLDER_SUFFIX, value=asdict(frozen)))
    with pytest.raises(MonthBusy, match=r"run remote-run \(pid 4242 on some-other-host"):
        with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=1, stale_after=30):
            pass
    with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=30, stale_after=2) as mine:
        assert holder_record(limit) == mine
        assert active_slots(limit) == 1
    assert active_slots(limit) == 0


HOLD_ELSEWHERE = """
import socket, sys, time
socket.gethostname = lambda: "another-host"  # a holder on another machine: judged by its heartbeat alone
from taxi_assets.orchestration.month_lock import hold_month
with hold_month(sys.argv[1], partition="2019-04", run_id="remote-run", timeout_seconds=60, heartbeat_seconds=0.5):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_holder_on_another_host_whose_heartbeat_moves_is_alive(api_url: str, limit: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_ELSEWHERE, limit],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        first = holder_record(limit)
        with pytest.raises(MonthBusy, match=r"held by run remote-run \(pid \d+ on another-host"):
            with hold_month(limit, partition="2019-04", run_id="me", timeout_seconds=12, stale_after=8):
                pytest.fail("a live remote holder was judged dead")
        last = holder_record(limit)
        assert first is not None
        assert last is not None
        assert last.token == first.token
        assert last.beat > first.beat  # it kept beating: 12 s of waiting never saw 8 s of silence
        assert active_slots(limit) == 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_dead_holder_is_released_once_even_by_two_waiters(limit: str) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    with get_client(sync_client=True) as client:
        lease = client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=60
        ).json()["lease_id"]
        t = time.time()
        dead = Holder(uuid.uuid4().hex, "dead-run", socket.gethostname(), dead_pid, t, t, t, str(lease))
        client.create_variable(VariableCreate(name=limit + month_lock.HOLDER_SUFFIX, value=asdict(dead)))
        # Both waiters read the dead record; the first releases it, a new run takes the month at once.
        assert release_dead_holder(client, limit, dead, "first waiter") is True
    with hold_month(limit, partition="2019-04", run_id="new", timeout_seconds=5) as new:
        with get_client(sync_client=True) as client:
            # The second waiter acts on what it read before: it must not free the new run's slot.
            assert release_dead_holder(client, limit, dead, "second waiter") is False
        assert active_slots(limit) == 1
        assert holder_record(limit) == new
