"""The ``no_duplicates_introduced`` check of :mod:`taxi_assets.checks.verify`: its fast path and its diagnosis.

Fast path: the committed month's digest (taken in the checks' one scan) equals the one the run streamed
(:mod:`taxi_assets.model.row_digest`), so the month holds exactly the streamed rows and nothing else is read. Only a
mismatch, or a caller without a streamed digest, pays for counting duplicates: a ``DISTINCT`` over the
month (a hash table growing with it) and a read of the whole source file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import duckdb

from taxi_assets.io.duckdb import add_s3_secret
from taxi_assets.model.row_digest import RowsDigest, row_hash_sql
from taxi_assets.model.schema import COLUMN_NAMES, PARTITION_COLUMN

# Spec 3, A17: exact duplicate rows are "never seen in fhvhv" (S6 and S7 count 0): the expectation when
# the source file is not scanned.
NO_SOURCE_DUPLICATES: Final = 0

Outcome = tuple[bool, str, str]  # (passed, observed, expected) of one check


@dataclass(frozen=True, slots=True)
class SourceScan:
    """The month's source file as the checks may read it (DuckDB ``read_parquet``); ``uri`` None: not read."""

    uri: str | None
    storage_options: Mapping[str, str] | None = None


def rows_against_stream(
    con: duckdb.DuckDBPyConnection,
    view: str,
    month: str,
    written: RowsDigest,
    streamed: RowsDigest,
    source: SourceScan,
) -> Outcome:
    """The committed rows (digest ``written``) are, as a multiset, the rows the run streamed.

    Equal digests pass without another read. Different ones (the rare, expensive path) count the
    month's duplicate rows and, given a source, the source's, so the message says what went wrong.
    """
    expected = f"{streamed.rows} rows, digest {streamed.short} (the rows the run streamed)"
    if written == streamed:
        return True, f"{written.rows} rows, digest {written.short}", expected
    dups = _exact_duplicates(con, view, month) if _hash_duplicates(con, view, month) else 0
    in_source = _source_duplicates(con, source)
    source_text = f", source has {in_source}" if in_source is not None else ""
    observed = (
        f"rows differ from those streamed: {_duplicate_rows(dups)}{source_text} "
        f"({written.rows} rows, digest {written.short})"
    )
    return False, observed, expected


def duplicates_against_source(con: duckdb.DuckDBPyConnection, view: str, month: str, source: SourceScan) -> Outcome:
    """Duplicate full rows in the month <= those in the source file itself (or the spec's count without one).

    The check as it was before digests, kept for callers without one: a second scan of the month with a
    hash table growing with it, and a read of the whole source file.
    """
    in_source = _source_duplicates(con, source)
    if in_source is not None:
        allowed, note = in_source, "in the source file"
    elif source.uri:  # e.g. a source only pyarrow/s3fs can open: fall back on the documented fact
        allowed, note = NO_SOURCE_DUPLICATES, "source not readable by DuckDB; spec: no exact duplicates"
    else:
        allowed, note = NO_SOURCE_DUPLICATES, "spec: FHVHV files have no exact duplicates"
    by_hash = _hash_duplicates(con, view, month)
    dups = by_hash if by_hash <= allowed else _exact_duplicates(con, view, month)
    return dups <= allowed, _duplicate_rows(dups), f"<= {allowed} ({note})"


def _duplicate_rows(count: int) -> str:
    return f"{count} duplicate row{'' if count == 1 else 's'}"


def _hash_duplicates(con: duckdb.DuckDBPyConnection, view: str, month: str) -> int:
    """Rows minus distinct full-row hashes: an upper bound of the duplicates (a collision merges two rows)."""
    sql = f"SELECT count(*) - count(DISTINCT {row_hash_sql(COLUMN_NAMES)}) FROM {view} WHERE {PARTITION_COLUMN} = ?"
    return _one(con, sql, [month])


def _exact_duplicates(con: duckdb.DuckDBPyConnection, view: str, month: str) -> int:
    """Duplicates compared on whole rows, run only when the hash count says there are some (collisions)."""
    sql = f"SELECT count(*) - count(DISTINCT t) FROM (SELECT * FROM {view} WHERE {PARTITION_COLUMN} = ?) t"
    return _one(con, sql, [month])


def _source_duplicates(con: duckdb.DuckDBPyConnection, source: SourceScan) -> int | None:
    """Duplicate full rows in the source file as published; None without a source or when DuckDB cannot read it."""
    if not source.uri:
        return None
    if source.uri.startswith("s3://") and source.storage_options:
        add_s3_secret(con, source.storage_options, scope=source.uri)
    try:
        return _one(con, "SELECT count(*) - count(DISTINCT hash(t)) FROM read_parquet(?) t", [source.uri])
    except duckdb.Error:
        return None


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0] or 0) if row else 0
