"""The report's partition health grid and re-publication history, read from the sink's Delta logs only.

The grid is the sink's view of each month x asset (``trips``, ``quarantine``, ``daily_summary``, ``checks``),
like the partition status view data engineers know from Dagster: ``fresh``, ``stale`` (with the cause: code
changed, written from an older trips run, not verified), ``failed``, ``rejected`` or ``missing``. It needs no
source listing, so it cannot know that a source file changed since: ``taxi-assets plan`` says that.

The history lists every commit of every month in ``trips`` (``DeltaTable.history``: version, time, record),
with the row delta against the month's previous success and why it was written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from deltalake import DeltaTable

from partitions.delta_log import read_records
from partitions.keys import parse_month
from partitions.records import PartitionHistory
from taxi_assets.model.code_version import daily_summary_code_version, trips_code_version

State = Literal["fresh", "stale", "failed", "rejected", "missing"]
ASSETS: Final = ("trips", "quarantine", "daily_summary", "checks")
STATES: Final[tuple[State, ...]] = ("fresh", "stale", "failed", "rejected", "missing")
_PREFIX: Final = "partitions."


@dataclass(frozen=True, slots=True)
class Cell:
    """One month x asset of the grid: its state and, unless fresh, why."""

    state: State
    why: str = ""


def month_range(months: Iterable[str]) -> list[str]:
    """Every month from the first to the last of ``months``, so a gap shows as a gap (sorted, no duplicates)."""
    keys = sorted({parse_month(m) for m in months})
    if not keys:
        return []
    out, year, month = [], int(keys[0][:4]), int(keys[0][5:])
    while (current := f"{year:04d}-{month:02d}") <= keys[-1]:
        out.append(current)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def health_grid(
    sink: str,
    latest_checks: Sequence[Mapping[str, Any]],
    *,
    months: Sequence[str] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Cell]]:
    """``{month: {asset: Cell}}`` over every month from the first to the last known (or over ``months``).

    ``latest_checks`` are the newest result of each check of each month (``queries.latest_checks``): rows with
    ``month``, ``check``, ``passed`` and ``run_id``.
    """
    trips = read_records(f"{sink}/trips", storage_options=storage_options)
    quarantine = read_records(f"{sink}/quarantine", storage_options=storage_options)
    summary = read_records(f"{sink}/daily_summary", storage_options=storage_options)
    keys = month_range(months if months else trips.keys() | quarantine.keys() | summary.keys())
    checks: dict[str, list[Mapping[str, Any]]] = {}
    for row in latest_checks:
        checks.setdefault(str(row["month"]), []).append(row)
    return {
        m: {
            "trips": _trips_cell(trips.get(m)),
            "quarantine": _quarantine_cell(trips.get(m), quarantine.get(m)),
            "daily_summary": _summary_cell(trips.get(m), summary.get(m)),
            "checks": _checks_cell(trips.get(m), checks.get(m, [])),
        }
        for m in keys
    }


def _failure(history: PartitionHistory) -> Cell | None:
    failure = history.latest_failure
    if failure is None:
        return None
    return Cell("rejected" if failure.rejected else "failed", failure.error or "last attempt failed")


def _trips_cell(history: PartitionHistory | None) -> Cell:
    if history is None:
        return Cell("missing", "never materialized")
    if (failed := _failure(history)) is not None:
        return failed
    ok = history.latest_success
    assert ok is not None  # a history holds a success or a failure
    if ok.code_version != trips_code_version():
        return Cell("stale", f"code changed: written by {ok.code_version}, now {trips_code_version()}")
    return Cell("fresh")


def _quarantine_cell(trips: PartitionHistory | None, history: PartitionHistory | None) -> Cell:
    ok = trips.latest_success if trips else None
    q_ok = history.latest_success if history else None
    if ok is None or q_ok is None:
        return Cell("missing", "no successful write")
    if q_ok.run_id != ok.run_id:
        return Cell("stale", f"from run {q_ok.run_id}, trips from run {ok.run_id}: a run died between its commits")
    return Cell("fresh")


def _summary_cell(trips: PartitionHistory | None, history: PartitionHistory | None) -> Cell:
    ok = trips.latest_success if trips else None
    if history is None or ok is None:
        return Cell("missing", "never computed" if ok else "no trips to summarize")
    if (failed := _failure(history)) is not None:
        return failed
    summary = history.latest_success
    assert summary is not None
    if summary.source_fingerprint != ok.run_id:
        return Cell("stale", f"computed from trips run {summary.source_fingerprint}; trips rebuilt by run {ok.run_id}")
    if summary.code_version != daily_summary_code_version():
        return Cell("stale", f"code changed: written by {summary.code_version}, now {daily_summary_code_version()}")
    return Cell("fresh")


def _checks_cell(trips: PartitionHistory | None, latest: Sequence[Mapping[str, Any]]) -> Cell:
    ok = trips.latest_success if trips else None
    if ok is None:
        return Cell("missing", "no trips to check")
    mine = [row for row in latest if row.get("run_id") == ok.run_id]
    if not mine:
        return Cell("stale", f"no check recorded for trips run {ok.run_id}") if latest else Cell("missing", "never")
    failed = sorted(str(row["check"]) for row in mine if not row["passed"])
    if failed:
        return Cell("failed", "failed: " + ", ".join(failed))
    return Cell("fresh", f"{len(mine)} passed")


def publication_history(
    trips_uri: str, *, months: Sequence[str] | None = None, storage_options: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every commit of every month in ``trips``, oldest first, with its row delta and the cause of the rewrite.

    ``cause``: ``first`` (the month's first success), ``source re-published`` (new source fingerprint),
    ``code changed``, ``re-run`` (same source and code), or the status of a failed / rejected attempt.
    ``row_delta`` is against the month's previous success (None for the first).
    """
    table = DeltaTable(trips_uri, storage_options=dict(storage_options or {}) or None)
    wanted = set(months) if months else None
    rows: list[dict[str, Any]] = []
    previous: dict[str, dict[str, Any]] = {}
    for commit in sorted(table.history(), key=lambda c: c["version"]):
        month = commit.get(f"{_PREFIX}partition")
        if not month or (wanted is not None and month not in wanted):
            continue
        status = str(commit.get(f"{_PREFIX}status", ""))
        written = _int(commit.get(f"{_PREFIX}rows_written"))
        row = {
            "month": month,
            "version": commit["version"],
            "committed_at": datetime.fromtimestamp(commit["timestamp"] / 1000, tz=UTC),
            "status": status,
            "rows": written if status == "success" else None,
            "rows_source": _int(commit.get(f"{_PREFIX}rows_source")),
            "rows_quarantined": _int(commit.get(f"{_PREFIX}rows_quarantined")),
            "source_fingerprint": str(commit.get(f"{_PREFIX}source_fingerprint", "")),
            "code_version": str(commit.get(f"{_PREFIX}code_version", "")),
            "run_id": str(commit.get(f"{_PREFIX}run_id", "")),
            "row_delta": None,
            "cause": status,
        }
        if status == "success":
            before = previous.get(month)
            if before is None:
                row["cause"] = "first"
            else:
                row["row_delta"] = (written or 0) - (before["rows"] or 0)
                if row["source_fingerprint"] != before["source_fingerprint"]:
                    row["cause"] = "source re-published"
                elif row["code_version"] != before["code_version"]:
                    row["cause"] = "code changed"
                else:
                    row["cause"] = "re-run"
            previous[month] = row
        rows.append(row)
    return rows


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
