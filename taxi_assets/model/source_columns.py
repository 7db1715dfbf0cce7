"""A source file's columns and Arrow types as one line of record text, so the next publication can be compared.

Kept in every trips success record (``fhvhv.source_columns``): a re-publication that retypes a column is then told
from one that adds or drops one, without reading the old file (which the source no longer has).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pyarrow as pa

SOURCE_COLUMNS: Final = "fhvhv.source_columns"  # the record extra
_SEP: Final = "|"  # between columns (Arrow type names hold commas)


def columns_of(schema: pa.Schema) -> dict[str, str]:
    return {f.name: str(f.type) for f in schema}


def format_source_columns(columns: Mapping[str, str]) -> str:
    return _SEP.join(f"{name}:{kind}" for name, kind in columns.items())


def parse_source_columns(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(_SEP) if text else ():
        name, _, kind = item.partition(":")
        if name:
            out[name] = kind
    return out
