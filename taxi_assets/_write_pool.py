"""Stream batches into uniform row groups and encode them on writer threads, one file series per thread.

Parquet encoding is most of a month's rewrite and pyarrow encodes a row group on one thread, releasing the GIL
while it does. So the reading thread (decode, cast, rules) only cuts the stream into row groups of exactly
``rows_per_group`` rows and deals them round robin to ``lanes`` writer threads; each lane owns a
:class:`~taxi_assets._write.FileSeries`, so no file is shared between threads. Round robin (not "first free")
keeps the layout a function of the data: lane ``i`` gets groups ``i, i + lanes, ...``.

Memory: at most ``lanes`` groups are queued or being encoded, plus the group being filled (about
``(lanes + 1) x rows_per_group`` decoded rows in all); the reading thread waits when the lanes are full.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import pyarrow as pa
from deltalake.transaction import AddAction

from taxi_assets._write import GROUPS_PER_FILE, ROW_GROUP_ROWS, FileSeries, data_schema


class GroupBuffer:
    """Collects batches and hands out tables of exactly ``rows`` rows (the rest stays for the next group)."""

    def __init__(self, schema: pa.Schema, rows: int = ROW_GROUP_ROWS) -> None:
        if rows <= 0:
            raise ValueError(f"rows per group must be positive, got {rows}")
        self.schema, self.rows = schema, rows
        self._pending: list[pa.RecordBatch] = []
        self._held = 0

    def add(self, batch: pa.RecordBatch) -> list[pa.Table]:
        """Take ``batch``; return the groups it completes (zero-copy slices of the batches held)."""
        if batch.num_rows == 0:
            return []
        self._pending.append(batch)
        self._held += batch.num_rows
        full: list[pa.Table] = []
        while self._held >= self.rows:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            full.append(table.slice(0, self.rows))
            rest = table.slice(self.rows)
            self._pending, self._held = rest.to_batches(), rest.num_rows
        return full

    def flush(self) -> pa.Table | None:
        """The last, partial group, if any rows are left."""
        if not self._held:
            return None
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._held = [], 0
        return table


class PartitionWriter:
    """Write one partition of one table: batches in, add actions out, encoding on ``lanes`` threads.

    Use as a context manager: leaving it with an exception stops the lanes and deletes every file started
    (none is committed yet); :meth:`finish` returns the add actions of a complete write.
    """

    def __init__(
        self,
        table_uri: str,
        schema: pa.Schema,
        *,
        column: str,
        key: str,
        lanes: int = 2,
        rows_per_group: int = ROW_GROUP_ROWS,
        groups_per_file: int = GROUPS_PER_FILE,
        storage_options: Mapping[str, str] | None = None,
        name: str = "writer",
    ) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        file_schema = data_schema(schema, column)
        numbers = itertools.count()
        self.column = column
        self.series = [
            FileSeries(
                table_uri,
                column,
                key,
                file_schema,
                storage_options=storage_options,
                groups_per_file=groups_per_file,
                numbers=numbers,
            )
            for _ in range(lanes)
        ]
        self._buffer = GroupBuffer(file_schema, rows_per_group)
        self._pools = [ThreadPoolExecutor(1, thread_name_prefix=f"{name}-{i}") for i in range(lanes)]
        self._slots = threading.BoundedSemaphore(lanes)
        self._futures: list[Future[None]] = []
        self._next = 0
        self.rows = 0
        self.row_groups = 0

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self._shutdown()

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue ``batch`` (on the table schema; the partition column is dropped); blocks while lanes are full."""
        if self.column in batch.schema.names:
            batch = batch.drop_columns([self.column])
        self.rows += batch.num_rows
        for group in self._buffer.add(batch):
            self._submit(group)

    def finish(self) -> list[AddAction]:
        """Write the last group, wait for every lane, close the files; their add actions in part order."""
        last = self._buffer.flush()
        if last is not None:
            self._submit(last)
        for future in self._futures:
            future.result()
        closing = [pool.submit(series.close) for pool, series in zip(self._pools, self.series, strict=True)]
        adds = [add for future in closing for add in future.result()]
        self._shutdown()
        return sorted(adds, key=lambda add: add.path)

    def abort(self) -> None:
        """Stop the lanes, close what is open and delete every file started (never call after a commit)."""
        for future in self._futures:
            future.cancel()
        self._shutdown()
        for series in self.series:
            series.abort()
            series.remove_files()

    @property
    def files(self) -> list[str]:
        return [path for series in self.series for path in series.paths]

    def _submit(self, group: pa.Table) -> None:
        self._raise_failed()
        self._slots.acquire()
        lane = self._next
        self._next = (lane + 1) % len(self._pools)
        try:
            future = self._pools[lane].submit(self.series[lane].write_group, group)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)
        self.row_groups += 1

    def _raise_failed(self) -> None:
        """Surface a lane's error at the next group rather than at the end of the month."""
        done = [f for f in self._futures if f.done()]
        for future in done:
            future.result()
        self._futures = [f for f in self._futures if f not in done]

    def _shutdown(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
