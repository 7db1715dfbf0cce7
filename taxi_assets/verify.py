"""DuckDB checks of a written month against the exact table versions the run committed.

DuckDB reads the committed version through the Delta log (``deltalake``'s Arrow dataset pinned to the
version), never by globbing parquet files, which would also count superseded files. It gets data, never keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb
from deltalake import DeltaTable

from taxi_assets.schema import PARTITION_COLUMN


@dataclass(frozen=True, slots=True)
class CheckResult:
    partition: str
    check: str
    passed: bool
    observed: str
    expected: str
    table_version: int
    run_id: str
    checked_at: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def count_month(
    table_uri: str, month: str, *, version: int, storage_options: Mapping[str, str] | None = None
) -> int:
    """Rows of one month in one committed table version, counted by DuckDB with partition pruning."""
    dt = DeltaTable(table_uri, version=version, storage_options=dict(storage_options or {}) or None)
    dataset = dt.to_pyarrow_dataset(partitions=[(PARTITION_COLUMN, "=", month)])
    con = duckdb.connect()
    try:
        con.register("month_rows", dataset)
        row = con.execute(f"SELECT count(*) FROM month_rows WHERE {PARTITION_COLUMN} = ?", [month]).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def verify_counts(
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
) -> list[CheckResult]:
    """Row count equals rows written, and source rows = clean + quarantined, on the committed versions."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    clean = count_month(trips_uri, month, version=trips_version, storage_options=storage_options)
    bad = count_month(quarantine_uri, month, version=quarantine_version, storage_options=storage_options)

    def result(check: str, observed: int, expected: int, version: int) -> CheckResult:
        return CheckResult(month, check, observed == expected, str(observed), str(expected), version, run_id, now)

    return [
        result("row_count", clean, rows_written, trips_version),
        result("quarantine_row_count", bad, rows_quarantined, quarantine_version),
        result("rows_conserved", clean + bad, rows_source, trips_version),
    ]
