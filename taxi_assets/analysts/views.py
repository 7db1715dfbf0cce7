"""DuckDB over the sink: one read-only connection with a view per table, for analysts and the report.

Access choice, measured here (duckdb 1.5.5 with duckdb-extension-delta 1.5.5, deltalake 1.6.6, on a local
directory and on the moto S3 server): DuckDB's own ``delta_scan`` reads both offline through the Delta log.
It prunes on ``month`` from the log's partition values (a query for one month never opens another month's
files, even when those files are gone), re-reads the log at each query (a view sees later commits), and reads
a pinned version (``version => n``), which time travel and the checks need. deltalake's Arrow dataset prunes
too, but freezes the snapshot when it is registered and keeps the Python process in the read path. So
``delta_scan`` first, and the Arrow dataset when the extension does not load or ``delta_scan`` cannot bind the
table (credentials only deltalake can find: a profile file, instance metadata, no keys given at all).

Confined: once the views exist, the connection may open files only under the sink's table directories
(DuckDB's ``allowed_directories``, ``enable_external_access = false``), and ``lock_configuration`` keeps a query
from undoing that. Settings are applied after the delta and httpfs extensions are loaded (loading needs
external access). :func:`query` (``taxi-assets sql``, the report) also runs only reading statements.

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
from deltalake import DeltaTable

from partitions.delta_log import read_state
from partitions.records import MaterializationRecord, PartitionHistory
from taxi_assets.analysts.errors import NoTablesInSink, QueryRefused, VersionNotFound
from taxi_assets.checks.store import checks_schema
from taxi_assets.errors import QueryFailed
from taxi_assets.io.duckdb import _one_line, open_connection, redact, register_table
from taxi_assets.io.duckdb_values import register_rows
from taxi_assets.model.daily_aggregation import summary_schema
from taxi_assets.model.schema import quarantine_schema, trips_schema
from taxi_assets.model.zones import ZONE_SCHEMA, zone_rows
from taxi_assets.settings import Settings

DELTA_TABLES: Final = ("trips", "quarantine", "daily_summary", "checks")
ZONES: Final = "zones"
VIEWS: Final = (*DELTA_TABLES, "partitions", ZONES)
VIEWS_REMEDY: Final = f"the views are {', '.join(VIEWS)} (docs/analysts.md)"
# Statements `query` runs: SELECT covers WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE and table PRAGMAs.
READING_STATEMENTS: Final = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def partitions_schema() -> pa.Schema:
    """The ``partitions`` view: what the Delta logs record per month (see :func:`partition_rows`)."""
    text, count = pa.string(), pa.int64()
    names = ("partition", "status", "rows", "rows_quarantined", "rows_source", "run_id", "code_version")
    types = (text, text, count, count, count, text, text)
    more = ("source_fingerprint", "source_uri", "table_version", "quarantine_version", "finished_at", "error")
    more_types = (text, text, count, count, pa.timestamp("us", tz="UTC"), text)
    return pa.schema(list(zip((*names, *more), (*types, *more_types), strict=True)))


def delta_schemas() -> dict[str, pa.Schema]:
    return {
        "trips": trips_schema(),
        "quarantine": quarantine_schema(),
        "daily_summary": summary_schema(),
        "checks": checks_schema(),
    }


def partition_rows(
    trips_uri: str,
    quarantine_uri: str,
    *,
    storage_options: Mapping[str, str] | None = None,
    trips_version: int | None = None,
    quarantine_version: int | None = None,
) -> list[dict[str, Any]]:
    """One row per month from the Delta logs' materialization records (never from the data files).

    ``status`` is ``success`` when the newest trips commit succeeded and the quarantine table holds the same
    run's commit, ``incomplete`` when it does not (a run died between its two commits), ``rejected`` when the
    newest attempt's source bytes were refused, else ``failed``. Counts and versions are those of the newest
    success, so a failed retry never hides the data in place. The versions, when given, are the newest
    commits folded in (time travel): the logs as they were then.
    """
    trips = _records(trips_uri, trips_version, storage_options)
    quarantine = _records(quarantine_uri, quarantine_version, storage_options)
    return [_partition_row(key, trips.get(key), quarantine.get(key)) for key in sorted(trips.keys() | quarantine)]


def _records(uri: str, version: int | None, opts: Mapping[str, str] | None) -> dict[str, PartitionHistory]:
    if version is not None and version < 0:  # the table did not exist yet at that time
        return {}
    return read_state(uri, up_to=version, storage_options=opts).histories


def _partition_row(key: str, trips: PartitionHistory | None, quarantine: PartitionHistory | None) -> dict[str, Any]:
    ok = trips.latest_success if trips else None
    failed = trips.latest_failure if trips else None
    q_ok = quarantine.latest_success if quarantine else None
    same_run = ok is not None and q_ok is not None and q_ok.run_id == ok.run_id
    if failed:
        status = "rejected" if failed.rejected else "failed"
    else:
        status = "success" if same_run else "incomplete"
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


def sink_tables(sink: str, storage_options: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Which of the sink's tables (the Delta tables and ``zones``) exist; raises :class:`NoTablesInSink` if none.

    ``zones`` alone does not count: it is written beside the others, never instead of them.
    """
    opts = dict(storage_options or {}) or None
    try:
        present = {name: DeltaTable.is_deltatable(f"{sink}/{name}", storage_options=opts) for name in VIEWS}
    except Exception as exc:  # deltalake and object_store errors have no common root; the message says why
        raise QueryFailed(sink, redact(_one_line(exc), opts), "check the sink URI and its credentials") from None
    present.pop("partitions")
    if not any(present[name] for name in DELTA_TABLES):
        raise NoTablesInSink(sink, DELTA_TABLES)
    return present


def pinned_versions(
    sink: str, version: int, present: Mapping[str, bool], storage_options: Mapping[str, str] | None = None
) -> dict[str, int]:
    """The version of each Delta table as of ``trips`` version ``version``: -1 for a table not created by then.

    ``trips`` is pinned to ``version``; every other table to its newest commit at or before that commit's
    time: ``quarantine`` at or before that commit (a month's quarantine commit precedes its trips commit),
    ``daily_summary`` and ``checks`` before the next ``trips`` commit (they follow the trips commit they describe).
    """
    opts = dict(storage_options or {}) or None
    if not present.get("trips"):
        raise VersionNotFound(sink, version, -1)
    try:
        commits = {c["version"]: c["timestamp"] for c in DeltaTable(f"{sink}/trips", storage_options=opts).history()}
    except Exception as exc:
        raise QueryFailed(sink, redact(_one_line(exc), opts), "check the sink URI and its credentials") from None
    if version not in commits:
        raise VersionNotFound(sink, version, max(commits))
    as_of, until = commits[version], commits.get(version + 1)
    pins = {"trips": version}
    for name in DELTA_TABLES[1:]:
        pins[name] = -1
        if present.get(name):
            history = DeltaTable(f"{sink}/{name}", storage_options=opts).history()
            if name == "quarantine":  # written just before its trips commit
                kept = [c["version"] for c in history if c["timestamp"] <= as_of]
            else:  # written just after it: everything before the next trips commit
                kept = [c["version"] for c in history if until is None or c["timestamp"] < until]
            pins[name] = max(kept, default=-1)
    return pins


def duckdb_connect(
    sink: str,
    *,
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
    confined: bool = True,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views trips, quarantine, daily_summary, checks, partitions and zones.

    The Delta views read through the log with partition pruning on ``month`` and see later commits; the
    ``partitions`` view is the logs' state when connecting. ``version`` pins ``trips`` to that table version
    and the other tables to their state at that commit's time (time travel; the views then stay there).
    ``confined`` (default) lets the connection open files only under the sink's tables, for good: pass
    ``False`` to join files of your own. For ``s3://`` sinks without ``storage_options`` the standard
    ``AWS_*`` variables are used. Raises :class:`NoTablesInSink` when the sink holds none of the tables
    (a typo would otherwise give empty views). Close the connection when done.
    """
    root, opts = sink_options(sink, storage_options)
    present = sink_tables(root, opts)
    pins = pinned_versions(root, version, present, opts) if version is not None else {}
    con = open_connection(storage_options=opts, scope=root)
    try:
        for name, schema in delta_schemas().items():
            if pins.get(name, 0) < 0:  # not created yet at the pinned time
                register_rows(con, name, schema, [])
            else:
                register_table(con, name, f"{root}/{name}", schema=schema, version=pins.get(name), storage_options=opts)
        records = partition_rows(
            f"{root}/trips",
            f"{root}/quarantine",
            storage_options=opts,
            trips_version=pins.get("trips"),
            quarantine_version=pins.get("quarantine"),
        )
        register_rows(con, "partitions", partitions_schema(), records)
        if present[ZONES]:
            register_table(con, ZONES, f"{root}/{ZONES}", schema=ZONE_SCHEMA, storage_options=opts)
        else:
            register_rows(con, ZONES, ZONE_SCHEMA, zone_rows())
        if confined:
            confine(con, [f"{root}/{name}" for name, there in present.items() if there])
    except BaseException:
        con.close()
        raise
    return con


def confine(con: duckdb.DuckDBPyConnection, directories: Sequence[str]) -> None:
    """From now on ``con`` opens files only under ``directories``, and no statement can change that."""
    allowed = ", ".join(_literal(d.rstrip("/") + "/") for d in directories)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def query(
    sink: str,
    sql: str,
    params: Sequence[object] | None = None,
    *,
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pa.Table:
    """Run one reading query against :func:`duckdb_connect`'s views (at ``version`` when given).

    Statements other than queries (``COPY``, ``CREATE``, ``SET``, ``ATTACH``, ...) and reads of files outside
    the sink's tables raise :class:`QueryRefused` without running; other DuckDB errors :class:`QueryFailed`.
    """
    root, opts = sink_options(sink, storage_options)
    con = duckdb_connect(root, version=version, storage_options=opts)
    try:
        refuse_writes(con, root, sql)
        return con.execute(sql, params or []).to_arrow_table()
    except duckdb.PermissionException as exc:
        raise QueryRefused(root, redact(_one_line(exc), opts), "only the sink's tables can be read") from None
    except duckdb.Error as exc:
        raise QueryFailed(root, redact(_one_line(exc), opts), VIEWS_REMEDY) from None
    finally:
        con.close()


def refuse_writes(con: duckdb.DuckDBPyConnection, sink: str, sql: str) -> None:
    """Raise :class:`QueryRefused` unless every statement of ``sql`` only reads."""
    for statement in con.extract_statements(sql):
        if statement.type not in READING_STATEMENTS:
            kind = statement.type.name
            raise QueryRefused(sink, f"{kind} statement: {_one_line_sql(statement.query)}")


def sink_options(sink: str, storage_options: Mapping[str, str] | None) -> tuple[str, dict[str, str] | None]:
    """The normalised sink root and its options: those given, else the ``AWS_*`` variables for ``s3://``."""
    cfg = Settings.resolve(sink=sink)
    if storage_options is not None:
        return cfg.sink, dict(storage_options) if cfg.sink.startswith("s3://") else None
    return cfg.sink, cfg.storage_options(cfg.sink)


def _one_line_sql(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _literal(text: str) -> str:
    """A SQL string literal (paths in settings cannot be parameters; never used for keys)."""
    return "'" + text.replace("'", "''") + "'"


def _timestamp(text: str) -> datetime | None:
    """The record's ISO time as an aware datetime (UTC when the text has no offset); None when unreadable."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
