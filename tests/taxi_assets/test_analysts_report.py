"""The report's parts on their own: the health grid's states from real Delta logs, the flags and their
thresholds, the era's null expectations, the HTML formatting; and the report's output handling (directory,
unwritable place, months as text, the notebook's default sink from TAXI_ASSETS_SINK) through the real command
and a real kernel."""

from __future__ import annotations

import os
import shutil

import nbformat
import pandas as pd
import pytest
from analysts_warehouse import build_warehouse
from builders import local_settings
from deltalake import DeltaTable

from partitions.overwrite import overwrite_partition
from partitions.records import MaterializationRecord
from taxi_assets.analysts import html, trends
from taxi_assets.analysts.audit import audit_republications
from taxi_assets.analysts.errors import ReportNotWritable
from taxi_assets.analysts.expectations import expected_nulls
from taxi_assets.analysts.health import health_grid, month_range, publication_history
from taxi_assets.analysts.queries import latest_checks
from taxi_assets.analysts.report import KERNEL_NAME, NOTEBOOK, kernel_of_this_python, render_report
from taxi_assets.analysts.views import query
from taxi_assets.cli.main import main
from taxi_assets.model.cleaning import RULE_NAMES
from taxi_assets.model.code_version import trips_code_version

MONTHS = {"2019-02": (300, "stress"), "2019-04": (200, "realistic")}


@pytest.fixture(scope="module")
def sink(tmp_path_factory) -> str:
    cfg = local_settings(tmp_path_factory.mktemp("parts"))
    build_warehouse(cfg, MONTHS)
    return cfg.sink


def states(grid, month):
    return {asset: cell.state for asset, cell in grid[month].items()}


def test_a_trips_month_rewritten_alone_makes_its_companions_stale(sink, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(sink, copy)
    trips = str(copy / "trips")
    kept = DeltaTable(trips).to_pyarrow_table(filters=[("month", "=", "2019-04")]).slice(0, 10)
    fingerprint = publication_history(trips)[-1]["source_fingerprint"]  # the same source: a plain re-run
    record = MaterializationRecord(
        partition="2019-04",
        status="success",
        run_id="lonely",
        code_version=trips_code_version(),
        source_fingerprint=fingerprint,
        rows_written=10,
    )
    overwrite_partition(trips, kept, column="month", record=record)
    checks = query(str(copy), latest_checks(None)).to_pylist()
    grid = health_grid(str(copy), checks)
    assert list(grid) == ["2019-02", "2019-03", "2019-04"]  # the gap month is a row of its own
    assert states(grid, "2019-02") == dict.fromkeys(("trips", "quarantine", "daily_summary", "checks"), "fresh")
    assert states(grid, "2019-03") == dict.fromkeys(("trips", "quarantine", "daily_summary", "checks"), "missing")
    assert states(grid, "2019-04") == {
        "trips": "fresh",
        "quarantine": "stale",
        "daily_summary": "stale",
        "checks": "stale",
    }
    assert "trips rebuilt by run lonely" in grid["2019-04"]["daily_summary"].why
    assert "no check recorded for trips run lonely" == grid["2019-04"]["checks"].why
    history = publication_history(trips)
    assert [(h["month"], h["cause"]) for h in history] == [
        ("2019-02", "first"),
        ("2019-04", "first"),
        ("2019-04", "re-run"),
    ]
    assert history[-1]["row_delta"] == 10 - history[1]["rows"]
    (audit,) = audit_republications(trips, history)  # time travel: version 2 (2019-04's first) vs the re-run
    assert audit["versions"] == f"{history[1]['version']} -> {history[2]['version']}"
    assert audit["new trips"] == 0  # the re-run kept 10 of the same trips...
    assert audit["gone trips"] == history[1]["rows"] - 10  # ...and lost the others
    assert audit["columns"] == "same columns"
    assert all(part.split()[-1].startswith("-") for part in audit["by company"].split(", "))


def test_month_range_fills_gaps_across_a_year():
    assert month_range(["2019-12", "2020-02"]) == ["2019-12", "2020-01", "2020-02"]
    assert month_range([]) == []


def test_null_expectations_follow_the_schema_eras():
    assert expected_nulls("cbd_congestion_fee", "2024-12").expect == "all"
    assert expected_nulls("cbd_congestion_fee", "2025-01").expect == "none"
    assert expected_nulls("wav_match_flag", "2019-03").expect == "all"  # null-typed
    assert expected_nulls("wav_match_flag", "2019-04").expect == "some"
    assert expected_nulls("airport_fee", "2020-04").expect == "all"
    assert expected_nulls("airport_fee", "2023-05").expect == "none"
    assert expected_nulls("trip_miles", "2019-02").unexpected(0.01)
    assert not expected_nulls("on_scene_datetime", "2022-01").unexpected(26.9)


def frames(rows, quarantined, uber):
    months = [f"2020-{i:02d}" for i in range(1, len(rows) + 1)]
    overview = pd.DataFrame(
        {
            "month": months,
            "rows_source": rows,
            "rows_clean": [r - q for r, q in zip(rows, quarantined, strict=True)],
            "rows_quarantined": quarantined,
        }
    )
    shares = pd.DataFrame(
        [(m, "Uber", u) for m, u in zip(months, uber, strict=True)]
        + [(m, "Lyft", 100 - u) for m, u in zip(months, uber, strict=True)],
        columns=["month", "company", "share_pct"],
    )
    return overview, shares, months


def test_flags_name_the_change_the_baseline_and_the_threshold():
    overview, shares, _ = frames([1000, 1010, 990, 600], [1, 1, 1, 30], [70, 70, 70, 60])
    mom = trends.month_over_month(overview, shares)
    by_rule = pd.DataFrame({"month": ["2020-04"], "rule": ["negative_fare"], "rows": [30], "pct_of_source": [5.0]})
    rules = trends.rule_rates(by_rule, overview)
    assert list(rules.index) == list(RULE_NAMES)  # every rule, fired or not
    raised = {f["what"]: f for f in trends.flags(mom, rules, pd.DataFrame(), pd.DataFrame())}
    assert set(raised) == {"source rows", "quarantine rate", "Uber share", "Lyft share", "rule negative_fare"}
    assert raised["source rows"]["month"] == "2020-04"
    assert "-40.0 % vs baseline, limit ±25 %" in raised["source rows"]["why"]
    assert raised["rule negative_fare"]["why"].startswith("fired, after 0 in the previous months")
    assert raised["quarantine rate"]["value"] == "5.00 %"
    assert raised["quarantine rate"]["baseline"] == "0.100 %"  # readable at 0.1 %


def test_a_null_rate_moving_inside_its_era_is_flagged_but_an_era_change_is_not():
    months = ["2019-03", "2019-04", "2019-05", "2019-06"]
    rates = pd.DataFrame(
        {m: [100.0 if m == "2019-03" else v] for m, v in zip(months, [0, 1.0, 1.0, 30.0], strict=True)}
    )
    rates.index = ["wav_match_flag"]
    unexpected = rates.map(lambda _: False)
    overview, shares, _ = frames([100] * 4, [0] * 4, [70] * 4)
    mom = trends.month_over_month(
        overview.assign(month=months),
        shares.assign(month=shares["month"].map(dict(zip(overview["month"], months, strict=True)))),
    )
    raised = trends.flags(
        mom, trends.rule_rates(pd.DataFrame(columns=["month", "rule", "pct_of_source"]), overview), rates, unexpected
    )
    assert [(f["month"], f["what"]) for f in raised] == [("2019-06", "nulls in wav_match_flag")]


def test_html_tables_use_thousands_separators_and_escape_text():
    out = html.table([{"rows": 1234567, "text": "<b>x</b>", "rate": 0.5}], formats={"rate": trends.format_pct})
    assert ">1,234,567<" in out
    assert "&lt;b&gt;x&lt;/b&gt;" in out
    assert ">0.500 %<" in out
    assert trends.format_pct(0.001) == "0.0010 %"
    assert trends.format_pct(0) == "0 %"


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_an_output_that_cannot_be_a_file_is_one_line_exit_2_and_nothing_left(sink, tmp_path, capsys, where):
    if where == "directory":
        out = tmp_path / "reports"
        out.mkdir()
    else:
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "report.html"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["report", "--sink", sink, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"taxi-assets: {out}: the report cannot be written here" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    with pytest.raises(ReportNotWritable):
        render_report(sink, out)


@pytest.mark.slow
def test_the_notebook_takes_its_sink_from_the_environment_and_months_as_text(sink, tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("TAXI_ASSETS_SINK", sink)
    monkeypatch.chdir(tmp_path)  # nothing relative to the notebook's or the current folder
    executed = tmp_path / "run.ipynb"
    with kernel_of_this_python(tmp_path / "jupyter"):
        papermill.execute_notebook(
            str(NOTEBOOK), str(executed), parameters={"months": "2019-04"}, kernel_name=KERNEL_NAME, progress_bar=False
        )
    text = "\n".join(
        str(output.get("data", {}).get("text/html", ""))
        for cell in nbformat.read(executed, as_version=4).cells
        for output in cell.get("outputs", [])
    )
    assert f"<dd>{sink}</dd>" in text
    assert "<dd>2019-04 .. 2019-04 (1 with data)</dd>" in text
    assert os.listdir(tmp_path) == sorted(["jupyter", "run.ipynb"]) or set(os.listdir(tmp_path)) == {
        "jupyter",
        "run.ipynb",
    }
