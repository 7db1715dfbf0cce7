"""duckdb_connect's views, the example queries and `taxi-assets sql`, on real Delta tables written by the real
month step (local directory and the S3-compatible server), read by a real DuckDB."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analysts_warehouse import build_warehouse
from builders import local_settings, s3_settings
from deltalake import DeltaTable

from partitions.overwrite import overwrite_partition
from partitions.records import MaterializationRecord
from taxi_assets import duckdb_connect
from taxi_assets.analysts.queries import EXAMPLES
from taxi_assets.analysts.views import delta_schemas, partitions_schema, query
from taxi_assets.assets.trips import MonthResult
from taxi_assets.cli.main import main
from taxi_assets.errors import QueryFailed
from taxi_assets.io.duckdb import open_connection, register_table
from taxi_assets.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
MONTHS = {"2019-02": (600, "stress"), "2019-03": (400, "realistic")}


@pytest.fixture(scope="module")
def local_wh(tmp_path_factory) -> tuple[Settings, dict[str, MonthResult]]:
    cfg = local_settings(tmp_path_factory.mktemp("analytics"))
    return cfg, build_warehouse(cfg, MONTHS)


@pytest.fixture(scope="module")
def s3_wh(s3_server) -> tuple[Settings, dict[str, MonthResult]]:
    cfg = s3_settings(s3_server, s3_server.make_bucket("analytics"))
    return cfg, build_warehouse(cfg, {"2019-02": MONTHS["2019-02"]})


def counts(con, sql: str) -> dict[str, int]:
    return dict(con.execute(sql).fetchall())


def assert_views_match(con, results: dict[str, MonthResult]) -> None:
    trips = counts(con, "SELECT month, count(*) FROM trips GROUP BY month")
    bad = counts(con, "SELECT month, count(*) FROM quarantine GROUP BY month")
    assert trips == {m: r.rows_written for m, r in results.items()}
    assert {m: bad.get(m, 0) for m in results} == {m: r.rows_quarantined for m, r in results.items()}
    assert bad["2019-02"] > 0  # the stress month has rejected rows, each with its rules and reason
    assert con.execute("SELECT count(*) FROM quarantine WHERE len(rule) = 0 OR reason = ''").fetchone() == (0,)
    rows = con.execute(
        "SELECT partition, status, rows, rows_quarantined, rows_source, run_id, table_version FROM partitions"
    ).fetchall()
    assert rows == [
        (m, "success", r.rows_written, r.rows_quarantined, r.rows_source, r.checks[0]["run_id"], r.trips_version)
        for m, r in sorted(results.items())
    ]
    assert con.execute("SELECT count(*), count(DISTINCT Borough) FROM zones").fetchone() == (265, 8)
    checks = counts(con, "SELECT partition, count(*) FILTER (WHERE passed) FROM checks GROUP BY partition")
    assert checks == {m: len(r.checks) for m, r in results.items()}
    views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    assert "delta_scan(" in views["trips"]  # the measured choice: DuckDB reads the Delta log itself


def test_views_count_what_the_run_wrote_local(local_wh):
    cfg, results = local_wh
    with duckdb_connect(cfg.sink) as con:
        assert_views_match(con, results)


@pytest.mark.integration
def test_views_count_what_the_run_wrote_s3_from_aws_env(s3_wh, s3_env):
    cfg, results = s3_wh
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == s3_env.secret  # only the standard variables, no options
    with duckdb_connect(cfg.sink) as con:
        assert_views_match(con, results)


def test_missing_tables_are_empty_views_with_their_columns(local_wh, tmp_path):
    cfg, _ = local_wh
    sink = tmp_path / "only-trips"
    shutil.copytree(cfg.trips_uri, sink / "trips")  # quarantine, daily_summary and checks not written yet
    with duckdb_connect(str(sink)) as con:
        for name, schema in delta_schemas().items():
            if name != "trips":
                assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
                assert [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()] == schema.names
        assert [r[0] for r in con.execute("DESCRIBE partitions").fetchall()] == partitions_schema().names
        assert con.execute("SELECT count(*) FROM zones").fetchone() == (265,)


def test_a_superseded_version_of_a_month_is_not_visible(local_wh, tmp_path):
    cfg, results = local_wh
    sink = tmp_path / "warehouse"
    shutil.copytree(cfg.sink, sink)
    trips = str(sink / "trips")
    con = duckdb_connect(str(sink))  # opened before the overwrite: the views follow the log
    kept = DeltaTable(trips).to_pyarrow_table(filters=[("month", "=", "2019-03")]).slice(0, 50)
    record = MaterializationRecord(
        partition="2019-03", status="success", run_id="rerun", code_version="t", rows_source=50, rows_written=50
    )
    version = overwrite_partition(trips, kept, column="month", record=record)
    on_disk = sum(pq.read_metadata(p).num_rows for p in (sink / "trips" / "month=2019-03").glob("*.parquet"))
    assert on_disk == results["2019-03"].rows_written + 50  # the superseded files are still on storage...
    assert con.execute("SELECT count(*) FROM trips WHERE month = '2019-03'").fetchone() == (50,)  # ...unseen
    con.close()
    with duckdb_connect(str(sink)) as fresh:  # the partitions view is the logs' state when connecting
        row = fresh.execute("SELECT rows, table_version, status FROM partitions WHERE partition = '2019-03'")
        # "incomplete": the quarantine table has no commit of run "rerun"
        assert row.fetchone() == (50, version, "incomplete")


@pytest.mark.parametrize("access", ["auto", "arrow"])
def test_a_month_filter_prunes_the_other_months_files(local_wh, tmp_path, access):
    cfg, results = local_wh
    copy = tmp_path / "trips"
    shutil.copytree(cfg.trips_uri, copy)
    for data_file in (copy / "month=2019-02").glob("*.parquet"):
        data_file.unlink()  # any read of 2019-02 now fails
    with open_connection() as con:
        register_table(con, "trips", str(copy), schema=delta_schemas()["trips"], access=access)
        assert con.execute("SELECT count(*) FROM trips WHERE month = ?", ["2019-03"]).fetchone() == (
            results["2019-03"].rows_written,
        )
        with pytest.raises(Exception, match="2019-02"):
            con.execute("SELECT sum(trip_miles) FROM trips").fetchall()


def test_the_five_example_queries_return_plausible_rows(local_wh):
    cfg, results = local_wh
    with duckdb_connect(cfg.sink) as con:
        out = {q.name: con.execute(q.sql).to_arrow_table().to_pylist() for q in EXAMPLES}
    assert len(out) == 5
    assert all(out.values())
    daily = out["trips_per_day_by_company"]
    assert sum(r["trips"] for r in daily) == results["2019-02"].rows_written
    assert {r["company"] for r in daily} <= {"Uber", "Lyft", "Via", "Juno"}
    for share in out["uber_lyft_share_by_month"]:
        assert 0 < share["lyft_share_pct"] < share["uber_share_pct"] < 100
    pairs = {(r["pickup_borough"], r["dropoff_borough"]): r for r in out["fare_per_mile_by_borough_pair"]}
    assert 1 < pairs[("Manhattan", "Manhattan")]["median_fare_per_mile"] < 20
    assert {r["airport"] for r in out["airport_trips"]} <= {"JFK Airport", "LaGuardia Airport", "Newark Airport"}
    assert all(r["pickups"] + r["dropoffs"] > 0 for r in out["airport_trips"])
    assert all(0 <= r["tipped_pct"] <= 100 for r in out["tipping_rate"])


def test_the_docs_show_every_example_query_verbatim():
    text = DOCS.read_text()
    for q in EXAMPLES:
        assert q.sql in text, f"{q.name} differs from docs/analysts.md"


def test_sql_command_prints_csv(local_wh, capsys):
    cfg, results = local_wh
    per_month = "SELECT month, count(*) AS trips FROM trips GROUP BY month ORDER BY month"
    assert main(["sql", "--sink", cfg.sink, "--format", "csv", per_month]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["month,trips", *(f"{m},{r.rows_written}" for m, r in sorted(results.items()))]
    assert main(["sql", "--sink", cfg.sink, "--format", "csv", "SELECT 'a,b' AS t, [1, 2] AS l, NULL AS n"]) == 0
    assert capsys.readouterr().out.splitlines() == ["t,l,n", '"a,b","[1, 2]",']


def test_sql_command_prints_json(local_wh, capsys):
    cfg, results = local_wh
    sql = "SELECT partition, rows, finished_at, [1, 2] AS l FROM partitions ORDER BY partition"
    assert main(["sql", "--sink", cfg.sink, "--format", "json", sql]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["partition"], r["rows"], r["l"]) for r in rows] == [
        (m, r.rows_written, [1, 2]) for m, r in sorted(results.items())
    ]
    assert all(r["finished_at"].startswith("20") for r in rows)


def test_sql_command_bad_query_is_one_line_exit_2(local_wh, capsys):
    cfg, _ = local_wh
    assert main(["sql", "--sink", cfg.sink, "SELEC count(*) FROM trips"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "query failed: Parser Error" in err


@pytest.mark.integration
def test_query_errors_on_s3_never_show_the_secret(s3_wh, s3_server):
    cfg, _ = s3_wh
    opts = s3_server.storage_options()
    with pytest.raises(QueryFailed) as info:  # an error whose text quotes the secret (here: as a table name)
        query(cfg.sink, f'SELECT * FROM "{s3_server.secret}"', storage_options=opts)
    assert s3_server.secret not in str(info.value)
    assert s3_server.secret not in repr(info.value.args)
    assert "***" in str(info.value)


def test_delta_table_read_through_the_log_at_a_pinned_version(local_wh):
    cfg, results = local_wh
    first = results["2019-02"].trips_version
    with open_connection() as con:
        register_table(con, "old", cfg.trips_uri, schema=delta_schemas()["trips"], version=first)
        assert con.execute("SELECT count(DISTINCT month) FROM old").fetchone() == (1,)
    assert DeltaTable(cfg.trips_uri).version() > first
