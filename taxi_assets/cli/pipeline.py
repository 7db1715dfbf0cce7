"""The pipeline's commands: ``plan``, ``status``, ``run`` and ``materialize``.

Prefect is imported only when ``run`` has work: a run with nothing stale plans, says so and exits without it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from partitions.delta_log import read_records
from partitions.keys import parse_month
from taxi_assets.assets.run_summary import RunSummary, has_work
from taxi_assets.assets.trips import MonthPlan, new_run_id, nothing_stale_line, plan_months, run_month
from taxi_assets.cli.render import (
    checks_table,
    console,
    months_table,
    print_json,
    results_table,
    state_counts_line,
    status_rows,
)
from taxi_assets.errors import PartitionsFailed
from taxi_assets.orchestration.progress import month_progress
from taxi_assets.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    cfg = Settings.resolve(source=args.source, sink=args.sink, cluster=getattr(args, "cluster", None))
    cfg.apply_engine_env()  # TAXI_ASSETS_NETWORK_TIMEOUT reaches the engine (and the workers this process starts)
    return cfg


def _plan_footer(plan: MonthPlan) -> list[str]:
    """The lines under a plan or status table: skipped files (one line), state counts, unavailable months."""
    lines = []
    if plan.listing.skipped:
        lines.append(f"[yellow]skipped source files:[/] {plan.listing.skipped_summary()}")
    lines.append(state_counts_line(plan.counts(), total=len(plan.rows)))
    for month, reason in plan.unavailable.items():
        lines.append(f"[bold red]{month} unavailable:[/] {reason}")
    return lines


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = _settings(args)
    plan = plan_months(cfg, intent=args.intent, partitions=args.partitions)
    rows = status_rows(plan.rows, read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri)))
    if args.json:
        print_json(rows)
        return 0
    out = console()
    out.print(months_table(rows, title=f"Plan for {cfg.sink} (code version {plan.code_version})"))
    for line in _plan_footer(plan):
        out.print(line)
    stale = len(plan.stale)
    out.print(f"{stale} of {len(rows)} month(s) stale." + (" Next: taxi-assets run" if stale else " Nothing to do."))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """What the log records per month; ``--deep`` also checks that the data files it references still exist."""
    cfg = _settings(args)
    plan = plan_months(cfg, deep=args.deep)
    rows = status_rows(plan.rows, read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri)))
    if args.json:
        print_json(rows)
    else:
        out = console()
        out.print(months_table(rows, title=f"Status of {cfg.sink}"))
        for line in _plan_footer(plan):
            out.print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _settings(args)
    out = console()
    plan = plan_months(cfg, intent=args.intent, partitions=args.partitions)
    # The no-op path (no Prefect, no cluster) needs both assets fresh: trips/quarantine and daily_summary.
    if not has_work(cfg, plan):
        summary = RunSummary.of_plan(plan, run_id=None)
        if args.json:
            print_json(summary.as_dict())
        else:
            if plan.listing.skipped:
                out.print(f"[yellow]skipped source files:[/] {plan.listing.skipped_summary()}")
            line = nothing_stale_line(cfg, plan)
            out.print(line[0].upper() + line[1:] + ".")
        if plan.unavailable:  # the source did not answer for a month: not a success, whatever else is fresh
            raise PartitionsFailed(plan.unavailable)
        return 0
    if plan.stale:
        from taxi_assets.orchestration.cluster import preflight_coiled, preflight_scheduler

        preflight_coiled(cfg)  # --cluster coiled without a token: one line, exit 2, before Prefect or a cluster
        preflight_scheduler(cfg.cluster)  # --cluster tcp://... where nothing listens: one line, exit 8
    # Prefect from here on: the API in PREFECT_API_URL (a `prefect server start`, Prefect Cloud) when configured,
    # else Prefect's own ephemeral API, started by Prefect for this process.
    from taxi_assets.cli.prefect_home import preflight_prefect_home

    preflight_prefect_home()  # a PREFECT_HOME that cannot hold the ephemeral API's database: one line, exit 2
    from taxi_assets.orchestration.flows import fhvhv_pipeline

    partitions = [args.partitions] if args.partitions else None
    try:
        with month_progress(out, enabled=not args.json):
            summary = fhvhv_pipeline(
                intent=args.intent, partitions=partitions, source=cfg.source, sink=cfg.sink, cluster=cfg.cluster
            )
    except PartitionsFailed as exc:
        if args.json:  # stdout stays one JSON document (the summary, its failed months and their errors)
            print_json(exc.summary if exc.summary is not None else {"failed": sorted(exc.failures)})
            print(f"taxi-assets: {exc}", file=sys.stderr)
        else:
            out.print(f"[red]{exc}[/]")
        return exc.exit_code
    if args.json:
        print_json(summary.as_dict())
        return 0
    if summary.results:
        out.print(results_table(summary.results))
        out.print(checks_table(summary.results))
    rebuilt = summary.daily_summary
    out.print(f"daily_summary rebuilt: {', '.join(rebuilt)}." if rebuilt else "daily_summary: nothing to rebuild.")
    if summary.rejected:
        out.print(f"[red]rejected[/] (left alone until the file or the code changes): {', '.join(summary.rejected)}")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    cfg = _settings(args)
    month = parse_month(args.partition)
    plan = plan_months(cfg, partitions=[month])
    source = plan.listing.require(month)  # the source did not answer for it: PartitionUnavailable (exit 3)
    if source is None:  # plan_months refuses a month the source does not have; kept for the type checker
        raise PartitionsFailed({month: "not in the source listing"})
    result = run_month(source, cfg, run_id=new_run_id(), code_version=plan.code_version)
    if args.json:
        print_json(asdict(result))
    else:
        console().print(results_table([result]))
        console().print(checks_table([result]))
    return 0
