"""`taxi-assets`: one error boundary, one clear line, one exit code.

Each command handler returns 0 or raises one of our named errors; the boundary in :func:`main` prints the
message (which already names the next step) and returns the error's exit code. Three more things end in one
line at this boundary: a sink the command cannot use (``cli/sink_errors.py``: exit 2, or 9 when full), a
Prefect API that cannot be reached (``cli/api_errors.py``: exit 8), and Ctrl-C / SIGTERM (``cli/stopping.py``:
every child process ended, exit 130 / 143); Prefect's run logs show our named errors without their traceback.
Unexpected exceptions are bugs and keep their traceback. Prefect is imported only by the commands that run a
flow: planning and status stay fast (no API start-up on the no-op path).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from partitions.errors import PartitionsError
from taxi_assets.cli.analysts import add_commands as add_analyst_commands
from taxi_assets.cli.api_errors import explain_api_error
from taxi_assets.cli.sink_errors import explain_sink_error, preflight_sink
from taxi_assets.cli.stopping import stop_on_signals
from taxi_assets.errors import TaxiAssetsError
from taxi_assets.model.intents import INTENTS
from taxi_assets.settings import Settings

# Each command imports what it needs when it runs: `taxi-assets sql` loads neither the pipeline's modules nor
# Prefect, Dask or the synthetic-data generator (tests/taxi_assets/test_cli.py checks it with -X importtime).


def _add_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="source directory or s3:// URI (env TAXI_ASSETS_SOURCE; default ./data/source)")
    p.add_argument("--sink", help="warehouse directory or s3:// URI (env TAXI_ASSETS_SINK; default ./data/warehouse)")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", help="months to force, e.g. 2019-02,2019-04..2019-06")
    p.add_argument("--intent", default="", choices=INTENTS, help="'' incremental (default), reprocess, test_subset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taxi-assets", description="Month-partitioned Delta Lake copy of the NYC TLC FHVHV trips."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for expected errors too")
    parser.add_argument("--verbose", action="store_true", help="show Dask's and Prefect's own INFO logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="which months are stale and why (no cluster, no Prefect)")
    _add_io(p)
    _add_selection(p)
    p.add_argument("--json", action="store_true", help="a JSON list, one object per month")
    p.set_defaults(handler="taxi_assets.cli.pipeline:cmd_plan")

    p = sub.add_parser("status", help="what the Delta log records for every month")
    _add_io(p)
    p.add_argument("--json", action="store_true", help="a JSON list, one object per month")
    p.add_argument("--deep", action="store_true", help="also check that the data files the log references exist")
    p.set_defaults(handler="taxi_assets.cli.pipeline:cmd_status")

    p = sub.add_parser("run", help="plan, then materialize and verify the stale months (Prefect flow on Dask)")
    _add_io(p)
    _add_selection(p)
    p.add_argument("--cluster", help="local (default), coiled, or a scheduler address tcp://host:8786")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(handler="taxi_assets.cli.pipeline:cmd_run")

    p = sub.add_parser("materialize", help="materialize one month in this process (no Prefect, no cluster)")
    _add_io(p)
    p.add_argument("--partition", required=True, help="the month, YYYY-MM")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="taxi_assets.cli.pipeline:cmd_materialize")

    p = sub.add_parser("synth", help="write realistic synthetic FHVHV month files")
    p.add_argument("--dest", help="directory or s3:// URI (default: the source)")
    p.add_argument("--months", default="2019-02..2019-07", help="months or ranges, e.g. 2019-02..2019-07,2023-02")
    p.add_argument("--rows", type=int, default=None, help="rows per month (default: real rows x --scale)")
    p.add_argument("--scale", type=float, default=1e-3, help="fraction of the real month size when --rows is unset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="auto", choices=("auto", "single", "arrow-1Mi", "nonuniform", "daily"))
    p.add_argument("--anomalies", default="realistic", choices=("realistic", "stress", "clean"))
    p.set_defaults(handler="taxi_assets.cli.demo:synth")

    p = sub.add_parser("demo", help="the whole story: synthesize, run, change a month, run again, show status")
    _add_io(p)
    p.add_argument("--s3", action="store_true", help="use a throwaway local S3-compatible server for the demo")
    p.add_argument("--rows", type=int, default=50_000, help="rows per synthetic month")
    p.add_argument("--months", default="2019-02..2019-04,2023-02,2025-01", help="months to synthesize")
    p.add_argument(
        "--report",
        default="reports/quality_report.html",
        help="where to write the HTML quality report ('' to skip)",
    )
    p.set_defaults(handler="taxi_assets.cli.demo:demo")

    add_analyst_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (the ``taxi-assets`` entry point)."""
    args = build_parser().parse_args(argv)
    set_process_defaults(verbose=args.verbose)
    sink: str | None = None
    try:
        handler = _handler(args.handler) if isinstance(args.handler, str) else args.handler
        with stop_on_signals(command=args.command), _named_errors_without_traceback(enabled=not args.debug):
            if hasattr(args, "sink"):
                sink = Settings.resolve(sink=args.sink).sink
                preflight_sink(sink)  # a sink path through a file: one line, before anything reads or writes
            return int(handler(args))
    except (PartitionsError, TaxiAssetsError) as exc:
        return _refuse(exc, debug=args.debug)
    except OSError as exc:  # a write the sink refused half-way (full, read-only, no bucket); else a bug
        named = explain_sink_error(exc, sink) if sink is not None else None
        if named is None or args.debug:
            raise
        return _refuse(named, debug=False)
    except Exception as exc:  # the run's Prefect API unreachable or not started (exit 8); anything else: a bug
        api = explain_api_error(exc) if args.command in ("run", "demo") else None
        if api is None or args.debug:
            raise
        return _refuse(api, debug=False)


class _NoTracebackForNamedErrors(logging.Filter):
    """Prefect logs a failed flow's exception with its traceback; ours are named and say what to do next."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (PartitionsError, TaxiAssetsError)):
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def _named_errors_without_traceback(*, enabled: bool) -> Iterator[None]:
    """While a command runs, Prefect's run loggers print a named error as its line only (``--debug``: all)."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")] if enabled else []
    quiet = _NoTracebackForNamedErrors()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _refuse(exc: Exception, *, debug: bool) -> int:
    """The boundary's one line (the message names the next step) and the error's exit code."""
    if debug:
        raise exc
    print(f"taxi-assets: {exc}", file=sys.stderr)
    return int(getattr(exc, "exit_code", 1))


def set_process_defaults(*, verbose: bool) -> None:
    """Defaults for this process and the workers it starts, unless the user set them (documented settings only).

    Dask's INFO lines (scheduler and worker start, ~60 per run) are for debugging a cluster, not for reading a
    run: they show with ``--verbose``. Worker processes inherit the environment, so the setting reaches them.
    The first start of Prefect's ephemeral API migrates a fresh SQLite database, which on a busy 2-core machine
    can exceed Prefect's 20 s default wait.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        # The scheduler's GIL-contention sampling warns "timed out waiting on channel" on a busy machine.
        os.environ.setdefault("DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__GIL__ENABLED", "false")


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    """The command function named ``module:function``, imported only when its command runs."""
    module, _, name = target.partition(":")
    return cast(Callable[[argparse.Namespace], int], getattr(importlib.import_module(module), name))
