"""The pipeline's steps as plain functions: plan the months, materialize one month, verify it.

Flows and the CLI are thin wrappers over these, so each step runs and is tested without Prefect or Dask;
``taxi-assets materialize`` is exactly :func:`materialize_month` in the current process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from deltalake.exceptions import DeltaError

from partitions import is_local
from partitions.delta_log import read_records, read_state
from partitions.errors import PartitionsError
from partitions.files import missing_data_files
from partitions.keys import parse_selection
from partitions.overwrite import CommitStats, record_failure
from partitions.records import MaterializationRecord, PartitionHistory, Status
from partitions.source import Listing, SourceFile
from partitions.staleness import PartitionState, PlanRow, Verifications, plan
from taxi_assets.assets.daily_summary import commit_summary
from taxi_assets.checks.republication import SOURCE_COLUMNS, audit_month, is_republication
from taxi_assets.checks.store import CheckResult, checks_recorded_by, record_checks
from taxi_assets.checks.verify import verify_month_checks
from taxi_assets.errors import CheckFailed, ConfigurationError, MisfiledSource, SourceRejected
from taxi_assets.io.duckdb import open_connection
from taxi_assets.io.sink import ROWS_DIGEST, ROWS_DIGEST_BEFORE, Written, write_month
from taxi_assets.io.sources import list_months, survey_month
from taxi_assets.model.cleaning import misfiled
from taxi_assets.model.code_version import trips_code_version
from taxi_assets.model.intents import INTENTS
from taxi_assets.model.row_digest import RowsDigest
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.settings import Settings

_log = logging.getLogger(__name__)
TEST_SUBSET_MONTHS = 2  # the seed's "test_subset": the first few months of the selection


@dataclass(frozen=True)
class MonthPlan:
    """The plan of one run: a row per month, and the source files that were skipped."""

    rows: list[PlanRow]
    listing: Listing
    code_version: str

    @property
    def stale(self) -> list[PlanRow]:
        return [r for r in self.rows if r.state.is_stale]

    @property
    def rejected(self) -> list[PlanRow]:
        """Months whose source was refused as it is: left alone until the file or the code changes."""
        return [r for r in self.rows if r.state is PartitionState.REJECTED]

    @property
    def unavailable(self) -> dict[str, str]:
        """Months the source did not answer for (month -> reason): nothing done, and the run must say so."""
        return {r.partition: r.reason for r in self.rows if r.state.is_problem}

    def counts(self) -> dict[str, int]:
        """How many months are in each state, in the order of ``PartitionState`` (states with none left out)."""
        found = {state: sum(1 for r in self.rows if r.state is state) for state in PartitionState}
        return {str(state): n for state, n in found.items() if n}


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def plan_months(
    cfg: Settings,
    *,
    intent: str = "",
    partitions: Iterable[str] | str | None = None,
    listing: Listing | None = None,
    deep: bool = False,
) -> MonthPlan:
    """List the source, read what the sink recorded and decide what is stale and why.

    ``partitions`` forces the named months (a backfill) and limits the listing to them: an HTTP source is
    probed for those months only, and a month it does not answer for plans ``unavailable`` instead of failing
    the plan. ``intent="reprocess"`` forces every month in the selection (all months when none is given);
    ``intent="test_subset"`` forces the first two of the selection. ``deep`` also lists the data files the
    ``trips`` and ``quarantine`` logs reference, so a month whose files were deleted behind the log's back
    plans ``failed`` with that reason (one listing per month folder: an occasional check, not every plan).
    """
    if intent not in INTENTS:
        raise ConfigurationError("intent", f"unknown intent {intent!r}; use one of '', 'reprocess', 'test_subset'")
    selected = parse_selection(partitions) if partitions else []
    listing = listing if listing is not None else list_months(cfg, keys=selected or None)
    for key in selected:
        if key not in listing.unavailable:  # unanswered: planned unavailable below, the other months go on
            listing.require(key)  # two files for a selected month: DuplicatePartitionSource, not "not present"
    missing = [k for k in selected if k not in listing.files and k not in listing.unavailable]
    if missing:
        raise ConfigurationError(
            "partitions",
            f"month(s) {', '.join(missing)} not present in the source {cfg.source}; "
            "`taxi-assets plan` lists the months the source has",
        )
    available = sorted(listing.files)
    named = [k for k in selected if k in listing.files]  # an unavailable month cannot be forced: nothing is known
    force: list[str] = named
    if intent == "reprocess":
        force = named if selected else available
    elif intent == "test_subset":
        force = (named if selected else available)[:TEST_SUBSET_MONTHS]
    only: list[str] | None = None
    if intent == "test_subset":
        only = force + [k for k in selected if k in listing.unavailable]
    elif selected:
        only = selected
    version = trips_code_version()
    rows = _judge_months(
        cfg,
        listing.files,
        code_version=version,
        force=force,
        only=only,
        source_problems=listing.problems(),
        unavailable=listing.unavailable,
        missing_files=_missing_files(cfg, selected or None) if deep else None,
    )
    return MonthPlan(rows=rows, listing=listing, code_version=version)


def _judge_months(
    cfg: Settings,
    files: Mapping[str, SourceFile],
    *,
    code_version: str,
    force: Sequence[str] = (),
    only: Sequence[str] | None = None,
    source_problems: Mapping[str, str] | None = None,
    unavailable: Mapping[str, str] | None = None,
    missing_files: Mapping[str, Sequence[str]] | None = None,
    recorded: Mapping[str, PartitionHistory] | None = None,
) -> list[PlanRow]:
    """The planner over the sink's three logs as they are now: trips, its quarantine companion, the checks.

    ``recorded``: the trips histories when the caller has just read them (not read again).
    """
    if recorded is None:
        recorded = read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri))
    checks_opts = cfg.storage_options(cfg.checks_uri)
    return plan(
        files,
        recorded,
        code_version=code_version,
        force=force,
        companions=[read_records(cfg.quarantine_uri, storage_options=cfg.storage_options(cfg.quarantine_uri))],
        only=only,
        source_problems=source_problems,
        unavailable=unavailable,
        missing_files=missing_files,
        verifications=Verifications(
            read_records(cfg.checks_uri, storage_options=checks_opts),
            required=_promises_checks,
            attested_by=partial(checks_recorded_by, cfg.checks_uri, storage_options=checks_opts),
        ),
    )


def _missing_files(cfg: Settings, months: list[str] | None) -> dict[str, list[str]]:
    """Data files of ``trips`` and ``quarantine`` that their logs reference and the store lost, per month."""
    gone: dict[str, list[str]] = {}
    for name, uri in (("trips", cfg.trips_uri), ("quarantine", cfg.quarantine_uri)):
        found = missing_data_files(uri, months, storage_options=cfg.storage_options(uri))
        for month, paths in found.items():
            gone.setdefault(month, []).extend(f"{name}/{p}" for p in paths)
    return gone


def nothing_stale_line(cfg: Settings, plan: MonthPlan) -> str:
    """What a run with nothing to materialize says: fresh months, and whether only rejected months remain."""
    rejected = [r.partition for r in plan.rejected]
    fresh = sum(1 for r in plan.rows if r.state is PartitionState.FRESH)
    line = f"nothing stale in {cfg.sink} ({fresh} month(s) fresh): no cluster started"
    if rejected:
        line += (
            f"; only rejected months remain: {', '.join(rejected)} (left alone until their file or the code "
            "changes; `taxi-assets plan` shows why, `--partitions` retries one)"
        )
    return line


def _promises_checks(record: MaterializationRecord) -> bool:
    """Months written with a streamed row digest are checked by the same run (older ones: checks not recorded)."""
    return ROWS_DIGEST in record.extra or ROWS_DIGEST_BEFORE in record.extra


@dataclass(frozen=True)
class MonthResult:
    """What one month's materialization did; picklable, returned from Dask workers."""

    partition: str
    ok: bool
    rows_source: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    flags_nulled: int = 0
    extra_columns: tuple[str, ...] = ()
    trips_version: int | None = None
    quarantine_version: int | None = None
    seconds: float = 0.0
    error: str = ""
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    checks: list[dict[str, object]] = field(default_factory=list)
    rows_digest: str = ""  # RowsDigest.to_text() of the rows streamed into trips; "" when unknown
    summary_version: int | None = None  # the daily_summary commit of the month, None when it did not land
    summary_error: str = ""  # why it did not: the month is fine, the run's daily-summary step rebuilds it
    commits: dict[str, int | float] = field(default_factory=dict)  # CommitStats.as_dict() of its sink commits
    built_by: str = ""  # another run's id when that run built this month from the same bytes while this one waited
    rejected: bool = False  # failed because its file was refused (SourceRejected): left alone until it changes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def materialize_month(
    source: SourceFile, cfg: Settings, *, run_id: str, code_version: str | None = None
) -> MonthResult:
    """Read one source month, cast it, split clean from quarantined rows and commit both tables.

    Order: ``quarantine`` first, then ``trips``; both commits carry the same run id, and the planner calls a
    month complete only when both agree and their counts add up. A rejected file writes no data: a failure
    record goes into the ``trips`` log (an empty commit) so the month plans ``failed`` with the reason. A store
    that fails arrives here already named by the reader or the writer (``StorageUnavailable``, retried by the
    flow; ``StorageAccessDenied``, not): nothing is recorded against a good file.
    """
    t0 = time.perf_counter()
    cfg.apply_engine_env()  # a worker of an existing cluster did not inherit the run's environment
    version = code_version or trips_code_version()
    month = source.partition
    base = _record(source, "success", run_id=run_id, code_version=version, started_at=_now())
    try:
        reject_misfiled(source, cfg)  # before any data file is written
        written = write_month(source, cfg, base, now=_now, audit=partial(_audit_republication, source, cfg))
    except SourceRejected as exc:  # the bytes themselves: not retried until the file or the code changes
        _record_failed(source, cfg, run_id=run_id, code_version=version, error=str(exc), status="rejected")
        raise
    summary_version, summary_error = _commit_summary(source, cfg, written, run_id=run_id, started_at=base.started_at)
    return MonthResult(
        partition=month,
        ok=True,
        rows_source=written.rows_source,
        rows_written=written.rows_written,
        rows_quarantined=written.rows_quarantined,
        flags_nulled=written.flags_nulled,
        extra_columns=written.extra_columns,
        trips_version=written.trips_version,
        quarantine_version=written.quarantine_version,
        quarantined_by_rule=written.quarantined_by_rule,
        seconds=time.perf_counter() - t0,
        rows_digest=written.digest.to_text(),
        summary_version=summary_version,
        summary_error=summary_error,
        commits=written.commits.as_dict(),
    )


def _audit_republication(source: SourceFile, cfg: Settings, new_files: Sequence[str]) -> dict[str, str]:
    """What changed since the month's last success, as record extras, when its source was re-published.

    Only a re-publication pays for it (the month's last success came from other source bytes; a forced re-run
    of the same bytes or a code change does not): two scans of the month and a join on the identity digest
    (:mod:`taxi_assets.checks.republication`). The old side is the month as the table holds it now (the last
    success's rows; the log's newest version, so a log cleanup cannot have removed it). Every month pays one
    read of the ``trips`` log's records since its state checkpoint to tell. An audit that fails costs a warning
    and records nothing: it never fails the month.
    """
    month = source.partition
    opts = cfg.storage_options(cfg.trips_uri)
    try:
        state = read_state(cfg.trips_uri, storage_options=opts)
        history = state.histories.get(month)
        previous = history.latest_success if history else None
        if previous is None or not is_republication(previous, source.fingerprint):
            return {}
        t0 = time.perf_counter()
        remote = not is_local(cfg.trips_uri)
        with open_connection(storage_options=opts, scope=cfg.sink, extensions=("httpfs",) if remote else ()) as con:
            audit, columns = audit_month(
                cfg.trips_uri,
                month,
                previous=previous,
                old_version=state.version,
                new_files=new_files,
                source_uri=source.uri,
                con=con,
                storage_options=opts,
            )
    except Exception as exc:  # the audit only describes the month: whatever breaks here, the month goes on
        _log.warning("%s: re-publication audit skipped (%s: %s)", month, type(exc).__name__, exc)
        return {}
    _log.info("%s: %s (audited in %.1f s)", month, audit.summary(), time.perf_counter() - t0)
    return {**audit.to_extra(), SOURCE_COLUMNS: columns}


def reject_misfiled(source: SourceFile, cfg: Settings) -> None:
    """Refuse a file most of whose rows fall outside its month, before anything of it is written.

    The survey reads the footer (and only the pickup column of row groups the footer cannot place); it also
    parses timestamp text in full, so such an error names its row in the file.

    Raises:
        MisfiledSource: more than half of the rows have a pickup in other months (a copy of another month).
        UnparseableTimestamp: timestamp text that is not ISO-8601.
    """
    survey = survey_month(source, cfg)
    if survey is None:  # unreadable: the reader says how
        return
    verdict = misfiled(source.partition, survey.rows, survey.pickups_by_month)
    if verdict is not None:
        raise MisfiledSource(source.partition, source.uri, verdict.outside, verdict.rows, verdict.likely)


def _commit_summary(
    source: SourceFile, cfg: Settings, written: Written, *, run_id: str, started_at: str
) -> tuple[int | None, str]:
    """Commit the month's ``daily_summary`` (summed as it streamed) after its ``trips``: (version, "") or (None, why).

    The downstream asset never fails the month: its ``trips`` are committed whatever happens here, and a summary
    that did not land plans stale, so the run's daily-summary step rebuilds it from the committed ``trips``.
    """
    try:
        version = commit_summary(
            cfg,
            written.summary,
            month=source.partition,
            run_id=run_id,
            upstream_run_id=run_id,
            upstream_version=written.trips_version,
            upstream_rows=written.rows_written,
            started_at=started_at,
        )
    except (PartitionsError, DeltaError, OSError) as exc:
        _log.warning(
            "%s: daily_summary not committed (%s); the run's daily-summary step rebuilds it", source.partition, exc
        )
        return None, f"{type(exc).__name__}: {exc}"
    return version, ""


def verify_month(
    result: MonthResult, source: SourceFile, cfg: Settings, *, run_id: str, stats: CommitStats | None = None
) -> list[CheckResult]:
    """Every DuckDB check on the versions this run committed, recorded in ``<sink>/checks`` (passed or not).

    The duplicate check compares the committed rows with the row digest of the rows the run streamed (one
    scan of the month). The source file is read only when they differ (to count its own duplicates, so a
    month the TLC published with duplicates is not blamed on the run) or when ``result`` has no row digest.
    """
    if result.trips_version is None or result.quarantine_version is None:
        raise RuntimeError(f"{result.partition}: verify_month needs the versions a successful write returns")
    checks = verify_month_checks(
        result.partition,
        run_id=run_id,
        trips_uri=cfg.trips_uri,
        trips_version=result.trips_version,
        quarantine_uri=cfg.quarantine_uri,
        quarantine_version=result.quarantine_version,
        rows_source=result.rows_source,
        rows_written=result.rows_written,
        rows_quarantined=result.rows_quarantined,
        storage_options=cfg.storage_options(cfg.trips_uri),
        source_uri=source.uri,
        source_storage_options=cfg.storage_options(source.uri),
        digest=RowsDigest.from_text(result.rows_digest),
    )
    record_checks(cfg.checks_uri, checks, storage_options=cfg.storage_options(cfg.checks_uri), stats=stats)
    return checks


def built_meanwhile(
    source: SourceFile,
    cfg: Settings,
    *,
    run_id: str,
    code_version: str,
    seen_run_id: str | None,
    forced: bool = False,
) -> MonthResult | None:
    """The month as another run built it since this run planned, from the same bytes and code, if so.

    Two runs that start together plan the same stale months; the month guard lets one build a month while the
    other waits. Without this check the waiter then rebuilt the month from the same bytes: a wasted write, and a
    ``plan`` taken when the first run exits could read the month between the second's two commits. Asked after
    the guard is taken, so the other run's commits and checks have all landed.

    A month planned because it was stale is planned again now, from the same source file: if it plans fresh,
    someone built it meanwhile. That also covers a plan taken between the other run's trips commit and its
    checks record (stale as "not verified", the newest success already the other run's). A forced month is
    stale whatever its state, so it asks what the plan saw instead: ``seen_run_id`` is the run of its newest
    record then (None: no record); a success by another run since (no failure after it) was built meanwhile.
    (Neither is a time comparison: a record's time is stamped before its commit lands, seconds earlier under
    load.)
    """
    recorded = read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri))
    history = recorded.get(source.partition)
    done = history.latest_success if history is not None else None
    if history is None or done is None or done.run_id == run_id:
        return None
    if forced:
        if (
            history.latest_failure is not None
            or done.run_id == seen_run_id
            or done.source_fingerprint != source.fingerprint
            or done.code_version != code_version
        ):
            return None
    else:
        rows = _judge_months(
            cfg, {source.partition: source}, code_version=code_version, only=[source.partition], recorded=recorded
        )
        if [r.state for r in rows] != [PartitionState.FRESH]:
            return None
    return MonthResult(
        partition=source.partition,
        ok=True,
        rows_source=done.rows_source or 0,
        rows_written=done.rows_written,
        rows_quarantined=done.rows_quarantined or 0,
        trips_version=done.version,
        built_by=done.run_id,
    )


def run_month(source: SourceFile, cfg: Settings, *, run_id: str, code_version: str | None = None) -> MonthResult:
    """Materialize then verify one month: the unit of work of a Dask task (and of `taxi-assets materialize`).

    A failed check fails the month with the check's message; the data stays committed but the check is in
    ``checks``, and the month keeps planning stale until a run passes.
    """
    result = materialize_month(source, cfg, run_id=run_id, code_version=code_version)
    stats = CommitStats()  # the checks' append: contention with the other months' appends is counted too
    checks = verify_month(result, source, cfg, run_id=run_id, stats=stats)
    commits = {k: result.commits.get(k, 0) + v for k, v in stats.as_dict().items()}
    result = replace(result, checks=[c.as_dict() for c in checks], commits=commits)
    for c in checks:
        if not c.passed:
            error = CheckFailed(c.partition, c.check, c.observed, c.expected)
            _record_failed(source, cfg, run_id=run_id, code_version=code_version, error=str(error))
            raise error
    return result


def _record_failed(
    source: SourceFile,
    cfg: Settings,
    *,
    run_id: str,
    code_version: str | None,
    error: str,
    status: Status = "failed",
) -> None:
    """A record newer than the month's success: ``failed`` plans the month failed and the next run retries it;
    ``rejected`` (the source's bytes were refused) plans it rejected until the file or the code changes."""
    record = _record(
        source,
        status,
        run_id=run_id,
        code_version=code_version or trips_code_version(),
        finished_at=_now(),
        error=error,
    )
    record_failure(
        cfg.trips_uri,
        record,
        schema=trips_schema(),
        column=PARTITION_COLUMN,
        storage_options=cfg.storage_options(cfg.trips_uri),
    )


def _record(
    source: SourceFile,
    status: Status,
    *,
    run_id: str,
    code_version: str,
    started_at: str = "",
    finished_at: str = "",
    error: str = "",
) -> MaterializationRecord:
    """The month's record as every commit of this run stamps it: who (run, code) did what from which source."""
    return MaterializationRecord(
        partition=source.partition,
        status=status,
        run_id=run_id,
        code_version=code_version,
        source_uri=source.uri,
        source_fingerprint=source.fingerprint,
        started_at=started_at,
        finished_at=finished_at,
        error=error,
    )
