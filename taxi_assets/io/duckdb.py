"""The one DuckDB adapter: a connection with the extensions loaded from their wheels, S3 keys as a secret, Delta
tables as views.

Extensions come from the PyPI packages ``duckdb_extension_httpfs`` / ``duckdb_extension_delta`` by file path
(autoload and autoinstall are off: no download at run time). Either may be missing or broken; a connection
without them still works through the Arrow path (``deltalake`` opens the table, DuckDB scans the dataset), so a
missing extension costs one warning, not the run. Keys reach DuckDB only as secret parameters, never as SQL text.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from partitions import delta_storage_options, open_table
from taxi_assets.errors import QueryFailed

Access = Literal["delta_scan", "arrow", "empty"]


_SECRET_KEYS: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


_CONFIG: Final = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}


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
        exists = DeltaTable.is_deltatable(table_uri, storage_options=delta_storage_options(table_uri, opts))
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
        dataset = open_table(table_uri, version=version, storage_options=opts).to_pyarrow_dataset()
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


def _literal(text: str) -> str:
    """A SQL string literal (for paths in view definitions, which cannot take parameters; never for keys)."""
    return "'" + text.replace("'", "''") + "'"


def _one_line(exc: BaseException) -> str:
    """The first line of an error (DuckDB adds the query text with a caret below it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
