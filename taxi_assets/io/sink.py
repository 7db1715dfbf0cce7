"""Write one month into the sink: ``quarantine`` first, then ``trips``, both stamped with the same run id.

Delta has no multi-table transaction, so the order is chosen: the ``trips`` commit is the month's completion
marker. A crash between the two leaves ``trips`` on its previous version (readers see the old month whole)
and a ``quarantine`` commit from a run that ``trips`` does not carry: the planner calls the month incomplete
and the next run rebuilds it.

The month streams through: the reader yields canonical, split batches; each table's
:class:`~taxi_assets.io.writer_pool.PartitionWriter` cuts them into 768 Ki-row groups and encodes them on writer
threads into parquet files under the table; only then are the files committed, one Delta commit per table
(``partitions.overwrite.commit_files``, which retries the commit, never the write). An error before the
first commit deletes the files started; a crash leaves unreferenced files that no reader sees and vacuum
removes. Memory does not grow with the month (``docs/performance.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import pyarrow as pa

from partitions.overwrite import CommitStats, commit_files
from partitions.records import MaterializationRecord
from partitions.source import SourceFile
from partitions.storage_errors import display_uri
from taxi_assets.errors import SourceChanged
from taxi_assets.io.parquet_files import WriteLayout, recycling_memory_pool
from taxi_assets.io.reader import MonthReader
from taxi_assets.io.sources import fingerprint_now
from taxi_assets.io.threads import ThreadShare, ensure_thread_share
from taxi_assets.io.writer_pool import PartitionWriter
from taxi_assets.model.daily_aggregation import StreamSummary
from taxi_assets.model.row_digest import RowsDigest, StreamDigest
from taxi_assets.model.schema import PARTITION_COLUMN, quarantine_schema, trips_batch_schema, trips_schema
from taxi_assets.model.source_columns import SOURCE_COLUMNS, format_source_columns
from taxi_assets.settings import Settings

DEFAULT_LAYOUT: Final = WriteLayout()  # 2 encoder threads: what layout_for gives a 2-core share
ROWS_DIGEST: Final = "fhvhv.rows_digest"  # trips record extra: the streamed row digest, for re-checks
ROWS_DIGEST_BEFORE: Final = "fhvhv.rows_fingerprint"  # the same, as months written before the rename recorded it


def layout_for(share: ThreadShare) -> WriteLayout:
    """The production layout with ``share.lanes`` encoder threads, and one group in flight per lane (>= 2)."""
    return replace(DEFAULT_LAYOUT, lanes=share.lanes, max_groups=max(2, share.lanes))


@dataclass(frozen=True)
class Written:
    """What the two commits of one month hold, and what writing them cost."""

    rows_source: int
    rows_written: int
    rows_quarantined: int
    trips_version: int
    quarantine_version: int
    digest: RowsDigest  # of the trips rows as streamed: what the checks compare the commit with
    summary: pa.Table  # the month's daily_summary rows, summed from the trips rows as streamed (not committed here)
    flags_nulled: int = 0
    extra_columns: tuple[str, ...] = ()
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    trips_files: int = 0
    quarantine_files: int = 0
    row_groups: int = 0
    source_row_groups: int = 0
    seconds_streaming: float = 0.0  # read, cast, rules and every data file written
    seconds_committing: float = 0.0  # the two Delta commits
    commits: CommitStats = field(default_factory=CommitStats)  # of the two commits: attempts, retries, rebases


def write_month(
    source: SourceFile,
    cfg: Settings,
    record: MaterializationRecord,
    *,
    now: Callable[[], str],
    layout: WriteLayout | None = None,
    audit: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
) -> Written:
    """Read, cast and split the month, write both tables' files, then commit quarantine and trips.

    ``record`` is the month's success record (run id, code version, source fingerprint); the row counts are
    filled in here, and ``now`` gives the ISO time stamped as ``finished_at`` on each commit. ``layout`` sets
    row groups, files and writer threads (tests shrink it; the default is what production writes). The clean
    rows are digested as they go by (:mod:`taxi_assets.model.row_digest`), so the checks can prove the commit
    holds exactly those rows without reading the source again; the trips record keeps it as
    :data:`ROWS_DIGEST`. They are also summed into the month's ``daily_summary`` rows
    (:class:`~taxi_assets.assets.daily_summary.StreamSummary`), returned for the caller to commit after ``trips``.
    Without a ``layout``, the encoder threads follow this process's share of the cores
    (:mod:`taxi_assets.io.threads`, applied here unless the caller already did).

    ``audit``, when given, is called with the URIs of the month's new ``trips`` files once they are written and
    before either commit (so a slow audit does not widen the window between the two commits); what it returns
    joins the trips record's extras. It must not raise: the caller decides what an audit failure means.
    """
    month = source.partition
    layout = layout or layout_for(ensure_thread_share())
    t0 = time.perf_counter()
    with (
        recycling_memory_pool(),
        MonthReader(source, storage_options=cfg.storage_options(source.uri)) as reader,
        PartitionWriter(
            cfg.trips_uri,
            trips_batch_schema(),
            column=PARTITION_COLUMN,
            key=month,
            lanes=layout.lanes,
            max_groups=layout.max_groups,
            rows_per_group=layout.rows_per_group,
            groups_per_file=layout.groups_per_file,
            storage_options=cfg.storage_options(cfg.trips_uri),
            name="trips",
        ) as trips,
        PartitionWriter(
            cfg.quarantine_uri,
            quarantine_schema(),
            column=PARTITION_COLUMN,
            key=month,
            lanes=1,  # 0.1-2 % of the rows: one thread is plenty
            rows_per_group=layout.rows_per_group,
            groups_per_file=layout.groups_per_file,
            storage_options=cfg.storage_options(cfg.quarantine_uri),
            name="quarantine",
        ) as quarantine,
        StreamDigest() as digest,
        StreamSummary(month) as summary,
    ):
        for part in reader.batches():
            trips.write(part.batch, part.keep)
            quarantine.write(part.quarantine)
            digest.add(part.batch, part.keep)  # on this thread while the writers encode: ~0.1 s/M rows
            summary.add(part.batch, part.keep)  # likewise: ~0.02 s/M rows
        q_adds = quarantine.finish()
        t_adds = trips.finish()
        stats, rows_clean, rows_bad, kept = reader.stats, trips.rows, quarantine.rows, digest.result()
        summary_rows = summary.result()
        if rows_clean + rows_bad != stats.rows:  # split() conserves rows by construction; never commit otherwise
            raise RuntimeError(f"{month}: {stats.rows} rows read but {rows_clean} + {rows_bad} written")
        current = fingerprint_now(source, cfg)  # inside the block: raising here removes the files just written
        if current is not None and current != source.fingerprint:
            raise SourceChanged(month, display_uri(source.uri), source.fingerprint, current)
    streamed = time.perf_counter() - t0
    root = cfg.trips_uri.rstrip("/")
    audited = dict(audit([f"{root}/{add.path}" for add in t_adds])) if audit is not None else {}
    q_record = replace(record, rows_source=stats.rows, rows_written=rows_bad, finished_at=now())
    commits = CommitStats()
    q_version = commit_files(
        cfg.quarantine_uri,
        q_adds,
        column=PARTITION_COLUMN,
        record=q_record,
        schema=quarantine_schema(),
        storage_options=cfg.storage_options(cfg.quarantine_uri),
        stats=commits,
    )
    t_record = replace(
        record,
        rows_source=stats.rows,
        rows_written=rows_clean,
        rows_quarantined=rows_bad,
        finished_at=now(),
        extra={
            "fhvhv.flags_nulled": str(stats.flags_nulled),
            "fhvhv.extra_columns": ",".join(stats.extra_columns),
            "fhvhv.quarantined_by_rule": ",".join(f"{k}={v}" for k, v in sorted(stats.quarantined_by_rule.items())),
            "fhvhv.source_row_groups": str(stats.row_groups),
            ROWS_DIGEST: kept.to_text(),
            SOURCE_COLUMNS: format_source_columns(stats.source_columns),  # for the next re-publication's audit
            **audited,
        },
    )
    t_version = commit_files(
        cfg.trips_uri,
        t_adds,
        column=PARTITION_COLUMN,
        record=t_record,
        schema=trips_schema(),
        storage_options=cfg.storage_options(cfg.trips_uri),
        stats=commits,
    )
    return Written(
        rows_source=stats.rows,
        rows_written=rows_clean,
        rows_quarantined=rows_bad,
        trips_version=t_version,
        quarantine_version=q_version,
        digest=kept,
        summary=summary_rows,
        flags_nulled=stats.flags_nulled,
        extra_columns=stats.extra_columns,
        quarantined_by_rule=dict(stats.quarantined_by_rule),
        trips_files=len(t_adds),
        quarantine_files=len(q_adds),
        row_groups=trips.row_groups + quarantine.row_groups,
        source_row_groups=stats.row_groups,
        seconds_streaming=streamed,
        seconds_committing=time.perf_counter() - t0 - streamed,
        commits=commits,
    )
