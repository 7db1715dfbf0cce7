"""The `demo` and `synth` commands: synthetic source months and the whole story on the embedded stack.

`demo` shows incremental behaviour end to end: it synthesizes months when the source is empty, runs the
pipeline, re-publishes one month with new bytes, runs again (only that month is rebuilt) and prints the status.
Run a second time it finds everything fresh and rebuilds nothing. ``--s3`` starts a throwaway local
S3-compatible server (moto) in its own process for the length of the demo.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from partitions.delta_log import read_records
from partitions.keys import parse_selection
from taxi_assets.assets.run_summary import has_work
from taxi_assets.assets.trips import plan_months
from taxi_assets.cli.local_s3 import moto_server
from taxi_assets.cli.render import checks_table, console, months_table, results_table, status_rows
from taxi_assets.errors import PartitionsFailed
from taxi_assets.io.sources import list_months
from taxi_assets.orchestration.progress import month_progress
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file, write_months

DEMO_BUCKET: Final = "taxi-assets-demo"
DEMO_KEY_ID: Final = "demo-key"
DEMO_SECRET: Final = "demo-secret-not-a-real-one"


def synth(args: argparse.Namespace) -> int:
    cfg = Settings.resolve(source=args.dest)
    months = parse_selection(args.months)
    files = write_months(
        cfg.source,
        months,
        args.rows,
        scale=None if args.rows else args.scale,
        seed=args.seed,
        layout=args.layout,
        anomalies=args.anomalies,
        storage_options=cfg.storage_options(cfg.source),
        progress=True,
    )
    out = console()
    for f in files:
        out.print(f"wrote {f.uri}: {f.rows:,} rows in {f.row_groups} row group(s), {f.bytes / 2**20:.1f} MiB")
    out.print(f"Next: taxi-assets plan --source {cfg.source}")
    return 0


def demo(args: argparse.Namespace) -> int:
    if args.s3:
        with local_s3_server() as endpoint:
            source = args.source or f"s3://{DEMO_BUCKET}/source"
            sink = args.sink or f"s3://{DEMO_BUCKET}/warehouse"
            console().print(f"Started a throwaway S3-compatible server at {endpoint} (bucket {DEMO_BUCKET})")
            return _story(Settings.resolve(source=source, sink=sink), args, throwaway=True)
    return _story(Settings.resolve(source=args.source, sink=args.sink), args)


def next_hint(cfg: Settings, *, throwaway: bool) -> str:
    """The closing hint: a query on the sink the demo wrote, unless that sink vanished with the throwaway server."""
    if throwaway:
        return (
            f"The throwaway S3 server stopped, and {cfg.sink} with it. Next: `taxi-assets demo` keeps its tables in "
            './data/warehouse, then: taxi-assets sql "SELECT month, count(*) FROM trips GROUP BY 1 ORDER BY 1"'
        )
    return f'Next: taxi-assets sql --sink {cfg.sink} "SELECT month, count(*) FROM trips GROUP BY 1 ORDER BY 1"'


def _story(cfg: Settings, args: argparse.Namespace, *, throwaway: bool = False) -> int:
    # Prefect is imported here, not at module top: `synth` and the CLI's fast commands should not pay for it.
    from taxi_assets.cli.prefect_home import preflight_prefect_home

    preflight_prefect_home()  # before the months are synthesized: nothing is written for a run that cannot start
    from taxi_assets.orchestration.flows import fhvhv_pipeline

    out = console()
    months = parse_selection(args.months)
    generated = _source_is_empty(cfg)
    if generated:
        out.rule("1. Synthesize source months")
        write_months(
            cfg.source,
            months,
            args.rows,
            scale=None,
            seed=1,
            storage_options=cfg.storage_options(cfg.source),
            progress=True,
        )
    out.rule("2. Run the pipeline (stale months only)")
    exit_code = _run(fhvhv_pipeline, cfg)
    if generated:
        changed = months[len(months) // 2]
        out.rule(f"3. Re-publish {changed} with new bytes (3 % late rows), then run again")
        write_month_file(
            cfg.source,
            changed,
            int(args.rows * 1.03),
            seed=2,
            storage_options=cfg.storage_options(cfg.source),
        )
        exit_code = _run(fhvhv_pipeline, cfg) or exit_code
    out.rule("Status of every month")
    plan = plan_months(cfg)
    recorded = read_records(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri))
    out.print(months_table(status_rows(plan.rows, recorded), title=f"Status of {cfg.sink}"))
    out.print(f"Source: {cfg.source}\nTables: {cfg.trips_uri}, {cfg.quarantine_uri}, {cfg.checks_uri}")
    if args.report and importlib.util.find_spec("papermill") is None:
        out.print("No quality report: it needs the report extra (pip install 'taxi-assets[report]').")
    elif args.report:
        from taxi_assets.analysts.report import render_report  # the report extra: imported only when used

        out.rule("Quality report")
        path = render_report(cfg.sink, args.report)
        out.print(f"Quality report (one offline HTML file): {path.resolve()}")
    out.print(next_hint(cfg, throwaway=throwaway))
    return exit_code


def _source_is_empty(cfg: Settings) -> bool:
    if "://" not in cfg.source and not os.path.isdir(cfg.source):
        return True
    return not list_months(cfg).files


def _run(pipeline: object, cfg: Settings) -> int:
    out = console()
    # The no-op test of `taxi-assets run`: both assets fresh, then Prefect's start-up is skipped.
    if not has_work(cfg, plan_months(cfg)):
        out.print("Nothing stale: no month rebuilt, no cluster started.")
        return 0
    try:
        with month_progress(out):
            summary = pipeline(source=cfg.source, sink=cfg.sink, cluster=cfg.cluster)  # type: ignore[operator]
    except PartitionsFailed as exc:
        out.print(f"[red]{exc}[/]")
        return exc.exit_code
    rebuilt = summary.daily_summary
    if not summary.stale:
        out.print(f"No trips month stale, no cluster started; daily_summary rebuilt: {', '.join(rebuilt) or 'none'}.")
        return 0
    kind = summary.cluster["kind"] if summary.cluster else "no"
    out.print(f"Rebuilt {', '.join(summary.stale)} on a {kind} cluster.")
    out.print(results_table(summary.results))
    out.print(checks_table(summary.results))
    return 0


@contextmanager
def local_s3_server() -> Iterator[str]:
    """A moto S3 server for the demo's length, the standard AWS_* variables pointed at it meanwhile."""
    saved = {
        k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    }
    with moto_server() as endpoint:
        try:
            os.environ.update(
                AWS_ENDPOINT_URL=endpoint,
                AWS_ACCESS_KEY_ID=DEMO_KEY_ID,
                AWS_SECRET_ACCESS_KEY=DEMO_SECRET,
                AWS_REGION="us-east-1",
            )
            req = urllib.request.Request(f"{endpoint}/{DEMO_BUCKET}", method="PUT")
            urllib.request.urlopen(req, timeout=10).close()
            yield endpoint
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
