"""The plain steps under the flow: a failed check is recorded and turns the month `failed` until rebuilt."""

from __future__ import annotations

from dataclasses import replace

import duckdb
import pytest
from builders import local_settings, write_months

from partitions.staleness import PartitionState
from taxi_assets.analysts.views import duckdb_connect
from taxi_assets.assets.trips import _record_failed, materialize_month, new_run_id, plan_months, run_month, verify_month
from taxi_assets.errors import CheckFailed


def test_a_corrupted_expectation_fails_a_check_records_it_and_plans_the_month_failed(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02"], rows=200)
    source = plan_months(cfg).listing.files["2019-02"]
    run_id = new_run_id()
    result = materialize_month(source, cfg, run_id=run_id)
    wrong = replace(result, rows_written=result.rows_written + 1)  # what the run claims vs what is committed

    checks = {c.check: c for c in verify_month(wrong, source, cfg, run_id=run_id)}
    assert not checks["row_count"].passed
    assert checks["row_count"].observed == str(result.rows_written)
    assert checks["rows_conserved"].passed  # the table itself still adds up
    error = CheckFailed("2019-02", "row_count", checks["row_count"].observed, checks["row_count"].expected)
    assert "2019-02" in str(error)
    assert "row_count" in str(error)

    recorded = duckdb_connect(cfg.sink).sql('SELECT "check", passed FROM checks WHERE NOT passed').fetchall()
    assert ("row_count", False) in recorded

    _record_failed(source, cfg, run_id=run_id, code_version=None, error=str(error))
    (row,) = plan_months(cfg).rows
    assert row.state is PartitionState.FAILED
    assert "row_count" in row.reason

    rebuilt = run_month(source, cfg, run_id=new_run_id())  # the next run rebuilds and passes
    assert all(c["passed"] for c in rebuilt.checks)
    assert plan_months(cfg).rows[0].state is PartitionState.FRESH


def test_rows_are_conserved_on_every_month_of_a_run(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, ["2019-02", "2023-02", "2025-01"], rows=400)
    for source in plan_months(cfg).listing.files.values():
        r = run_month(source, cfg, run_id=new_run_id())
        assert r.rows_written + r.rows_quarantined == r.rows_source == 400
    con = duckdb_connect(cfg.sink)
    total = con.sql("SELECT (SELECT count(*) FROM trips) + (SELECT count(*) FROM quarantine)").fetchone()[0]
    assert total == 1200
    with pytest.raises(duckdb.Error):
        con.sql("SELECT * FROM no_such_view").fetchall()
