"""The append-only ``checks`` Delta table: every check result of every run, and the verification record a planner
reads from its commits.

One batch (a month's checks of one run) is one append commit carrying a materialization record (``success``
when every check passed), so the planner folds verifications like any table's records. Many month
tasks append at once; an append loses only the race for a version, and is retried (jittered backoff, counted
in a :class:`~partitions.overwrite.CommitStats`) until it lands, exactly once per batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from partitions.code_version import code_version
from partitions.delta_log import maybe_write_state_checkpoint
from partitions.errors import StorageUnavailable
from partitions.overwrite import MAX_ATTEMPTS, CommitStats, backoff, is_conflict
from partitions.records import MaterializationRecord
from partitions.storage_errors import open_table, storage_errors_named
from taxi_assets.model.row_digest import METHOD


def record_checks(
    checks_uri: str,
    checks: Sequence[CheckResult],
    *,
    storage_options: Mapping[str, str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    stats: CommitStats | None = None,
) -> int:
    """Append ``checks`` to the ``checks`` Delta table (created on first use); return the commit's version.

    Appends never conflict with each other in Delta: delta-rs rebases a losing blind append onto the winner.
    What is left (two creators racing, a retry budget spent under heavy contention) retries here with
    backoff, so concurrent runs' results all land; so does a store that fails for a moment. Exactly once, even
    when a commit landed but its response was lost: each batch carries a Delta app transaction (:func:`batch_id`
    of its rows), and a retry that finds it in the table's snapshot does not append again. ``stats``, when
    given, counts the attempts, the conflicts retried here and the appends delta-rs rebased.
    """
    stats = stats if stats is not None else CommitStats()
    opts = dict(storage_options or {}) or None
    if not checks:
        return open_table(checks_uri, storage_options=opts).version() if _exists(checks_uri, opts) else -1
    data = pa.Table.from_pylist([_row(c) for c in checks], schema=checks_schema())
    meta = {
        "checks.partitions": ",".join(sorted({c.partition for c in checks})),
        "checks.run_ids": ",".join(sorted({c.run_id for c in checks})),
        **verification_record(checks),
    }
    batch = batch_id(checks)
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        try:
            with storage_errors_named(checks_uri, meta["checks.partitions"]):
                _ensure_checks_table(checks_uri, opts)
                table = open_table(checks_uri, storage_options=opts)
                if table.transaction_version(batch) is not None:  # an earlier attempt landed: its response was lost
                    return table.version()
                read_version = table.version()
                stats.attempts += 1
                properties = CommitProperties(custom_metadata=meta, app_transactions=[Transaction(batch, 1)])
                write_deltalake(table, data, mode="append", commit_properties=properties)
                version = table.version()
            stats.landed(version, read_version=read_version)
            maybe_write_state_checkpoint(checks_uri, version, storage_options=opts)  # plans read it: keep it cheap
            return version
        except StorageUnavailable:  # e.g. the answer of a landed append was lost: the next attempt finds it
            if attempt == max_attempts:
                raise
        except (CommitFailedError, DeltaError) as exc:
            if attempt == max_attempts or not is_conflict(exc):
                raise
            stats.conflicts += 1
        wait = backoff(attempt, slot=time.perf_counter() - started)
        stats.backoff_seconds += wait
        time.sleep(wait)
    raise AssertionError("unreachable")


def checks_recorded_by(
    checks_uri: str, month: str, run_id: str, *, storage_options: Mapping[str, str] | None = None
) -> bool:
    """Whether ``run_id`` recorded checks of ``month`` (passed or not) in the checks table.

    The planner asks only when the month's latest checks are another run's: concurrent runs can record their
    checks in another order than their trips commits (``partitions.staleness.Verifications``). A filtered read
    of two columns of a small table; no table yet: nothing recorded.
    """
    opts = dict(storage_options or {}) or None
    with storage_errors_named(checks_uri, month):
        if not _exists(checks_uri, opts):
            return False
        dataset = open_table(checks_uri, storage_options=opts).to_pyarrow_dataset()
        found = dataset.to_table(
            columns=["run_id"], filter=(pc.field("partition") == month) & (pc.field("run_id") == run_id)
        )
    return bool(found.num_rows > 0)


def verification_record(checks: Sequence[CheckResult]) -> dict[str, str]:
    """The month's verification as a ``partitions`` record in the checks commit, when the batch is one month's.

    The planner reads these records (``partitions.delta_log.read_records`` on ``<sink>/checks``, folded by state
    checkpoints like any table's) and plans a ``trips`` success that no verification attests as incomplete: a run
    that died between its commit and its checks (``steps.plan_months``). ``failed`` when a check failed.
    """
    months, runs = {c.partition for c in checks}, {c.run_id for c in checks}
    if len(months) != 1 or len(runs) != 1:
        return {}
    passed = sum(c.passed for c in checks)
    record = MaterializationRecord(
        partition=months.pop(),
        status="success" if passed == len(checks) else "failed",
        run_id=runs.pop(),
        code_version=CHECKS_VERSION,
        rows_written=len(checks),
        finished_at=max(c.checked_at for c in checks),
        error="" if passed == len(checks) else ", ".join(c.check for c in checks if not c.passed) + " failed",
    )
    return record.to_commit_metadata()


def batch_id(checks: Sequence[CheckResult]) -> str:
    """The Delta app id of one batch of check results: the same rows, retried, give the same id."""
    keys = sorted(f"{c.partition}|{c.run_id}|{c.check}|{c.table_version}|{c.checked_at}" for c in checks)
    return "checks:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def _row(check: CheckResult) -> dict[str, object]:
    row = check.as_dict()
    row["checked_at"] = datetime.fromisoformat(check.checked_at) if check.checked_at else None
    return row


def _exists(uri: str, opts: Mapping[str, str] | None) -> bool:
    return DeltaTable.is_deltatable(uri, storage_options=dict(opts) if opts else None)


def _ensure_checks_table(uri: str, opts: Mapping[str, str] | None) -> None:
    """Create the empty table once; a creator racing us is as good as us.

    No commit retries: delta-rs would otherwise rebase a losing CREATE onto the winner's, leaving two.
    """
    if _exists(uri, opts):
        return
    try:
        DeltaTable.create(
            uri,
            schema=checks_schema(),
            mode="ignore",
            storage_options=dict(opts) if opts else None,
            commit_properties=CommitProperties(max_commit_retries=0),
        )
    except DeltaError:
        if not _exists(uri, opts):
            raise


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


CHECK_NAMES: Final = (
    "row_count",
    "quarantine_row_count",
    "rows_conserved",
    "month_matches_key",
    "no_duplicates_introduced",
    "required_not_null",
)


CHECKS_VERSION: Final = code_version("checks", CHECK_NAMES, METHOD)  # the code version of a verification record


@dataclass(frozen=True, slots=True)
class CheckResult:
    partition: str
    check: str
    passed: bool
    observed: str
    expected: str
    table_version: int
    run_id: str
    checked_at: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
