"""Synthetic NYC TLC FHVHV monthly files: published schemas per era, realistic values, known faults."""

from taxi_assets.model.zones import zone_lookup
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
from taxi_assets.synth.layouts import row_group_sizes
from taxi_assets.synth.writer import LayoutOption, SynthFile, write_month_file, write_months

__all__ = [
    "A17_RULES",
    "REALISTIC_RATES",
    "AnomalyMode",
    "Era",
    "Layout",
    "LayoutOption",
    "MonthChunk",
    "SynthFile",
    "day_row_counts",
    "default_layout",
    "era_of",
    "generate_month",
    "iter_month_chunks",
    "month_schema",
    "real_rows",
    "row_group_sizes",
    "write_month_file",
    "write_months",
    "zone_lookup",
]
