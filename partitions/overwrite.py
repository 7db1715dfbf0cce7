"""Replace one partition of a Delta table in one commit that also carries its materialization record.

Guarantees, for every function here:

* atomic: the rows of the partition and the record describing them land in the same Delta commit, or neither;
* idempotent: writing the same input twice leaves one copy of its rows (predicate overwrite, never append);
* concurrent writers: different partitions both commit (delta-rs rebases non-conflicting commits); on the
  same partition the loser re-runs its write after a backoff, so exactly one copy remains; ``max_attempts``
  bounds the retries and ``CommitConflictExhausted`` says so;
* reconcile: after any error the log is re-read, and a commit carrying this record's ``run_id`` (the response
  was lost, the commit was not) is returned instead of being repeated or reported as a failure;
* a store that does not answer (connection cut, timeout, 5xx after delta-rs's and s3fs's own retries) raises
  ``StorageUnavailable``, which is ``Transient``: the caller may retry the whole write; refused credentials
  raise ``StorageAccessDenied``, which is not (``partitions.storage_errors`` decides which is which).

The table is created first by an empty CREATE commit, never by a data commit: two writers creating a table
with data at once can both win and leave two copies of one partition.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, PostCommitHookProperties

from partitions.delta_log import find_record, maybe_write_state_checkpoint
from partitions.errors import (
    CommitConflictExhausted,
    PartitionMismatch,
    PartitionsError,
    StorageAccessDenied,
    StorageUnavailable,
)
from partitions.records import MaterializationRecord
from partitions.storage_errors import open_table, storage_errors_named

APP_ID_PREFIX: Final = "partitions:"
# Our writers never delete log files: cleanup runs in maintenance, after the state checkpoint is written.
POST_COMMIT: Final = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
_CONFLICT_WORDS: Final = ("already exists", "conflict", "concurrent", "version mismatch", "changed since")


def app_id(partition: str) -> str:
    """The Delta transaction app id of a partition: its ``txn`` version counts the partition's overwrites."""
    return f"{APP_ID_PREFIX}{partition}"


def overwrite_partition(
    table_uri: str,
    data: pa.Table | pa.RecordBatchReader,
    *,
    column: str,
    record: MaterializationRecord,
    storage_options: Mapping[str, str] | None = None,
    max_attempts: int = 5,
    schema: pa.Schema | None = None,
    target_file_size: int | None = None,
    writer_properties: WriterProperties | None = None,
) -> int:
    """Replace the rows of ``record.partition`` (``column`` equal to it) with ``data``; return the version.

    A ``RecordBatchReader`` is spooled once to a local Arrow file so a retry can replay it without holding the
    partition in memory. Creates the table, partitioned by ``column``, when it does not exist.
    """
    key = record.partition
    with _replayable(data) as (replay, data_schema):
        _check_column(data, data_schema, column, key)
        _ensure_table(table_uri, schema or data_schema, column, storage_options, partition=key)
        tuning: dict[str, Any] = {"target_file_size": target_file_size}
        if writer_properties is not None:
            tuning["writer_properties"] = writer_properties

        def attempt(table: DeltaTable) -> None:
            write_deltalake(
                table,
                replay(),
                mode="overwrite",
                predicate=f"\"{column}\" = '{key}'",
                partition_by=[column],
                commit_properties=_commit_properties(table, record),
                post_commithook_properties=POST_COMMIT,
                **tuning,
            )

        return _commit(table_uri, record, attempt, storage_options=storage_options, max_attempts=max_attempts)


def commit_files(
    table_uri: str,
    adds: Sequence[AddAction],
    *,
    column: str,
    record: MaterializationRecord,
    schema: pa.Schema,
    storage_options: Mapping[str, str] | None = None,
    max_attempts: int = 5,
) -> int:
    """Replace ``record.partition`` with parquet files already written under the table; return the version.

    For streaming writers: files are written once, and only the commit is retried. Each ``AddAction`` must
    carry ``partition_values[column] == record.partition``; build them with ``add_action_for``.
    """
    key = record.partition
    for add in adds:
        if add.partition_values.get(column) != key:
            raise PartitionMismatch(key, column, f"{add.partition_values.get(column)!r} in {add.path}")
    _ensure_table(table_uri, schema, column, storage_options, partition=key)

    def attempt(table: DeltaTable) -> None:
        table.create_write_transaction(
            list(adds),
            mode="overwrite",
            schema=schema,
            partition_by=[column],
            partition_filters=[(column, "=", key)],
            commit_properties=_commit_properties(table, record),
            post_commithook_properties=POST_COMMIT,
        )

    return _commit(table_uri, record, attempt, storage_options=storage_options, max_attempts=max_attempts)


def record_failure(
    table_uri: str,
    record: MaterializationRecord,
    *,
    schema: pa.Schema,
    column: str,
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """Commit a ``status="failed"`` record with no data action; None (and a warning) when even that fails.

    The empty commit never touches rows, so the previous success stays readable while the plan shows the
    failure and its error. A failure to record must not hide the error being recorded, hence no raise.
    """
    if record.succeeded:
        raise ValueError(f"{record.partition}: record_failure needs status='failed', not {record.status!r}")
    try:
        _ensure_table(table_uri, schema, column, storage_options, partition=record.partition)

        def attempt(table: DeltaTable) -> None:
            table.create_write_transaction(
                [],
                mode="append",
                schema=table.schema(),
                partition_by=table.metadata().partition_columns,
                commit_properties=CommitProperties(custom_metadata=record.to_commit_metadata()),
                post_commithook_properties=POST_COMMIT,
            )

        return _commit(table_uri, record, attempt, storage_options=storage_options, max_attempts=3)
    except (DeltaError, OSError, CommitConflictExhausted, StorageUnavailable, StorageAccessDenied) as exc:
        warnings.warn(f"{record.partition}: could not record the failure in {table_uri}: {exc}", stacklevel=2)
        return None


def reconcile(
    table_uri: str,
    record: MaterializationRecord,
    *,
    after_version: int,
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """The version of a commit after ``after_version`` carrying ``record`` (same partition, run id, status).

    Called after any commit error: when the commit happened and only its response was lost, this finds it.
    """
    found = find_record(
        table_uri,
        record.partition,
        record.run_id,
        after_version=after_version,
        storage_options=storage_options,
    )
    return found.version if found is not None and found.status == record.status else None


def _commit(
    table_uri: str,
    record: MaterializationRecord,
    attempt: Callable[[DeltaTable], None],
    *,
    storage_options: Mapping[str, str] | None,
    max_attempts: int,
) -> int:
    """:func:`_commit_attempts`, with a store that does not answer (after the clients' retries) as
    ``StorageUnavailable`` and refused credentials as ``StorageAccessDenied``."""
    with storage_errors_named(table_uri, record.partition):
        return _commit_attempts(table_uri, record, attempt, storage_options=storage_options, max_attempts=max_attempts)


def _commit_attempts(
    table_uri: str,
    record: MaterializationRecord,
    attempt: Callable[[DeltaTable], None],
    *,
    storage_options: Mapping[str, str] | None,
    max_attempts: int,
) -> int:
    """Run ``attempt`` until it commits, reconciling after every error and backing off on conflicts."""
    options = dict(storage_options or {})
    for attempt_no in range(1, max_attempts + 1):
        table = open_table(table_uri, storage_options=options, partition=record.partition)
        read_version = table.version()
        try:
            attempt(table)
        except Exception as exc:
            version = reconcile(table_uri, record, after_version=read_version, storage_options=options)
            if version is not None:
                return _after_commit(table_uri, version, options)
            if not _is_conflict(exc):
                raise
            if attempt_no == max_attempts:
                raise CommitConflictExhausted(table_uri, record.partition, attempt_no) from exc
            time.sleep(_backoff(attempt_no))
            continue
        version = reconcile(table_uri, record, after_version=read_version, storage_options=options)
        if version is None:  # delta-rs said yes but the log has no such commit: never report a phantom write
            raise RuntimeError(f"{record.partition}: commit by run {record.run_id} not found in {table_uri}")
        return _after_commit(table_uri, version, options)
    raise CommitConflictExhausted(table_uri, record.partition, max_attempts)


def _after_commit(table_uri: str, version: int, options: Mapping[str, str]) -> int:
    try:
        maybe_write_state_checkpoint(table_uri, version, storage_options=options)
    except (OSError, ValueError, PartitionsError) as exc:  # the commit stands; the next writer or maintenance folds it
        warnings.warn(f"{table_uri}: state checkpoint at version {version} not written: {exc}", stacklevel=3)
    return version


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    return isinstance(exc, DeltaError) and any(word in str(exc).lower() for word in _CONFLICT_WORDS)


def _backoff(attempt_no: int) -> float:
    """Exponential backoff with full jitter: 0.05 s, 0.1 s, 0.2 s ... capped at 2 s."""
    return random.uniform(0, min(2.0, 0.05 * 2 ** (attempt_no - 1)))


def _commit_properties(table: DeltaTable, record: MaterializationRecord) -> CommitProperties:
    """The record and the partition's txn (previous version + 1), in one commit; our loop owns the retries."""
    txn_version = (table.transaction_version(app_id(record.partition)) or 0) + 1
    return CommitProperties(
        custom_metadata=dict(record.to_commit_metadata()),
        app_transactions=[Transaction(app_id(record.partition), txn_version)],
    )


def _ensure_table(
    table_uri: str, schema: pa.Schema, column: str, options: Mapping[str, str] | None, *, partition: str
) -> None:
    """Create the table with an empty CREATE commit if absent; a creator racing us is as good as us.

    The first request a write makes to the store: a refusing or unreachable store is named here.
    """
    with storage_errors_named(table_uri, partition):
        _create_if_absent(table_uri, schema, column, dict(options or {}))


def _create_if_absent(table_uri: str, schema: pa.Schema, column: str, opts: dict[str, str]) -> None:
    if DeltaTable.is_deltatable(table_uri, storage_options=opts):
        return
    if column not in schema.names:
        raise PartitionMismatch("(any)", column, f"no such column in schema {schema.names}")
    try:
        DeltaTable.create(
            table_uri,
            schema=schema,
            partition_by=[column],
            mode="ignore",
            storage_options=opts,
            # no rebase: a racing creator would otherwise land a second CREATE (new table id) at version 1
            commit_properties=CommitProperties(max_commit_retries=0),
            post_commithook_properties=POST_COMMIT,
        )
    except (DeltaError, OSError):  # OSError: e.g. the CREATE landed but its answer was lost
        if not DeltaTable.is_deltatable(table_uri, storage_options=opts):
            raise


def _check_column(data: pa.Table | pa.RecordBatchReader, schema: pa.Schema, column: str, key: str) -> None:
    """Refuse rows of another partition up front (a reader is left to delta-rs's own predicate check)."""
    if column not in schema.names:
        raise PartitionMismatch(key, column, f"no such column among {schema.names}")
    if isinstance(data, pa.Table) and data.num_rows:
        values = data.column(column).cast(pa.string())  # large/view/dictionary strings compare as plain strings
        others = pc.count(pc.filter(values, pc.not_equal(values, pa.scalar(key))), mode="all").as_py()
        nulls = values.null_count
        if others or nulls:
            raise PartitionMismatch(key, column, f"{others} rows of other partitions and {nulls} nulls")


@contextmanager
def _replayable(
    data: pa.Table | pa.RecordBatchReader,
) -> Iterator[tuple[Callable[[], pa.Table | pa.RecordBatchReader], pa.Schema]]:
    """A factory giving the same data on every call: the table itself, or a re-opened local Arrow spool."""
    if isinstance(data, pa.Table):
        yield (lambda: data), data.schema
        return
    with TemporaryDirectory(prefix="partitions-spool-") as tmp:
        spool = Path(tmp) / "data.arrows"
        with pa.OSFile(str(spool), "wb") as sink, pa.ipc.new_stream(sink, data.schema) as writer:
            for batch in data:
                writer.write_batch(batch)
        yield (lambda: pa.ipc.open_stream(pa.memory_map(str(spool)))), data.schema
