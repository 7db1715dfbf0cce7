"""DuckDB checks of a written month on the exact table versions the run committed, and their history.

DuckDB reads the committed versions through the Delta log: the data files of the month's partition that the log
lists at the committed version, read with ``read_parquet`` (:func:`taxi_assets.io.duckdb.register_partition`;
``delta_scan`` or deltalake's Arrow dataset for tables using Delta features plain files cannot show), never by
globbing parquet files, which would also count superseded files. Every check reads only the month's partition,
and all the trips checks share one scan of it: counts and the row digest are plain aggregates, so memory does
not grow with the month, and the source file is not read again unless a digest disagrees. Nulls are summed from
the footers of the month's data files in that version (DuckDB ``parquet_metadata``), where the Parquet writer
counted them per column chunk; the scan counts them only when a footer has no count.

=========================== =================================================================================
check                       passes when
=========================== =================================================================================
``row_count``               trips rows of the month = rows the run wrote
``quarantine_row_count``    quarantine rows of the month = rows the run quarantined
``rows_conserved``          trips + quarantine rows of the month = source rows
``month_matches_key``       no trip in partition ``month=K`` has its pickup outside month K (widened by
                            the cleaning's ``PICKUP_TOLERANCE``): else rows of another month were filed under K
``no_duplicates_introduced`` the month's trips are, as a multiset, exactly the trips the run streamed: the
                            written digest (:mod:`taxi_assets.model.row_digest`, over the columns that
                            identify a trip) equals the streamed one, so no row was duplicated, lost or
                            replaced by another (a source's own duplicates pass). On a
                            mismatch the result counts the duplicates in the month and in the source. Without
                            a streamed digest: duplicate full rows in the month <= those in the source
``required_not_null``       no trip has a null in a column of :data:`taxi_assets.model.schema.REQUIRED` (per the
                            files' footers, else counted in the scan)
=========================== =================================================================================

Results go to the append-only ``<sink>/checks`` Delta table through :func:`record_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
from deltalake.exceptions import DeltaError

from partitions import is_local
from partitions.errors import PartitionsError
from partitions.keys import month_bounds
from partitions.storage_errors import open_table
from taxi_assets.checks.duplicates import SourceScan, duplicates_against_source, rows_against_stream
from taxi_assets.checks.store import CheckResult
from taxi_assets.io.duckdb import open_connection, register_partition, register_table
from taxi_assets.model.cleaning import PICKUP_TOLERANCE
from taxi_assets.model.row_digest import METHOD, RowsDigest, row_hash_sql
from taxi_assets.model.schema import PARTITION_COLUMN, REQUIRED, quarantine_schema, trips_schema


def count_month(table_uri: str, month: str, *, version: int, storage_options: Mapping[str, str] | None = None) -> int:
    """Rows of one month in one committed table version, counted by DuckDB with partition pruning."""
    con = open_connection(storage_options=storage_options)
    try:
        register_table(con, "t", table_uri, schema=trips_schema(), version=version, storage_options=storage_options)
        row = con.execute(f"SELECT count(*) FROM t WHERE {PARTITION_COLUMN} = ?", [month]).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def verify_month_checks(
    month: str,
    *,
    run_id: str,
    trips_uri: str,
    trips_version: int,
    quarantine_uri: str,
    quarantine_version: int,
    rows_source: int,
    rows_written: int,
    rows_quarantined: int,
    storage_options: Mapping[str, str] | None = None,
    source_uri: str | None = None,
    source_storage_options: Mapping[str, str] | None = None,
    digest: RowsDigest | None = None,
) -> list[CheckResult]:
    """Every check of :data:`CHECK_NAMES` on the committed versions, in that order.

    With ``digest`` (the rows the run streamed, :mod:`taxi_assets.model.row_digest`) the trips checks are one
    scan of the month, and the duplicate check compares digests: the source is read only when they differ,
    to say how many duplicates the month and the source hold. Without one (or one taken by another DuckDB
    version), the duplicate check counts distinct rows in the month and compares with the duplicates DuckDB
    counts in ``source_uri`` (one more read of it), or with the spec's fact that FHVHV files have none.
    """
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    streamed = digest if digest is not None and digest.method == METHOD else None
    con = open_connection(
        storage_options=storage_options, extensions=_extensions_for(trips_uri, quarantine_uri, source_uri)
    )
    try:
        for view, uri, schema, version in (
            ("trips_v", trips_uri, trips_schema(), trips_version),
            ("quarantine_v", quarantine_uri, quarantine_schema(), quarantine_version),
        ):
            register_partition(
                con,
                view,
                uri,
                schema=schema,
                column=PARTITION_COLUMN,
                key=month,
                version=version,
                storage_options=storage_options,
            )
        footer_nulls = _required_nulls_in_footers(con, trips_uri, trips_version, month, storage_options)
        stats = _trips_stats(con, month, nulls=footer_nulls)
        bad = _one(con, f"SELECT count(*) FROM quarantine_v WHERE {PARTITION_COLUMN} = ?", [month])
        source = SourceScan(source_uri, source_storage_options)
        if streamed is None:
            duplicates = duplicates_against_source(con, "trips_v", month, source)
        else:
            duplicates = rows_against_stream(con, "trips_v", month, stats.digest, streamed, source)
    finally:
        con.close()

    def result(check: str, passed: bool, observed: object, expected: object, version: int) -> CheckResult:
        return CheckResult(month, check, passed, str(observed), str(expected), version, run_id, now)

    clean, off_month, nulls = stats.rows, stats.off_month, stats.nulls
    null_text = ", ".join(f"{c} {n}" for c, n in nulls.items() if n) or "none"
    low, high = month_bounds(month)
    first, last = low - PICKUP_TOLERANCE, high + PICKUP_TOLERANCE
    window = f"0 (pickups from {first:%Y-%m-%d %H:%M} to before {last:%Y-%m-%d %H:%M})"
    return [
        result("row_count", clean == rows_written, clean, rows_written, trips_version),
        result("quarantine_row_count", bad == rows_quarantined, bad, rows_quarantined, quarantine_version),
        result("rows_conserved", clean + bad == rows_source, clean + bad, rows_source, trips_version),
        result("month_matches_key", off_month == 0, f"{off_month} trips outside the month", window, trips_version),
        result("no_duplicates_introduced", *duplicates, trips_version),
        result("required_not_null", not any(nulls.values()), f"nulls: {null_text}", "no nulls", trips_version),
    ]


def _extensions_for(*uris: str | None) -> tuple[str, ...]:
    """httpfs when a URI is remote (S3 files, an https source), else none: the checks read the committed
    partitions' files with ``read_parquet`` (:func:`taxi_assets.io.duckdb.register_partition`), not ``delta_scan``."""
    remote = any(uri and not is_local(uri) for uri in uris)
    return ("httpfs",) if remote else ()


@dataclass(frozen=True, slots=True)
class _TripsStats:
    rows: int
    off_month: int
    nulls: dict[str, int]
    digest: RowsDigest


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object]) -> int:
    row = con.execute(sql, list(params)).fetchone()
    return int(row[0] or 0) if row else 0


def _trips_stats(con: duckdb.DuckDBPyConnection, month: str, *, nulls: Mapping[str, int] | None = None) -> _TripsStats:
    """Rows, rows off the month, the digest and the nulls of each required column ``nulls`` does not give (the
    footers' counts): one scan, plain aggregates.

    No ``DISTINCT`` here: its hash table grows with the month (it was most of the checks' time and memory).
    """
    low, high = month_bounds(month)
    known = dict(nulls or {})
    counted = [c for c in REQUIRED if c not in known]
    null_sql = "".join(f', count(*) - count("{c}")' for c in counted)
    sql = f"""
        SELECT count(*),
               count(*) FILTER (WHERE pickup_datetime < ? OR pickup_datetime >= ?),
               sum({row_hash_sql()}){null_sql}
        FROM trips_v WHERE {PARTITION_COLUMN} = ?
    """
    row = con.execute(sql, [low - PICKUP_TOLERANCE, high + PICKUP_TOLERANCE, month]).fetchone()
    assert row is not None
    values = [int(v or 0) for v in row]
    rows, off_month, hash_sum = values[:3]
    known.update(zip(counted, values[3:], strict=True))
    nulls_by_column = {c: known[c] for c in REQUIRED}
    return _TripsStats(rows, off_month, nulls_by_column, RowsDigest(rows, hash_sum))


def _required_nulls_in_footers(
    con: duckdb.DuckDBPyConnection,
    trips_uri: str,
    version: int,
    month: str,
    storage_options: Mapping[str, str] | None,
) -> dict[str, int]:
    """Nulls of each required column whose every chunk in the month's files (in ``version``) has a footer count.

    Why: the Parquet writer counts the nulls of every column chunk as it encodes it, and reading footers costs
    milliseconds where counting nulls in the scan decodes 16 columns (0.45 s of the checks at 16 M rows). A
    column missing here is counted by the scan: one written without statistics (the dictionary-encoded text
    columns, :func:`taxi_assets.io.parquet_files.writer_options`), missing from a file, or every column when the
    files cannot be listed or read this way.
    """
    try:
        table = open_table(trips_uri, storage_options=storage_options, partition=month, version=version)
        files = table.file_uris(file_pruning_predicate=[(PARTITION_COLUMN, "=", month)])
        if not files:
            return dict.fromkeys(REQUIRED, 0)
        chunks = con.execute(
            "SELECT file_name, row_group_id, path_in_schema, stats_null_count FROM parquet_metadata(?)", [files]
        ).fetchall()
    except (duckdb.Error, DeltaError, OSError, PartitionsError):
        return {}
    groups = {(file, group) for file, group, _, _ in chunks}
    counts: dict[str, list[int | None]] = {}
    for _, _, column, count in chunks:
        counts.setdefault(str(column), []).append(count)
    nulls: dict[str, int] = {}
    for column in REQUIRED:
        found = counts.get(column, [])
        if len(found) == len(groups) and None not in found:
            nulls[column] = sum(n for n in found if n is not None)
    return nulls
