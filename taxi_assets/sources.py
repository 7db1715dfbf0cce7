"""Where FHVHV months come from: the TLC file-name convention on top of the generic lister."""

from __future__ import annotations

from typing import Final

from partitions.keys import MonthlyPartitions
from partitions.listing import Listing, list_source
from taxi_assets.settings import Settings

FILE_PATTERN: Final = r"^fhvhv_tripdata_(?P<key>\d{4}-\d{2})\.parquet$"
FIRST_MONTH: Final = "2019-02"  # HVFHS licensing began; earlier names are not FHVHV months

FHVHV_MONTHS: Final = MonthlyPartitions(pattern=FILE_PATTERN, start=FIRST_MONTH)


def list_months(cfg: Settings) -> Listing:
    """One listing of the source: a file per month, plus what was skipped and why."""
    return list_source(cfg.source, FHVHV_MONTHS, storage_options=cfg.storage_options(cfg.source))


def file_name(month: str) -> str:
    return f"fhvhv_tripdata_{month}.parquet"
