"""The one DuckDB adapter: a connection with the extensions loaded from their wheels, S3 keys as a secret, Delta
tables as views.

Extensions come from the PyPI packages ``duckdb_extension_httpfs`` / ``duckdb_extension_delta`` by file path
(autoload and autoinstall are off: no download at run time). Either may be missing or broken; a connection
without them still works through the Arrow path (``deltalake`` opens the table, DuckDB scans the dataset), so a
missing extension costs one warning, not the run. Keys reach DuckDB only as secret parameters, never as SQL text.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from partitions import delta_storage_options, is_local, open_table
from taxi_assets.errors import QueryFailed
from taxi_assets.io.duckdb_values import register_rows
from taxi_assets.io.threads import current_thread_share

Access = Literal["delta_scan", "arrow", "empty"]


_SECRET_KEYS: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


_CONFIG: Final = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
EXTENSIONS: Final = ("httpfs", "delta")
_WARNED: set[str] = set()  # extensions already warned about in this process
# Delta reader features that do not change what a partition's data files hold (register_partition).
_PLAIN_READER_FEATURES: Final = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})


class ExtensionUnavailable(UserWarning):
    """A DuckDB extension could not be loaded from its wheel; queries take the (slower) Arrow path instead."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, detail)
        self.name, self.detail = name, detail

    def __str__(self) -> str:
        return (
            f"DuckDB extension {self.name} not loaded ({self.detail}); Delta tables are read through deltalake's "
            f"Arrow dataset instead. To restore it: pip install 'duckdb-extension-{self.name}=={duckdb.__version__}'"
        )


def redact(text: str, storage_options: Mapping[str, str] | None) -> str:
    """``text`` with every secret value of ``storage_options`` replaced by ``***``."""
    for key, value in (storage_options or {}).items():
        if key.upper() in _SECRET_KEYS and value:
            text = text.replace(str(value), "***")
    return text


def open_connection(
    *,
    storage_options: Mapping[str, str] | None = None,
    scope: str | None = None,
    threads: int | None = None,
    extensions: Sequence[str] = EXTENSIONS,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with httpfs and delta loaded from the wheels and, given keys, an S3 secret.

    ``threads`` caps DuckDB's worker threads; by default the share of a month task when this process applied
    one (:mod:`taxi_assets.io.threads`), else DuckDB's own default, one per core of the host (which would
    oversubscribe a host running several Dask workers).
    A missing or broken extension package costs one :class:`ExtensionUnavailable` warning per process and the
    connection still opens: views fall back to the Arrow dataset path. ``extensions`` limits the loads to those
    the caller needs: each costs its file's verification on every new connection (delta ~0.3 s of CPU, httpfs
    ~0.09 s; ``benchmarks/fixed_costs.py``).
    """
    config: dict[str, str | bool | int | float | list[str]] = dict(_CONFIG)
    share = current_thread_share()
    if threads is None and share is not None:
        threads = share.duckdb
    if threads is not None:
        config["threads"] = max(1, int(threads))
    con = duckdb.connect(config=config)
    for name in extensions:
        load_extension(con, name)
    if storage_options:
        add_s3_secret(con, storage_options, scope=scope)
    return con


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Load extension ``name`` from its wheel into ``con``; False, with one warning per process, if it cannot be.

    Why not raise: both extensions only speed things up or add a path (S3 scans in DuckDB, ``delta_scan``);
    :func:`register_table` reads the same table through deltalake's Arrow dataset without them.
    """
    try:
        path = extension_path(name)
    except Exception as exc:  # the wheel is missing (ImportError) or its package is broken in any other way
        _warn_unavailable(name, exc)
        return False
    try:
        con.execute(f"LOAD {_literal(str(path))}")
    except duckdb.Error as exc:  # no file for this DuckDB version, a truncated or incompatible file
        _warn_unavailable(name, exc)
        return False
    return True


def _warn_unavailable(name: str, exc: BaseException) -> None:
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(ExtensionUnavailable(name, f"{type(exc).__name__}: {_one_line(exc)}"), stacklevel=3)


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
        exists = DeltaTable.is_deltatable(table_uri, storage_options=delta_storage_options(table_uri, opts))
        if not exists:
            register_rows(con, name, schema, [])  # typed and empty, without Arrow (pandas)
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
        dataset = open_table(table_uri, version=version, storage_options=opts).to_pyarrow_dataset()
    except QueryFailed:
        raise
    except Exception as exc:  # deltalake and object_store errors have no common root; the message says why
        raise QueryFailed(table_uri, redact(_one_line(exc), opts), "check the sink URI and its credentials") from None
    register_arrow(con, name, dataset)
    return "arrow"


def register_partition(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table_uri: str,
    *,
    schema: pa.Schema,
    column: str,
    key: str,
    version: int,
    storage_options: Mapping[str, str] | None = None,
) -> Access | Literal["files"]:
    """View ``name`` over partition ``column = key`` of the Delta table at ``version``: its data files as the
    log lists them, read by ``read_parquet``, the partition value added as a constant column.

    Why not ``delta_scan``: loading the delta extension verifies an 82 MB file on every new connection (0.3 s of
    CPU per month task) and its scan of one partition costs more than reading the partition's files. It is the
    same read for the tables this pipeline writes (plain Parquet files, no deletion vectors, no column mapping);
    a table using either, a remote table without httpfs, or files without every column of ``schema`` fall back
    to :func:`register_table`.
    """
    opts = dict(storage_options or {}) or None
    try:
        table = open_table(table_uri, version=version, storage_options=opts, partition=key)
        protocol = table.protocol()
        plain = protocol.min_reader_version == 1 or (
            protocol.min_reader_version == 3 and set(protocol.reader_features or ()) <= _PLAIN_READER_FEATURES
        )
        files = table.file_uris(file_pruning_predicate=[(column, "=", key)]) if plain else []
    except Exception as exc:  # deltalake and object_store errors have no common root; the message says why
        raise QueryFailed(table_uri, redact(_one_line(exc), opts), "check the sink URI and its credentials") from None
    remote = not is_local(table_uri)
    if not plain or (remote and not _loaded(con, "httpfs")):
        return register_table(con, name, table_uri, schema=schema, version=version, storage_options=storage_options)
    if not files:
        register_rows(con, name, schema, [])  # typed and empty, without Arrow (pandas)
        return "empty"
    columns = [f.name for f in schema if f.name != column]
    found = {
        row[0]
        for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_list(files)}, union_by_name = true)").fetchall()
    }
    if not set(columns) <= found:  # a file from another writer: let the Delta reader fill the gaps
        return register_table(con, name, table_uri, schema=schema, version=version, storage_options=storage_options)
    select = ", ".join(f'"{c}"' for c in columns)
    con.execute(
        f'CREATE OR REPLACE VIEW {name} AS SELECT {select}, {_literal(key)} AS "{column}" '
        f"FROM read_parquet({_list(files)}, union_by_name = true)"
    )
    return "files"


def register_arrow(con: duckdb.DuckDBPyConnection, name: str, data: Any) -> None:
    """View ``name`` over an Arrow table or dataset (registered as ``_<name>_arrow``)."""
    con.register(f"_{name}_arrow", data)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_arrow")


def extension_path(name: str) -> Path:
    """Where the wheel ``duckdb-extension-<name>`` keeps the extension for this DuckDB version."""
    return Path(str(files(f"duckdb_extension_{name}") / "extensions" / f"v{duckdb.__version__}")) / (
        f"{name}.duckdb_extension"
    )


def _loaded(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    # A literal, not a parameter: binding a parameter makes DuckDB import pandas (0.3-1 s for `taxi-assets sql`).
    row = con.execute(f"SELECT loaded FROM duckdb_extensions() WHERE extension_name = {_literal(name)}").fetchone()
    return bool(row and row[0])


def _has_s3_secret(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_secrets() WHERE type = 's3'").fetchone()
    return bool(row and row[0])


def _list(items: Sequence[str]) -> str:
    """A SQL list of string literals."""
    return "[" + ", ".join(_literal(item) for item in items) + "]"


def _literal(text: str) -> str:
    """A SQL string literal (for paths in view definitions, which cannot take parameters; never for keys)."""
    return "'" + text.replace("'", "''") + "'"


def _one_line(exc: BaseException) -> str:
    """The first line of an error (DuckDB adds the query text with a caret below it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
