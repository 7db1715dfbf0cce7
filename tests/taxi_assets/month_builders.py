"""Builders for month-level tests: valid synthetic months, hand-placed faults, drifted schemas, source files.

``valid_month`` starts from the generator (``anomalies="clean"``) and removes its few natural rule violations
(a lognormal tail can exceed 100 miles), so a test that places faults by hand knows the exact expected counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from partitions.source import SourceFile
from taxi_assets.synth import generate_month
from taxi_assets.synth.writer import file_name


def valid_month(month: str, rows: int, *, seed: int = 3) -> pa.Table:
    """A month in its published schema in which no quality rule fires."""
    table, _ = generate_month(month, rows, seed=seed, anomalies="clean")
    miles = pc.min_element_wise(pc.max_element_wise(table["trip_miles"], 0.5), 40.0)
    seconds = pc.min_element_wise(pc.max_element_wise(table["trip_time"], 60), 7_200)
    dropoff = pc.add(table["pickup_datetime"], pc.multiply(seconds, 1_000_000).cast(pa.duration("us")))
    # a trip ending after the month is fine; the pickup stays where the generator put it (inside the month)
    fare = pc.min_element_wise(pc.max_element_wise(table["base_passenger_fare"], 1.0), 900.0)
    pay = pc.max_element_wise(table["driver_pay"], 0.0)
    out = table
    for name, values in (
        ("trip_miles", miles),
        ("trip_time", seconds),
        ("dropoff_datetime", dropoff.cast(table.schema.field("dropoff_datetime").type)),
        ("base_passenger_fare", fare),
        ("driver_pay", pay),
    ):
        out = out.set_column(out.schema.get_field_index(name), out.schema.field(name), values)
    return out


def with_values(table: pa.Table, changes: Mapping[str, Mapping[int, Any]]) -> pa.Table:
    """A copy of ``table`` with the given cells replaced: ``{column: {row: value}}`` (None makes a null)."""
    out = table
    for name, cells in changes.items():
        index = out.schema.get_field_index(name)
        field = out.schema.field(index)
        values = out.column(index).to_pylist()
        for row, value in cells.items():
            values[row] = value
        out = out.set_column(index, field, pa.array(values, field.type))
    return out


def set_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Replace (or append) one column, taking the type of ``values``: the tool for drifted schemas."""
    field = pa.field(name, values.type)
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), field, values)
    return table.append_column(field, values)


def write_source(
    directory: Path, month: str, table: pa.Table, *, row_group_size: int | None = None, store_schema: bool = True
) -> SourceFile:
    """Write ``table`` as the TLC file of ``month`` under ``directory``; its ``SourceFile``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(month)
    pq.write_table(table, path, row_group_size=row_group_size or max(table.num_rows, 1), store_schema=store_schema)
    return SourceFile(
        partition=month,
        uri=str(path),
        size=path.stat().st_size,
        fingerprint=f"test:{path.stat().st_mtime_ns}",
        last_modified=None,
    )


def rows_where(table: pa.Table, mask: pa.ChunkedArray | pa.Array) -> list[int]:
    """Row indices where ``mask`` is true."""
    return np.flatnonzero(np.asarray(pc.fill_null(mask, False))).tolist()
