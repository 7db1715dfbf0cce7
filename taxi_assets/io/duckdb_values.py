"""Small views from Python rows, written as SQL: no Arrow arrays built from Python objects.

Why not ``con.register(arrow_table)``: building Arrow arrays from Python lists, and DuckDB's registration of
Arrow objects, import pandas (~0.5 s and more under load), and the analysts' ``sql`` command would pay it for the
``partitions`` and ``zones`` views (a few hundred rows at most). A ``VALUES`` list with explicit casts gives the
same typed view. Values are rendered as SQL literals here, never interpolated from user input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import duckdb
import pyarrow as pa

_TYPES = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
}


def sql_type(arrow_type: pa.DataType) -> str:
    """DuckDB's name for ``arrow_type`` (dictionaries as their values); ValueError for a type views never hold."""
    if pa.types.is_dictionary(arrow_type):
        return sql_type(arrow_type.value_type)
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"{sql_type(arrow_type.value_type)}[]"
    if pa.types.is_struct(arrow_type):
        fields = ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in arrow_type)
        return f"STRUCT({fields})"
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    try:
        return _TYPES[arrow_type]
    except KeyError:
        raise ValueError(f"no SQL literal for Arrow type {arrow_type}") from None


def literal(value: Any) -> str:
    """``value`` as a SQL literal (the cast to the column's type is added by :func:`values_view_sql`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'"
    if isinstance(value, datetime | date):
        return "'" + value.isoformat() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def values_view_sql(name: str, schema: pa.Schema, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> str:
    """``CREATE OR REPLACE VIEW name`` holding ``rows`` with ``schema``'s column names and types."""
    tuples = []
    for row in rows:
        cells = [row.get(f.name) for f in schema] if isinstance(row, Mapping) else list(row)
        if len(cells) != len(schema):
            raise ValueError(f"view {name}: a row has {len(cells)} values for {len(schema)} columns")
        tuples.append("(" + ", ".join(literal(v) for v in cells) + ")")
    casts = ", ".join(f'CAST({{}} AS {sql_type(f.type)}) AS "{f.name}"' for f in schema)
    if not tuples:  # typed and empty
        return f'CREATE OR REPLACE VIEW "{name}" AS SELECT ' + casts.replace("{}", "NULL") + " WHERE false"
    slots = [f"c{i}" for i in range(len(schema))]
    select = ", ".join(
        f'CAST({slot} AS {sql_type(f.type)}) AS "{f.name}"' for slot, f in zip(slots, schema, strict=True)
    )
    body = ",\n".join(tuples)
    return f'CREATE OR REPLACE VIEW "{name}" AS SELECT {select} FROM (VALUES {body}) AS v({", ".join(slots)})'


def register_rows(
    con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema, rows: Iterable[Mapping[str, Any] | Sequence[Any]]
) -> None:
    """View ``name`` over ``rows`` (mappings by column name, or sequences in ``schema``'s order)."""
    con.execute(values_view_sql(name, schema, rows))
