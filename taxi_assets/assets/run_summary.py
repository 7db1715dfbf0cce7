"""What one run did, as one typed object: the flow returns it, the CLI and the demo print it, ``--json`` dumps it.

It lives beside the assets, not in ``orchestration``: a run with nothing stale builds one without importing
Prefect, and every consumer reads attributes that mypy checks instead of string keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from taxi_assets.assets.daily_summary import stale_summary_months
from taxi_assets.assets.trips import MonthPlan, MonthResult
from taxi_assets.settings import Settings


def has_work(cfg: Settings, plan: MonthPlan) -> bool:
    """Whether a run has anything to do: a stale trips month, or a stale daily_summary month on its own.

    The one gate the CLI's no-op path and the demo share: when it is False, nothing imports Prefect or starts a
    cluster. (The flow, once started, decides per step: months to fan out, summaries to rebuild.)
    """
    return bool(plan.stale) or bool(stale_summary_months(cfg))


@dataclass
class RunSummary:
    """One run: the plan's counts, the months written or failed, the cluster, the checks, the commits' contention.

    ``results`` holds one :class:`MonthResult` per month the run started (failed ones with ``ok=False`` and
    ``error``); ``failed`` lists every month that made the run fail, with their causes in ``results`` or, for
    months never started (unavailable, unusable source), in the ``PartitionsFailed`` the flow raises.
    """

    run_id: str | None
    planned: int
    states: dict[str, int]
    stale: list[str]
    rejected: list[str]
    unavailable: list[str]
    plan_seconds: float = 0.0
    results: list[MonthResult] = field(default_factory=list)
    cluster: dict[str, Any] | None = None  # RunningCluster.summary(): kind, shape and why, start-up, seconds
    failed: list[str] = field(default_factory=list)
    daily_summary: list[str] = field(default_factory=list)  # months whose summary this run committed
    verified: dict[str, dict[str, int]] = field(default_factory=dict)  # month -> passed/total checks re-read
    seconds: float = 0.0

    @classmethod
    def of_plan(cls, plan: MonthPlan, *, run_id: str | None, plan_seconds: float = 0.0) -> RunSummary:
        return cls(
            run_id=run_id,
            planned=len(plan.rows),
            states=plan.counts(),
            stale=[r.partition for r in plan.stale],
            rejected=[r.partition for r in plan.rejected],
            unavailable=sorted(plan.unavailable),
            plan_seconds=plan_seconds,
        )

    @property
    def written(self) -> list[str]:
        """Months this run committed (not those another run built meanwhile from the same bytes)."""
        return [r.partition for r in self.results if r.ok and not r.built_by]

    @property
    def commits(self) -> dict[str, float]:
        """The months' commit counts summed (commits, attempts, conflicts, rebased, retries, backoff seconds)."""
        total: dict[str, float] = {}
        for r in self.results:
            for key, value in r.commits.items():
                total[key] = round(total.get(key, 0) + value, 3)
        return total

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``--json``, artifacts); the derived ``written`` and ``commits`` included."""
        return {**asdict(self), "written": self.written, "commits": self.commits}
