"""The quality report: the real notebook executed by papermill on a kernel of this venv, exported by nbconvert,
against real Delta tables written by the month step."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from analysts_warehouse import build_warehouse
from builders import local_settings

from partitions.errors import InvalidPartitionKey
from taxi_assets.analysts.report import NOTEBOOK, render_report
from taxi_assets.assets.trips import new_run_id, plan_months, run_month
from taxi_assets.cli.main import main
from taxi_assets.errors import UnreadableSource
from taxi_assets.model.cleaning import RULE_NAMES
from taxi_assets.synth import write_month_file

SECTIONS = (
    "Partition health",
    "Month over month",
    "Quarantine: rate per month and per rule",
    "Example quarantined rows per rule",
    "Null rates against the schema era",
    "Company shares",
    "Distributions per month",
    "Trips per day by company",
    "Re-publication history",
    "What changed in each re-publication",
    "DuckDB checks",
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """2019-02 (stress: quarantined rows), 2019-03 published twice, no 2019-04, 2019-05, and 2019-06 rejected."""
    cfg = local_settings(tmp_path_factory.mktemp("report"))
    months = {"2019-02": (600, "stress"), "2019-03": (300, "realistic"), "2019-05": (300, "realistic")}
    build_warehouse(cfg, months, seed=5)
    write_month_file(cfg.source, "2019-03", 360, seed=6, anomalies="realistic")
    (Path(cfg.source) / "fhvhv_tripdata_2019-06.parquet").write_bytes(b"<html>not parquet</html>")
    plan = plan_months(cfg)
    run_month(plan.listing.files["2019-03"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    with pytest.raises(UnreadableSource):
        run_month(plan.listing.files["2019-06"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    return cfg


@pytest.fixture(scope="module")
def report_html(warehouse, tmp_path_factory) -> str:
    out = render_report(warehouse.sink, tmp_path_factory.mktemp("out") / "reports" / "quality.html")
    assert [p.name for p in out.parent.iterdir()] == ["quality.html"]  # no partial file left behind
    return out.read_text()


def section(html: str, title: str) -> str:
    """The HTML from the heading ``title`` to the next h2."""
    start = html.index(f">{title}")
    end = min(i for i in (html.find("<h2", start), html.find("<h3", start), len(html)) if i > 0)
    return html[start : end if end > 0 else len(html)]


@pytest.mark.slow
def test_the_report_is_one_offline_html_file_with_every_section(report_html):
    html = report_html
    assert "<title>FHVHV quality report</title>" in html
    for title in SECTIONS:
        assert f">{title}" in html, title
    assert html.count('<img src="data:image/png;base64,') == 5  # rows+rate, rule trends, shares, dists, daily
    assert "application/vnd.jupyter.stderr" not in html.split("</style>")[-1]  # no warnings, no errors
    assert "Traceback" not in html
    assert not re.search(r"<script[^>]*src=\"https?://", html)  # opens offline
    assert "duckdb_connect(root)" not in html  # input cells are hidden
    for fact in ("generated", "sink", "code version", "taxi-assets 0.1.0"):
        assert f">{fact}<" in html or fact in html


@pytest.mark.slow
def test_the_health_grid_shows_each_month_and_asset_state(report_html):
    grid = section(report_html, "Partition health")
    rows = re.findall(r"<tr><th>(\d{4}-\d{2})</th>(.*?)</tr>", grid)
    states = {month: re.findall(r"<b style=\"color:#\w+\">(\w+)</b>", cells) for month, cells in rows}
    assert states == {
        "2019-02": ["fresh"] * 4,
        "2019-03": ["fresh"] * 4,
        "2019-04": ["missing"] * 4,  # the gap between months is shown, not skipped
        "2019-05": ["fresh"] * 4,
        "2019-06": ["rejected", "missing", "missing", "missing"],
    }
    assert "not a readable parquet file" in grid


@pytest.mark.slow
def test_every_figure_says_which_section_it_illustrates(report_html):
    alts = re.findall(r'<img src="data:image/png;base64,[^"]*" alt="([^"]*)"', report_html)
    assert len(alts) == report_html.count("<img ")  # every figure, none left with nbconvert's "no description"
    assert len(alts) >= 4
    for alt in alts:
        match = re.fullmatch(r"Figure \d+ of the section \u201c(.+)\u201d", alt)
        assert match, alt
        assert match[1] in SECTIONS, alt
    assert "Figure 1 of the section \u201cQuarantine: rate per month and per rule\u201d" in alts


@pytest.mark.slow
def test_the_report_renders_without_nbconverts_missing_alternative_text_warning(warehouse, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        render_report(warehouse.sink, tmp_path / "quality.html", months="2019-02")
    assert not [r.getMessage() for r in caplog.records if "Alternative text" in r.getMessage()]
    assert 'alt="Figure 1 of the section' in (tmp_path / "quality.html").read_text()


@pytest.mark.slow
def test_rates_rules_and_history_are_readable(report_html):
    rules = section(report_html, "Quarantine: rate per month and per rule")
    for rule in RULE_NAMES:  # every rule, also those that never fired
        assert f">{rule}<" in rules
    assert re.search(r">0\.\d{3} %<", rules)  # a rate under 1 % keeps three decimals
    history = section(report_html, "Re-publication history")
    assert "1 written more than once</strong>: 2019-03" in history
    assert re.search(r">source re-published<.*?>3\d\d<.*?>\+\d\d<", history, flags=re.DOTALL)  # ~360 rows, +~60
    audit = section(report_html, "What changed in each re-publication")
    assert re.search(r">2019-03<.*?>source re-published<.*?>\+\d+<", audit, flags=re.DOTALL)
    checks = section(report_html, "DuckDB checks")
    assert "18 checks over 3 month(s): all passed" in checks
    assert "(the rows the run streamed)" in checks  # full check texts, not cut at 50 characters
    mom = section(report_html, "Month over month")
    assert ">600<" in mom
    nulls = section(report_html, "Null rates against the schema era")
    assert "No unexpected nulls" in nulls
    assert "column added 2025-01: null before" in nulls


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


@pytest.mark.slow
def test_ctrl_c_during_the_report_stops_its_kernel_writes_no_file_and_says_so(warehouse, tmp_path) -> None:
    output = tmp_path / "reports" / "quality.html"
    command = [sys.executable, "-m", "taxi_assets", "report", "--sink", warehouse.sink, "--output", str(output)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, kernel = time.monotonic() + 120, None
    while kernel is None and time.monotonic() < deadline and run.poll() is None:  # the notebook's kernel runs
        kids = psutil.Process(run.pid).children(recursive=True)
        kernel = next((k for k in kids if "ipykernel" in " ".join(k.cmdline())), None)
        time.sleep(0.2)
    assert kernel is not None, "no kernel started"
    os.killpg(run.pid, signal.SIGINT)  # what a terminal sends
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (
        "taxi-assets: stopped by SIGINT: no report was written (it appears whole or not at all); run the command again"
    )
    assert "Traceback" not in err
    assert not output.exists()
    assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
