"""Write a partition's parquet files yourself and describe them as Delta ``AddAction``s for ``commit_files``.

For writers that stream (batches arrive one by one, the month never sits in memory): write files under the
table with ``write_partition_file``, then commit them all in one transaction. Statistics follow the Delta
protocol's per-file statistics (https://github.com/delta-io/delta/blob/master/PROTOCOL.md#per-file-statistics)
so readers keep data skipping: ``numRecords``, and ``minValues``/``maxValues``/``nullCount`` per top-level
column. A bound that cannot be stated exactly (long strings, NaN, binary, nested values) is left out, which
only means "no skipping on that column", never a wrong answer.

The other way round, ``missing_data_files`` finds the files a table's log still references that the store
no longer has.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from partitions._storage import fsspec_for, pyarrow_fs_for
from partitions.storage_errors import open_table, storage_errors_named

MAX_STRING_STAT: Final = 32


def partition_file_path(column: str, key: str) -> str:
    """A fresh relative path for a data file of partition ``key`` (Hive style ``column=key/part-<uuid>``)."""
    return f"{column}={key}/part-{uuid.uuid4()}.snappy.parquet"


def write_partition_file(
    table_uri: str,
    batches: pa.Table | Iterable[pa.RecordBatch],
    *,
    column: str,
    key: str,
    schema: pa.Schema | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> AddAction:
    """Write one parquet file of partition ``key`` under the table and return its ``AddAction``.

    The file leaves out ``column`` (Delta keeps the key in the add action's partition values). Nothing is
    visible to readers until ``commit_files`` commits the actions.
    """
    fs, root = pyarrow_fs_for(table_uri, storage_options)
    relative = partition_file_path(column, key)
    full = f"{root}/{relative}"
    fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
    source = batches.to_batches() if isinstance(batches, pa.Table) else batches
    in_schema = schema or (batches.schema if isinstance(batches, pa.Table) else None)
    writer: pq.ParquetWriter | None = None
    with fs.open_output_stream(full) as sink:
        for batch in source:
            data = batch.drop_columns([column]) if column in batch.schema.names else batch
            if writer is None:
                out_schema = in_schema.remove(in_schema.get_field_index(column)) if in_schema else data.schema
                writer = pq.ParquetWriter(sink, out_schema, compression="snappy")
            writer.write_batch(data)
        if writer is None:
            if in_schema is None:
                raise ValueError(f"{key}: no batches and no schema; pass schema= to write an empty file")
            writer = pq.ParquetWriter(sink, in_schema.remove(in_schema.get_field_index(column)))
        writer.close()
        metadata = writer.writer.metadata  # the footer just written: no second read of the file
    info = fs.get_file_info(full)
    return add_action_for(relative, size=int(info.size), metadata=metadata, partition_values={column: key})


def add_action_for(
    path: str,
    *,
    size: int,
    metadata: pq.FileMetaData,
    partition_values: Mapping[str, str | None],
    modification_time: int | None = None,
    data_change: bool = True,
) -> AddAction:
    """The Delta add action of the parquet file at ``path`` (relative to the table root), with statistics."""
    return AddAction(
        path=path,
        size=size,
        partition_values=dict(partition_values),
        modification_time=modification_time if modification_time is not None else int(time.time() * 1000),
        data_change=data_change,
        stats=stats_json(metadata),
    )


def stats_json(metadata: pq.FileMetaData) -> str:
    """Delta per-file statistics of a parquet file, from its footer (no data is read)."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    arrow_schema = metadata.schema.to_arrow_schema()
    for index in range(metadata.num_columns):
        path = metadata.schema.column(index).path
        if "." in path or path not in arrow_schema.names:
            continue  # nested leaves: no statistics rather than wrong ones
        kind = arrow_schema.field(path).type
        groups = [metadata.row_group(g).column(index).statistics for g in range(metadata.num_row_groups)]
        if not groups or any(s is None for s in groups):
            continue
        if all(s.has_null_count for s in groups):
            nulls[path] = sum(s.null_count for s in groups)
        bounded = [s for s in groups if s.has_min_max]
        if len(bounded) != len(groups) and any(s.num_values for s in groups if not s.has_min_max):
            continue
        if not bounded:
            continue
        low = _stat_value(min(s.min for s in bounded), kind, "min")
        high = _stat_value(max(s.max for s in bounded), kind, "max")
        if low is not None and high is not None:
            mins[path], maxs[path] = low, high
    return json.dumps(
        {"numRecords": metadata.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        separators=(",", ":"),
    )


def _stat_value(value: Any, kind: pa.DataType, side: str) -> Any:
    """A JSON bound as delta-rs writes it; timestamps widened to whole milliseconds (floor min, ceil max)."""
    if isinstance(value, bool) or (isinstance(value, int) and not pa.types.is_timestamp(kind)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING_STAT else None
    if isinstance(value, datetime):
        millis = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if side == "max" and millis != value:
            millis += timedelta(milliseconds=1)
        if getattr(kind, "tz", None):
            return millis.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis.microsecond // 1000:03d}Z"
        return millis.strftime("%Y-%m-%d %H:%M:%S.") + f"{millis.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat()
    return None


def missing_data_files(
    table_uri: str,
    partitions: Iterable[str] | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """The data files the latest snapshot references that the store no longer has, per partition.

    A file deleted behind the log's back (by hand, a lifecycle rule, a faulty cleanup) leaves a partition that
    every reader fails on, while the log still says it is fine. This compares the ``add`` paths of the latest
    snapshot (for ``partitions``, default all) with one directory listing per folder holding them (one LIST per
    partition in a Hive layout), never a request per file. Returns ``{partition: [relative paths]}`` with only
    the partitions that lost files, for ``plan(..., missing_files=...)``; ``{}`` when there is no table.

    The table must be partitioned by one column. Loading the snapshot replays its add actions, so the cost grows
    with the table's file count: an occasional deep check, not every plan.

    Raises:
        StorageUnavailable, StorageAccessDenied: the store did not answer or refused the credentials.
    """
    try:
        table = open_table(table_uri, storage_options=storage_options)
    except TableNotFoundError:
        return {}
    columns = table.metadata().partition_columns
    if len(columns) != 1:
        raise ValueError(f"{table_uri}: missing_data_files needs a table partitioned by one column, not {columns}")
    wanted = None if partitions is None else set([partitions] if isinstance(partitions, str) else partitions)
    actions = pa.table(table.get_add_actions(flatten=True))
    referenced: dict[str, list[tuple[str, str]]] = {}  # folder -> [(partition, relative path)]
    for path, key in zip(
        actions.column("path").to_pylist(), actions.column(f"partition.{columns[0]}").to_pylist(), strict=True
    ):
        if wanted is not None and key not in wanted:
            continue
        relative = unquote(path)  # the log stores paths URL-encoded (Delta protocol), the store does not
        folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
        referenced.setdefault(folder, []).append((str(key), relative))
    missing: dict[str, list[str]] = {}
    with storage_errors_named(table_uri):
        fs, root = fsspec_for(table_uri, storage_options)
        for folder, files in sorted(referenced.items()):
            present = _names_in(fs, f"{root}/{folder}" if folder else root)
            for key, relative in files:
                if relative.rsplit("/", 1)[-1] not in present:
                    missing.setdefault(key, []).append(relative)
    return {key: sorted(paths) for key, paths in sorted(missing.items())}


def _names_in(fs: Any, folder: str) -> set[str]:
    """Base names of the files directly in ``folder`` (one listing); empty when the folder is gone."""
    try:
        return {str(name).rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(folder, detail=False)}
    except (FileNotFoundError, NotADirectoryError):
        return set()
