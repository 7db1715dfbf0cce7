"""Turns the generator's numpy columns into an Arrow table in the month's published schema."""

from __future__ import annotations

from functools import cache

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
_NUMPY_TYPES = {pa.int32(): np.int32, pa.int64(): np.int64, pa.float64(): np.float64}


def _mask(masks: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    mask = masks.get(name)
    return mask if mask is not None and mask.any() else None


def _primitive(values: np.ndarray, kind: pa.DataType, mask: np.ndarray | None) -> pa.Array:
    """Wrap a numpy buffer without copying; `pa.array(ndarray)` would also import pandas (~2 s)."""
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[kind])
    if mask is None:
        return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data)], null_count=0)
    validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    return pa.Array.from_buffers(kind, len(data), [validity, pa.py_buffer(data)], null_count=int(mask.sum()))


@cache
def _dictionary(values: tuple[str, ...], kind: pa.DataType) -> pa.Array:
    """A small string array built from buffers, for the same reason as `_primitive`."""
    encoded = [value.encode() for value in values]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int64 if kind == pa.large_string() else np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(kind, len(values), buffers, null_count=0)


def _column(name: str, kind: pa.DataType, n: int, values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    if pa.types.is_null(kind):
        return pa.nulls(n)
    if name in STRING_COLUMNS:
        return _dictionary(_DICTIONARIES.get(name, p.FLAG_VALUES), kind).take(_primitive(values, pa.int32(), mask))
    if name in TIMESTAMP_COLUMNS:
        return _primitive(values * _MICROS, pa.int64(), mask).view(kind)
    return _primitive(values, kind, mask)


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
