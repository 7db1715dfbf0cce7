"""Synthetic NYC TLC FHVHV monthly files: published schemas per era, realistic values, known faults."""

from taxi_assets.synth.anomalies import A17_RULES, REALISTIC_RATES, AnomalyMode
from taxi_assets.synth.eras import (
    Era,
    Layout,
    default_layout,
    era_of,
    month_schema,
    real_rows,
)
from taxi_assets.synth.generate import MonthChunk, day_row_counts, generate_month, iter_month_chunks
from taxi_assets.synth.zones import zone_lookup

__all__ = [
    "A17_RULES",
    "REALISTIC_RATES",
    "AnomalyMode",
    "Era",
    "Layout",
    "MonthChunk",
    "day_row_counts",
    "default_layout",
    "era_of",
    "generate_month",
    "iter_month_chunks",
    "month_schema",
    "real_rows",
    "zone_lookup",
]
