"""Read one source month in batches, cast each onto the canonical schema and split clean from quarantined.

Memory is bounded by the batch, not by the file or its row groups. The TLC files before 2025 hold a month in one
row group (spec 7.1, layout ``single``), so a reader that loads a row group loads the month. Two settings keep
it streaming:

* ``pre_buffer=False``: pyarrow's default pre-buffering fetches whole column chunks of a row group before
  decoding (measured: a 5 M-row group costs ~1 GiB); without it pages are read as they are decoded;
* ``buffer_size=READ_BUFFER``: each column reads through its own buffer of that size instead of one read per
  column chunk.

Peak of the reader alone, measured on this machine: ~120 MiB of Arrow memory for 2 M and for 16 M rows in one
row group (``BATCH_ROWS`` decoded rows, ~140 B/row, held twice: source and canonical layout; 24 columns x
``READ_BUFFER``; one decompressed page per column), whatever the row group size (``docs/performance.md``), plus
the ``READ_AHEAD`` source batches decoded ahead on a thread of their own (~35 MiB each), so that decoding
overlaps the casts and rules of the batch before instead of taking turns with them. Text
columns are read as dictionaries: flags are mapped on their few values (:mod:`taxi_assets.model.casts`) and strings
stay dictionaries (:func:`taxi_assets.model.schema.trips_batch_schema`), so no string is built per row. Unreadable files
become :class:`UnreadableSource`; errors of the store or the network (a cut connection, a 503) become
:class:`SourceUnavailable`, which is transient: the task retries it and no failure is recorded against the file.
Page checksums are verified where the writer stored them (``page_checksum_verification``): without them a
flipped byte inside a compressed page can decode into other values, which no reader can notice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from partitions.errors import StorageAccessDenied
from partitions.listing import filesystem_for
from partitions.source import SourceFile
from partitions.storage_errors import classify_storage_error, display_uri
from taxi_assets.errors import SourceRejected, SourceUnavailable, UnreadableSource
from taxi_assets.model.casts import ColumnPlan, conform, plan_columns
from taxi_assets.model.cleaning import Split, context_for, split
from taxi_assets.model.schema import COLUMNS
from taxi_assets.model.source_columns import columns_of

BATCH_ROWS: Final = 262_144
READ_BUFFER: Final = 1 << 20
# Source batches decoded ahead of the one being cast (each ~35 MB): decoding runs on Arrow's pool while this
# thread casts and splits the previous batch, instead of the two taking turns (see ``docs/performance.md``).
READ_AHEAD: Final = 2
_TEXT: Final = tuple(c.name for c in COLUMNS if c.kind in ("flag", "string"))


@dataclass
class ReadStats:
    """What reading the month found, filled in as batches go by."""

    rows: int = 0
    flags_nulled: int = 0
    extra_columns: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    row_groups: int = 0
    largest_row_group: int = 0
    batches: int = 0
    quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    source_columns: dict[str, str] = field(default_factory=dict)  # the file's columns and Arrow types, as published


class MonthReader:
    """A context manager over one month's file yielding :class:`Split` batches, one source batch at a time."""

    def __init__(
        self,
        source: SourceFile,
        *,
        storage_options: Mapping[str, str] | None = None,
        batch_rows: int = BATCH_ROWS,
        read_ahead: int = READ_AHEAD,
    ) -> None:
        self.source = source
        self.batch_rows = batch_rows
        self.read_ahead = read_ahead
        self._storage_options = storage_options
        self._handle: Any = None
        self._file: pq.ParquetFile | None = None
        self.plan: ColumnPlan | None = None
        self.stats = ReadStats()

    def __enter__(self) -> MonthReader:
        month, uri = self.source.partition, self.source.uri
        try:
            fs, path = filesystem_for(uri, self._storage_options)
            self._handle = fs.open_input_file(path)  # a native Arrow file: reads never take the GIL
            probe = pq.ParquetFile(
                self._handle, pre_buffer=False, buffer_size=READ_BUFFER, page_checksum_verification=True
            )
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError) as exc:
            self.close()
            if _is_storage_error(exc):
                raise _store_failure(exc, month, uri, "reading failed") from exc
            raise UnreadableSource(
                month, uri, f"not a readable parquet file ({_short(exc)})", "replace the file at the source"
            ) from exc
        self.stats.source_columns = columns_of(probe.schema_arrow)
        try:
            self.plan = plan_columns(probe.schema_arrow, partition=month, path=uri)
        except BaseException:
            self.close()
            raise
        # Same footer; text columns now read as dictionaries (a null-typed one stays null).
        as_dictionary = [
            name
            for column in _TEXT
            if (name := self.plan.source_names[column]) is not None
            and _is_plain_text(probe.schema_arrow.field(name).type)
        ]
        self._file = pq.ParquetFile(
            self._handle,
            metadata=probe.metadata,
            pre_buffer=False,
            buffer_size=READ_BUFFER,
            read_dictionary=as_dictionary,
            page_checksum_verification=True,
        )
        meta = probe.metadata
        if meta.num_rows == 0:  # a valid file with no rows would replace the month with nothing
            self.close()
            raise SourceRejected(
                month,
                uri,
                "holds no rows (a valid parquet file with 0 rows)",
                "a published month is never empty (the smallest, 2020-04, has 4.3 M rows); replace the file",
            )
        self.stats.extra_columns = self.plan.extra_columns
        self.stats.renamed = self.plan.renamed
        self.stats.row_groups = meta.num_row_groups
        self.stats.largest_row_group = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None and hasattr(self._handle, "close"):
            self._handle.close()
        self._handle = None

    def batches(self) -> Iterator[Split]:
        """Clean and quarantined rows, one source batch at a time; :attr:`stats` fills in as it goes."""
        if self._file is None or self.plan is None:
            raise RuntimeError("use MonthReader as a context manager")
        month, uri = self.source.partition, self.source.uri
        ctx = context_for(month)
        columns = [c for c in self.plan.source_names.values() if c is not None]
        decoded = self._file.iter_batches(batch_size=self.batch_rows, columns=columns, use_threads=True)
        offset = 0
        try:
            for batch in read_ahead(decoded, self.read_ahead, name=f"read-{month}"):
                conformed = conform(
                    batch, self.plan, partition=month, path=uri, dictionary_strings=True, first_row=offset
                )
                part = split(conformed.batch, ctx, first_row=offset)
                offset += batch.num_rows
                self.stats.rows = offset
                self.stats.batches += 1
                self.stats.flags_nulled += conformed.flags_nulled
                self.stats.quarantined += part.quarantine.num_rows
                for name, count in part.by_rule.items():
                    self.stats.quarantined_by_rule[name] = self.stats.quarantined_by_rule.get(name, 0) + count
                yield part
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            if _is_storage_error(exc):
                raise _store_failure(exc, month, uri, f"reading failed after {offset} rows") from exc
            raise UnreadableSource(
                month,
                uri,
                f"unreadable after {offset} rows ({_short(exc)})",
                "replace the file at the source",
            ) from exc


def _is_plain_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_storage_error(exc: BaseException) -> bool:
    """The store or the network failed, or the file vanished since the listing, not the file's bytes being wrong.

    The shared classifier decides (``partitions.storage_errors``); any store failure counts, refused
    credentials and other store errors included: none of them may be recorded against a good file.
    """
    return isinstance(exc, FileNotFoundError) or classify_storage_error(exc) is not None


def _store_failure(exc: BaseException, month: str, uri: str, what: str) -> SourceUnavailable | StorageAccessDenied:
    """Refused credentials stop the month with what to check (a retry gets the same 403); anything else retries."""
    found = classify_storage_error(exc)
    if found is not None and found.kind == "denied":
        return StorageAccessDenied(display_uri(uri), month, f"{what}: {found.reason}")
    return SourceUnavailable(display_uri(uri), f"{what} ({_short(exc)})")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


_END: Final = object()


def read_ahead(batches: Iterator[pa.RecordBatch], depth: int, *, name: str) -> Iterator[pa.RecordBatch]:
    """``batches``, pulled on a thread of their own up to ``depth`` ahead of the consumer (``depth`` 0: inline).

    The decoder's errors are raised here, in the consumer, at the batch where they happened. Closing the
    generator early (an error downstream) stops the thread and waits for it, so the file can be closed after.
    """
    if depth <= 0:
        yield from batches
        return
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slots.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it where the batch was expected
            slots.put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # free a slot the producer may be waiting for, then let it see `stop`
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
