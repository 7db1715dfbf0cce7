"""Turns the generator's numpy columns into an Arrow table in the month's published schema."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from taxi_assets.synth import _params as p
from taxi_assets.synth.eras import STRING_COLUMNS, TIMESTAMP_COLUMNS, airport_fee_filled, month_schema

_DICTIONARIES = {
    "hvfhs_license_num": p.LICENSES,
    "dispatching_base_num": p.BASES,
    "originating_base_num": p.BASES,
}
_MICROS = 1_000_000


def _mask(masks: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    mask = masks.get(name)
    return mask if mask is not None and mask.any() else None


def _column(name: str, kind: pa.DataType, n: int, values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    if pa.types.is_null(kind):
        return pa.nulls(n)
    if name in STRING_COLUMNS:
        dictionary = pa.array(_DICTIONARIES.get(name, p.FLAG_VALUES), type=kind)
        return dictionary.take(pa.array(values.astype(np.int32), mask=mask))
    if name in TIMESTAMP_COLUMNS:
        return pa.array((values * _MICROS).view("datetime64[us]"), type=kind, mask=mask)
    return pa.array(values.astype(kind.to_pandas_dtype()), type=kind, mask=mask)


def build_table(month: str, n: int, cols: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> pa.Table:
    """One Arrow table, column by column in the schema's order; null-typed columns come out all null."""
    schema = month_schema(month)
    arrays = []
    for field in schema:
        if field.name == "airport_fee" and not airport_fee_filled(month):
            arrays.append(pa.nulls(n, field.type))  # typed double but empty before 2022 (spec 1.2)
            continue
        arrays.append(_column(field.name, field.type, n, cols[field.name], _mask(masks, field.name)))
    return pa.Table.from_arrays(arrays, schema=schema)
