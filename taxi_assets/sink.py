"""Write one month into the sink: ``quarantine`` first, then ``trips``, both stamped with the same run id.

Delta has no multi-table transaction, so the order is chosen: the ``trips`` commit is the month's completion
marker. A crash between the two leaves ``trips`` on its previous version (readers see the old month whole)
and a ``quarantine`` commit from a run that ``trips`` does not carry: the planner calls the month incomplete
and the next run rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from partitions.overwrite import overwrite_partition
from partitions.records import MaterializationRecord
from partitions.source import SourceFile
from taxi_assets.reader import MonthReader
from taxi_assets.schema import PARTITION_COLUMN, quarantine_schema, trips_schema
from taxi_assets.settings import Settings


@dataclass(frozen=True)
class Written:
    """What the two commits of one month hold."""

    rows_source: int
    rows_written: int
    rows_quarantined: int
    trips_version: int
    quarantine_version: int
    flags_nulled: int = 0
    extra_columns: tuple[str, ...] = ()
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)


def write_month(source: SourceFile, cfg: Settings, record: MaterializationRecord, *, now: object) -> Written:
    """Read, cast and split the month, then commit quarantine and trips (the record goes in both commits).

    ``now`` is a zero-argument callable giving the ISO time stamped as ``finished_at``.
    """
    with MonthReader(source, storage_options=cfg.storage_options(source.uri)) as reader:
        clean, quarantined, stats = reader.read_all()
    q_record = replace(record, rows_source=stats.rows, rows_written=quarantined.num_rows, finished_at=now())  # type: ignore[operator]
    q_version = overwrite_partition(
        cfg.quarantine_uri,
        quarantined,
        column=PARTITION_COLUMN,
        record=q_record,
        schema=quarantine_schema(),
        storage_options=cfg.storage_options(cfg.quarantine_uri),
    )
    t_record = replace(
        record,
        rows_source=stats.rows,
        rows_written=clean.num_rows,
        rows_quarantined=quarantined.num_rows,
        finished_at=now(),  # type: ignore[operator]
        extra={
            "fhvhv.flags_nulled": str(stats.flags_nulled),
            "fhvhv.extra_columns": ",".join(stats.extra_columns),
        },
    )
    t_version = overwrite_partition(
        cfg.trips_uri,
        clean,
        column=PARTITION_COLUMN,
        record=t_record,
        schema=trips_schema(),
        storage_options=cfg.storage_options(cfg.trips_uri),
    )
    return Written(
        rows_source=stats.rows,
        rows_written=clean.num_rows,
        rows_quarantined=quarantined.num_rows,
        trips_version=t_version,
        quarantine_version=q_version,
        flags_nulled=stats.flags_nulled,
        extra_columns=stats.extra_columns,
        quarantined_by_rule=dict(stats.quarantined_by_rule),
    )
