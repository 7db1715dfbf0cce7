"""DuckDB over the sink: one connection with a view per table, for analysts, the checks and the report.

Access choice, measured here (duckdb 1.5.5 with duckdb-extension-delta 1.5.5, deltalake 1.6.6, on a local
directory and on the moto S3 server): DuckDB's own ``delta_scan`` reads both offline through the Delta log.
It prunes on ``month`` from the log's partition values (a query for one month never opens another month's
files, even when those files are gone), re-reads the log at each query (a view sees later commits), and reads
a pinned version (``version => n``), which the checks need. deltalake's Arrow dataset prunes too, but freezes
the snapshot when it is registered and keeps the Python process in the read path. So ``delta_scan`` first,
and the Arrow dataset when the extension does not load or ``delta_scan`` cannot bind the table (credentials
only deltalake can find: a profile file, instance metadata, no keys given at all).

Keys: the S3 secret is created with prepared parameters, so no key is ever part of SQL text, and errors
raised from here carry secret values replaced by ``***``. Extensions load from the installed wheels by path:
DuckDB cannot download them here, and never tries (autoinstall is off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import duckdb
import pyarrow as pa

from partitions.delta_log import read_records
from partitions.records import MaterializationRecord, PartitionHistory
from taxi_assets.checks.store import checks_schema
from taxi_assets.errors import QueryFailed
from taxi_assets.io.duckdb import _one_line, open_connection, redact, register_arrow, register_table
from taxi_assets.model.schema import quarantine_schema, trips_schema
from taxi_assets.model.zones import zone_lookup
from taxi_assets.settings import Settings

DELTA_TABLES: Final = ("trips", "quarantine", "checks")
VIEWS: Final = (*DELTA_TABLES, "partitions", "zones")


def partitions_schema() -> pa.Schema:
    """The ``partitions`` view: what the Delta logs record per month (see :func:`partitions_table`)."""
    text, count = pa.string(), pa.int64()
    names = ("partition", "status", "rows", "rows_quarantined", "rows_source", "run_id", "code_version")
    types = (text, text, count, count, count, text, text)
    more = ("source_fingerprint", "source_uri", "table_version", "quarantine_version", "finished_at", "error")
    more_types = (text, text, count, count, pa.timestamp("us", tz="UTC"), text)
    return pa.schema(list(zip((*names, *more), (*types, *more_types), strict=True)))


def delta_schemas() -> dict[str, pa.Schema]:
    return {"trips": trips_schema(), "quarantine": quarantine_schema(), "checks": checks_schema()}


def partitions_table(
    trips_uri: str, quarantine_uri: str, *, storage_options: Mapping[str, str] | None = None
) -> pa.Table:
    """One row per month from the Delta logs' materialization records (never from the data files).

    ``status`` is ``success`` when the newest trips commit succeeded and the quarantine table holds the same
    run's commit, ``incomplete`` when it does not (a run died between its two commits), else ``failed``.
    Counts and versions are those of the newest success, so a failed retry never hides the data in place.
    """
    trips = read_records(trips_uri, storage_options=storage_options)
    quarantine = read_records(quarantine_uri, storage_options=storage_options)
    rows = [_partition_row(key, trips.get(key), quarantine.get(key)) for key in sorted(trips.keys() | quarantine)]
    return pa.Table.from_pylist(rows, schema=partitions_schema())


def _partition_row(key: str, trips: PartitionHistory | None, quarantine: PartitionHistory | None) -> dict[str, Any]:
    ok = trips.latest_success if trips else None
    failed = trips.latest_failure if trips else None
    q_ok = quarantine.latest_success if quarantine else None
    same_run = ok is not None and q_ok is not None and q_ok.run_id == ok.run_id
    status = "failed" if failed else ("success" if same_run else "incomplete")
    shown: MaterializationRecord | None = ok or failed
    return {
        "partition": key,
        "status": status,
        "rows": ok.rows_written if ok else None,
        "rows_quarantined": ok.rows_quarantined if ok else None,
        "rows_source": ok.rows_source if ok else None,
        "run_id": shown.run_id if shown else None,
        "code_version": shown.code_version if shown else None,
        "source_fingerprint": shown.source_fingerprint if shown else None,
        "source_uri": shown.source_uri if shown else None,
        "table_version": ok.version if ok else None,
        "quarantine_version": q_ok.version if same_run and q_ok else None,
        "finished_at": _timestamp(shown.finished_at) if shown else None,
        "error": failed.error if failed else None,
    }


def duckdb_connect(sink: str, *, storage_options: Mapping[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``trips``, ``quarantine``, ``checks``, ``partitions`` and ``zones``.

    The Delta views read through the log with partition pruning on ``month`` and see later commits; the
    ``partitions`` view is the logs' state when connecting. For ``s3://`` sinks without ``storage_options``
    the standard ``AWS_*`` variables are used. Close the connection when done.
    """
    root, opts = sink_options(sink, storage_options)
    con = open_connection(storage_options=opts, scope=root)
    try:
        for name, schema in delta_schemas().items():
            register_table(con, name, f"{root}/{name}", schema=schema, storage_options=opts)
        records = partitions_table(f"{root}/trips", f"{root}/quarantine", storage_options=opts)
        register_arrow(con, "partitions", records)
        register_arrow(con, "zones", zone_lookup())
    except BaseException:
        con.close()
        raise
    return con


def query(
    sink: str, sql: str, params: Sequence[object] | None = None, *, storage_options: Mapping[str, str] | None = None
) -> pa.Table:
    """Run one query against :func:`duckdb_connect`'s views; DuckDB errors become :class:`QueryFailed`."""
    root, opts = sink_options(sink, storage_options)
    con = duckdb_connect(root, storage_options=opts)
    try:
        return con.execute(sql, params or []).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryFailed(root, redact(_one_line(exc), opts)) from None
    finally:
        con.close()


def sink_options(sink: str, storage_options: Mapping[str, str] | None) -> tuple[str, dict[str, str] | None]:
    """The normalised sink root and its options: those given, else the ``AWS_*`` variables for ``s3://``."""
    cfg = Settings.resolve(sink=sink)
    if storage_options is not None:
        return cfg.sink, dict(storage_options) if cfg.sink.startswith("s3://") else None
    return cfg.sink, cfg.storage_options(cfg.sink)


def _timestamp(text: str) -> int | None:
    """Microseconds since the epoch, UTC (Arrow builds a timestamp column from ints without importing pandas)."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1_000_000)
