"""The ``daily_summary`` asset: trips, fare, tips and miles per day, company and borough pair, month by month.

It is partitioned like ``trips`` and depends on it: each month's record stores, as its source fingerprint, the run
id of the ``trips`` success it was computed from (``partitions.staleness.upstream_sources``), so the planner
marks a month ``source-changed`` as soon as that month of ``trips`` is rematerialized, and ``fresh`` otherwise.

One aggregation, two ways in. A month task builds the summary as the month streams (:class:`StreamSummary` beside
the writer, on the clean rows it commits; the checks then prove those rows are the committed ones), and commits it
right after ``trips`` (:func:`commit_summary`): no second read of the month, and on a cluster every worker
summarizes its own months. A month whose summary is stale on its own (a new :data:`SUMMARY_VERSION`, a lost
commit) is rebuilt by :func:`materialize_daily_summary` from exactly the ``trips`` version its latest success
committed, through DuckDB's scan of that version into the same :class:`StreamSummary`. Each batch is summed on
one dense integer key (day, licence, borough codes from a lookup table: no join, no hash table per row), then
DuckDB merges the partial sums and names the keys. Sums are float64 added batch by batch: two builds of a month
agree to the last few bits, not bit for bit.

Companies come from ``hvfhs_license_num`` (HV0002 Juno, HV0003 Uber, HV0004 Via, HV0005 Lyft; any other code is
kept as is), boroughs from the TLC zone lookup (``taxi_assets.synth.zones.zone_lookup``), whose own text is
kept: 264 is ``Unknown`` and 265 (outside NYC) is ``N/A``, as the TLC publishes them (spec section 6); a location
the lookup does not know is ``Unknown``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final

import pyarrow as pa

from partitions.delta_log import read_records
from partitions.overwrite import overwrite_partition
from partitions.records import MaterializationRecord
from partitions.staleness import PlanRow, plan, upstream_sources
from partitions.storage_errors import open_table
from taxi_assets.errors import ConfigurationError
from taxi_assets.io.duckdb import open_connection, register_table
from taxi_assets.model.code_version import daily_summary_code_version
from taxi_assets.model.daily_aggregation import TRIPS_COLUMNS, StreamSummary, summary_schema
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.settings import Settings

TABLE: Final = "daily_summary"
UPSTREAM: Final = "trips"

SCAN_BATCH_ROWS: Final = 256 * 1024  # rows per batch a rebuild hands StreamSummary


def summary_uri(cfg: Settings) -> str:
    return f"{cfg.sink}/{TABLE}"


def plan_daily_summary(cfg: Settings) -> list[PlanRow]:
    """One row per month: missing, source-changed (``trips`` rewritten), code-changed, orphaned or fresh."""
    trips = read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri))
    uri = summary_uri(cfg)
    return plan(
        upstream_sources(trips, table=UPSTREAM),
        read_records(uri, storage_options=cfg.storage_options(uri)),
        code_version=daily_summary_code_version(),
    )


def stale_summary_months(cfg: Settings) -> list[str]:
    """The months whose summary must be rebuilt (missing, upstream rewritten, code changed), sorted.

    Reads only the two Delta logs (``trips`` and ``daily_summary``), never data: `taxi-assets run` asks it before
    deciding that nothing is stale, so a new :data:`SUMMARY_VERSION` or a summary lost to a crash after the trips
    commit is repaired by the next run, not by the next change of a trips month.
    """
    return [row.partition for row in plan_daily_summary(cfg) if row.state.is_stale]


def materialize_daily_summary(month: str, cfg: Settings, *, run_id: str, now: Callable[[], str] | None = None) -> int:
    """Recompute one month from the ``trips`` version of its latest success; replace it; return the version."""
    clock = now or _now
    started = clock()
    history = read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri)).get(month)
    upstream = history.latest_success if history is not None else None
    if upstream is None or upstream.version is None:
        raise ConfigurationError(
            "partition",
            f"{month}: {cfg.trips_uri} has no successful materialization of this month to summarize; "
            f"run `taxi-assets run --partitions {month}` first",
        )
    table = summarize(
        cfg.trips_uri, month, version=upstream.version, storage_options=cfg.storage_options(cfg.trips_uri)
    )
    return commit_summary(
        cfg,
        table,
        month=month,
        run_id=run_id,
        upstream_run_id=upstream.run_id,
        upstream_version=upstream.version,
        upstream_rows=upstream.rows_written,
        started_at=started,
        finished_at=clock(),
    )


def commit_summary(
    cfg: Settings,
    table: pa.Table,
    *,
    month: str,
    run_id: str,
    upstream_run_id: str,
    upstream_version: int,
    upstream_rows: int,
    started_at: str = "",
    finished_at: str = "",
) -> int:
    """Replace ``month`` of ``daily_summary`` with ``table``, recorded as computed from that ``trips`` commit.

    The record names the ``trips`` success it summarizes (its run id as source fingerprint, its version as
    upstream): the planner then calls the month fresh until that month of ``trips`` is written again.
    """
    record = MaterializationRecord(
        partition=month,
        status="success",
        run_id=run_id,
        code_version=daily_summary_code_version(),
        source_uri=f"upstream:{UPSTREAM}",
        source_fingerprint=upstream_run_id,
        rows_source=upstream_rows,
        rows_written=table.num_rows,
        started_at=started_at,
        finished_at=finished_at or _now(),
        upstream=f"{UPSTREAM}@{upstream_version}",
    )
    uri = summary_uri(cfg)
    return overwrite_partition(
        uri,
        table,
        column=PARTITION_COLUMN,
        record=record,
        schema=summary_schema(),
        storage_options=cfg.storage_options(uri),
    )


def summarize(trips_uri: str, month: str, *, version: int, storage_options: dict[str, str] | None = None) -> pa.Table:
    """The summary rows of ``month`` from ``trips`` at ``version``, on :func:`summary_schema` (pure read).

    DuckDB's own Delta scan of the pinned version (:func:`taxi_assets.analysts.views.register_table`; partition-pruned,
    only :data:`TRIPS_COLUMNS`) streams record batches into a :class:`StreamSummary`, as a month task's do.
    """
    con = open_connection(storage_options=storage_options)
    try:
        open_table(trips_uri, version=version, storage_options=storage_options, partition=month)  # store failures named
        register_table(
            con, "month_trips", trips_uri, schema=trips_schema(), version=version, storage_options=storage_options
        )
        columns = ", ".join(f'"{c}"' for c in TRIPS_COLUMNS)
        scan = con.execute(f"SELECT {columns} FROM month_trips WHERE {PARTITION_COLUMN} = ?", [month])
        with StreamSummary(month) as summary:
            for batch in _read_ahead(scan.to_arrow_reader(SCAN_BATCH_ROWS)):
                summary.add(batch)
            return summary.result()
    finally:
        con.close()


def _read_ahead(reader: pa.RecordBatchReader, depth: int = 4) -> Iterator[pa.RecordBatch]:
    """``reader``'s batches, read by a thread ahead of the consumer: DuckDB scans while the summary sums.

    Pulled on the consumer's thread, the scan and the aggregation take turns; read ahead, they overlap (the
    figures: docs/performance.md). The reader thread stops at the end, on an error (re-raised here) or when the
    consumer leaves early (the queue is drained so the thread is never left blocked).
    """
    ready: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                if stop.is_set():
                    return
                ready.put(batch)
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(exc)

    thread = threading.Thread(target=produce, name="daily-summary-scan", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
