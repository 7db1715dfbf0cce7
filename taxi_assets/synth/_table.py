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


def _fixed_width_strings(
    dictionary: tuple[str, ...], kind: pa.DataType, codes: np.ndarray, mask: np.ndarray | None
) -> pa.Array:
    """Strings by code without a per-row lookup in Arrow: every dictionary here has one width (6 or 1)."""
    encoded = np.array([value.encode() for value in dictionary])  # dtype S<width>
    width = encoded.dtype.itemsize
    offset_type = np.int64 if kind == pa.large_string() else np.int32
    offsets = np.arange(0, (len(codes) + 1) * width, width, dtype=offset_type)  # null slots keep their bytes
    validity = None if mask is None else pa.py_buffer(np.packbits(~mask, bitorder="little"))
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(encoded[codes])]
    return pa.Array.from_buffers(kind, len(codes), buffers, null_count=0 if mask is None else int(mask.sum()))


def _column(name: str, kind: pa.DataType, n: int, values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    if pa.types.is_null(kind):
        return pa.nulls(n)
    if name in STRING_COLUMNS:
        return _fixed_width_strings(_DICTIONARIES.get(name, p.FLAG_VALUES), kind, values, mask)
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
