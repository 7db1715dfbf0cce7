"""Where FHVHV months come from: the TLC file-name convention on top of the generic lister, and a cheap survey
of a month's file (rows per pickup month, text timestamps parsed) before it is streamed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from partitions import is_local
from partitions.errors import SourceListingError, SourceNotFound, StorageUnavailable
from partitions.keys import MonthlyPartitions, month_range
from partitions.listing import filesystem_for, list_source
from partitions.source import Listing, SourceFile
from taxi_assets.errors import ConfigurationError
from taxi_assets.model.casts import canonical_timestamps, plan_columns
from taxi_assets.model.schema import COLUMNS
from taxi_assets.settings import Settings

FILE_PATTERN: Final = r"^fhvhv_tripdata_(?P<key>\d{4}-\d{2})\.parquet$"
FIRST_MONTH: Final = "2019-02"  # HVFHS licensing began; earlier names are not FHVHV months

FHVHV_MONTHS: Final = MonthlyPartitions(pattern=FILE_PATTERN, start=FIRST_MONTH)
SURVEY_BATCH_ROWS: Final = 262_144  # the reader's batch: a survey holds no more than it


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


def fingerprint_now(source: SourceFile, cfg: Settings) -> str | None:
    """What the source says of ``source``'s file now (one S3 listing or one HTTP HEAD), for a read to compare with
    the fingerprint its plan saw; ``"gone"`` when the file is no longer listed.

    None when there is nothing to compare: a local file (the reader holds the one it opened; a file replaced by
    a rename is still read whole from the old inode) or a source that did not answer this once (the read itself
    succeeded; the check is a safeguard, not a reason to fail a month).
    """
    if is_local(source.uri):
        return None
    try:
        listing = list_months(cfg, keys=[source.partition])
    except (SourceListingError, StorageUnavailable):  # no answer this once: the read itself succeeded
        return None
    found = listing.files.get(source.partition)
    if found is not None:
        return found.fingerprint
    return None if source.partition in listing.unavailable else "gone"


def file_name(month: str) -> str:
    return f"fhvhv_tripdata_{month}.parquet"


@dataclass(frozen=True)
class MonthSurvey:
    """A cheap look at a source file before it is streamed: its rows, and its pickups per month."""

    rows: int
    pickups_by_month: dict[str, int]  # "YYYY-MM" -> rows whose pickup falls in it (null pickups not counted)


def survey_month(source: SourceFile, cfg: Settings) -> MonthSurvey | None:
    """Rows per pickup month of ``source``, read from the footer's statistics wherever they decide.

    A row group whose pickup minimum and maximum fall in one month counts whole from its footer, without reading
    a value (every row group of a well-filed month: the common case costs one footer read). Other groups (they
    straddle months, their statistics are missing or INT96, the column is text or zoned) are read, the pickup
    column only. Every timestamp column published as text is parsed here in full, so a value that is not
    ISO-8601 rejects the month with its file row before any data file is written.

    Returns None when the file cannot be opened or read: the reader then names what is wrong with it.

    Raises:
        SourceSchemaMismatch: the file's columns cannot be mapped (as the reader would say).
        UnparseableTimestamp: a timestamp column's text that is not ISO-8601.
    """
    month, uri = source.partition, source.uri
    try:
        fs, path = filesystem_for(uri, cfg.storage_options(uri))
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            schema = parquet.schema_arrow
            columns = plan_columns(schema, partition=month, path=uri).source_names
            pickup = columns["pickup_datetime"]
            if pickup is None:  # a required column: plan_columns refused the file already
                return None
            text = [
                name
                for col in COLUMNS
                if col.kind == "timestamp"
                and (name := columns[col.name]) is not None
                and not (pa.types.is_timestamp(schema.field(name).type) or pa.types.is_null(schema.field(name).type))
            ]
            every_group = list(range(parquet.metadata.num_row_groups))
            counts: Counter[str] = Counter()
            if text:  # parsed in full: the error names the row in the file, before anything is written
                for batch, first_row in _batches(parquet, every_group, text):
                    for name in text:
                        walls = canonical_timestamps(
                            batch.column(name), partition=month, path=uri, column=name, first_row=first_row
                        )
                        if name == pickup:
                            counts.update(_months_of(walls))
            if pickup not in text:
                known, unknown = _footer_months(parquet, pickup)
                counts.update(known)
                for batch, first_row in _batches(parquet, unknown, [pickup]):
                    walls = canonical_timestamps(
                        batch.column(pickup), partition=month, path=uri, column=pickup, first_row=first_row
                    )
                    counts.update(_months_of(walls))
            return MonthSurvey(rows=parquet.metadata.num_rows, pickups_by_month=dict(counts))
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError):
        return None


def _batches(parquet: pq.ParquetFile, groups: list[int], columns: list[str]) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Batches of ``columns`` of the row ``groups``, with the file row each batch starts at."""
    sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
    for group in groups:
        first_row = sum(sizes[:group])
        for batch in parquet.iter_batches(batch_size=SURVEY_BATCH_ROWS, row_groups=[group], columns=columns):
            yield batch, first_row
            first_row += batch.num_rows


def _footer_months(parquet: pq.ParquetFile, column: str) -> tuple[Counter[str], list[int]]:
    """Pickups per month of the row groups whose footer statistics lie in one month; the other groups' indices.

    Only a naive ``timestamp`` column is trusted this way (a zoned one is stored in UTC, hours off New York's
    month boundaries; INT96 has no statistics).
    """
    meta = parquet.metadata
    counts: Counter[str] = Counter()
    unknown: list[int] = []
    field = parquet.schema_arrow.field(column)
    index = next((i for i in range(meta.num_columns) if meta.schema.column(i).path == column), None)
    usable = index is not None and pa.types.is_timestamp(field.type) and field.type.tz is None
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(index).statistics if usable and index is not None else None
        if stats is not None and stats.has_min_max and stats.has_null_count:
            low, high = stats.min, stats.max
            if (
                isinstance(low, datetime)
                and isinstance(high, datetime)
                and (low.year, low.month)
                == (
                    high.year,
                    high.month,
                )
            ):
                counts[f"{low.year:04d}-{low.month:02d}"] += meta.row_group(group).num_rows - stats.null_count
                continue
        unknown.append(group)
    return counts, unknown


def _months_of(walls: pa.Array) -> Counter[str]:
    """Rows per ``YYYY-MM`` of canonical timestamps (nulls not counted)."""
    keys = pc.strftime(walls.drop_null(), format="%Y-%m")
    counted = pc.value_counts(keys)
    return Counter(dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)))
