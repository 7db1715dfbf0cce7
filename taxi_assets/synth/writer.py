"""Writes synthetic months as TLC-named Parquet files, to a local directory or an s3:// prefix.

The only I/O module of the package: it streams the generator's day chunks into the row groups of the chosen
layout, so memory holds about one row group, and writes the anomaly ground truth beside the data in a
`_truth/` subfolder, out of the way of anything that lists the flat month files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taxi_assets.synth.anomalies import AnomalyMode
from taxi_assets.synth.eras import default_layout, month_schema, parquet_format_version, real_rows
from taxi_assets.synth.generate import MonthChunk, generate_month, iter_month_chunks
from taxi_assets.synth.layouts import row_group_sizes

LayoutOption = Literal["auto", "single", "arrow-1Mi", "nonuniform", "daily"]
DEFAULT_SCALE: Final = 1e-4  # ~2 k rows per month: the unit-test size of spec 7.1
TRUTH_DIR: Final = "_truth"
CHUNK_ROWS: Final = 1 << 18  # generator chunk (whole days, so up to one full-scale day): bounds memory
_S3_OPTION_NAMES: Final = {
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token",
    "AWS_ENDPOINT_URL": "endpoint_url",
}


@dataclass(frozen=True, slots=True)
class SynthFile:
    """One written month file."""

    uri: str
    month: str
    rows: int
    row_groups: int
    bytes: int


def file_name(month: str) -> str:
    """The TLC name of a month's file (spec 5): zero-padded month, no day."""
    return f"fhvhv_tripdata_{month}.parquet"


def s3fs_kwargs(storage_options: Mapping[str, str] | None) -> dict[str, Any]:
    """Map the AWS_* storage options the pipeline passes around to s3fs arguments; others are ignored."""
    options = dict(storage_options or {})
    kwargs: dict[str, Any] = {arg: options[key] for key, arg in _S3_OPTION_NAMES.items() if key in options}
    region = options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["client_kwargs"] = {"region_name": region}
    return kwargs


def _filesystem(dest: str, storage_options: Mapping[str, str] | None) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(filesystem, root path for it, URI prefix for results) of a local directory or s3:// destination."""
    if dest.startswith("s3://"):
        root = dest.removeprefix("s3://").rstrip("/")
        return fsspec.filesystem("s3", **s3fs_kwargs(storage_options)), root, f"s3://{root}"
    root = str(Path(dest.removeprefix("file://")).resolve())
    return fsspec.filesystem("file", auto_mkdir=True), root, root


def _chunks(
    month: str, rows: int, seed: int, anomalies: AnomalyMode, extra: Mapping[str, float] | None, shuffle: bool
) -> Iterator[MonthChunk]:
    if not shuffle:
        yield from iter_month_chunks(month, rows, seed=seed, anomalies=anomalies, extra=extra, chunk_rows=CHUNK_ROWS)
        return
    table, truth = generate_month(month, rows, seed=seed, anomalies=anomalies, extra=extra, shuffle=True)
    rows_, ids = zip(*truth, strict=True) if truth else ((), ())
    yield MonthChunk(table, 0, np.array(rows_, dtype=np.int64), np.array(ids, dtype=object))


def _truth_document(month: str, rows: int, settings: dict[str, Any], rows_by_id: dict[str, list[int]]) -> str:
    """JSON ground truth: how the month was made, then the faulty rows per anomaly id (A1, A2, ... A18)."""
    ordered = dict(sorted(rows_by_id.items(), key=lambda item: (len(item[0]), item[0])))
    counts = {anomaly_id: len(found) for anomaly_id, found in ordered.items()}
    return json.dumps({"month": month, "rows": rows, **settings, "counts": counts, "rows_by_id": ordered})


def write_month_file(
    dest: str,
    month: str,
    rows: int,
    *,
    seed: int = 0,
    layout: LayoutOption = "auto",
    anomalies: AnomalyMode = "realistic",
    extra: Mapping[str, float] | None = None,
    shuffle: bool = False,
    storage_options: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SynthFile:
    """Write `<dest>/fhvhv_tripdata_<month>.parquet` and its ground truth `<dest>/_truth/...json`.

    The rows are exactly `generate_month(month, rows, seed=seed, ...)`, in row groups of `layout` ("auto" =
    the era's own: one group up to 2024, 1 Mi-row groups from 2025). The file keeps the Arrow schema
    (`store_schema`), so `large_string` and `null` columns read back as published. `progress` is called with
    the number of rows after each row group. `storage_options` takes the AWS_* keys of the pipeline.
    """
    chosen = default_layout(month) if layout == "auto" else layout
    pending_sizes = row_group_sizes(chosen, rows, month=month, seed=seed)
    groups = len(pending_sizes)
    fs, root, prefix = _filesystem(dest, storage_options)
    path = f"{root}/{file_name(month)}"
    # S3 shows an object only once complete; locally, write aside and rename, so a lister never sees half a file.
    local = prefix == root
    target = f"{root}/.{file_name(month)}.partial" if local else path
    rows_by_id: dict[str, list[int]] = {}
    buffered: list[pa.Table] = []
    held = 0
    schema, version = month_schema(month), parquet_format_version(month)
    with (
        fs.open(target, "wb") as sink,
        pq.ParquetWriter(sink, schema, version=version, compression="snappy", store_schema=True) as writer,
    ):
        for chunk in _chunks(month, rows, seed, anomalies, extra, shuffle):
            for row, anomaly_id in zip(chunk.truth_rows.tolist(), chunk.truth_ids.tolist(), strict=True):
                rows_by_id.setdefault(anomaly_id, []).append(row)
            buffered.append(chunk.table)
            held += chunk.table.num_rows
            while pending_sizes and held >= pending_sizes[0]:
                size = pending_sizes.pop(0)
                pending = pa.concat_tables(buffered)
                writer.write_table(pending.slice(0, size), row_group_size=size)
                buffered, held = [pending.slice(size)], held - size
                if progress is not None:
                    progress(size)
    if local:
        fs.mv(target, path)
    settings = {"seed": seed, "anomalies": anomalies, "extra": dict(extra or {}), "shuffle": shuffle}
    truth = _truth_document(month, rows, settings, rows_by_id)
    fs.pipe_file(f"{root}/{TRUTH_DIR}/{truth_file_name(month)}", truth.encode())
    fs.invalidate_cache(root)
    return SynthFile(f"{prefix}/{file_name(month)}", month, rows, groups, int(fs.size(path)))


def rows_for(month: str, rows_per_month: int | None, scale: float | None) -> int:
    """A month's row count: the given number, else the real count times `scale` (at least one row)."""
    if rows_per_month is not None and scale is not None:
        raise ValueError("give rows_per_month or scale, not both")
    if rows_per_month is not None:
        return rows_per_month
    return max(1, round(real_rows(month) * (DEFAULT_SCALE if scale is None else scale)))


def write_months(
    dest: str,
    months: Sequence[str],
    rows_per_month: int | None = None,
    *,
    scale: float | None = None,
    seed: int = 0,
    layout: LayoutOption | Mapping[str, LayoutOption] = "auto",
    anomalies: AnomalyMode = "realistic",
    extra: Mapping[str, float] | None = None,
    storage_options: Mapping[str, str] | None = None,
    progress: bool = False,
) -> list[SynthFile]:
    """Write several synthetic months into one flat directory (local path or s3:// URI), in the given order.

    Each month gets `rows_per_month` rows, or else `round(real_rows * scale)` with `scale` defaulting to 1e-4
    (~2 k rows). Months draw from independent streams of `seed`, so adding a month never changes another.
    `layout` is one layout for all months or a per-month mapping (missing months: "auto"). With `progress`, a
    rich progress bar on stderr counts rows.
    """
    plan = [(month, rows_for(month, rows_per_month, scale)) for month in months]
    layouts = layout if isinstance(layout, Mapping) else dict.fromkeys(months, layout)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    written = []
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("fhvhv synth", total=sum(rows for _, rows in plan))
        for month, rows in plan:
            bar.update(task, description=f"fhvhv {month}")
            written.append(
                write_month_file(
                    dest,
                    month,
                    rows,
                    seed=seed,
                    layout=layouts.get(month, "auto"),
                    anomalies=anomalies,
                    extra=extra,
                    storage_options=storage_options,
                    progress=lambda done: bar.advance(task, done),
                )
            )
    return written


def truth_file_name(month: str) -> str:
    """The ground-truth file of a month, inside `_truth/`."""
    return f"fhvhv_tripdata_{month}.json"
