"""Read one source month in batches, cast each onto the canonical schema and split clean from quarantined.

Reading goes batch by batch with ``pre_buffer=False``: pyarrow's default pre-buffering reads whole column
chunks, so one 5 M-row group would cost about 1 GiB. Unreadable files become :class:`UnreadableSource`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from partitions.listing import open_input
from partitions.source import SourceFile
from taxi_assets.casts import ColumnPlan, conform, plan_columns
from taxi_assets.cleaning import Split, context_for, split
from taxi_assets.errors import UnreadableSource
from taxi_assets.schema import quarantine_schema, trips_schema

BATCH_ROWS: Final = 262_144
READ_BUFFER: Final = 8 << 20


@dataclass
class ReadStats:
    rows: int = 0
    flags_nulled: int = 0
    extra_columns: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    row_groups: int = 0
    batches: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)


class MonthReader:
    """A context manager over one month's file yielding (clean, quarantine) batch pairs."""

    def __init__(self, source: SourceFile, *, storage_options: Mapping[str, str] | None = None) -> None:
        self.source = source
        self._storage_options = storage_options
        self._handle: Any = None
        self._file: pq.ParquetFile | None = None
        self.plan: ColumnPlan | None = None
        self.stats = ReadStats()

    def __enter__(self) -> MonthReader:
        month, uri = self.source.partition, self.source.uri
        try:
            self._handle = open_input(uri, storage_options=self._storage_options)
            self._file = pq.ParquetFile(self._handle, pre_buffer=False, buffer_size=READ_BUFFER)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError) as exc:
            self.close()
            raise UnreadableSource(
                month, uri, f"not a readable parquet file ({_short(exc)})", "replace the file at the source"
            ) from exc
        self.plan = plan_columns(self._file.schema_arrow, partition=month, path=uri)
        self.stats.extra_columns = self.plan.extra_columns
        self.stats.renamed = self.plan.renamed
        self.stats.row_groups = self._file.metadata.num_row_groups
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None and hasattr(self._handle, "close"):
            self._handle.close()
        self._handle = None

    def batches(self) -> Iterator[Split]:
        """Clean and quarantined rows, one source batch at a time; stats fill in as it goes."""
        if self._file is None or self.plan is None:
            raise RuntimeError("use MonthReader as a context manager")
        month, uri = self.source.partition, self.source.uri
        ctx = context_for(month)
        columns = [c for c in self.plan.source_names.values() if c is not None]
        offset = 0
        try:
            for batch in self._file.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True):
                conformed = conform(batch, self.plan, partition=month, path=uri)
                part = split(conformed.batch, ctx, first_row=offset)
                offset += batch.num_rows
                self.stats.rows = offset
                self.stats.batches += 1
                self.stats.flags_nulled += conformed.flags_nulled
                for rules in part.quarantine.column("rule").to_pylist():
                    for name in rules:
                        self.stats.quarantined_by_rule[name] = self.stats.quarantined_by_rule.get(name, 0) + 1
                yield part
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise UnreadableSource(
                month,
                uri,
                f"unreadable after {offset} rows ({_short(exc)})",
                "replace the file at the source",
            ) from exc

    def read_all(self) -> tuple[pa.Table, pa.Table, ReadStats]:
        """The whole month as two tables (the small-month path; streaming writers use :meth:`batches`)."""
        clean: list[pa.RecordBatch] = []
        quarantined: list[pa.RecordBatch] = []
        for part in self.batches():
            clean.append(part.clean)
            quarantined.append(part.quarantine)
        return (
            pa.Table.from_batches(clean, schema=trips_schema()),
            pa.Table.from_batches(quarantined, schema=quarantine_schema()),
            self.stats,
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
