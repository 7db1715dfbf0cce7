"""Prefect flows: plan (cheap, no cluster), then only when something is stale a materialization flow on a
Dask task runner with one task per month, each verified by DuckDB, then a summary.

No business rule lives here: every task is one call into :mod:`taxi_assets.steps`. Flow parameters are plain
strings and lists: credentials are resolved inside the flow (environment or a Prefect block), so they never
land in the Prefect database as parameters.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task

from partitions.errors import Transient
from partitions.source import SourceFile
from taxi_assets.cluster import choose_cluster, task_runner_for
from taxi_assets.errors import PartitionsFailed
from taxi_assets.settings import Settings
from taxi_assets.steps import MonthResult, new_run_id, plan_months, run_month


def _prefect_api_env() -> dict[str, str]:
    """This run's Prefect API URL (the ephemeral server's, when no PREFECT_API_URL is set), for workers."""
    with get_client(sync_client=True) as client:
        return {"PREFECT_API_URL": str(client.api_url)}


def retry_if_transient(task: Task[Any, Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry only what a retry can fix: network and throttling errors, not a bad file."""
    try:
        state.result()
    except Transient:
        return True
    except Exception:
        return False
    return False


@task(
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=retry_if_transient,
    task_run_name="materialize-{source.partition}",
)
def materialize_task(source: SourceFile, cfg: Settings, run_id: str, code_version: str) -> MonthResult:
    return run_month(source, cfg, run_id=run_id, code_version=code_version)


@flow(name="fhvhv-materialize")
def materialize_months(
    months: list[str], source: str, sink: str, cluster: str, run_id: str, code_version: str
) -> list[dict[str, Any]]:
    """One task per month on the Dask cluster of this flow's task runner; a failed month fails only itself."""
    cfg = Settings.resolve(source=source, sink=sink, cluster=cluster)
    plan = plan_months(cfg, partitions=months)
    files = [plan.listing.files[m] for m in months]
    futures = [materialize_task.submit(f, cfg, run_id, code_version) for f in files]
    out: list[dict[str, Any]] = []
    for month, fut in zip(months, futures, strict=True):
        fut.wait()
        state = fut.state
        if state.is_completed():
            out.append(asdict(fut.result()))
        else:
            err = state.result(raise_on_failure=False)
            out.append(asdict(MonthResult(partition=month, ok=False, error=str(err))))
    return out


@flow(name="fhvhv-pipeline", log_prints=True)
def fhvhv_pipeline(
    intent: str = "",
    partitions: list[str] | None = None,
    source: str | None = None,
    sink: str | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Plan the months; when some are stale, materialize and verify exactly those on a fresh cluster."""
    logger = get_run_logger()
    cfg = Settings.resolve(source=source, sink=sink, cluster=cluster)
    plan = plan_months(cfg, intent=intent, partitions=partitions)
    for skipped in plan.listing.skipped:
        logger.warning("skipped source file %s: %s", skipped.uri, skipped.reason)
    create_table_artifact(
        key="fhvhv-plan",
        table=[{"partition": r.partition, "state": str(r.state), "reason": r.reason} for r in plan.rows],
        description=f"Plan for {cfg.sink} (code version {plan.code_version})",
    )
    stale = [r.partition for r in plan.stale]
    summary: dict[str, Any] = {
        "run_id": new_run_id(),
        "planned": len(plan.rows),
        "stale": stale,
        "results": [],
    }
    if not stale:
        logger.info("nothing stale in %s: no cluster started", cfg.sink)
        summary["cluster"] = None
        return summary
    spec = choose_cluster(cfg.cluster, stale_months=len(stale))
    logger.info(
        "%d stale month(s); starting a %s cluster with %d worker(s)", len(stale), spec.kind, spec.n_workers
    )
    t0 = time.perf_counter()
    runner = task_runner_for(spec, worker_env=_prefect_api_env())
    results = materialize_months.with_options(task_runner=runner)(
        months=stale,
        source=cfg.source,
        sink=cfg.sink,
        cluster=cfg.cluster,
        run_id=summary["run_id"],
        code_version=plan.code_version,
    )
    summary["cluster"] = {
        "kind": spec.kind,
        "workers": spec.n_workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    summary["results"] = results
    create_table_artifact(
        key="fhvhv-results",
        table=[
            {
                k: r[k]
                for k in (
                    "partition",
                    "ok",
                    "rows_source",
                    "rows_written",
                    "rows_quarantined",
                    "seconds",
                    "error",
                )
            }
            for r in results
        ],
        description="Per-month results of this run",
    )
    failures = {r["partition"]: r["error"] for r in results if not r["ok"]}
    if failures:
        raise PartitionsFailed(failures)
    return summary
