"""One writer per month across runs, and no month left locked by a run that died.

The guard is the month's Prefect global concurrency limit (limit 1), taken with a lease. Prefect alone cannot
free a slot whose holder was killed: the ephemeral API (what ``taxi-assets run`` uses without
``PREFECT_API_URL``) keeps leases in memory and does not run the repossessor service that expires them, and a
``prefect server start`` restarted with its default in-memory lease storage forgets them too; the slot then
stays counted in the database forever. So the holder also records itself in a Prefect variable beside the limit
(``<limit>-holder``: run id, host, pid and the pid's start time, since, lease id, heartbeat), and a waiter
that finds the month busy judges that holder:

* same host: dead when its pid is gone or now belongs to another process (start time differs): at once;
* any host: dead when its heartbeat has not moved for ``stale_after`` seconds of the waiter's own clock;
* no record while the slot stays taken for ``orphan_after`` seconds: a holder killed between taking the slot
  and recording itself (or a slot taken outside taxi-assets): dead.

A dead holder's slot is released once: the breaker must first create ``<limit>-break`` (a unique name, so one
breaker wins), re-read the record to see it unchanged, release the lease (or, when the API no longer knows the
lease, one slot by name), then delete both variables. Any other answer of the API while taking the slot (a 503
from a busy database, a dropped connection) is retried with backoff until the wait ends; a wait that ends is
:class:`~taxi_assets.errors.MonthBusy` naming the live holder, or the last error.

Only the public ``PrefectClient`` methods are used (limits, leases, variables); nothing here knows about months
beyond the name of the limit, so the flow stays the only caller that knows what a month is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import psutil
from prefect import get_client, get_run_logger
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

from taxi_assets.errors import MonthBusy

LEASE_SECONDS: Final = 120.0  # Prefect's minimum is 60; renewed every heartbeat, so a live holder never loses it
HEARTBEAT_SECONDS: Final = 10.0
STALE_AFTER_SECONDS: Final = 90.0  # nine missed heartbeats: only then is a holder on another host dead
ORPHAN_AFTER_SECONDS: Final = 30.0  # a live holder records itself within a second of taking the slot
BREAK_STALE_SECONDS: Final = 60.0  # a breaker that died mid-break leaves '<limit>-break'; older ones are ignored
HOLDER_SUFFIX: Final = "-holder"
BREAK_SUFFIX: Final = "-break"

log = logging.getLogger("taxi_assets.month_lock")


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger inside a task (the line shows in the run's logs), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a month's slot, as recorded in the ``<limit>-holder`` variable (no secret in it)."""

    token: str
    run_id: str
    host: str
    pid: int
    pid_started: float
    since: float
    beat: float
    lease_id: str

    @classmethod
    def from_value(cls, value: Any) -> Holder | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(**{k: value[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {since})"


def _this_process() -> tuple[str, int, float]:
    pid = os.getpid()
    return socket.gethostname(), pid, float(psutil.Process(pid).create_time())


def dead_on_this_host(holder: Holder) -> bool | None:
    """True/False for a holder on this host (its pid is gone, or reused by another process); None elsewhere."""
    if holder.host != socket.gethostname():
        return None
    try:
        started = float(psutil.Process(holder.pid).create_time())
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # exists but not ours to inspect: alive
        return False
    return abs(started - holder.pid_started) > 1.0


class _Watch:
    """A waiter's view of the holder over time: when it last saw the heartbeat move, or the record missing."""

    def __init__(self, *, stale_after: float, orphan_after: float) -> None:
        self.stale_after, self.orphan_after = stale_after, orphan_after
        self._beat: tuple[str, float] | None = None
        self._beat_seen = 0.0
        self._missing_since: float | None = None

    def verdict(self, holder: Holder | None, now: float) -> tuple[bool, str]:
        """(dead?, why) for what the waiter reads now."""
        if holder is None:
            self._beat = None
            if self._missing_since is None:
                self._missing_since = now
            missing = now - self._missing_since
            why = (
                f"an unrecorded holder (a run killed before recording itself, or a slot taken outside taxi-assets;"
                f" seen for {missing:.0f} s, released after {self.orphan_after:.0f} s)"
            )
            return missing >= self.orphan_after, why
        self._missing_since = None
        local = dead_on_this_host(holder)
        if local:
            return True, f"{holder.describe()} is dead: no process {holder.pid} started then on {holder.host}"
        if (holder.token, holder.beat) != self._beat:
            self._beat, self._beat_seen = (holder.token, holder.beat), now
        quiet = now - self._beat_seen
        if local is None and quiet >= self.stale_after:
            return True, f"{holder.describe()} is dead: no heartbeat for {quiet:.0f} s"
        return False, f"{holder.describe()} is alive"


def _read_holder(client: SyncPrefectClient, limit: str) -> Holder | None:
    var = client.read_variable_by_name(limit + HOLDER_SUFFIX)
    return Holder.from_value(var.value) if var is not None else None


def _write_holder(client: SyncPrefectClient, limit: str, holder: Holder) -> None:
    name, value = limit + HOLDER_SUFFIX, asdict(holder)
    try:
        client.create_variable(VariableCreate(name=name, value=value))
    except ObjectAlreadyExists:  # a dead holder's record, not yet cleaned: ours replaces it
        client.update_variable(VariableUpdate(name=name, value=value))


def _delete_quietly(client: SyncPrefectClient, name: str) -> None:
    with contextlib.suppress(ObjectNotFound):
        client.delete_variable_by_name(name)


def _active_slots(client: SyncPrefectClient, limit: str) -> int:
    return int(client.read_global_concurrency_limit_by_name(limit).active_slots)


def release_dead_holder(client: SyncPrefectClient, limit: str, seen: Holder | None, why: str) -> bool:
    """Free the slot of a holder judged dead, exactly once across waiters; True when this call freed it."""
    brk = limit + BREAK_SUFFIX
    mine = {"token": seen.token if seen else "orphan", "at": time.time(), "by": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        client.create_variable(VariableCreate(name=brk, value=mine))
    except ObjectAlreadyExists:
        other = client.read_variable_by_name(brk)
        at = other.value.get("at", 0.0) if other is not None and isinstance(other.value, dict) else 0.0
        if time.time() - float(at) > BREAK_STALE_SECONDS:  # its breaker died mid-break: let the next try win
            _delete_quietly(client, brk)
        return False
    try:
        now = _read_holder(client, limit)
        if (now.token if now else None) != (seen.token if seen else None):
            return False  # the holder changed meanwhile: someone else released it and a new run took the slot
        before = _active_slots(client, limit)
        if before < 1:
            return False
        if seen is not None and seen.lease_id:
            client.release_concurrency_slots_with_lease(uuid.UUID(seen.lease_id))  # a no-op if the API lost it
        if _active_slots(client, limit) >= before:  # the API no longer knew the lease: one slot by name
            occupied = max(time.time() - (seen.since if seen else time.time()), 1.0)
            client.release_concurrency_slots([limit], slots=1, occupancy_seconds=occupied)
        if seen is not None:
            _delete_quietly(client, limit + HOLDER_SUFFIX)
        _logger().warning("%s: released the slot of a dead holder (%s)", limit, why)
        return True
    finally:
        _delete_quietly(client, brk)


def _try_take(client: SyncPrefectClient, limit: str) -> str | None:
    """The lease id when the slot was free, None when it is busy (423); other API answers raise."""
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == httpx.codes.LOCKED:
            return None
        raise
    body = response.json()
    if not body.get("limits"):
        client.release_concurrency_slots_with_lease(uuid.UUID(body["lease_id"]))
        raise RuntimeError(f"concurrency limit {limit!r} does not exist: the flow creates it before the months")
    return str(body["lease_id"])


class _Heartbeat(threading.Thread):
    """Renews the lease and moves the record's heartbeat while the month runs; a failure only warns."""

    def __init__(self, limit: str, holder: Holder, every: float) -> None:
        super().__init__(name=f"heartbeat-{limit}", daemon=True)
        self.limit, self.holder, self.every = limit, holder, every
        self.stopped = threading.Event()

    def run(self) -> None:
        with get_client(sync_client=True) as client:
            while not self.stopped.wait(self.every):
                try:
                    client.renew_concurrency_lease(uuid.UUID(self.holder.lease_id), lease_duration=LEASE_SECONDS)
                except httpx.HTTPError as exc:  # lease gone (API restarted) or API unreachable: the write goes on
                    log.warning("%s: lease renewal failed (%s); Delta still refuses racing commits", self.limit, exc)
                try:
                    current = _read_holder(client, self.limit)
                    if current is None or current.token != self.holder.token:  # only a breaker removes our record
                        taker = current.describe() if current else "a run that judged this one dead"
                        log.warning("%s: the month's guard was released by %s; Delta still refuses racing commits",
                                    self.limit, taker)  # fmt: skip
                        return
                    self.holder = Holder(**{**asdict(self.holder), "beat": time.time()})
                    client.update_variable(VariableUpdate(name=self.limit + HOLDER_SUFFIX, value=asdict(self.holder)))
                except httpx.HTTPError as exc:
                    log.warning("%s: heartbeat not recorded (%s)", self.limit, exc)


@contextlib.contextmanager
def hold_month(
    limit: str,
    *,
    partition: str,
    run_id: str,
    timeout_seconds: float,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    stale_after: float = STALE_AFTER_SECONDS,
    orphan_after: float = ORPHAN_AFTER_SECONDS,
) -> Iterator[Holder]:
    """Hold the month's slot for the block; wait for a live holder, release a dead one.

    Raises:
        MonthBusy: the slot stayed taken by a live holder (named) or the API kept refusing it (its last answer)
            for ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    watch = _Watch(stale_after=stale_after, orphan_after=orphan_after)
    pause, last_holder, last_error = 0.2, "", ""
    with get_client(sync_client=True) as client:
        while True:
            try:
                lease_id = _try_take(client, limit)
                if lease_id is not None:
                    break
                seen = _read_holder(client, limit)
                dead, why = watch.verdict(seen, time.monotonic())
                last_holder, last_error = (f"{seen.describe()}, alive" if seen else why), ""
                if dead and release_dead_holder(client, limit, seen, why):
                    pause = 0.2
                    continue
            except (httpx.HTTPError, OSError) as exc:  # 5xx (a busy database), timeouts, dropped connections
                last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                _logger().warning("%s: taking the slot failed (%s); retrying", limit, last_error)
            left = deadline - time.monotonic()
            if left <= 0:
                raise MonthBusy(partition, limit, timeout_seconds, holder=last_holder, detail=last_error)
            time.sleep(min(left, pause * random.uniform(0.5, 1.5)))
            pause = min(pause * 2, 5.0)
        host, pid, started = _this_process()
        now = time.time()
        holder = Holder(uuid.uuid4().hex, run_id, host, pid, started, now, now, lease_id)
        try:
            _write_holder(client, limit, holder)
        except BaseException:
            client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))
            raise
        beat = _Heartbeat(limit, holder, heartbeat_seconds)
        beat.start()
        try:
            yield holder
        finally:
            beat.stopped.set()
            beat.join(timeout=5)
            with contextlib.suppress(httpx.HTTPError):
                current = _read_holder(client, limit)
                if current is not None and current.token == holder.token:
                    _delete_quietly(client, limit + HOLDER_SUFFIX)
            with contextlib.suppress(httpx.HTTPError):
                client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))
