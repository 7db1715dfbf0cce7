"""Plan outcomes an operator meets: rejected months left alone, a source that fails one month, noisy prefixes.

Through the real parts: the CLI, the Prefect flow on the session's Dask cluster, real Delta tables, and for the
HTTP source a real HTTP server over a directory with scripted faults (``tests/partitions/network_cases.py``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from builders import local_settings, month_rows, network_cases, write_months
from deltalake import DeltaTable

from partitions.staleness import PartitionState
from taxi_assets.assets.trips import plan_months
from taxi_assets.cli.main import main
from taxi_assets.errors import ConfigurationError, PartitionsFailed
from taxi_assets.orchestration.flows import fhvhv_pipeline
from taxi_assets.settings import Settings
from taxi_assets.synth import generate_month
from taxi_assets.synth.writer import file_name

FileServer = network_cases().FileServer
TABLES = ("trips", "quarantine", "checks", "daily_summary")


def versions(cfg: Settings) -> dict[str, int | None]:
    """The Delta version of every table of the sink (None: no table yet)."""
    out: dict[str, int | None] = {}
    for name in TABLES:
        uri = f"{cfg.sink}/{name}"
        out[name] = DeltaTable(uri).version() if Path(uri, "_delta_log").is_dir() else None
    return out


def states(cfg: Settings, **kwargs) -> dict[str, PartitionState]:
    return {r.partition: r.state for r in plan_months(cfg, **kwargs).rows}


def published(month: str, rows: int = 200, *, seed: int = 5, anomalies: str = "stress") -> pa.Table:
    table, _ = generate_month(month, rows, seed=seed, anomalies=anomalies)  # type: ignore[arg-type]
    return table


def write(directory: str | Path, month: str, table: pa.Table) -> Path:
    path = Path(directory) / file_name(month)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def other_datasets(directory: str | Path, n: int = 60) -> list[str]:
    """``n`` files of the TLC's other datasets (yellow, green, fhv) in the same prefix, as on the real source."""
    names = []
    for i in range(n):
        kind, month = ("yellow", "green", "fhv")[i // 20], i % 20
        names.append(f"{kind}_tripdata_{2019 + month // 12}-{month % 12 + 1:02d}.parquet")
        (Path(directory) / names[-1]).write_bytes(b"PAR1 another dataset")
    return names


def adversarial_source(cfg: Settings) -> dict[str, str]:
    """Good rows, type drift, a broken file, a schema no cast fixes, bad rows; month -> expected outcome."""
    write(cfg.source, "2019-02", published("2019-02", anomalies="realistic"))
    drifted = published("2019-03", seed=6)
    for name in ("PULocationID", "DOLocationID"):
        drifted = drifted.set_column(drifted.schema.get_field_index(name), name, pc.cast(drifted[name], pa.int32()))
    write(cfg.source, "2019-03", drifted)
    (Path(cfg.source) / file_name("2019-04")).write_bytes(b"<html><body>503 Service Unavailable</body></html>")
    text_fare = published("2019-05", seed=7)
    fare = text_fare.schema.get_field_index("base_passenger_fare")
    text_fare = text_fare.set_column(fare, "base_passenger_fare", pc.cast(text_fare[fare], pa.string()))
    write(cfg.source, "2019-05", text_fare)
    write(cfg.source, "2019-06", published("2019-06", seed=8, anomalies="stress"))
    return {"2019-02": "ok", "2019-03": "ok", "2019-04": "rejected", "2019-05": "rejected", "2019-06": "ok"}


# -- rejected months: recorded once, then left alone -------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_run_over_an_unchanged_adversarial_source_commits_nothing_and_exits_0(
    tmp_path, dask_address, capsys, caplog
):
    cfg = local_settings(tmp_path)
    expected = adversarial_source(cfg)
    other_datasets(cfg.source)

    with pytest.raises(PartitionsFailed) as first:
        fhvhv_pipeline(source=cfg.source, sink=cfg.sink, cluster=dask_address)
    assert sorted(first.value.failures) == ["2019-04", "2019-05"]
    assert "UnreadableSource" in first.value.failures["2019-04"]
    assert "SourceSchemaMismatch" in first.value.failures["2019-05"]
    assert first.value.rejected == ["2019-04", "2019-05"]  # refused as published: not "the next run retries"
    assert str(first.value).endswith(
        "2019-04, 2019-05 left alone until the file or the code changes (`--partitions` forces a month)"
    )
    for month, outcome in expected.items():  # rows lost 0 on every month that was written
        if outcome == "ok":
            source_rows = pq.ParquetFile(Path(cfg.source) / file_name(month)).metadata.num_rows
            assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == source_rows
    assert {m: s for m, s in states(cfg).items() if s is not PartitionState.FRESH} == {
        "2019-04": PartitionState.REJECTED,
        "2019-05": PartitionState.REJECTED,
    }
    before = versions(cfg)
    assert None not in before.values()

    caplog.clear()
    summary = fhvhv_pipeline(source=cfg.source, sink=cfg.sink, cluster=dask_address)  # the flow ends Completed

    assert versions(cfg) == before  # not one commit, on any table
    assert summary.stale == []
    assert summary.failed == []
    assert summary.rejected == ["2019-04", "2019-05"]
    assert summary.unavailable == []
    assert summary.states == {"rejected": 2, "fresh": 3}
    assert summary.cluster is None
    skipped_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped source files")]
    assert len(skipped_lines) == 1  # 60 files of other datasets: one warning, not 60
    assert "60 files not matching the pattern" in skipped_lines[0]
    assert any("only rejected months remain: 2019-04, 2019-05" in r.getMessage() for r in caplog.records)

    capsys.readouterr()
    assert main(["run", "--source", cfg.source, "--sink", cfg.sink, "--cluster", dask_address]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "only rejected months remain: 2019-04, 2019-05" in out
    assert versions(cfg) == before

    # A new file for a rejected month earns a new attempt; naming a month retries it too.
    write(cfg.source, "2019-04", published("2019-04", seed=9))
    assert states(cfg)["2019-04"] is PartitionState.SOURCE_CHANGED
    assert states(cfg, partitions="2019-05") == {"2019-05": PartitionState.FORCED}


# -- a source that fails one month -----------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """2019-02, 2019-04 and 2019-05 published; 2019-03 missing (the server answers 404)."""
    root = tmp_path / "site"
    for month in ("2019-02", "2019-04", "2019-05"):
        write(root, month, published(month, 150, seed=3))
    return root


@pytest.mark.integration
@pytest.mark.slow
def test_an_http_month_answering_503_is_unavailable_the_others_proceed_and_run_exits_non_zero(
    tmp_path, site, dask_address, capsys
):
    sink = str(tmp_path / "warehouse")
    with FileServer(site) as server:
        server.script["2019-05"] = [503] * 1000
        source = server.url("fhvhv_tripdata_{key}.parquet")
        argv = ["--source", source, "--sink", sink]

        capsys.readouterr()
        assert main(["plan", *argv]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert sum(line.startswith("skipped source files:") for line in lines) == 1
        flat = " ".join(out.split())
        assert "files not published (HTTP 403/404/410): fhvhv_tripdata_2019-03.parquet," in flat
        assert "3 month(s): 2 missing, 1 unavailable" in flat
        assert "2019-05 unavailable: the source did not answer: HEAD" in flat
        assert "HTTP 503" in flat

        capsys.readouterr()
        code = main(["run", *argv, "--cluster", dask_address])
        printed = " ".join(capsys.readouterr().out.split())
        assert code == PartitionsFailed.exit_code == 6
        assert "1 month(s) failed (2019-05: the source did not answer" in printed
        assert "2019-02" not in printed.split("failed (", 1)[1]
        for month in ("2019-02", "2019-04"):  # the other months proceeded
            assert month_rows(Settings.resolve(source=source, sink=sink, env={}), "trips", month) > 0

        # Nothing left to do but the unanswered month: still not a success, and no Prefect needed to say so.
        capsys.readouterr()
        assert main(["run", *argv, "--cluster", dask_address]) == 6
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith("taxi-assets: 1 month(s) failed (2019-05: the source did not answer")

        # --partitions probes only the named month.
        server.requests.clear()
        capsys.readouterr()
        assert main(["plan", *argv, "--partitions", "2019-04", "--json"]) == 0
        assert {path for _, path, _ in server.requests} == {"/fhvhv_tripdata_2019-04.parquet"}
        server.requests.clear()
        assert main(["plan", *argv, "--partitions", "2019-05", "--json"]) == 0  # unanswered: a row, not an error
        assert {path for _, path, _ in server.requests} == {"/fhvhv_tripdata_2019-05.parquet"}


def test_a_named_month_the_source_does_not_answer_plans_unavailable(tmp_path, site, capsys):
    with FileServer(site) as server:
        server.script["2019-05"] = [503] * 1000
        cfg = Settings.resolve(source=server.url("fhvhv_tripdata_{key}.parquet"), sink=str(tmp_path / "w"), env={})
        plan = plan_months(cfg, partitions=["2019-04", "2019-05"])
        with pytest.raises(ConfigurationError, match="2019-03"):  # missing at the source: still a bad selection
            plan_months(cfg, partitions=["2019-03"])
        capsys.readouterr()
        assert main(["materialize", "--partition", "2019-05", "--source", cfg.source, "--sink", cfg.sink]) == 3
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("taxi-assets: 2019-05: the source did not answer (HEAD ")
    assert [(r.partition, r.state) for r in plan.rows] == [
        ("2019-04", PartitionState.MISSING),  # named, never materialized
        ("2019-05", PartitionState.UNAVAILABLE),
    ]
    assert plan.unavailable == {"2019-05": plan.rows[1].reason}
    assert [r.partition for r in plan.stale] == ["2019-04"]


def test_taxi_assets_network_timeout_bounds_each_attempt_of_the_engine(tmp_path, site, monkeypatch, capsys):
    monkeypatch.setenv("PARTITIONS_NETWORK_TIMEOUT", "30")  # restored after the test; the setting overrides it
    monkeypatch.setenv("TAXI_ASSETS_NETWORK_TIMEOUT", "0.5")
    with FileServer(site) as server:
        server.script["2019-05"] = ["hang"]  # a silent month: each attempt waits the timeout
        source = server.url("fhvhv_tripdata_{key}.parquet")
        assert main(["plan", "--source", source, "--sink", str(tmp_path / "w"), "--json"]) == 0
    assert os.environ["PARTITIONS_NETWORK_TIMEOUT"] == "0.5"
    rows = {r["partition"]: r for r in __import__("json").loads(capsys.readouterr().out)}
    assert rows["2019-05"]["state"] == "unavailable"
    assert "(3 attempts of up to 0.5 s)" in rows["2019-05"]["reason"]


def test_a_bad_network_timeout_is_a_configuration_error():
    assert Settings.resolve(env={"TAXI_ASSETS_NETWORK_TIMEOUT": "2.5"}).engine_env() == {
        "PARTITIONS_NETWORK_TIMEOUT": "2.5"
    }
    assert Settings.resolve(env={}).engine_env() == {}
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ConfigurationError, match="TAXI_ASSETS_NETWORK_TIMEOUT"):
            Settings.resolve(env={"TAXI_ASSETS_NETWORK_TIMEOUT": bad})


# -- noise: other datasets in the prefix -------------------------------------------------------------------------


def test_sixty_files_of_other_datasets_are_one_line_of_the_plan(tmp_path, capsys):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02"], rows=50)
    names = other_datasets(cfg.source)
    capsys.readouterr()
    assert main(["plan", "--source", cfg.source, "--sink", cfg.sink]) == 0
    lines = capsys.readouterr().out.splitlines()
    skipped = [line for line in lines if line.startswith("skipped source files:")]
    assert len(skipped) == 1
    flat = " ".join(" ".join(lines).split())
    assert [name for name in sorted(names) if name in flat] == sorted(names)[:3]  # three examples, not sixty
    assert "skipped source files: 60 files not matching the pattern" in flat
    assert "(+57 more)" in flat
    assert "1 month(s): 1 missing" in flat


# -- lost data files ---------------------------------------------------------------------------------------------


def test_status_deep_finds_data_files_the_log_references_that_are_gone(tmp_path, capsys):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2019-03"], rows=120)
    for month in ("2019-02", "2019-03"):
        assert main(["materialize", "--partition", month, "--source", cfg.source, "--sink", cfg.sink]) == 0
    (lost,) = Path(cfg.trips_uri, "month=2019-03").glob("*.parquet")
    lost.unlink()  # behind the log's back

    assert states(cfg) == {"2019-02": PartitionState.FRESH, "2019-03": PartitionState.FRESH}  # the log alone
    capsys.readouterr()
    assert main(["status", "--deep", "--json", "--source", cfg.source, "--sink", cfg.sink]) == 0
    rows = {r["partition"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["2019-02"]["state"] == "fresh"
    assert rows["2019-03"]["state"] == "failed"
    assert rows["2019-03"]["reason"] == (
        f"data files referenced by the log are gone: trips/month=2019-03/{lost.name}; "
        "the next run rewrites the partition"
    )
    deep = plan_months(cfg, deep=True)
    assert [r.partition for r in deep.stale] == ["2019-03"]

    assert main(["materialize", "--partition", "2019-03", "--source", cfg.source, "--sink", cfg.sink]) == 0
    assert states(cfg, deep=True) == {"2019-02": PartitionState.FRESH, "2019-03": PartitionState.FRESH}


def test_a_lost_quarantine_file_is_named_with_its_table(tmp_path):
    cfg = local_settings(tmp_path)
    write(cfg.source, "2019-02", published("2019-02", 300, anomalies="stress"))
    assert main(["materialize", "--partition", "2019-02", "--source", cfg.source, "--sink", cfg.sink]) == 0
    files = sorted(Path(cfg.quarantine_uri, "month=2019-02").glob("*.parquet"))
    assert files, "stress anomalies quarantine rows"
    shutil.move(files[0], tmp_path / files[0].name)
    (row,) = plan_months(cfg, deep=True).rows
    assert row.state is PartitionState.FAILED
    assert f"quarantine/month=2019-02/{files[0].name}" in row.reason


# -- a file filed under the wrong month --------------------------------------------------------------------------


def test_may_copied_over_april_is_rejected_before_anything_is_committed(tmp_path, capsys):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-04", "2019-05"], rows=300)
    argv = ["--source", cfg.source, "--sink", cfg.sink]
    assert main(["materialize", "--partition", "2019-04", *argv]) == 0
    april = month_rows(cfg, "trips", "2019-04")
    before = versions(cfg)
    april_file = Path(cfg.source) / file_name("2019-04")
    shutil.copyfile(Path(cfg.source) / file_name("2019-05"), april_file)

    capsys.readouterr()
    assert main(["materialize", "--partition", "2019-04", *argv]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"taxi-assets: 2019-04: {april_file}: 300 of 300 rows (100%) have a pickup outside 2019-04, most of them in "
        "2019-05: the file looks filed under the wrong month; check that the file holds the trips of 2019-04 (not "
        "a copy of 2019-05's) and replace it at the source; nothing was written, the previous version of the month "
        "stays"
    )
    after = versions(cfg)
    assert {k: v for k, v in after.items() if k != "trips"} == {k: v for k, v in before.items() if k != "trips"}
    assert after["trips"] == before["trips"] + 1  # the rejection record only: an empty commit
    assert month_rows(cfg, "trips", "2019-04") == april  # the good month stays whole
    (row,) = plan_months(cfg, partitions=None).rows[:1]
    assert (row.partition, row.state) == ("2019-04", PartitionState.REJECTED)
    assert "filed under the wrong month" in row.reason


def test_a_run_failure_says_which_months_are_retried_and_which_are_left_alone() -> None:
    failed = PartitionsFailed({"2019-04": "UnreadableSource: ...", "2019-05": "StorageUnavailable: ..."}, ["2019-04"])
    assert str(failed).endswith(
        "; 2019-04 left alone until the file or the code changes (`--partitions` forces a month); "
        "the next incremental run retries the others"
    )
    assert str(PartitionsFailed({"2019-05": "x"})).endswith("; the next incremental run retries them")
    copy = pickle.loads(pickle.dumps(failed))  # raised in the flow, it crosses process boundaries
    assert (copy.failures, copy.rejected, str(copy)) == (failed.failures, failed.rejected, str(failed))


@pytest.mark.integration
def test_run_json_with_a_failed_month_still_prints_one_json_summary_and_the_line_on_stderr(
    tmp_path, dask_address, capsys
):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02"], rows=2_000)
    (Path(cfg.source) / file_name("2019-03")).write_bytes(b"<html>not parquet</html>" * 40)
    capsys.readouterr()
    code = main(["run", "--json", "--source", cfg.source, "--sink", cfg.sink, "--cluster", dask_address])
    out, err = capsys.readouterr()
    assert code == PartitionsFailed.exit_code == 6
    summary = json.loads(out)  # before: the failure line, wrapped, instead of JSON
    assert summary["failed"] == ["2019-03"]
    assert summary["written"] == ["2019-02"]
    by_month = {r["partition"]: r for r in summary["results"]}
    assert by_month["2019-03"]["rejected"] is True
    assert by_month["2019-03"]["error"].startswith("UnreadableSource: 2019-03: ")
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("taxi-assets: 1 month(s) failed (2019-03: UnreadableSource:")
