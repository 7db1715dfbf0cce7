"""Builders for the partitions tests: small monthly tables, records, source files (no domain words)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from partitions.keys import month_bounds
from partitions.records import MaterializationRecord, PartitionHistory
from partitions.source import SourceFile

COLUMN = "month"
SCHEMA = pa.schema(
    [
        pa.field(COLUMN, pa.string()),
        pa.field("id", pa.int64()),
        pa.field("amount", pa.float64()),
        pa.field("at", pa.timestamp("us")),
    ]
)


def month_rows(key: str, n: int = 10, *, start: int = 0) -> pa.Table:
    """``n`` rows of partition ``key`` with ids ``start..start+n-1``, times inside the month."""
    first, _ = month_bounds(key)
    return pa.table(
        {
            COLUMN: [key] * n,
            "id": list(range(start, start + n)),
            "amount": [float(i) / 4 for i in range(start, start + n)],
            "at": [first + timedelta(hours=i) for i in range(n)],
        },
        schema=SCHEMA,
    )


def record(
    key: str,
    run_id: str = "run-1",
    *,
    status: str = "success",
    code: str = "code-1",
    fingerprint: str = "etag:a",
    rows: int = 10,
    version: int | None = None,
    **extra: object,
) -> MaterializationRecord:
    return MaterializationRecord(
        partition=key,
        status=status,  # type: ignore[arg-type]
        run_id=run_id,
        code_version=code,
        source_uri=f"mem://{key}",
        source_fingerprint=fingerprint,
        rows_written=rows if status == "success" else 0,
        version=version,
        **extra,  # type: ignore[arg-type]
    )


def source(key: str, fingerprint: str = "etag:a") -> SourceFile:
    return SourceFile(key, f"mem://{key}", 100, fingerprint, datetime(2024, 1, 1))


def history(
    success: MaterializationRecord | None = None, failure: MaterializationRecord | None = None
) -> PartitionHistory:
    return PartitionHistory(latest_success=success, latest_failure=failure)


def write_at(args: tuple[str, str, str, int, float, dict[str, str] | None]) -> int:
    """Process worker: wait until ``start`` (a shared wall-clock instant), then overwrite one partition."""
    import time

    from partitions.overwrite import overwrite_partition

    table_uri, key, run_id, n, start, options = args
    time.sleep(max(0.0, start - time.time()))
    data = month_rows(key, n)
    rec = record(key, run_id, rows=n)
    return overwrite_partition(table_uri, data, column=COLUMN, record=rec, storage_options=options, max_attempts=10)


def warm_up(_: int) -> None:
    """Process worker: import the engine and run one tiny write, so timed races measure commits only."""
    import tempfile

    from partitions.overwrite import overwrite_partition

    with tempfile.TemporaryDirectory() as tmp:
        overwrite_partition(tmp, month_rows("2019-01", 1), column=COLUMN, record=record("2019-01", rows=1))
