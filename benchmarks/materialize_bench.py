"""Time one month's materialization against the seed's Dask rewrite and a plain pyarrow copy, side by side.

For each size (millions of rows) a synthetic month with the real-file layout (one huge row group, or the
``nonuniform`` layout with one group of >= 50 % of the rows) is written once, then, ``--repeats`` times and in a
rotating order, each variant runs as a whole process while this script samples the summed RSS of its process tree
(the process and every descendant, e.g. Dask workers) every 50 ms:

  (a) ``taxi-assets materialize``: read, cast, rules, both Delta commits, the month's ``daily_summary`` (summed
      as the month streams, committed after ``trips``), then the DuckDB checks;
  (w) the same without the checks (``steps.materialize_month`` after the same plan, in its own process), to
      show what the streaming write costs apart from ``taxi_assets.checks.verify``;
  (b) the seed: ``dask.dataframe.read_parquet -> astype`` (float32 money, int32 ints, categorical Y/N flags)
      ``-> to_parquet`` on a 2-worker ``LocalCluster`` (as in coiled/coiled-from-prefect ``flows/coiled_flow.py``);
  (c) the hardware reference: ``pq.read_table`` then ``pq.write_table`` of the file, no casts;

and once per size (d) ``taxi-assets run`` of that month, stale in a fresh sink: Prefect flow, Dask cluster,
materialize and checks, so (d) - (a) is the fixed cost of orchestration.

Medians and paired ratios (per repeat, then the median) are printed as a Markdown table; ``--json`` keeps every
run. The machine this was written on is noisy (2 cores shared with other jobs), hence repeats and medians.

    .venv/bin/python benchmarks/materialize_bench.py --sizes 2,8,16 --repeats 3
    .venv/bin/python benchmarks/materialize_bench.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

VARIANTS = {
    "a": "taxi-assets materialize",
    "w": "the same write without the checks",
    "b": "seed: dask astype to_parquet",
    "c": "pyarrow read_table/write_table",
}
RUN = "taxi-assets run (one stale month)"
SAMPLE_SECONDS = 0.05


@dataclass
class Run:
    size: float
    variant: str
    repeat: int
    seconds: float
    peak_mb: float
    rows: int
    cpu_seconds: float = 0.0
    detail: dict[str, object] = field(default_factory=dict)


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all of its descendants (processes that vanish mid-sample count as 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished descendant of this process, Dask workers included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], *, log: Path, env: dict[str, str] | None = None) -> tuple[float, float, str, float]:
    """Run ``cmd`` to completion; (wall s, peak tree RSS MB, stdout, tree CPU s). Raises on a non-zero exit.

    CPU seconds are what the tree consumed whatever else runs on the machine: on a shared machine they vary
    less than wall time, so the report gives both.
    """
    cpu_before = children_cpu()
    with open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        watched = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.NoSuchProcess:
                pass
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - start
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; see {log}")
    return seconds, peak / 2**20, stdout, children_cpu() - cpu_before


def child_env(workdir: Path) -> dict[str, str]:
    """The environment of every measured process: bytecode cached (under the work dir), as on a deployed worker.

    This sandbox exports PYTHONDONTWRITEBYTECODE=1, so each new process would compile its ~800 modules from source
    (1.5 s for the CLI, measured with cProfile) and every variant would pay a start-up cost no deployment pays.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    return env


def taxi_assets_command() -> list[str]:
    exe = Path(sys.executable).with_name("taxi-assets")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "taxi_assets"]


def ensure_source(workdir: Path, month: str, rows: int, layout: str, group_rows: int | None = None) -> Path:
    """The month's file in its own directory (written once, reused by later invocations).

    ``group_rows``: the synthetic file of ``layout`` re-cut into row groups of that many rows (the last one
    smaller), e.g. 8 M rows in groups of 3 M: 3 M + 3 M + 2 M.
    """
    from taxi_assets.synth import write_month_file

    directory = workdir / f"source-{layout}-{rows}"
    path = directory / f"fhvhv_tripdata_{month}.parquet"
    if not path.exists():
        print(f"writing {rows:,} synthetic rows of {month} ({layout}) to {directory}", file=sys.stderr, flush=True)
        write_month_file(str(directory), month, rows, seed=1, layout=layout)  # type: ignore[arg-type]
    if group_rows is None:
        return directory
    regrouped = workdir / f"source-{layout}-{rows}-groups-{group_rows}"
    target = regrouped / path.name
    if not target.exists():
        print(f"re-cutting {path.name} into row groups of {group_rows:,} rows", file=sys.stderr, flush=True)
        regroup(path, target, group_rows)
    return regrouped


def regroup(source: Path, target: Path, group_rows: int) -> None:
    """Copy ``source`` with row groups of ``group_rows`` rows, holding one group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    file = pq.ParquetFile(source)
    pending: list[pa.RecordBatch] = []
    held = 0
    version = file.metadata.format_version  # as the synthetic writer wrote it (snappy, Arrow schema stored)
    with pq.ParquetWriter(
        target.with_suffix(".tmp"), file.schema_arrow, version=version, compression="snappy"
    ) as writer:
        for batch in file.iter_batches(batch_size=1 << 18):
            pending.append(batch)
            held += batch.num_rows
            if held >= group_rows:
                table = pa.Table.from_batches(pending)
                writer.write_table(table.slice(0, group_rows), row_group_size=group_rows)
                rest = table.slice(group_rows)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            writer.write_table(pa.Table.from_batches(pending, schema=file.schema_arrow), row_group_size=group_rows)
    target.with_suffix(".tmp").rename(target)


def prefault(megabytes: int) -> None:
    """Touch ``megabytes`` of fresh memory in a throwaway process, before a measured run.

    On this VM the first touch of a page the host has taken back costs several times a normal page fault: the
    copy's 1.9 GB cost it 3.7-4.3 s of *system* time when it ran right after ``taxi-assets materialize`` (which
    used 0.9 GB) and 0.6 s when it ran after another copy, so the variant that ran second paid for what the
    first left behind (paired (a)/(c) of 0.63-0.70 with the copy second, 0.86-0.98 with the copy first). Running
    this before every measured run gives each variant the same start, whatever ran before it.
    """
    if megabytes > 0:
        touch = f"import numpy; numpy.ones({megabytes} * 2**20 // 8).sum()"
        subprocess.run([sys.executable, "-c", touch], check=True)


def run_variant(
    variant: str, source_dir: Path, month: str, scratch: Path, log: Path, env: dict[str, str]
) -> tuple[float, float, dict[str, object], float]:
    source_file = source_dir / f"fhvhv_tripdata_{month}.parquet"
    target = scratch / f"out-{variant}"
    shutil.rmtree(target, ignore_errors=True)
    try:
        if variant == "a":
            cmd = [*taxi_assets_command(), "materialize", "--source", str(source_dir), "--sink", str(target)]
            seconds, peak, stdout, cpu = measure([*cmd, "--partition", month, "--json"], log=log, env=env)
            result = json.loads(stdout[stdout.index("{") :])
            detail = {"materialize_seconds": result["seconds"], "quarantined": result["rows_quarantined"]}
            return seconds, peak, detail, cpu
        if variant == "w":
            cmd = [sys.executable, __file__, "_write", str(source_dir), str(target), month]
            seconds, peak, _, cpu = measure(cmd, log=log, env=env)
            return seconds, peak, {}, cpu
        if variant in ("b", "c"):
            command = "_seed" if variant == "b" else "_copy"
            cmd = [sys.executable, __file__, command, str(source_file), str(target)]
            seconds, peak, _, cpu = measure(cmd, log=log, env=env)
            return seconds, peak, {}, cpu
        if variant == "d":
            cmd = [*taxi_assets_command(), "run", "--source", str(source_dir), "--sink", str(target), "--json"]
            seconds, peak, _, cpu = measure(cmd, log=log, env=env)
            return seconds, peak, {}, cpu
        raise ValueError(variant)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def seed_rewrite(source: str, target: str) -> None:
    """The seed's transform: every float to float32, int64 to int32, flags to category(Y, N), via Dask."""
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster):
            ddf = dd.read_parquet(source)
            yes_no = pd.CategoricalDtype(categories=["Y", "N"])
            conversions: dict[str, object] = {}
            for column, dtype in ddf.dtypes.items():
                if dtype == "object":
                    conversions[column] = "string[pyarrow]"
                if dtype == "float64":
                    conversions[column] = "float32"
                if dtype == "int64":
                    conversions[column] = "int32"
                if "flag" in column:
                    conversions[column] = yes_no
            dd.to_parquet(ddf.astype(conversions), target)


def write_only(source_dir: str, sink: str, month: str) -> None:
    """``taxi-assets materialize`` minus the DuckDB checks: ``steps.materialize_month`` after the same plan."""
    from taxi_assets.assets.trips import materialize_month, new_run_id, plan_months
    from taxi_assets.settings import Settings

    cfg = Settings.resolve(source=source_dir, sink=sink)
    plan = plan_months(cfg, partitions=[month])
    materialize_month(plan.listing.files[month], cfg, run_id=new_run_id(), code_version=plan.code_version)


def plain_copy(source: str, target: str) -> None:
    import pyarrow.parquet as pq

    Path(target).mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(source), f"{target}/copy.parquet")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(runs: list[Run], sizes: list[float]) -> str:
    lines = [
        "| rows | variant | median wall s | rows/s (wall) | median tree CPU s | peak tree MB (median) | runs |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for variant, label in [*VARIANTS.items(), ("d", RUN)]:
            mine = [r for r in runs if r.size == size and r.variant == variant]
            if not mine:
                continue
            seconds = median([r.seconds for r in mine])
            extra = ""
            if variant == "a":
                extra = f" (of which writing {median([float(r.detail['materialize_seconds']) for r in mine]):.1f} s)"
            lines.append(
                f"| {size:g} M | ({variant}) {label} | {seconds:.1f}{extra} | {mine[0].rows / seconds:,.0f} | "
                f"{median([r.cpu_seconds for r in mine]):.1f} | {median([r.peak_mb for r in mine]):,.0f} "
                f"| {len(mine)} |"
            )
    lines += [
        "",
        "Paired ratios (per repeat, then the median); above 1 means (a) or (w) is faster.",
        "",
        "| rows | seed / (a) wall | seed / (w) wall | seed / (w) CPU | copy / (a) wall | copy / (w) wall "
        "| copy / (w) CPU | (d) - (a) s | (a) peak MB | (w) peak MB | (w) peak vs smallest |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    smallest = None
    for size in sizes:
        by = {v: {r.repeat: r for r in runs if r.size == size and r.variant == v} for v in "awbc"}

        def ratio(top: str, base: str, attr: str, by: dict[str, dict[int, Run]] = by) -> str:
            pairs = [(by[top][k], by[base][k]) for k in by[top] if k in by[base]]
            values = [getattr(t, attr) / getattr(b, attr) for t, b in pairs if getattr(b, attr)]
            return f"{median(values):.2f}x" if values else "-"

        d = [r.seconds for r in runs if r.size == size and r.variant == "d"]
        a_median = median([r.seconds for r in by["a"].values()])
        peaks = {v: median([r.peak_mb for r in by[v].values()]) for v in "aw"}
        smallest = smallest or peaks["w"]
        diff = f"{median(d) - a_median:.1f}" if d else "-"
        lines.append(
            f"| {size:g} M | {ratio('b', 'a', 'seconds')} | {ratio('b', 'w', 'seconds')} | "
            f"{ratio('b', 'w', 'cpu_seconds')} | {ratio('c', 'a', 'seconds')} | {ratio('c', 'w', 'seconds')} | "
            f"{ratio('c', 'w', 'cpu_seconds')} | {diff} | {peaks['a']:,.0f} | {peaks['w']:,.0f} | "
            f"{(peaks['w'] / smallest - 1) * 100:+.0f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2,8,16", help="rows per month, in millions (default 2,8,16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    parser.add_argument("--layout", default="single", choices=("single", "nonuniform"))
    parser.add_argument("--group-rows", type=int, help="re-cut the month into row groups of this many rows")
    parser.add_argument("--month", default="2023-01", help="era C: int64 IDs, so the casts have work to do")
    parser.add_argument("--variants", default="awbcd", help="subset of awbcd")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "taxi-assets-bench"))
    parser.add_argument("--json", help="write every run to this file")
    parser.add_argument(
        "--prefault-mb",
        type=int,
        default=3072,
        help="memory touched in a throwaway process before each measured run (0: off; see prefault())",
    )
    args = parser.parse_args(argv)
    sizes = [0.05, 0.2] if args.quick else [float(s) for s in args.sizes.split(",")]
    repeats = 1 if args.quick else args.repeats
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    runs: list[Run] = []
    try:
        for size in sizes:
            rows = round(size * 1_000_000)
            source = ensure_source(workdir, args.month, rows, args.layout, args.group_rows)
            warm = [*taxi_assets_command(), "plan", "--source", str(source), "--sink", str(scratch / "warm")]
            env = child_env(workdir)
            # fills the fingerprint cache and the bytecode cache: neither a file hash nor a compile is timed
            subprocess.run(warm, check=True, capture_output=True, env=env)
            subprocess.run([sys.executable, "-c", "import dask.dataframe, distributed"], check=True, env=env)
            order = [v for v in "awbc" if v in args.variants]
            for repeat in range(repeats):
                for variant in order[repeat % len(order) :] + order[: repeat % len(order)]:
                    log = workdir / f"log-{size:g}-{variant}-{repeat}.txt"
                    prefault(args.prefault_mb)
                    seconds, peak, detail, cpu = run_variant(variant, source, args.month, scratch, log, env)
                    runs.append(Run(size, variant, repeat, seconds, peak, rows, cpu, detail))
                    print(
                        f"{size:g} M ({variant}) #{repeat}: {seconds:.1f} s, cpu {cpu:.1f} s, peak {peak:,.0f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
            if "d" in args.variants:
                log = workdir / f"log-{size:g}-d.txt"
                prefault(args.prefault_mb)
                seconds, peak, detail, cpu = run_variant("d", source, args.month, scratch, log, env)
                runs.append(Run(size, "d", 0, seconds, peak, rows, cpu, detail))
                print(
                    f"{size:g} M (d): {seconds:.1f} s, cpu {cpu:.1f} s, peak {peak:,.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1))
    print(report(runs, sizes))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("_seed", "_copy"):
        (seed_rewrite if sys.argv[1] == "_seed" else plain_copy)(sys.argv[2], sys.argv[3])
        raise SystemExit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "_write":
        write_only(*sys.argv[2:5])
        raise SystemExit(0)
    raise SystemExit(main())
