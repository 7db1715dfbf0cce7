"""The asset's declared code version: a change here plans every month ``code-changed``.

It hashes what decides the output: the canonical schema (types and order), the version tag, the cast rule
version and the quality rules (names, reasons and expressions with their thresholds).
"""

from __future__ import annotations

from typing import Final

from partitions.code_version import code_version
from taxi_assets.model import daily_aggregation
from taxi_assets.model.cleaning import RULES, context_for
from taxi_assets.model.daily_aggregation import (
    COMPANIES,
    FINAL_SQL,
    MERGE_SQL,
    PARTIAL_METHOD,
    TRIPS_COLUMNS,
    summary_schema,
)
from taxi_assets.model.schema import SCHEMA_VERSION, quarantine_schema, trips_schema
from taxi_assets.model.zones import zone_lookup

TRANSFORM_VERSION: Final = "transform-1"  # bump when casts or the write layout change meaning


def trips_code_version() -> str:
    ctx = context_for("2000-01")  # a fixed month: the expressions' text carries thresholds, not the month
    rules = [(r.name, r.reason, str(r.broken(ctx))) for r in RULES]
    return code_version(SCHEMA_VERSION, TRANSFORM_VERSION, str(trips_schema()), str(quarantine_schema()), rules)


def daily_summary_code_version() -> str:
    """What decides the output: the SQL, the schema, the company names and the zone -> borough map."""
    zones = zone_lookup()
    boroughs = list(zip(zones["LocationID"].to_pylist(), zones["Borough"].to_pylist(), strict=True))
    sql = (PARTIAL_METHOD, MERGE_SQL, FINAL_SQL, TRIPS_COLUMNS)
    return code_version(daily_aggregation.SUMMARY_VERSION, sql, summary_schema(), sorted(COMPANIES.items()), boroughs)
