"""The quality report: the real notebook executed by papermill on a kernel of this venv, exported by nbconvert,
against real Delta tables written by the month step."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from builders import local_settings

from partitions.errors import InvalidPartitionKey
from taxi_assets.analysts.report import NOTEBOOK, render_report
from taxi_assets.assets.trips import new_run_id, plan_months, run_month
from taxi_assets.checks.store import CheckResult, record_checks
from taxi_assets.cli.main import main
from taxi_assets.synth import write_month_file


@pytest.mark.slow
def test_the_report_is_one_offline_html_file_with_plots_and_the_check_table(tmp_path):
    cfg = local_settings(tmp_path)
    for month, rows, anomalies in (("2019-02", 600, "stress"), ("2019-03", 300, "realistic")):
        write_month_file(cfg.source, month, rows, seed=5, anomalies=anomalies)
    plan = plan_months(cfg)
    for month in ("2019-02", "2019-03"):
        result = run_month(plan.listing.files[month], cfg, run_id=new_run_id(), code_version=plan.code_version)
        record_checks(cfg.checks_uri, [CheckResult(**c) for c in result.checks])

    out = render_report(cfg.sink, tmp_path / "reports" / "quality.html", months=["2019-02", "2019-03"])

    assert out == tmp_path / "reports" / "quality.html"
    assert [p.name for p in out.parent.iterdir()] == ["quality.html"]  # no partial file left behind
    html = out.read_text()
    assert html.count('<img src="data:image/png;base64,') >= 5  # rows, rules, nulls, histograms, daily
    for title in ("Quarantined rows by rule", "Null rates per column", "Trips per day by company", "DuckDB checks"):
        assert title in html
    for check in ("row_count", "rows_conserved", "month_matches_key", "required_not_null"):
        assert f"<th>{check}</th>" in html  # the check table, one row per month and check
    assert "12 checks over 2 month(s): all passed" in html
    assert "application/vnd.jupyter.stderr" not in html.split("</style>")[-1]  # no warnings, no errors
    assert "Traceback" not in html
    assert not re.search(r"<script[^>]*src=\"https?://", html)  # opens offline
    assert "duckdb_connect(sink)" not in html  # input cells are hidden


@pytest.mark.slow
def test_a_failing_notebook_cell_is_one_line_naming_the_cell(tmp_path, capsys):
    log = tmp_path / "warehouse" / "trips" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("this is not a Delta commit\n")  # a corrupt table
    out = tmp_path / "report.html"
    assert main(["report", "--sink", str(tmp_path / "warehouse"), "--output", str(out)]) == 7
    err = capsys.readouterr().err
    assert err.startswith(f"taxi-assets: {tmp_path / 'warehouse'}: report {out} not written: cell ")
    assert "raised QueryFailed" in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_months_are_validated_before_any_kernel_starts(tmp_path, capsys):
    with pytest.raises(InvalidPartitionKey, match="2019-13"):
        render_report(str(tmp_path), tmp_path / "r.html", months=["2019-13"])
    assert main(["report", "--sink", str(tmp_path), "--output", "r.html", "--months", "2019-13"]) == 2
    assert "invalid partition key '2019-13'" in capsys.readouterr().err


def test_the_notebook_is_stored_without_outputs_and_takes_only_sink_and_months():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    (params,) = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert re.findall(r"^(\w+) =", params.source, flags=re.MULTILINE) == ["sink", "months"]
    body = "\n".join(c.source for c in code)
    assert "from taxi_assets.analysts.views import duckdb_connect" in body
    assert "AWS_" not in body.replace("AWS_* variables", "")  # credentials come from the kernel's environment


def test_the_notebook_lives_where_render_report_looks():
    assert NOTEBOOK == Path(__file__).resolve().parents[2] / "taxi_assets" / "analysts" / "quality_report.ipynb"
