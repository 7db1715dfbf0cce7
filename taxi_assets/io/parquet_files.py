"""Parquet data files of one month of a Delta table, written by us and described as ``AddAction``s.

Layout matches ``write_deltalake``: ``<table>/month=YYYY-MM/part-NNNNN-<uuid>-c000.<codec>.parquet``, without the
partition column (Delta keeps it in the add action). Nothing here is visible to readers until
``partitions.overwrite.commit_files`` commits the actions; a file written by a run that dies before its commit
is an unreferenced file, which no reader sees and ``partitions.maintenance.vacuum`` removes later.

Writer settings (measured single-threaded on our row groups, see ``docs/performance.md``):

* ``snappy``: what the TLC's files, ``write_deltalake`` and Spark use; 14 % less encoding CPU than zstd level 1
  (chosen until session 7) for files ~9 % larger, and faster to decode for every reader of the lake;
* dictionary encoding for every column but the four timestamps: money columns hold a few thousand distinct
  values per row group, so dictionaries halve them; timestamps are nearly unique, so a dictionary is built and
  then thrown away (pure cost);
* ``DELTA_BINARY_PACKED`` for timestamps: rows are sorted by request time, deltas are small (request time:
  9.6 MB -> 1.5 MB per 2 M rows) and it encodes faster than plain + dictionary;
* statistics for every column but the text ones that arrive dictionary-encoded (licence and base numbers):
  ``partitions.files.add_action_for`` turns the footer into Delta per-file statistics, and the checks sum the
  footers' null counts. For a dictionary array the writer finds the minimum and maximum through a hash of the
  indices of every batch: 15 % of the encoding CPU, for bounds that prune nothing (every file holds every
  company and most bases). The checks count those columns' nulls in their scan instead.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from partitions import add_action_for, filesystem_for, storage_errors_named

COMPRESSION: Final = "snappy"
# 768 Ki rows (~0.8 M): two groups in flight are the write's memory bound, and at this size a 2 M-row month
# already reaches it, so peak memory is the same for a 2 M and a 25 M month (1 Mi groups: +31-42 % from 2 M to
# 16 M rows, 768 Ki: +13 %, 512 Ki: +9 %; 512 Ki cost the same CPU: docs/performance.md).
ROW_GROUP_ROWS: Final = 768 << 10
GROUPS_PER_FILE: Final = 5  # ~3.75 Mi rows, ~95 MB per data file
POOL_DECAY_MS: Final = 3_000


@dataclass(frozen=True, slots=True)
class WriteLayout:
    """How a month is cut into row groups and files, and on how many writer threads (``lanes``)."""

    rows_per_group: int = ROW_GROUP_ROWS
    groups_per_file: int = GROUPS_PER_FILE
    lanes: int = 2  # one per core of the small VM the issue targets; quarantine always uses one
    max_groups: int = 2  # groups held at once (filling or encoding): the memory bound, ~110 MB each


@contextmanager
def recycling_memory_pool() -> Iterator[pa.MemoryPool]:
    """Make Arrow keep freed memory for reuse while a month streams through, and give it back afterwards.

    Every batch allocates fresh buffers (decode, casts, the clean copy, encoding) and frees them a moment
    later. Arrow's default allocators hand freed pages back to the OS at once (mimalloc after ~10 ms, jemalloc
    as configured by Arrow: 0 ms), so the next batch faults them in again; on a small VM a page fault costs
    10-15 us (measured: 200-400 ms to touch 100 MB of new memory, 5 ms to rewrite it). jemalloc with a
    decay of a few seconds reuses the same pages: ~20 % less CPU for a month (``docs/performance.md``).
    Peak memory is unchanged; the pages are released when the block ends. Falls back to the current pool where
    pyarrow is built without jemalloc.
    """
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        yield previous
        return
    pa.jemalloc_set_decay_ms(POOL_DECAY_MS)
    pa.set_memory_pool(pool)
    try:
        yield pool
    finally:
        pa.set_memory_pool(previous)
        pool.release_unused()


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Keyword arguments of ``pq.ParquetWriter`` for a data file of ``schema`` (see the module docstring)."""
    timestamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    return {
        "compression": COMPRESSION,
        "use_dictionary": [f.name for f in schema if f.name not in timestamps],
        "column_encoding": dict.fromkeys(timestamps, "DELTA_BINARY_PACKED") or None,
        "write_statistics": [f.name for f in schema if not pa.types.is_dictionary(f.type)],
    }


def data_schema(schema: pa.Schema, column: str) -> pa.Schema:
    """The schema of the data files: the table schema without the partition column."""
    return schema.remove(schema.get_field_index(column))


@dataclass
class FileSeries:
    """Data files of one partition written one after the other by one thread: a file per ``groups_per_file``.

    ``write_group`` adds one row group (the whole table given) to the open file, opening one when needed and
    closing it after ``groups_per_file`` groups. Not thread-safe: one series belongs to one writer thread.

    Uploads happen here, so their failures are named here: a store that does not answer after pyarrow's retries
    raises ``StorageUnavailable`` (transient: the month keeps its committed version and a retry may pass), refused
    credentials ``StorageAccessDenied``, both naming the table and the partition; nothing is committed either way.
    """

    table_uri: str
    column: str
    key: str
    schema: pa.Schema  # of the data files (no partition column)
    storage_options: Mapping[str, str] | None = None
    groups_per_file: int = GROUPS_PER_FILE
    numbers: Any = field(default_factory=itertools.count)  # shared between series for distinct part numbers
    adds: list[AddAction] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # relative paths of every file started, for clean-up
    _fs: pafs.FileSystem | None = None
    _root: str = ""
    _sink: Any = None
    _writer: pq.ParquetWriter | None = None
    _relative: str = ""
    _groups: int = 0

    def write_group(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        with storage_errors_named(self.table_uri, self.key):
            if self._writer is None:
                self._open()
            assert self._writer is not None
            self._writer.write_table(table.select(self.schema.names), row_group_size=table.num_rows)
            self._groups += 1
            if self._groups >= self.groups_per_file:
                self._close_file()

    def close(self) -> list[AddAction]:
        """Finish the open file; every file of the series as an add action."""
        if self._writer is not None:
            with storage_errors_named(self.table_uri, self.key):
                self._close_file()
        return list(self.adds)

    def abort(self) -> None:
        """Close without finishing: the open file is left incomplete (and unreferenced)."""
        for closable in (self._writer, self._sink):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, pa.ArrowException):
                pass
        self._writer = self._sink = None

    def remove_files(self) -> None:
        """Best effort: delete every file this series started (only for files no commit references)."""
        fs, root = self._filesystem()
        for relative in self.paths:
            try:
                fs.delete_file(f"{root}/{relative}")
            except (OSError, pa.ArrowException):
                pass

    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            self._fs, self._root = filesystem_for(self.table_uri, self.storage_options)
        return self._fs, self._root

    def _open(self) -> None:
        fs, root = self._filesystem()
        self._relative = (
            f"{self.column}={self.key}/part-{next(self.numbers):05d}-{uuid.uuid4()}-c000.{COMPRESSION}.parquet"
        )
        full = f"{root}/{self._relative}"
        fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
        self.paths.append(self._relative)
        self._sink = fs.open_output_stream(full)
        # Dictionary columns are a memory layout of ``string`` (schema.trips_batch_schema): without the Arrow
        # schema in the footer, readers see the Parquet STRING the table declares.
        store_schema = not any(pa.types.is_dictionary(f.type) for f in self.schema)
        self._writer = pq.ParquetWriter(
            self._sink, self.schema, store_schema=store_schema, **writer_options(self.schema)
        )
        self._groups = 0

    def _close_file(self) -> None:
        assert self._writer is not None
        assert self._sink is not None
        self._writer.close()
        size = self._sink.tell()
        metadata = self._writer.writer.metadata
        self._sink.close()
        self._writer = self._sink = None
        self.adds.append(
            add_action_for(self._relative, size=size, metadata=metadata, partition_values={self.column: self.key})
        )
