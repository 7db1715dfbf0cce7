"""The ``zones`` asset: the TLC taxi zone lookup as a small Delta table in the sink, so every engine can join it.

``trips`` keeps zone IDs only (``PULocationID``, ``DOLocationID``); the names and boroughs live in
:func:`taxi_assets.model.zones.zone_lookup`. DuckDB users of ``duckdb_connect`` get it as a view either way, but
Polars, Spark or a plain ``deltalake`` reader need a table next to ``trips``: ``<sink>/zones``, one file, not
partitioned, 265 rows.

Idempotent: the commit carries a digest of the lookup's content (``zones.digest``), and a sink whose newest
``zones`` commit has the same digest is left alone, so calling it on every run costs one small log read and
adds no commit. A new revision of the lookup (a changed digest) overwrites the table in one commit.
"""

from __future__ import annotations

import hashlib
from typing import Final

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from partitions.storage_errors import storage_errors_named
from taxi_assets.model.zones import zone_lookup
from taxi_assets.settings import Settings

TABLE: Final = "zones"
DIGEST_KEY: Final = "zones.digest"


def zones_uri(cfg: Settings) -> str:
    return f"{cfg.sink}/{TABLE}"


def zones_digest(table: pa.Table) -> str:
    """A content hash of the lookup (schema and rows, in order): equal lookups give equal digests."""
    digest = hashlib.sha256(str(table.schema).encode())
    for row in table.to_pylist():
        digest.update(repr(tuple(row.values())).encode())
    return f"sha256:{digest.hexdigest()}"


def materialize_zones(cfg: Settings) -> int | None:
    """Write the zone lookup to ``<sink>/zones`` unless it is already there; the new version, or None if unchanged.

    Safe to call on every run (and from several at once: a lost race leaves the winner's identical table).
    """
    uri = zones_uri(cfg)
    opts = cfg.storage_options(uri)
    lookup = zone_lookup()
    digest = zones_digest(lookup)
    with storage_errors_named(uri):
        if DeltaTable.is_deltatable(uri, storage_options=opts):
            table = DeltaTable(uri, storage_options=opts)
            newest = table.history(1)
            if newest and newest[0].get(DIGEST_KEY) == digest:
                return None
        properties = CommitProperties(custom_metadata={DIGEST_KEY: digest, "zones.rows": str(lookup.num_rows)})
        write_deltalake(
            uri,
            lookup,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=opts,
            commit_properties=properties,
        )
        return DeltaTable(uri, storage_options=opts).version()
