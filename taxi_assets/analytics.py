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
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from partitions.delta_log import read_records
from partitions.records import MaterializationRecord, PartitionHistory
from taxi_assets.errors import QueryFailed
from taxi_assets.schema import quarantine_schema, trips_schema
from taxi_assets.settings import Settings
from taxi_assets.synth.zones import zone_lookup

Access = Literal["delta_scan", "arrow", "empty"]
DELTA_TABLES: Final = ("trips", "quarantine", "checks")
VIEWS: Final = (*DELTA_TABLES, "partitions", "zones")
_SECRET_KEYS: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_CONFIG: Final = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


def checks_schema() -> pa.Schema:
    """The append-only ``checks`` table: one row per check of one committed partition version."""
    return pa.schema(
        [
            pa.field("partition", pa.string(), nullable=False),
            pa.field("check", pa.string(), nullable=False),
            pa.field("passed", pa.bool_(), nullable=False),
            pa.field("observed", pa.string()),
            pa.field("expected", pa.string()),
            pa.field("table_version", pa.int64()),
            pa.field("run_id", pa.string()),
            pa.field("checked_at", pa.timestamp("us", tz="UTC")),
        ]
    )


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


def redact(text: str, storage_options: Mapping[str, str] | None) -> str:
    """``text`` with every secret value of ``storage_options`` replaced by ``***``."""
    for key, value in (storage_options or {}).items():
        if key.upper() in _SECRET_KEYS and value:
            text = text.replace(str(value), "***")
    return text


def open_connection(
    *, storage_options: Mapping[str, str] | None = None, scope: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with httpfs and delta loaded from the wheels and, given keys, an S3 secret."""
    con = duckdb.connect(config=dict(_CONFIG))
    for name in ("httpfs", "delta"):
        try:
            con.execute(f"LOAD {_literal(str(extension_path(name)))}")
        except duckdb.Error:  # missing or incompatible wheel: the Arrow dataset path still works
            continue
    if storage_options:
        add_s3_secret(con, storage_options, scope=scope)
    return con


def add_s3_secret(
    con: duckdb.DuckDBPyConnection, storage_options: Mapping[str, str], *, scope: str | None = None
) -> bool:
    """Give DuckDB the S3 keys of ``storage_options`` (delta-rs ``AWS_*`` names) as a temporary secret.

    Returns False, creating nothing, without keys (anonymous or default-chain access: the Arrow dataset
    path, where deltalake finds credentials itself, serves those) or without httpfs.
    """
    opts = {k.upper(): str(v) for k, v in storage_options.items()}
    if not (opts.get("AWS_ACCESS_KEY_ID") and opts.get("AWS_SECRET_ACCESS_KEY")) or not _loaded(con, "httpfs"):
        return False
    fields = ["TYPE s3", "KEY_ID ?", "SECRET ?"]
    params: list[object] = [opts["AWS_ACCESS_KEY_ID"], opts["AWS_SECRET_ACCESS_KEY"]]
    optional = (("AWS_SESSION_TOKEN", "SESSION_TOKEN"), ("AWS_REGION", "REGION"), ("AWS_DEFAULT_REGION", "REGION"))
    for option, name in optional:
        if opts.get(option) and f"{name} ?" not in fields:
            fields.append(f"{name} ?")
            params.append(opts[option])
    if endpoint := opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT"):
        scheme, _, host = endpoint.rpartition("://")
        fields += ["ENDPOINT ?", "URL_STYLE 'path'", "USE_SSL ?"]
        params += [host.rstrip("/"), scheme != "http"]
    if scope:
        fields.append("SCOPE ?")
        params.append(scope)
    count = con.execute("SELECT count(*) FROM duckdb_secrets()").fetchone()
    name = f"taxi_assets_s3_{count[0] if count else 0}"
    try:
        con.execute(f"CREATE OR REPLACE SECRET {name} ({', '.join(fields)})", params)
    except duckdb.Error as exc:
        detail = redact(_one_line(exc), opts)
        raise QueryFailed(scope or "s3", detail, "check AWS_ENDPOINT_URL and AWS_REGION") from None
    return True


def register_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table_uri: str,
    *,
    schema: pa.Schema,
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
    access: Literal["auto", "arrow"] = "auto",
) -> Access:
    """Create view ``name`` over the Delta table at ``table_uri`` (at ``version`` when given); say how.

    A missing table becomes an empty view with ``schema``'s columns, so queries run before the first write.
    """
    opts = dict(storage_options or {}) or None
    try:
        exists = DeltaTable.is_deltatable(table_uri, storage_options=opts)
        if not exists:
            register_arrow(con, name, schema.empty_table())
            return "empty"
        keys_given = not table_uri.startswith("s3://") or _has_s3_secret(con)  # else: deltalake's AWS chain
        if access == "auto" and keys_given and _loaded(con, "delta"):
            pinned = f", version => {int(version)}" if version is not None else ""
            try:
                con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan({_literal(table_uri)}{pinned})")
                con.execute(f"SELECT * FROM {name} LIMIT 0")
                return "delta_scan"
            except duckdb.Error:
                con.execute(f"DROP VIEW IF EXISTS {name}")
        dataset = DeltaTable(table_uri, version=version, storage_options=opts).to_pyarrow_dataset()
    except QueryFailed:
        raise
    except Exception as exc:  # deltalake and object_store errors have no common root; the message says why
        raise QueryFailed(table_uri, redact(_one_line(exc), opts), "check the sink URI and its credentials") from None
    register_arrow(con, name, dataset)
    return "arrow"


def register_arrow(con: duckdb.DuckDBPyConnection, name: str, data: Any) -> None:
    """View ``name`` over an Arrow table or dataset (registered as ``_<name>_arrow``)."""
    con.register(f"_{name}_arrow", data)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_arrow")


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


def extension_path(name: str) -> Path:
    """Where the wheel ``duckdb-extension-<name>`` keeps the extension for this DuckDB version."""
    return Path(str(files(f"duckdb_extension_{name}") / "extensions" / f"v{duckdb.__version__}")) / (
        f"{name}.duckdb_extension"
    )


def _loaded(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [name]).fetchone()
    return bool(row and row[0])


def _has_s3_secret(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_secrets() WHERE type = 's3'").fetchone()
    return bool(row and row[0])


def _literal(text: str) -> str:
    """A SQL string literal (for paths in view definitions, which cannot take parameters; never for keys)."""
    return "'" + text.replace("'", "''") + "'"


def _one_line(exc: BaseException) -> str:
    """The first line of an error (DuckDB adds the query text with a caret below it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
