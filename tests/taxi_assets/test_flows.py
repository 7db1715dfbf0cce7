"""The flows through the real parts: Prefect's test API (one per module), real LocalClusters (the flow's own, or
an existing one by address), real Delta tables and DuckDB checks on local directories.

What is asserted beyond test_pipeline.py: no cluster for a no-op run (counted at the cluster-class seam); a bad
month fails only itself, the flow ends Failed naming it, the cluster is closed anyway, and the next incremental
run retries it; parameter validation; the per-month concurrency guard; assets, artifacts and the checks record;
the exact arguments a Coiled cluster would get, with its token from a Secret block.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dask.config
import pytest
from builders import local_settings, month_rows, table_version, write_months
from deltalake import DeltaTable
from distributed import LocalCluster
from distributed.core import Status
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import ParameterTypeError
from prefect.states import State
from prefect.testing.utilities import prefect_test_harness

from partitions.errors import InvalidPartitionKey
from partitions.staleness import PartitionState
from taxi_assets.assets import daily_summary
from taxi_assets.assets.trips import plan_months, run_month
from taxi_assets.checks.store import CHECK_NAMES
from taxi_assets.errors import ConfigurationError
from taxi_assets.model import daily_aggregation
from taxi_assets.model.zones import zone_lookup
from taxi_assets.orchestration import cluster as cluster_mod
from taxi_assets.orchestration.flows import asset_key, fhvhv_pipeline, month_limit, retry_if_transient
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

pytestmark = pytest.mark.integration

ROWS = 200


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def api_url(prefect_api) -> str:
    with get_client(sync_client=True) as client:
        return str(client.api_url)


@pytest.fixture(scope="module")
def dask_address(api_url: str):
    """An existing cluster the flow connects to by address (cluster="tcp://..."); it reports to the test API."""
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None, env={"PREFECT_API_URL": api_url}
    ) as existing:
        yield existing.scheduler_address


class Recorder:
    """Stands in for a cluster class: records each construction's arguments and starts a real LocalCluster."""

    def __init__(self, cls: type[LocalCluster] = LocalCluster) -> None:
        self.cls = cls
        self.calls: list[dict] = []
        self.tokens: list[str | None] = []
        self.instances: list[LocalCluster] = []

    def __call__(self, **kwargs) -> LocalCluster:
        self.calls.append(kwargs)
        self.tokens.append(dask.config.get("coiled.token", None))
        local = dict(kwargs)
        if "environ" in local:  # the coiled.Cluster spelling; a LocalCluster takes the rest of these as-is
            local = {"n_workers": 1, "env": local["environ"], "processes": True}
        local.setdefault("dashboard_address", None)
        instance = self.cls(**local)
        self.instances.append(instance)
        return instance


@pytest.fixture
def local_clusters(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setitem(cluster_mod.CLUSTER_CLASSES, "local", recorder)
    return recorder


def run(cfg: Settings, **params) -> dict:
    return fhvhv_pipeline(source=cfg.source, sink=cfg.sink, **params)


def run_state(cfg: Settings, **params) -> State:
    return fhvhv_pipeline(source=cfg.source, sink=cfg.sink, return_state=True, **params)


def states(cfg: Settings) -> dict[str, PartitionState]:
    return {r.partition: r.state for r in plan_months(cfg).rows}


def materialize_without_prefect(cfg: Settings) -> None:
    plan = plan_months(cfg)
    for f in plan.listing.files.values():
        run_month(f, cfg, run_id="seeded", code_version=plan.code_version)


def api_filter(path: str, body: dict) -> list[dict]:
    """POST a filter straight to the API with only the fields we set: the 3.8 client sends null for the others,
    which the server rejects with fastapi >= 0.151 (422), or turns into joins that drop flow-level rows."""
    with get_client(sync_client=True) as client:
        return client.request("POST", path, json=body).json()  # type: ignore[arg-type]


def artifacts_of(flow_run_id) -> dict[str, object]:
    found = api_filter(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 50, "offset": 0}
    )
    return {a["key"]: a["data"] for a in found if a["key"]}


def test_a_noop_run_starts_no_cluster(tmp_path: Path, local_clusters: Recorder) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2019-03"], rows=ROWS)
    materialize_without_prefect(cfg)
    version = table_version(cfg)

    state = run_state(cfg)
    summary = state.result()
    assert summary.stale == []
    assert summary.results == []
    assert summary.cluster is None
    assert summary.planned == 2
    assert local_clusters.calls == []  # not one cluster construction
    assert table_version(cfg) == version
    artifacts = artifacts_of(state.state_details.flow_run_id)
    assert {"fhvhv-plan", "fhvhv-summary"} <= set(artifacts)
    assert "no cluster started" in str(artifacts["fhvhv-summary"])


def test_stale_summaries_alone_are_rebuilt_in_the_flow_without_a_cluster_or_a_trips_write(
    tmp_path: Path, local_clusters: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = local_settings(tmp_path)
    months = ["2019-02", "2019-03"]
    write_months(cfg.source, months, rows=ROWS)
    materialize_without_prefect(cfg)
    shutil.rmtree(daily_summary.summary_uri(cfg))  # trips committed, summaries lost: as after a crash before them
    trips = table_version(cfg)

    state = run_state(cfg)
    summary = state.result()
    assert summary.stale == []
    assert summary.daily_summary == months  # the missing summaries
    assert "daily_summary rebuilt: 2019-02, 2019-03" in str(artifacts_of(state.state_details.flow_run_id))
    built = table_version(cfg, daily_summary.TABLE)

    monkeypatch.setattr(daily_aggregation, "SUMMARY_VERSION", "daily-summary-test-bump")  # a new summary code version
    assert daily_summary.stale_summary_months(cfg) == months
    summary = run(cfg)
    assert summary.stale == []
    assert summary.daily_summary == months  # every month again, for the code change
    assert table_version(cfg, daily_summary.TABLE) == built + len(months)
    assert daily_summary.stale_summary_months(cfg) == []

    summary = run(cfg)  # everything fresh now: nothing rebuilt
    assert summary.daily_summary == []
    assert table_version(cfg, daily_summary.TABLE) == built + len(months)
    assert table_version(cfg) == trips  # trips never rewritten
    assert local_clusters.calls == []  # and never a cluster


def test_a_failing_month_fails_only_itself_and_the_next_run_retries_it(
    tmp_path: Path, local_clusters: Recorder, dask_address: str
) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2019-03", "2019-04"], rows=ROWS)
    (Path(cfg.source) / "fhvhv_tripdata_2019-03.parquet").write_bytes(b"<html>not parquet</html>" * 40)

    state = run_state(cfg, cluster="local")
    assert state.is_failed()
    assert "2019-03" in state.message, state.message
    assert "UnreadableSource" in state.message
    assert "2019-03 left alone until the file or the code changes" in state.message  # not "retries them"
    assert "retries" not in state.message
    assert "2019-02" not in state.message
    assert "2019-04" not in state.message
    for month in ("2019-02", "2019-04"):  # the other months are committed, rows conserved
        assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == ROWS
    assert month_rows(cfg, "trips", "2019-03") == 0
    # The flow's own cluster: created once, sized for three months, closed although the run failed.
    assert len(local_clusters.calls) == 1
    assert local_clusters.calls[0]["n_workers"] >= 1
    assert local_clusters.instances[0].status == Status.closed
    assert states(cfg) == {
        "2019-02": PartitionState.FRESH,
        "2019-03": PartitionState.REJECTED,  # its bytes were refused: not retried until they change
        "2019-04": PartitionState.FRESH,
    }
    results = artifacts_of(state.state_details.flow_run_id)
    assert "2019-03" in str(results["fhvhv-results"])
    assert "UnreadableSource" in str(results["fhvhv-summary"])

    # The month is republished; the next incremental run retries exactly it (here on an existing cluster).
    write_month_file(cfg.source, "2019-03", ROWS + 50, seed=3)
    versions = table_version(cfg)
    summary = run(cfg, cluster=dask_address)
    assert summary.stale == ["2019-03"]
    assert summary.failed == []
    (result,) = summary.results
    assert result.ok
    assert result.rows_source == ROWS + 50
    assert result.commits["commits"] == 3  # quarantine, trips and the checks' append, counted with their retries
    assert summary.commits == result.commits  # one month: the run's totals are its own
    assert all(c["passed"] for c in result.checks)
    assert summary.cluster["kind"] == "address"
    assert table_version(cfg) == versions + 1
    assert set(states(cfg).values()) == {PartitionState.FRESH}
    # The month's checks are in <sink>/checks, and the verification step read them back from there.
    checks = DeltaTable(cfg.checks_uri).to_pyarrow_table().to_pylist()
    assert {c["partition"] for c in checks if c["run_id"] == summary.run_id} == {"2019-03"}
    assert summary.verified == {"2019-03": {"passed": len(CHECK_NAMES), "total": len(CHECK_NAMES)}}
    assert len(local_clusters.calls) == 1  # an address is connected to, never created


def test_each_month_is_reported_as_a_materialization_of_the_delta_tables(tmp_path: Path, dask_address: str) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-05"], rows=ROWS)
    summary = run(cfg, cluster=dask_address)
    (result,) = summary.results

    trips = asset_key(cfg.trips_uri)
    assert trips == Path(cfg.trips_uri).as_uri()
    events = []
    deadline = time.monotonic() + 60
    while not events and time.monotonic() < deadline:  # events are persisted by a server service, not at once
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=["prefect.asset.materialization.succeeded"]),
                    resource=EventResourceFilter(id=[trips]),
                ),
                limit=10,
            )
        events = page.events
        time.sleep(1)
    (event,) = events
    assert event.payload["partition"] == "2019-05"
    assert event.payload["rows"] == result.rows_written
    assert event.payload["table_version"] == result.trips_version
    upstream = [r for r in event.related if r.role == "asset"]
    assert [r.id for r in upstream] == [asset_key(str(Path(cfg.source) / "fhvhv_tripdata_2019-05.parquet"))]


def test_a_run_that_writes_leaves_a_zones_table_any_engine_can_join_and_the_next_adds_no_commit(
    tmp_path: Path, dask_address: str
) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-05"], rows=ROWS)
    run(cfg, cluster=dask_address)
    zones = DeltaTable(f"{cfg.sink}/zones")
    assert zones.to_pyarrow_table().equals(zone_lookup())  # readable by plain deltalake, the TLC's 265 rows
    first = zones.version()
    run(cfg, cluster=dask_address, partitions=["2019-05"])  # forced: the summary step runs again
    assert DeltaTable(f"{cfg.sink}/zones").version() == first  # the same lookup is not committed twice


def test_bad_parameters_fail_before_any_data_is_touched(tmp_path: Path, local_clusters: Recorder) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02"], rows=ROWS)
    with pytest.raises(ParameterTypeError, match="intent"):  # an enum in the flow's signature: Prefect refuses it
        run(cfg, intent="everything")
    with pytest.raises(InvalidPartitionKey, match="2019-13"):
        run(cfg, partitions=["2019-13"])
    with pytest.raises(ConfigurationError, match="2019-07") as info:
        run(cfg, partitions=["2019-02", "2019-07"])
    assert "not present in the source" in str(info.value)
    with pytest.raises(ConfigurationError, match="unknown cluster 'big'"):
        run(cfg, cluster="big")
    assert local_clusters.calls == []
    assert not Path(cfg.trips_uri).exists()


def test_a_month_another_run_holds_is_not_written_twice_at_once(
    tmp_path: Path, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-06", "2019-07"], rows=ROWS)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=month_limit("2019-06"), limit=1))
    monkeypatch.setenv("TAXI_ASSETS_LOCK_TIMEOUT", "10")  # ample for a free month, short for a held one

    with concurrency(month_limit("2019-06"), occupy=1, strict=True):  # "another run" is writing 2019-06
        state = run_state(cfg, cluster=dask_address)

    assert state.is_failed()
    assert "MonthBusy" in state.message
    assert "2019-06" in state.message
    assert "2019-07" not in state.message
    assert month_rows(cfg, "trips", "2019-06") == 0
    assert month_rows(cfg, "trips", "2019-07") + month_rows(cfg, "quarantine", "2019-07") == ROWS
    # The slot is free again: the next run takes it and writes the month.
    summary = run(cfg, cluster=dask_address)
    assert summary.stale == ["2019-06"]
    assert summary.results[0].ok


def test_coiled_gets_the_exact_arguments_and_its_token_from_a_secret_block(
    tmp_path: Path, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "coiled-token-Hq72x9"
    Secret(value=token).save("coiled-token", overwrite=True)
    for name, value in {
        "TAXI_ASSETS_COILED_SOFTWARE": "taxi-assets-env",
        "TAXI_ASSETS_COILED_REGION": "eu-west-1",
        "TAXI_ASSETS_COILED_TOKEN_BLOCK": "coiled-token",
    }.items():
        monkeypatch.setenv(name, value)
    coiled = Recorder()
    monkeypatch.setitem(cluster_mod.CLUSTER_CLASSES, "coiled", coiled)
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2019-03"], rows=ROWS)

    state = run_state(cfg, cluster="coiled")
    summary = state.result()

    assert coiled.calls == [
        {
            "n_workers": 2,  # one per stale month, under the maximum
            "region": "eu-west-1",
            "spot_policy": "spot_with_fallback",
            "idle_timeout": "20 minutes",
            "shutdown_on_close": True,
            "tags": {"project": "taxi-assets"},
            "send_dask_config": False,
            "worker_options": {"nthreads": 1},  # one month at a time per worker, with all of the VM's cores
            "worker_memory": "8GiB",  # small months: the floor
            "software": "taxi-assets-env",
            "name": f"taxi-assets-{summary.run_id}",
            "environ": {"PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        }
    ]
    assert coiled.tokens == [token]  # in dask.config while the cluster starts, never an argument
    assert dask.config.get("coiled.token", None) is None  # and gone afterwards
    assert coiled.instances[0].status == Status.closed
    assert [r.ok for r in summary.results] == [True, True]
    c = summary.cluster
    assert c["kind"] == "coiled"
    assert c["workers"] == 2
    assert 0 < c["startup_seconds"] <= c["seconds"]
    assert c["worker_seconds"] == pytest.approx(2 * c["seconds"], 0.01)
    logs = api_filter("/logs/filter", {"limit": 200, "offset": 0, "sort": "TIMESTAMP_ASC"})
    assert logs
    assert not any(token in log["message"] for log in logs)


def test_only_transient_failures_are_retried() -> None:
    from prefect.states import Failed

    from partitions.errors import SourceListingError
    from taxi_assets.errors import SourceUnavailable, UnreadableSource

    def verdict(exc: BaseException) -> bool:
        return retry_if_transient(None, None, Failed(data=exc))  # type: ignore[arg-type]

    assert verdict(SourceUnavailable("s3://b/k", "503 Slow Down"))
    assert verdict(SourceListingError("s3://b", "timeout"))
    assert not verdict(UnreadableSource("2019-03", "/x.parquet", "not a parquet file"))
    assert not verdict(ValueError("bug"))
