"""What a month task pays whatever the month's size: interpreter, imports, plan, DuckDB connection, extension
loads, the commits and the checks of a month too small to cost anything else.

Each repeat is a fresh process (imports and extension loads are per process) that times its own steps, in the
order ``taxi-assets materialize`` takes them, with wall and CPU seconds (CPU varies less than wall time on a
shared machine). The interpreter's own start is ``python -c pass`` timed from outside. Medians over repeats.

    .venv/bin/python benchmarks/fixed_costs.py --repeats 5
    .venv/bin/python benchmarks/fixed_costs.py --repeats 5 --json    # one JSON object per repeat
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
from pathlib import Path
from typing import Any

STEPS = (
    ("python", "interpreter start (`python -c pass`)"),
    ("import_cli", "import taxi_assets.cli.main (the CLI entry)"),
    ("import_month", "import the month body (assets.trips: pyarrow, deltalake, duckdb, partitions)"),
    ("plan", "Settings + plan_months (list the source, read 3 empty logs)"),
    ("duckdb_connect", "duckdb.connect() (a bare in-memory database)"),
    ("load_httpfs", "LOAD httpfs from its wheel"),
    ("load_delta", "LOAD delta from its wheel"),
    ("open_connection", "io.duckdb.open_connection() (a new database: both extensions verified and loaded again)"),
    ("month_first", "run_month of a 1,000-row month into a fresh sink (creates the 4 tables)"),
    ("month_again", "run_month of another 1,000-row month (tables exist)"),
)


def probe(workdir: str) -> dict[str, dict[str, float]]:
    """Run in a fresh process: each step's (wall, cpu) seconds."""
    out: dict[str, dict[str, float]] = {}
    clock = [time.perf_counter(), time.process_time()]

    def lap(name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        out[name] = {"wall": wall - clock[0], "cpu": cpu - clock[1]}
        clock[:] = [time.perf_counter(), time.process_time()]

    import taxi_assets.cli.main  # noqa: F401

    lap("import_cli")
    from taxi_assets.assets.trips import new_run_id, plan_months, run_month
    from taxi_assets.io.duckdb import extension_path, open_connection
    from taxi_assets.settings import Settings

    lap("import_month")
    sink = tempfile.mkdtemp(prefix="sink-", dir=workdir)
    cfg = Settings.resolve(source=str(Path(workdir) / "source"), sink=sink, env={})
    plan = plan_months(cfg, partitions=["2023-01"])
    lap("plan")
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    lap("duckdb_connect")
    con.execute(f"LOAD '{extension_path('httpfs')}'")
    lap("load_httpfs")
    con.execute(f"LOAD '{extension_path('delta')}'")
    lap("load_delta")
    con.close()
    open_connection().close()
    lap("open_connection")
    run_month(plan.listing.files["2023-01"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    lap("month_first")
    plan = plan_months(cfg, partitions=["2023-02"])
    clock[:] = [time.perf_counter(), time.process_time()]  # the second plan is not a fixed cost of the month
    run_month(plan.listing.files["2023-02"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    lap("month_again")
    return out


def child_env(workdir: Path) -> dict[str, str]:
    """Bytecode cached, as on a deployed worker (this sandbox sets PYTHONDONTWRITEBYTECODE=1)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def one_repeat(workdir: Path) -> dict[str, dict[str, float]]:
    env = child_env(workdir)
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    python = {"wall": time.perf_counter() - t0, "cpu": _children_cpu() - c0}
    done = subprocess.run(
        [sys.executable, __file__, "_probe", str(workdir)], check=True, env=env, capture_output=True, text=True
    )
    return {"python": python, **json.loads(done.stdout.strip().splitlines()[-1])}


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "taxi-assets-fixed"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    from taxi_assets.synth import write_month_file

    for month in ("2023-01", "2023-02"):
        if not (workdir / "source" / f"fhvhv_tripdata_{month}.parquet").exists():
            write_month_file(str(workdir / "source"), month, 1_000, seed=1, layout="single")
    one_repeat(workdir)  # warm the bytecode cache and the page cache: not timed
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        run = one_repeat(workdir)
        runs.append(run)
        if args.json:
            print(json.dumps({"repeat": repeat, "load": round(os.getloadavg()[0], 2), **run}), flush=True)
    if not args.json:
        print(f"medians of {args.repeats} fresh processes (load average now {os.getloadavg()[0]:.1f})\n")
        print("| step | wall s | CPU s |\n|---|---:|---:|")
        for key, label in STEPS:
            wall = statistics.median(r[key]["wall"] for r in runs)
            cpu = statistics.median(r[key]["cpu"] for r in runs)
            print(f"| {label} | {wall:.3f} | {cpu:.3f} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_probe":
        print(json.dumps(probe(sys.argv[2])))
        raise SystemExit(0)
    raise SystemExit(main())
