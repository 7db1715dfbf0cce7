"""Scale out: M synthetic months on k Dask workers, our month body against the seed's rewrite, at equal k.

For each worker count k (``--workers``, default 1, 2, 4, ... up to this host's cores) and each variant, a fresh
``distributed.LocalCluster`` of k worker processes runs one task per month, as a run's fan-out does:

  ours  the real month body (``run_month``: read, cast, rules, both Delta commits, the month's ``daily_summary``,
        the DuckDB checks), on the cluster the flow's own sizing describes for k months on this host
        (``choose_cluster("local", ...)``: threads, memory limit, worker environment), started by the flow's
        ``start_cluster``, with worker processes (what the flow starts whenever it runs more than one month);
  seed  ``dask.dataframe.read_parquet -> astype`` (float32 money, int32 ints, categorical Y/N flags)
        ``-> to_parquet``, one graph per month computed together, on ``LocalCluster(k workers, 1 thread each)``.

The months are synthetic (``taxi_assets.synth``) with the real files' layout: one row group holding the whole
month (``--layout single``), written once into ``--workdir`` and reused. Both variants start with warm
workers (their libraries imported), so the wall time is the months' work and what each month task pays again
(DuckDB connection, extension load...), not the workers' start-up, which is reported apart (``startup_s``).

Printed per run: wall time, rows/s, speed-up and parallel efficiency against the smallest k of the same variant
(k = 1 by default), per-task phase times of ours (read = the reading thread inside the reader: decode, casts,
rules; write = the rest of the streaming: hand-off to the encoder threads, fingerprint, summary partials,
waiting for the encoders, closing the files; commit = the two Delta commits; summary = the daily_summary
commit; checks = the DuckDB checks and their record), commit retries (conflicts retried by
``partitions.overwrite`` and commits delta-rs rebased over other months' commits), the peak RSS of each worker
process (sampled every 50 ms from this process), and a correctness check that does not trust our counters:
for every month, the rows of the source file's footer = the month's rows in ``trips`` + in ``quarantine`` as
deltalake reads them back (seed: = the rows of its output).

    .venv/bin/python benchmarks/scale_bench.py --months 4 --rows 1000000 --workers 1,2
    .venv/bin/python benchmarks/scale_bench.py --months 4 --rows 1000000 --workers 1,2 --json   # JSON lines

Every ``taxi_assets`` import is in :func:`stack`: when modules move, that is the one place to change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

SAMPLE_SECONDS = 0.05
PHASES = ("read", "write", "commit", "summary", "checks", "other", "total")


def stack() -> SimpleNamespace:
    """The taxi_assets modules this benchmark drives: the one place that names them."""
    from taxi_assets.assets import daily_summary, trips
    from taxi_assets.io import reader, sink
    from taxi_assets.orchestration import cluster
    from taxi_assets.settings import Settings
    from taxi_assets.synth import write_month_file

    return SimpleNamespace(
        trips=trips,  # plan_months, run_month, new_run_id; write_month, _commit_summary, verify_month, record_checks
        sink=sink,  # Written.commits
        daily_summary=daily_summary,  # overwrite_partition by name
        reader=reader,  # MonthReader
        cluster=cluster,  # choose_cluster, start_cluster
        Settings=Settings,
        write_month_file=write_month_file,
    )


# -- the months ------------------------------------------------------------------------------------------------


def month_keys(months: int, first: str) -> list[str]:
    year, month = (int(p) for p in first.split("-"))
    keys = []
    for i in range(months):
        y, m = divmod(month - 1 + i, 12)
        keys.append(f"{year + y:04d}-{m + 1:02d}")
    return keys


def ensure_months(workdir: Path, keys: list[str], rows: int, layout: str) -> Path:
    """The months' files in one source directory, written once and reused by later invocations."""
    directory = workdir / f"scale-source-{layout}-{rows}"
    for key in keys:
        if not (directory / f"fhvhv_tripdata_{key}.parquet").exists():
            print(f"writing {rows:,} synthetic rows of {key} ({layout}) to {directory}", file=sys.stderr, flush=True)
            stack().write_month_file(str(directory), key, rows, seed=int(key.replace("-", "")), layout=layout)
    return directory


def source_rows(directory: Path, key: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(directory / f"fhvhv_tripdata_{key}.parquet").metadata.num_rows)


# -- what a worker runs ----------------------------------------------------------------------------------------

_task = threading.local()  # this worker thread's current month: phase seconds and commit stats


def _instrument() -> None:
    """Time the month body's parts from around the calls it makes (by name, in its own modules); once a process.

    Nothing here changes what the month does: each wrapper calls the original and adds the seconds it took
    to the running task's counters; the sink's two commits are counted in ``Written.commits``, and the
    wrappers around the summary and checks commits hand them the task's ``CommitStats``.
    """
    s = stack()
    if getattr(s.trips, "_scale_bench_instrumented", False):
        return

    def timed(module: Any, name: str, phase: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _add(phase, time.perf_counter() - t0)

        setattr(module, name, wrapper)

    write_month = s.trips.write_month

    def written(*args: Any, **kwargs: Any) -> Any:  # sink.Written: streaming and committing, as it measured them
        w = write_month(*args, **kwargs)
        _add("write", w.seconds_streaming)  # the reading thread's share is taken out in ours_task
        _add("commit", w.seconds_committing)
        stats = getattr(_task, "commits", None)
        if stats is not None:
            stats.merge(w.commits)  # the sink counts its two commits itself (Written.commits)
        return w

    s.trips.write_month = written
    timed(s.trips, "_commit_summary", "summary")
    timed(s.trips, "verify_month", "checks")

    original_batches = s.reader.MonthReader.batches

    def batches(self: Any) -> Iterator[Any]:
        produced = original_batches(self)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(produced)
            except StopIteration:
                _add("read", time.perf_counter() - t0)
                return
            _add("read", time.perf_counter() - t0)
            yield item

    s.reader.MonthReader.batches = batches

    def counted(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stats = getattr(_task, "commits", None)
            if stats is not None and kwargs.get("stats") is None:
                kwargs["stats"] = stats
            return original(*args, **kwargs)

        setattr(module, name, wrapper)

    counted(s.daily_summary, "overwrite_partition")
    counted(s.trips, "record_checks")  # trips imported it by name
    s.trips._scale_bench_instrumented = True


def _add(phase: str, seconds: float) -> None:
    phases = getattr(_task, "phases", None)
    if phases is not None:
        phases[phase] = phases.get(phase, 0.0) + seconds


def ours_task(source: Any, cfg: Any, run_id: str, code_version: str) -> dict[str, Any]:
    """One month through the real month body, on a worker; its phases, commit stats and outcome."""
    from partitions.overwrite import CommitStats

    _instrument()
    _task.phases, _task.commits = {}, CommitStats()
    t0 = time.perf_counter()
    error = ""
    rows_source = 0
    try:
        result = stack().trips.run_month(source, cfg, run_id=run_id, code_version=code_version)
        rows_source = result.rows_source
    except Exception as exc:  # reported as a failed month; the correctness check fails the run
        error = f"{type(exc).__name__}: {exc}"
    phases = dict(_task.phases)
    phases["total"] = time.perf_counter() - t0
    phases["write"] = max(0.0, phases.get("write", 0.0) - phases.get("read", 0.0))  # streaming minus reading
    phases["other"] = phases["total"] - sum(
        phases.get(p, 0.0) for p in ("read", "write", "commit", "summary", "checks")
    )
    stats = _task.commits
    _task.phases, _task.commits = None, None
    return {
        "month": source.partition,
        "ok": not error,
        "error": error,
        "rows_source": rows_source,
        "pid": os.getpid(),
        "phases": {p: round(phases.get(p, 0.0), 3) for p in PHASES},
        "commits": {
            "commits": stats.commits,
            "attempts": stats.attempts,
            "conflicts": stats.conflicts,
            "rebased": stats.rebased,
            "rebased_over": stats.rebased_over,
            "retries": stats.retries,
            "backoff_s": round(stats.backoff_seconds, 3),
        },
    }


def warm_ours() -> int:
    """Import the month body's stack in a worker (what a long-lived worker has done before its next month)."""
    import duckdb  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    stack()
    _instrument()
    return os.getpid()


def warm_seed() -> int:
    import dask.dataframe  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    return os.getpid()


# -- measuring -------------------------------------------------------------------------------------------------


class PeakSampler:
    """Peak RSS of each worker process (and its children), sampled every 50 ms on a thread of this process."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peaks = dict.fromkeys(self.procs, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                total = 0
                try:
                    for p in [proc, *proc.children(recursive=True)]:
                        total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
                self.peaks[name] = max(self.peaks[name], total)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def megabytes(self) -> list[float]:
        return [round(v / 2**20, 1) for v in self.peaks.values()]


@dataclass
class Run:
    variant: str
    workers: int
    months: int
    rows_per_month: int
    repeat: int
    wall_s: float
    rows_per_s: float
    correct: bool
    startup_s: float
    peak_worker_mb: list[float]
    threads_per_worker: int = 1
    speedup: float | None = None
    efficiency: float | None = None
    cores: int = 0
    load_before: float = 0.0
    load_after: float = 0.0
    cluster: str = ""
    phase_median_s: dict[str, float] = field(default_factory=dict)
    commit_retries: int = 0
    commits: dict[str, float] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@contextmanager
def ours_cluster(k: int, month_bytes: int) -> Iterator[tuple[Any, float, str, int]]:
    """The flow's cluster for k months of this size on this host, with worker processes even for k = 1."""
    from distributed import Client

    s = stack()
    spec = s.cluster.choose_cluster("local", month_sizes=[month_bytes] * k)
    if spec.n_workers != k:
        raise SystemExit(f"the flow's sizing gives {spec.n_workers} workers for {k} months here: {spec.reason}")
    spec = replace(spec, kwargs={**spec.kwargs, "processes": True, "dashboard_address": None})
    t0 = time.perf_counter()
    with s.cluster.start_cluster(spec) as running, Client(running.address) as client:
        client.wait_for_workers(k)
        client.run(importable().warm_ours)
        yield client, time.perf_counter() - t0, spec.reason, spec.threads_per_worker


@contextmanager
def seed_cluster(k: int) -> Iterator[tuple[Any, float, str, int]]:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with (
        LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(k)
        client.run(importable().warm_seed)
        yield client, time.perf_counter() - t0, f"LocalCluster({k} workers x 1 thread)", 1


def importable() -> Any:
    """This file as the module ``scale_bench``: its functions pickle by reference (workers import it by name,
    their ``sys.path`` is this process's), not by value as functions of ``__main__`` would, with their globals."""
    import importlib

    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module("scale_bench")


def run_ours(client: Any, source_dir: Path, keys: list[str], sink: Path) -> tuple[float, list[dict[str, Any]], str]:
    s = stack()
    cfg = s.Settings.resolve(source=str(source_dir), sink=str(sink))
    plan = s.trips.plan_months(cfg, partitions=keys)
    run_id = s.trips.new_run_id()
    t0 = time.perf_counter()
    futures = [
        client.submit(
            importable().ours_task, plan.listing.files[k], cfg, run_id, plan.code_version, key=f"month-{k}-{run_id}"
        )
        for k in keys
    ]
    tasks = client.gather(futures)
    return time.perf_counter() - t0, tasks, cfg.trips_uri


def seed_graph(source: str, target: str) -> Any:
    """The seed's transform of one month as a lazy to_parquet (as in ``materialize_bench.seed_rewrite``)."""
    import dask.dataframe as dd
    import pandas as pd

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
    return dd.to_parquet(ddf.astype(conversions), target, compute=False)


def run_seed(client: Any, source_dir: Path, keys: list[str], sink: Path) -> tuple[float, list[dict[str, Any]], str]:
    import dask

    t0 = time.perf_counter()
    graphs = [seed_graph(str(source_dir / f"fhvhv_tripdata_{k}.parquet"), str(sink / k)) for k in keys]
    dask.compute(*graphs)
    return time.perf_counter() - t0, [], ""


def check_ours(source_dir: Path, keys: list[str], sink: Path, tasks: list[dict[str, Any]]) -> list[str]:
    """Source rows = trips + quarantine rows, per month, as deltalake reads the tables back."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    problems = [f"{t['month']}: {t['error']}" for t in tasks if not t["ok"]]
    tables = {name: DeltaTable(str(sink / name)).to_pyarrow_dataset() for name in ("trips", "quarantine")}
    for key in keys:
        expected = source_rows(source_dir, key)
        got = {n: t.count_rows(filter=ds.field("month") == key) for n, t in tables.items()}
        if got["trips"] + got["quarantine"] != expected:
            problems.append(f"{key}: source {expected} rows, trips {got['trips']} + quarantine {got['quarantine']}")
    months = {m for t in tables.values() for m in t.to_table(columns=["month"]).column("month").unique().to_pylist()}
    if months - set(keys):
        problems.append(f"months nobody asked for: {sorted(months - set(keys))}")
    return problems


def check_seed(source_dir: Path, keys: list[str], sink: Path) -> list[str]:
    import pyarrow.dataset as ds

    problems = []
    for key in keys:
        expected = source_rows(source_dir, key)
        got = ds.dataset(str(sink / key), format="parquet").count_rows()
        if got != expected:
            problems.append(f"{key}: source {expected} rows, seed output {got}")
    return problems


def measure(variant: str, k: int, repeat: int, source_dir: Path, keys: list[str], rows: int, scratch: Path) -> Run:
    month_bytes = max((source_dir / f"fhvhv_tripdata_{key}.parquet").stat().st_size for key in keys)
    sink = scratch / f"{variant}-{k}-{repeat}-{uuid.uuid4().hex[:6]}"
    load_before = os.getloadavg()[0]
    cluster = ours_cluster(k, month_bytes) if variant == "ours" else seed_cluster(k)
    with cluster as (client, startup, shape, threads):
        pids = client.run(os.getpid)
        with PeakSampler(pids) as sampler:
            run = run_ours if variant == "ours" else run_seed
            wall, tasks, _ = run(client, source_dir, keys, sink)
    try:
        problems = (
            check_ours(source_dir, keys, sink, tasks) if variant == "ours" else check_seed(source_dir, keys, sink)
        )
    except Exception as exc:  # an unreadable result is a wrong result
        problems = [f"read back failed: {type(exc).__name__}: {exc}"]
    finally:
        shutil.rmtree(sink, ignore_errors=True)
    total_rows = rows * len(keys)
    result = Run(
        variant=variant,
        workers=k,
        months=len(keys),
        rows_per_month=rows,
        repeat=repeat,
        wall_s=round(wall, 3),
        rows_per_s=round(total_rows / wall),
        correct=not problems,
        startup_s=round(startup, 2),
        peak_worker_mb=sampler.megabytes(),
        threads_per_worker=threads,
        cores=os.cpu_count() or 1,
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        cluster=shape,
        tasks=tasks,
        problems=problems,
    )
    if tasks:
        result.phase_median_s = {p: round(statistics.median(t["phases"][p] for t in tasks), 3) for p in PHASES}
        keys_ = ("commits", "attempts", "conflicts", "rebased", "rebased_over", "retries", "backoff_s")
        result.commits = {c: sum(t["commits"][c] for t in tasks) for c in keys_}
        result.commit_retries = int(result.commits["retries"])
    return result


def scaled(runs: list[Run]) -> None:
    """Speed-up and efficiency of each run against the same variant's smallest k (same repeat when there is one)."""
    for run in runs:
        base_k = min(r.workers for r in runs if r.variant == run.variant)
        bases = [r for r in runs if r.variant == run.variant and r.workers == base_k]
        base = next((r for r in bases if r.repeat == run.repeat), bases[0])
        run.speedup = round(base.wall_s / run.wall_s, 3)
        run.efficiency = round(run.speedup * base_k / run.workers, 3)


def default_workers() -> str:
    cores = os.cpu_count() or 1
    ks, k = [], 1
    while k < cores:
        ks.append(k)
        k *= 2
    return ",".join(str(x) for x in [*ks, cores])


def table(runs: list[Run]) -> str:
    lines = [
        "| variant | k | wall s | rows/s | speed-up | efficiency | peak MB per worker (max) | commit retries "
        "| correct | median task phases s (read / write / commit / summary / checks / other) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        phases = " / ".join(f"{r.phase_median_s[p]:.2f}" for p in PHASES[:-1]) if r.phase_median_s else "-"
        retries = f"{r.commit_retries} (rebased over {int(r.commits['rebased_over'])})" if r.commits else "-"
        lines.append(
            f"| {r.variant} | {r.workers} | {r.wall_s:.1f} | {r.rows_per_s:,.0f} | {r.speedup:.2f}x | "
            f"{r.efficiency:.0%} | {max(r.peak_worker_mb, default=0):,.0f} | {retries} | {r.correct} | {phases} |"
        )
    return "\n".join(lines)


def bytecode_cache(workdir: Path) -> None:
    """Workers inherit this environment: a bytecode cache, as a deployed worker has (see materialize_bench)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per month")
    parser.add_argument(
        "--workers", default=default_workers(), help="worker counts, e.g. 1,2 (default: 1, 2, 4 ... cores)"
    )
    parser.add_argument("--variants", default="ours,seed")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--first-month", default="2023-01", help="era C: int64 IDs, so the casts have work to do")
    parser.add_argument("--layout", default="single", choices=("single", "nonuniform"))
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "taxi-assets-bench"))
    parser.add_argument("--json", action="store_true", help="one JSON object per run, per line, on stdout")
    args = parser.parse_args(argv)
    workers = [int(k) for k in args.workers.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    if set(variants) - {"ours", "seed"}:
        parser.error("--variants takes ours and/or seed")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bytecode_cache(workdir)
    keys = month_keys(args.months, args.first_month)
    source_dir = ensure_months(workdir, keys, args.rows, args.layout)
    scratch = Path(tempfile.mkdtemp(prefix="scale-", dir=workdir))
    runs: list[Run] = []
    try:
        for repeat in range(args.repeats):
            for k in workers:
                order = variants if (repeat + k) % 2 == 0 else variants[::-1]  # alternate who goes first
                for variant in order:
                    run = measure(variant, k, repeat, source_dir, keys, args.rows, scratch)
                    runs.append(run)
                    scaled(runs)
                    if args.json:
                        print(json.dumps(asdict(run)), flush=True)
                    else:
                        print(
                            f"{variant} k={k} #{repeat}: {run.wall_s:.1f} s, {run.rows_per_s:,.0f} rows/s, "
                            f"speed-up {run.speedup:.2f}x, correct={run.correct} {run.problems or ''}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.json:
        print(table(runs))
    return 0 if all(r.correct for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
