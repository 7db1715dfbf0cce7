"""Every Python and SQL snippet of docs/analysts.md runs as copied, against a real warehouse in ./data/warehouse
(local), and the plain-DuckDB S3 snippet against the S3-compatible server. Snippets for engines that are not
installed here (Polars, Spark) are skipped by name, never silently passed."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest
from analysts_warehouse import build_warehouse
from builders import s3_settings

from taxi_assets import duckdb_connect
from taxi_assets.assets.zones import materialize_zones
from taxi_assets.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
BLOCK = re.compile(r"^( *)```(python|sql)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
MONTHS = {"2019-02": (400, "stress"), "2019-03": (300, "realistic")}


def snippets(language: str) -> list[str]:
    found = []
    for indent, lang, body in BLOCK.findall(DOCS.read_text()):
        if lang == language:
            found.append("\n".join(line.removeprefix(indent) for line in body.splitlines()))
    return found


def kind(code: str) -> str:
    if "pyspark" in code:
        return "spark"
    if "import polars" in code:
        return "polars"
    if "AWS_ACCESS_KEY_ID" in code:
        return "s3"
    return "local"


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory) -> Path:
    """A directory whose ./data/warehouse holds two months, their summaries and checks, and the zones table."""
    root = tmp_path_factory.mktemp("docs")
    cfg = Settings.resolve(source=str(root / "data" / "source"), sink=str(root / "data" / "warehouse"), env={})
    build_warehouse(cfg, MONTHS)
    materialize_zones(cfg)
    return root


def run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOCS), "exec"), {"__name__": "__docs__"})
    return out.getvalue()


def test_the_page_has_a_snippet_for_every_engine():
    kinds = [kind(code) for code in snippets("python")]
    assert kinds.count("local") >= 4
    assert {"spark", "polars", "s3"} <= set(kinds)


@pytest.mark.parametrize("index", range(len(snippets("python"))))
def test_python_snippet_runs_as_copied(docs_dir, monkeypatch, index):
    code = snippets("python")[index]
    if kind(code) == "spark":
        pytest.skip("pyspark is not a dependency of this project")
    if kind(code) == "polars" and importlib.util.find_spec("polars") is None:
        pytest.skip("polars is not installed here")
    if kind(code) == "s3":
        pytest.skip("run by test_the_plain_duckdb_s3_snippet_reads_an_s3_sink")
    monkeypatch.chdir(docs_dir)
    printed = run(code)
    assert "Traceback" not in printed


def test_sql_snippets_run_on_the_views(docs_dir):
    sqls = [s for s in snippets("sql") if "FROM trips" in s or "FROM checks" in s]
    assert any("access_a_ride_flag IS NULL" in s for s in sqls)
    with duckdb_connect(str(docs_dir / "data" / "warehouse")) as con:
        for sql in sqls:
            con.execute(sql).fetchall()
        yes, no, unknown, not_yes = con.execute(next(s for s in sqls if "access_a_ride_flag IS NULL" in s)).fetchone()
        total = con.execute("SELECT count(*) FROM trips").fetchone()[0]
    assert yes + no + unknown == total
    assert not_yes == no + unknown
    assert unknown > 0  # Uber's ' ' is NULL: the reason `WHERE NOT flag` misleads


def test_plain_duckdb_time_travel_and_zone_join_answer_like_the_helper(docs_dir, monkeypatch):
    (code,) = [c for c in snippets("python") if "def extension" in c and "AWS_" not in c]
    monkeypatch.chdir(docs_dir)
    printed = run(code)
    for borough in ("Manhattan", "Brooklyn", "Queens"):
        assert borough in printed
    with duckdb_connect(str(docs_dir / "data" / "warehouse"), version=1) as con:
        (rows,) = con.execute("SELECT count(*) FROM trips").fetchone()
    assert printed.rstrip().endswith(f"[({rows},)]")


@pytest.mark.integration
def test_the_plain_duckdb_s3_snippet_reads_an_s3_sink(s3_server, s3_env, monkeypatch):
    cfg = s3_settings(s3_server, s3_server.make_bucket("docs"))
    results = build_warehouse(cfg, {"2019-02": MONTHS["2019-02"]})
    monkeypatch.setenv("TAXI_ASSETS_SINK", cfg.sink)
    (code,) = [c for c in snippets("python") if kind(c) == "s3"]
    assert "SECRET ?" in code  # keys go in as parameters, never as SQL text
    printed = run(code)
    assert printed.strip() == str([("2019-02", results["2019-02"].rows_written)])
