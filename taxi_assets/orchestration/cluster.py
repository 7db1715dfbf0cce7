"""Which Dask cluster a run gets: a pure choice from the setting and the plan, then one function that starts it.

The cluster is chosen after planning and only when there is work, sized from the stale months (how many, and
the size of the largest source file): ``local`` (a ``distributed.LocalCluster`` sized to this machine),
``coiled`` (``coiled.Cluster``), or the address of an existing scheduler. :func:`start_cluster` owns the
cluster's whole life: it measures start-up, hands out the address, and closes the cluster on every way out
(success, a failed month, an exception, a cancelled flow run), so no run leaves a billed cluster behind.

The class behind each kind is looked up in :data:`CLUSTER_CLASSES` at start time: that is the seam a test
uses to put a recording ``LocalCluster`` where ``coiled.Cluster`` would be, and the place to plug in another
Dask deployment (``dask_jobqueue.SLURMCluster``...) without touching the flow.

A Coiled run needs an API token, and an unattended run must never fall into Coiled's interactive login:
:func:`preflight_coiled` checks, in well under a second and before Prefect or any cluster starts, that one of the
three places a token can come from holds one (a Prefect Secret block, ``DASK_COILED__TOKEN``, the Dask config
that ``coiled login`` writes), and :func:`start_cluster` checks again right before ``coiled.Cluster``. Importing
this module does not import Prefect, so the check is cheap for the CLI too.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import dask.config
import psutil

from taxi_assets.errors import ClusterUnavailable, CoiledTokenMissing, ConfigurationError
from taxi_assets.io.threads import WORKER_THREADS_ENV, ThreadShare, apply_thread_share, cores_from_env, usable_cores
from taxi_assets.settings import CLUSTER_ADDRESS_SCHEMES, CoiledOptions, Settings, checked_cluster

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

GiB: Final = 1 << 30
# Peak memory of one month's task per byte of its parquet source (decompressed Arrow, the cleaned copy and the
# encoder's buffers); a real month is ~0.5 GB of parquet. With a floor: small months still import the stack.
MEMORY_PER_SOURCE_BYTE: Final = 6
MIN_MONTH_MEMORY: Final = 1 * GiB
MIN_COILED_WORKER_GIB: Final = 8
# Share of this machine's memory the local workers may use; the rest is for the flow process and the OS.
LOCAL_MEMORY_SHARE: Final = 0.8
SCHEDULER_PROBE_SECONDS: Final = 10.0  # a TCP connect to a live scheduler takes milliseconds, even across regions

COILED_TOKEN_ENV: Final = "DASK_COILED__TOKEN"
COILED_TOKEN_CONFIG: Final = "coiled.token"

ClusterKind = Literal["local", "coiled", "address"]
CoiledTokenSource = Literal["block", "env", "config"]

CLUSTER_CLASSES: dict[str, str | Callable[..., Any]] = {
    "local": "distributed.LocalCluster",
    "coiled": "coiled.Cluster",
}
"""Kind -> cluster class (dotted name or callable), resolved by :func:`cluster_class` when a cluster starts."""


@dataclass(frozen=True)
class ClusterSpec:
    """What to start, with the exact constructor arguments, and why this size (for the run's log).

    ``threads_per_worker`` is Dask's: how many tasks (months) a worker runs at once, 1 so that a worker's
    memory holds one month. ``cores_per_worker`` is what each of those months may use through Arrow, DuckDB
    and the encoders (:mod:`taxi_assets.io.threads`); ``worker_env`` carries it to worker processes. None:
    decided on the worker (a Coiled VM hosts one worker and all its cores are that worker's).
    """

    kind: ClusterKind
    n_workers: int = 1
    threads_per_worker: int = 1
    address: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    cores_per_worker: int | None = None
    worker_env: Mapping[str, str] = field(default_factory=dict)


def month_memory(sizes: Sequence[int]) -> int:
    """Memory one worker needs for the largest of these months (bytes of parquet source each)."""
    largest = max(sizes, default=0)
    return max(MIN_MONTH_MEMORY, largest * MEMORY_PER_SOURCE_BYTE)


def choose_cluster(
    setting: str,
    *,
    month_sizes: Sequence[int],
    cores: int | None = None,
    memory_bytes: int | None = None,
    coiled: CoiledOptions | None = None,
    name: str | None = None,
) -> ClusterSpec:
    """Decide the cluster for the stale months whose source sizes are ``month_sizes`` (pure but for defaults).

    One month is one task, and a worker runs one task at a time (one Dask thread): two months on one worker
    would double its peak memory. The cores go to the months instead: each worker gets ``cores / workers`` of
    them for Arrow's decoding, DuckDB's checks and the Parquet encoders (``cores_per_worker``), so a worker
    does not run Arrow on the one thread Dask's ``OMP_NUM_THREADS=1`` leaves it, nor DuckDB on every core.

    Args:
        setting: ``local``, ``coiled`` or a scheduler address (``tcp://host:8786``).
        month_sizes: Source bytes of each stale month; their number bounds the workers, the largest sets the
            memory per worker.
        cores: CPU cores of this machine (``os.cpu_count()`` when omitted); ``local`` only.
        memory_bytes: Memory of this machine (``psutil`` when omitted); ``local`` only.
        coiled: Coiled shape options (defaults when omitted); ``coiled`` only.
        name: Cluster name (Coiled shows it in its dashboard); a run passes ``taxi-assets-<run id>``.

    Raises:
        ConfigurationError: nothing is stale (no cluster is ever started for a no-op run), or an unknown
            setting.
    """
    setting = checked_cluster(setting)  # the one check of the setting (Settings.resolve made it already)
    months = len(month_sizes)
    if months < 1:
        raise ConfigurationError("cluster", "no cluster is started for a run with nothing stale")
    if setting.startswith(CLUSTER_ADDRESS_SCHEMES):
        return ClusterSpec(kind="address", address=setting, reason=f"existing scheduler at {setting}")
    need = month_memory(month_sizes)
    if setting == "local":
        return _local(months, need, cores or os.cpu_count() or 1, memory_bytes or psutil.virtual_memory().total)
    return _coiled(months, need, coiled or CoiledOptions(), name)  # checked_cluster left only "coiled"


def _local(months: int, need: int, cores: int, memory_bytes: int) -> ClusterSpec:
    usable = int(memory_bytes * LOCAL_MEMORY_SHARE)
    by_memory = max(1, usable // need)
    workers = int(max(1, min(months, cores, by_memory)))
    limit = usable // workers
    bound = "months" if workers == months else ("memory" if by_memory < min(months, cores) else "cores")
    per_worker = max(1, cores // workers)
    reason = (
        f"{months} month(s), largest needs ~{need / GiB:.1f} GiB: {workers} worker(s) x 1 month at a time x "
        f"{per_worker} core(s), {limit / GiB:.1f} GiB each (bound by {bound}; {cores} cores, "
        f"{memory_bytes / GiB:.1f} GiB here)"
    )
    if need > usable:
        reason += "; the largest month may not fit in this machine's memory: consider cluster='coiled'"
    # One month: the worker runs in this process (threads), as `taxi-assets materialize` does. A worker process
    # would cost a nanny, a second interpreter and its imports (~3 s of CPU here), all spent before and around
    # a single task that nothing runs in parallel with. Several months: processes, for parallelism (the GIL)
    # and memory isolation (the nanny restarts a worker past its memory limit).
    processes = workers > 1
    if not processes:
        reason += "; one month: an in-process worker"
    return ClusterSpec(
        kind="local",
        n_workers=workers,
        threads_per_worker=1,
        cores_per_worker=per_worker,
        worker_env={WORKER_THREADS_ENV: str(per_worker)} if processes else {},
        kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": processes,
            "dashboard_address": ":0",  # a free port: two runs on one machine must not collide
            "memory_limit": limit,
        },
        reason=reason,
    )


def _coiled(months: int, need: int, opts: CoiledOptions, name: str | None) -> ClusterSpec:
    workers = min(months, opts.max_workers)
    kwargs: dict[str, Any] = {
        "n_workers": workers,
        "region": opts.region,
        "spot_policy": opts.spot_policy,
        "idle_timeout": opts.idle_timeout,  # the backstop if this process dies without closing
        "shutdown_on_close": True,
        "tags": {"project": "taxi-assets"},
        # Coiled ships a frozen copy of the local dask.config to the cluster by default; that config can hold
        # `coiled.token` (from `coiled login`, or set by start_cluster from a Secret block). The workers need none.
        "send_dask_config": False,
        # Coiled's workers default to one thread per core: that would run several months at once in a worker
        # sized for one. One month at a time; it gets the VM's cores through Arrow, DuckDB and the encoders.
        "worker_options": {"nthreads": 1},
    }
    if opts.vm_types:
        kwargs["worker_vm_types"] = list(opts.vm_types)  # Coiled refuses vm types together with memory
        size = ", ".join(opts.vm_types)
    else:
        kwargs["worker_memory"] = opts.worker_memory or f"{max(MIN_COILED_WORKER_GIB, math.ceil(need / GiB))}GiB"
        size = kwargs["worker_memory"]
    if opts.software:
        kwargs["software"] = opts.software  # a named software environment; without it, package sync
    if opts.workspace:
        kwargs["workspace"] = opts.workspace
    if name:
        kwargs["name"] = name
    reason = (
        f"{months} month(s), largest needs ~{need / GiB:.1f} GiB: {workers} Coiled worker(s) of {size} x 1 month "
        "at a time, all of its VM's cores"
    )
    if workers < months:
        reason += f" (capped by max_workers={opts.max_workers})"
    return ClusterSpec(kind="coiled", n_workers=workers, kwargs=kwargs, reason=reason)


# -- the Coiled token preflight ----------------------------------------------------------------------------------


def coiled_token_source(
    *,
    env: Mapping[str, str],
    config_token: object = None,
    block_name: str | None = None,
    block_token: str | None = None,
) -> CoiledTokenSource | None:
    """Where a Coiled run's API token comes from, or None when from nowhere (pure: the facts are arguments).

    The first place that holds one, in the order :func:`start_cluster` applies them: a Prefect Secret block
    (named in the settings and not loaded yet, or the token loaded from it), then ``DASK_COILED__TOKEN``, then
    ``coiled.token`` in the Dask config (``~/.config/dask/coiled.yaml``, written by ``coiled login``).

    Args:
        env: The environment (``os.environ`` in a run).
        config_token: ``coiled.token`` as the Dask config holds it (see :func:`coiled_config_token`).
        block_name: ``TAXI_ASSETS_COILED_TOKEN_BLOCK``; trusted before it is loaded (loading a missing block
            fails on its own, naming it).
        block_token: The token loaded from that block; empty counts as none.
    """
    if block_name or block_token:
        return "block"
    if (env.get(COILED_TOKEN_ENV) or "").strip():
        return "env"
    if isinstance(config_token, str) and config_token.strip():
        return "config"
    return None


def require_coiled_token(
    *,
    env: Mapping[str, str],
    config_token: object = None,
    block_name: str | None = None,
    block_token: str | None = None,
) -> CoiledTokenSource:
    """:func:`coiled_token_source`, or :class:`CoiledTokenMissing` (exit 2) when no place holds a token."""
    source = coiled_token_source(env=env, config_token=config_token, block_name=block_name, block_token=block_token)
    if source is None:
        raise CoiledTokenMissing()
    return source


def coiled_config_token(env: Mapping[str, str] | None = None) -> object:
    """``coiled.token`` as Coiled would read it now: the live Dask config, else the YAML files read afresh.

    The files are re-read (``dask.config.collect``, which leaves the global config alone) because a
    ``coiled login`` may have written one since Dask was imported; the live config holds what was set in code.
    """
    live = dask.config.get(COILED_TOKEN_CONFIG, None)
    if live:
        return live
    fresh = dask.config.collect(paths=dask.config.paths, env=os.environ if env is None else env)
    return dask.config.get(COILED_TOKEN_CONFIG, None, config=fresh)


def preflight_coiled(
    cfg: Settings, token_from_block: str | None = None, *, env: Mapping[str, str] | None = None
) -> CoiledTokenSource | None:
    """Fail fast when ``cfg`` asks for Coiled and no token can be found; else say where it will come from.

    Call it before Prefect or a cluster starts (it imports neither). None when the run does not use Coiled.

    Args:
        cfg: The run's settings: ``cluster`` and ``coiled.token_block``.
        token_from_block: The token already loaded from that block, when the caller has loaded it.
        env: The environment (``os.environ`` when omitted).

    Raises:
        CoiledTokenMissing: one line naming the three ways to provide a token; never the token itself.
    """
    if cfg.cluster != "coiled":
        return None
    env = os.environ if env is None else env
    return require_coiled_token(
        env=env,
        config_token=coiled_config_token(env),
        block_name=cfg.coiled.token_block,
        block_token=token_from_block,
    )


def preflight_scheduler(address: str, *, timeout: float = SCHEDULER_PROBE_SECONDS) -> None:
    """Fail fast when nothing listens at an existing scheduler's address (``tcp``, ``tls``, ``ws``, ``wss``).

    Only the port is probed (a TCP connect, closed at once): whether Dask can then talk to it (TLS, versions)
    is for Dask to say. Other addresses (``inproc://``, a setting that is not an address) are left alone.

    Raises:
        ClusterUnavailable: the connection was refused, timed out or the host does not resolve.
    """
    if not address.startswith(CLUSTER_ADDRESS_SCHEMES) or address.startswith("inproc://"):
        return
    parts = urlsplit(address)
    if not parts.hostname or parts.port is None:
        return
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except TimeoutError:
        raise ClusterUnavailable(address, f"no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ClusterUnavailable(address, exc.strerror or type(exc).__name__) from None


def cluster_class(kind: str) -> Callable[..., Any]:
    """The class (or factory) that starts a cluster of ``kind``, from :data:`CLUSTER_CLASSES`."""
    target = CLUSTER_CLASSES[kind]
    if callable(target):
        return target
    module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


@dataclass
class RunningCluster:
    """A started (or connected) cluster: where it is, what it cost in time. Filled in by :func:`start_cluster`."""

    kind: ClusterKind
    address: str
    n_workers: int
    security: Any = None
    startup_seconds: float = 0.0
    seconds: float | None = None  # from the start of creation to the end of closing; None while it runs
    dashboard: str | None = None
    threads_per_worker: int = 1
    cores_per_worker: int | None = None  # None: decided on each worker (its host's cores / its workers)
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        """The ``cluster`` entry of a run summary: kind, shape (workers x months at a time x cores) and why,
        start-up and cluster-seconds."""
        up = self.seconds or 0.0
        return {
            "kind": self.kind,
            "workers": self.n_workers,
            "threads_per_worker": self.threads_per_worker,
            "cores_per_worker": self.cores_per_worker,
            "reason": self.reason,
            "address": self.address,
            "dashboard": self.dashboard,
            "startup_seconds": round(self.startup_seconds, 2),
            "seconds": round(up, 2),
            "worker_seconds": round(up * self.n_workers, 2),
        }


@contextlib.contextmanager
def start_cluster(
    spec: ClusterSpec,
    *,
    worker_env: Mapping[str, str] | None = None,
    private_env: Mapping[str, str] | None = None,
    coiled_token: str | None = None,
) -> Iterator[RunningCluster]:
    """Start the cluster of ``spec`` for the length of the ``with`` block, then close it, whatever happened.

    Args:
        spec: From :func:`choose_cluster`.
        worker_env: Non-secret variables every worker needs, above all this run's ``PREFECT_API_URL`` (without
            it each local worker process would start its own ephemeral Prefect server). Passed to
            ``LocalCluster(env=...)`` or ``coiled.Cluster(environ=...)``.
        private_env: Secret variables for remote workers (``PREFECT_API_KEY``), sent with Coiled's
            ``send_private_envs`` so they are neither stored nor logged by Coiled. Local workers inherit them.
        coiled_token: A Coiled API token from a Prefect Secret block; set in ``dask.config`` only while the
            cluster lives, never passed as an argument (arguments are what a test records and a log shows).

    Raises:
        CoiledTokenMissing: ``spec`` is Coiled and neither ``coiled_token``, ``DASK_COILED__TOKEN`` nor the Dask
            config holds a token; raised before ``coiled.Cluster`` could start an interactive login.
        ClusterUnavailable: ``spec`` is an existing scheduler's address and nothing listens there.
    """
    if spec.kind == "coiled":
        require_coiled_token(env=os.environ, config_token=coiled_config_token(), block_token=coiled_token)
    if spec.kind == "address":
        assert spec.address is not None
        preflight_scheduler(spec.address)  # a flow started without the CLI (a deployment) fails fast too
        yield RunningCluster(kind="address", address=spec.address, n_workers=0, seconds=0.0, reason=spec.reason)
        return
    kwargs = dict(spec.kwargs)
    env = {**spec.worker_env, **(worker_env or {})}
    if env and kwargs.get("processes", True):  # in-process workers share this process's settings
        kwargs["env" if spec.kind == "local" else "environ"] = env
    factory = cluster_class(spec.kind)
    config: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if coiled_token:
        config = dask.config.set({"coiled.token": coiled_token})
    t0 = time.perf_counter()
    with config:
        cluster = factory(**kwargs)
        running = RunningCluster(
            kind=spec.kind,
            address=str(cluster.scheduler_address),
            n_workers=spec.n_workers,
            security=getattr(cluster, "security", None),
            startup_seconds=time.perf_counter() - t0,
            dashboard=getattr(cluster, "dashboard_link", None),
            threads_per_worker=spec.threads_per_worker,
            cores_per_worker=spec.cores_per_worker,
            reason=spec.reason,
        )
        try:
            if private_env and spec.kind == "coiled":
                cluster.send_private_envs(dict(private_env))
            yield running
        finally:
            try:
                cluster.close()
            finally:
                running.seconds = time.perf_counter() - t0


def task_runner_for(running: RunningCluster) -> DaskTaskRunner:
    """A ``prefect_dask.DaskTaskRunner`` on a cluster :func:`start_cluster` owns (it connects, never closes).

    By address plus the cluster's ``security``: Prefect duplicates a task runner per flow run and a duplicate
    keeps the address and client options but not a cluster object; Coiled's TLS needs the security object.
    """
    # Imported here, not at the top: it imports Prefect (~3 s), which the CLI's preflight must not wait for.
    from prefect_dask import DaskTaskRunner

    client_kwargs = {"security": running.security} if running.security is not None else None
    return DaskTaskRunner(address=running.address, client_kwargs=client_kwargs)


# -- threads on a worker -----------------------------------------------------------------------------------------


def worker_cores() -> tuple[int, int, str]:
    """(cores, months at once, why) for the month tasks of this process, read from the Dask worker it runs on.

    First found: :data:`~taxi_assets.io.threads.WORKER_THREADS_ENV` (set by :func:`start_cluster` from the
    spec); a worker with ``threads_per_worker`` > 1 (that many cores, shared by that many tasks); a
    one-thread worker's share of its host (cores / the scheduler's workers on the same host, e.g. a cluster at
    an address, or a Coiled VM); outside a worker, this process's cores.
    """
    from distributed import get_client, get_worker

    try:
        worker = get_worker()
    except ValueError:  # not in a Dask task: e.g. `taxi-assets materialize`
        return usable_cores(), 1, "this process's cores"
    tasks = max(1, int(worker.state.nthreads))
    from_env = cores_from_env()
    if from_env:
        return from_env, tasks, f"{WORKER_THREADS_ENV}={from_env} from the cluster's shape"
    if tasks > 1:
        return tasks, tasks, f"threads_per_worker={tasks}"
    host = usable_cores()
    try:
        workers = get_client().scheduler_info(n_workers=-1)["workers"].values()
        peers = max(1, sum(1 for w in workers if w.get("host") == worker.host))
    except (OSError, KeyError, ValueError, TimeoutError):  # no answer: assume a worker per core
        return 1, 1, f"{host} core(s) here, workers on this host unknown"
    return max(1, host // peers), 1, f"{host} core(s) here / {peers} worker(s) on this host"


def apply_worker_thread_share() -> ThreadShare:
    """Set Arrow's, DuckDB's and the encoders' threads for the month tasks of this worker (call it first in a
    month task). Dask's nanny starts workers with ``OMP_NUM_THREADS=1``, which Arrow would otherwise obey."""
    cores, tasks, why = worker_cores()
    return apply_thread_share(cores, tasks=tasks, source=why)
