"""The incremental path end to end through the real flow: Prefect (a throwaway test API), a real Dask cluster
with worker processes (shared by the module through its address, so each run skips cluster start-up), real
Delta tables, real DuckDB checks; on local directories and on the S3-compatible server."""

from __future__ import annotations

import pytest
from builders import local_settings, month_rows, table_version, write_months

from partitions.staleness import PartitionState
from taxi_assets.assets.trips import plan_months
from taxi_assets.orchestration.flows import fhvhv_pipeline
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _cluster(dask_address, monkeypatch):
    monkeypatch.setenv("TAXI_ASSETS_CLUSTER", dask_address)


def run(cfg: Settings, **params) -> dict:
    return fhvhv_pipeline(source=cfg.source, sink=cfg.sink, **params)


def states(cfg: Settings, **kwargs) -> dict[str, PartitionState]:
    return {r.partition: r.state for r in plan_months(cfg, **kwargs).rows}


def incremental_story(cfg: Settings, storage_options=None) -> None:
    write_months(cfg.source, ["2019-02", "2019-03"], rows=300, storage_options=storage_options)
    assert states(cfg) == {"2019-02": PartitionState.MISSING, "2019-03": PartitionState.MISSING}

    first = run(cfg)
    assert sorted(first.stale) == ["2019-02", "2019-03"]
    for r in first.results:
        assert r.ok, r
        assert r.rows_written + r.rows_quarantined == r.rows_source == 300
        assert all(c["passed"] for c in r.checks)
        assert month_rows(cfg, "trips", r.partition) == r.rows_written
    assert states(cfg) == {"2019-02": PartitionState.FRESH, "2019-03": PartitionState.FRESH}
    assert sorted(first.daily_summary) == ["2019-02", "2019-03"]  # the downstream asset follows its upstream

    # Unchanged months: fresh, nothing rewritten, no cluster.
    version = table_version(cfg)
    second = run(cfg)
    assert second.stale == []
    assert second.cluster is None
    assert table_version(cfg) == version

    # A re-published month with new bytes is rebuilt exactly once.
    write_month_file(cfg.source, "2019-03", 350, seed=7, storage_options=storage_options)
    assert states(cfg)["2019-03"] is PartitionState.SOURCE_CHANGED
    third = run(cfg)
    assert third.stale == ["2019-03"]
    assert third.daily_summary == ["2019-03"]  # only the summary whose trips month was rebuilt
    (result,) = third.results
    assert result.rows_source == 350
    assert month_rows(cfg, "trips", "2019-03") == result.rows_written
    assert month_rows(cfg, "quarantine", "2019-03") == result.rows_quarantined
    assert month_rows(cfg, "trips", "2019-02") == first.results[0].rows_written
    assert states(cfg) == {"2019-02": PartitionState.FRESH, "2019-03": PartitionState.FRESH}


def test_incremental_path_on_local_directories(tmp_path):
    incremental_story(local_settings(tmp_path))


def test_incremental_path_on_s3(s3_env, s3_bucket):
    # Only the standard AWS_* variables are set, as a user would: every part must find its way with them.
    cfg = Settings.resolve(source=f"s3://{s3_bucket}/source", sink=f"s3://{s3_bucket}/warehouse")
    incremental_story(cfg, storage_options=cfg.storage_options(cfg.source))


def test_partitions_force_only_the_named_months(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2019-03", "2019-04"], rows=200)
    run(cfg)
    versions = table_version(cfg)
    plan = {r.partition: r for r in plan_months(cfg, partitions=["2019-03"]).rows}
    assert set(plan) == {"2019-03"}
    assert plan["2019-03"].state is PartitionState.FORCED
    summary = run(cfg, partitions=["2019-03"])
    assert summary.stale == ["2019-03"]
    assert table_version(cfg) == versions + 1  # one trips commit: only that month
    assert month_rows(cfg, "trips", "2019-03") == summary.results[0].rows_written


def test_a_file_that_is_not_a_month_is_reported_not_loaded(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02"], rows=100)
    (tmp_path / "source" / "notes.parquet").write_bytes(b"not a month")
    (tmp_path / "source" / "fhvhv_tripdata_2019-13.parquet").write_bytes(b"not a month either")
    plan = plan_months(cfg)
    assert [r.partition for r in plan.rows] == ["2019-02"]
    skipped = {s.uri.rsplit("/", 1)[-1] for s in plan.listing.skipped}
    assert {"notes.parquet", "fhvhv_tripdata_2019-13.parquet"} <= skipped
    summary = run(cfg)
    assert summary.stale == ["2019-02"]
    assert summary.results[0].ok
