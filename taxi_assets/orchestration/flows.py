"""Prefect flows: plan (cheap, no cluster); only when something is stale, a materialization flow on a Dask task
runner with one task per month; then the run's verification, read back from the checks table, and a summary.

The flow ``fhvhv-pipeline`` (:func:`fhvhv_pipeline`, what ``prefect.yaml`` and the CLI run) lists the source,
plans, publishes the plan, and returns early when no trips month is stale: no cluster,
no materialization flow (stale ``daily_summary`` months alone are rebuilt in the flow process). Otherwise it
sizes a cluster from the stale months, starts it, runs ``fhvhv-materialize`` on it and closes it on every way
out. Each month task holds the month's global concurrency slot (``fhvhv-month-YYYY-MM``, limit 1), so two runs
never write the same month at once, and reports itself as a Prefect asset materialization of the Delta tables.

No business rule lives here: every task is one call into :mod:`taxi_assets.assets` or :mod:`taxi_assets.checks`.
Flow parameters are plain strings and lists: credentials are resolved inside the flow body (environment or a
Prefect block), so they never land in the Prefect database as parameters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow.compute as pc
from deltalake.exceptions import TableNotFoundError
from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.assets import Asset, AssetProperties, add_asset_metadata
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.futures import as_completed
from prefect.states import State
from prefect.tasks import MaterializingTask, Task

from partitions.errors import Transient
from partitions.source import SourceFile
from partitions.staleness import PartitionState
from partitions.storage_errors import open_table
from taxi_assets.assets.daily_summary import materialize_daily_summary, plan_daily_summary, stale_summary_months
from taxi_assets.assets.run_summary import RunSummary
from taxi_assets.assets.trips import (
    MonthPlan,
    MonthResult,
    built_meanwhile,
    new_run_id,
    nothing_stale_line,
    plan_months,
    run_month,
)
from taxi_assets.assets.zones import materialize_zones, zones_uri
from taxi_assets.errors import ConfigurationError, PartitionsFailed, SourceRejected
from taxi_assets.model.intents import Intent
from taxi_assets.orchestration import progress
from taxi_assets.orchestration.cluster import (
    apply_worker_thread_share,
    choose_cluster,
    preflight_coiled,
    start_cluster,
    task_runner_for,
)
from taxi_assets.orchestration.month_lock import hold_month
from taxi_assets.settings import S3Credentials, Settings

MONTH_LIMIT_PREFIX: Final = "fhvhv-month-"
RETRY_DELAYS: Final[list[float]] = [
    5,
    30,
    120,
]  # seconds; with jitter, so retrying months do not hit the source in step
# Characters Prefect refuses in an asset key; replaced so any path or URI gives a stable, valid key.
_ASSET_KEY_REFUSED: Final = "\n\r\t\0 #?&%\"'<>[]{}|\\^`"


def month_limit(month: str) -> str:
    """Name of the global concurrency limit (limit 1) that guards one month across all runs."""
    return f"{MONTH_LIMIT_PREFIX}{month}"


def asset_key(uri: str) -> str:
    """The Prefect asset key of a table or file: the URI itself; a local path becomes ``file://<absolute path>``."""
    key = uri if "://" in uri else Path(uri).absolute().as_uri()
    return "".join("_" if ch in _ASSET_KEY_REFUSED else ch for ch in key)


def retry_if_transient(task: Task[Any, Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry only what a retry can fix: network and throttling errors (``Transient``), not a bad file."""
    return isinstance(state.result(raise_on_failure=False), Transient)


def _load_aws_block(name: str) -> S3Credentials:
    """S3 credentials from the ``prefect_aws.AwsCredentials`` block ``name`` on the current Prefect API."""
    from prefect_aws import AwsCredentials

    try:
        block = AwsCredentials.load(name)
    except ValueError as exc:
        raise ConfigurationError(
            "aws_block",
            f"no AwsCredentials block named {name!r} on this Prefect API ({exc}); create it in the UI or with "
            "AwsCredentials(...).save(name), or unset TAXI_ASSETS_AWS_BLOCK to use the AWS_* environment",
        ) from None
    return S3Credentials.from_aws_block(block)


def resolve_settings(
    *,
    source: str | None,
    sink: str | None,
    cluster: str | None,
    aws_block: str | None,
    source_anonymous: bool | None,
) -> Settings:
    """Flow parameters > environment > the AWS block (loaded here, in the flow body) > defaults.

    The engine's settings (``TAXI_ASSETS_NETWORK_TIMEOUT`` as ``PARTITIONS_NETWORK_TIMEOUT``) are put into this
    process's environment, where ``partitions`` reads them at each call.
    """
    cfg = Settings.resolve(
        source=source,
        sink=sink,
        cluster=cluster,
        aws_block=aws_block,
        source_anonymous=source_anonymous,
        block_loader=_load_aws_block,
    )
    cfg.apply_engine_env()
    return cfg


@task(
    name="plan-months",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def plan_task(cfg: Settings, intent: str, partitions: list[str] | str | None) -> MonthPlan:
    """List the source and read the sink's log once; raises on a bad intent, key or a month not in the source."""
    return plan_months(cfg, intent=intent, partitions=partitions)


def _materialize_one(
    source: SourceFile,
    cfg: Settings,
    run_id: str,
    code_version: str,
    seen_run_id: str | None = None,
    forced: bool = False,
) -> MonthResult:
    """One month under its concurrency slot, then its metadata on the Prefect assets (the two Delta tables)."""
    apply_worker_thread_share()  # Arrow, DuckDB and the encoders sized to this worker's share of the cores
    with hold_month(
        month_limit(source.partition),
        partition=source.partition,
        run_id=run_id,
        timeout_seconds=cfg.lock_timeout_seconds,
    ):  # waits for a live holder, releases a dead one; MonthBusy names the holder when the wait ends
        meanwhile = built_meanwhile(
            source, cfg, run_id=run_id, code_version=code_version, seen_run_id=seen_run_id, forced=forced
        )
        if meanwhile is not None:  # another run built it while we waited: same bytes, same code
            get_run_logger().info("%s: built meanwhile by run %s; not rebuilt", source.partition, meanwhile.built_by)
            return meanwhile
        result = run_month(source, cfg, run_id=run_id, code_version=code_version)
    common = {"partition": result.partition, "run_id": run_id, "code_version": code_version, "source": source.uri}
    add_asset_metadata(
        asset_key(cfg.trips_uri),
        {**common, "rows": result.rows_written, "table_version": result.trips_version, "seconds": result.seconds},
    )
    add_asset_metadata(
        asset_key(cfg.quarantine_uri),
        {**common, "rows": result.rows_quarantined, "table_version": result.quarantine_version},
    )
    return result


def month_task(cfg: Settings, source: SourceFile) -> MaterializingTask[..., MonthResult]:
    """The Prefect task for one month: materializes the trips and quarantine assets from the month's file.

    Built per month because a Prefect asset task names its assets (the sink's tables) and its upstream
    (this month's source file) when it is created. Retries back off, and only for transient I/O errors.
    """
    return MaterializingTask(
        fn=_materialize_one,
        assets=[
            Asset(key=asset_key(cfg.trips_uri), properties=AssetProperties(name="FHVHV trips (Delta)")),
            Asset(key=asset_key(cfg.quarantine_uri), properties=AssetProperties(name="FHVHV quarantine (Delta)")),
        ],
        asset_deps=[asset_key(source.uri)],
        materialized_by="taxi-assets",
        name="materialize-month",
        task_run_name=f"materialize-{source.partition}",
        retries=len(RETRY_DELAYS),
        retry_delay_seconds=RETRY_DELAYS,
        retry_jitter_factor=0.5,
        retry_condition_fn=retry_if_transient,
        cache_policy=NO_CACHE,  # a write is never skipped for a cached result; and inputs hold credentials
    )


@flow(name="fhvhv-materialize")
def materialize_months(
    files: list[SourceFile],
    run_id: str,
    code_version: str,
    source: str | None = None,
    sink: str | None = None,
    aws_block: str | None = None,
    source_anonymous: bool | None = None,
    seen: dict[str, str | None] | None = None,
    forced: list[str] | None = None,
) -> list[MonthResult]:
    """One task per month on this flow's Dask task runner; a failed month fails only itself.

    A month another run builds from the same bytes while this one waits for it is not built again
    (:func:`taxi_assets.assets.trips.built_meanwhile`): ``forced`` names the months planned forced, ``seen`` maps
    each month to the run of its newest record when the run planned.

    Returns a result per month in the order of ``files``; failed months have ``ok=False`` and the cause in
    ``error``. Credentials are resolved again here (the same precedence), never passed as parameters.
    """
    cfg = resolve_settings(
        source=source, sink=sink, cluster=None, aws_block=aws_block, source_anonymous=source_anonymous
    )
    progress.months_started([f.partition for f in files])
    seen = seen or {}
    pushed = set(forced or ())
    futures = [
        month_task(cfg, f).submit(f, cfg, run_id, code_version, seen.get(f.partition), f.partition in pushed)
        for f in files
    ]
    month_of = {id(fut): f.partition for f, fut in zip(files, futures, strict=True)}
    for done in as_completed(futures):
        done.wait()  # keeps the task's final state on the future (else `state` asks the API, which may lag)
        progress.month_finished(month_of[id(done)], done.state.is_completed())
    out: list[MonthResult] = []
    for f, fut in zip(files, futures, strict=True):
        state = fut.state
        if state.is_completed():
            out.append(fut.result())
        else:
            err = state.result(raise_on_failure=False)
            cause = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else str(state.message)
            # The first line: a library's message may carry more (delta-rs appends a Rust backtrace when
            # RUST_BACKTRACE is set); the whole of it is in the task's log.
            cause = (cause.strip().splitlines() or [""])[0]
            out.append(
                MonthResult(partition=f.partition, ok=False, error=cause, rejected=isinstance(err, SourceRejected))
            )
    return out


@task(
    name="daily-summary",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
)
def daily_summary_task(cfg: Settings, run_id: str) -> list[str]:
    """Rebuild the ``daily_summary`` months that are stale: upstream ``trips`` month changed, missing, code changed.

    Month tasks commit the summaries of the months they write, so after them this is a read of two Delta logs;
    it rebuilds a summary whose commit failed, and every month after a change of the summary's code. Runs in the
    flow process: one DuckDB scan of the committed trips version per month. The ``zones`` table (the lookup the
    summary names boroughs with) is written first, once per sink and lookup revision.
    """
    if (version := materialize_zones(cfg)) is not None:
        get_run_logger().info("zones: the zone lookup written to %s (version %d)", zones_uri(cfg), version)
    rebuilt = []
    for row in plan_daily_summary(cfg):
        if row.state.is_stale:
            materialize_daily_summary(row.partition, cfg, run_id=run_id)
            rebuilt.append(row.partition)
    return rebuilt


@task(
    name="verify-run",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,
)
def verify_run_task(cfg: Settings, run_id: str) -> dict[str, dict[str, int]]:
    """The run's verification as the warehouse records it: per month, the checks of this run that passed.

    Each month task ran its DuckDB checks on the versions it committed and appended them to ``<sink>/checks``;
    this step reads them back from that Delta table, so the summary reports the durable record, not task memory.
    A plain read of two columns filtered on the run (4 ms), not a DuckDB connection with every view of the sink
    (0.23 s of CPU beside the daily summary's aggregation, at the end of every run). No table: nothing recorded.
    """
    opts = cfg.storage_options(cfg.checks_uri)
    try:
        checks = open_table(cfg.checks_uri, storage_options=opts).to_pyarrow_dataset()
    except TableNotFoundError:
        return {}
    rows = checks.to_table(columns=["partition", "passed"], filter=pc.field("run_id") == run_id).to_pylist()
    verified: dict[str, dict[str, int]] = {}
    for row in rows:
        got = verified.setdefault(row["partition"], {"passed": 0, "total": 0})
        got["passed"] += int(bool(row["passed"]))
        got["total"] += 1
    return verified


def _ensure_month_limits(months: Sequence[str]) -> None:
    """Create the per-month concurrency limits (limit 1) that do not exist yet on this Prefect API.

    Prefect 3.8 refuses to acquire a slot of a limit that does not exist (``create_if_missing`` is gone);
    creating races harmlessly: the loser gets ``ObjectAlreadyExists``.
    """
    with get_client(sync_client=True) as client:
        for month in months:
            name = month_limit(month)
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                with contextlib.suppress(ObjectAlreadyExists):
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _worker_env(cfg: Settings) -> dict[str, str]:
    """Non-secret variables for the workers: this run's Prefect API (the ephemeral server's, when none is set),
    and the engine's settings (``PARTITIONS_NETWORK_TIMEOUT`` from ``TAXI_ASSETS_NETWORK_TIMEOUT``)."""
    with get_client(sync_client=True) as client:
        api = {"PREFECT_API_URL": str(client.api_url), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return {**api, **cfg.engine_env()}


def _private_env() -> dict[str, str]:
    """Secret variables remote workers need to report to Prefect Cloud: the API key, when one is set."""
    from prefect.settings import get_current_settings

    key = get_current_settings().api.key
    return {"PREFECT_API_KEY": key.get_secret_value()} if key else {}


def _coiled_token(cfg: Settings) -> str | None:
    """The Coiled token from the Prefect Secret block named in the settings; None lets Coiled find its own."""
    if not cfg.coiled.token_block:
        return None
    from prefect.blocks.system import Secret

    try:
        secret: Any = Secret.load(cfg.coiled.token_block)  # a sync call in a sync flow
        return str(secret.get())
    except ValueError as exc:
        raise ConfigurationError(
            "TAXI_ASSETS_COILED_TOKEN_BLOCK", f"no Secret block named {cfg.coiled.token_block!r} ({exc})"
        ) from None


def _publish_plan(cfg: Settings, plan: MonthPlan) -> None:
    rows = [{"partition": r.partition, "state": str(r.state), "reason": r.reason} for r in plan.rows]
    create_table_artifact(
        key="fhvhv-plan", table=rows, description=f"Plan for {cfg.sink} (code version {plan.code_version})"
    )


def _results_rows(results: Sequence[MonthResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        passed = sum(1 for c in r.checks if c.get("passed"))
        rows.append(
            {
                "partition": r.partition,
                "ok": r.ok,
                "rows_source": r.rows_source,
                "rows_written": r.rows_written,
                "rows_quarantined": r.rows_quarantined,
                "seconds": round(float(r.seconds), 2),
                "checks": f"{passed}/{len(r.checks)} passed" if r.checks else "-",
                "error": r.error,
            }
        )
    return rows


def _publish_summary(cfg: Settings, summary: RunSummary) -> None:
    """The run's results as a table artifact and a short markdown summary (what ran, where, how long)."""
    rows = _results_rows(summary.results)
    if rows:
        create_table_artifact(key="fhvhv-results", table=rows, description=f"Per-month results in {cfg.sink}")
    lines = [
        f"# FHVHV run {summary.run_id}",
        "",
        f"- sink: `{cfg.sink}`; source: `{cfg.source}`",
        f"- planned {summary.planned} month(s); stale: {', '.join(summary.stale) or 'none'}",
    ]
    states = summary.states
    if states:
        lines.append("- states: " + ", ".join(f"{n} {state}" for state, n in states.items()))
    if summary.rejected:
        lines.append(f"- rejected (left alone until the file or the code changes): {', '.join(summary.rejected)}")
    if summary.unavailable:
        lines.append(f"- unavailable (the source did not answer; the run fails): {', '.join(summary.unavailable)}")
    c = summary.cluster
    if c is None:
        lines.append("- nothing stale: no cluster started")
    else:
        lines.append(
            f"- cluster: {c['kind']}, {c['workers']} worker(s), start-up {c['startup_seconds']} s, "
            f"up {c['seconds']} s ({c['worker_seconds']} worker-seconds)"
        )
        if c.get("reason"):
            lines.append(f"- cluster shape: {c['reason']}")
    if summary.commits:
        k = summary.commits
        lines.append(
            f"- commits: {int(k.get('commits', 0))}, retried under contention {int(k.get('retries', 0))} time(s), "
            f"backoff {k.get('backoff_seconds', 0)} s"
        )
    failed = [r for r in rows if not r["ok"]]
    lines.append(f"- months failed: {', '.join(r['partition'] for r in failed) or 'none'}")
    lines.append(f"- daily_summary rebuilt: {', '.join(summary.daily_summary) or 'none'}")
    if rows:
        lines += [
            "",
            "| month | ok | source rows | written | quarantined | seconds | checks |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['partition']} | {'yes' if r['ok'] else 'no'} | {r['rows_source']} | {r['rows_written']} | "
            f"{r['rows_quarantined']} | {r['seconds']} | {r['checks']} |"
            for r in rows
        ]
        lines += [f"\n**{r['partition']}**: {r['error']}" for r in failed]
    lines.append(f"\nTotal {summary.seconds} s (planning {summary.plan_seconds} s).")
    create_markdown_artifact(key="fhvhv-summary", markdown="\n".join(lines), description="FHVHV run summary")


@flow(name="fhvhv-pipeline")
def fhvhv_pipeline(
    intent: Intent = "",
    partitions: list[str] | str | None = None,
    source: str | None = None,
    sink: str | None = None,
    cluster: str | None = None,
    aws_block: str | None = None,
    source_anonymous: bool | None = None,
) -> RunSummary:
    """Plan the months; when some are stale, materialize and verify exactly those on a cluster started for them.

    Args:
        intent: Empty for an incremental run (only stale months); "reprocess" rebuilds every selected month (all
            months when none is selected); "test_subset" rebuilds the first two months of the selection.
        partitions: Months to rebuild whatever their state, as keys or ranges, e.g. ["2019-02", "2019-04..2019-06"]
            or "2019-02,2019-04". Each must exist in the source.
        source: Source directory, s3:// URI or https://...{key}... URL (else TAXI_ASSETS_SOURCE).
        sink: Warehouse directory or s3:// URI (else TAXI_ASSETS_SINK).
        cluster: local, coiled or tcp://host:8786 for an existing scheduler (else TAXI_ASSETS_CLUSTER; else local).
        aws_block: Name of a prefect_aws AwsCredentials block (else TAXI_ASSETS_AWS_BLOCK); the AWS_* environment
            still wins field by field.
        source_anonymous: Read the source unsigned, for a public bucket (else TAXI_ASSETS_SOURCE_ANONYMOUS).

    Returns:
        The run summary: run_id, planned, states (months per plan state), stale, rejected (months left alone:
        their file was refused and neither it nor the code changed), unavailable (months the source did not
        answer for), results (one dict per month: partition, ok, rows_source,
        rows_written, rows_quarantined, seconds, error, checks...), cluster (None when nothing was stale, else
        kind, workers, startup_seconds, seconds, worker_seconds), failed, daily_summary (the summary months
        rebuilt), seconds.

    Raises:
        ConfigurationError, InvalidPartitionKey: a bad parameter, before any data is touched.
        PartitionsFailed: one or more months failed (named, with their cause), or the source did not answer
            for a month (``unavailable``); the others are committed and the next incremental run retries the
            failed ones. Rejected months alone do not fail a run: it commits nothing and says so.
    """
    t0 = time.perf_counter()
    logger = get_run_logger()
    cfg = resolve_settings(
        source=source, sink=sink, cluster=cluster, aws_block=aws_block, source_anonymous=source_anonymous
    )
    plan = plan_task(cfg, intent, partitions)
    if plan.listing.skipped:  # one line, however many files of other datasets share the prefix
        logger.warning("skipped source files: %s", plan.listing.skipped_summary())
    _publish_plan(cfg, plan)
    stale = plan.stale
    unavailable = plan.unavailable  # the source did not answer for these: the run cannot end green
    for month, reason in unavailable.items():
        logger.error("%s: unavailable: %s", month, reason)
    summary = RunSummary.of_plan(plan, run_id=new_run_id(), plan_seconds=round(time.perf_counter() - t0, 2))
    run_id = summary.run_id or ""
    if not stale:
        logger.info("%s", nothing_stale_line(cfg, plan))
        if stale_summary_months(cfg):  # only the downstream asset is stale: rebuilt here, in the flow process
            summary.daily_summary = daily_summary_task(cfg, run_id)
        summary.failed = sorted(unavailable)
        summary.seconds = round(time.perf_counter() - t0, 2)
        _publish_summary(cfg, summary)
        if unavailable:
            raise PartitionsFailed(unavailable, summary=summary.as_dict())
        return summary

    for row in stale:
        logger.info("%s: %s (%s)", row.partition, row.state, row.reason)
    # A month the source cannot give one file for (two files map to it) fails alone, with the listing's reason.
    unusable = {m: reason for m, reason in plan.listing.problems().items() if m in summary.stale}
    files = [plan.listing.files[r.partition] for r in stale if r.partition not in unusable]
    if not files:
        summary.failed = sorted({*unusable, *unavailable})
        summary.seconds = round(time.perf_counter() - t0, 2)
        _publish_summary(cfg, summary)
        raise PartitionsFailed({**unusable, **unavailable}, summary=summary.as_dict())
    spec = choose_cluster(
        cfg.cluster, month_sizes=[f.size for f in files], coiled=cfg.coiled, name=f"taxi-assets-{run_id}"
    )
    preflight_coiled(cfg)  # no Coiled token anywhere: fail before limits, API calls or a cluster
    if spec.kind == "address":
        logger.info("using the existing Dask cluster at %s (left running afterwards)", cfg.cluster)
    else:
        logger.info("starting a %s cluster: %s", spec.kind, spec.reason)
    _ensure_month_limits(summary.stale)
    with start_cluster(
        spec,
        worker_env=_worker_env(cfg),
        private_env=_private_env() if spec.kind == "coiled" else None,
        coiled_token=_coiled_token(cfg) if spec.kind == "coiled" else None,
    ) as running:
        logger.info("%s cluster ready in %.1f s at %s", spec.kind, running.startup_seconds, running.address)
        runner = task_runner_for(running)
        results = materialize_months.with_options(task_runner=runner)(  # type: ignore[arg-type]
            files=files,
            run_id=run_id,
            code_version=plan.code_version,
            source=cfg.source,
            sink=cfg.sink,
            aws_block=cfg.aws_block,
            source_anonymous=cfg.source_anonymous,
            seen={r.partition: r.last_run_id for r in stale},
            forced=[r.partition for r in stale if r.state is PartitionState.FORCED],
        )
    summary.cluster = running.summary()
    if spec.kind != "address":
        logger.info(
            "%s cluster closed: start-up %.1f s, up %.1f s", spec.kind, running.startup_seconds, running.seconds or 0.0
        )
    summary.results = results
    failures = {**unavailable, **unusable, **{r.partition: r.error for r in results if not r.ok}}
    written = summary.written
    verified: dict[str, dict[str, int]] = {}
    # Each month task committed its month's daily_summary; the step below rebuilds only what is still stale
    # (a summary commit that failed, a summary code change on months this run did not write).
    built = [r.partition for r in results if r.ok and r.summary_version is not None]
    if written:  # independent reads of the committed tables: concurrent (DuckDB releases the GIL)
        verifying = verify_run_task.submit(cfg, run_id)
        rebuilding = daily_summary_task.submit(cfg, run_id)
        verified, rebuilt = verifying.result(), rebuilding.result()
        summary.daily_summary = sorted({*built, *rebuilt})
    elif stale_summary_months(cfg):  # no trips month written, but a summary is stale on its own (code, missing)
        summary.daily_summary = daily_summary_task(cfg, run_id)
    summary.verified = verified
    for month in written:
        got = verified.get(month, {"passed": 0, "total": 0})
        if got["total"] == 0 or got["passed"] < got["total"]:
            failures[month] = f"checks of run {run_id} in {cfg.checks_uri}: {got['passed']}/{got['total']} passed"
    summary.failed = sorted(failures)
    summary.seconds = round(time.perf_counter() - t0, 2)
    if summary.commits.get("retries"):
        logger.info("commits under contention: %s", summary.commits)
    _publish_summary(cfg, summary)
    if failures:
        raise PartitionsFailed(
            failures, rejected=[r.partition for r in results if r.rejected], summary=summary.as_dict()
        )
    return summary
