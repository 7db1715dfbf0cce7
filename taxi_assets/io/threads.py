"""How many threads Arrow, DuckDB and the Parquet encoders of a month may use: the process's share of the cores.

Why this exists: a Dask worker process starts with ``OMP_NUM_THREADS=1`` (distributed's nanny sets it, and
Coiled's), and Arrow sizes its CPU pool from that variable, so a month task ran its Parquet decoding on one
thread whatever the machine. DuckDB, the other way round, takes every core of the host, so k workers' checks
ran k x cores threads at once. Neither follows the cluster's shape; this module makes both follow one figure,
the cores a worker process may use (:func:`share_for`), and sets it (:func:`apply_thread_share`).

Where the figure comes from, first found wins:

1. the caller (the orchestration layer reads it from the Dask worker it runs on:
   :func:`taxi_assets.orchestration.cluster.apply_worker_thread_share`);
2. :data:`WORKER_THREADS_ENV`, which :func:`taxi_assets.orchestration.cluster.start_cluster` gives the worker
   processes of the clusters it starts (cores / workers, chosen with the cluster);
3. the cores this process may run on (``os.sched_getaffinity``): a process of its own, e.g. ``taxi-assets
   materialize`` or a single in-process worker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

WORKER_THREADS_ENV: Final = "TAXI_ASSETS_WORKER_THREADS"
MAX_LANES: Final = 4  # encoder threads per month: past 4 the reading thread, not encoding, is the bottleneck
MIN_LANES: Final = 2  # even on one core: the reading thread and an encoder overlap, so one lane would idle a core
MIN_IO_THREADS: Final = 8  # Arrow's own default: I/O threads wait on the network, they do not need a core each


@dataclass(frozen=True, slots=True)
class ThreadShare:
    """Threads for one process whose month tasks may use ``cores`` cores, ``tasks`` of them at once.

    * ``arrow_cpu``: Arrow's CPU pool (process-wide: Parquet decoding, compute kernels), all of ``cores``;
    * ``arrow_io``: Arrow's I/O pool (process-wide: reads waiting on the store), at least Arrow's default 8;
    * ``duckdb``: threads of one task's DuckDB connection (the checks), ``cores / tasks``;
    * ``lanes``: one task's Parquet encoder threads for ``trips``, ``cores / tasks`` within
      [:data:`MIN_LANES`, :data:`MAX_LANES`];
    * ``source``: where ``cores`` came from, for the log.
    """

    cores: int
    tasks: int
    arrow_cpu: int
    arrow_io: int
    duckdb: int
    lanes: int
    source: str

    def describe(self) -> str:
        """One line for a log: the figures and why."""
        return (
            f"{self.cores} core(s) for {self.tasks} task(s) at once ({self.source}): Arrow {self.arrow_cpu} CPU / "
            f"{self.arrow_io} I/O threads, DuckDB {self.duckdb}, {self.lanes} encoder thread(s) per month"
        )


def share_for(cores: int, *, tasks: int = 1, source: str = "given") -> ThreadShare:
    """The thread counts for ``cores`` cores shared by ``tasks`` concurrent month tasks (pure)."""
    cores, tasks = max(1, int(cores)), max(1, int(tasks))
    per_task = max(1, cores // tasks)
    return ThreadShare(
        cores=cores,
        tasks=tasks,
        arrow_cpu=cores,
        arrow_io=max(MIN_IO_THREADS, cores),
        duckdb=per_task,
        lanes=min(max(per_task, MIN_LANES), MAX_LANES),
        source=source,
    )


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cores_from_env(env: Mapping[str, str] | None = None) -> int | None:
    """:data:`WORKER_THREADS_ENV` as a positive int; None when unset or not a positive number."""
    text = (os.environ if env is None else env).get(WORKER_THREADS_ENV, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


_lock = threading.Lock()
_current: ThreadShare | None = None


def apply_thread_share(cores: int | None = None, *, tasks: int = 1, source: str = "") -> ThreadShare:
    """Set Arrow's CPU and I/O pools for this process and remember the share for DuckDB and the encoders.

    ``cores`` None: :data:`WORKER_THREADS_ENV`, else :func:`usable_cores` (see the module docstring).
    Overrides ``OMP_NUM_THREADS``, which Arrow read when it started.
    """
    global _current
    if cores is None:
        from_env = cores_from_env()
        cores, source = (from_env, f"{WORKER_THREADS_ENV}={from_env}") if from_env else (usable_cores(), "host cores")
    share = share_for(cores, tasks=tasks, source=source or "given")
    with _lock:
        pa.set_cpu_count(share.arrow_cpu)
        pa.set_io_thread_count(share.arrow_io)
        _current = share
    return share


def ensure_thread_share() -> ThreadShare:
    """The share applied in this process, applying the default one (env, else host cores) when none was."""
    return _current if _current is not None else apply_thread_share()


def current_thread_share() -> ThreadShare | None:
    """The share applied in this process, None when none was (DuckDB then takes its own default)."""
    return _current
