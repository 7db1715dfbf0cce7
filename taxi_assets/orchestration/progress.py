"""Months done / failed while a run is under way, for whoever in this process wants to show it.

The flow reports to a listener installed by the caller (the CLI installs a Rich progress bar); a deployment's
run has none and reports nowhere. A module-level listener rather than a flow parameter: a callback is not a
parameter Prefect could serialize, and the flow runs in the caller's process and thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class MonthListener(Protocol):
    def started(self, months: list[str]) -> None: ...
    def finished(self, month: str, ok: bool) -> None: ...


_listener: MonthListener | None = None


def months_started(months: list[str]) -> None:
    """The run is about to materialize ``months`` (one task each)."""
    if _listener is not None:
        _listener.started(months)


def month_finished(month: str, ok: bool) -> None:
    """One month's task ended: committed and checked (``ok``), or failed."""
    if _listener is not None:
        _listener.finished(month, ok)


class _RichMonths:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.failed: list[str] = []

    def started(self, months: list[str]) -> None:
        self.task = self.progress.add_task("months", total=len(months), failed="")

    def finished(self, month: str, ok: bool) -> None:
        if self.task is None:
            return
        if not ok:
            self.failed.append(month)
        failed = f"[red]failed: {', '.join(self.failed)}[/]" if self.failed else ""
        self.progress.update(self.task, advance=1, failed=failed)


@contextlib.contextmanager
def month_progress(console: Console, *, enabled: bool = True) -> Iterator[None]:
    """Show months done / failed on ``console`` while the block runs (nothing when not ``enabled``)."""
    global _listener
    if not enabled:
        yield
        return
    progress = Progress(
        TextColumn("materializing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("month(s)"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]}"),
        console=console,
        transient=False,
    )
    previous, _listener = _listener, _RichMonths(progress)
    try:
        with progress:
            yield
    finally:
        _listener = previous
