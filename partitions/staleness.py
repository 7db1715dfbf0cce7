"""Decide, per partition, whether it must be (re)materialized, and say why in one sentence.

Pure: the planner sees only the facts handed to it (source files, recorded histories, the code version),
never a clock, a table or the environment, so every state and reason is a testable function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from partitions.records import MaterializationRecord, PartitionHistory
from partitions.source import SourceFile


class PartitionState(StrEnum):
    """Why a partition is (or is not) planned.

    Stale (a run rebuilds it): MISSING, SOURCE_CHANGED, CODE_CHANGED, FAILED, FORCED. Not stale: FRESH (nothing
    changed), ORPHANED (the source is gone, the rows are kept), REJECTED (the source was refused as it is and
    neither it nor the code changed since: a retry would be refused again) and UNAVAILABLE (the source did not
    answer for this partition: nothing is known, nothing is touched). UNAVAILABLE is also a *problem*: the run
    could not do what it was asked, so it should end non-zero naming the partition (see ``is_problem``).
    """

    MISSING = "missing"
    SOURCE_CHANGED = "source-changed"
    CODE_CHANGED = "code-changed"
    FAILED = "failed"
    FORCED = "forced"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"
    ORPHANED = "orphaned"
    FRESH = "fresh"

    @property
    def is_stale(self) -> bool:
        """A run should (re)materialize the partition."""
        return self not in _NOT_STALE

    @property
    def is_problem(self) -> bool:
        """Not stale, yet the run could not decide or do anything about it: report it and end non-zero."""
        return self is PartitionState.UNAVAILABLE


_NOT_STALE = frozenset(
    (PartitionState.FRESH, PartitionState.ORPHANED, PartitionState.REJECTED, PartitionState.UNAVAILABLE)
)


@dataclass(frozen=True, slots=True)
class PlanRow:
    """The verdict on one partition: its state, a full-sentence reason, and the facts behind it."""

    partition: str
    state: PartitionState
    reason: str
    source_uri: str | None = None
    source_fingerprint: str | None = None
    recorded_fingerprint: str | None = None
    rows: int | None = None
    recorded_code_version: str | None = None
    last_run_id: str | None = None


FORCED_REASON = "forced by selection"


def _always(record: MaterializationRecord) -> bool:
    return True


@dataclass(frozen=True)
class Verifications:
    """The records of a table that attests the primary's writes (e.g. checks run after each commit).

    A write is verified when the attesting table's latest record for the partition (passed or failed) carries
    the run id of the primary's latest success. A run that died between its commit and its verification left
    a whole partition nobody checked: it plans FAILED ("incomplete") and the next run rebuilds and checks it.
    ``required`` limits this to the successes that promise a verification, so records written before the
    attesting table existed do not all turn stale at once.

    Concurrent runs can record their verifications in another order than their commits (A commits, B commits
    and verifies, then A verifies): the latest record is then A's while B's write is the one in place. The
    histories keep only the latest record, so ``attested_by(key, run_id)`` answers for an older one: a lookup
    in the attesting table, asked only in that case.
    """

    histories: Mapping[str, PartitionHistory]
    required: Callable[[MaterializationRecord], bool] = _always
    attested_by: Callable[[str, str], bool] | None = None

    def missing(self, key: str, success: MaterializationRecord) -> bool:
        if not self.required(success):
            return False
        latest = self.histories.get(key, PartitionHistory()).latest
        if latest is None:
            return True
        if latest.run_id == success.run_id:
            return False
        return self.attested_by is None or not self.attested_by(key, success.run_id)


def plan(
    sources: Mapping[str, SourceFile],
    recorded: Mapping[str, PartitionHistory],
    *,
    code_version: str,
    force: Iterable[str] | Mapping[str, str] = (),
    companions: Sequence[Mapping[str, PartitionHistory]] = (),
    only: Iterable[str] | None = None,
    source_problems: Mapping[str, str] | None = None,
    unavailable: Mapping[str, str] | None = None,
    missing_files: Mapping[str, Sequence[str]] | None = None,
    verifications: Verifications | None = None,
) -> list[PlanRow]:
    """One row per partition known to the source or the records, sorted by partition.

    Args:
        sources: the source file of each partition (from ``list_source`` or ``upstream_sources``).
        recorded: the histories of the primary table (from ``read_records``).
        code_version: the code version this run would record.
        force: keys to rebuild whatever their state; a mapping gives each key its own reason.
        companions: histories of the other tables one materialization writes; a partition is complete only
            when each companion's latest success has the primary's run id and, summed over companions,
            ``rows_written`` equals the primary's ``rows_quarantined``.
        only: restrict the rows to these keys (keys unknown to both sides yield no row).
        source_problems: keys whose source cannot be used (e.g. ``Listing.duplicates``), planned FAILED with
            the given reason so the run fails that partition alone.
        unavailable: keys the source did not answer for (``Listing.unavailable``), planned UNAVAILABLE with the
            given reason: not stale (nothing is known, nothing is touched) but a problem the run must report.
        missing_files: data files the log references that the store no longer has, per key (from
            ``files.missing_data_files``): such a partition plans FAILED ("data files referenced by the log are
            gone: ...") so the next run rewrites it, unless it is forced, rejected (its source cannot rebuild
            it: the reason says both) or orphaned (no source: the reason says the rows are lost).
        verifications: a table attesting each write (see :class:`Verifications`); a success it does not attest
            plans FAILED ("incomplete") unless its source or code changed, which already makes it stale.
    """
    if isinstance(force, str):  # one key, not its characters
        force = [force]
    if isinstance(only, str):
        only = [only]
    forced = dict(force) if isinstance(force, Mapping) else dict.fromkeys(force, FORCED_REASON)
    problems = dict(source_problems or {})
    unanswered = dict(unavailable or {})
    keys = set(sources) | set(recorded) | set(problems) | set(unanswered)
    if only is not None:
        keys &= set(only)
    rows = []
    for key in sorted(keys):
        history = recorded.get(key, PartitionHistory())
        if key in unanswered and key not in problems:
            row: PlanRow | None = _unavailable(key, history, unanswered[key])
        else:
            gone = _gone(missing_files.get(key, ()) if missing_files else ())
            row = _judge(key, sources.get(key), history, code_version, forced, companions, problems.get(key), gone)
        if row is not None and row.state is PartitionState.FRESH and verifications is not None:
            success = history.latest_success
            if success is not None and verifications.missing(key, success):
                reason = f"incomplete: run {success.run_id} committed it but recorded no verification"
                row = replace(row, state=PartitionState.FAILED, reason=reason)
        if row is not None:
            rows.append(row)
    return rows


def _unavailable(key: str, history: PartitionHistory, reason: str) -> PlanRow:
    success = history.latest_success
    return PlanRow(
        key,
        PartitionState.UNAVAILABLE,
        f"the source did not answer: {reason}; nothing was changed, the next run asks again",
        recorded_fingerprint=success.source_fingerprint if success else None,
        rows=success.rows_written if success else None,
        recorded_code_version=success.code_version if success else None,
        last_run_id=history.latest.run_id if history.latest else None,
    )


def _judge(
    key: str,
    source: SourceFile | None,
    history: PartitionHistory,
    code_version: str,
    forced: Mapping[str, str],
    companions: Sequence[Mapping[str, PartitionHistory]],
    problem: str | None,
    gone: str = "",
) -> PlanRow | None:
    success, failure = history.latest_success, history.latest_failure
    facts = {
        "source_uri": source.uri if source else None,
        "source_fingerprint": source.fingerprint if source else None,
        "recorded_fingerprint": success.source_fingerprint if success else None,
        "rows": success.rows_written if success else None,
        "recorded_code_version": success.code_version if success else None,
        "last_run_id": history.latest.run_id if history.latest else None,
    }

    def row(state: PartitionState, reason: str) -> PlanRow:
        return PlanRow(key, state, reason, **facts)  # type: ignore[arg-type]

    if problem is not None:
        return row(PartitionState.FAILED, f"source cannot be used: {problem}")
    if source is None:
        if success is not None:
            what = "a success is recorded"
        elif failure is not None:
            what = f"only a {failure.status} attempt is recorded"
        else:
            return None
        kept = f"{gone}, so those rows are lost" if gone else "the table keeps its rows"
        return row(PartitionState.ORPHANED, f"source file is gone but {what}; {kept}")
    if key in forced:
        if success is None and failure is None:  # named, but there is nothing to force: say what it is
            return row(PartitionState.MISSING, f"never materialized ({forced[key]})")
        return row(PartitionState.FORCED, forced[key])
    if failure is not None and failure.rejected:
        state, reason = _after_rejection(failure, source, code_version)
        if gone and state is PartitionState.REJECTED:  # nothing can rebuild it from this source: say both
            reason = f"{reason}; and {gone}"
        return row(state, reason)
    if gone:
        return row(PartitionState.FAILED, f"{gone}; the next run rewrites the partition")
    if failure is not None:
        error = failure.error or "no error message recorded"
        return row(PartitionState.FAILED, f"last attempt failed (run {failure.run_id}): {error}")
    if success is None:
        return row(PartitionState.MISSING, "never materialized")
    if incomplete := _incompleteness(success, key, companions):
        return row(PartitionState.FAILED, f"incomplete: {incomplete}")
    source_changed = success.source_fingerprint != source.fingerprint
    code_changed = success.code_version != code_version
    if source_changed or code_changed:
        state = PartitionState.SOURCE_CHANGED if source_changed else PartitionState.CODE_CHANGED
        return row(state, _changes(success, source, code_version))
    return row(PartitionState.FRESH, f"up to date since run {success.run_id} (version {success.version})")


def _gone(paths: Sequence[str], show: int = 3) -> str:
    """The reason for lost data files, naming the first ``show`` of them; "" for none."""
    if not paths:
        return ""
    names = ", ".join(paths[:show]) + (f" (+{len(paths) - show} more)" if len(paths) > show else "")
    return f"data files referenced by the log are gone: {names}"


def _after_rejection(
    rejection: MaterializationRecord, source: SourceFile, code_version: str
) -> tuple[PartitionState, str]:
    """A rejected input stays rejected while it and the code are unchanged; any change earns a new attempt."""
    error = rejection.error or "no error message recorded"
    if not rejection.source_fingerprint:  # nothing to compare with: retrying is the only way to know
        return PartitionState.FAILED, (
            f"last attempt rejected (run {rejection.run_id}) but recorded no source fingerprint, so it is "
            f"retried: {error}"
        )
    source_changed = rejection.source_fingerprint != source.fingerprint
    if source_changed or rejection.code_version != code_version:
        state = PartitionState.SOURCE_CHANGED if source_changed else PartitionState.CODE_CHANGED
        return state, f"{_changes(rejection, source, code_version)} since run {rejection.run_id} rejected it"
    return PartitionState.REJECTED, (
        f"rejected by run {rejection.run_id}; not retried until the source file or the code changes: {error}"
    )


def _changes(record: MaterializationRecord, source: SourceFile, code_version: str) -> str:
    """What moved since ``record``: the source fingerprint, the code version, or both ("; "-joined)."""
    changes = []
    if record.source_fingerprint != source.fingerprint:
        old, new = _short(record.source_fingerprint), _short(source.fingerprint)
        changes.append(f"source fingerprint changed: {old!r} -> {new!r}")
    if record.code_version != code_version:
        changes.append(f"code version changed: {record.code_version!r} -> {code_version!r}")
    return "; ".join(changes)


def _incompleteness(
    success: MaterializationRecord, key: str, companions: Sequence[Mapping[str, PartitionHistory]]
) -> str:
    """Why the success of ``key`` is not a whole materialization, or "" when it is."""
    written, quarantined, source_rows = success.rows_written, success.rows_quarantined, success.rows_source
    if source_rows is not None and quarantined is not None and source_rows != written + quarantined:
        return (
            f"rows not conserved in run {success.run_id}: {source_rows} read != "
            f"{written} written + {quarantined} quarantined"
        )
    companion_rows = 0
    for index, companion in enumerate(companions):
        other = companion.get(key, PartitionHistory()).latest_success
        if other is None:
            return f"companion table #{index + 1} has no success for run {success.run_id}"
        if other.run_id != success.run_id:
            return (
                f"companion table #{index + 1} was last written by run {other.run_id}, "
                f"the primary by run {success.run_id}"
            )
        companion_rows += other.rows_written
    if companions and quarantined is not None and companion_rows != quarantined:
        return f"companion tables hold {companion_rows} rows but run {success.run_id} quarantined {quarantined}"
    return ""


def upstream_sources(upstream: Mapping[str, PartitionHistory], *, table: str = "") -> dict[str, SourceFile]:
    """Treat the latest successes of an upstream partitioned asset as the source files of a downstream one.

    The fingerprint is the upstream run id, so a downstream partition that recorded that run id as its
    ``source_fingerprint`` is fresh, and plans SOURCE_CHANGED once the upstream partition is rematerialized.

    Only successes count: an upstream attempt that failed or was rejected after its success left the upstream
    rows as they were, so the downstream partition built from them stays fresh (the upstream's own plan shows
    the failure). An upstream partition that never succeeded gives the downstream no source. A downstream
    attempt that is itself rejected records the upstream run id as its fingerprint, so it plans REJECTED until
    the upstream partition is rebuilt or the downstream code changes.
    """
    return {
        key: SourceFile(
            partition=key,
            uri=f"upstream:{table}",
            size=history.latest_success.rows_written,
            fingerprint=history.latest_success.run_id,
            last_modified=None,
        )
        for key, history in sorted(upstream.items())
        if history.latest_success is not None
    }


def _short(fingerprint: str, keep: int = 24) -> str:
    """Long content hashes cut for a readable sentence; the full values stay on the PlanRow."""
    return fingerprint if len(fingerprint) <= keep + 1 else fingerprint[:keep] + "…"
