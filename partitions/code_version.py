"""A short, stable hash of what the caller declares its output depends on (schema, rule names, version tags).

Pure and deterministic across processes and Python versions: values are rendered canonically (mappings by
sorted key, sets sorted, Arrow schemas by their text form) before hashing, and anything without a stable text
form (an arbitrary object whose repr holds a memory address) is refused instead of hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

import pyarrow as pa

LENGTH = 12


def code_version(*parts: object) -> str:
    """``sha256`` hex prefix (12 characters) over the canonical form of ``parts``.

    >>> code_version("v3", ["drop_negative_amounts"]) == code_version("v3", ("drop_negative_amounts",))
    True
    """
    text = json.dumps([_canonical(part) for part in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def _canonical(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, pa.Schema):
        return value.to_string(show_field_metadata=False, show_schema_metadata=False)
    if isinstance(value, pa.DataType):
        return str(value)
    if isinstance(value, Mapping):
        return {"map": sorted(([str(k), _canonical(v)] for k, v in value.items()), key=lambda kv: kv[0])}
    if isinstance(value, set | frozenset):
        return {"set": sorted(json.dumps(_canonical(v), sort_keys=True) for v in value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    raise TypeError(
        f"code_version cannot hash a {type(value).__name__} stably; pass its name or a version string instead"
    )
