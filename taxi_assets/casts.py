"""Bring one published month onto the canonical schema: pure Arrow in, Arrow out.

The rule for drift (documented in README, "Casts"): a type change that cannot alter a value is cast
silently (int64/int32 IDs, string/large_string/dictionary strings, null-typed columns, ns/us timestamps,
time-zone-aware timestamps converted to New York wall time); anything else rejects the whole file with a
:class:`SourceSchemaMismatch` naming the column, so nothing half-understood reaches the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.errors import SourceSchemaMismatch
from taxi_assets.schema import BY_LOWER_NAME, COLUMNS, PARTITION_COLUMN, Column, Kind, trips_schema

NEW_YORK: Final = "America/New_York"


def _accepts(kind: Kind, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True
    if pa.types.is_dictionary(t):
        return kind in ("string", "flag") and _is_text(t.value_type)
    if kind == "string":
        return _is_text(t)
    if kind == "flag":
        return _is_text(t) or pa.types.is_boolean(t)
    if kind == "timestamp":
        return pa.types.is_timestamp(t)
    if kind in ("id", "seconds"):
        return pa.types.is_integer(t)
    if kind == "float":
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    return False


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How a file's columns map onto the canonical ones; decided once per file from its schema."""

    source_names: dict[
        str, str | None
    ]  # canonical name -> source column name (None: absent, filled with nulls)
    extra_columns: tuple[str, ...]  # present in the file, not canonical: reported, left out
    renamed: tuple[tuple[str, str], ...]  # (source name, canonical name) for case variants


def plan_columns(schema: pa.Schema, *, partition: str, path: str) -> ColumnPlan:
    """Match a file schema to the canonical columns, or reject the file naming the first problem."""
    matched: dict[str, str] = {}
    extra: list[str] = []
    renamed: list[tuple[str, str]] = []
    for f in schema:
        col = BY_LOWER_NAME.get(f.name.lower())
        if col is None:
            extra.append(f.name)
            continue
        if col.name in matched:
            raise SourceSchemaMismatch(
                partition,
                path,
                col.name,
                f"present twice ({matched[col.name]!r} and {f.name!r})",
                "one column",
            )
        if not _accepts(col.kind, f.type):
            raise SourceSchemaMismatch(partition, path, f.name, str(f.type), _expected(col))
        matched[col.name] = f.name
        if f.name != col.name:
            renamed.append((f.name, col.name))
    for col in COLUMNS:
        if col.name not in matched and not col.may_be_absent:
            raise SourceSchemaMismatch(partition, path, col.name, "missing", _expected(col))
    names = {c.name: matched.get(c.name) for c in COLUMNS}
    return ColumnPlan(source_names=names, extra_columns=tuple(extra), renamed=tuple(renamed))


def _expected(col: Column) -> str:
    return {
        "string": "a string column",
        "flag": "a Y/N string column",
        "timestamp": "a timestamp column",
        "id": "an integer zone ID column",
        "seconds": "an integer seconds column",
        "float": "a numeric column",
    }[col.kind]


@dataclass(frozen=True, slots=True)
class Conformed:
    """A batch on the canonical schema, and how many flag values were neither Y nor N (made null)."""

    batch: pa.RecordBatch
    flags_nulled: int


def conform(batch: pa.RecordBatch, plan: ColumnPlan, *, partition: str, path: str) -> Conformed:
    """Cast one batch onto :func:`taxi_assets.schema.trips_schema`, adding the partition column."""
    arrays: list[pa.Array] = []
    flags_nulled = 0
    for col in COLUMNS:
        source = plan.source_names[col.name]
        if source is None:
            arrays.append(pa.nulls(batch.num_rows, col.arrow_type))
            continue
        arr = batch.column(source)
        try:
            out, nulled = _cast(arr, col)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceSchemaMismatch(
                partition, path, source, f"not castable ({exc})", str(col.arrow_type)
            ) from exc
        flags_nulled += nulled
        arrays.append(out)
    arrays.append(
        pa.array([partition] * batch.num_rows, pa.string()) if batch.num_rows else pa.array([], pa.string())
    )
    return Conformed(pa.RecordBatch.from_arrays(arrays, schema=trips_schema()), flags_nulled)


def _cast(arr: pa.Array, col: Column) -> tuple[pa.Array, int]:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), col.arrow_type), 0
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if col.kind == "flag":
        return _flag(arr)
    if col.kind == "timestamp":
        if t.tz is not None:  # an instant: show it as New York wall time, the convention of the naive files
            arr = pc.local_timestamp(arr.cast(pa.timestamp(t.unit, tz=NEW_YORK)))
        # ns -> us drops sub-microsecond digits, which the source never carries (whole seconds).
        return arr.cast(col.arrow_type, safe=False), 0
    return arr.cast(col.arrow_type, safe=True), 0


def _flag(arr: pa.Array) -> tuple[pa.Array, int]:
    if pa.types.is_boolean(arr.type):
        return arr, 0
    text = arr.cast(pa.string())
    is_y = pc.equal(text, "Y")
    is_n = pc.equal(text, "N")
    out = pc.if_else(is_y, True, pc.if_else(is_n, False, pa.scalar(None, pa.bool_())))
    nulled = int(pc.sum(pc.and_(pc.is_valid(text), pc.is_null(out))).as_py() or 0)
    return out, nulled


__all__ = ["PARTITION_COLUMN", "ColumnPlan", "Conformed", "conform", "plan_columns"]
