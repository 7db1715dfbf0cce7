"""Table upkeep that keeps the engine's guarantees: checkpoint, compact, vacuum.

``checkpoint`` writes the Delta checkpoint *and* the state checkpoint at the same version, and only then (if
asked) lets Delta delete expired commit files, so the materialization records always survive log cleanup.
``compact`` and ``vacuum`` are delta-rs operations with the engine's post-commit policy (no log cleanup).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from partitions.delta_log import prune_state_checkpoints, write_state_checkpoint
from partitions.overwrite import POST_COMMIT
from partitions.storage_errors import open_table


def checkpoint(
    table_uri: str,
    *,
    cleanup_logs: bool = False,
    keep_states: int = 10,
    storage_options: Mapping[str, str] | None = None,
) -> int:
    """Write a Delta checkpoint and a state checkpoint at the table's current version; return that version.

    Older state checkpoints beyond the newest ``keep_states`` are deleted. With ``cleanup_logs``, expired
    commit files (older than ``delta.logRetentionDuration``) are deleted afterwards; the state checkpoint
    just written holds their records.
    """
    options = dict(storage_options or {})
    table = open_table(table_uri, storage_options=options)
    table.create_checkpoint()
    version = table.version()
    write_state_checkpoint(table_uri, version=version, storage_options=options)
    prune_state_checkpoints(table_uri, keep=keep_states, storage_options=options)
    if cleanup_logs:
        table.cleanup_metadata()
    return version


def compact(
    table_uri: str,
    *,
    partition: str | None = None,
    column: str | None = None,
    target_size: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Rewrite small files into larger ones (one partition, or all); rows and records are unchanged.

    ``column`` defaults to the table's single partition column. Returns delta-rs's metrics.
    """
    table = open_table(table_uri, storage_options=storage_options)
    filters = None
    if partition is not None:
        columns = [column] if column else list(table.metadata().partition_columns)
        if len(columns) != 1:
            raise ValueError(f"{table_uri}: partitioned by {columns}; pass column= to compact one partition")
        filters = [(columns[0], "=", partition)]
    metrics: dict[str, Any] = table.optimize.compact(
        partition_filters=filters, target_size=target_size, post_commithook_properties=POST_COMMIT
    )
    return metrics


def vacuum(
    table_uri: str,
    *,
    retention_hours: int = 168,
    dry_run: bool = True,
    enforce_retention_duration: bool = True,
    full: bool = True,
    storage_options: Mapping[str, str] | None = None,
) -> list[str]:
    """Files unreferenced by every version within ``retention_hours``: listed, or deleted unless dry_run.

    delta-rs never deletes a file the current version references, nor anything under ``_``-prefixed folders
    (``_delta_log``, ``_partitions_state``). Below the table's retention, ``enforce_retention_duration=False``
    is required, as readers of older versions may still need those files. ``full`` (the default) also finds
    files no commit ever named, older than the retention: what a writer killed before its commit leaves
    behind; delta-rs's "lite" mode (``full=False``) only sees files a commit removed.
    """
    table = open_table(table_uri, storage_options=storage_options)
    return list(
        table.vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=enforce_retention_duration,
            post_commithook_properties=POST_COMMIT,
            full=full,
        )
    )
