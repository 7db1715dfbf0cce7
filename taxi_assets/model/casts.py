"""Bring one published month onto the canonical schema: pure Arrow in, Arrow out.

The rule for drift: a type change that cannot alter a value is cast silently; anything else rejects the whole
file with a :class:`SourceSchemaMismatch` naming the column, so nothing half-understood reaches the table.

=========================================== ======================================================== =========
published (spec 1.3)                        canonical                                                verdict
=========================================== ======================================================== =========
``null`` type (airport_fee, wav_match_flag) the canonical type, every value null                     cast
``int64`` / ``int32`` / other int zone IDs  ``int32`` (a value outside int32 rejects the file)         cast
``string`` / ``large_string`` / view        ``string``                                               cast
``dictionary<*, string>``                   ``string`` (flags: mapped on the dictionary, then taken) cast
``timestamp[ns]`` / ``[ms]`` / ``[s]``      ``timestamp[us]`` (sub-microsecond digits dropped)       cast
``timestamp[*, tz=...]``                    New York wall time, naive                                cast
ints or decimals in a money column          ``float64``                                              cast
``cbd_congestion_fee`` absent (< 2025-01)   null (never 0, spec 1.3)                                 cast
a column named in another case              the canonical name (``Airport_fee``)                     cast
a column the schema does not know           left out, named in the record (``extra_columns``)        reported
a canonical column missing                  --                                                       reject
text in a numeric or timestamp column       --                                                       reject
=========================================== ======================================================== =========

Text in a numeric column is rejected rather than parsed: a file whose fare is a string was written by
something else than the TLC's pipeline, and a best-effort parse would quarantine or, worse, keep values whose
meaning nobody checked. The file stays out; the month plans ``failed`` with this message until it is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.errors import SourceSchemaMismatch
from taxi_assets.model.schema import (
    BY_LOWER_NAME,
    COLUMNS,
    PARTITION_COLUMN,
    STRING_DICTIONARY,
    Column,
    Kind,
    trips_batch_schema,
    trips_schema,
)

NEW_YORK: Final = "America/New_York"


def _accepts(kind: Kind, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True
    if pa.types.is_dictionary(t):
        return kind in ("string", "flag") and _is_text(t.value_type)
    if kind == "string":
        return _is_text(t)
    if kind == "flag":
        return _is_text(t) or bool(pa.types.is_boolean(t))
    if kind == "timestamp":
        return bool(pa.types.is_timestamp(t))
    if kind in ("id", "seconds"):
        return bool(pa.types.is_integer(t))
    if kind == "float":
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))
    return False


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How a file's columns map onto the canonical ones; decided once per file from its schema."""

    source_names: dict[str, str | None]  # canonical name -> source column name (None: absent, filled with nulls)
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


def conform(
    batch: pa.RecordBatch, plan: ColumnPlan, *, partition: str, path: str, dictionary_strings: bool = False
) -> Conformed:
    """Cast one batch onto :func:`taxi_assets.model.schema.trips_schema`, adding the partition column.

    With ``dictionary_strings`` the string columns come out as ``dictionary<int32, string>`` instead
    (:func:`taxi_assets.model.schema.trips_batch_schema`, the streaming writer's layout): same values, no string
    per row.
    """
    schema = trips_batch_schema() if dictionary_strings else trips_schema()
    arrays: list[pa.Array] = []
    flags_nulled = 0
    for col, field in zip(COLUMNS, schema, strict=False):
        source = plan.source_names[col.name]
        if source is None:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        arr = batch.column(source)
        try:
            if dictionary_strings and col.kind == "string":
                out, nulled = _dictionary_string(arr), 0
            else:
                out, nulled = _cast(arr, col)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceSchemaMismatch(partition, path, source, f"not castable ({exc})", str(col.arrow_type)) from exc
        flags_nulled += nulled
        arrays.append(out)
    arrays.append(repeat_string(partition, batch.num_rows))
    return Conformed(pa.RecordBatch.from_arrays(arrays, schema=schema), flags_nulled)


def _dictionary_string(arr: pa.Array) -> pa.Array:
    """Text of any accepted layout as ``dictionary<int32, string>``; a dictionary keeps its indices."""
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), STRING_DICTIONARY)
    if pa.types.is_dictionary(arr.type):
        return arr.cast(STRING_DICTIONARY)
    return arr.cast(pa.string()).dictionary_encode()


def repeat_string(value: str, n: int) -> pa.Array:
    """``n`` copies of ``value`` as a ``string`` array, built from two buffers (no Python object per row)."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    if offsets[-1] >= 2**31:
        raise ValueError(f"{n} rows of {value!r} do not fit a string array; read smaller batches")
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(raw * n))


def _cast(arr: pa.Array, col: Column) -> tuple[pa.Array, int]:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), col.arrow_type), 0
    if pa.types.is_dictionary(t) and col.kind == "flag":
        return _dictionary_flag(arr)
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if col.kind == "flag":
        return _flag(arr)
    if col.kind == "timestamp":
        if t.tz is not None:  # an instant: show it as New York wall time, the convention of the naive files
            arr = pc.local_timestamp(arr.cast(pa.timestamp(t.unit, tz=NEW_YORK)))
        # ns -> us drops sub-microsecond digits, which the source never carries (whole seconds); s/ms -> us
        # multiply, and a safe cast refuses an overflow instead of wrapping.
        return arr.cast(col.arrow_type, safe=t.unit != "ns"), 0
    return arr.cast(col.arrow_type, safe=True), 0


def _dictionary_flag(arr: pa.DictionaryArray) -> tuple[pa.Array, int]:
    """Map the (few) dictionary values once, then answer per row from the indices alone.

    The reader asks for flags as dictionaries, so a row costs two integer set lookups; the result is built
    from their bitmaps (value = "is Y", validity = "is Y or N") without a take or an if-else.
    """
    mapped = _flag(arr.dictionary)[0].to_pylist()
    indices = arr.indices
    yes = pa.array([i for i, v in enumerate(mapped) if v is True], indices.type)
    known = pa.array([i for i, v in enumerate(mapped) if v is not None], indices.type)
    is_yes = pc.is_in(indices, value_set=yes)
    is_known = pc.is_in(indices, value_set=known)  # a null index is not known: it stays null
    known_count = int(pc.sum(is_known.cast(pa.int64())).as_py() or 0)
    nulled = len(arr) - indices.null_count - known_count
    validity = None if known_count == len(arr) else is_known.buffers()[1]
    return pa.Array.from_buffers(pa.bool_(), len(arr), [validity, is_yes.buffers()[1]]), nulled


def _flag(arr: pa.Array) -> tuple[pa.Array, int]:
    if pa.types.is_boolean(arr.type):
        return arr, 0
    text = arr.cast(pa.string())
    is_y = pc.equal(text, "Y")
    is_n = pc.equal(text, "N")
    out = pc.if_else(is_y, True, pc.if_else(is_n, False, pa.scalar(None, pa.bool_())))
    nulled = int(pc.sum(pc.and_(pc.is_valid(text), pc.is_null(out))).as_py() or 0)
    return out, nulled


__all__ = ["PARTITION_COLUMN", "ColumnPlan", "Conformed", "conform", "plan_columns", "repeat_string"]
