"""Threads follow the cluster's shape (issue 16.2): Arrow, DuckDB and the encoders of a month task use the
worker's share of the cores, not the one thread Dask's ``OMP_NUM_THREADS=1`` leaves Arrow, nor every core of
the host for DuckDB. The worker cases run on real LocalClusters with worker processes (nannies)."""

from __future__ import annotations

import os
import sys

import cloudpickle
import psutil
import pyarrow as pa
import pytest
from distributed import Client, LocalCluster

from taxi_assets.io.duckdb import open_connection
from taxi_assets.io.sink import layout_for
from taxi_assets.io.threads import (
    MAX_LANES,
    MIN_IO_THREADS,
    MIN_LANES,
    WORKER_THREADS_ENV,
    cores_from_env,
    ensure_thread_share,
    share_for,
)
from taxi_assets.orchestration.cluster import GiB, apply_worker_thread_share, choose_cluster, start_cluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes cannot import this test module


def test_a_share_gives_arrow_all_its_cores_and_each_task_its_part() -> None:
    share = share_for(8, tasks=2, source="test")
    assert (share.arrow_cpu, share.duckdb, share.lanes) == (8, 4, 4)
    assert share.arrow_io == MIN_IO_THREADS
    assert share_for(32).arrow_io == 32
    assert share_for(32).lanes == MAX_LANES
    one = share_for(0, tasks=0)
    assert (one.cores, one.tasks, one.duckdb, one.lanes) == (1, 1, 1, MIN_LANES)
    assert "8 core(s) for 2 task(s) at once (test)" in share.describe()


def test_the_cluster_setting_is_read_only_when_it_is_a_positive_number() -> None:
    assert cores_from_env({WORKER_THREADS_ENV: "3"}) == 3
    assert cores_from_env({WORKER_THREADS_ENV: "0"}) is None
    assert cores_from_env({WORKER_THREADS_ENV: "two"}) is None
    assert cores_from_env({}) is None


def test_the_encoder_lanes_follow_the_share() -> None:
    assert (layout_for(share_for(1)).lanes, layout_for(share_for(1)).max_groups) == (2, 2)  # the old default
    assert (layout_for(share_for(2)).lanes, layout_for(share_for(2)).max_groups) == (2, 2)
    assert (layout_for(share_for(16)).lanes, layout_for(share_for(16)).max_groups) == (MAX_LANES, MAX_LANES)


def test_local_workers_split_the_cores_and_say_so() -> None:
    spec = choose_cluster("local", month_sizes=[1 << 20] * 4, cores=16, memory_bytes=64 * GiB)
    assert (spec.n_workers, spec.threads_per_worker, spec.cores_per_worker) == (4, 1, 4)
    assert spec.worker_env == {WORKER_THREADS_ENV: "4"}
    assert "4 worker(s) x 1 month at a time x 4 core(s)" in spec.reason
    by_memory = choose_cluster("local", month_sizes=[1 * GiB] * 8, cores=16, memory_bytes=16 * GiB)
    assert (by_memory.n_workers, by_memory.cores_per_worker) == (2, 8)  # fewer workers: more cores each
    one = choose_cluster("local", month_sizes=[1 << 20], cores=16, memory_bytes=64 * GiB)
    assert (one.cores_per_worker, one.worker_env) == (16, {})  # in-process: this process's own cores


def probe() -> dict[str, object]:
    """What a month task in this worker would run with, before and after applying its share."""
    before = pa.cpu_count()
    share = apply_worker_thread_share()
    with open_connection() as con:
        row = con.execute("SELECT current_setting('threads')").fetchone()
    return {
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "env": os.environ.get(WORKER_THREADS_ENV),
        "arrow_before": before,
        "arrow": pa.cpu_count(),
        "io": pa.io_thread_count(),
        "duckdb": int(row[0]) if row else None,
        "lanes": layout_for(share).lanes,
        "share": share,
    }


def default_probe() -> dict[str, object]:
    """What a month task gets when only the sink applies a share (no call from the flow)."""
    share = ensure_thread_share()
    return {"arrow": pa.cpu_count(), "lanes": layout_for(share).lanes, "source": share.source}


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_with_two_threads_runs_arrow_on_two_threads() -> None:
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        out = client.submit(probe, pure=False).result()
    assert out["omp"] == "1"  # the nanny's setting, which Arrow obeyed until the share was applied
    assert out["arrow_before"] == 1
    assert out["arrow"] == 2
    assert out["io"] >= MIN_IO_THREADS
    assert out["duckdb"] == 1  # two months at once in this worker: one core each
    assert out["lanes"] == MIN_LANES
    assert out["share"].source == "threads_per_worker=2"


@pytest.mark.integration
@pytest.mark.slow
def test_workers_started_from_the_plan_get_their_share_through_the_environment() -> None:
    # 2 months on a "6-core" machine: 2 worker processes of 3 cores each, whatever this machine has
    spec = choose_cluster("local", month_sizes=[1 << 20] * 2, cores=6, memory_bytes=psutil.virtual_memory().total)
    assert (spec.n_workers, spec.cores_per_worker) == (2, 3)
    with start_cluster(spec) as running, Client(running.address) as client:
        first, second = sorted(client.scheduler_info(n_workers=-1)["workers"])  # a fresh process for each probe
        explicit = client.submit(probe, pure=False, workers=[first]).result()
        default = client.submit(default_probe, pure=False, workers=[second]).result()
    assert explicit["omp"] == "1"
    assert explicit["env"] == "3"
    assert (explicit["arrow"], explicit["duckdb"], explicit["lanes"]) == (3, 3, 3)
    assert (default["arrow"], default["lanes"]) == (3, 3)  # the sink's own fallback reads the same setting
    assert default["source"] == f"{WORKER_THREADS_ENV}=3"
    summary = running.summary()
    assert (summary["workers"], summary["threads_per_worker"], summary["cores_per_worker"]) == (2, 1, 3)
    assert "x 3 core(s)" in summary["reason"]
