"""`taxi-assets sql` and duckdb_connect as an analyst meets them: daily_summary and zones views, the zones Delta
table, time travel, a sink without tables, a connection confined to the sink (local and S3), and a shell pipe.
Real Delta tables written by the real month step, a real DuckDB, real subprocesses for the pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from analysts_warehouse import build_warehouse
from builders import local_settings, s3_settings
from deltalake import DeltaTable

from taxi_assets import duckdb_connect
from taxi_assets.analysts.errors import NoTablesInSink, QueryRefused, VersionNotFound
from taxi_assets.analysts.views import query
from taxi_assets.assets.trips import new_run_id, plan_months, run_month
from taxi_assets.assets.zones import materialize_zones
from taxi_assets.cli.main import main
from taxi_assets.model.zones import zone_lookup
from taxi_assets.synth import write_month_file

MONTHS = {"2019-02": (500, "stress"), "2019-03": (300, "realistic")}


@pytest.fixture(scope="module")
def republished(tmp_path_factory):
    """Two months, then 2019-03 re-published with 80 more rows: trips versions 1, 2 (first 2019-03), 3 (second)."""
    cfg = local_settings(tmp_path_factory.mktemp("sql"))
    first = build_warehouse(cfg, MONTHS)
    write_month_file(cfg.source, "2019-03", 380, seed=9, anomalies="realistic")
    plan = plan_months(cfg)
    second = run_month(plan.listing.files["2019-03"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    return cfg, first, second


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_daily_summary_view_sums_to_the_trips_of_each_month(republished):
    cfg, _, _ = republished
    with duckdb_connect(cfg.sink) as con:
        summary = dict(con.execute("SELECT month, sum(trips) FROM daily_summary GROUP BY month").fetchall())
        trips = dict(con.execute("SELECT month, count(*) FROM trips GROUP BY month").fetchall())
    assert summary == trips
    assert trips["2019-03"] == 380  # the re-published month, not its first version


def test_zones_is_a_delta_table_any_reader_can_open_and_writing_it_twice_commits_once(republished):
    cfg, _, _ = republished
    first = materialize_zones(cfg)
    assert first == 0
    assert materialize_zones(cfg) is None  # unchanged content: no second commit
    table = DeltaTable(f"{cfg.sink}/zones")
    assert table.version() == 0
    assert table.to_pyarrow_table().sort_by("LocationID").equals(zone_lookup())
    with duckdb_connect(cfg.sink) as con:
        views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert "delta_scan(" in views["zones"]
        assert "/zones" in views["zones"]
        assert con.execute("SELECT Zone FROM zones WHERE LocationID = 132").fetchone() == ("JFK Airport",)


def test_time_travel_returns_the_earlier_version_of_a_republished_month(republished, capsys):
    cfg, first, second = republished
    old, new = first["2019-03"].trips_version, second.trips_version
    assert (old, new) == (2, 3)
    per_month = "SELECT month, count(*) AS n FROM trips GROUP BY month ORDER BY month"
    with duckdb_connect(cfg.sink, version=old) as con:
        assert con.execute(per_month).fetchall() == [("2019-02", first["2019-02"].rows_written), ("2019-03", 300)]
        assert con.execute("SELECT rows, table_version FROM partitions WHERE partition = '2019-03'").fetchone() == (
            300,
            old,
        )
        assert con.execute("SELECT sum(trips) FROM daily_summary WHERE month = '2019-03'").fetchone() == (300,)
    with duckdb_connect(cfg.sink, version=1) as con:  # before 2019-03 existed
        assert con.execute(per_month).fetchall() == [("2019-02", first["2019-02"].rows_written)]
        assert con.execute("SELECT count(*) FROM partitions").fetchone() == (1,)
    assert main(["sql", "--sink", cfg.sink, "--version", str(old), "--format", "csv", per_month]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2019-03,300"
    assert main(["sql", "--sink", cfg.sink, "--version", "99", "SELECT 1"]) == 2
    assert "trips has no version 99; pick a version from 0 to 3" in one_line_error(capsys)
    with pytest.raises(VersionNotFound):
        duckdb_connect(cfg.sink, version=99)


def test_a_sink_without_tables_is_a_named_error_everywhere(tmp_path, capsys):
    typo = tmp_path / "warehous"
    typo.mkdir()
    with pytest.raises(NoTablesInSink, match="no Delta table here"):
        duckdb_connect(str(typo))
    assert main(["sql", "--sink", str(typo), "SELECT count(*) FROM trips"]) == 2
    assert one_line_error(capsys).startswith(f"taxi-assets: {typo}: no Delta table here")
    out = tmp_path / "report.html"
    assert main(["report", "--sink", str(typo), "--output", str(out)]) == 2
    assert "no Delta table here" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("COPY (SELECT 1) TO '{outside}'", "query refused: COPY statement"),
        ("COPY (SELECT 1) TO '{sink}/trips/x.csv'", "query refused: COPY statement"),
        ("CREATE TABLE t AS SELECT 1", "query refused: CREATE statement"),
        ("SET enable_external_access = true", "query refused: SET statement"),
        ("ATTACH '{outside}.db'", "query refused: ATTACH statement"),
        ("SELECT * FROM read_csv('{outside}')", "query refused: Permission Error"),
    ],
)
def test_sql_only_reads_the_sink(republished, tmp_path, capsys, sql, says):
    cfg, _, _ = republished
    outside = tmp_path / "x.csv"
    if "read_csv" in sql:
        outside.write_text("a\n1\n")
    text = sql.format(outside=outside, sink=cfg.sink)
    assert main(["sql", "--sink", cfg.sink, text]) == 2
    assert says in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["x.csv"] if "read_csv" in sql else [])
    assert not (Path(cfg.sink) / "trips" / "x.csv").exists()


def test_the_analysts_connection_cannot_be_unlocked(republished, tmp_path):
    cfg, _, _ = republished
    import duckdb

    with duckdb_connect(cfg.sink) as con:
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute("SET enable_external_access = true")
        assert con.execute("SELECT count(*) FROM trips WHERE month = '2019-02'").fetchone()[0] > 0
    assert list(tmp_path.iterdir()) == []
    with duckdb_connect(cfg.sink, confined=False) as con:  # the documented way out, for joining own files
        con.execute(f"COPY (SELECT 1 AS a) TO '{tmp_path / 'x.csv'}'")
    assert (tmp_path / "x.csv").read_text() == "a\n1\n"


@pytest.mark.integration
def test_an_s3_sink_is_read_and_confined_too(s3_server, s3_env, tmp_path, capsys):
    cfg = s3_settings(s3_server, s3_server.make_bucket("confined"))
    results = build_warehouse(cfg, {"2019-02": MONTHS["2019-02"]})
    materialize_zones(cfg)
    sql = (
        "SELECT count(*) AS n, (SELECT count(*) FROM zones) AS z, (SELECT sum(trips) FROM daily_summary) AS s "
        "FROM trips"
    )
    assert query(cfg.sink, sql).to_pylist() == [
        {"n": results["2019-02"].rows_written, "z": 265, "s": 500 - results["2019-02"].rows_quarantined}
    ]
    with duckdb_connect(cfg.sink) as con:
        views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert "delta_scan(" in views["trips"]
    outside = tmp_path / "x.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(QueryRefused, match="Permission Error"):
        query(cfg.sink, f"SELECT * FROM read_csv('{outside}')")
    bucket = cfg.sink.removeprefix("s3://").split("/")[0]
    with pytest.raises(QueryRefused, match="Permission Error"):  # the same bucket, outside the sink's tables
        query(cfg.sink, f"SELECT * FROM read_csv('s3://{bucket}/elsewhere.csv')")
    assert main(["sql", "--sink", cfg.sink, f"COPY (SELECT 1) TO '{cfg.sink}/trips/x.csv'"]) == 2
    assert "query refused: COPY statement" in one_line_error(capsys)


def test_sql_piped_into_head_exits_quietly(republished):
    cfg, _, _ = republished
    for fmt in ("csv", "table"):
        cmd = [sys.executable, "-m", "taxi_assets", "sql", "--sink", cfg.sink, "--format", fmt]
        with subprocess.Popen(
            [*cmd, "SELECT * FROM range(300000)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as p:
            assert p.stdout is not None
            assert p.stderr is not None
            first = p.stdout.readline()
            p.stdout.close()  # what `head -1` does after its line
            err = p.stderr.read().decode()
            code = p.wait(timeout=120)
        assert first.strip()
        assert err == ""
        assert code == 0


def test_json_keeps_integers_as_integers(republished, capsys):
    cfg, _, _ = republished
    sql = (
        "SELECT month, sum(trips) AS trips, count(*) AS cells, round(sum(fare), 2) AS fare "
        "FROM daily_summary GROUP BY month ORDER BY month"
    )
    assert main(["sql", "--sink", cfg.sink, "--format", "json", sql]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["month"] for r in rows] == ["2019-02", "2019-03"]
    assert all(type(r["trips"]) is int and type(r["cells"]) is int for r in rows)  # sum() of ints is a HUGEINT
    assert all(type(r["fare"]) is float for r in rows)
    assert rows[1]["trips"] == 380
