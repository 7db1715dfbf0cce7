"""Where FHVHV months come from: the TLC file-name convention on top of the generic lister."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Final

from partitions.errors import SourceNotFound
from partitions.keys import MonthlyPartitions, month_range
from partitions.listing import list_source
from partitions.source import Listing
from taxi_assets.errors import ConfigurationError
from taxi_assets.settings import Settings

FILE_PATTERN: Final = r"^fhvhv_tripdata_(?P<key>\d{4}-\d{2})\.parquet$"
FIRST_MONTH: Final = "2019-02"  # HVFHS licensing began; earlier names are not FHVHV months

FHVHV_MONTHS: Final = MonthlyPartitions(pattern=FILE_PATTERN, start=FIRST_MONTH)


def list_months(cfg: Settings, *, today: date | None = None, keys: Iterable[str] | None = None) -> Listing:
    """One listing of the source: a file per month, plus what was skipped, ambiguous or unanswered, and why.

    ``keys`` limits it to those months for every kind of source: an ``https://...{key}...`` source (the
    public CloudFront URLs, which cannot be listed) is probed with one HEAD per named month, a directory hashes
    only their files. Without ``keys``, an HTTP source is probed for every month from 2019-02 to this month;
    unpublished months answer 403/404 and are skipped. A month the source did not answer for after the
    engine's retries is in ``Listing.unavailable``; the other months are listed.
    """
    wanted = list(keys) if keys is not None else None
    if wanted is None and "{key}" in cfg.source:
        wanted = month_range(FIRST_MONTH, (today or date.today()).strftime("%Y-%m"))
    try:
        return list_source(cfg.source, FHVHV_MONTHS, storage_options=cfg.storage_options(cfg.source), keys=wanted)
    except SourceNotFound as exc:  # the engine cannot name our settings: say where the path came from
        raise ConfigurationError("--source / TAXI_ASSETS_SOURCE", str(exc)) from None


def file_name(month: str) -> str:
    return f"fhvhv_tripdata_{month}.parquet"
