"""What changed when a month's source was published again: the two versions of the month compared in DuckDB.

Why here: the month body (:mod:`taxi_assets.assets.trips`) audits a re-publication at write time and keeps the
result in the new success record's extras (``fhvhv.republished.*``), while the quality report
(:mod:`taxi_assets.analysts.audit`) audits older commits after the fact from Delta time travel; both use the
comparisons below, so the two say the same thing.

Compared: rows per company, the columns (the table's schema, and the source file's columns when a record
kept them), and the trips themselves by identity digest (:data:`taxi_assets.model.row_digest.IDENTITY`: licence,
times, zones, miles, fare, driver pay) as multisets: how many of the new version's trips were not in the old
one (new) and how many of the old one's are no longer there (gone). A re-published file that only added trips
shows new > 0 and gone = 0.

Cost: two scans of the month and a hash join on the identity digest; only re-publications pay it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from partitions.listing import filesystem_for
from partitions.records import MaterializationRecord
from taxi_assets.io.duckdb import register_partition
from taxi_assets.model.daily_aggregation import COMPANIES
from taxi_assets.model.row_digest import row_hash_sql
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.model.source_columns import (
    SOURCE_COLUMNS,
    columns_of,
    format_source_columns,
    parse_source_columns,
)

PREFIX: Final = "fhvhv.republished."  # record extras of a re-publication's success record
EXTRA_COLUMNS: Final = "fhvhv.extra_columns"  # every trips success: the source's non-canonical columns


def is_republication(previous: MaterializationRecord | None, fingerprint: str) -> bool:
    """The month had a success built from other bytes: not a first build, a forced re-run or a code change."""
    return (
        previous is not None
        and previous.succeeded
        and bool(previous.source_fingerprint)
        and bool(fingerprint)
        and previous.source_fingerprint != fingerprint
    )


@dataclass(frozen=True)
class Audit:
    """A re-publication of one month against its previous committed version; all counts are ``trips`` rows."""

    from_version: int
    rows_before: int
    rows_after: int
    by_company: str  # "Uber +900, Lyft +600" or "no change"
    columns: str  # "source +cbd_congestion_fee, source airport_fee: double -> int64" or "same columns"
    trips_new: int  # trips (identity digest, with multiplicity) of the new version not in the old one
    trips_gone: int  # trips of the old version no longer there

    @property
    def row_delta(self) -> int:
        return self.rows_after - self.rows_before

    @property
    def new_share(self) -> float:
        """Share of the new version's trips that are new, in percent."""
        return 100.0 * self.trips_new / self.rows_after if self.rows_after else 0.0

    @property
    def gone_share(self) -> float:
        """Share of the old version's trips that are gone, in percent."""
        return 100.0 * self.trips_gone / self.rows_before if self.rows_before else 0.0

    def to_extra(self) -> dict[str, str]:
        """Record extras (small texts) for the new success record."""
        return {
            PREFIX + "from_version": str(self.from_version),
            PREFIX + "rows_before": str(self.rows_before),
            PREFIX + "rows_after": str(self.rows_after),
            PREFIX + "by_company": self.by_company,
            PREFIX + "columns": self.columns,
            PREFIX + "trips_new": str(self.trips_new),
            PREFIX + "trips_gone": str(self.trips_gone),
        }

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> Audit | None:
        """The audit a record kept (keys without ``partitions.extra.``), or None when it kept none."""
        try:
            return cls(
                from_version=int(extra[PREFIX + "from_version"]),
                rows_before=int(extra[PREFIX + "rows_before"]),
                rows_after=int(extra[PREFIX + "rows_after"]),
                by_company=str(extra[PREFIX + "by_company"]),
                columns=str(extra[PREFIX + "columns"]),
                trips_new=int(extra[PREFIX + "trips_new"]),
                trips_gone=int(extra[PREFIX + "trips_gone"]),
            )
        except (KeyError, ValueError):
            return None

    def summary(self) -> str:
        """``re-published: +1,500 rows (Uber +900, Lyft +600), columns source +x, trips new 7.5 % / gone 0 %``."""
        companies = "" if self.by_company == "no change" else f" ({self.by_company})"
        columns = "" if self.columns == "same columns" else f", columns {self.columns}"
        return (
            f"re-published: {self.row_delta:+,} rows{companies}{columns}, "
            f"trips new {_pct(self.new_share)} / gone {_pct(self.gone_share)}"
        )


def audit_month(
    trips_uri: str,
    month: str,
    *,
    previous: MaterializationRecord,
    old_version: int,
    new_files: Sequence[str],
    source_uri: str,
    con: duckdb.DuckDBPyConnection,
    storage_options: Mapping[str, str] | None = None,
) -> tuple[Audit, str]:
    """Compare ``month`` at table version ``old_version`` with the data files about to be committed.

    ``previous`` is the month's last success (its extras say which source columns it had); ``new_files`` are
    the full URIs of the month's new ``trips`` files (written, not yet committed). Returns the audit and the
    new source's columns as :data:`SOURCE_COLUMNS` text, so the new record keeps them for the next audit.
    """
    register_partition(
        con,
        "republication_old",
        trips_uri,
        schema=trips_schema(),
        column=PARTITION_COLUMN,
        key=month,
        version=old_version,
        storage_options=storage_options,
    )
    files = ", ".join(_literal(f) for f in new_files)
    con.execute(
        f'CREATE OR REPLACE VIEW republication_new AS SELECT *, {_literal(month)} AS "{PARTITION_COLUMN}" '
        f"FROM read_parquet([{files}], union_by_name = true)"
    )
    digests = digest_changes(con, "republication_old", "republication_new", month)
    source = source_columns(source_uri, storage_options)
    before = parse_source_columns(previous.extra.get(SOURCE_COLUMNS, ""))
    if not before:  # an older record: only its non-canonical columns are known, without their types
        extra_before = {c for c in previous.extra.get(EXTRA_COLUMNS, "").split(",") if c}
        known = {c: "" for c in extra_before}
        canonical = {f.name.lower() for f in trips_schema()}
        after = {c: "" for c in source if c.lower() not in canonical}
        changes = column_changes(known, after, label="source")
    else:
        changes = column_changes(before, source, label="source")
    audit = Audit(
        from_version=previous.version if previous.version is not None else old_version,
        rows_before=digests.old_rows,
        rows_after=digests.new_rows,
        by_company=company_deltas(con, "republication_old", "republication_new", month),
        columns=changes,
        trips_new=digests.new_trips,
        trips_gone=digests.gone_trips,
    )
    return audit, format_source_columns(source)


def company_deltas(con: duckdb.DuckDBPyConnection, old: str, new: str, month: str) -> str:
    """``Uber +900, Lyft +600``: the change in rows per company between two relations, for ``month``."""
    sql = f"""
        WITH a AS (SELECT hvfhs_license_num AS k, count(*) AS n FROM {old} WHERE month = ? GROUP BY k),
             b AS (SELECT hvfhs_license_num AS k, count(*) AS n FROM {new} WHERE month = ? GROUP BY k)
        SELECT coalesce(a.k, b.k) AS k, coalesce(b.n, 0) - coalesce(a.n, 0) AS d
        FROM a FULL OUTER JOIN b ON a.k = b.k ORDER BY k"""
    rows = con.execute(sql, [month, month]).fetchall()
    changed = [f"{COMPANIES.get(k, k)} {d:+,}" for k, d in rows if d]
    return ", ".join(changed) or "no change"


@dataclass(frozen=True)
class DigestChanges:
    new_trips: int
    gone_trips: int
    old_rows: int
    new_rows: int


def digest_changes(con: duckdb.DuckDBPyConnection, old: str, new: str, month: str) -> DigestChanges:
    """Trips (identity digest, as multisets) new in ``new`` and gone from ``old``, for ``month``."""
    digest = row_hash_sql()
    sql = f"""
        WITH a AS (SELECT {digest} AS h, count(*) AS n FROM {old} WHERE month = ? GROUP BY h),
             b AS (SELECT {digest} AS h, count(*) AS n FROM {new} WHERE month = ? GROUP BY h)
        SELECT coalesce(sum(greatest(coalesce(b.n, 0) - coalesce(a.n, 0), 0)), 0) AS new_trips,
               coalesce(sum(greatest(coalesce(a.n, 0) - coalesce(b.n, 0), 0)), 0) AS gone_trips,
               coalesce(sum(a.n), 0) AS old_rows, coalesce(sum(b.n), 0) AS new_rows
        FROM a FULL OUTER JOIN b ON a.h = b.h"""
    row = con.execute(sql, [month, month]).fetchone()
    new_trips, gone, old_rows, new_rows = (int(v) for v in row) if row else (0, 0, 0, 0)
    return DigestChanges(new_trips, gone, old_rows, new_rows)


def column_changes(before: Mapping[str, str], after: Mapping[str, str], *, label: str = "") -> str:
    """``+c``, ``-c`` and ``c: t1 -> t2`` (types compared only where both sides know them), or ``same columns``."""
    return ", ".join(column_change_parts(before, after, label=label)) or "same columns"


def column_change_parts(before: Mapping[str, str], after: Mapping[str, str], *, label: str = "") -> list[str]:
    tag = f"{label} " if label else ""
    parts = [f"{tag}+{c}" for c in after if c not in before] + [f"{tag}-{c}" for c in before if c not in after]
    parts += [
        f"{tag}{c}: {before[c]} -> {after[c]}"
        for c in after
        if c in before and before[c] and after[c] and before[c] != after[c]
    ]
    return parts


def source_columns(uri: str, storage_options: Mapping[str, str] | None = None) -> dict[str, str]:
    """The source file's columns and their Arrow types, from its footer (one small read)."""
    fs, path = filesystem_for(uri, storage_options)
    with fs.open_input_file(path) as handle:
        schema: pa.Schema = pq.read_schema(handle)
    return columns_of(schema)


def _pct(value: float) -> str:
    return f"{value:.1f} %" if value else "0 %"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
