"""Wall time of a no-op run (nothing stale): the CLI path, which plans before touching Prefect, against the flow.

A no-op run should cost what its work costs: one listing of the source and one read of the sink's Delta log.
This script builds a warehouse where every month is fresh, then times, each in a fresh process unless noted:

- ``plan``: ``steps.plan_months`` in this process (listing + log read: the floor);
- ``cli-run``: ``taxi-assets run`` (plans, finds nothing stale, exits: Prefect is never imported);
- ``flow-ephemeral``: ``fhvhv_pipeline()`` with no ``PREFECT_API_URL``, so Prefect starts its ephemeral API
  (what an unconfigured ``python -c`` or an old-style cron job pays);
- ``flow-warm``: ``fhvhv_pipeline()`` in this process against an already running API (what a deployment's
  flow body costs once its process is up);
- ``import-flows``: ``import taxi_assets.orchestration.flows`` in a fresh process (Prefect, Dask and the data stack).

Usage: ``.venv/bin/python benchmarks/noop_run.py [--months 6] [--rows 2000] [--repeat 3] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from taxi_assets.assets.daily_summary import materialize_daily_summary, stale_summary_months
from taxi_assets.assets.trips import plan_months, run_month
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

BIN = Path(sys.executable).parent


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def fresh_process(args: list[str], env: dict[str, str]) -> Callable[[], object]:
    def call() -> object:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="noop-bench-"))
    cfg = Settings.resolve(source=str(work / "source"), sink=str(work / "warehouse"), env={})
    months = [f"2019-{m:02d}" for m in range(2, 2 + args.months)]
    for month in months:
        write_month_file(cfg.source, month, args.rows, seed=1)
    plan = plan_months(cfg)
    for f in plan.listing.files.values():  # every month fresh, both assets, without Prefect
        run_month(f, cfg, run_id="bench", code_version=plan.code_version)
        materialize_daily_summary(f.partition, cfg, run_id="bench")
    assert not plan_months(cfg).stale, "the warehouse should be fresh"
    assert not stale_summary_months(cfg), "the daily summaries should be fresh"

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        TAXI_ASSETS_SOURCE=cfg.source,
        TAXI_ASSETS_SINK=cfg.sink,
    )
    flow_call = "from taxi_assets.orchestration.flows import fhvhv_pipeline as f; s = f(); assert s['cluster'] is None"
    figures: dict[str, list[float]] = {
        "plan": timed(lambda: plan_months(cfg), args.repeat),
        "cli-run": timed(fresh_process([str(BIN / "taxi-assets"), "run", "--json"], env), args.repeat),
        "flow-ephemeral": timed(fresh_process([sys.executable, "-c", flow_call], env), args.repeat),
        "import-flows": timed(
            fresh_process([sys.executable, "-c", "import taxi_assets.orchestration.flows"], env), args.repeat
        ),
    }

    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    from taxi_assets.orchestration.flows import fhvhv_pipeline

    with prefect_test_harness(server_startup_timeout=120):
        fhvhv_pipeline(source=cfg.source, sink=cfg.sink)  # first call registers the flow

        def warm() -> None:
            summary = fhvhv_pipeline(source=cfg.source, sink=cfg.sink)
            assert summary.cluster is None

        figures["flow-warm"] = timed(warm, args.repeat)

    result = {
        "months": args.months,
        "rows_per_month": args.rows,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in figures.items()},
        "all_seconds": {k: [round(x, 2) for x in v] for k, v in figures.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"No-op run over {args.months} fresh month(s), {args.repeat} repeat(s); median wall seconds")
    print(f"(machine: {result['cpus']} CPUs, 1-minute load {result['load_average_1m']})")
    for name, seconds in result["median_seconds"].items():
        print(f"  {name:<15} {seconds:7.2f}   {result['all_seconds'][name]}")


if __name__ == "__main__":
    main()
