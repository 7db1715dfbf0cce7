"""The asset's declared code version: a change here plans every month ``code-changed``.

It hashes what decides the output: the canonical schema (types and order), the version tag, the cast rule
version and the quality rules (names, reasons and expressions with their thresholds).
"""

from __future__ import annotations

from typing import Final

from partitions.code_version import code_version
from taxi_assets.cleaning import RULES, context_for
from taxi_assets.schema import SCHEMA_VERSION, quarantine_schema, trips_schema

TRANSFORM_VERSION: Final = "transform-1"  # bump when casts or the write layout change meaning


def trips_code_version() -> str:
    ctx = context_for("2000-01")  # a fixed month: the expressions' text carries thresholds, not the month
    rules = [(r.name, r.reason, str(r.broken(ctx))) for r in RULES]
    return code_version(SCHEMA_VERSION, TRANSFORM_VERSION, str(trips_schema()), str(quarantine_schema()), rules)
