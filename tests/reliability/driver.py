"""A worker process for the reliability tests: ``taxi-assets materialize`` with a kill switch, or a forced run.

``python driver.py crash MONTH POINT``
    What ``taxi-assets materialize --partition MONTH`` runs (plan, then ``steps.run_month``), except that the
    process sends itself SIGKILL at ``POINT``: ``reading`` (the 4th batch of the month is being read, earlier
    groups are on their way to disk), ``files_written`` (every data file of both tables written, no commit yet),
    ``between_commits`` (quarantine committed, trips not), ``after_trips_commit`` (both committed, checks not
    run), or ``none``. The points are reached by wrapping the functions ``sink.write_month`` calls, so nothing
    in the package carries a test hook. The month streams in 100-row batches into one 100-row group per file.

``python driver.py run MONTHS [BARRIER_DIR N]``
    ``run_month`` on each month of the comma-separated list (a month may repeat) whatever its state
    (``--intent reprocess``). With a barrier, the driver plans, then waits until ``N`` drivers have written
    their ready file into ``BARRIER_DIR``, so that all of them start writing together; and its first commit
    waits again, in ``BARRIER_DIR/commit``, after the table was read and before the commit is sent, so the
    ``N`` first commits all start from the same table version: all but one must be retried (a conflict on the
    same month, a rebase by delta-rs on another), whatever the machine's load.
    Prints one JSON line per month: ``partition``, ``ok``, ``run_id``, versions and counts, or ``error``, the
    ``started`` and ``finished`` epoch times of its ``run_month``, and ``commits``: the month's two commits'
    ``attempts``, ``conflicts`` (retried here), ``rebased`` (retried by delta-rs) and ``rebased_over``.

Source, sink and credentials come from ``TAXI_ASSETS_SOURCE``, ``TAXI_ASSETS_SINK`` and ``AWS_*``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from partitions.errors import PartitionsError
from taxi_assets.assets import trips as steps
from taxi_assets.errors import TaxiAssetsError
from taxi_assets.io import reader, sink
from taxi_assets.io.parquet_files import WriteLayout
from taxi_assets.settings import Settings

POINTS = ("reading", "files_written", "between_commits", "after_trips_commit", "none")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def small_streams() -> None:
    layout = WriteLayout(rows_per_group=100, groups_per_file=1, lanes=1)
    steps.write_month = functools.partial(sink.write_month, layout=layout)  # type: ignore[assignment]
    sink.MonthReader = functools.partial(reader.MonthReader, batch_rows=100)  # type: ignore[assignment,misc]


def install(point: str) -> None:
    if point not in POINTS:
        raise SystemExit(f"unknown crash point {point!r}; one of {', '.join(POINTS)}")
    batches = 0
    split = reader.split

    def reading(*args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        batches += 1
        if point == "reading" and batches == 4:
            time.sleep(0.3)  # let the writer thread put the first groups on disk
            die()
        return split(*args, **kwargs)

    commits = 0
    commit_files = sink.commit_files

    def committing(*args: Any, **kwargs: Any) -> int:
        nonlocal commits
        commits += 1  # 1: quarantine, 2: trips
        if (point, commits) in (("files_written", 1), ("between_commits", 2)):
            die()
        version = commit_files(*args, **kwargs)
        if (point, commits) == ("after_trips_commit", 2):
            die()
        return version

    reader.split = reading  # type: ignore[assignment]
    sink.commit_files = committing  # type: ignore[assignment]


def crash(month: str, point: str) -> int:
    small_streams()
    install(point)
    cfg = Settings.resolve()
    plan = steps.plan_months(cfg, partitions=[month])
    result = steps.run_month(plan.listing.files[month], cfg, run_id=steps.new_run_id(), code_version=plan.code_version)
    print(json.dumps(dataclasses.asdict(result), default=str))
    return 0


def wait_for_all(barrier: Path, n: int, timeout: float = 120.0) -> None:
    barrier.mkdir(exist_ok=True)
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while (ready := sum(p.is_file() for p in barrier.iterdir())) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {ready} of {n} drivers ready at {barrier} after {timeout} s")
        time.sleep(0.01)


def record_commits() -> dict[str, Any]:
    """The CommitStats of each month's last write, by month (wraps ``steps.write_month``)."""
    seen: dict[str, Any] = {}
    write_month = steps.write_month

    def recording(source: Any, *args: Any, **kwargs: Any) -> Any:
        written = write_month(source, *args, **kwargs)
        seen[source.partition] = dataclasses.asdict(written.commits)
        return written

    steps.write_month = recording  # type: ignore[assignment]
    return seen


def commit_together(barrier: Path, n: int) -> None:
    """The first commit of this process waits, table read, until ``n`` drivers are at the same point."""
    from deltalake import DeltaTable

    send = DeltaTable.create_write_transaction
    waited = False

    def together(self: DeltaTable, *args: Any, **kwargs: Any) -> Any:
        nonlocal waited
        if not waited:
            waited = True
            wait_for_all(barrier, n)
        return send(self, *args, **kwargs)

    DeltaTable.create_write_transaction = together  # type: ignore[method-assign]


def run(months: list[str], barrier: Path | None, n: int) -> int:
    small_streams()
    commits = record_commits()
    cfg = Settings.resolve()
    plan = steps.plan_months(cfg, partitions=sorted(set(months)))
    if barrier is not None:
        wait_for_all(barrier, n)
        commit_together(barrier / "commit", n)
    for month in months:
        run_id = steps.new_run_id()
        started = time.time()
        try:
            result = steps.run_month(plan.listing.files[month], cfg, run_id=run_id, code_version=plan.code_version)
            line = {**dataclasses.asdict(result), "run_id": run_id}
        except (TaxiAssetsError, PartitionsError) as exc:
            line = {"partition": month, "ok": False, "run_id": run_id, "error": f"{type(exc).__name__}: {exc}"}
        line.update(started=started, finished=time.time(), commits=commits.pop(month, None))
        print(json.dumps(line, default=str), flush=True)
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "crash":
        raise SystemExit(crash(rest[0], rest[1]))
    if command == "run":
        barrier = Path(rest[1]) if len(rest) > 1 else None
        raise SystemExit(run(rest[0].split(","), barrier, int(rest[2]) if len(rest) > 2 else 1))
    raise SystemExit(f"unknown command {command!r}")
