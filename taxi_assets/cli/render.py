"""Human and machine renderings of plans, statuses and run results (rich tables, JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from partitions.records import PartitionHistory
from partitions.staleness import PartitionState, PlanRow

if TYPE_CHECKING:  # `sql` imports this module and must not load the assets
    from taxi_assets.assets.trips import MonthResult
    from taxi_assets.checks.republication import Audit

STATE_STYLE = {
    PartitionState.FRESH: "green",
    PartitionState.MISSING: "cyan",
    PartitionState.SOURCE_CHANGED: "yellow",
    PartitionState.CODE_CHANGED: "magenta",
    PartitionState.FAILED: "red",
    PartitionState.FORCED: "blue",
    PartitionState.REJECTED: "red dim",  # refused as it is: not retried until the file or the code changes
    PartitionState.UNAVAILABLE: "bold red",  # the source did not answer: the run ends non-zero
    PartitionState.ORPHANED: "dim",
}


def state_counts_line(counts: Mapping[str, int], *, total: int) -> str:
    """``5 month(s): 2 fresh, 1 missing, 1 rejected, 1 unavailable``, each state in its table colour."""
    parts = []
    for state, n in counts.items():
        style = STATE_STYLE.get(PartitionState(state), "")
        parts.append(f"{n} [{style}]{state}[/]" if style else f"{n} {state}")
    return f"{total} month(s): {', '.join(parts)}" if parts else "0 month(s)"


def status_rows(rows: Sequence[PlanRow], recorded: Mapping[str, PartitionHistory]) -> list[dict[str, Any]]:
    """One JSON-ready object per month: the plan row plus what the log recorded for it.

    ``republished`` is the audit the month's newest success kept when that build was a re-publication of its
    source (None otherwise); a fresh month's reason ends with its one-line summary. A month stale because its
    source changed cannot know its delta yet: it shows once the run rebuilt it.
    """
    from taxi_assets.checks.republication import (
        Audit as Recorded,
    )  # here: `sql` imports this module, and needs no DuckDB audit

    out = []
    for r in rows:
        h = recorded.get(r.partition)
        ok = h.latest_success if h else None
        audit = Recorded.from_extra(ok.extra) if ok else None
        reason = r.reason
        if audit is not None and r.state is PartitionState.FRESH:
            reason = f"{reason}; {audit.summary()}"
        out.append(
            {
                "partition": r.partition,
                "state": str(r.state),
                "reason": reason,
                "source_fingerprint": r.source_fingerprint,
                "recorded_fingerprint": r.recorded_fingerprint,
                "rows": r.rows,
                "rows_quarantined": ok.rows_quarantined if ok else None,
                "rows_source": ok.rows_source if ok else None,
                "code_version": ok.code_version if ok else None,
                "table_version": ok.version if ok else None,
                "run_id": ok.run_id if ok else None,
                "finished_at": ok.finished_at if ok else None,
                "source_uri": r.source_uri,
                "republished": _audit_json(audit),
            }
        )
    return out


def _audit_json(audit: Audit | None) -> dict[str, Any] | None:
    """The recorded re-publication audit as numbers and texts (``Audit``; None when there is none)."""
    if audit is None:
        return None
    return {
        "from_version": audit.from_version,
        "rows_before": audit.rows_before,
        "rows_after": audit.rows_after,
        "row_delta": audit.row_delta,
        "by_company": audit.by_company,
        "columns": audit.columns,
        "trips_new": audit.trips_new,
        "trips_gone": audit.trips_gone,
        "trips_new_pct": round(audit.new_share, 2),
        "trips_gone_pct": round(audit.gone_share, 2),
        "summary": audit.summary(),
    }


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def months_table(rows: Sequence[Mapping[str, Any]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("month", "left"),
        ("state", "left"),
        ("rows", "right"),
        ("quarantined", "right"),
        ("table v.", "right"),
        ("reason", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        style = STATE_STYLE.get(PartitionState(r["state"]), "")
        table.add_row(
            r["partition"],
            f"[{style}]{r['state']}[/]",
            _num(r.get("rows")),
            _num(r.get("rows_quarantined")),
            _num(r.get("table_version")),
            r["reason"],
        )
    return table


def results_table(results: Sequence[MonthResult]) -> Table:
    table = Table(title="Materialized months", title_justify="left")
    for name in ("month", "ok", "source rows", "clean", "quarantined", "seconds", "checks", "error"):
        table.add_column(
            name, justify="right" if name in ("source rows", "clean", "quarantined", "seconds") else "left"
        )
    for r in results:
        passed = sum(1 for c in r.checks if c["passed"])
        table.add_row(
            r.partition,
            "[green]yes[/]" if r.ok else "[red]no[/]",
            _num(r.rows_source),
            _num(r.rows_written),
            _num(r.rows_quarantined),
            f"{r.seconds:.1f}",
            f"{passed}/{len(r.checks)} passed" if r.checks else "-",
            (r.error or (f"built meanwhile by run {r.built_by}" if r.built_by else ""))[:160],
        )
    return table


def checks_table(results: Sequence[MonthResult]) -> Table:
    """One row per month, one column per check: readable at a glance; failures say what was observed."""
    names: list[str] = []
    for r in results:
        for c in r.checks:
            if str(c["check"]) not in names:
                names.append(str(c["check"]))
    table = Table(title="DuckDB checks on the committed versions", title_justify="left")
    table.add_column("month")
    table.add_column("table v.", justify="right")
    for name in names:
        table.add_column(name.replace("_", " "), justify="center")
    for r in results:
        by_name = {str(c["check"]): c for c in r.checks}
        if not by_name:
            continue
        cells = []
        for name in names:
            found = by_name.get(name)
            if found is None:
                cells.append("-")
            elif found["passed"]:
                cells.append("[green]pass[/]")
            else:
                cells.append(f"[red]FAIL[/] {found['observed']} vs {found['expected']}")
        version = next(iter(by_name.values()))["table_version"]
        table.add_row(r.partition, str(version), *cells)
    return table


def _num(v: object) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def console() -> Console:
    """Wide enough for the tables when output goes to a file or CI log (rich assumes 80 columns there)."""
    probe = Console()
    return Console(highlight=False, width=None if probe.is_terminal else 160)
