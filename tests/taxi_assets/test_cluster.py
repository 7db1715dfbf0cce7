"""The cluster choice (pure: machine facts and month sizes are arguments) and the one function that starts a
cluster, on real LocalClusters; Coiled stops at our arguments (checked against the real ``coiled.Cluster``
signature), a recording LocalCluster standing in for it; the Coiled token preflight on real Dask config files."""

from __future__ import annotations

import inspect
import pickle
import socket
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
import yaml
from distributed import Client, LocalCluster
from distributed.core import Status

from taxi_assets.errors import ClusterUnavailable, CoiledTokenMissing, ConfigurationError
from taxi_assets.orchestration import cluster as cluster_mod
from taxi_assets.orchestration.cluster import (
    COILED_TOKEN_ENV,
    ClusterSpec,
    GiB,
    choose_cluster,
    cluster_class,
    coiled_config_token,
    coiled_token_source,
    month_memory,
    preflight_coiled,
    preflight_scheduler,
    require_coiled_token,
    start_cluster,
    task_runner_for,
)
from taxi_assets.settings import CoiledOptions, Settings, SpotPolicy

MiB = 1 << 20
SMALL = 50 * MiB  # a month of synthetic data; a real one is ~500 MB


class Recorder:
    """A cluster class stand-in: records arguments and the Coiled token in dask.config, starts a LocalCluster."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.tokens: list[str | None] = []
        self.private: list[dict] = []
        self.instances: list[LocalCluster] = []

    def __call__(self, **kwargs) -> LocalCluster:
        self.calls.append(kwargs)
        self.tokens.append(dask.config.get("coiled.token", None))
        instance = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
        instance.send_private_envs = self.private.append  # coiled.Cluster's method for secrets
        self.instances.append(instance)
        return instance


@pytest.fixture
def no_coiled_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No token anywhere Coiled looks: no variable, no live config, Dask config files read from an empty folder."""
    monkeypatch.delenv(COILED_TOKEN_ENV, raising=False)
    folder = tmp_path / "dask-config"
    folder.mkdir()
    monkeypatch.setattr(dask.config, "paths", [str(folder)])
    with dask.config.set({"coiled.token": None}):
        yield folder


def coiled_login(folder: Path, token: str) -> None:
    """What `coiled login` leaves behind: ~/.config/dask/coiled.yaml with coiled.token."""
    body = {"coiled": {"token": token, "server": "https://cloud.coiled.io", "user": "someone"}}
    (folder / "coiled.yaml").write_text(yaml.safe_dump(body))


# -- the choice ------------------------------------------------------------------------------------------------


def test_local_gets_a_worker_per_month_up_to_the_cores() -> None:
    spec = choose_cluster("local", month_sizes=[SMALL] * 3, cores=8, memory_bytes=64 * GiB)
    assert (spec.kind, spec.n_workers, spec.threads_per_worker) == ("local", 3, 1)
    assert spec.kwargs == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
        "memory_limit": int(64 * GiB * 0.8) // 3,
    }
    assert "bound by months" in spec.reason
    assert choose_cluster("local", month_sizes=[SMALL] * 12, cores=4, memory_bytes=64 * GiB).n_workers == 4


def test_one_local_month_gets_an_in_process_worker() -> None:
    spec = choose_cluster("local", month_sizes=[SMALL], cores=8, memory_bytes=64 * GiB)
    assert (spec.n_workers, spec.kwargs["processes"]) == (1, False)
    assert "one month: an in-process worker" in spec.reason


@pytest.mark.integration  # a real Dask cluster
def test_an_in_process_worker_gets_no_env_it_shares_this_process() -> None:
    recorder = Recorder()
    spec = choose_cluster("local", month_sizes=[SMALL], cores=2, memory_bytes=8 * GiB)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "local", recorder)
        with start_cluster(spec, worker_env={"PREFECT_API_URL": "http://127.0.0.1:1/api"}):
            pass
    assert recorder.calls == [dict(spec.kwargs)]  # LocalCluster(processes=False) refuses a nanny's env


def test_local_workers_are_bounded_by_the_memory_the_largest_month_needs() -> None:
    # 1 GB of parquet needs ~6 GiB; 16 GiB * 0.8 holds two such workers, not four.
    spec = choose_cluster("local", month_sizes=[SMALL, 1 * GiB, SMALL, SMALL], cores=8, memory_bytes=16 * GiB)
    assert spec.n_workers == 2
    assert spec.kwargs["memory_limit"] >= month_memory([1 * GiB])
    assert "bound by memory" in spec.reason


def test_a_month_too_large_for_this_machine_still_runs_and_says_so() -> None:
    spec = choose_cluster("local", month_sizes=[4 * GiB], cores=8, memory_bytes=8 * GiB)
    assert spec.n_workers == 1
    assert "consider cluster='coiled'" in spec.reason


def test_coiled_arguments_follow_the_plan_and_the_options() -> None:
    spec = choose_cluster("coiled", month_sizes=[SMALL, 3 * GiB], name="taxi-assets-run1")
    assert spec.kind == "coiled"
    assert spec.n_workers == 2
    assert spec.kwargs == {
        "n_workers": 2,
        "region": "us-east-1",
        "spot_policy": "spot_with_fallback",
        "idle_timeout": "20 minutes",
        "shutdown_on_close": True,
        "tags": {"project": "taxi-assets"},
        "send_dask_config": False,  # the local dask.config may hold coiled.token
        "worker_options": {"nthreads": 1},  # one month at a time in a worker sized for one (Coiled: 1 per core)
        "worker_memory": "18GiB",  # 3 GiB of parquet x 6
        "name": "taxi-assets-run1",
    }


def test_coiled_is_capped_and_takes_vm_types_or_a_software_environment() -> None:
    opts = CoiledOptions(
        max_workers=3, vm_types=("m6i.2xlarge",), software="taxi-env", spot_policy="on-demand", workspace="tlc"
    )
    spec = choose_cluster("coiled", month_sizes=[SMALL] * 10, coiled=opts)
    assert spec.n_workers == 3
    assert "capped by max_workers=3" in spec.reason
    kwargs = dict(spec.kwargs)
    assert kwargs.pop("worker_vm_types") == ["m6i.2xlarge"]
    assert "worker_memory" not in kwargs  # Coiled refuses both
    assert (kwargs["software"], kwargs["spot_policy"], kwargs["workspace"]) == ("taxi-env", "on-demand", "tlc")
    assert "name" not in kwargs


def test_an_address_is_used_as_is() -> None:
    spec = choose_cluster("tls://scheduler.internal:8786", month_sizes=[SMALL])
    assert spec == ClusterSpec(
        kind="address",
        address="tls://scheduler.internal:8786",
        reason="existing scheduler at tls://scheduler.internal:8786",
    )


def test_nothing_stale_or_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="nothing stale"):
        choose_cluster("local", month_sizes=[])
    with pytest.raises(ConfigurationError, match="unknown cluster 'kubernetes'"):
        choose_cluster("kubernetes", month_sizes=[SMALL])


@pytest.mark.integration  # a real Dask cluster
def test_the_coiled_arguments_are_parameters_of_the_real_coiled_cluster() -> None:
    """An upgrade of coiled that renames or drops one of our arguments fails here, not in a billed run."""
    import coiled

    signature = inspect.signature(coiled.Cluster.__init__, eval_str=True)
    assert not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()), "no **kwargs to hide a typo"
    every_option = CoiledOptions(software="env", vm_types=("m6i.xlarge",), workspace="tlc", worker_memory="9GiB")
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "coiled", recorder)
        for opts in (CoiledOptions(), every_option, CoiledOptions(worker_memory="32GiB")):
            spec = choose_cluster("coiled", month_sizes=[SMALL] * 2, coiled=opts, name="taxi-assets-r1")
            with start_cluster(spec, worker_env={"PREFECT_API_URL": "http://x/api"}, coiled_token="t0ken"):
                pass
    assert {"worker_vm_types", "software", "workspace", "name", "environ"} <= set().union(*recorder.calls)
    for kwargs in recorder.calls:  # exactly what coiled.Cluster(**kwargs) would have been given
        signature.bind(None, **kwargs)  # TypeError on an unknown or misspelt keyword
    allowed = typing.get_args(typing.get_args(signature.parameters["spot_policy"].annotation)[0])
    assert set(typing.get_args(SpotPolicy)) <= set(allowed)
    assert callable(coiled.Cluster.send_private_envs)  # how start_cluster hands over PREFECT_API_KEY


def test_the_cluster_classes_resolve_to_the_real_ones() -> None:
    import coiled

    assert cluster_class("local") is LocalCluster
    assert cluster_class("coiled") is coiled.Cluster


# -- the Coiled token preflight --------------------------------------------------------------------------------


def test_a_token_in_each_of_the_three_places_passes_and_the_block_comes_first() -> None:
    assert coiled_token_source(env={}, block_name="coiled-token") == "block"  # not loaded yet: trusted
    assert coiled_token_source(env={}, block_token="t0ken") == "block"
    assert coiled_token_source(env={COILED_TOKEN_ENV: "t0ken"}) == "env"
    assert coiled_token_source(env={}, config_token="t0ken") == "config"
    every: dict[str, Any] = {"env": {COILED_TOKEN_ENV: "a"}, "config_token": "b", "block_token": "c"}
    assert coiled_token_source(**every) == "block"  # start_cluster puts the block's token in dask.config
    assert coiled_token_source(env={COILED_TOKEN_ENV: "a"}, config_token="b") == "env"


def test_no_token_anywhere_is_one_line_naming_the_three_ways() -> None:
    nothings: list[dict[str, Any]] = [{}, {"block_token": ""}, {"config_token": "  "}, {"env": {COILED_TOKEN_ENV: ""}}]
    for nothing in nothings:
        facts: dict[str, Any] = {"env": {}, **nothing}
        assert coiled_token_source(**facts) is None
        with pytest.raises(CoiledTokenMissing) as caught:
            require_coiled_token(**facts)
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert error.exit_code == 2
    message = str(error)
    assert "\n" not in message
    for way in ("DASK_COILED__TOKEN", "coiled login", "TAXI_ASSETS_COILED_TOKEN_BLOCK"):
        assert way in message
    assert message.endswith("no cluster was started")
    copy = pickle.loads(pickle.dumps(error))  # errors travel between processes
    assert (type(copy), str(copy), copy.args) == (CoiledTokenMissing, message, ())


def test_the_dask_config_token_is_read_afresh_from_the_files_and_live(no_coiled_token: Path) -> None:
    assert coiled_config_token(env={}) is None
    coiled_login(no_coiled_token, "file-t0ken")  # written after Dask was imported, as a `coiled login` would be
    assert coiled_config_token(env={}) == "file-t0ken"
    assert dask.config.get("coiled.token", None) is None  # read without touching the global config
    (no_coiled_token / "coiled.yaml").unlink()
    with dask.config.set({"coiled.token": "live-t0ken"}):
        assert coiled_config_token(env={}) == "live-t0ken"
    assert coiled_config_token(env={COILED_TOKEN_ENV: "env-t0ken"}) == "env-t0ken"  # Dask's own DASK_* mapping


def test_the_preflight_asks_only_coiled_runs_and_is_instant(no_coiled_token: Path) -> None:
    local = Settings.resolve(cluster="local", env={})
    coiled_run = Settings.resolve(cluster="coiled", env={})
    assert preflight_coiled(local, env={}) is None
    t0 = time.perf_counter()
    with pytest.raises(CoiledTokenMissing):
        preflight_coiled(coiled_run, env={})
    assert time.perf_counter() - t0 < 1.0
    assert preflight_coiled(coiled_run, env={COILED_TOKEN_ENV: "t0ken"}) == "env"
    with_block = Settings.resolve(cluster="coiled", env={"TAXI_ASSETS_COILED_TOKEN_BLOCK": "coiled-token"})
    assert preflight_coiled(with_block, env={}) == "block"
    assert preflight_coiled(coiled_run, "t0ken-from-block", env={}) == "block"
    coiled_login(no_coiled_token, "file-t0ken")
    assert preflight_coiled(coiled_run, env={}) == "config"


def test_start_cluster_refuses_coiled_without_a_token_before_creating_anything(no_coiled_token: Path) -> None:
    recorder = Recorder()
    spec = choose_cluster("coiled", month_sizes=[SMALL])
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "coiled", recorder)
        with pytest.raises(CoiledTokenMissing), start_cluster(spec, coiled_token=""):  # an empty Secret block
            pytest.fail("the block ran")
        assert recorder.calls == []  # no cluster, no login attempt
        mp.setenv(COILED_TOKEN_ENV, "env-t0ken")
        with start_cluster(spec):
            pass
    assert recorder.calls == [dict(spec.kwargs)]
    assert recorder.instances[0].status == Status.closed


# -- starting and closing ------------------------------------------------------------------------------------


@pytest.mark.integration  # a real Dask cluster
def test_a_local_cluster_runs_for_the_block_then_closes() -> None:
    recorder = Recorder()
    spec = ClusterSpec(kind="local", n_workers=1, kwargs={"n_workers": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "local", recorder)
        with start_cluster(spec, worker_env={"PREFECT_API_URL": "http://127.0.0.1:1/api"}) as running:
            with Client(running.address, security=running.security) as client:
                assert client.submit(sum, [1, 2]).result() == 3
            assert running.seconds is None
    assert recorder.calls == [{"n_workers": 1, "env": {"PREFECT_API_URL": "http://127.0.0.1:1/api"}}]
    assert recorder.instances[0].status == Status.closed
    summary = running.summary()
    assert summary["kind"] == "local"
    assert 0 < summary["startup_seconds"] <= summary["seconds"]


@pytest.mark.integration  # a real Dask cluster
def test_the_cluster_is_closed_when_the_run_fails() -> None:
    recorder = Recorder()
    spec = ClusterSpec(kind="local", n_workers=1, kwargs={"n_workers": 1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "local", recorder)
        with pytest.raises(KeyboardInterrupt), start_cluster(spec) as running:  # cancellation is a BaseException
            raise KeyboardInterrupt
    assert recorder.instances[0].status == Status.closed
    assert running.seconds is not None


@pytest.mark.integration  # a real Dask cluster
def test_coiled_gets_worker_env_as_environ_secrets_privately_and_the_token_only_in_config() -> None:
    recorder = Recorder()
    spec = choose_cluster("coiled", month_sizes=[SMALL])
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(cluster_mod.CLUSTER_CLASSES, "coiled", recorder)
        with start_cluster(
            spec,
            worker_env={"PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w"},
            private_env={"PREFECT_API_KEY": "pnu_secret"},
            coiled_token="coiled-token-1",
        ) as running:
            assert dask.config.get("coiled.token") == "coiled-token-1"
    assert recorder.calls == [
        {**spec.kwargs, "environ": {"PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w"}}
    ]
    assert recorder.calls[0]["send_dask_config"] is False  # the token in dask.config stays on this machine
    assert recorder.tokens == ["coiled-token-1"]
    assert recorder.private == [{"PREFECT_API_KEY": "pnu_secret"}]
    assert "pnu_secret" not in repr(recorder.calls)
    assert dask.config.get("coiled.token", None) is None
    summary = running.summary()
    assert summary["worker_seconds"] == summary["seconds"]  # one worker


@pytest.mark.integration  # a real Dask cluster
def test_an_address_is_connected_to_never_created_or_closed() -> None:
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as existing:
        spec = choose_cluster(existing.scheduler_address, month_sizes=[SMALL])
        with start_cluster(spec) as running:
            runner = task_runner_for(running)
            assert runner.address == existing.scheduler_address
        assert existing.status == Status.running
        assert running.summary()["workers"] == 0


@pytest.mark.integration  # a real Dask cluster
def test_the_task_runner_keeps_address_and_security_through_prefects_duplicate() -> None:
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as c:
        spec = ClusterSpec(kind="local", kwargs={})
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(cluster_mod.CLUSTER_CLASSES, "local", lambda **_: c)
            with start_cluster(spec) as running:
                copy = task_runner_for(running).duplicate()  # what the flow engine runs on
    assert copy.address == running.address
    assert copy.client_kwargs["security"] is c.security


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "why"),
    [(None, "Connection refused"), ("tcp://nosuchhost.invalid:8786", "")],
    ids=["refused", "unknown-host"],
)
def test_an_address_where_no_scheduler_listens_fails_at_once_naming_it(address: str | None, why: str) -> None:
    address = address or f"tcp://127.0.0.1:{closed_port()}"
    spec = choose_cluster(address, month_sizes=[SMALL])
    t0 = time.monotonic()
    with pytest.raises(ClusterUnavailable) as info, start_cluster(spec):
        pytest.fail("the block ran without a scheduler")
    assert time.monotonic() - t0 < 5  # not Dask's 30 s connect timeout, per attempt
    assert str(info.value).startswith(f"no Dask scheduler answers at {address} ({why}")
    assert info.value.exit_code == 8


def test_the_scheduler_probe_leaves_other_settings_alone() -> None:
    for setting in ("local", "coiled", "inproc://10.0.0.1/1/2"):
        preflight_scheduler(setting)  # no probe, no error
