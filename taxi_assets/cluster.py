"""Which Dask cluster a run gets: a pure choice from the setting and the plan, then a task runner for it.

The cluster is chosen after planning and only when there is work, sized from the number of stale months:
``local`` (a ``distributed.LocalCluster`` sized to this machine), ``coiled`` (``coiled.Cluster``), or the
``tcp://`` address of an existing scheduler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psutil
from prefect_dask import DaskTaskRunner

from taxi_assets.errors import ConfigurationError

MEMORY_PER_MONTH: Final = 2 << 30  # a month's transform peaks well under this (see benchmarks/)
COILED_MAX_WORKERS: Final = 20


@dataclass(frozen=True)
class ClusterSpec:
    """What to start: enough for a caller (and a test) to see the exact arguments."""

    kind: Literal["local", "coiled", "address"]
    n_workers: int = 1
    threads_per_worker: int = 1
    address: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def choose_cluster(
    setting: str,
    *,
    stale_months: int,
    cores: int | None = None,
    memory_bytes: int | None = None,
    coiled_options: Mapping[str, Any] | None = None,
) -> ClusterSpec:
    """Decide the cluster for ``stale_months`` months of work (pure; the machine facts are arguments)."""
    if stale_months < 1:
        raise ConfigurationError("cluster", "no cluster is started for a run with nothing stale")
    if setting.startswith(("tcp://", "tls://", "ws://", "wss://")):
        return ClusterSpec(kind="address", address=setting)
    if setting == "local":
        cores = cores or os.cpu_count() or 1
        memory_bytes = memory_bytes or psutil.virtual_memory().total
        by_memory = max(1, memory_bytes // MEMORY_PER_MONTH)
        workers = int(max(1, min(stale_months, cores, by_memory)))
        threads = max(1, cores // workers)  # one month on a 2-core machine gets both cores for encoding
        return ClusterSpec(
            kind="local",
            n_workers=workers,
            threads_per_worker=threads,
            kwargs={
                "n_workers": workers,
                "threads_per_worker": threads,
                "processes": True,
                "dashboard_address": ":0",  # a free port: two runs on one machine must not collide
                "memory_limit": int(memory_bytes // workers),
            },
        )
    if setting == "coiled":
        opts = dict(coiled_options or {})
        max_workers = int(opts.pop("max_workers", COILED_MAX_WORKERS))
        workers = min(stale_months, max_workers)
        kwargs: dict[str, Any] = {
            "n_workers": workers,
            "worker_memory": opts.pop("worker_memory", "8GiB"),
            "region": opts.pop("region", "us-east-1"),
            "spot_policy": opts.pop("spot_policy", "spot_with_fallback"),
            "idle_timeout": opts.pop("idle_timeout", "20 minutes"),
            "shutdown_on_close": True,
            "name": opts.pop("name", None),
        }
        software = opts.pop("software", None)
        if software:
            kwargs["software"] = software  # a named software environment; otherwise package sync
        kwargs.update(opts)
        return ClusterSpec(
            kind="coiled", n_workers=workers, kwargs={k: v for k, v in kwargs.items() if v is not None}
        )
    raise ConfigurationError(
        "cluster",
        f"unknown cluster {setting!r}; use 'local', 'coiled' or a scheduler address like tcp://host:8786",
    )


def task_runner_for(spec: ClusterSpec, *, worker_env: Mapping[str, str] | None = None) -> DaskTaskRunner:
    """A ``prefect_dask.DaskTaskRunner`` that creates (and always closes) the chosen cluster.

    ``worker_env`` reaches local worker processes: it carries this run's Prefect API URL, without which
    every worker process would start its own ephemeral Prefect server (seconds each).
    """
    if spec.kind == "address":
        return DaskTaskRunner(address=spec.address)
    if spec.kind == "local":
        kwargs = dict(spec.kwargs)
        if worker_env:
            kwargs["env"] = dict(worker_env)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)
    return DaskTaskRunner(cluster_class="coiled.Cluster", cluster_kwargs=dict(spec.kwargs))
