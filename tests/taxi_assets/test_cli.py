"""The CLI as a user meets it: commands, JSON contracts, exit codes, one clear line on errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from builders import table_version, write_months

from taxi_assets.assets.daily_summary import stale_summary_months, summary_uri
from taxi_assets.cli.main import main
from taxi_assets.settings import Settings

REQUIRED_KEYS = {"partition", "state", "reason", "source_fingerprint", "recorded_fingerprint", "rows"}


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    monkeypatch.setenv("TAXI_ASSETS_SOURCE", str(source))
    monkeypatch.setenv("TAXI_ASSETS_SINK", str(sink))
    return source, sink


def json_out(capsys, argv: list[str]) -> object:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_json_has_one_object_per_month_with_the_contract_keys(dirs, capsys):
    source, _ = dirs
    write_months(str(source), ["2019-02", "2019-03"], rows=120)
    rows = json_out(capsys, ["plan", "--json"])
    assert [r["partition"] for r in rows] == ["2019-02", "2019-03"]
    for r in rows:
        assert REQUIRED_KEYS <= set(r)
        assert r["state"] == "missing"
        assert r["source_fingerprint"].startswith("sha256:")
        assert r["recorded_fingerprint"] is None


def test_materialize_then_status_then_noop_run(dirs, capsys, monkeypatch):
    source, _ = dirs
    write_months(str(source), ["2019-02", "2019-03"], rows=150)
    result = json_out(capsys, ["materialize", "--partition", "2019-02", "--json"])
    assert result["rows_written"] + result["rows_quarantined"] == result["rows_source"] == 150
    assert all(c["passed"] for c in result["checks"])

    status = {r["partition"]: r for r in json_out(capsys, ["status", "--json"])}
    assert status["2019-02"]["state"] == "fresh"
    assert status["2019-02"]["rows"] == result["rows_written"]
    assert status["2019-02"]["recorded_fingerprint"] == status["2019-02"]["source_fingerprint"]
    assert status["2019-03"]["state"] == "missing"

    assert main(["materialize", "--partition", "2019-03"]) == 0  # each month with its daily_summary: all fresh
    assert stale_summary_months(Settings.resolve()) == []
    summary = json_out(capsys, ["run", "--json"])  # nothing stale: no cluster
    assert summary["stale"] == []
    assert summary["cluster"] is None
    assert summary["daily_summary"] == []
    # ... and no Prefect: a fresh process that runs the same no-op `run` never imports it
    probe = (
        "import sys; from taxi_assets.cli.main import main; code = main(['run']); "
        "assert code == 0, code; assert 'prefect' not in sys.modules, 'the no-op run imported Prefect'"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Nothing stale" in done.stdout


def test_a_run_with_only_summaries_stale_rebuilds_them_through_the_flow(dirs, capsys, prefect_api):
    write_months(str(dirs[0]), ["2019-02", "2019-03"], rows=150)
    for month in ("2019-02", "2019-03"):
        assert main(["materialize", "--partition", month]) == 0  # the month task's body: trips, then its summary
    assert stale_summary_months(Settings.resolve()) == []
    shutil.rmtree(summary_uri(Settings.resolve()))  # the summaries lost (as after a crash right after trips)
    trips = table_version(Settings.resolve())
    summary = json_out(capsys, ["run", "--json"])
    assert summary["stale"] == []
    assert summary["cluster"] is None
    assert summary["daily_summary"] == ["2019-02", "2019-03"]
    assert table_version(Settings.resolve()) == trips
    assert main(["run"]) == 0  # now fresh: the no-op path
    assert "Nothing stale" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["plan", "--partitions", "2019-13"], 2, "2019-13"),
        (["plan", "--partitions", "2019-05"], 2, "not present in the source"),
        (["materialize", "--partition", "19-02"], 2, "19-02"),
    ],
)
def test_bad_input_gets_one_clear_line_and_an_exit_code(dirs, capsys, argv, code, words):
    source, _ = dirs
    write_months(str(source), ["2019-02"], rows=50)
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("taxi-assets: ")
    assert words in err[0]


def test_a_rejected_month_is_reported_rejected_with_its_reason(dirs, capsys):
    source, _ = dirs
    write_months(str(source), ["2019-02"], rows=50)
    (source / "fhvhv_tripdata_2019-03.parquet").write_text("<html><body>403 Forbidden</body></html>")
    capsys.readouterr()
    assert main(["materialize", "--partition", "2019-03"]) == 3
    assert "2019-03" in capsys.readouterr().err
    status = {r["partition"]: r for r in json_out(capsys, ["status", "--json"])}
    assert status["2019-03"]["state"] == "rejected"
    assert "not a readable parquet file" in status["2019-03"]["reason"]
    assert status["2019-02"]["state"] == "missing"


def test_synth_writes_month_files_and_every_command_has_help(tmp_path):
    dest = tmp_path / "src"
    assert main(["synth", "--dest", str(dest), "--months", "2019-02..2019-03", "--rows", "80", "--seed", "3"]) == 0
    assert sorted(p.name for p in dest.glob("*.parquet")) == [
        "fhvhv_tripdata_2019-02.parquet",
        "fhvhv_tripdata_2019-03.parquet",
    ]
    for command in ("demo", "synth", "plan", "run", "status", "materialize"):
        out = subprocess.run(
            [sys.executable, "-m", "taxi_assets", command, "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "--" in out


def test_the_demos_closing_hint_names_a_sink_that_still_exists():
    from taxi_assets.cli.demo import next_hint

    local = Settings.resolve(source="data/source", sink="data/warehouse", env={})
    assert next_hint(local, throwaway=False).startswith(f"Next: taxi-assets sql --sink {local.sink} ")
    s3 = Settings.resolve(source="s3://taxi-assets-demo/source", sink="s3://taxi-assets-demo/warehouse", env={})
    hint = next_hint(s3, throwaway=True)  # after `demo --s3`, the server and its bucket are gone
    assert "--sink s3://" not in hint
    assert "throwaway S3 server stopped" in hint
