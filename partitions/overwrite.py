"""Replace one partition of a Delta table in one commit that also carries its materialization record.

Guarantees, for every function here:

* atomic: the rows of the partition and the record describing them land in the same Delta commit, or neither;
* idempotent: writing the same input twice leaves one copy of its rows (predicate overwrite, never append);
* concurrent writers: different partitions all commit: delta-rs rebases a commit that lost the race for its
  version onto the winners' when they touched other partitions (up to 15 times, without waiting). On the same
  partition, or when delta-rs's own retries run out (more writers in one burst than it retries), the loser
  re-runs its attempt from a fresh snapshot after a jittered backoff that grows with the attempt number and
  with how long an attempt takes on this store, so exactly one copy remains; ``max_attempts`` (8) bounds the
  attempts, the waiting is capped (see :func:`backoff`), and ``CommitConflictExhausted`` says when it ran out;
* observable contention: pass a :class:`CommitStats` as ``stats=`` and it counts, across every commit it is
  handed to, the attempts, the conflicts retried here, the other writers' commits delta-rs rebased ours over,
  and the time spent backing off;
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
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, PostCommitHookProperties

from partitions._storage import delta_storage_options
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
MAX_ATTEMPTS: Final = 8  # our attempts, each with delta-rs's own 15 rebases: 128 tries before giving up
BACKOFF_FLOOR: Final = 0.05  # seconds: the smallest slot a jittered wait is drawn from
BACKOFF_SLOT_CAP: Final = 1.0  # seconds: an attempt slower than this still doubles from 1 s, not from its time
BACKOFF_CAP: Final = 2.0  # seconds: the longest single wait; 7 waits of 8 attempts are at most 14 s in all


@dataclass
class CommitStats:
    """What committing cost under contention: an out-parameter that sums over every commit it is handed to.

    One object per caller (a month, a run) and per thread: it is not locked. Picklable, so a Dask task can
    return it.

    * ``commits``: commits that landed (``versions`` lists them);
    * ``attempts``: our attempts; each beyond a commit's first followed one of ``conflicts``;
    * ``conflicts``: attempts that lost to a concurrent writer and were retried here after a backoff (a
      conflict on the same partition, or delta-rs's own retries exhausted);
    * ``rebased``: commits that lost the race for their first version and that delta-rs retried on top of the
      winners' (which touched other partitions); ``rebased_over`` counts those winners' commits;
    * ``backoff_seconds``: time slept between attempts.
    """

    commits: int = 0
    attempts: int = 0
    conflicts: int = 0
    rebased: int = 0
    rebased_over: int = 0
    backoff_seconds: float = 0.0
    versions: list[int] = field(default_factory=list)

    @property
    def retries(self) -> int:
        """Commit retries made, at least: every conflict retried here, plus one per commit delta-rs rebased."""
        return self.conflicts + self.rebased

    def landed(self, version: int, *, read_version: int) -> None:
        """Count a commit at ``version`` built on the snapshot at ``read_version``."""
        self.commits += 1
        self.versions.append(version)
        if version > read_version + 1:  # delta-rs first tries read_version + 1: it lost that race and rebased
            self.rebased += 1
            self.rebased_over += version - read_version - 1

    def as_dict(self) -> dict[str, int | float]:
        """The counts (not the versions) for a run summary or a benchmark line."""
        return {
            "commits": self.commits,
            "attempts": self.attempts,
            "conflicts": self.conflicts,
            "rebased": self.rebased,
            "rebased_over": self.rebased_over,
            "retries": self.retries,
            "backoff_seconds": round(self.backoff_seconds, 3),
        }

    def merge(self, other: CommitStats) -> None:
        """Add ``other``'s counts to these (e.g. a month's into a run's)."""
        self.commits += other.commits
        self.attempts += other.attempts
        self.conflicts += other.conflicts
        self.rebased += other.rebased
        self.rebased_over += other.rebased_over
        self.backoff_seconds += other.backoff_seconds
        self.versions.extend(other.versions)


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
    max_attempts: int = MAX_ATTEMPTS,
    schema: pa.Schema | None = None,
    target_file_size: int | None = None,
    writer_properties: WriterProperties | None = None,
    stats: CommitStats | None = None,
) -> int:
    """Replace the rows of ``record.partition`` (``column`` equal to it) with ``data``; return the version.

    A ``RecordBatchReader`` is spooled once to a local Arrow file so a retry can replay it without holding the
    partition in memory. Creates the table, partitioned by ``column``, when it does not exist. ``stats``, when
    given, adds this commit's attempts, conflicts and rebases to its counts.
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

        return _commit(
            table_uri, record, attempt, storage_options=storage_options, max_attempts=max_attempts, stats=stats
        )


def commit_files(
    table_uri: str,
    adds: Sequence[AddAction],
    *,
    column: str,
    record: MaterializationRecord,
    schema: pa.Schema,
    storage_options: Mapping[str, str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    stats: CommitStats | None = None,
) -> int:
    """Replace ``record.partition`` with parquet files already written under the table; return the version.

    For streaming writers: files are written once, and only the commit is retried. Each ``AddAction`` must
    carry ``partition_values[column] == record.partition``; build them with ``add_action_for``. ``stats``, when
    given, adds this commit's attempts, conflicts and rebases to its counts.
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

    return _commit(table_uri, record, attempt, storage_options=storage_options, max_attempts=max_attempts, stats=stats)


def record_failure(
    table_uri: str,
    record: MaterializationRecord,
    *,
    schema: pa.Schema,
    column: str,
    storage_options: Mapping[str, str] | None = None,
    stats: CommitStats | None = None,
) -> int | None:
    """Commit a ``status="failed"`` or ``"rejected"`` record with no data action; None (and a warning) when even
    that fails.

    The empty commit never touches rows, so the previous success stays readable while the plan shows the
    failure (transient: retried next run) or the rejection (bad input: kept until its source or code changes)
    and its error. A failure to record must not hide the error being recorded, hence no raise.
    """
    if record.succeeded:
        raise ValueError(
            f"{record.partition}: record_failure needs status 'failed' or 'rejected', not {record.status!r}; "
            "a success is committed with its data by overwrite_partition or commit_files"
        )
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

        return _commit(table_uri, record, attempt, storage_options=storage_options, max_attempts=3, stats=stats)
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
    stats: CommitStats | None = None,
) -> int:
    """:func:`_commit_attempts`, with a store that does not answer (after the clients' retries) as
    ``StorageUnavailable`` and refused credentials as ``StorageAccessDenied``."""
    with storage_errors_named(table_uri, record.partition):
        return _commit_attempts(
            table_uri,
            record,
            attempt,
            storage_options=storage_options,
            max_attempts=max_attempts,
            stats=stats if stats is not None else CommitStats(),
        )


def _commit_attempts(
    table_uri: str,
    record: MaterializationRecord,
    attempt: Callable[[DeltaTable], None],
    *,
    storage_options: Mapping[str, str] | None,
    max_attempts: int,
    stats: CommitStats,
) -> int:
    """Run ``attempt`` until it commits, reconciling after every error and backing off on conflicts."""
    options = dict(storage_options or {})
    for attempt_no in range(1, max_attempts + 1):
        table = open_table(table_uri, storage_options=options, partition=record.partition)
        read_version = table.version()
        stats.attempts += 1
        started = time.perf_counter()
        try:
            attempt(table)
        except Exception as exc:
            version = reconcile(table_uri, record, after_version=read_version, storage_options=options)
            if version is not None:
                return _after_commit(table_uri, version, options, stats, read_version=read_version)
            if not is_conflict(exc):
                raise
            stats.conflicts += 1
            if attempt_no == max_attempts:
                raise CommitConflictExhausted(table_uri, record.partition, attempt_no) from exc
            wait = backoff(attempt_no, slot=time.perf_counter() - started)
            stats.backoff_seconds += wait
            time.sleep(wait)
            continue
        version = reconcile(table_uri, record, after_version=read_version, storage_options=options)
        if version is None:  # delta-rs said yes but the log has no such commit: never report a phantom write
            raise RuntimeError(f"{record.partition}: commit by run {record.run_id} not found in {table_uri}")
        return _after_commit(table_uri, version, options, stats, read_version=read_version)
    raise CommitConflictExhausted(table_uri, record.partition, max_attempts)


def _after_commit(
    table_uri: str, version: int, options: Mapping[str, str], stats: CommitStats, *, read_version: int
) -> int:
    """Count the commit (and the other writers' commits it landed after), then fold the state if due."""
    stats.landed(version, read_version=read_version)
    try:
        maybe_write_state_checkpoint(table_uri, version, storage_options=options)
    except (OSError, ValueError, PartitionsError) as exc:  # the commit stands; the next writer or maintenance folds it
        warnings.warn(f"{table_uri}: state checkpoint at version {version} not written: {exc}", stacklevel=3)
    return version


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer's commit won the version (worth a retry from a fresh snapshot)."""
    if isinstance(exc, CommitFailedError):
        return True
    return isinstance(exc, DeltaError) and any(word in str(exc).lower() for word in _CONFLICT_WORDS)


def backoff(attempt_no: int, *, slot: float = BACKOFF_FLOOR) -> float:
    """Exponential backoff with full jitter, scaled to the store: uniform in [0, slot * 2^(n-1)], at most 2 s.

    ``slot`` is how long the attempt that just lost took (kept within 0.05-1 s): writers that collide on a
    store where a commit takes 0.5 s must spread over seconds, on a local disk over milliseconds. Full jitter
    (not "equal" or none) is what de-synchronizes a burst of writers that all lost to the same winner.
    """
    slot = min(max(slot, BACKOFF_FLOOR), BACKOFF_SLOT_CAP)
    return random.uniform(0, min(BACKOFF_CAP, slot * 2 ** (attempt_no - 1)))


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

    The first request a write makes to the store: a refusing or unreachable store is named here, after bounded
    waits (``delta_storage_options``), not delta-rs's 3 minutes of retries.
    """
    with storage_errors_named(table_uri, partition):
        _create_if_absent(table_uri, schema, column, delta_storage_options(table_uri, options))


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
